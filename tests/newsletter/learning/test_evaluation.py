"""eval_ranking (learning.evaluation): the production ranking on the shipped seed lists."""

from __future__ import annotations

import json
from io import StringIO

import pytest
from django.core.management import CommandError, call_command

from newsletter.models import Delivery, Feedback, ReaderModel, Subscriber
from papers.models import Paper
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db


def test_eval_ranking_on_the_shipped_lists_meets_the_targets_and_leaves_the_database_as_it_was(
    sample_files,
) -> None:
    someone = SubscriberFactory(interests="speech recognition")
    out = StringIO()

    call_command("eval_ranking", *map(str, sample_files), "--json", stdout=out)

    result = json.loads(out.getvalue())
    assert set(result) == {"lists", "mean", "baselines"}
    assert [row["file"] for row in result["lists"]] == [path.name for path in sample_files]
    assert result["lists"][0]["anchor"].startswith("DeBERTaV3:")
    assert all(len(row["precision"]) == 3 for row in result["lists"])
    assert set(result["baselines"]) == {"tfidf_title", "random"}
    assert all(len(values) == 3 for values in result["baselines"].values())
    # The targets: text alone, then learning from the reader's marks (rounds 2 and 3).
    first, second, third = result["mean"]
    assert first >= 0.45
    assert (second + third) / 2 >= 0.60
    assert first > result["baselines"]["tfidf_title"][0] > result["baselines"]["random"][0]
    # Rolled back: no reader, paper, digest, mark or model is left behind.
    assert list(Subscriber.objects.all()) == [someone]
    assert not Paper.objects.exists()
    assert not Delivery.objects.exists() and not Feedback.objects.exists()
    assert not ReaderModel.objects.exists()


def test_eval_ranking_prints_a_table_per_file_and_round(sample_files) -> None:
    out = StringIO()

    call_command("eval_ranking", str(sample_files[2]), "--rounds", "2", stdout=out)

    lines = out.getvalue().splitlines()
    assert lines[1].split()[-2:] == ["r1", "r2"]
    assert lines[2].startswith(sample_files[2].name)
    assert [line.split(" ")[0] for line in lines[3:]] == ["mean:", "baseline:", "baseline:"]
    assert all(len(line.split()[-2:]) == 2 and float(line.split()[-1]) <= 1 for line in lines[2:])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--rounds", "0"), "--rounds must be at least 1"),
        (("/nonexistent/list.txt",), "/nonexistent/list.txt"),
    ],
)
def test_eval_ranking_refuses_bad_arguments(sample_files, args, message) -> None:
    with pytest.raises(CommandError, match=message):
        call_command("eval_ranking", *(args if args[0].startswith("/") else (str(sample_files[0]), *args)))


def test_a_file_with_a_single_paper_is_refused(tmp_path, sample_files) -> None:
    text = sample_files[0].read_text(encoding="utf-8")
    single = tmp_path / "single.txt"
    single.write_text(
        text[: text.index("\n\n", text.index("DeBERTaV3 using the same")) + 2], encoding="utf-8"
    )

    with pytest.raises(CommandError, match="at least one similar paper"):
        call_command("eval_ranking", str(single))

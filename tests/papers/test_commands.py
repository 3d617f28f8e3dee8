"""`manage.py ingest_papers`: summary, idempotent re-runs, URLs, and where bad input is reported."""

from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from papers.models import Paper
from tests.papers.helpers import ABSTRACT, ARXIV_ATOM, HF_JSON, SAMPLE_DATA, sample_counts

pytestmark = pytest.mark.django_db


def ingest(*inputs: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("ingest_papers", *inputs, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def ingest_failing(*inputs: str) -> tuple[str, str, CommandError]:
    out, err = StringIO(), StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("ingest_papers", *inputs, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue(), caught.value


def summary(out: str) -> str:
    return out.strip().splitlines()[-1]


def test_ingesting_the_sample_directory_prints_the_summary(sample_files: list[Path]) -> None:
    listings, distinct = sample_counts(sample_files)

    out, err = ingest(str(SAMPLE_DATA))

    # On an empty database nothing is "updated": the other listings repeat papers of this same run.
    assert summary(out) == (
        f"{distinct} created, {listings - distinct} duplicates merged, 0 updated, 0 unchanged, "
        "0 rejected, 0 input(s) failed"
    )
    assert out.count("\n") == 1 and err == ""
    assert Paper.objects.count() == distinct


def test_second_run_over_the_samples_reports_everything_unchanged(sample_files: list[Path]) -> None:
    listings, _ = sample_counts(sample_files)
    ingest(str(SAMPLE_DATA))

    out, _ = ingest(str(SAMPLE_DATA))

    assert summary(out) == f"0 created, 0 updated, {listings} unchanged, 0 rejected, 0 input(s) failed"


def test_files_directories_and_urls_mix(http_server, tmp_path: Path, sample_files: list[Path]) -> None:
    url = http_server.serve("/api/daily_papers", HF_JSON.read_bytes())
    folder = tmp_path / "feeds"
    folder.mkdir()
    (folder / "arxiv.xml").write_bytes(ARXIV_ATOM.read_bytes())
    (folder / ".partial.json").write_text("[{", encoding="utf-8")  # hidden: an editor's or rsync's temp file

    out, err = ingest(url, str(folder), str(sample_files[0]))

    assert [path for path, _ in http_server.requests] == ["/api/daily_papers"]
    assert summary(out).endswith("0 rejected, 0 input(s) failed") and err == ""
    assert Paper.objects.filter(external_id__in=["2212.04356", "1706.03762", "hep-ex/0307015"]).count() == 3


def test_a_url_input_is_ingested(http_server) -> None:
    url = http_server.serve("/api/daily_papers?date=2025-06-01", HF_JSON.read_bytes())

    out, _ = ingest(url)

    assert summary(out) == "6 created, 0 updated, 0 unchanged, 0 rejected, 0 input(s) failed"
    assert Paper.objects.filter(source=Paper.Source.HUGGINGFACE).count() == 6


def test_a_failing_url_fails_the_command_after_the_other_inputs(http_server) -> None:
    good = http_server.serve("/good.json", HF_JSON.read_bytes())
    bad = http_server.serve("/bad.json", "maintenance", status=503)

    out, err, error = ingest_failing(bad, good)

    assert error.returncode == 1
    assert f"error {bad}: {bad}: HTTP 503" in err
    assert summary(out) == "6 created, 0 updated, 0 unchanged, 0 rejected, 1 input(s) failed"


def test_a_truncated_file_fails_the_command_naming_file_and_position(tmp_path: Path) -> None:
    text = HF_JSON.read_text(encoding="utf-8")
    cut = text[: text.index('"summary"', text.index("2003.10555"))]
    broken = tmp_path / "daily.json"
    broken.write_text(cut, encoding="utf-8")
    line, column = cut.count("\n") + 1, len(cut.split("\n")[-1]) + 1

    out, err, error = ingest_failing(str(broken), str(ARXIV_ATOM))

    assert str(error) == "1 input(s) could not be ingested"
    assert f"error {broken}: line {line}, column {column}: invalid JSON" in err
    # Nothing of the broken file is stored; the good input after it is.
    assert not Paper.objects.filter(source=Paper.Source.HUGGINGFACE).exists()
    assert summary(out) == "4 created, 0 updated, 0 unchanged, 0 rejected, 1 input(s) failed"


def test_non_utf8_input_fails_naming_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes(f"new\n\nMar 14\n\nCaf\u00e9 papers\n\n{ABSTRACT}\n".encode("latin-1"))

    _, err, _ = ingest_failing(str(bad))

    assert f"error {bad}: line 5: not valid UTF-8 (byte 0xe9 at offset" in err


def test_a_missing_path_fails_the_command(tmp_path: Path) -> None:
    missing = tmp_path / "nope.txt"

    _, err, _ = ingest_failing(str(missing))

    assert f"error {missing}: No such file or directory" in err


def test_rejected_records_are_listed_with_file_and_position(tmp_path: Path) -> None:
    listing = tmp_path / "listing.txt"
    listing.write_text(
        f"new\n\nSubscribe\n\nMar 14\n\nGood paper\n\n{ABSTRACT}\n\n"
        f"Orphan title\n\nAnother good paper\n\n{ABSTRACT}\n",
        encoding="utf-8",
    )
    daily = tmp_path / "daily.json"
    daily.write_text(
        json.dumps(
            [
                {"paper": {"id": "2401.00001", "title": "JSON paper", "summary": ABSTRACT}},
                {"paper": {"id": "2401.00002", "title": 42, "summary": ABSTRACT}},
            ]
        ),
        encoding="utf-8",
    )

    out, err = ingest(str(listing), str(daily))

    assert out.splitlines() == [
        f"rejected {listing}: line 11: title 'Orphan title' has no abstract",
        f"rejected {daily}: item 2: title is missing or not text",
        "3 created, 0 updated, 0 unchanged, 2 rejected, 0 input(s) failed",
    ]
    assert err == ""


def test_quiet_prints_only_the_summary(tmp_path: Path) -> None:
    listing = tmp_path / "listing.txt"
    listing.write_text(f"Mar 14\n\nOrphan title\n\nGood paper\n\n{ABSTRACT}\n", encoding="utf-8")

    out, _ = ingest(str(listing), "--quiet")

    assert out.splitlines() == ["1 created, 0 updated, 0 unchanged, 1 rejected, 0 input(s) failed"]


def test_quiet_still_reports_inputs_that_failed(tmp_path: Path) -> None:
    broken = tmp_path / "broken.json"
    broken.write_text("[{", encoding="utf-8")

    out, err, _ = ingest_failing(str(broken), "--quiet")

    assert f"error {broken}: line 1, column 3" in err
    assert out.splitlines() == ["0 created, 0 updated, 0 unchanged, 0 rejected, 1 input(s) failed"]

"""The digest management commands: preview_digest and send_digests."""

from __future__ import annotations

import json
from datetime import timedelta
from io import StringIO

import pytest
from django.core import mail
from django.core.management import CommandError, call_command
from django.utils import timezone

from newsletter.models import Delivery
from newsletter.selectors import digest_preview
from papers.models import Paper, Topic
from tests.factories import PaperFactory, SubscriberFactory

pytestmark = pytest.mark.django_db


def run(*args: str) -> str:
    out = StringIO()
    call_command(*args, stdout=out)
    return out.getvalue()


def preview_json(*args: str) -> list[dict]:
    rows = json.loads(run("preview_digest", *args, "--format", "json"))
    assert isinstance(rows, list)
    return rows


# --- preview_digest ----------------------------------------------------------------------------


def test_preview_interests_as_json(sample_papers) -> None:
    rows = preview_json("--interests", "speech recognition", "--limit", "5")

    assert 0 < len(rows) <= 5
    for row in rows:
        assert {"title", "score", "reasons", "paper_id", "url", "topics"} <= set(row)
        assert isinstance(row["score"], float)
        assert row["reasons"] and all(isinstance(r, str) for r in row["reasons"])
        assert Paper.objects.get(pk=row["paper_id"]).title == row["title"]
    assert [r["score"] for r in rows] == sorted((r["score"] for r in rows), reverse=True)
    top = Paper.objects.get(pk=rows[0]["paper_id"])
    assert "speech recognition" in f"{top.title} {top.abstract}".lower()
    assert "Mentions “speech recognition”" in rows[0]["reasons"]


def test_preview_interests_with_topics(sample_papers) -> None:
    efficiency = Topic.objects.get(slug="efficiency")

    rows = preview_json(
        "--interests", "quantization", "--topics", "efficiency,language-models", "--limit", "4"
    )

    assert len(rows) == 4
    assert all(efficiency.name in row["topics"] for row in rows)
    assert all(any(r.startswith("Matches your topic") for r in row["reasons"]) for row in rows)
    assert "quantiz" in rows[0]["title"].lower()


def test_preview_default_limit_is_ten(sample_papers) -> None:
    assert len(preview_json("--interests", "language model")) == 10


def test_preview_as_text(sample_papers) -> None:
    rows = preview_json("--interests", "quantization", "--limit", "3")

    lines = run("preview_digest", "--interests", "quantization", "--limit", "3").splitlines()

    numbered = [line for line in lines if line[:3].strip().rstrip(".").isdigit()]
    assert len(numbered) == 3
    for n, (line, row) in enumerate(zip(numbered, rows, strict=True), start=1):
        assert line.startswith(f"{n:>2}. [")
        assert line.endswith(row["title"])
        assert f"{row['score']:6.3f}" in line
    assert f"      - {rows[0]['reasons'][0]}" in lines


def test_preview_as_html(sample_papers) -> None:
    rows = preview_json("--interests", "quantization", "--limit", "2")

    html = run("preview_digest", "--interests", "quantization", "--limit", "2", "--format", "html")

    assert html.lstrip().lower().startswith("<!doctype html>")
    assert html.count('class="paper-title"') == 2
    for row in rows:
        assert row["url"] in html.replace("&amp;", "&")
    assert "2 papers" in html


def test_preview_with_nothing_to_show() -> None:
    assert run("preview_digest", "--interests", "anything") == "No paper qualifies.\n"
    assert preview_json("--interests", "anything") == []


def test_preview_days_limits_the_window() -> None:
    old = PaperFactory(title="Quantization, old")
    new = PaperFactory(title="Quantization, new")
    Paper.objects.filter(pk=old.pk).update(ingested_at=timezone.now() - timedelta(days=5))

    assert [r["paper_id"] for r in preview_json("--interests", "quantization", "--days", "2")] == [new.pk]
    assert {r["paper_id"] for r in preview_json("--interests", "quantization")} == {old.pk, new.pk}


def test_preview_of_a_subscriber(sample_papers) -> None:
    subscriber = SubscriberFactory(
        email="reader@example.org", interests="retrieval, reranking", excluded_keywords="multimodal"
    )
    expected = digest_preview(subscriber=subscriber, now=timezone.now())
    assert len(expected) == subscriber.papers_per_digest

    # The address is normalized as at sign-up.
    rows = preview_json("--email", "Reader@Example.org")

    assert [r["paper_id"] for r in rows] == [p.paper.id for p in expected]
    assert [r["reasons"] for r in rows] == [list(p.reasons) for p in expected]
    assert len(preview_json("--email", "reader@example.org", "--limit", "3")) == 3
    assert len(preview_json("--email", "reader@example.org", "--limit", "15")) == 15


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--email", "nobody@example.org"), "no subscriber with address nobody@example.org"),
        (("--interests", "x", "--topics", "efficiency,nope"), "unknown topic(s): nope"),
        (("--interests", "x", "--limit", "0"), "--limit must be at least 1"),
    ],
)
def test_preview_errors(args: tuple[str, ...], message: str) -> None:
    with pytest.raises(CommandError, match=message.replace("(", r"\(").replace(")", r"\)")):
        run("preview_digest", *args)


def test_preview_needs_exactly_one_profile() -> None:
    with pytest.raises(CommandError):
        run("preview_digest")
    with pytest.raises(CommandError):
        run("preview_digest", "--email", "a@example.org", "--interests", "x")


# --- send_digests ------------------------------------------------------------------------------


def _due_subscribers() -> tuple:
    PaperFactory(title="Quantization for everyone", abstract="Quantization of weights.")
    past = timezone.now() - timedelta(minutes=1)
    wanted = SubscriberFactory(interests="quantization", next_send_at=past)
    nothing_new = SubscriberFactory(interests="protein folding", next_send_at=past)
    not_due = SubscriberFactory(interests="quantization", next_send_at=timezone.now() + timedelta(hours=1))
    return wanted, nothing_new, not_due


def test_send_digests_dry_run_changes_nothing() -> None:
    wanted, nothing_new, _ = _due_subscribers()

    out = run("send_digests", "--dry-run")

    assert out.splitlines()[0] == "2 subscriber(s) due"
    assert f"- subscriber {wanted.pk}: 1 paper(s)" in out
    assert "] Quantization for everyone" in out
    assert f"- subscriber {nothing_new.pk}: 0 paper(s)" in out
    assert not Delivery.objects.exists()
    assert mail.outbox == []


def test_send_digests_now_sends_in_process() -> None:
    wanted, nothing_new, not_due = _due_subscribers()

    out = run("send_digests", "--now")

    assert out.strip() == "1 sent, 1 skipped, 0 failed, 0 deferred"
    assert [m.to for m in mail.outbox] == [[wanted.email]]
    assert dict(Delivery.objects.values_list("subscriber_id", "status")) == {
        wanted.pk: Delivery.Status.SENT,
        nothing_new.pk: Delivery.Status.SKIPPED,
    }
    assert not Delivery.objects.filter(subscriber=not_due).exists()


def test_send_digests_queues_one_task_per_chunk() -> None:
    wanted, _, _ = _due_subscribers()

    out = run("send_digests")

    assert out.strip() == "queued 2 deliveries"
    # Tasks are eager in tests: the chunk ran when it was queued, after its dispatch committed.
    assert [m.to for m in mail.outbox] == [[wanted.email]]
    assert run("send_digests").strip() == "queued 0 deliveries"


def _served_again() -> tuple:
    """A subscriber who got today's digest, then had their schedule moved back to now by hand (as the
    README's "get a digest right away" does a second time the same day)."""
    wanted, _, _ = _due_subscribers()
    run("send_digests", "--now")
    wanted.refresh_from_db()
    PaperFactory(title="Quantization, the sequel", abstract="More quantization of weights.")
    wanted.next_send_at = timezone.now() - timedelta(seconds=1)
    wanted.save(update_fields=["next_send_at"])
    period = Delivery.objects.get(subscriber=wanted).period
    mail.outbox.clear()
    return wanted, period


def test_send_digests_says_why_a_due_subscriber_got_nothing() -> None:
    wanted, period = _served_again()

    out = run("send_digests", "--now")

    assert out.splitlines() == [
        "0 sent, 0 skipped, 0 failed, 0 deferred",
        f"- subscriber {wanted.pk}: nothing sent, already has this period's digest ({period}); "
        "their schedule moved on to the next one",
    ]
    assert mail.outbox == []
    wanted.refresh_from_db()
    assert wanted.next_send_at > timezone.now()


def test_send_digests_dry_run_agrees_with_the_real_run_on_a_period_already_served() -> None:
    wanted, period = _served_again()

    dry = run("send_digests", "--dry-run")
    queued = run("send_digests")

    assert dry.splitlines() == [
        "1 subscriber(s) due, 1 of them already have this period's digest (none is sent)",
        f"- subscriber {wanted.pk}: nothing, already has this period's digest ({period})",
    ]
    assert queued.splitlines()[0] == "queued 0 deliveries"
    assert f"- subscriber {wanted.pk}: nothing sent, already has this period's digest ({period})" in queued
    assert Delivery.objects.filter(subscriber=wanted).count() == 1

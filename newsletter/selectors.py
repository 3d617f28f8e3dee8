"""Reads used by the digest engine. Each is one query (or one per chunk), never one per subscriber."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Q
from django.db.models.functions import TruncDate

from newsletter.models import Delivery, DeliveryItem, Subscriber, Suppression
from papers.models import Paper, PaperTopic


def subscribers_due(*, now: datetime) -> list[int]:
    """Ids of confirmed, unsuppressed subscribers whose next digest time has come, in one query."""
    suppressed = Suppression.objects.filter(email=OuterRef("email"))
    return list(
        Subscriber.objects.filter(status=Subscriber.Status.ACTIVE, next_send_at__lte=now)
        .exclude(frequency=Subscriber.Frequency.OFF)
        .filter(~Exists(suppressed))
        .order_by("next_send_at", "id")
        .values_list("id", flat=True)
    )


@dataclass(frozen=True)
class CandidatePaper:
    id: int
    title: str
    abstract: str
    authors: list[str]
    url: str
    upvotes: int | None
    github_stars: int | None
    github_url: str
    ingested_at: datetime
    published_at: datetime | None
    topic_ids: tuple[int, ...]


# A candidate's `abstract` is Paper.abstract_clean, the text readers see (and ranking reads).
_CANDIDATE_FIELDS = (
    "id", "title", "abstract_clean", "authors", "url", "upvotes", "github_stars", "github_url",
    "ingested_at", "published_at",
)  # fmt: skip


def papers_candidates(*, since: datetime, until: datetime | None = None) -> list[CandidatePaper]:
    """Papers ingested after `since` (newest first, capped), with their topic ids: two queries."""
    queryset = Paper.objects.filter(ingested_at__gt=since)
    if until is not None:
        queryset = queryset.filter(ingested_at__lte=until)
    rows = list(
        queryset.order_by("-ingested_at", "-id").values_list(*_CANDIDATE_FIELDS)[
            : settings.NEWSLETTER_MAX_CANDIDATES
        ]
    )
    return _with_topics(rows)


def papers_by_ids(*, ids: Sequence[int]) -> list[CandidatePaper]:
    rows = list(Paper.objects.filter(id__in=ids).values_list(*_CANDIDATE_FIELDS))
    return _with_topics(rows)


def _with_topics(rows: list[tuple]) -> list[CandidatePaper]:
    topics: dict[int, list[int]] = defaultdict(list)
    for paper_id, topic_id in PaperTopic.objects.filter(paper_id__in=[r[0] for r in rows]).values_list(
        "paper_id", "topic_id"
    ):
        topics[paper_id].append(topic_id)
    return [CandidatePaper(*row, topic_ids=tuple(sorted(topics[row[0]]))) for row in rows]


def papers_already_sent(*, subscriber_ids: Sequence[int], paper_ids: Sequence[int]) -> set[tuple[int, int]]:
    """(subscriber id, paper id) pairs among these that some earlier digest already carried."""
    return set(
        DeliveryItem.objects.filter(subscriber_id__in=subscriber_ids, paper_id__in=paper_ids).values_list(
            "subscriber_id", "paper_id"
        )
    )


@dataclass(frozen=True)
class DayStats:
    day: date
    sent: int
    failed: int
    bounced: int


def stats_subscribers() -> dict[str, int]:
    """Subscribers by state, plus suppressed addresses."""
    counts = dict(Subscriber.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    result = {label: counts.get(value, 0) for value, label in Subscriber.Status.choices}
    result["Suppressed addresses"] = Suppression.objects.count()
    return result


def stats_deliveries_per_day(*, days: int, today: date) -> list[DayStats]:
    """Sent / failed / bounced deliveries per UTC day, oldest first, days without mail included."""
    start = today - timedelta(days=days - 1)
    rows = (
        Delivery.objects.filter(created_at__date__gte=start)
        .annotate(day=TruncDate("created_at", tzinfo=UTC))
        .values("day")
        .annotate(
            sent=Count("id", filter=Q(status=Delivery.Status.SENT)),
            failed=Count("id", filter=Q(status=Delivery.Status.FAILED)),
            bounced=Count("id", filter=Q(bounced=True)),
        )
    )
    by_day = {row["day"]: row for row in rows}
    out = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        row = by_day.get(day, {})
        out.append(DayStats(day, row.get("sent", 0), row.get("failed", 0), row.get("bounced", 0)))
    return out

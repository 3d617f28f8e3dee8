"""Reads used by the digest engine. Each is one query (or one per chunk), never one per subscriber."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

from anymail.signals import EventType
from django.conf import settings
from django.db.models import Count, Exists, OuterRef, Q
from django.db.models.functions import TruncDate

from newsletter.models import Delivery, DeliveryItem, EmailEvent, Subscriber, Suppression
from papers.models import Feed, Paper, PaperTopic


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


# Gmail's bulk-sender guideline: keep the spam complaint rate below 0.3% (and well below 0.1%).
RATE_LIMIT_LINE = 0.003


@dataclass(frozen=True)
class DayStats:
    day: date
    confirmed: int = 0  # new confirmed subscribers
    unsubscribed: int = 0
    sent: int = 0
    failed: int = 0
    bounced: int = 0
    complaints: int = 0
    papers: int = 0  # papers ingested

    @property
    def bounce_rate(self) -> float | None:
        return self.bounced / self.sent if self.sent else None

    @property
    def complaint_rate(self) -> float | None:
        return self.complaints / self.sent if self.sent else None


def stats_subscribers() -> dict[str, int]:
    """Subscribers by state, plus suppressed addresses."""
    counts = dict(Subscriber.objects.values_list("status").annotate(n=Count("id")).values_list("status", "n"))
    result = {label: counts.get(value, 0) for value, label in Subscriber.Status.choices}
    result["Suppressed addresses"] = Suppression.objects.count()
    return result


def _count_per_day(queryset, field: str, start: date, **counts) -> dict[date, dict[str, int]]:
    """{day: {name: count}} over rows whose `field` falls on or after `start`, grouped by UTC day."""
    counts = counts or {"n": Count("id")}
    rows = (
        queryset.filter(**{f"{field}__date__gte": start})
        .annotate(day=TruncDate(field, tzinfo=UTC))
        .values("day")
        .annotate(**counts)
    )
    return {row.pop("day"): row for row in rows}


def stats_per_day(*, days: int, today: date) -> list[DayStats]:
    """Per UTC day, oldest first, days without activity included: one grouped query per source."""
    start = today - timedelta(days=days - 1)
    deliveries = _count_per_day(
        Delivery.objects.all(),
        "created_at",
        start,
        sent=Count("id", filter=Q(status=Delivery.Status.SENT)),
        failed=Count("id", filter=Q(status=Delivery.Status.FAILED)),
        bounced=Count("id", filter=Q(bounced=True)),
    )
    confirmed = _count_per_day(Subscriber.objects.all(), "confirmed_at", start)
    unsubscribed = _count_per_day(Subscriber.objects.all(), "unsubscribed_at", start)
    complaints = _count_per_day(
        EmailEvent.objects.filter(event_type=EventType.COMPLAINED), "received_at", start
    )
    papers = _count_per_day(Paper.objects.all(), "ingested_at", start)
    out = []
    for offset in range(days):
        day = start + timedelta(days=offset)
        out.append(
            DayStats(
                day,
                confirmed=confirmed.get(day, {}).get("n", 0),
                unsubscribed=unsubscribed.get(day, {}).get("n", 0),
                complaints=complaints.get(day, {}).get("n", 0),
                papers=papers.get(day, {}).get("n", 0),
                **deliveries.get(day, {}),
            )
        )
    return out


@dataclass(frozen=True)
class FeedStats:
    name: str
    enabled: bool
    last_fetched_at: datetime | None
    last_status: str

    @property
    def failed(self) -> bool:
        return self.last_status.startswith("error")  # papers.services.fetch writes "error: ..."


def stats_feeds() -> list[FeedStats]:
    """Every feed with its last fetch and what it answered (an error is kept in last_status)."""
    return [
        FeedStats(*row)
        for row in Feed.objects.order_by("name").values_list(
            "name", "enabled", "last_fetched_at", "last_status"
        )
    ]

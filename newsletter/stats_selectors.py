"""Reads for the staff stats page (/staff/stats/): subscribers by state and activity per UTC day, one
grouped query per source."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from anymail.signals import EventType
from django.db.models import Count, Q
from django.db.models.functions import TruncDate

from newsletter.models import (
    Delivery,
    EmailEvent,
    Subscriber,
    Suppression,
)
from papers.models import Paper

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
    unverified: int = 0  # bounce-mailbox reports that proved no mail of ours (deliverability/trust.py)
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
    # A plain comparison with the first instant of `start`, not `field__date__gte` (a cast of every
    # row's value): an index on `field` can serve it, so the page reads the days shown, not the table.
    since = datetime.combine(start, time.min, tzinfo=UTC)
    rows = (
        queryset.filter(**{f"{field}__gte": since})
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
        EmailEvent.objects.filter(event_type=EventType.COMPLAINED, verified=True), "received_at", start
    )
    unverified = _count_per_day(EmailEvent.objects.filter(verified=False), "received_at", start)
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
                unverified=unverified.get(day, {}).get("n", 0),
                papers=papers.get(day, {}).get("n", 0),
                **deliveries.get(day, {}),
            )
        )
    return out

"""Step 1 of the pipeline: dispatch. Who is due, one Delivery per (subscriber, period), schedules moved
forward, and the sweeper that re-drives what a dead worker or a lost queue message left behind.

The dispatcher is the only code that decides who is due (Zulip's enqueue_digest_emails). It yields
delivery ids in chunks; the caller queues one task per chunk, and delivery.py takes it from there.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, islice
from typing import NamedTuple

from django.conf import settings
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from newsletter.models import Delivery, Subscriber
from newsletter.selectors import sending_pause_active, subscribers_due
from newsletter.services.schedule import period_key, subscriber_send_after_digest, window_start

logger = logging.getLogger("newsletter.dispatch")


def batched(values: Iterable[int], size: int) -> Iterator[list[int]]:
    iterator = iter(values)
    while chunk := list(islice(iterator, size)):
        yield chunk


@dataclass(frozen=True)
class DueDigest:
    """A due subscriber's digest period, and whether that period already has its Delivery (the
    schedule was moved back by hand, or edited the same day): then the dispatcher makes none."""

    subscriber_id: int
    period: str
    already_has_digest: bool


def _period(subscriber: Subscriber) -> str:
    return period_key(
        frequency=subscriber.frequency, scheduled_for=subscriber.next_send_at, tz=subscriber.timezone
    )


def dispatch_plan(*, now: datetime) -> list[DueDigest]:
    """What a dispatch at `now` would do for each due subscriber, in due order, changing nothing
    (`send_digests --dry-run`). The same rule as _dispatch_chunk: one Delivery per period."""
    due = subscribers_due(now=now)
    subscribers = Subscriber.objects.only("id", "frequency", "next_send_at", "timezone").in_bulk(due)
    periods = {pk: _period(subscriber) for pk, subscriber in subscribers.items()}
    existing = set(
        Delivery.objects.filter(subscriber_id__in=due, period__in=set(periods.values())).values_list(
            "subscriber_id", "period"
        )
    )
    return [DueDigest(pk, periods[pk], (pk, periods[pk]) in existing) for pk in due]


def digests_dispatch_iter(
    *,
    now: datetime | None = None,
    chunk_size: int | None = None,
    already_served: list[DueDigest] | None = None,
) -> Iterator[list[int]]:
    """Create this period's Delivery for every due subscriber and move their schedule forward.

    Yields the new pending delivery ids chunk by chunk, each right after its transaction commits,
    so the caller can queue it (one task per chunk) while the next chunk is being created: with a
    large list, workers start sending at once instead of after the whole dispatch. Due subscribers
    whose period already had its digest get none; they are appended to `already_served`, so that a
    caller can say why they got nothing.
    """
    now = now or timezone.now()
    chunk_size = chunk_size or settings.NEWSLETTER_CHUNK_SIZE
    served = already_served if already_served is not None else []
    for ids in batched(subscribers_due(now=now), chunk_size):
        if chunk := _dispatch_chunk(ids, now, served):
            yield chunk


def digests_dispatch(*, now: datetime | None = None, chunk_size: int | None = None) -> list[list[int]]:
    """digests_dispatch_iter, all at once."""
    return list(digests_dispatch_iter(now=now, chunk_size=chunk_size))


def dispatch_round(
    *, now: datetime | None = None, already_served: list[DueDigest] | None = None
) -> Iterator[list[int]]:
    """Everything there is to send now: the due digests, then whatever the sweeper re-drives.
    (Beat runs the two as separate tasks; `send_digests` runs them once, in this order.)"""
    return chain(digests_dispatch_iter(now=now, already_served=already_served), deliveries_sweep(now=now))


# What dispatching reads of a subscriber (services/schedule.py): the other columns (address, interests,
# preferences, JSON) are not loaded for the thousands of rows a round locks.
_SCHEDULE_FIELDS = (
    "id",
    "status",
    "frequency",
    "weekday",
    "send_hour",
    "timezone",
    "next_send_at",
    "last_digest_at",
)


class NewDelivery(NamedTuple):
    subscriber_id: int
    period: str
    first: bool
    scheduled_for: datetime
    window_start: datetime


def _dispatch_chunk(subscriber_ids: list[int], now: datetime, already_served: list[DueDigest]) -> list[int]:
    with transaction.atomic():
        # Re-check "due" under the row lock: a second dispatcher skips what the first one holds.
        subscribers = list(
            Subscriber.objects.select_for_update(skip_locked=True)
            .filter(id__in=subscriber_ids, status=Subscriber.Status.ACTIVE, next_send_at__lte=now)
            .exclude(frequency=Subscriber.Frequency.OFF)
            .only(*_SCHEDULE_FIELDS)
        )
        if not subscribers:
            return []
        deliveries = []
        for subscriber in subscribers:
            scheduled = subscriber.next_send_at
            deliveries.append(
                NewDelivery(
                    subscriber_id=subscriber.pk,
                    period=_period(subscriber),
                    first=subscriber.last_digest_at is None,
                    scheduled_for=scheduled,
                    window_start=window_start(subscriber=subscriber, now=now),
                )
            )
            subscriber.next_send_at = subscriber_send_after_digest(subscriber, scheduled=scheduled, now=now)
        # A period that already has its digest (schedule edited the same day) gets no second one.
        created = _deliveries_insert(deliveries, now)
        served = []
        for subscriber, delivery in zip(subscribers, deliveries, strict=True):
            if subscriber.pk in created:
                subscriber.last_digest_at = now
            else:
                served.append(DueDigest(subscriber.pk, delivery.period, already_has_digest=True))
        _schedules_save(subscribers)
    if served:
        logger.info("%s due subscriber(s) already have this period's digest: none sent", len(served))
        already_served.extend(served)
    return sorted(created.values())


# Keep in step with the Delivery model: every column without a database default is given here.
_INSERT_DELIVERIES = (
    f"INSERT INTO {Delivery._meta.db_table} (subscriber_id, period, kind, status, first, scheduled_for, "
    "window_start, window_end, attempts, last_error, created_at, queued_at, message_id, bounced) "
    "SELECT (r->>0)::bigint, r->>1, %s, %s, (r->>2)::boolean, (r->>3)::timestamptz, "
    "(r->>4)::timestamptz, %s, 0, '', %s, %s, '', false "
    "FROM jsonb_array_elements(%s::jsonb) AS r "
    "ON CONFLICT DO NOTHING RETURNING subscriber_id, id"
)


def _deliveries_insert(deliveries: list[NewDelivery], now: datetime) -> dict[int, int]:
    """Insert the chunk's new deliveries, skipping a period that already has one; returns the id of
    each created delivery by subscriber. On PostgreSQL one INSERT of a JSON document (as the picks
    are stored, digest.picks_record): bulk_create() prepared each of the 16 fields of each row, and
    a second query found what it had created, together half of the dispatch time."""
    if db_connection.vendor != "postgresql":
        Delivery.objects.bulk_create(
            [Delivery(**d._asdict(), window_end=now, queued_at=now) for d in deliveries],
            ignore_conflicts=True,
        )
        return dict(
            Delivery.objects.filter(
                subscriber_id__in=[d.subscriber_id for d in deliveries],
                window_end=now,
                status=Delivery.Status.PENDING,
            ).values_list("subscriber_id", "id")
        )
    rows = [
        (d.subscriber_id, d.period, d.first, d.scheduled_for.isoformat(), d.window_start.isoformat())
        for d in deliveries
    ]
    with db_connection.cursor() as cursor:
        cursor.execute(
            _INSERT_DELIVERIES,
            [Delivery.Kind.DIGEST, Delivery.Status.PENDING, now, timezone.now(), now, json.dumps(rows)],
        )
        return dict(cursor.fetchall())


_MOVE_SCHEDULES = (
    f"UPDATE {Subscriber._meta.db_table} AS s "
    "SET next_send_at = (r->>1)::timestamptz, last_digest_at = (r->>2)::timestamptz "
    "FROM jsonb_array_elements(%s::jsonb) AS r WHERE s.id = (r->>0)::bigint"
)


def _schedules_save(subscribers: list[Subscriber]) -> None:
    """Store the chunk's moved schedules. On PostgreSQL as one UPDATE from a JSON document:
    bulk_update() builds a CASE expression per row and field, two thirds of the dispatch time, and
    column arrays of timestamps are adapted element by element in Python."""
    if db_connection.vendor != "postgresql":
        Subscriber.objects.bulk_update(subscribers, ["next_send_at", "last_digest_at"])
        return
    rows = [(s.pk, _iso(s.next_send_at), _iso(s.last_digest_at)) for s in subscribers]
    with db_connection.cursor() as cursor:
        cursor.execute(_MOVE_SCHEDULES, [json.dumps(rows)])


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def deliveries_sweep(
    *, now: datetime | None = None, chunk_size: int | None = None, queued_before: datetime | None = None
) -> list[list[int]]:
    """Re-drive deliveries that a dead worker or a lost queue message left behind.

    SENDING whose lease ran out (NEWSLETTER_CLAIM_LEASE, renewed while a worker sends): the worker
    died mid-chunk; back to PENDING (or FAILED when out of attempts). PENDING whose task should have
    run more than NEWSLETTER_STALE_PENDING ago: the task was lost (broker restarted, queueing
    failed); queue it again, unless the brake paused sending. `queued_before` (a worker's broker
    connection was lost then, see config/celery.py) also re-queues at once every PENDING row queued
    before that moment: its task may be gone with the broker, and a duplicate task claims nothing.
    Both queries use the partial index on unfinished deliveries. Returns the id chunks to queue.
    """
    now = now or timezone.now()
    chunk_size = chunk_size or settings.NEWSLETTER_CHUNK_SIZE
    with transaction.atomic():
        stale = Delivery.objects.filter(
            status=Delivery.Status.SENDING, claimed_at__lt=now - settings.NEWSLETTER_CLAIM_LEASE
        )
        stale.filter(attempts__gte=settings.NEWSLETTER_MAX_ATTEMPTS).update(
            status=Delivery.Status.FAILED, last_error="worker lost; out of attempts"
        )
        # Back to PENDING with queued_at cleared, so the query below queues them again right away.
        stale.update(
            status=Delivery.Status.PENDING, queued_at=None, last_error="worker lost while sending; re-driven"
        )
        if sending_pause_active() is not None:
            # Brake hook (deliverability/brake.py): paused deliveries stay PENDING, queued again on resume.
            return []
        stale_before = now - settings.NEWSLETTER_STALE_PENDING
        if queued_before is not None:
            stale_before = max(stale_before, queued_before)
        never_picked_up = Q(queued_at__isnull=True) | Q(queued_at__lt=stale_before)
        lost = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(never_picked_up, status=Delivery.Status.PENDING)
            .order_by("id")
            .values_list("id", flat=True)
        )
        Delivery.objects.filter(id__in=lost).update(queued_at=now)
    if lost:
        logger.info("sweeper re-queued %s deliveries", len(lost))
    return list(batched(lost, chunk_size))

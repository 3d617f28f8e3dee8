"""Step 1 of the pipeline: dispatch. Who is due, one Delivery per (subscriber, period), schedules moved
forward, and the sweeper that re-drives what a dead worker or a lost queue message left behind.

The dispatcher is the only code that decides who is due (Zulip's enqueue_digest_emails). It yields
delivery ids in chunks; the caller queues one task per chunk, and delivery.py takes it from there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import datetime
from itertools import chain, islice

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


def _dispatch_chunk(subscriber_ids: list[int], now: datetime, already_served: list[DueDigest]) -> list[int]:
    with transaction.atomic():
        # Re-check "due" under the row lock: a second dispatcher skips what the first one holds.
        subscribers = list(
            Subscriber.objects.select_for_update(skip_locked=True)
            .filter(id__in=subscriber_ids, status=Subscriber.Status.ACTIVE, next_send_at__lte=now)
            .exclude(frequency=Subscriber.Frequency.OFF)
        )
        if not subscribers:
            return []
        deliveries = []
        for subscriber in subscribers:
            scheduled = subscriber.next_send_at
            deliveries.append(
                Delivery(
                    subscriber=subscriber,
                    period=_period(subscriber),
                    scheduled_for=scheduled,
                    window_start=window_start(subscriber=subscriber, now=now),
                    window_end=now,
                    queued_at=now,
                    first=subscriber.last_digest_at is None,
                )
            )
            subscriber.next_send_at = subscriber_send_after_digest(subscriber, scheduled=scheduled, now=now)
        # A period that already has its digest (schedule edited the same day) gets no second one.
        Delivery.objects.bulk_create(deliveries, ignore_conflicts=True)
        created = dict(
            Delivery.objects.filter(
                subscriber_id__in=[s.pk for s in subscribers], window_end=now, status=Delivery.Status.PENDING
            ).values_list("subscriber_id", "id")
        )
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


_MOVE_SCHEDULES = (
    f"UPDATE {Subscriber._meta.db_table} AS s "
    "SET next_send_at = v.next_send_at, last_digest_at = v.last_digest_at "
    "FROM unnest(%s::bigint[], %s::timestamptz[], %s::timestamptz[]) AS v(id, next_send_at, last_digest_at) "
    "WHERE s.id = v.id"
)


def _schedules_save(subscribers: list[Subscriber]) -> None:
    """Store the chunk's moved schedules. On PostgreSQL as one UPDATE from column arrays:
    bulk_update() builds a CASE expression per row and field, two thirds of the dispatch time."""
    if db_connection.vendor != "postgresql":
        Subscriber.objects.bulk_update(subscribers, ["next_send_at", "last_digest_at"])
        return
    with db_connection.cursor() as cursor:
        cursor.execute(
            _MOVE_SCHEDULES,
            [
                [s.pk for s in subscribers],
                [s.next_send_at for s in subscribers],
                [s.last_digest_at for s in subscribers],
            ],
        )


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

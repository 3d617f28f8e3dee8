"""Digest delivery: dispatch due subscribers, claim deliveries atomically, send, sweep.

The Delivery row is the source of truth (Zulip's ScheduledEmail, healthchecks' sendreports):

    dispatcher ──creates──▶ PENDING ──claim (atomic)──▶ SENDING ──▶ SENT
                              ▲                           │   └──▶ FAILED  (5xx, or attempts used up)
                              └──── deferred (4xx, SMTP down) or re-driven by the sweeper

A task only carries delivery ids. Whatever happens to the broker or a worker, the sweeper finds
PENDING rows nobody picked up and SENDING rows whose worker died, and queues them again; the
atomic claim makes a duplicate task harmless.
"""

from __future__ import annotations

import logging
import smtplib
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from itertools import islice

from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from django.conf import settings
from django.core.mail import get_connection
from django.db import connection as db_connection
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from newsletter.models import Delivery, Subscriber, Suppression
from newsletter.selectors import subscribers_due
from newsletter.services.digest import (
    DigestContent,
    DigestItems,
    digest_email_parts,
    digest_values,
    digests_build,
    topic_names,
    window_start,
)
from newsletter.services.emails import build_email
from newsletter.services.schedule import next_send_time, period_key

logger = logging.getLogger("newsletter.delivery")


def batched(values: Iterable[int], size: int) -> Iterator[list[int]]:
    iterator = iter(values)
    while chunk := list(islice(iterator, size)):
        yield chunk


# --- dispatch --------------------------------------------------------------------------------


def digests_dispatch_iter(
    *, now: datetime | None = None, chunk_size: int | None = None
) -> Iterator[list[int]]:
    """Create this period's Delivery for every due subscriber and move their schedule forward.

    Yields the new pending delivery ids chunk by chunk, each right after its transaction commits,
    so the caller can queue it (one task per chunk) while the next chunk is being created: with a
    large list, workers start sending at once instead of after the whole dispatch.
    """
    now = now or timezone.now()
    chunk_size = chunk_size or settings.NEWSLETTER_CHUNK_SIZE
    for ids in batched(subscribers_due(now=now), chunk_size):
        if chunk := _dispatch_chunk(ids, now):
            yield chunk


def digests_dispatch(*, now: datetime | None = None, chunk_size: int | None = None) -> list[list[int]]:
    """digests_dispatch_iter, all at once."""
    return list(digests_dispatch_iter(now=now, chunk_size=chunk_size))


# A late digest (the service was down at the due time) is not followed by the regular one within this.
MIN_GAP_AFTER_LATE_DIGEST = timedelta(hours=6)


def _following_send_time(subscriber: Subscriber, *, scheduled: datetime, now: datetime) -> datetime | None:
    """The send time after this one. Forward from the later of now and the due time: a subscriber
    missed for days gets one digest now, not one per missed day, and not a second one minutes later
    because the regular time happens to be near."""
    schedule = {
        "frequency": subscriber.frequency,
        "weekday": subscriber.weekday,
        "hour": subscriber.send_hour,
        "tz": subscriber.timezone,
    }
    following = next_send_time(**schedule, after=max(now, scheduled))
    if following is not None and following - now < MIN_GAP_AFTER_LATE_DIGEST:
        following = next_send_time(**schedule, after=following)
    return following


def _dispatch_chunk(subscriber_ids: list[int], now: datetime) -> list[int]:
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
                    period=period_key(
                        frequency=subscriber.frequency, scheduled_for=scheduled, tz=subscriber.timezone
                    ),
                    scheduled_for=scheduled,
                    window_start=window_start(subscriber=subscriber, now=now),
                    window_end=now,
                    queued_at=now,
                )
            )
            subscriber.next_send_at = _following_send_time(subscriber, scheduled=scheduled, now=now)
        # A period that already has its digest (schedule edited the same day) gets no second one.
        Delivery.objects.bulk_create(deliveries, ignore_conflicts=True)
        created = dict(
            Delivery.objects.filter(
                subscriber_id__in=[s.pk for s in subscribers], window_end=now, status=Delivery.Status.PENDING
            ).values_list("subscriber_id", "id")
        )
        for subscriber in subscribers:
            if subscriber.pk in created:
                subscriber.last_digest_at = now
        _schedules_save(subscribers)
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


# --- claim and send --------------------------------------------------------------------------


def deliveries_claim(*, delivery_ids: Sequence[int], now: datetime) -> list[Delivery]:
    """PENDING -> SENDING for the ids no one else holds; returns only what this caller claimed."""
    with transaction.atomic():
        claimed = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(id__in=delivery_ids, status=Delivery.Status.PENDING)
            .values_list("id", flat=True)
        )
        Delivery.objects.filter(id__in=claimed).update(
            status=Delivery.Status.SENDING, claimed_at=now, attempts=F("attempts") + 1
        )
    return list(Delivery.objects.filter(id__in=claimed).select_related("subscriber").order_by("id"))


@dataclass
class SendResult:
    sent: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)


class SendError(Exception):
    def __init__(self, message: str, *, permanent: bool, connection_lost: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.connection_lost = connection_lost


def classify_send_error(exc: Exception) -> SendError:
    """Permanent (5xx for this recipient: never retry) or temporary (retry with backoff)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(
            f"{code} {msg.decode(errors='replace') if isinstance(msg, bytes) else msg}"
            for code, msg in exc.recipients.values()
        )
        return SendError(f"recipient refused: {detail}", permanent=all(500 <= c < 600 for c in codes))
    if isinstance(exc, smtplib.SMTPSenderRefused):
        # Our own sender address refused: a configuration problem, not this recipient's. Retry.
        return SendError(
            f"sender refused: {exc.smtp_code} {exc.smtp_error!r}", permanent=False, connection_lost=True
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        message = (
            exc.smtp_error.decode(errors="replace")
            if isinstance(exc.smtp_error, bytes)
            else str(exc.smtp_error)
        )
        return SendError(f"SMTP {exc.smtp_code} {message}", permanent=500 <= exc.smtp_code < 600)
    if isinstance(exc, AnymailRecipientsRefused):
        return SendError(f"recipient refused by ESP: {exc}", permanent=True)
    if isinstance(exc, AnymailAPIError):
        status = exc.status_code
        temporary = status is None or status >= 500 or status == 429
        return SendError(f"ESP API error {status}: {exc}", permanent=not temporary, connection_lost=temporary)
    return SendError(f"{type(exc).__name__}: {exc}", permanent=False, connection_lost=True)


def deliveries_send(*, delivery_ids: Sequence[int], now: datetime | None = None) -> SendResult:
    """Claim, build and send a chunk of deliveries over one connection, recording each outcome.

    Each outcome is written right after its SMTP transaction, so a crash can repeat at most the one
    message in flight. Temporary failures go back to PENDING (the task retries them); permanent
    ones fail that delivery only.
    """
    now = now or timezone.now()
    result = SendResult()
    claimed = deliveries_claim(delivery_ids=delivery_ids, now=now)
    if not claimed:
        return result
    live = _drop_unreachable(claimed, result)
    contents = digests_build(deliveries=live, now=now)
    outgoing = []
    items = DigestItems(topic_names()) if contents else None
    for content in contents:
        message = _message_for(content, items)
        if message is None:
            _finish(content.delivery, Delivery.Status.SKIPPED, "nothing new to send")
            result.skipped.append(content.delivery.pk)
        else:
            outgoing.append((content.delivery, message))
    if outgoing:
        _send_all(outgoing, result)
    return result


def _drop_unreachable(deliveries: list[Delivery], result: SendResult) -> list[Delivery]:
    """Subscribers who left or were suppressed after the dispatch get nothing."""
    suppressed = set(
        Suppression.objects.filter(email__in=[d.subscriber.email for d in deliveries]).values_list(
            "email", flat=True
        )
    )
    live = []
    for delivery in deliveries:
        if delivery.subscriber.status != Subscriber.Status.ACTIVE or delivery.subscriber.email in suppressed:
            _finish(delivery, Delivery.Status.SKIPPED, "subscriber unsubscribed or suppressed")
            result.skipped.append(delivery.pk)
        else:
            live.append(delivery)
    return live


def _message_for(content: DigestContent, items: DigestItems):
    delivery, subscriber = content.delivery, content.delivery.subscriber
    html = subscriber.email_format == Subscriber.Format.HTML
    if content.picks:
        rendered, values = digest_email_parts(content, items)
        return build_email(
            "digest",
            to=subscriber.email,
            context={},
            unsubscribe_url=values["unsubscribe_url"],
            rendered=rendered,
        )
    if (
        subscriber.frequency == Subscriber.Frequency.WEEKLY
        and subscriber.notify_empty
        and delivery.kind != Delivery.Kind.TEST
    ):
        Delivery.objects.filter(pk=delivery.pk).update(kind=Delivery.Kind.EMPTY)
        values = digest_values(delivery=delivery, subscriber=subscriber, count=0)
        return build_email(
            "empty", to=subscriber.email, context=values, unsubscribe_url=values["unsubscribe_url"], html=html
        )
    return None


@contextmanager
def _outcome_writes() -> Iterator[None]:
    """The session setting for the outcome writes of one chunk (NEWSLETTER_ASYNC_COMMIT_OUTCOMES)."""
    if not (settings.NEWSLETTER_ASYNC_COMMIT_OUTCOMES and db_connection.vendor == "postgresql"):
        yield
        return
    with db_connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO off")
    try:
        yield
    finally:
        with db_connection.cursor() as cursor:
            cursor.execute("RESET synchronous_commit")


def _send_all(outgoing: list[tuple[Delivery, object]], result: SendResult) -> None:
    with _outcome_writes():
        _send_over_one_connection(outgoing, result)


def _send_over_one_connection(outgoing: list[tuple[Delivery, object]], result: SendResult) -> None:
    connection = get_connection()
    try:
        for index, (delivery, message) in enumerate(outgoing):
            started = time.monotonic()
            try:
                # Open explicitly: send_messages() closes a connection it opened itself, which would
                # mean one SMTP session per email. open() is a no-op while the session is up.
                connection.open()
                connection.send_messages([message])
            except Exception as exc:  # classified below; nothing is swallowed silently
                error = classify_send_error(exc)
                _log_attempt(delivery, "failed" if error.permanent else "deferred", started, str(error))
                _record_failure(delivery, error, result)
                if error.connection_lost:
                    connection.close()
                    # The server is unreachable or refuses us: the rest of the chunk waits too.
                    for rest, _ in outgoing[index + 1 :]:
                        _record_failure(rest, SendError(f"not attempted: {error}", permanent=False), result)
                    return
                continue
            _mark_sent(delivery, message.extra_headers.get("Message-ID", ""))
            result.sent.append(delivery.pk)
            _log_attempt(delivery, "sent", started)
    finally:
        connection.close()


_MARK_SENT = (
    f"UPDATE {Delivery._meta.db_table} SET status = %s, sent_at = %s, message_id = %s, last_error = '' "
    "WHERE id = %s AND status = %s"
)


def _mark_sent(delivery: Delivery, message_id: str) -> None:
    # The one write per email, so plain SQL: QuerySet.update() costs as much again in Python.
    with db_connection.cursor() as cursor:
        cursor.execute(
            _MARK_SENT,
            [Delivery.Status.SENT, timezone.now(), message_id[:255], delivery.pk, Delivery.Status.SENDING],
        )


def _record_failure(delivery: Delivery, error: SendError, result: SendResult) -> None:
    if error.permanent or delivery.attempts >= settings.NEWSLETTER_MAX_ATTEMPTS:
        _finish(delivery, Delivery.Status.FAILED, str(error))
        result.failed.append(delivery.pk)
    else:
        _finish(delivery, Delivery.Status.PENDING, str(error))
        result.deferred.append(delivery.pk)


def _finish(delivery: Delivery, status: str, error: str) -> None:
    Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.SENDING).update(
        status=status, last_error=error[:2000]
    )


def _log_attempt(delivery: Delivery, outcome: str, started: float, error: str = "") -> None:
    # One structured line per attempt; the address never appears at INFO (ids are enough to look it up).
    logger.info(
        "delivery_attempt delivery=%s subscriber=%s attempt=%s outcome=%s duration_ms=%.1f%s",
        delivery.pk,
        delivery.subscriber_id,
        delivery.attempts,
        outcome,
        (time.monotonic() - started) * 1000,
        f" error={error!r}" if error else "",
    )


# --- sweeper ---------------------------------------------------------------------------------


def deliveries_sweep(*, now: datetime | None = None, chunk_size: int | None = None) -> list[list[int]]:
    """Re-drive deliveries that a dead worker or a lost queue message left behind.

    SENDING for longer than NEWSLETTER_STALE_CLAIM: the worker died mid-chunk; back to PENDING (or
    FAILED when out of attempts). PENDING and not queued for NEWSLETTER_STALE_PENDING: the task was
    lost (broker restarted); queue it again. Returns the id chunks to queue.
    """
    now = now or timezone.now()
    chunk_size = chunk_size or settings.NEWSLETTER_CHUNK_SIZE
    with transaction.atomic():
        stale = Delivery.objects.filter(
            status=Delivery.Status.SENDING, claimed_at__lt=now - settings.NEWSLETTER_STALE_CLAIM
        )
        stale.filter(attempts__gte=settings.NEWSLETTER_MAX_ATTEMPTS).update(
            status=Delivery.Status.FAILED, last_error="worker lost; out of attempts"
        )
        # Back to PENDING with queued_at cleared, so the query below queues them again right away.
        stale.update(
            status=Delivery.Status.PENDING, queued_at=None, last_error="worker lost while sending; re-driven"
        )
        never_picked_up = Q(queued_at__isnull=True) | Q(queued_at__lt=now - settings.NEWSLETTER_STALE_PENDING)
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

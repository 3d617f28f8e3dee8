"""Step 4 of the pipeline: send. Claim a chunk's deliveries atomically, build and send each email,
record each outcome.

The Delivery row is the source of truth (Zulip's ScheduledEmail, healthchecks' sendreports):

    dispatcher ──creates──▶ PENDING ──claim (atomic)──▶ SENDING ──▶ SENT     (kind DIGEST or EMPTY)
    (dispatch.py)             ▲                           │   ├──▶ SKIPPED  (nothing to send, or
                              │                           │   │             the reader left)
                              │                           │   └──▶ FAILED   (5xx, or attempts used up)
                              └──── deferred (4xx, SMTP down) or re-driven by the sweeper (dispatch.py)

A task only carries delivery ids. Whatever happens to the broker or a worker, the sweeper finds
PENDING rows nobody picked up and SENDING rows whose worker died, and queues them again; the
atomic claim makes a duplicate task harmless.
"""

from __future__ import annotations

import logging
import re
import smtplib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from anymail.exceptions import AnymailAPIError, AnymailRecipientsRefused
from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection
from django.db import DatabaseError, transaction
from django.db.models import F
from django.utils import timezone

from newsletter.models import Delivery, Subscriber
from newsletter.selectors import sending_pause_active
from newsletter.services.addresses import emails_suppressed
from newsletter.services.deliverability.sendrate import SendPacer, pacer_for_chunk
from newsletter.services.deliverability.warmup import warmup_admit, warmup_return, warmup_trouble
from newsletter.services.digest import DeliveryPicks, digests_build
from newsletter.services.outcomes import Outcome, OutcomeRecorder, outcome_writes, retry_delay
from newsletter.services.render import PaperRowCache, digest_email
from newsletter.services.smtp import message_sender

logger = logging.getLogger("newsletter.delivery")


# --- claim and send --------------------------------------------------------------------------


def deliveries_claim(*, delivery_ids: Sequence[int], now: datetime) -> list[Delivery]:
    """PENDING -> SENDING for the ids no one else holds; returns only what this caller claimed."""
    # `__in_array`: a chunk's ids as one parameter, not 200 (papers/lookups.py).
    with transaction.atomic():
        claimed = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(id__in_array=delivery_ids, status=Delivery.Status.PENDING)
            .values_list("id", flat=True)
        )
        Delivery.objects.filter(id__in_array=claimed).update(
            status=Delivery.Status.SENDING, claimed_at=now, attempts=F("attempts") + 1
        )
    return list(Delivery.objects.filter(id__in_array=claimed).select_related("subscriber").order_by("id"))


@dataclass
class SendResult:
    sent: list[int] = field(default_factory=list)
    failed: list[int] = field(default_factory=list)
    deferred: list[int] = field(default_factory=list)
    skipped: list[int] = field(default_factory=list)
    retry_at: datetime | None = None  # when the deferred ones are due again (the task's countdown)
    # Held back by the warm-up cap until the next day: the sweeper queues them then, not the task.
    waiting: list[int] = field(default_factory=list)
    paused: bool = False  # the brake is on: nothing was claimed


class SendError(Exception):
    def __init__(
        self, message: str, *, permanent: bool, connection_lost: bool = False, throttled: bool = False
    ) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.connection_lost = connection_lost
        self.throttled = (
            throttled  # the relay wants us slower (services/deliverability/sendrate.py cuts the rate)
        )


# 421 is "service busy, closing"; other 4xx count when their text says slow down.
_THROTTLING = re.compile(r"\brate\b|throttl|slow down|too many|too fast|volume|limit exceeded", re.IGNORECASE)


def is_throttling(code: int, message: str) -> bool:
    return code == 421 or (400 <= code < 500 and bool(_THROTTLING.search(message)))


def classify_send_error(exc: Exception) -> SendError:
    """Permanent (5xx for this recipient: never retry) or temporary (retry with backoff)."""
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        detail = "; ".join(
            f"{code} {msg.decode(errors='replace') if isinstance(msg, bytes) else msg}"
            for code, msg in exc.recipients.values()
        )
        return SendError(
            f"recipient refused: {detail}",
            permanent=all(500 <= c < 600 for c in codes),
            throttled=any(is_throttling(c, detail) for c in codes),
        )
    if isinstance(exc, smtplib.SMTPSenderRefused):
        # Our own sender address refused: a configuration problem, not this recipient's. Retry.
        return SendError(
            f"sender refused: {exc.smtp_code} {exc.smtp_error!r}",
            permanent=False,
            connection_lost=True,
            throttled=is_throttling(exc.smtp_code, str(exc.smtp_error)),
        )
    if isinstance(exc, smtplib.SMTPResponseException):
        message = (
            exc.smtp_error.decode(errors="replace")
            if isinstance(exc.smtp_error, bytes)
            else str(exc.smtp_error)
        )
        return SendError(
            f"SMTP {exc.smtp_code} {message}",
            permanent=500 <= exc.smtp_code < 600,
            throttled=is_throttling(exc.smtp_code, message),
        )
    if isinstance(exc, AnymailRecipientsRefused):
        return SendError(f"recipient refused by ESP: {exc}", permanent=True)
    if isinstance(exc, AnymailAPIError):
        status = exc.status_code
        throttled = status == 429 or bool(re.search(r"throttl|rate exceeded", str(exc), re.IGNORECASE))
        temporary = status is None or status >= 500 or throttled
        return SendError(
            f"ESP API error {status}: {exc}",
            permanent=not temporary,
            connection_lost=temporary,
            throttled=throttled,
        )
    return SendError(f"{type(exc).__name__}: {exc}", permanent=False, connection_lost=True)


def deliveries_send(*, delivery_ids: Sequence[int], now: datetime | None = None) -> SendResult:
    """Claim, build and send a chunk of deliveries over one connection, recording each outcome.

    Each outcome is written right after its SMTP transaction, so a crash can repeat at most the one
    message in flight. Temporary failures go back to PENDING (the task retries them); permanent
    ones fail that delivery only. A database error before anything is sent hands the claim back as
    soon as the database answers again, so the task's retry can take it at once.
    """
    now = now or timezone.now()
    result = SendResult()
    # Brake hook (deliverability/brake.py): while sending is paused nothing is claimed; all stays PENDING.
    if sending_pause_active() is not None:
        result.paused = True
        return result
    claimed = deliveries_claim(delivery_ids=delivery_ids, now=now)
    if not claimed:
        return result
    # Warm-up hook (services/deliverability/warmup.py): only today's allowance goes out, oldest first.
    admission = warmup_admit(deliveries=claimed, now=now)
    if admission.retry_at is not None:
        result.deferred += admission.held_back
        result.retry_at = admission.retry_at
    else:
        result.waiting += admission.held_back
    try:
        _send_admitted(admission.admitted, result, now)
    finally:
        warmup_return(admission=admission, sent=len(result.sent))
    return result


def _send_admitted(claimed: list[Delivery], result: SendResult, now: datetime) -> None:
    if not claimed:
        return
    try:
        outgoing = _build(claimed, result, now)
    except DatabaseError as exc:
        recorder = OutcomeRecorder(chunk_ids=[d.pk for d in claimed], first_error=exc)
        recorder.recover(release=[d.pk for d in claimed])
        result.deferred += [d.pk for d in claimed if d.pk not in result.skipped]
        return
    if outgoing:
        _send_all(outgoing, result)


def _build(claimed: list[Delivery], result: SendResult, now: datetime) -> list[Outgoing]:
    """The emails of the claimed deliveries; those with nothing to send are finished as SKIPPED."""
    live = _drop_unreachable(claimed, result)
    built = digests_build(deliveries=live, now=now)
    outgoing = []
    rows = PaperRowCache() if built else None
    for digest in built:
        if not _worth_sending(digest):
            _finish(digest.delivery, Delivery.Status.SKIPPED, "nothing new to send")
            result.skipped.append(digest.delivery.pk)
        else:
            message = digest_email(delivery=digest.delivery, picks=digest.picks, rows=rows)
            kind = Delivery.Kind.DIGEST if digest.picks else Delivery.Kind.EMPTY
            outgoing.append(Outgoing(digest.delivery, message, kind))
    return outgoing


def _drop_unreachable(deliveries: list[Delivery], result: SendResult) -> list[Delivery]:
    """Subscribers who left or were suppressed after the dispatch get nothing."""
    suppressed = emails_suppressed([d.subscriber.email for d in deliveries])
    live = []
    for delivery in deliveries:
        if delivery.subscriber.status != Subscriber.Status.ACTIVE or delivery.subscriber.email in suppressed:
            _finish(delivery, Delivery.Status.SKIPPED, "subscriber unsubscribed or suppressed")
            result.skipped.append(delivery.pk)
        else:
            live.append(delivery)
    return live


def _worth_sending(digest: DeliveryPicks) -> bool:
    """A digest with papers, or the "nothing new this week" notice for those who asked for it."""
    subscriber = digest.delivery.subscriber
    return bool(digest.picks) or (
        subscriber.frequency == Subscriber.Frequency.WEEKLY and subscriber.notify_empty
    )


@dataclass(frozen=True)
class Outgoing:
    delivery: Delivery
    message: EmailMultiAlternatives
    kind: str  # recorded with the SENT mark: a digest, or the empty notice


def _send_all(outgoing: list[Outgoing], result: SendResult) -> None:
    recorder = OutcomeRecorder(chunk_ids=[item.delivery.pk for item in outgoing])
    with outcome_writes(recorder):  # ends by making the chunk's outcomes durable (outcomes.py)
        attempted = _send_over_one_connection(outgoing, result, recorder)
    if recorder.broken:
        recorder.recover(release=[item.delivery.pk for item in outgoing[attempted:]])
        result.deferred += [item.delivery.pk for item in outgoing[attempted:]]


def _send_over_one_connection(outgoing: list[Outgoing], result: SendResult, recorder: OutcomeRecorder) -> int:
    """Send over one SMTP session, recording each outcome; returns how many emails were attempted."""
    connection = get_connection()
    send = message_sender(connection)  # Django's SMTP backend: the lean transaction of smtp.py
    pacer = pacer_for_chunk()  # None without NEWSLETTER_SEND_RATE: no limiter, no Redis call
    try:
        for index, item in enumerate(outgoing):
            if recorder.broken:
                return index
            recorder.renew_lease()
            # Send-rate hook (deliverability/sendrate.py): hold a permit, or put the rest of the chunk off.
            if pacer is not None and not _paced(pacer, outgoing[index:], result, recorder):
                return len(outgoing) if not recorder.broken else index
            delivery, message = item.delivery, item.message
            started = time.monotonic()
            try:
                # Open explicitly: send_messages() closes a connection it opened itself, which would
                # mean one SMTP session per email. open() is a no-op while the session is up.
                connection.open()
                send(message)
            except Exception as exc:  # classified below; nothing is swallowed silently
                error = classify_send_error(exc)
                _log_attempt(delivery, "failed" if error.permanent else "deferred", started, str(error))
                if error.throttled and pacer is not None and pacer.slow_down(reason=str(error)):
                    warmup_trouble()  # a day the relay pushed back: the warm-up cap does not grow
                _record_failure(delivery, error, result, recorder)
                if error.connection_lost:
                    connection.close()
                    # The server is unreachable or refuses us: the rest of the chunk waits too.
                    for rest in outgoing[index + 1 :]:
                        not_attempted = SendError(f"not attempted: {error}", permanent=False)
                        _record_failure(rest.delivery, not_attempted, result, recorder)
                    return len(outgoing)
                continue
            message_id = message.extra_headers.get("Message-ID", "")
            recorder.record(Outcome(delivery.pk, Delivery.Status.SENT, message_id=message_id, kind=item.kind))
            result.sent.append(delivery.pk)
            _log_attempt(delivery, "sent", started)
        return len(outgoing)
    finally:
        connection.close()


def _paced(pacer: SendPacer, rest: list[Outgoing], result: SendResult, recorder: OutcomeRecorder) -> bool:
    """Wait for a permit for rest[0] (renewing the lease); False when `rest` was put off instead."""
    retry_in = pacer.wait(recipient=rest[0].delivery.subscriber.email, renew=recorder.renew_lease)
    if retry_in is None:
        return True
    rest_ids = [item.delivery.pk for item in rest]
    due = timezone.now() + timedelta(seconds=retry_in)
    if recorder.postpone(rest_ids, until=due, reason="waiting for the send rate"):
        result.deferred += rest_ids
        result.retry_at = max(result.retry_at or due, due)
    return False


def _record_failure(
    delivery: Delivery, error: SendError, result: SendResult, recorder: OutcomeRecorder
) -> None:
    if error.permanent or delivery.attempts >= settings.NEWSLETTER_MAX_ATTEMPTS:
        recorder.record(Outcome(delivery.pk, Delivery.Status.FAILED, error=str(error)))
        result.failed.append(delivery.pk)
    else:
        due = timezone.now() + retry_delay(delivery.attempts)
        recorder.record(Outcome(delivery.pk, Delivery.Status.PENDING, error=str(error), queued_at=due))
        result.deferred.append(delivery.pk)
        result.retry_at = max(result.retry_at or due, due)


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

"""Thin Celery tasks: take ids (or a form's plain values), call a service, own the retry policy.

Entry points may queue tasks; services never do. So when a service's answer calls for an email or
a chunk to send, the task that called it queues the follow-up.
"""

from __future__ import annotations

import smtplib
from collections.abc import Iterable
from datetime import datetime

from celery import Task, shared_task
from django.conf import settings
from django.db import DatabaseError, OperationalError
from django.utils import timezone
from kombu.exceptions import OperationalError as KombuOperationalError
from redis.exceptions import ConnectionError as RedisConnectionError

from newsletter.selectors import Preferences
from newsletter.services.deliverability.bounces import bounce_mailbox_process
from newsletter.services.deliverability.brake import brake_check
from newsletter.services.deliverability.events import event_process
from newsletter.services.delivery import deliveries_send
from newsletter.services.digest import picks_orphans_delete
from newsletter.services.dispatch import deliveries_sweep, digests_dispatch_iter
from newsletter.services.learning.library_formats import LibraryItem
from newsletter.services.learning.reader_model import reader_model_fit
from newsletter.services.subscription import (
    Answer,
    EmailKind,
    subscriber_email_send,
    subscriber_request_link,
    subscriber_subscribe,
    subscribers_expire_pending,
)

# Every countdown below stays far under the broker's visibility timeout (1 h), so a task waiting for
# its retry is never redelivered as well.
RETRY_BACKOFF = settings.NEWSLETTER_RETRY_BACKOFF_SECONDS
RETRY_BACKOFF_MAX = 600


class DeliveriesDeferred(Exception):
    """Some deliveries of the chunk met a temporary failure and are PENDING again."""


def chunks_queue(chunks: Iterable[list[int]]) -> int:
    """One task per chunk of delivery ids (not per email); returns how many deliveries were queued."""
    total = 0
    for chunk in chunks:
        send_digest_chunk.delay(chunk)
        total += len(chunk)
    return total


@shared_task
def dispatch_digests() -> None:
    """Beat entry point: create due deliveries and queue each chunk as soon as it is committed."""
    chunks_queue(digests_dispatch_iter())


@shared_task
def sweep_deliveries(queued_before: str | None = None) -> None:
    """Beat entry point: re-queue what a dead worker or a lost queue message left behind. A worker
    whose broker connection came back queues it with `queued_before` (ISO time of the loss)."""
    lost_at = datetime.fromisoformat(queued_before) if queued_before else None
    chunks_queue(deliveries_sweep(queued_before=lost_at))
    picks_orphans_delete()  # picks a delete racing a chunk left pointing at nothing


# The database or the broker went away for a moment (a restart, a failover): the chunk is retried
# within seconds, not left for the sweeper. Bounded: 1, 2, 4, ... 30 s, about 3 minutes in all.
CONNECTION_ERRORS = (DatabaseError, KombuOperationalError, RedisConnectionError)
CONNECTION_RETRY_MAX = 30
CONNECTION_RETRIES = 10


# Safe with acks_late: a redelivered chunk only claims deliveries still PENDING.
@shared_task(bind=True, max_retries=settings.NEWSLETTER_MAX_ATTEMPTS + CONNECTION_RETRIES)
def send_digest_chunk(self: Task, delivery_ids: list[int]) -> None:
    try:
        result = deliveries_send(delivery_ids=delivery_ids)
    except CONNECTION_ERRORS as exc:
        raise self.retry(exc=exc, countdown=min(2**self.request.retries, CONNECTION_RETRY_MAX)) from exc
    if result.deferred:
        # Due when the deliveries' own retry time comes (services/outcomes.retry_delay); deliveries
        # released after a database error are due at once.
        countdown = max((result.retry_at - timezone.now()).total_seconds(), 1) if result.retry_at else 1
        raise self.retry(
            exc=DeliveriesDeferred(f"{len(result.deferred)} deliveries deferred"), countdown=countdown
        )


def queue_answer_email(answer: Answer) -> None:
    """Queue the email a sign-up or link request called for, once the transaction commits."""
    if answer.email is not None:
        send_subscriber_email.delay_on_commit(answer.subscriber_id, str(answer.email))


# The sign-up and link forms queue these for every valid post, whatever the address: deciding here,
# not in the web request, keeps the answer and its timing the same for known and unknown addresses.
@shared_task(autoretry_for=(OperationalError,), retry_backoff=RETRY_BACKOFF, max_retries=5)
def handle_signup(email: str, preferences: dict, library: list[dict] | None = None) -> None:
    values = {**preferences, "topic_ids": tuple(preferences.get("topic_ids", ()))}
    items = [LibraryItem(**item) for item in library or ()]
    queue_answer_email(subscriber_subscribe(email=email, preferences=Preferences(**values), library=items))


@shared_task(autoretry_for=(OperationalError,), retry_backoff=RETRY_BACKOFF, max_retries=5)
def handle_link_request(email: str) -> None:
    queue_answer_email(subscriber_request_link(email=email))


@shared_task(
    autoretry_for=(smtplib.SMTPException, OSError),
    retry_backoff=RETRY_BACKOFF,
    retry_backoff_max=RETRY_BACKOFF_MAX,
    max_retries=8,
)
def send_subscriber_email(subscriber_id: int, kind: str) -> None:
    subscriber_email_send(subscriber_id=subscriber_id, kind=EmailKind(kind))


@shared_task
def expire_pending_subscribers() -> None:
    subscribers_expire_pending()


@shared_task(autoretry_for=(OperationalError,), retry_backoff=RETRY_BACKOFF, max_retries=5)
def process_email_event(event_id: int) -> None:
    event_process(event_id=event_id)


# Idempotent: a fit reads all of the subscriber's feedback, so a repeated or late task converges.
@shared_task(autoretry_for=(OperationalError,), retry_backoff=RETRY_BACKOFF, max_retries=5)
def fit_reader_model(subscriber_id: int) -> None:
    reader_model_fit(subscriber_id=subscriber_id)


@shared_task
def check_sending_brake() -> None:
    """Beat entry point: pause sending when complaints or hard bounces pass their limits."""
    brake_check()


# Beat runs it every few minutes; a run that fails (mailbox or database away) leaves the messages in
# place for the next one, so no retry of its own.
@shared_task
def process_bounce_mailbox() -> None:
    bounce_mailbox_process()

"""Thin Celery tasks: take ids, call one service, own the retry policy. Nothing else."""

from __future__ import annotations

import smtplib

from celery import shared_task
from django.conf import settings
from django.db import OperationalError

from newsletter.services.delivery import deliveries_send, deliveries_sweep, digests_dispatch_iter
from newsletter.services.events import event_process
from newsletter.services.learning import reader_model_fit
from newsletter.services.subscription import EmailKind, subscriber_email_send, subscribers_expire_pending

# Every countdown below stays far under the broker's visibility timeout (1 h), so a task waiting for
# its retry is never redelivered as well.
RETRY_BACKOFF = settings.NEWSLETTER_RETRY_BACKOFF_SECONDS
RETRY_BACKOFF_MAX = 600


class DeliveriesDeferred(Exception):
    """Some deliveries of the chunk met a temporary failure and are PENDING again."""


@shared_task
def dispatch_digests() -> None:
    """Beat entry point: create due deliveries, then queue one task per chunk (not per email)."""
    for chunk in digests_dispatch_iter():
        send_digest_chunk.delay(chunk)
    for chunk in deliveries_sweep():
        send_digest_chunk.delay(chunk)


# Safe with acks_late: a redelivered chunk only claims deliveries still PENDING.
@shared_task(
    autoretry_for=(DeliveriesDeferred,),
    retry_backoff=RETRY_BACKOFF,
    retry_backoff_max=RETRY_BACKOFF_MAX,
    retry_jitter=True,
    max_retries=settings.NEWSLETTER_MAX_ATTEMPTS,
)
def send_digest_chunk(delivery_ids: list[int]) -> None:
    result = deliveries_send(delivery_ids=delivery_ids)
    if result.deferred:
        raise DeliveriesDeferred(f"{len(result.deferred)} deliveries deferred")


@shared_task
def sweep_deliveries() -> None:
    for chunk in deliveries_sweep():
        send_digest_chunk.delay(chunk)


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

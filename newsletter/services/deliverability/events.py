"""ESP tracking events (django-anymail webhooks): bounces, complaints, unsubscribes, rejections.
The bounce mailbox (bounces.py) stores its bounces through `event_insert` and `event_process` too, so
both paths apply the same rules (`bounce_apply`).

The webhook answers fast: `event_store` only inserts the event (unique by event id, so an ESP's
retries are harmless) and queues `event_process` in Celery, which applies the consequences:

- hard bounce, complaint, rejection, unsubscribe at the ESP: suppressed at the first event;
- soft bounces: suppressed after SOFT_BOUNCE_LIMIT within SOFT_BOUNCE_DAYS;
- an unsubscribe or complaint also unsubscribes the subscriber.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from datetime import datetime, timedelta

from anymail.signals import AnymailTrackingEvent, EventType
from django.db import IntegrityError, transaction
from django.db.models import F
from django.utils import timezone

from newsletter.models import Delivery, EmailEvent, Subscriber, Suppression
from newsletter.services.addresses import address_suppress, email_key
from newsletter.services.deliverability.trust import db_text
from newsletter.services.subscription import address_unsubscribe

logger = logging.getLogger(__name__)

SOFT_BOUNCE_LIMIT = 3
SOFT_BOUNCE_DAYS = 30
HANDLED = {
    EventType.BOUNCED,
    EventType.DEFERRED,
    EventType.COMPLAINED,
    EventType.UNSUBSCRIBED,
    EventType.REJECTED,
}
_TEMPORARY = re.compile(r"(^|\D)4\d\d(\D|$)|(^|\s)4\.\d{1,3}\.\d{1,3}")


def _event_id(event: AnymailTrackingEvent, esp_name: str) -> str:
    if event.event_id:
        return f"{esp_name}:{event.event_id}"[:255]
    # Some ESPs send no id; the raw event is the identity then, so a retried post is still a duplicate.
    raw = (
        json.dumps(event.esp_event, sort_keys=True, default=str)
        if event.esp_event is not None
        else repr(vars(event))
    )
    return f"{esp_name}:sha256:{hashlib.sha256(raw.encode()).hexdigest()}"


def bounce_kind(event: AnymailTrackingEvent) -> str:
    """ "hard" or "soft". anymail reports both as "bounced" for some ESPs, so look at the details."""
    if event.event_type == EventType.DEFERRED:
        return "soft"
    raw = event.esp_event if isinstance(event.esp_event, dict) else {}
    if str(raw.get("Type", "")).lower() in {"softbounce", "transient"}:
        return "soft"
    if event.mta_response and _TEMPORARY.search(event.mta_response):
        return "soft"
    return "hard"


def event_store(*, event: AnymailTrackingEvent, esp_name: str) -> EmailEvent | None:
    """Record one webhook event; None for event types we ignore or an event already recorded."""
    if event.event_type not in HANDLED or not event.recipient:
        return None
    kind = bounce_kind(event) if event.event_type in (EventType.BOUNCED, EventType.DEFERRED) else ""
    return event_insert(
        event_id=_event_id(event, esp_name),
        event_type=event.event_type,
        email=event.recipient,
        message_id=event.message_id or "",
        esp_name=esp_name,
        timestamp=event.timestamp,
        description=event.description or event.mta_response or "",
        bounce_kind=kind,
    )


def event_insert(
    *,
    event_id: str,
    event_type: str,
    email: str,
    message_id: str,
    esp_name: str,
    timestamp: datetime | None,
    description: str,
    bounce_kind: str = "",
    verified: bool = True,
) -> EmailEvent | None:
    """Store an event once (ESP webhooks, the bounce mailbox); None if its id was stored before. An
    unverified one (a mailbox report without proof, deliverability/trust.py) is stored as processed:
    it has no consequence."""
    try:
        with transaction.atomic():
            return EmailEvent.objects.create(
                event_id=db_text(event_id, 255),
                event_type=event_type,
                # The spelling the subscriber rows use (IDN domains in ASCII form), so an event for
                # "Ann@Bücher.example" suppresses the row stored as "ann@xn--bcher-kva.example".
                email=email_key(db_text(email, 254)),
                message_id=db_text(message_id, 255),
                esp_name=db_text(esp_name, 32),
                timestamp=timestamp,
                description=db_text(description, 500),
                bounce_kind=bounce_kind,
                verified=verified,
                processed_at=None if verified else timezone.now(),
            )
    except IntegrityError:
        return None


def event_process(*, event_id: int) -> None:
    """Apply an event's consequences once (processed_at marks it done)."""
    with transaction.atomic():
        event = EmailEvent.objects.select_for_update().filter(pk=event_id, processed_at__isnull=True).first()
        if event is None:
            return
        _apply(event)
        event.processed_at = timezone.now()
        event.save(update_fields=["processed_at"])


def _apply(event: EmailEvent) -> None:
    if not event.verified:
        return
    email = event.email
    if event.event_type in (EventType.BOUNCED, EventType.DEFERRED):
        bounce_apply(email=email, kind=event.bounce_kind, detail=event.description)
    elif event.event_type == EventType.COMPLAINED:
        address_suppress(email=email, reason=Suppression.Reason.COMPLAINT, detail=event.description)
        address_unsubscribe(email=email)
    elif event.event_type == EventType.UNSUBSCRIBED:
        address_suppress(email=email, reason=Suppression.Reason.UNSUBSCRIBED, detail=event.description)
        address_unsubscribe(email=email)
    elif event.event_type == EventType.REJECTED:
        address_suppress(email=email, reason=Suppression.Reason.REJECTED, detail=event.description)


def bounce_apply(*, email: str, kind: str, detail: str) -> None:
    """The suppression rules for a bounce, whoever reported it (ESP webhook or bounce mailbox): a hard
    bounce suppresses at once, soft ones after SOFT_BOUNCE_LIMIT within SOFT_BOUNCE_DAYS (counted from
    the stored events, this one included)."""
    _mark_bounced(email)
    if kind == "hard":
        address_suppress(email=email, reason=Suppression.Reason.HARD_BOUNCE, detail=detail)
    elif _soft_bounces(email) >= SOFT_BOUNCE_LIMIT:
        address_suppress(email=email, reason=Suppression.Reason.SOFT_BOUNCES, detail=detail)


def _soft_bounces(email: str) -> int:
    since = timezone.now() - timedelta(days=SOFT_BOUNCE_DAYS)
    return EmailEvent.objects.filter(
        email=email, bounce_kind="soft", verified=True, received_at__gte=since
    ).count()


def _mark_bounced(email: str) -> None:
    """Count the bounce against the most recent digest sent to the address (stats page)."""
    # The subscriber first, then its own deliveries through the (subscriber, period) index, sorted
    # (a few hundred rows after a year of daily digests). ORDER BY sent_at DESC would let PostgreSQL
    # walk the sent_at index backward over every digest sent to anyone until it meets this address's
    # (the whole table when it has none, 0.5 s at 1M rows: docs/scale.md); NULLS LAST is an order
    # that index cannot give, and the same one here, since a SENT row has its sent_at.
    subscriber_id = Subscriber.objects.filter(email=email).values_list("id", flat=True).first()
    if subscriber_id is None:
        return
    latest = (
        Delivery.objects.filter(subscriber_id=subscriber_id, status=Delivery.Status.SENT)
        .order_by(F("sent_at").desc(nulls_last=True))
        .values_list("id", flat=True)
        .first()
    )
    if latest:
        Delivery.objects.filter(pk=latest).update(bounced=True)

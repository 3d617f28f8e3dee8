"""The subscriber's life cycle: subscribe (double opt-in), confirm, preferences, unsubscribe, data rights.

Web views and the one-click unsubscribe endpoint call these; none of them reveals whether an address
is known: what a visitor sees is the same whatever the outcome, and the outcome is only returned for
tests and logs.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

import idna
from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import get_connection
from django.core.validators import validate_email
from django.db import IntegrityError, transaction
from django.utils import timezone

from newsletter.models import Delivery, EmailEvent, Subscriber, Suppression
from newsletter.services.emails import build_email
from newsletter.services.ratelimit import rate_limit_exceeded
from newsletter.services.schedule import next_send_time
from newsletter.services.tokens import Purpose, link

logger = logging.getLogger(__name__)


class Outcome(StrEnum):
    CONFIRMATION_SENT = "confirmation_sent"
    MANAGE_LINK_SENT = "manage_link_sent"
    SUPPRESSED = "suppressed"
    RATE_LIMITED = "rate_limited"
    UNKNOWN_ADDRESS = "unknown_address"


class EmailKind(StrEnum):
    CONFIRM = "confirm"
    ALREADY_SUBSCRIBED = "already_subscribed"
    MANAGE_LINK = "manage_link"


@dataclass(frozen=True)
class Preferences:
    topic_ids: tuple[int, ...] = ()
    interests: str = ""
    excluded_keywords: str = ""
    frequency: str = Subscriber.Frequency.DAILY
    weekday: int = 0
    send_hour: int = 8
    timezone: str = "UTC"
    papers_per_digest: int = 10
    email_format: str = Subscriber.Format.HTML
    notify_empty: bool = False


# The preferences stored as columns of the subscriber row (topics are a relation).
SCALAR_PREFERENCES = tuple(f.name for f in dataclasses.fields(Preferences) if f.name != "topic_ids")


def preferences_stored(subscriber: Subscriber) -> dict:
    """The subscriber's scalar preferences by name, as stored."""
    return {name: getattr(subscriber, name) for name in SCALAR_PREFERENCES}


def email_normalize(raw: str) -> str:
    """Trim, lowercase, and store the domain in its ASCII (IDNA) form: one spelling per mailbox.

    Raises ValidationError with a message fit for the form.
    """
    value = raw.strip()
    local, at, domain = value.rpartition("@")
    if not at or not local or not domain:
        raise ValidationError("Enter a valid email address.")
    if not local.isascii():
        raise ValidationError("Addresses with non-ASCII characters before the @ are not supported.")
    # validate_email accepts quoted local parts ("a b"@x, even with control characters): no mailbox
    # worth mailing needs one, and they are a way to smuggle markup and spaces into templates.
    if local.startswith('"'):
        raise ValidationError("Enter a valid email address.")
    if len(local) > 64:  # RFC 5321 limit; longer local parts are refused by mail servers
        raise ValidationError("That address is too long.")
    try:
        domain = idna.encode(domain.rstrip("."), uts46=True).decode("ascii")
    except idna.IDNAError:
        raise ValidationError("Enter a valid email address.") from None
    value = f"{local}@{domain}".lower()
    if len(value) > 254:
        raise ValidationError("That address is too long.")
    validate_email(value)
    return value


def email_is_suppressed(email: str) -> bool:
    return Suppression.objects.filter(email=email).exists()


def _apply_preferences(subscriber: Subscriber, preferences: Preferences) -> None:
    subscriber.interests = preferences.interests
    subscriber.excluded_keywords = preferences.excluded_keywords
    subscriber.frequency = preferences.frequency
    subscriber.weekday = preferences.weekday
    subscriber.send_hour = preferences.send_hour
    subscriber.timezone = preferences.timezone
    subscriber.papers_per_digest = preferences.papers_per_digest
    subscriber.email_format = preferences.email_format
    subscriber.notify_empty = preferences.notify_empty


def subscriber_schedule(subscriber: Subscriber, *, now: datetime) -> datetime | None:
    """The next send time after `now` under the subscriber's current preferences."""
    if subscriber.status != Subscriber.Status.ACTIVE:
        return None
    return next_send_time(
        frequency=subscriber.frequency,
        weekday=subscriber.weekday,
        hour=subscriber.send_hour,
        tz=subscriber.timezone,
        after=now,
    )


def subscriber_subscribe(*, email: str, preferences: Preferences, now: datetime | None = None) -> Outcome:
    """Handle a sign-up. New, pending and unsubscribed addresses get a (fresh) confirmation email;
    an active address gets a "manage your preferences" link and keeps its preferences (no one can
    change another person's settings by typing their address). Never a duplicate row."""
    now = now or timezone.now()
    email = email_normalize(email)
    if email_is_suppressed(email):
        logger.info("sign-up for a suppressed address ignored")
        return Outcome.SUPPRESSED
    # Checked before the row is touched: a flood of sign-ups must not keep rewriting the preferences
    # (or the expiry) of a pending sign-up either.
    if not _email_allowed(email):
        return Outcome.RATE_LIMITED
    with transaction.atomic():
        subscriber = Subscriber.objects.select_for_update().filter(email=email).first()
        if subscriber is None:
            subscriber = _subscriber_create(email=email, preferences=preferences, now=now)
        if subscriber.status == Subscriber.Status.ACTIVE:
            kind = EmailKind.ALREADY_SUBSCRIBED
        else:
            _apply_preferences(subscriber, preferences)
            subscriber.status = Subscriber.Status.PENDING
            subscriber.pending_since = now
            subscriber.save()
            subscriber.topics.set(preferences.topic_ids)
            kind = EmailKind.CONFIRM
        _send_on_commit(subscriber.pk, kind)
    return Outcome.CONFIRMATION_SENT if kind == EmailKind.CONFIRM else Outcome.MANAGE_LINK_SENT


def _subscriber_create(*, email: str, preferences: Preferences, now: datetime) -> Subscriber:
    try:
        with transaction.atomic():
            subscriber = Subscriber(email=email, status=Subscriber.Status.PENDING, pending_since=now)
            _apply_preferences(subscriber, preferences)
            subscriber.save()
            return subscriber
    except IntegrityError:
        # A concurrent sign-up for the same address won the insert: use its row.
        return Subscriber.objects.select_for_update().get(email=email)


def _email_allowed(email: str) -> bool:
    """At most a few emails per address per day, so the form cannot be used to flood an inbox."""
    return not rate_limit_exceeded(
        scope="address-emails",
        key=email,
        limit=settings.NEWSLETTER_EMAILS_PER_ADDRESS_PER_DAY,
        window_seconds=24 * 3600,
    )


def _send_on_commit(subscriber_id: int, kind: EmailKind) -> None:
    from newsletter.tasks import send_subscriber_email  # tasks import services, not the reverse

    send_subscriber_email.delay_on_commit(subscriber_id, str(kind))


def subscriber_request_link(*, email: str, now: datetime | None = None) -> Outcome:
    """ "Send me a new link": a fresh confirmation for a pending address, a manage link for an active
    or unsubscribed one (their data is still stored: they must be able to download or delete it),
    nothing for an unknown one; the visitor sees the same page either way."""
    now = now or timezone.now()
    try:
        email = email_normalize(email)
    except ValidationError:
        return Outcome.UNKNOWN_ADDRESS
    subscriber = Subscriber.objects.filter(email=email).first()
    if subscriber is None:
        return Outcome.UNKNOWN_ADDRESS
    if email_is_suppressed(email):
        return Outcome.SUPPRESSED
    if not _email_allowed(email):
        return Outcome.RATE_LIMITED
    if subscriber.status == Subscriber.Status.PENDING:
        # A fresh confirmation restarts the confirmation window, or the sign-up could expire
        # (subscribers_expire_pending) while the new link is still valid.
        Subscriber.objects.filter(pk=subscriber.pk, status=Subscriber.Status.PENDING).update(
            pending_since=now
        )
        _send_on_commit(subscriber.pk, EmailKind.CONFIRM)
        return Outcome.CONFIRMATION_SENT
    _send_on_commit(subscriber.pk, EmailKind.MANAGE_LINK)
    return Outcome.MANAGE_LINK_SENT


def subscriber_confirm(*, subscriber: Subscriber, now: datetime | None = None) -> bool:
    """Activate a pending subscriber; False if it was not pending (already active, unsubscribed)."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = Subscriber.objects.select_for_update().get(pk=subscriber.pk)
        if locked.status != Subscriber.Status.PENDING:
            return False
        locked.status = Subscriber.Status.ACTIVE
        locked.confirmed_at = now
        locked.pending_since = None
        locked.last_digest_at = None
        locked.next_send_at = subscriber_schedule(locked, now=now)
        locked.save()
    subscriber.refresh_from_db()
    return True


def subscriber_update_preferences(
    *, subscriber: Subscriber, preferences: Preferences, now: datetime | None = None
) -> None:
    now = now or timezone.now()
    with transaction.atomic():
        _apply_preferences(subscriber, preferences)
        subscriber.next_send_at = subscriber_schedule(subscriber, now=now)
        subscriber.save()
        subscriber.topics.set(preferences.topic_ids)


def subscriber_unsubscribe(*, subscriber: Subscriber, now: datetime | None = None) -> bool:
    """Stop all mail to the subscriber; False if already unsubscribed. Idempotent."""
    now = now or timezone.now()
    updated = (
        Subscriber.objects.filter(pk=subscriber.pk)
        .exclude(status=Subscriber.Status.UNSUBSCRIBED)
        .update(
            status=Subscriber.Status.UNSUBSCRIBED, unsubscribed_at=now, next_send_at=None, pending_since=None
        )
    )
    subscriber.refresh_from_db()
    return bool(updated)


def _isoformat(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def subscriber_export(*, subscriber: Subscriber) -> dict:
    """Everything stored about a subscriber, for the "download my data" button.

    Keep in step with the Subscriber, Delivery, DeliveryItem, Suppression and EmailEvent fields
    (except token_key, the secret behind the links, which is not personal data).
    """
    deliveries = (
        Delivery.objects.filter(subscriber=subscriber).prefetch_related("items__paper").order_by("created_at")
    )
    suppression = Suppression.objects.filter(email=subscriber.email).first()
    events = EmailEvent.objects.filter(email=subscriber.email).order_by("received_at")
    return {
        "email": subscriber.email,
        "status": subscriber.status,
        "created_at": subscriber.created_at.isoformat(),
        "updated_at": subscriber.updated_at.isoformat(),
        "pending_since": _isoformat(subscriber.pending_since),
        "confirmed_at": _isoformat(subscriber.confirmed_at),
        "unsubscribed_at": _isoformat(subscriber.unsubscribed_at),
        "preferences": {
            "topics": sorted(subscriber.topics.values_list("slug", flat=True)),
            **preferences_stored(subscriber),
        },
        "next_send_at": _isoformat(subscriber.next_send_at),
        "last_digest_at": _isoformat(subscriber.last_digest_at),
        "deliveries": [
            {
                "period": d.period,
                "kind": d.kind,
                "status": d.status,
                "scheduled_for": _isoformat(d.scheduled_for),
                "sent_at": _isoformat(d.sent_at),
                "bounced": d.bounced,
                "papers": [
                    {"title": item.paper.title, "url": item.paper.url, "reasons": item.reasons}
                    for item in d.items.all()
                ],
            }
            for d in deliveries
        ],
        "suppression": (
            {
                "reason": suppression.reason,
                "detail": suppression.detail,
                "created_at": suppression.created_at.isoformat(),
            }
            if suppression
            else None
        ),
        "email_events": [
            {
                "event_type": e.event_type,
                "timestamp": _isoformat(e.timestamp),
                "description": e.description,
                "bounce_kind": e.bounce_kind,
            }
            for e in events
        ],
    }


def subscriber_delete(*, subscriber: Subscriber) -> None:
    """Erase the subscriber and everything linked to it (deliveries and their items cascade).

    A Suppression row stays: it is what guarantees the address is never mailed again.
    """
    with transaction.atomic():
        EmailEvent.objects.filter(email=subscriber.email).delete()
        subscriber.delete()


def subscribers_expire_pending(*, now: datetime | None = None) -> int:
    """Delete sign-ups never confirmed within the confirmation window."""
    now = now or timezone.now()
    deleted, _ = Subscriber.objects.filter(
        status=Subscriber.Status.PENDING, pending_since__lt=now - settings.NEWSLETTER_CONFIRM_MAX_AGE
    ).delete()
    return deleted


# Who may receive each email: the state can change between queueing and sending.
_EMAIL_FOR_STATUS = {
    EmailKind.CONFIRM: {Subscriber.Status.PENDING},
    EmailKind.ALREADY_SUBSCRIBED: {Subscriber.Status.ACTIVE},
    EmailKind.MANAGE_LINK: {Subscriber.Status.ACTIVE, Subscriber.Status.UNSUBSCRIBED},
}


def subscriber_email_send(*, subscriber_id: int, kind: EmailKind) -> bool:
    """Build and send one transactional email; False when there is nothing (or no one) to send to."""
    subscriber = Subscriber.objects.filter(pk=subscriber_id).first()
    if subscriber is None or email_is_suppressed(subscriber.email):
        return False
    if subscriber.status not in _EMAIL_FOR_STATUS[kind]:
        return False
    context = {
        "subscriber": subscriber,
        "confirm_url": link(subscriber=subscriber, purpose=Purpose.CONFIRM),
        "manage_url": link(subscriber=subscriber, purpose=Purpose.MANAGE),
        "site_url": settings.SITE_URL,
        "confirm_days": settings.NEWSLETTER_CONFIRM_MAX_AGE.days,
    }
    message = build_email(str(kind), to=subscriber.email, context=context)
    with get_connection() as connection:
        connection.send_messages([message])
    logger.info("sent %s email subscriber=%s", kind, subscriber.pk)
    return True

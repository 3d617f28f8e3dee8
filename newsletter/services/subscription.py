"""The subscriber's life cycle: subscribe (double opt-in), confirm, preferences, unsubscribe, erasure.

Sign-ups and link requests run in a Celery task, never in the web request: the page a visitor sees,
and the time it takes, are the same whatever the state of the address (newsletter.tasks). The
outcome is only returned for the task, tests and logs.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.mail import get_connection
from django.db import IntegrityError, transaction
from django.db.models import QuerySet
from django.utils import timezone

from newsletter.models import DeliveryItem, EmailEvent, Subscriber
from newsletter.selectors import Preferences, preferences_to_confirm
from newsletter.services.addresses import email_is_suppressed, email_normalize
from newsletter.services.emails import build_email
from newsletter.services.learning.library import library_import
from newsletter.services.learning.library_formats import LibraryItem
from newsletter.services.ratelimit import rate_limit_exceeded
from newsletter.services.schedule import subscriber_next_send
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
class Answer:
    """What a sign-up or link request led to. `email` is the transactional email it calls for: the
    entry point (a Celery task) queues it after commit, since services never queue tasks."""

    outcome: Outcome
    subscriber_id: int | None = None
    email: EmailKind | None = None


def _apply_preferences(subscriber: Subscriber, preferences: Preferences) -> None:
    subscriber.interests = preferences.interests
    subscriber.excluded_keywords = preferences.excluded_keywords
    subscriber.followed_authors = preferences.followed_authors
    subscriber.frequency = preferences.frequency
    subscriber.weekday = preferences.weekday
    subscriber.send_hour = preferences.send_hour
    subscriber.timezone = preferences.timezone
    subscriber.papers_per_digest = preferences.papers_per_digest
    subscriber.email_format = preferences.email_format
    subscriber.notify_empty = preferences.notify_empty


def subscriber_subscribe(
    *,
    email: str,
    preferences: Preferences,
    library: Sequence[LibraryItem] = (),
    now: datetime | None = None,
) -> Answer:
    """Handle a sign-up. New and pending addresses get a (fresh) confirmation email; an active address
    gets a "manage your preferences" link and keeps its preferences; an unsubscribed one keeps its row
    as it is (its owner's links keep working) and the new preferences wait aside until the owner
    confirms. No one can change another person's settings by typing their address. Never a
    duplicate row.

    The sign-up's library (learning.library) goes with its preferences: stored at once for a pending
    row (replacing an earlier unconfirmed sign-up's, as the preferences are), kept aside in
    `pending_preferences["library"]` for an unsubscribed one, ignored for an active one."""
    now = now or timezone.now()
    email = email_normalize(email)
    if email_is_suppressed(email):
        logger.info("sign-up for a suppressed address ignored")
        return Answer(Outcome.SUPPRESSED)
    # Checked before the row is touched: a flood of sign-ups must not keep rewriting the preferences
    # (or the expiry) of a pending sign-up either.
    if not _email_allowed(email, scope="address-signup-emails"):
        return Answer(Outcome.RATE_LIMITED)
    with transaction.atomic():
        subscriber = Subscriber.objects.select_for_update().filter(email=email).first()
        if subscriber is None:
            subscriber = _subscriber_create(email=email, preferences=preferences, now=now)
        if subscriber.status == Subscriber.Status.ACTIVE:
            kind = EmailKind.ALREADY_SUBSCRIBED
        elif subscriber.status == Subscriber.Status.UNSUBSCRIBED:
            subscriber.pending_preferences = {
                **dataclasses.asdict(preferences),
                "library": [dataclasses.asdict(item) for item in library],
            }
            subscriber.save(update_fields=["pending_preferences", "updated_at"])
            kind = EmailKind.CONFIRM
        else:
            _apply_preferences(subscriber, preferences)
            subscriber.status = Subscriber.Status.PENDING
            subscriber.pending_since = now
            subscriber.save()
            subscriber.topics.set(preferences.topic_ids)
            library_import(subscriber=subscriber, items=library, replace=True)
            kind = EmailKind.CONFIRM
    outcome = Outcome.CONFIRMATION_SENT if kind == EmailKind.CONFIRM else Outcome.MANAGE_LINK_SENT
    return Answer(outcome, subscriber.pk, kind)


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


# Sign-ups and link requests have allowances of their own: a stranger who signs an address up
# three times must not use up what its owner needs to get a new link.
_EMAIL_ALLOWANCES = {
    "address-signup-emails": "NEWSLETTER_EMAILS_PER_ADDRESS_PER_DAY",
    "address-link-emails": "NEWSLETTER_LINK_EMAILS_PER_ADDRESS_PER_DAY",
}


def _email_allowed(email: str, *, scope: str) -> bool:
    """At most a few emails per address in any 24 hours, so the forms cannot flood an inbox."""
    return not rate_limit_exceeded(
        scope=scope,
        key=email,
        limit=getattr(settings, _EMAIL_ALLOWANCES[scope]),
        window_seconds=24 * 3600,
    )


def subscriber_request_link(*, email: str, now: datetime | None = None) -> Answer:
    """ "Send me a new link": a fresh confirmation for a pending address, a manage link for an active
    or unsubscribed one (their data is still stored: they must be able to download or delete it),
    nothing for an unknown one; the visitor sees the same page either way."""
    now = now or timezone.now()
    try:
        email = email_normalize(email)
    except ValidationError:
        return Answer(Outcome.UNKNOWN_ADDRESS)
    subscriber = Subscriber.objects.filter(email=email).first()
    if subscriber is None:
        return Answer(Outcome.UNKNOWN_ADDRESS)
    if email_is_suppressed(email):
        return Answer(Outcome.SUPPRESSED)
    if not _email_allowed(email, scope="address-link-emails"):
        return Answer(Outcome.RATE_LIMITED)
    if subscriber.status == Subscriber.Status.PENDING:
        # A fresh confirmation restarts the confirmation window, or the sign-up could expire
        # (subscribers_expire_pending) while the new link is still valid.
        Subscriber.objects.filter(pk=subscriber.pk, status=Subscriber.Status.PENDING).update(
            pending_since=now
        )
        return Answer(Outcome.CONFIRMATION_SENT, subscriber.pk, EmailKind.CONFIRM)
    return Answer(Outcome.MANAGE_LINK_SENT, subscriber.pk, EmailKind.MANAGE_LINK)


def subscriber_confirm(*, subscriber: Subscriber, now: datetime | None = None) -> bool:
    """Activate a pending subscriber, or a returning one with the preferences their sign-up left
    aside; False if there is nothing to confirm (already active, unsubscribed without a sign-up)."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = Subscriber.objects.select_for_update().get(pk=subscriber.pk)
        if not awaits_confirmation(locked):
            return False
        if locked.pending_preferences is not None:
            preferences = preferences_to_confirm(locked)
            library = [LibraryItem(**item) for item in locked.pending_preferences.get("library", [])]
            _apply_preferences(locked, preferences)
            # Added to what the returning reader kept (their library is theirs; the sign-up may be
            # anyone's, and only adds once the owner confirms).
            library_import(subscriber=locked, items=library)
            locked.topics.set(preferences.topic_ids)
            locked.pending_preferences = None
            locked.unsubscribed_at = None
        locked.status = Subscriber.Status.ACTIVE
        locked.confirmed_at = now
        locked.pending_since = None
        locked.last_digest_at = None
        locked.next_send_at = subscriber_next_send(locked, after=now)
        locked.save()
    subscriber.refresh_from_db()
    return True


def awaits_confirmation(subscriber: Subscriber) -> bool:
    """A pending sign-up, or an unsubscribed row with a sign-up set aside: its confirm page has a button."""
    return subscriber.status == Subscriber.Status.PENDING or (
        subscriber.status == Subscriber.Status.UNSUBSCRIBED and subscriber.pending_preferences is not None
    )


def subscriber_resubscribe(*, subscriber: Subscriber, now: datetime | None = None) -> bool:
    """Put an unsubscribed reader back on the list with the preferences still stored; False if they
    were not unsubscribed. The manage link proves they own the address, so no new confirmation: the
    next digest is a first one again (a window of NEWSLETTER_FIRST_DIGEST_WINDOW, not everything
    since they left)."""
    now = now or timezone.now()
    with transaction.atomic():
        locked = Subscriber.objects.select_for_update().get(pk=subscriber.pk)
        if locked.status != Subscriber.Status.UNSUBSCRIBED:
            return False
        locked.status = Subscriber.Status.ACTIVE
        locked.unsubscribed_at = None
        locked.pending_preferences = None  # a sign-up by someone else waiting aside is dropped
        locked.last_digest_at = None
        locked.next_send_at = subscriber_next_send(locked, after=now)
        locked.save()
    subscriber.refresh_from_db()
    return True


def subscriber_update_preferences(
    *, subscriber: Subscriber, preferences: Preferences, now: datetime | None = None
) -> bool:
    """Save the preferences. True when the interests changed: a reader model is fitted with them as
    its first positive (services/learning/reader_model.py), so the caller has it fitted again."""
    now = now or timezone.now()
    interests_before = subscriber.interests
    with transaction.atomic():
        _apply_preferences(subscriber, preferences)
        subscriber.next_send_at = subscriber_next_send(subscriber, after=now)
        subscriber.save()
        subscriber.topics.set(preferences.topic_ids)
    return subscriber.interests != interests_before


def _unsubscribe(subscribers: QuerySet[Subscriber], now: datetime) -> int:
    return subscribers.exclude(status=Subscriber.Status.UNSUBSCRIBED).update(
        status=Subscriber.Status.UNSUBSCRIBED, unsubscribed_at=now, next_send_at=None, pending_since=None
    )


def subscriber_unsubscribe(*, subscriber: Subscriber, now: datetime | None = None) -> bool:
    """Stop all mail to the subscriber; False if already unsubscribed. Idempotent."""
    updated = _unsubscribe(Subscriber.objects.filter(pk=subscriber.pk), now or timezone.now())
    subscriber.refresh_from_db()
    return bool(updated)


def address_unsubscribe(*, email: str, now: datetime | None = None) -> bool:
    """subscriber_unsubscribe by address (an ESP reported an unsubscribe or a complaint)."""
    return bool(_unsubscribe(Subscriber.objects.filter(email=email), now or timezone.now()))


def subscriber_delete(*, subscriber: Subscriber) -> None:
    """Erase the subscriber and everything linked to it (deliveries and their items cascade).

    A Suppression row stays: it is what guarantees the address is never mailed again.
    """
    with transaction.atomic():
        EmailEvent.objects.filter(email=subscriber.email).delete()
        subscriber_id = subscriber.pk
        subscriber.delete()
        # Once more after the deliveries (the cascade deleted the picks by subscriber before them):
        # DeliveryItem has no foreign keys in the database, and a chunk may have committed picks in
        # between. One statement on the unique (subscriber, paper) index. A chunk committing after
        # it leaves rows to the sweeper (digest.picks_orphans_delete).
        DeliveryItem.objects.filter(subscriber_id=subscriber_id).delete()


def subscribers_expire_pending(*, now: datetime | None = None) -> int:
    """Delete sign-ups never confirmed within the confirmation window. A row that was confirmed once
    is never deleted here: it is its owner's (data export, erasure), whatever a later sign-up did."""
    now = now or timezone.now()
    deleted, _ = Subscriber.objects.filter(
        status=Subscriber.Status.PENDING,
        pending_since__lt=now - settings.NEWSLETTER_CONFIRM_MAX_AGE,
        confirmed_at__isnull=True,
    ).delete()
    return deleted


# Who may receive each email: the state can change between queueing and sending.
_EMAIL_FOR_STATUS = {
    EmailKind.ALREADY_SUBSCRIBED: {Subscriber.Status.ACTIVE},
    EmailKind.MANAGE_LINK: {Subscriber.Status.ACTIVE, Subscriber.Status.UNSUBSCRIBED},
}


def subscriber_email_send(*, subscriber_id: int, kind: EmailKind) -> bool:
    """Build and send one transactional email; False when there is nothing (or no one) to send to."""
    subscriber = Subscriber.objects.filter(pk=subscriber_id).first()
    if subscriber is None or email_is_suppressed(subscriber.email):
        return False
    wanted = (
        awaits_confirmation(subscriber)
        if kind == EmailKind.CONFIRM
        else subscriber.status in _EMAIL_FOR_STATUS[kind]
    )
    if not wanted:
        return False
    context = {
        "subscriber": subscriber,
        "confirm_url": link(subscriber=subscriber, purpose=Purpose.CONFIRM),
        "manage_url": link(subscriber=subscriber, purpose=Purpose.MANAGE),
        "site_url": settings.SITE_URL,
        "confirm_days": settings.NEWSLETTER_CONFIRM_MAX_AGE.days,
    }
    message = build_email(str(kind), to=subscriber.email, context=context, bounce_id=subscriber.pk)
    with get_connection() as connection:
        connection.send_messages([message])
    logger.info("sent %s email subscriber=%s", kind, subscriber.pk)
    return True

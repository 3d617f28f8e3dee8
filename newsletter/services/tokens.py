"""Signed, per-purpose tokens for the links in emails. No account, no password: the link is the key.

A token signs (object id, fingerprint of the subscriber's token_key) with a salt per purpose, so a
manage link cannot be used as an unsubscribe link or vice versa, nothing in it is guessable without
SECRET_KEY, and rotating the subscriber's token_key revokes every link ever sent.
"""

from __future__ import annotations

import hmac
from datetime import timedelta
from enum import StrEnum

from django.conf import settings
from django.core import signing

from newsletter.models import Delivery, Subscriber


class Purpose(StrEnum):
    CONFIRM = "confirm"
    MANAGE = "manage"
    UNSUBSCRIBE = "unsubscribe"
    DIGEST = "digest"


def _max_age(purpose: Purpose) -> timedelta | None:
    # Confirmation links expire with the pending sign-up; the others must keep working in old emails
    # (mailbox providers expect unsubscribe links to work for a long time).
    if purpose is Purpose.CONFIRM:
        return settings.NEWSLETTER_CONFIRM_MAX_AGE
    return None


def _fingerprint(subscriber: Subscriber) -> str:
    return subscriber.token_key[:12]


def _salt(purpose: Purpose) -> str:
    return f"newsletter.token.{purpose}"


def _signer(purpose: Purpose) -> signing.Signer:
    # Only expiring tokens carry a timestamp; the others are the same string every time, so every
    # email a subscriber gets has the same unsubscribe link (and the links are shorter).
    if _max_age(purpose) is not None:
        return signing.TimestampSigner(salt=_salt(purpose))
    return signing.Signer(salt=_salt(purpose))


def token_make(*, subscriber: Subscriber, purpose: Purpose, object_id: int | None = None) -> str:
    payload = [object_id if object_id is not None else subscriber.pk, _fingerprint(subscriber)]
    return _signer(purpose).sign_object(payload, compress=False)


def _load(token: str, purpose: Purpose) -> tuple[int, str] | None:
    if not isinstance(token, str) or len(token) > 200:
        return None
    try:
        signer = _signer(purpose)
        if isinstance(signer, signing.TimestampSigner):
            payload = signer.unsign_object(token, max_age=_max_age(purpose))
        else:
            payload = signer.unsign_object(token)
    except (signing.BadSignature, ValueError, UnicodeDecodeError):  # BadSignature includes expiry
        return None
    if (
        not isinstance(payload, list)
        or len(payload) != 2
        or not isinstance(payload[0], int)
        or not isinstance(payload[1], str)
    ):
        return None
    return payload[0], payload[1]


def token_subscriber(*, token: str, purpose: Purpose) -> Subscriber | None:
    """The subscriber a valid, unrevoked token of this purpose names; None otherwise."""
    loaded = _load(token, purpose)
    if loaded is None:
        return None
    subscriber = Subscriber.objects.filter(pk=loaded[0]).first()
    if subscriber is None or not hmac.compare_digest(_fingerprint(subscriber), loaded[1]):
        return None
    return subscriber


def token_delivery(*, token: str) -> Delivery | None:
    loaded = _load(token, Purpose.DIGEST)
    if loaded is None:
        return None
    delivery = Delivery.objects.select_related("subscriber").filter(pk=loaded[0]).first()
    if delivery is None or not hmac.compare_digest(_fingerprint(delivery.subscriber), loaded[1]):
        return None
    return delivery


def link(*, subscriber: Subscriber, purpose: Purpose, object_id: int | None = None) -> str:
    """Absolute URL of a tokenized page, for emails (workers have no request to build it from)."""
    token = token_make(subscriber=subscriber, purpose=purpose, object_id=object_id)
    path = {
        Purpose.CONFIRM: "/confirm/{}/",
        Purpose.MANAGE: "/manage/{}/",
        Purpose.UNSUBSCRIBE: "/unsubscribe/{}/",
        Purpose.DIGEST: "/digests/{}/",
    }[purpose]
    return settings.SITE_URL + path.format(token)

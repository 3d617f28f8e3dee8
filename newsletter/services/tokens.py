"""Signed, per-purpose tokens for the links in emails. No account, no password: the link is the key.

A token signs (object id, fingerprint of the subscriber's token_key) with a salt per purpose, so a
manage link cannot be used as an unsubscribe link or vice versa, nothing in it is guessable without
SECRET_KEY, and rotating the subscriber's token_key revokes every link ever sent.

A confirmation link's fingerprint also covers the preferences it was sent for (`preferences_digest`):
when a later sign-up for the same address changes them, the earlier link stops working instead of
activating someone else's choices (the newer link's page shows them before its button).

Feedback links ("More like this" / "Not for me") name a (subscriber, paper) pair and sit on every
paper of every digest, so they are made per email in the hot path: `feedback_token` signs the pair
and the fingerprint with one HMAC-SHA256 (its key derived once per process from the purpose and
SECRET_KEY; no JSON, no base64 of the payload) and leaves the fingerprint out of the token, so it is
short ("<subscriber>.<paper>.<signature>") and costs a few microseconds.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import hmac
import json
import re
from collections.abc import Callable
from datetime import timedelta
from enum import StrEnum
from functools import lru_cache

from django.conf import settings
from django.core import signing
from django.utils.crypto import salted_hmac

from newsletter.library_selectors import library_to_confirm
from newsletter.models import Delivery, Subscriber
from newsletter.selectors import Preferences, preferences_to_confirm


class Purpose(StrEnum):
    CONFIRM = "confirm"
    MANAGE = "manage"
    UNSUBSCRIBE = "unsubscribe"
    DIGEST = "digest"
    FEEDBACK = "feedback"
    # The private Atom feed of one's digests: a URL a feed reader polls for ever, revoked with the
    # other links by the same token_key fingerprint.
    FEED = "feed"


def _max_age(purpose: Purpose) -> timedelta | None:
    # Confirmation links expire with the pending sign-up; the others must keep working in old emails
    # (mailbox providers expect unsubscribe links to work for a long time).
    if purpose is Purpose.CONFIRM:
        return settings.NEWSLETTER_CONFIRM_MAX_AGE
    return None


def preferences_digest(preferences: Preferences) -> str:
    """A short, stable digest of a set of preferences (topic order does not matter)."""
    fields = {**dataclasses.asdict(preferences), "topic_ids": sorted(preferences.topic_ids)}
    canonical = json.dumps(fields, sort_keys=True, default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _fingerprint(subscriber: Subscriber, purpose: Purpose | None = None) -> str:
    if purpose is Purpose.CONFIRM:
        fingerprint = f"{subscriber.token_key[:12]}.{preferences_digest(preferences_to_confirm(subscriber))}"
        # The sign-up's library (learning.library) is part of what the link activates, too.
        library = library_to_confirm(subscriber)
        if library:
            fingerprint += "." + hashlib.sha256(json.dumps(library).encode()).hexdigest()[:16]
        return fingerprint
    return subscriber.token_key[:12]


def _salt(purpose: Purpose) -> str:
    return f"newsletter.token.{purpose}"


def _signer(purpose: Purpose) -> signing.Signer:
    # Only expiring tokens carry a timestamp; the others are the same string every time, so every
    # email a subscriber gets has the same unsubscribe link (and the links are shorter).
    if _max_age(purpose) is not None:
        return signing.TimestampSigner(salt=_salt(purpose))
    return signing.Signer(salt=_salt(purpose))


# What signing.JSONSerializer.dumps calls json.dumps with, made once (json.dumps builds an encoder
# per call when given separators).
_JSON = json.JSONEncoder(separators=(",", ":"))


@lru_cache(maxsize=16)
def _signer_mac(purpose: Purpose, secret: str) -> hmac.HMAC:
    """The HMAC of Signer(salt=_salt(purpose)).signature before its value is fed: salted_hmac itself
    with an empty value. Signer derives this key on every call; here each signature is a copy."""
    return salted_hmac(_salt(purpose) + "signer", b"", secret, algorithm="sha256")


def token_make(*, subscriber: Subscriber, purpose: Purpose, object_id: int | None = None) -> str:
    """Signer.sign_object's string for the payload. Permanent tokens (three in every digest) are
    signed here without building a Signer: the same string, less than half the CPU; the timestamped
    confirmation token still goes through TimestampSigner."""
    payload = [object_id if object_id is not None else subscriber.pk, _fingerprint(subscriber, purpose)]
    if _max_age(purpose) is not None:
        return _signer(purpose).sign_object(payload, compress=False)
    value = signing.b64_encode(_JSON.encode(payload).encode("latin-1"))
    mac = _signer_mac(purpose, settings.SECRET_KEY).copy()
    mac.update(value)
    return f"{value.decode()}:{signing.b64_encode(mac.digest()).decode()}"


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
    if subscriber is None or not hmac.compare_digest(_fingerprint(subscriber, purpose), loaded[1]):
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


# Ids in URLs and forms: ASCII digits only. str.isdigit() also accepts "¹" and "٣" (int() fails on the
# first, reads the second as 3), and 18 digits keep any id inside PostgreSQL's bigint.
_ASCII_ID = re.compile(r"[0-9]{1,18}")


def ascii_id(value: object) -> int | None:
    """The id a link or form carries, or None unless it is 1 to 18 ASCII digits."""
    if isinstance(value, str) and _ASCII_ID.fullmatch(value):
        return int(value)
    return None


@lru_cache(maxsize=8)
def _feedback_mac(secret: str) -> hmac.HMAC:
    """HMAC-SHA256 keyed for feedback links and this secret, set up once per process: each signature
    is then a copy and one update, half the cost of Signer.signature, which derives its key per call."""
    key = hashlib.sha256(f"{_salt(Purpose.FEEDBACK)}:{secret}".encode()).digest()
    return hmac.new(key, digestmod=hashlib.sha256)


def _feedback_signer(subscriber_id: int, fingerprint: str, secret: str) -> Callable[[int], str]:
    """The signature of "<subscriber>.<paper>.<fingerprint>" for each paper of one reader: the MAC
    state after "<subscriber>." and the fingerprint's bytes are made once per reader, so each link is
    a copy and one short update."""
    mac = _feedback_mac(secret).copy()
    mac.update(f"{subscriber_id}.".encode())
    suffix = f".{fingerprint}"

    def sign(paper_id: int) -> str:
        paper_mac = mac.copy()
        paper_mac.update(f"{paper_id}{suffix}".encode())
        return base64.urlsafe_b64encode(paper_mac.digest()).rstrip(b"=").decode()

    return sign


def feedback_token(*, subscriber: Subscriber, paper_id: int) -> str:
    """The same string every time for the pair (like the manage link); token_key rotation revokes it."""
    signature = _feedback_signer(subscriber.pk, _fingerprint(subscriber), settings.SECRET_KEY)(paper_id)
    return f"{subscriber.pk}.{paper_id}.{signature}"


def feedback_token_load(*, token: str) -> tuple[Subscriber, int] | None:
    """(subscriber, paper id) of a valid, unrevoked feedback token; None otherwise. The paper may
    have been deleted since: the caller looks it up."""
    if not isinstance(token, str) or len(token) > 120:
        return None
    parts = token.split(".")
    if len(parts) != 3:
        return None
    subscriber_id, paper_id = ascii_id(parts[0]), ascii_id(parts[1])
    if subscriber_id is None or paper_id is None:
        return None
    subscriber = Subscriber.objects.filter(pk=subscriber_id).first()
    if subscriber is None:
        return None
    fingerprint = _fingerprint(subscriber)
    # SECRET_KEY_FALLBACKS keep old emails' links working while the secret is rotated, as for the others.
    for secret in (settings.SECRET_KEY, *settings.SECRET_KEY_FALLBACKS):
        if hmac.compare_digest(_feedback_signer(subscriber_id, fingerprint, secret)(paper_id), parts[2]):
            return subscriber, paper_id
    return None


def feedback_link(*, subscriber: Subscriber, paper_id: int) -> str:
    """Absolute URL of the feedback page of one paper; "more/" or "less/" is appended per choice."""
    return feedback_links(subscriber=subscriber)(paper_id)


def feedback_links(*, subscriber: Subscriber) -> Callable[[int], str]:
    """feedback_link of each paper for one reader (a digest's twenty links): what depends on the
    reader alone (URL prefix, fingerprint, MAC state) is computed once."""
    prefix = f"{settings.SITE_URL}/feedback/{subscriber.pk}."
    sign = _feedback_signer(subscriber.pk, _fingerprint(subscriber), settings.SECRET_KEY)
    return lambda paper_id: f"{prefix}{paper_id}.{sign(paper_id)}/"


def link(*, subscriber: Subscriber, purpose: Purpose, object_id: int | None = None) -> str:
    """Absolute URL of a tokenized page, for emails (workers have no request to build it from)."""
    token = token_make(subscriber=subscriber, purpose=purpose, object_id=object_id)
    return f"{settings.SITE_URL}/{_LINK_PATHS[purpose]}/{token}/"


_LINK_PATHS = {
    Purpose.CONFIRM: "confirm",
    Purpose.MANAGE: "manage",
    Purpose.UNSUBSCRIBE: "unsubscribe",
    Purpose.DIGEST: "digests",
    Purpose.FEED: "feeds",
}

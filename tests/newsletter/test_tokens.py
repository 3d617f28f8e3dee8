"""Signed links: unguessable, one purpose each, revocable, confirmation links expire."""

from __future__ import annotations

import base64
import hashlib
import hmac
from datetime import timedelta

import pytest
import time_machine
from django.core import signing
from django.test import override_settings
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from newsletter.models import Subscriber, new_token_key
from newsletter.services.tokens import (
    Purpose,
    feedback_link,
    feedback_links,
    feedback_token,
    feedback_token_load,
    link,
    token_delivery,
    token_make,
    token_subscriber,
)
from tests.factories import DeliveryFactory, SubscriberFactory
from tests.newsletter.helpers import NOW


def flipped(signature: str) -> str:
    """The signature with its last character changed (to a different one, whatever it was)."""
    return signature[:-1] + ("A" if signature[-1] != "A" else "B")


pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_clock")]


@pytest.mark.parametrize("purpose", [Purpose.CONFIRM, Purpose.MANAGE, Purpose.UNSUBSCRIBE])
def test_token_names_its_subscriber(purpose: Purpose) -> None:
    subscriber, other = SubscriberFactory(), SubscriberFactory()
    token = token_make(subscriber=subscriber, purpose=purpose)

    assert token_subscriber(token=token, purpose=purpose) == subscriber
    assert token != token_make(subscriber=other, purpose=purpose)


@pytest.mark.parametrize("made_for", list(Purpose))
def test_token_is_only_valid_for_its_purpose(made_for: Purpose) -> None:
    subscriber = SubscriberFactory()
    token = token_make(subscriber=subscriber, purpose=made_for)

    for purpose in [Purpose.CONFIRM, Purpose.MANAGE, Purpose.UNSUBSCRIBE]:
        if purpose is not made_for:
            assert token_subscriber(token=token, purpose=purpose) is None


def test_tampered_or_forged_tokens_are_rejected(settings) -> None:
    subscriber = SubscriberFactory()
    other = SubscriberFactory()
    token = token_make(subscriber=subscriber, purpose=Purpose.MANAGE)
    payload, signature = token.split(":")
    other_payload = token_make(subscriber=other, purpose=Purpose.MANAGE).split(":")[0]

    for bad in [
        "",
        "garbage",
        f"{other_payload}:{signature}",  # someone else's id under this signature
        f"{payload}:{flipped(signature)}",
        token + "x",
        token * 5,  # overlong
    ]:
        assert token_subscriber(token=bad, purpose=Purpose.MANAGE) is None, bad

    settings.SECRET_KEY = "another-secret-key-" + "x" * 40
    assert token_subscriber(token=token, purpose=Purpose.MANAGE) is None


def test_tampered_confirmation_tokens_are_rejected() -> None:
    subscriber = SubscriberFactory()
    token = token_make(subscriber=subscriber, purpose=Purpose.CONFIRM)
    payload, timestamp, signature = token.split(":")
    assert token_subscriber(token=token, purpose=Purpose.CONFIRM) == subscriber
    for bad in [
        f"{payload}:{timestamp}:{flipped(signature)}",
        f"{payload}:{signature}",
        f"{payload}::{signature}",
    ]:
        assert token_subscriber(token=bad, purpose=Purpose.CONFIRM) is None, bad


def test_permanent_links_are_the_same_in_every_email() -> None:
    # A subscriber's unsubscribe/manage link must not change between emails (people keep old ones),
    # while confirmation links carry a timestamp and so change.
    subscriber = SubscriberFactory()
    for purpose in [Purpose.MANAGE, Purpose.UNSUBSCRIBE]:
        first = token_make(subscriber=subscriber, purpose=purpose)
        with time_machine.travel(NOW + timedelta(days=30), tick=False):
            assert token_make(subscriber=subscriber, purpose=purpose) == first
    first = token_make(subscriber=subscriber, purpose=Purpose.CONFIRM)
    with time_machine.travel(NOW + timedelta(days=1), tick=False):
        assert token_make(subscriber=subscriber, purpose=Purpose.CONFIRM) != first


def test_rotating_the_token_key_revokes_every_link() -> None:
    subscriber = SubscriberFactory()
    delivery = DeliveryFactory(subscriber=subscriber)
    tokens = {purpose: token_make(subscriber=subscriber, purpose=purpose) for purpose in Purpose}
    digest_token = token_make(subscriber=subscriber, purpose=Purpose.DIGEST, object_id=delivery.pk)
    assert token_delivery(token=digest_token) == delivery

    subscriber.token_key = new_token_key()
    subscriber.save()

    for purpose in [Purpose.CONFIRM, Purpose.MANAGE, Purpose.UNSUBSCRIBE]:
        assert token_subscriber(token=tokens[purpose], purpose=purpose) is None
    assert token_delivery(token=digest_token) is None
    assert (
        token_subscriber(
            token=token_make(subscriber=subscriber, purpose=Purpose.MANAGE), purpose=Purpose.MANAGE
        )
        == subscriber
    )


def test_token_of_a_deleted_subscriber_is_rejected() -> None:
    subscriber = SubscriberFactory()
    token = token_make(subscriber=subscriber, purpose=Purpose.MANAGE)
    subscriber.delete()
    assert token_subscriber(token=token, purpose=Purpose.MANAGE) is None


def test_confirmation_links_expire_other_links_do_not(settings) -> None:
    settings.NEWSLETTER_CONFIRM_MAX_AGE = timedelta(days=7)
    subscriber = SubscriberFactory()
    confirm = token_make(subscriber=subscriber, purpose=Purpose.CONFIRM)
    manage = token_make(subscriber=subscriber, purpose=Purpose.MANAGE)
    unsubscribe = token_make(subscriber=subscriber, purpose=Purpose.UNSUBSCRIBE)

    with time_machine.travel(NOW + timedelta(days=7), tick=False):
        assert token_subscriber(token=confirm, purpose=Purpose.CONFIRM) == subscriber
    with time_machine.travel(NOW + timedelta(days=7, seconds=1), tick=False):
        assert token_subscriber(token=confirm, purpose=Purpose.CONFIRM) is None
    with time_machine.travel(NOW + timedelta(days=3 * 365), tick=False):
        assert token_subscriber(token=manage, purpose=Purpose.MANAGE) == subscriber
        assert token_subscriber(token=unsubscribe, purpose=Purpose.UNSUBSCRIBE) == subscriber


def test_digest_token_names_the_delivery_of_its_subscriber() -> None:
    delivery = DeliveryFactory()
    token = token_make(subscriber=delivery.subscriber, purpose=Purpose.DIGEST, object_id=delivery.pk)

    assert token_delivery(token=token) == delivery
    # A digest token is not a manage token of the subscriber whose id happens to equal the delivery's.
    assert token_subscriber(token=token, purpose=Purpose.MANAGE) is None


@hypothesis_settings(max_examples=200, deadline=None)
@given(
    purpose=st.sampled_from([Purpose.MANAGE, Purpose.UNSUBSCRIBE, Purpose.DIGEST, Purpose.FEED]),
    pk=st.integers(min_value=1, max_value=2**63 - 1),
    object_id=st.none() | st.integers(min_value=0, max_value=2**63 - 1),
    token_key=st.text(min_size=0, max_size=32),
    secret=st.text(min_size=1, max_size=60),
)
def test_permanent_tokens_are_django_signers_strings(purpose, pk, object_id, token_key, secret) -> None:
    """token_make signs without building a Signer; the string must stay Signer.sign_object's, so links
    in emails sent before keep working (and _load, which uses Signer, reads them)."""
    subscriber = Subscriber(pk=pk, email="reader@example.org", token_key=token_key)
    with override_settings(SECRET_KEY=secret):
        token = token_make(subscriber=subscriber, purpose=purpose, object_id=object_id)
        payload = [object_id if object_id is not None else pk, token_key[:12]]
        assert token == signing.Signer(salt=f"newsletter.token.{purpose}").sign_object(payload)


def test_links_are_absolute_urls_on_the_site(settings) -> None:
    settings.SITE_URL = "https://papers.example.com"
    subscriber = SubscriberFactory()

    url = link(subscriber=subscriber, purpose=Purpose.UNSUBSCRIBE)

    prefix = "https://papers.example.com/unsubscribe/"
    assert url.startswith(prefix) and url.endswith("/")
    assert token_subscriber(token=url[len(prefix) : -1], purpose=Purpose.UNSUBSCRIBE) == subscriber


# --- feedback links, signed once per reader -----------------------------------------------------


def test_a_readers_feedback_links_are_hmacs_of_the_pair_and_fingerprint(settings) -> None:
    """feedback_links computes the reader's part once; every link is still the documented HMAC, so
    links in digests sent before (and feedback_token, feedback_link) agree with it."""
    reader = Subscriber(pk=41, email="reader@example.org", token_key="k" * 20 + "z" * 12)
    key = hashlib.sha256(f"newsletter.token.feedback:{settings.SECRET_KEY}".encode()).digest()
    links = feedback_links(subscriber=reader)

    for paper_id in (1, 9, 10, 123456789012):
        mac = hmac.new(key, f"41.{paper_id}.{'k' * 12}".encode(), hashlib.sha256).digest()
        token = f"41.{paper_id}.{base64.urlsafe_b64encode(mac).rstrip(b'=').decode()}"
        assert feedback_token(subscriber=reader, paper_id=paper_id) == token
        assert links(paper_id) == feedback_link(subscriber=reader, paper_id=paper_id)
        assert links(paper_id) == f"{settings.SITE_URL}/feedback/{token}/"


@pytest.mark.django_db
def test_feedback_links_load_back_to_their_reader_and_paper() -> None:
    reader = SubscriberFactory()
    links = feedback_links(subscriber=reader)

    for paper_id in (3, 30):
        token = links(paper_id).rstrip("/").rsplit("/", 1)[1]
        assert feedback_token_load(token=token) == (reader, paper_id)
        assert feedback_token_load(token=token.replace(f".{paper_id}.", f".{paper_id + 1}.")) is None

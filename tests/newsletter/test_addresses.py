"""Addresses (newsletter.services.addresses): one normal form, and a suppressed address is never
mailed, whatever the path."""

from __future__ import annotations

import pytest
from django.core.exceptions import ValidationError
from hypothesis import given
from hypothesis import strategies as st

from newsletter.models import Subscriber, Suppression
from newsletter.services.addresses import email_normalize
from newsletter.services.subscription import EmailKind, Outcome, subscriber_email_send
from tests.factories import SubscriberFactory
from tests.newsletter.helpers import request_link, subscribe

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("frozen_clock")]


# --- email_normalize ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("ada@example.org", "ada@example.org"),
        ("  Ada.Lovelace@Example.ORG \n", "ada.lovelace@example.org"),
        ("ada@bücher.de", "ada@xn--bcher-kva.de"),
        ("ada@BÜCHER.de", "ada@xn--bcher-kva.de"),
        ("ada@xn--bcher-kva.de", "ada@xn--bcher-kva.de"),
        ("ada@example.org.", "ada@example.org"),
        ("ada+papers@example.org", "ada+papers@example.org"),
    ],
)
def test_email_normalize_case_whitespace_and_idn(raw: str, expected: str) -> None:
    assert email_normalize(raw) == expected


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "ada",
        "ada@",
        "@example.org",
        "ada lovelace@example.org",
        "ada@exa mple.org",
        "ada@@example.org",
        "ada@example..org",
        "ada@.",
        "adä@example.org",
        '"ada lovelace"@example.org',
        '"<script>alert(1)</script>"@example.org',
        '"\x01"@example.org',
        "a" * 65 + "@example.org",
        "ada@" + "a" * 63 + "." + "b" * 63 + "." + "c" * 63 + "." + "d" * 63 + ".org",
        "<ada@example.org>",
        "ada@example.org\nBcc: victim@example.org",
    ],
)
def test_email_normalize_rejects_invalid_addresses(raw: str) -> None:
    with pytest.raises(ValidationError):
        email_normalize(raw)


@given(st.emails())
def test_email_normalize_is_idempotent(raw: str) -> None:
    try:
        once = email_normalize(raw)
    except ValidationError:
        return
    assert once == once.lower()
    assert once.isascii()
    assert len(once) <= 254
    assert email_normalize(once) == once


# --- suppression -------------------------------------------------------------------------------


def test_subscribe_suppressed_address_sends_nothing_and_stores_nothing(send_emails, mailoutbox) -> None:
    Suppression.objects.create(email="ada@example.org", reason=Suppression.Reason.COMPLAINT)
    with send_emails():
        outcome = subscribe("Ada@Example.org")

    assert outcome == Outcome.SUPPRESSED
    assert not Subscriber.objects.exists()
    assert mailoutbox == []


def test_email_to_an_address_suppressed_after_queueing_is_not_sent(mailoutbox) -> None:
    subscriber = SubscriberFactory(status=Subscriber.Status.PENDING)
    Suppression.objects.create(email=subscriber.email, reason=Suppression.Reason.HARD_BOUNCE)

    for kind in EmailKind:
        assert subscriber_email_send(subscriber_id=subscriber.pk, kind=kind) is False
    assert mailoutbox == []


def test_request_link_for_a_suppressed_address_sends_nothing(send_emails, mailoutbox) -> None:
    SubscriberFactory(email="ada@example.org")
    Suppression.objects.create(email="ada@example.org", reason=Suppression.Reason.HARD_BOUNCE)
    with send_emails():
        assert request_link("ada@example.org") == Outcome.SUPPRESSED
    assert mailoutbox == []

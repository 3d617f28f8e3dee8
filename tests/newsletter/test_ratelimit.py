"""Fixed-window counters in the cache (newsletter.services.ratelimit), and the limits built on them."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core.cache import cache

from newsletter.models import Subscriber
from newsletter.services.ratelimit import rate_limit_exceeded
from newsletter.services.subscription import Outcome
from tests.factories import SubscriberFactory
from tests.newsletter.helpers import NOW, request_link, subscribe

START = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # on an hour boundary: windows are aligned to it


def hit(key: str = "203.0.113.7", scope: str = "signup-ip", limit: int = 3) -> bool:
    return rate_limit_exceeded(scope=scope, key=key, limit=limit, window_seconds=3600)


def test_allows_limit_events_per_window_then_refuses() -> None:
    with time_machine.travel(START, tick=False):
        assert [hit() for _ in range(5)] == [False, False, False, True, True]


def test_keys_and_scopes_are_counted_separately() -> None:
    with time_machine.travel(START, tick=False):
        for _ in range(3):
            hit()
        assert hit() is True
        assert hit(key="198.51.100.1") is False
        assert hit(scope="link-ip") is False


def test_a_new_window_starts_from_zero() -> None:
    with time_machine.travel(START + timedelta(minutes=59), tick=False):
        for _ in range(4):
            hit()
        assert hit() is True
    with time_machine.travel(START + timedelta(hours=1), tick=False):
        assert hit() is False


def test_raw_keys_never_reach_the_cache() -> None:
    with time_machine.travel(START, tick=False):
        hit(key="ada@example.org", scope="address-emails")
    keys = list(cache._cache.keys())  # LocMemCache in tests
    assert len(keys) == 1
    assert "ada@example.org" not in keys[0]
    assert "address-emails" in keys[0]


# --- the emails-per-address limit of the subscription service ----------------------------------


@pytest.fixture
def email_limit(settings) -> int:
    settings.NEWSLETTER_EMAILS_PER_ADDRESS_PER_DAY = 3
    return 3


@pytest.mark.django_db
@pytest.mark.usefixtures("frozen_clock")
def test_at_most_n_emails_per_address_per_day(send_emails, mailoutbox, email_limit: int) -> None:
    with send_emails():
        outcomes = [subscribe(interests=f"try {n}") for n in range(email_limit + 2)]

    assert outcomes == [Outcome.CONFIRMATION_SENT] * email_limit + [Outcome.RATE_LIMITED] * 2
    assert len(mailoutbox) == email_limit
    # A refused sign-up changes nothing either: flooding cannot rewrite a pending sign-up.
    assert Subscriber.objects.get().interests == f"try {email_limit - 1}"

    with time_machine.travel(NOW + timedelta(days=1), tick=False), send_emails():
        assert subscribe(interests="next day") == Outcome.CONFIRMATION_SENT
    assert len(mailoutbox) == email_limit + 1


@pytest.mark.django_db
@pytest.mark.usefixtures("frozen_clock")
def test_email_limit_counts_every_kind_of_email(send_emails, mailoutbox, email_limit: int) -> None:
    SubscriberFactory(email="ada@example.org")
    with send_emails():
        outcomes = [subscribe("ada@example.org"), request_link("ada@example.org")]
        outcomes += [subscribe("ada@example.org") for _ in range(email_limit)]

    assert outcomes.count(Outcome.RATE_LIMITED) == 2
    assert len(mailoutbox) == email_limit


@pytest.mark.django_db
@pytest.mark.usefixtures("frozen_clock")
def test_email_limit_is_per_address(send_emails, mailoutbox, email_limit: int) -> None:
    with send_emails():
        for _ in range(email_limit + 1):
            subscribe("ada@example.org")
        assert subscribe("grace@example.org") == Outcome.CONFIRMATION_SENT
    assert sum(m.to == ["grace@example.org"] for m in mailoutbox) == 1

"""Sliding-window counters in the cache (newsletter.services.ratelimit), and the limits built on them."""

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


def test_a_burst_just_before_a_window_edge_still_counts_after_it() -> None:
    """A fixed window would allow 2 x limit within two minutes around its edge."""
    with time_machine.travel(START + timedelta(minutes=59), tick=False):
        assert [hit() for _ in range(3)] == [False, False, False]
    with time_machine.travel(START + timedelta(hours=1, minutes=1), tick=False):
        assert hit() is True


def test_the_previous_window_fades_as_time_passes() -> None:
    with time_machine.travel(START, tick=False):
        assert [hit() for _ in range(4)] == [False, False, False, True]
    # Three quarters into the next window a quarter of the 3 counted events remain: 0.75 + 2 <= 3.
    with time_machine.travel(START + timedelta(hours=1, minutes=45), tick=False):
        assert [hit() for _ in range(3)] == [False, False, True]
    with time_machine.travel(START + timedelta(hours=3), tick=False):
        assert [hit() for _ in range(4)] == [False, False, False, True]


def test_refused_events_are_not_counted() -> None:
    with time_machine.travel(START, tick=False):
        for _ in range(20):
            hit()  # 3 let through, 17 refused
    # Half of the previous window overlaps: 1.5 + 1 <= 3, which 20 counted events would not allow.
    with time_machine.travel(START + timedelta(hours=1, minutes=30), tick=False):
        assert hit() is False


def test_raw_keys_never_reach_the_cache() -> None:
    with time_machine.travel(START, tick=False):
        hit(key="ada@example.org", scope="address-signup-emails")
    keys = list(cache._cache.keys())  # LocMemCache in tests
    assert len(keys) == 1
    assert "ada@example.org" not in keys[0]
    assert "address-signup-emails" in keys[0]


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
def test_sign_ups_by_a_stranger_leave_the_owner_their_link_requests(
    send_emails, mailoutbox, email_limit: int
) -> None:
    SubscriberFactory(email="ada@example.org")
    with send_emails():
        stranger = [subscribe("ada@example.org") for _ in range(email_limit + 2)]
        owner = request_link("ada@example.org")

    assert stranger.count(Outcome.RATE_LIMITED) == 2
    assert owner == Outcome.MANAGE_LINK_SENT
    assert len(mailoutbox) == email_limit + 1


@pytest.mark.django_db
@pytest.mark.usefixtures("frozen_clock")
def test_link_requests_are_limited_too(send_emails, mailoutbox, settings) -> None:
    settings.NEWSLETTER_LINK_EMAILS_PER_ADDRESS_PER_DAY = 2
    SubscriberFactory(email="ada@example.org")
    with send_emails():
        outcomes = [request_link("ada@example.org") for _ in range(3)]

    assert outcomes == [Outcome.MANAGE_LINK_SENT] * 2 + [Outcome.RATE_LIMITED]
    assert len(mailoutbox) == 2


@pytest.mark.django_db
@pytest.mark.usefixtures("frozen_clock")
def test_email_limit_is_per_address(send_emails, mailoutbox, email_limit: int) -> None:
    with send_emails():
        for _ in range(email_limit + 1):
            subscribe("ada@example.org")
        assert subscribe("grace@example.org") == Outcome.CONFIRMATION_SENT
    assert sum(m.to == ["grace@example.org"] for m in mailoutbox) == 1

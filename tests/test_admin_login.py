"""Admin log-in throttling (django-axes, configured in config/settings/base.py)."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.contrib.auth.models import User
from django.test import Client

from newsletter.services.login_throttle import login_failure_record, login_wait_seconds

pytestmark = pytest.mark.django_db

PASSWORD = "correct horse battery staple"


@pytest.fixture
def operator() -> User:
    return User.objects.create_superuser("operator", "ops@example.org", PASSWORD)


def log_in(password: str, **extra) -> int:
    client = Client()
    response = client.post(
        "/admin/login/?next=/admin/", {"username": "operator", "password": password}, **extra
    )
    return response.status_code


def test_wrong_passwords_lock_the_address_out_even_for_the_right_password(settings, operator) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    wrong = [log_in("guess") for _ in range(3)]

    assert wrong == [200, 200, 429]  # the login form again twice, then the lockout page
    assert log_in(PASSWORD) == 429


def test_the_lockout_page_is_ours_and_names_no_account(settings, operator) -> None:
    settings.AXES_FAILURE_LIMIT = 1
    log_in("guess")
    response = Client().post("/admin/login/", {"username": "operator", "password": "guess"})

    assert response.status_code == 429
    assert b"Too many failed log-ins" in response.content
    assert b"operator" not in response.content


def test_another_address_can_still_log_in(settings, operator) -> None:
    settings.AXES_FAILURE_LIMIT = 2
    [log_in("guess") for _ in range(2)]

    assert log_in(PASSWORD, REMOTE_ADDR="198.51.100.9") == 302


def test_behind_a_proxy_the_lockout_is_per_visitor_not_per_proxy(settings, operator) -> None:
    settings.NEWSLETTER_TRUSTED_PROXIES = 1
    settings.AXES_FAILURE_LIMIT = 2
    [log_in("guess", HTTP_X_FORWARDED_FOR="203.0.113.66") for _ in range(2)]

    assert log_in("guess", HTTP_X_FORWARDED_FOR="203.0.113.66") == 429
    assert log_in(PASSWORD, HTTP_X_FORWARDED_FOR="203.0.113.7") == 302


def test_a_successful_log_in_resets_the_count(settings, operator) -> None:
    settings.AXES_FAILURE_LIMIT = 2
    log_in("guess")
    assert log_in(PASSWORD) == 302

    assert log_in("guess") == 200  # one failure since the success: still the form, no lockout


# --- per username: a growing delay, never a lock (newsletter.services.login_throttle) -------------

START = datetime(2026, 3, 2, 10, tzinfo=UTC)


@pytest.fixture
def clock() -> Iterator[time_machine.Traveller]:
    with time_machine.travel(START, tick=False) as traveller:
        yield traveller


@pytest.fixture
def per_username(settings) -> None:
    """Behind one proxy; the address limit out of the way, three free failures per username."""
    settings.NEWSLETTER_TRUSTED_PROXIES = 1
    settings.AXES_FAILURE_LIMIT = 1000
    settings.NEWSLETTER_LOGIN_FREE_FAILURES = 3
    settings.NEWSLETTER_LOGIN_MAX_DELAY_SECONDS = 300


def from_network(n: int) -> dict:
    """A request from the n-th /64: a stranger who rotates whole networks, not only addresses."""
    return {"HTTP_X_FORWARDED_FOR": f"2001:db8:{n:x}::1"}


def log_in_page(password: str, username: str = "operator", **extra):
    return Client().post("/admin/login/?next=/admin/", {"username": username, "password": password}, **extra)


def test_failures_from_many_networks_delay_the_username_then_the_right_password_works(
    clock, per_username, operator
) -> None:
    assert [log_in("guess", **from_network(n)) for n in range(3)] == [200, 200, 200]

    refused = log_in_page(PASSWORD, **from_network(10))
    assert refused.status_code == 200  # the form again, with the reason, not a lockout page
    assert b"try again in 1 second" in refused.content
    clock.shift(timedelta(seconds=1))
    assert log_in(PASSWORD, **from_network(11)) == 302


def test_the_delay_doubles_per_failure_up_to_the_maximum(clock, per_username, settings) -> None:
    settings.NEWSLETTER_LOGIN_MAX_DELAY_SECONDS = 10
    waits = []
    for _ in range(9):
        login_failure_record(username="operator")
        waits.append(login_wait_seconds(username="operator", client="2001:db8:1::"))

    assert waits == [0, 0, 1, 2, 4, 8, 10, 10, 10]


def test_refused_attempts_do_not_lengthen_the_delay(clock, per_username, operator) -> None:
    [log_in("guess", **from_network(n)) for n in range(3)]
    [log_in("guess", **from_network(n)) for n in range(3, 20)]  # all refused within the second

    clock.shift(timedelta(seconds=1))
    assert log_in(PASSWORD, **from_network(30)) == 302


def test_a_network_the_operator_logged_in_from_is_never_delayed(clock, per_username, operator) -> None:
    assert log_in(PASSWORD, HTTP_X_FORWARDED_FOR="2001:db8:aa::1") == 302
    [log_in("guess", **from_network(n)) for n in range(12)]

    assert log_in(PASSWORD, HTTP_X_FORWARDED_FOR="2001:db8:aa::9") == 302  # same /64, another address
    assert log_in(PASSWORD, **from_network(40)) == 200  # a new network waits


def test_unknown_usernames_are_delayed_alike_so_the_page_names_no_account(clock, per_username) -> None:
    [log_in_page("guess", username="nobody", **from_network(n)) for n in range(3)]

    response = log_in_page("guess", username="nobody", **from_network(9))
    assert b"try again in 1 second" in response.content


def test_refused_attempts_do_not_count_toward_the_networks_lockout(
    clock, per_username, settings, operator
) -> None:
    settings.AXES_FAILURE_LIMIT = 3
    [log_in("guess", **from_network(n)) for n in range(3)]
    # The operator, on a new network, tries while the delay runs: refused, but never locked out.
    assert [log_in(PASSWORD, **from_network(50)) for _ in range(5)] == [200] * 5

    clock.shift(timedelta(seconds=1))
    assert log_in(PASSWORD, **from_network(50)) == 302

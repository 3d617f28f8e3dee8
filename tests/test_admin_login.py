"""Admin log-in throttling (django-axes, configured in config/settings/base.py)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

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

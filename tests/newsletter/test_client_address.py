"""The client address behind reverse proxies (newsletter.client_address), and the limits keyed on it."""

from __future__ import annotations

import pytest
from django.test import Client, RequestFactory

from newsletter.client_address import client_address
from newsletter.models import Subscriber
from tests.newsletter.helpers import signup_data, submit

PROXY = "10.0.0.2"


def address(settings, trusted: int, forwarded: str | None) -> str:
    settings.NEWSLETTER_TRUSTED_PROXIES = trusted
    headers = {} if forwarded is None else {"HTTP_X_FORWARDED_FOR": forwarded}
    return client_address(RequestFactory().get("/", REMOTE_ADDR=PROXY, **headers))


def test_without_trusted_proxies_x_forwarded_for_is_ignored(settings) -> None:
    assert address(settings, 0, "203.0.113.7") == PROXY


def test_behind_one_proxy_the_client_is_the_entry_that_proxy_appended(settings) -> None:
    # The client sent "198.51.100.1" itself; nginx appended the address it saw.
    assert address(settings, 1, "198.51.100.1, 203.0.113.7") == "203.0.113.7"


def test_behind_two_proxies_the_outer_proxy_wrote_the_second_entry_from_the_right(settings) -> None:
    assert address(settings, 2, "198.51.100.1, 203.0.113.7, 10.0.0.1") == "203.0.113.7"


def test_fewer_entries_than_proxies_takes_the_leftmost(settings) -> None:
    assert address(settings, 2, "203.0.113.7") == "203.0.113.7"


@pytest.mark.parametrize("forwarded", [None, "", " , ", "not-an-address", "203.0.113.7:4711"])
def test_missing_or_garbled_header_falls_back_to_remote_addr(settings, forwarded) -> None:
    assert address(settings, 1, forwarded) == PROXY


def test_ipv6_addresses_are_normalized(settings) -> None:
    assert address(settings, 1, "2001:DB8:0:0::1") == "2001:db8::1"


@pytest.mark.django_db
def test_behind_a_proxy_each_visitor_has_its_own_sign_up_limit(settings, send_emails) -> None:
    settings.NEWSLETTER_TRUSTED_PROXIES = 1
    settings.NEWSLETTER_SIGNUPS_PER_IP_PER_HOUR = 2
    client = Client(enforce_csrf_checks=True)
    with send_emails():  # sign-ups are handled by a task queued on commit
        statuses = [
            submit(
                client,
                "/subscribe/",
                signup_data(f"reader{n}@example.org"),
                REMOTE_ADDR=PROXY,
                HTTP_X_FORWARDED_FOR=f"203.0.113.{n}",
            ).status_code
            for n in range(5)
        ]

    assert statuses == [302] * 5
    assert Subscriber.objects.count() == 5


@pytest.mark.django_db
def test_a_forged_x_forwarded_for_does_not_dodge_the_limit(settings) -> None:
    settings.NEWSLETTER_TRUSTED_PROXIES = 1
    settings.NEWSLETTER_SIGNUPS_PER_IP_PER_HOUR = 2
    client = Client(enforce_csrf_checks=True)
    statuses = [
        submit(
            client,
            "/manage/",
            {"email": f"reader{n}@example.org"},
            REMOTE_ADDR=PROXY,
            # The client varies what it sends; the proxy always appends the same real address.
            HTTP_X_FORWARDED_FOR=f"198.51.100.{n}, 203.0.113.7",
        ).status_code
        for n in range(3)
    ]

    assert statuses == [302, 302, 429]

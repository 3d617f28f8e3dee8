"""Per-client limits key IPv6 visitors by prefix, /64 unless NEWSLETTER_IPV6_PREFIX_LENGTH says
otherwise: one subscriber line gets a whole /64, so rotating addresses inside it must not buy fresh
allowances (issue 18 item 4). Sign-up, "send me a link", feedback and admin log-in all share the key."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client, RequestFactory

from newsletter.checks import check_ipv6_prefix
from newsletter.client_address import client_key
from newsletter.models import Feedback
from newsletter.services.tokens import feedback_link
from tests.factories import PaperFactory, SubscriberFactory
from tests.newsletter.helpers import signup_data, submit

PROXY = "10.0.0.2"


def rotating(count: int, network: str = "2001:db8:77:0") -> list[str]:
    """`count` different addresses in one /64, as a client rotating its privacy addresses uses them."""
    return [f"{network}:{n:x}:{3 * n + 1:x}:beef:{n + 7:x}" for n in range(count)]


def key(settings, forwarded: str, prefix: int = 64) -> str:
    settings.NEWSLETTER_TRUSTED_PROXIES = 1
    settings.NEWSLETTER_IPV6_PREFIX_LENGTH = prefix
    return client_key(RequestFactory().get("/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=forwarded))


def test_every_address_of_a_64_has_one_key(settings) -> None:
    assert {key(settings, a) for a in rotating(12)} == {"2001:db8:77::"}


def test_the_next_64_has_another_key(settings) -> None:
    assert key(settings, "2001:db8:77:1::1") == "2001:db8:77:1::"


def test_the_prefix_length_is_a_setting(settings) -> None:
    assert key(settings, "2001:db8:77:1::1", prefix=48) == "2001:db8:77::"
    assert key(settings, "2001:db8:77:1::1", prefix=128) == "2001:db8:77:1::1"


def test_ipv4_keeps_its_full_address_also_when_mapped_into_ipv6(settings) -> None:
    assert key(settings, "203.0.113.7") == "203.0.113.7"
    assert key(settings, "::ffff:203.0.113.7") == "203.0.113.7"


def test_without_a_proxy_remote_addr_is_keyed_the_same_way(settings) -> None:
    settings.NEWSLETTER_TRUSTED_PROXIES = 0
    settings.NEWSLETTER_IPV6_PREFIX_LENGTH = 64
    assert client_key(RequestFactory().get("/", REMOTE_ADDR="2001:db8:77::5")) == "2001:db8:77::"


@pytest.mark.django_db
def test_sign_ups_from_rotating_addresses_share_the_limit(settings) -> None:
    settings.NEWSLETTER_TRUSTED_PROXIES = 1
    settings.NEWSLETTER_SIGNUPS_PER_IP_PER_HOUR = 3
    client = Client(enforce_csrf_checks=True)
    statuses = [
        submit(
            client, "/subscribe/", signup_data(f"r{n}@example.org"), REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=a
        ).status_code
        for n, a in enumerate(rotating(5))
    ]
    elsewhere = submit(
        client,
        "/subscribe/",
        signup_data("x@example.org"),
        REMOTE_ADDR=PROXY,
        HTTP_X_FORWARDED_FOR="2001:db8:78::1",
    )

    assert statuses == [302, 302, 302, 429, 429]
    assert elsewhere.status_code == 302


@pytest.mark.django_db
def test_link_requests_from_rotating_addresses_share_the_limit(settings) -> None:
    settings.NEWSLETTER_TRUSTED_PROXIES = 1
    settings.NEWSLETTER_SIGNUPS_PER_IP_PER_HOUR = 2
    client = Client(enforce_csrf_checks=True)
    statuses = [
        submit(
            client, "/manage/", {"email": f"r{n}@example.org"}, REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=a
        ).status_code
        for n, a in enumerate(rotating(3))
    ]

    assert statuses == [302, 302, 429]


@pytest.mark.django_db
def test_feedback_from_rotating_addresses_shares_the_limit(settings) -> None:
    settings.NEWSLETTER_TRUSTED_PROXIES = 1
    settings.NEWSLETTER_FEEDBACK_PER_IP_PER_HOUR = 3
    subscriber = SubscriberFactory()
    client = Client(enforce_csrf_checks=True)
    statuses = []
    for address in rotating(5):
        page = feedback_link(subscriber=subscriber, paper_id=PaperFactory().pk).removeprefix(
            settings.SITE_URL
        )
        statuses.append(
            submit(client, page + "more/", REMOTE_ADDR=PROXY, HTTP_X_FORWARDED_FOR=address).status_code
        )

    assert statuses == [302, 302, 302, 429, 429]
    assert Feedback.objects.count() == 3


@pytest.mark.django_db
def test_twelve_wrong_admin_passwords_from_rotating_addresses_lock_the_64_out(settings) -> None:
    settings.NEWSLETTER_TRUSTED_PROXIES = 1
    settings.AXES_FAILURE_LIMIT = 5
    User.objects.create_superuser("operator", "ops@example.org", "correct horse battery staple")
    statuses = [
        Client()
        .post(
            "/admin/login/?next=/admin/",
            {"username": "operator", "password": f"guess {n}"},
            REMOTE_ADDR=PROXY,
            HTTP_X_FORWARDED_FOR=address,
        )
        .status_code
        for n, address in enumerate(rotating(12))
    ]

    assert statuses == [200] * 4 + [429] * 8


@pytest.mark.parametrize(
    ("length", "flagged"),
    [
        (64, []),
        (56, []),
        (48, []),
        (32, []),
        (128, ["newsletter.W020"]),
        (65, ["newsletter.W020"]),
        (31, ["newsletter.W020"]),
        (0, ["newsletter.W020"]),
    ],
)
def test_check_deploy_flags_a_prefix_length_that_defeats_or_overreaches_the_limits(
    settings, length: int, flagged: list[str]
) -> None:
    settings.NEWSLETTER_IPV6_PREFIX_LENGTH = length
    assert [m.id for m in check_ipv6_prefix()] == flagged

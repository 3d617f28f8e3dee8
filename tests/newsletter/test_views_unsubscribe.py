"""The unsubscribe page: a GET only shows the form, a POST unsubscribes, and RFC 8058 one-click
unsubscribing works without cookies or CSRF."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from newsletter.models import Subscriber
from newsletter.services.tokens import Purpose
from tests.factories import SubscriberFactory
from tests.newsletter.helpers import NOW, csrf_token, submit, url

pytestmark = pytest.mark.django_db


def test_get_unsubscribe_never_unsubscribes(client: Client) -> None:
    subscriber = SubscriberFactory()
    response = client.get(url("unsubscribe", subscriber, Purpose.UNSUBSCRIBE))

    assert response.status_code == 200
    assert b'<button type="submit">Unsubscribe</button>' in response.content
    assert url("manage", subscriber, Purpose.MANAGE).encode() in response.content
    subscriber.refresh_from_db()
    assert subscriber.status == Subscriber.Status.ACTIVE


def test_unsubscribe_form_post_unsubscribes(client: Client) -> None:
    subscriber = SubscriberFactory(next_send_at=NOW)
    response = submit(client, url("unsubscribe", subscriber, Purpose.UNSUBSCRIBE))

    assert response.status_code == 200
    assert b"You are unsubscribed" in response.content
    subscriber.refresh_from_db()
    assert subscriber.status == Subscriber.Status.UNSUBSCRIBED
    assert subscriber.next_send_at is None


def resubscribe_form(html: str) -> str:
    """The action of the page's "Subscribe again" form."""
    found = re.search(r'<form method="post" action="([^"]+)"[^>]*>.*?Subscribe again</button>', html, re.S)
    assert found, html
    return found.group(1)


@pytest.mark.parametrize("visit", ["after the post", "a second visit to the link"])
def test_subscribe_again_from_the_unsubscribe_link_keeps_the_preferences(client: Client, visit: str) -> None:
    """The same one-click path as the manage page's, never the blank sign-up form."""
    subscriber = SubscriberFactory(interests="parsing", papers_per_digest=3, next_send_at=NOW)
    unsubscribe = url("unsubscribe", subscriber, Purpose.UNSUBSCRIBE)
    page = submit(client, unsubscribe)
    if visit == "a second visit to the link":
        page = client.get(unsubscribe)
    html = page.content.decode()
    assert "You are unsubscribed" in html

    action = resubscribe_form(html)
    assert action == url("manage", subscriber, Purpose.MANAGE) + "resubscribe/"
    response = client.post(action, {"csrfmiddlewaretoken": csrf_token(page)}, follow=True)

    subscriber.refresh_from_db()
    assert subscriber.status == Subscriber.Status.ACTIVE
    assert (subscriber.interests, subscriber.papers_per_digest) == ("parsing", 3)
    assert "Welcome back" in response.content.decode()
    assert f'<a href="{url("manage", subscriber, Purpose.MANAGE)}"' in html  # the header link too


@pytest.mark.parametrize(
    "body",
    [
        {"data": "List-Unsubscribe=One-Click", "content_type": "application/x-www-form-urlencoded"},
        {"data": {"List-Unsubscribe": "One-Click"}},  # multipart/form-data, also allowed by RFC 8058
    ],
)
def test_one_click_unsubscribe_needs_no_cookie_or_csrf_and_does_not_redirect(body: dict) -> None:
    subscriber = SubscriberFactory()
    mailbox_provider = Client(enforce_csrf_checks=True)  # a fresh client: no cookies at all

    response = mailbox_provider.post(url("unsubscribe", subscriber, Purpose.UNSUBSCRIBE), **body)

    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/plain")
    assert "Location" not in response
    assert response.content == b"You are unsubscribed.\n"
    subscriber.refresh_from_db()
    assert subscriber.status == Subscriber.Status.UNSUBSCRIBED
    # Posting again (providers retry) is fine.
    assert (
        mailbox_provider.post(url("unsubscribe", subscriber, Purpose.UNSUBSCRIBE), **body).status_code == 200
    )


def test_one_click_with_an_invalid_token_is_a_plain_404() -> None:
    response = Client(enforce_csrf_checks=True).post(
        "/unsubscribe/nonsense/",
        "List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/plain")


def test_unsubscribe_accepts_only_get_and_post(client: Client) -> None:
    subscriber = SubscriberFactory()
    assert client.put(url("unsubscribe", subscriber, Purpose.UNSUBSCRIBE)).status_code == 405
    subscriber.refresh_from_db()
    assert subscriber.status == Subscriber.Status.ACTIVE

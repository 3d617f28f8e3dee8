"""Sign-up and confirmation pages through Django's test client: CSRF, no enumeration, signed links,
escaping, headers."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from newsletter.models import Subscriber, Suppression
from newsletter.services.tokens import Purpose, token_make
from tests.factories import SubscriberFactory, TopicFactory
from tests.newsletter.helpers import (
    INVALID_LINK_TEXT,
    NOW,
    assert_email_contains,
    csrf_token,
    link_token,
    manage_data,
    signup_data,
    submit,
    url,
)

pytestmark = pytest.mark.django_db


# --- subscribe ---------------------------------------------------------------------------------


def test_subscribe_page_lists_topics_and_every_preference(client: Client) -> None:
    TopicFactory(name="Quantum widgets")
    response = client.get(reverse("newsletter:subscribe"))

    assert response.status_code == 200
    html = response.content.decode()
    assert "Quantum widgets" in html
    assert 'type="checkbox" name="topics"' in html
    for name in [
        "email",
        "interests",
        "excluded_keywords",
        "frequency",
        "weekday",
        "send_hour",
        "timezone",
        "papers_per_digest",
        "email_format",
        "website",
    ]:
        assert f'name="{name}"' in html, name
    assert 'data-detect="browser"' in html
    assert "js/timezone.js" in html
    home = client.get("/")
    assert home.status_code == 200
    assert b'action="/subscribe/"' in home.content


def test_pages_send_security_headers(client: Client) -> None:
    response = client.get(reverse("newsletter:subscribe"))

    csp = response["Content-Security-Policy"]
    assert "default-src 'self'" in csp
    assert "script-src 'self'" in csp
    assert "frame-ancestors 'none'" in csp
    assert response["X-Frame-Options"] == "DENY"
    assert response["Referrer-Policy"] == "same-origin"
    assert response["X-Content-Type-Options"] == "nosniff"


def test_the_answer_is_the_same_for_new_pending_active_unsubscribed_and_suppressed(
    client: Client, send_emails, mailoutbox
) -> None:
    SubscriberFactory(email="pending@example.org", status=Subscriber.Status.PENDING)
    SubscriberFactory(email="active@example.org")
    SubscriberFactory(email="gone@example.org", status=Subscriber.Status.UNSUBSCRIBED)
    Suppression.objects.create(email="blocked@example.org", reason=Suppression.Reason.COMPLAINT)
    addresses = [
        "new@example.org",
        "pending@example.org",
        "active@example.org",
        "gone@example.org",
        "blocked@example.org",
    ]

    answers = []
    for email in addresses:
        with send_emails():
            response = submit(client, reverse("newsletter:subscribe"), signup_data(email))
        page = client.get(response["Location"])
        answers.append(
            (
                response.status_code,
                response["Location"],
                response.content,
                dict(response.cookies),
                page.content,
            )
        )

    assert answers[0][:2] == (302, reverse("newsletter:check_inbox"))
    assert all(answer == answers[0] for answer in answers)
    assert b"Check your inbox" in answers[0][4]
    # Only the inbox differs: one email per address, none to the suppressed one, never a second row.
    assert sorted((m.to[0], m.subject) for m in mailoutbox) == [
        ("active@example.org", "You are already subscribed to Paper Digest"),
        ("gone@example.org", "Confirm your Paper Digest subscription"),
        ("new@example.org", "Confirm your Paper Digest subscription"),
        ("pending@example.org", "Confirm your Paper Digest subscription"),
    ]
    assert Subscriber.objects.count() == 4


def test_sign_up_sends_a_confirmation_with_the_link_in_both_parts(client, send_emails, mailoutbox) -> None:
    topic = TopicFactory()
    with send_emails():
        submit(client, "/subscribe/", signup_data(" Ada@Bücher.de ", topics=[str(topic.pk)]))

    subscriber = Subscriber.objects.get()
    assert subscriber.email == "ada@xn--bcher-kva.de"
    assert subscriber.status == Subscriber.Status.PENDING
    assert list(subscriber.topics.all()) == [topic]
    [message] = mailoutbox
    assert message.to == ["ada@xn--bcher-kva.de"]
    token = link_token(message, "confirm")
    assert_email_contains(message, f"https://digest.example.org/confirm/{token}/")


def test_invalid_sign_up_shows_inline_errors_and_keeps_input_escaped(client: Client, mailoutbox) -> None:
    payload = '<script>alert("x")</script>'
    response = submit(
        client, "/subscribe/", signup_data(f"{payload}@example", interests=payload, papers_per_digest="99")
    )

    assert response.status_code == 200
    html = response.content.decode()
    assert "Enter a valid email address." in html
    assert "Ensure this value is less than or equal to 30." in html
    assert payload not in html
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in html
    assert not Subscriber.objects.exists()
    assert mailoutbox == []


def test_a_filled_honeypot_gets_the_same_answer_and_nothing_happens(client, send_emails, mailoutbox) -> None:
    with send_emails():
        response = submit(client, "/subscribe/", signup_data("bot@example.org", website="http://spam"))

    assert response.status_code == 302
    assert response["Location"] == reverse("newsletter:check_inbox")
    assert not Subscriber.objects.exists()
    assert mailoutbox == []


def test_sign_ups_are_limited_per_ip(client: Client, settings, send_emails) -> None:
    settings.NEWSLETTER_SIGNUPS_PER_IP_PER_HOUR = 2
    with send_emails():
        statuses = [
            submit(client, "/subscribe/", signup_data(f"reader{n}@example.org")).status_code for n in range(3)
        ]
        other_ip = submit(client, "/subscribe/", signup_data("other@example.org"), REMOTE_ADDR="198.51.100.9")

    assert statuses == [302, 302, 429]
    assert other_ip.status_code == 302
    assert Subscriber.objects.count() == 3


def test_post_without_csrf_token_is_refused_on_every_form(client: Client) -> None:
    subscriber = SubscriberFactory()
    pending = SubscriberFactory(status=Subscriber.Status.PENDING)
    posts = [
        ("/subscribe/", signup_data("ada@example.org")),
        ("/manage/", {"email": subscriber.email}),
        (url("confirm", pending, Purpose.CONFIRM), {}),
        (url("manage", subscriber, Purpose.MANAGE), manage_data()),
        (url("delete", subscriber, Purpose.MANAGE), {}),
        (url("unsubscribe", subscriber, Purpose.UNSUBSCRIBE), {}),
    ]

    for path, data in posts:
        response = client.post(path, data)
        assert response.status_code == 403, path
        assert b"This form has expired" in response.content  # our page, not Django's debug page

    assert Subscriber.objects.filter(email="ada@example.org").exists() is False
    subscriber.refresh_from_db()
    pending.refresh_from_db()
    assert (subscriber.status, subscriber.frequency) == ("active", "daily")
    assert pending.status == "pending"


# --- confirm -----------------------------------------------------------------------------------


@pytest.mark.usefixtures("recent_paper")
def test_confirm_get_only_shows_a_button_post_confirms(client: Client) -> None:
    subscriber = SubscriberFactory(status=Subscriber.Status.PENDING, confirmed_at=None)
    confirm_url = url("confirm", subscriber, Purpose.CONFIRM)

    page = client.get(confirm_url)
    assert page.status_code == 200
    assert b"Confirm my subscription" in page.content
    assert "no-store" in page["Cache-Control"]
    subscriber.refresh_from_db()
    assert subscriber.status == Subscriber.Status.PENDING

    response = client.post(confirm_url, {"csrfmiddlewaretoken": csrf_token(page)})
    subscriber.refresh_from_db()
    assert subscriber.status == Subscriber.Status.ACTIVE
    assert subscriber.next_send_at is not None
    assert response.status_code == 302
    assert response["Location"].startswith("/manage/")
    manage = client.get(response["Location"])
    assert b"You are subscribed." in manage.content

    again = client.get(confirm_url)
    assert b"You are already subscribed" in again.content


def test_expired_confirmation_link_gets_a_helpful_404(client: Client, settings) -> None:
    subscriber = SubscriberFactory(status=Subscriber.Status.PENDING)
    with time_machine.travel(NOW, tick=False):
        confirm_url = url("confirm", subscriber, Purpose.CONFIRM)
    with time_machine.travel(NOW + settings.NEWSLETTER_CONFIRM_MAX_AGE + timedelta(seconds=1), tick=False):
        response = client.get(confirm_url)

    assert response.status_code == 404
    assert INVALID_LINK_TEXT.encode() in response.content
    assert b"Send me a new link" in response.content


# --- signed links ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "path",
    [
        "/confirm/nonsense/",
        "/manage/nonsense/",
        "/manage/nonsense/export/",
        "/manage/nonsense/delete/",
        "/unsubscribe/nonsense/",
        "/digests/nonsense/",
        "/confirm/WzEsImFiYyJd:1vy5Uu:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa/",
    ],
)
def test_invalid_tokens_get_a_helpful_404(client: Client, path: str) -> None:
    response = client.get(path)

    assert response.status_code == 404
    assert INVALID_LINK_TEXT.encode() in response.content
    assert reverse("newsletter:request_link").encode() in response.content


def test_a_token_for_one_purpose_does_not_open_another_page(client: Client) -> None:
    subscriber = SubscriberFactory()
    unsubscribe_token = token_make(subscriber=subscriber, purpose=Purpose.UNSUBSCRIBE)
    confirm_token = token_make(subscriber=subscriber, purpose=Purpose.CONFIRM)

    assert client.get(f"/manage/{unsubscribe_token}/").status_code == 404
    assert client.get(f"/manage/{confirm_token}/export/").status_code == 404
    assert client.get(f"/unsubscribe/{confirm_token}/").status_code == 404


def _post_work(client: Client, path: str, data: dict, django_capture_on_commit_callbacks) -> tuple:
    """What a POST does inside the web request: its SQL statements and the tasks it queues."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    token = csrf_token(client.get(path))
    with CaptureQueriesContext(connection) as queries, django_capture_on_commit_callbacks() as queued:
        response = client.post(path, {**data, "csrfmiddlewaretoken": token})
    statements = [q["sql"].split(" WHERE ")[0] for q in queries.captured_queries]
    return response.status_code, statements, len(queued)


def test_sign_up_does_the_same_work_in_the_request_whatever_the_address(
    client: Client, django_capture_on_commit_callbacks
) -> None:
    """No timing side channel: the request never looks the address up; one task decides in a worker."""
    SubscriberFactory(email="active@example.org")
    SubscriberFactory(email="pending@example.org", status=Subscriber.Status.PENDING)
    SubscriberFactory(email="gone@example.org", status=Subscriber.Status.UNSUBSCRIBED)
    Suppression.objects.create(email="bounced@example.org", reason=Suppression.Reason.HARD_BOUNCE)
    addresses = ["new@example.org", "active@example.org", "pending@example.org", "gone@example.org"]

    work = {
        email: _post_work(client, "/subscribe/", signup_data(email), django_capture_on_commit_callbacks)
        for email in [*addresses, "bounced@example.org"]
    }

    assert len(set(map(repr, work.values()))) == 1, work
    status, statements, queued = work["new@example.org"]
    assert (status, queued) == (302, 1)
    assert not any("newsletter_subscriber" in sql or "newsletter_suppression" in sql for sql in statements)


def test_link_requests_do_the_same_work_in_the_request_whatever_the_address(
    client: Client, django_capture_on_commit_callbacks
) -> None:
    SubscriberFactory(email="active@example.org")
    work = {
        email: _post_work(
            client, "/manage/", {"email": email, "website": ""}, django_capture_on_commit_callbacks
        )
        for email in ["unknown@example.org", "active@example.org"]
    }

    assert work["unknown@example.org"] == work["active@example.org"]
    assert work["active@example.org"][0::2] == (302, 1)

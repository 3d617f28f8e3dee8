"""Subscriber pages through Django's test client: CSRF, no enumeration, tokens, escaping, headers."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from newsletter.models import Delivery, DeliveryItem, Subscriber, Suppression
from newsletter.services.tokens import Purpose, token_make
from tests.factories import DeliveryFactory, PaperFactory, SubscriberFactory, TopicFactory
from tests.newsletter.test_subscription import assert_email_contains, link_token

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)  # a Monday
INVALID_LINK_TEXT = "This link is not valid any more"


@pytest.fixture
def client() -> Client:
    """Every test client checks CSRF tokens, as the real middleware does for browsers."""
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def send_emails(django_capture_on_commit_callbacks):
    return lambda: django_capture_on_commit_callbacks(execute=True)


def csrf_token(response) -> str:
    found = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', response.content)
    assert found, "no CSRF token in the form"
    return found.group(1).decode()


def submit(client: Client, url: str, data: dict | None = None, **extra):
    """GET the page, then POST its form back with the CSRF token, like a browser."""
    token = csrf_token(client.get(url))
    return client.post(url, {**(data or {}), "csrfmiddlewaretoken": token}, **extra)


def signup_data(email: str, **overrides) -> dict:
    data = {
        "email": email,
        "interests": "graph neural networks",
        "excluded_keywords": "",
        "frequency": "daily",
        "weekday": "0",
        "send_hour": "8",
        "timezone": "Europe/Berlin",
        "papers_per_digest": "10",
        "email_format": "html",
        "website": "",
    }
    data.update(overrides)
    return data


def url(name: str, subscriber: Subscriber, purpose: Purpose) -> str:
    return reverse(f"newsletter:{name}", args=[token_make(subscriber=subscriber, purpose=purpose)])


def manage_data(**overrides) -> dict:
    data = signup_data("", frequency="weekly", weekday="4", send_hour="7", papers_per_digest="5")
    del data["email"], data["website"]
    data.update(overrides)
    return data


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


# --- manage ------------------------------------------------------------------------------------


@pytest.fixture
def recent_paper():
    """A paper in every subscriber's window: see test_manage_page_works_without_any_recent_paper."""
    return PaperFactory(title="An unrelated recent paper", abstract="About cooking recipes.")


def test_manage_page_works_without_any_recent_paper(client: Client) -> None:
    """A fresh install, or a quiet week: the preview is empty, the page still renders."""
    subscriber = SubscriberFactory(interests="graph neural networks")

    response = client.get(url("manage", subscriber, Purpose.MANAGE))

    assert response.status_code == 200
    assert b"No new paper matches your preferences right now." in response.content


def test_manage_page_shows_preferences_next_digest_and_preview(client: Client) -> None:
    topic = TopicFactory(name="Graphs")
    subscriber = SubscriberFactory(
        topics=[topic],
        interests="graph neural networks",
        excluded_keywords="blockchain",
        timezone="Europe/Berlin",
        next_send_at=datetime(2026, 3, 3, 7, 0, tzinfo=UTC),
    )
    PaperFactory(title="Graph neural networks for molecules")
    PaperFactory(title="Something else entirely", abstract="Unrelated cooking recipes.")
    PaperFactory(title="Graph neural networks for crypto", abstract="Blockchain.", upvotes=1000)

    response = client.get(url("manage", subscriber, Purpose.MANAGE))

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    assert subscriber.email in html
    assert "Tuesday 3 March 2026, 08:00 (Europe/Berlin)" in html
    preview = html.split('id="preview"')[1]
    assert "Graph neural networks for molecules" in preview
    assert "Something else entirely" not in preview
    assert "Graph neural networks for crypto" not in preview
    assert 'value="Europe/Berlin" selected' in html
    assert 'data-detect="browser"' not in html
    assert url("unsubscribe", subscriber, Purpose.UNSUBSCRIBE) in html
    assert url("export", subscriber, Purpose.MANAGE) in html


@pytest.mark.usefixtures("recent_paper")
def test_manage_page_escapes_what_the_subscriber_typed(client: Client) -> None:
    interests = '</textarea><script>alert("interests")</script>'
    excluded = '"><img src=x onerror=alert(1)>'
    subscriber = SubscriberFactory(
        email="o'brien@example.org", interests=interests, excluded_keywords=excluded
    )

    html = client.get(url("manage", subscriber, Purpose.MANAGE)).content.decode()

    assert "<script>alert" not in html
    assert "<img src=x" not in html
    assert "&lt;/textarea&gt;&lt;script&gt;alert(&quot;interests&quot;)&lt;/script&gt;" in html
    assert "&quot;&gt;&lt;img src=x onerror=alert(1)&gt;" in html
    assert "o&#x27;brien@example.org" in html


@pytest.mark.usefixtures("recent_paper")
def test_saving_preferences_updates_everything_and_shows_the_new_schedule(client: Client) -> None:
    old, new = TopicFactory(), TopicFactory()
    subscriber = SubscriberFactory(topics=[old], timezone="UTC")
    manage_url = url("manage", subscriber, Purpose.MANAGE)

    with time_machine.travel(NOW, tick=False):
        response = submit(
            client,
            manage_url,
            manage_data(
                topics=[str(new.pk)],
                excluded_keywords="blockchain",
                email_format="text",
                notify_empty="on",
            ),
        )
        page = client.get(response["Location"])

    assert response.status_code == 302
    assert response["Location"] == manage_url
    subscriber.refresh_from_db()
    assert list(subscriber.topics.all()) == [new]
    assert (subscriber.frequency, subscriber.weekday, subscriber.send_hour) == ("weekly", 4, 7)
    assert (subscriber.timezone, subscriber.papers_per_digest) == ("Europe/Berlin", 5)
    assert (subscriber.excluded_keywords, subscriber.email_format, subscriber.notify_empty) == (
        "blockchain",
        "text",
        True,
    )
    assert subscriber.next_send_at == datetime(2026, 3, 6, 6, 0, tzinfo=UTC)
    assert b"Your preferences are saved." in page.content
    assert b"Friday 6 March 2026, 07:00 (Europe/Berlin)" in page.content


@pytest.mark.usefixtures("recent_paper")
def test_invalid_preferences_show_inline_errors_and_change_nothing(client: Client) -> None:
    subscriber = SubscriberFactory(interests="before")
    response = submit(
        client,
        url("manage", subscriber, Purpose.MANAGE),
        manage_data(interests="x" * 1001, timezone="Nowhere/Special"),
    )

    assert response.status_code == 200
    assert b"Ensure this value has at most 1000 characters (it has 1001)." in response.content
    assert b"Select a valid choice. Nowhere/Special is not one of the available choices." in response.content
    subscriber.refresh_from_db()
    assert subscriber.interests == "before"


def test_pending_subscribers_have_no_manage_page(client: Client) -> None:
    subscriber = SubscriberFactory(status=Subscriber.Status.PENDING)
    assert client.get(url("manage", subscriber, Purpose.MANAGE)).status_code == 404


# --- request a new link ------------------------------------------------------------------------


@pytest.mark.parametrize("email", ["active@example.org", "nobody@example.org"])
def test_request_link_answers_the_same_for_known_and_unknown(client, send_emails, mailoutbox, email) -> None:
    SubscriberFactory(email="active@example.org")
    with send_emails():
        response = submit(client, "/manage/", {"email": email, "website": ""})

    assert response.status_code == 302
    assert response["Location"] == reverse("newsletter:check_inbox")
    assert len(mailoutbox) == (1 if email == "active@example.org" else 0)


@pytest.mark.usefixtures("recent_paper")
def test_request_link_sends_a_working_manage_link(client, send_emails, mailoutbox) -> None:
    SubscriberFactory(email="ada@example.org")
    with send_emails():
        submit(client, "/manage/", {"email": "ADA@example.org", "website": ""})

    token = link_token(mailoutbox[0], "manage")
    assert_email_contains(mailoutbox[0], f"https://digest.example.org/manage/{token}/")
    assert client.get(f"/manage/{token}/").status_code == 200


def test_request_link_form_shows_errors_inline(client: Client) -> None:
    response = submit(client, "/manage/", {"email": "nope", "website": ""})
    assert response.status_code == 200
    assert b"Enter a valid email address." in response.content


# --- unsubscribe -------------------------------------------------------------------------------


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


# --- data rights -------------------------------------------------------------------------------


def test_export_downloads_everything_as_json(client: Client) -> None:
    subscriber = SubscriberFactory(email="ada@example.org", interests="parsing")
    delivery = DeliveryFactory(subscriber=subscriber, period="2026-03-01", status=Delivery.Status.SENT)
    paper = PaperFactory(title="Parsing all the things")
    DeliveryItem.objects.create(
        delivery=delivery, subscriber=subscriber, paper=paper, position=0, score=1.0, reasons=[]
    )

    response = client.get(url("export", subscriber, Purpose.MANAGE))

    assert response.status_code == 200
    assert response["Content-Type"] == "application/json; charset=utf-8"
    assert response["Content-Disposition"] == 'attachment; filename="paper-digest-data.json"'
    assert "no-store" in response["Cache-Control"]
    data = json.loads(response.content)
    assert data["email"] == "ada@example.org"
    assert data["preferences"]["interests"] == "parsing"
    assert data["deliveries"][0]["papers"][0]["title"] == "Parsing all the things"


def test_delete_asks_first_then_removes_every_row(client: Client) -> None:
    subscriber = SubscriberFactory()
    delivery = DeliveryFactory(subscriber=subscriber)
    DeliveryItem.objects.create(
        delivery=delivery, subscriber=subscriber, paper=PaperFactory(), position=0, score=1.0, reasons=[]
    )
    delete_url = url("delete", subscriber, Purpose.MANAGE)
    manage_url = url("manage", subscriber, Purpose.MANAGE)

    page = client.get(delete_url)
    assert page.status_code == 200
    assert b"Delete my data" in page.content
    assert Subscriber.objects.filter(pk=subscriber.pk).exists()

    response = client.post(delete_url, {"csrfmiddlewaretoken": csrf_token(page)})

    assert response.status_code == 200
    assert b"Your data is deleted" in response.content
    assert not Subscriber.objects.filter(pk=subscriber.pk).exists()
    assert not Delivery.objects.exists()
    assert not DeliveryItem.objects.exists()
    assert client.get(manage_url).status_code == 404

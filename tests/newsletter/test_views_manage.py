"""The manage pages through Django's test client: preferences and preview, a new link by email,
export and deletion of the subscriber's data."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
import time_machine
from django.test import Client
from django.urls import reverse

from newsletter.models import Delivery, DeliveryItem, Subscriber
from newsletter.services.tokens import Purpose
from tests.factories import DeliveryFactory, PaperFactory, SubscriberFactory, TopicFactory
from tests.newsletter.helpers import (
    NOW,
    assert_email_contains,
    csrf_token,
    link_token,
    manage_data,
    submit,
    url,
)

pytestmark = pytest.mark.django_db


# --- manage ------------------------------------------------------------------------------------


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


# --- after unsubscribing -----------------------------------------------------------------------


def test_the_manage_page_of_an_unsubscribed_reader_offers_only_subscribing_again(client: Client) -> None:
    subscriber = SubscriberFactory(
        interests="parsing", status=Subscriber.Status.UNSUBSCRIBED, next_send_at=None
    )
    manage = url("manage", subscriber, Purpose.MANAGE)

    html = client.get(manage).content.decode()

    assert "You are unsubscribed" in html
    assert "Save preferences" not in html and 'id="preview"' not in html
    assert html.count('type="submit"') == 1 and "Subscribe again" in html
    assert url("export", subscriber, Purpose.MANAGE) in html  # the data stays reachable
    # A stale form post saves nothing and claims nothing.
    response = submit(client, manage, manage_data(interests="changed"))
    subscriber.refresh_from_db()
    assert subscriber.interests == "parsing"
    assert "saved" not in client.get(response["Location"]).content.decode()


def test_subscribe_again_is_a_post_that_keeps_the_preferences(client: Client) -> None:
    subscriber = SubscriberFactory(
        interests="parsing", status=Subscriber.Status.UNSUBSCRIBED, next_send_at=None
    )
    manage = url("manage", subscriber, Purpose.MANAGE)

    assert client.get(f"{manage}resubscribe/").status_code == 405
    response = client.post(
        f"{manage}resubscribe/", {"csrfmiddlewaretoken": csrf_token(client.get(manage))}, follow=True
    )

    subscriber.refresh_from_db()
    assert (subscriber.status, subscriber.interests) == (Subscriber.Status.ACTIVE, "parsing")
    assert subscriber.next_send_at is not None
    html = response.content.decode()
    assert "you are subscribed again" in html and "Save preferences" in html


def test_preview_titles_link_where_the_email_links_them(client: Client) -> None:
    subscriber = SubscriberFactory(interests="graph neural networks")
    PaperFactory(title="Graph neural networks for molecules", url="")
    PaperFactory(title="Graph neural networks for proteins", url="https://arxiv.org/abs/2601.00002")

    html = client.get(url("manage", subscriber, Purpose.MANAGE)).content.decode()
    preview = html.split('id="preview"')[1].split('id="rated"')[0]

    assert 'href="#"' not in preview
    assert (
        'href="https://arxiv.org/search/?searchtype=title&amp;query=Graph+neural+networks+for+molecules"'
        in preview
    )
    assert 'href="https://arxiv.org/abs/2601.00002"' in preview
    assert preview.count("More like this") == 2 and preview.count("Not for me") == 2

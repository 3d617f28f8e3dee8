"""A confirmation link confirms the preferences it was sent for, and its page shows them before the
button (issue 18 item 8): a stranger who signs the same address up again cannot re-aim the owner's
link, and an unsubscribed address with a sign-up set aside gets its button."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from newsletter.models import Subscriber
from tests.factories import SubscriberFactory, TopicFactory
from tests.newsletter.helpers import INVALID_LINK_TEXT, csrf_token, link_token, signup_data, submit

pytestmark = pytest.mark.django_db

OWNER = {"interests": "graph neural networks", "frequency": "daily", "papers_per_digest": "10"}
STRANGER = {
    "interests": "cryptocurrency price prediction",
    "followed_authors": "Satoshi Nakamoto",
    "frequency": "weekly",
    "weekday": "5",
    "papers_per_digest": "3",
}


def sign_up(client: Client, send_emails, email: str, **preferences: str) -> None:
    with send_emails():
        response = submit(client, reverse("newsletter:subscribe"), signup_data(email, **preferences))
    assert response["Location"] == reverse("newsletter:check_inbox")


def confirm_path(message) -> str:
    return f"/confirm/{link_token(message, 'confirm')}/"


def test_a_strangers_later_sign_up_does_not_re_aim_the_owners_link(client, send_emails, mailoutbox) -> None:
    sign_up(client, send_emails, "ada@example.org", **OWNER)
    sign_up(Client(enforce_csrf_checks=True), send_emails, "ada@example.org", **STRANGER)
    owners_link, strangers_link = (confirm_path(m) for m in mailoutbox)

    # The owner's link no longer activates anything: not the stranger's choices, silently.
    page = client.get(owners_link)
    assert page.status_code == 404
    assert INVALID_LINK_TEXT in page.content.decode()
    assert client.post(owners_link).status_code in (403, 404)
    subscriber = Subscriber.objects.get()
    assert subscriber.status == Subscriber.Status.PENDING

    # The newer link, also in the owner's inbox, says what it would activate before its button.
    page = client.get(strangers_link).content.decode()
    assert "cryptocurrency price prediction" in page
    assert "Satoshi Nakamoto" in page
    assert "Weekly" in page
    assert page.index("cryptocurrency price prediction") < page.index("Confirm my subscription")


def test_a_new_sign_up_by_the_owner_sends_a_link_with_its_own_preferences(
    client, send_emails, mailoutbox
) -> None:
    sign_up(client, send_emails, "ada@example.org", **STRANGER)
    sign_up(client, send_emails, "ada@example.org", **OWNER)
    newest = confirm_path(mailoutbox[-1])

    page = client.get(newest)
    response = client.post(newest, {"csrfmiddlewaretoken": csrf_token(page)})

    assert response.status_code == 302
    subscriber = Subscriber.objects.get()
    assert (subscriber.status, subscriber.interests, subscriber.frequency) == (
        Subscriber.Status.ACTIVE,
        "graph neural networks",
        "daily",
    )


def test_the_confirm_page_lists_what_it_will_activate(client, send_emails, mailoutbox) -> None:
    topic = TopicFactory(name="Robotics & <Control>")
    sign_up(client, send_emails, "ada@example.org", topics=[str(topic.pk)], **OWNER)

    page = client.get(confirm_path(mailoutbox[0])).content.decode()

    assert "Robotics &amp; &lt;Control&gt;" in page
    assert "graph neural networks" in page
    assert "Daily" in page
    assert "10 papers" in page


def test_an_unsubscribed_address_with_a_sign_up_set_aside_gets_its_button(
    client, send_emails, mailoutbox
) -> None:
    SubscriberFactory(email="ada@example.org", status=Subscriber.Status.UNSUBSCRIBED, interests="old")
    sign_up(client, send_emails, "ada@example.org", **OWNER)
    link = confirm_path(mailoutbox[0])

    page = client.get(link)
    assert page.status_code == 200
    content = page.content.decode()
    assert "This link has expired" not in content
    assert "Confirm my subscription" in content
    assert "graph neural networks" in content  # the preferences set aside, not the stored ones

    response = client.post(link, {"csrfmiddlewaretoken": csrf_token(page)})
    assert response.status_code == 302
    subscriber = Subscriber.objects.get()
    assert (subscriber.status, subscriber.interests) == (Subscriber.Status.ACTIVE, "graph neural networks")


def test_a_confirmation_link_opened_after_unsubscribing_offers_the_one_way_back(
    client, send_emails, mailoutbox
) -> None:
    sign_up(client, send_emails, "ada@example.org", **OWNER)
    link = confirm_path(mailoutbox[0])
    page = client.get(link)
    client.post(link, {"csrfmiddlewaretoken": csrf_token(page)})
    Subscriber.objects.update(status=Subscriber.Status.UNSUBSCRIBED)

    page = client.get(link)
    content = page.content.decode()
    assert "This link has expired" in content
    assert "Subscribe again" in content  # the manage page's resubscribe, not a blank sign-up form
    (action,) = (part.split('"')[0] for part in content.split('action="')[1:] if "/resubscribe/" in part)

    response = client.post(action, {"csrfmiddlewaretoken": csrf_token(page)})
    assert response.status_code == 302
    subscriber = Subscriber.objects.get()
    assert (subscriber.status, subscriber.interests) == (Subscriber.Status.ACTIVE, "graph neural networks")

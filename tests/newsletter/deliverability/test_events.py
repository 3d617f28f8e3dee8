"""ESP webhooks through django-anymail: real-shaped Postmark and SendGrid payloads."""

from __future__ import annotations

import base64
import json

import pytest
from django.test import Client

from newsletter.models import Delivery, EmailEvent, Subscriber, Suppression
from newsletter.selectors import Preferences, subscribers_due
from newsletter.services.deliverability.events import bounce_apply
from newsletter.services.subscription import Answer, Outcome, subscriber_subscribe
from tests.factories import DeliveryFactory, SubscriberFactory

pytestmark = pytest.mark.django_db

AUTH = "hook:s3cret-webhook"


@pytest.fixture(autouse=True)
def _webhook_secret(settings) -> None:
    settings.ANYMAIL = {"WEBHOOK_SECRET": AUTH}


@pytest.fixture
def webhook(django_capture_on_commit_callbacks):
    """POST a payload to an anymail tracking webhook; processing queued on commit runs too."""

    def send(esp: str, payload, auth: str | None = AUTH):
        with django_capture_on_commit_callbacks(execute=True):
            return _post(Client(), esp, payload, auth)

    return send


def _post(client: Client, esp: str, payload, auth: str | None):
    headers = {}
    if auth:
        headers["HTTP_AUTHORIZATION"] = "Basic " + base64.b64encode(auth.encode()).decode()
    body = payload if isinstance(payload, str | bytes) else json.dumps(payload)
    return client.post(f"/anymail/{esp}/tracking/", data=body, content_type="application/json", **headers)


def postmark_bounce(
    email: str, *, bounce_type: str = "HardBounce", event_id: int = 4323372036854775807
) -> dict:
    return {
        "RecordType": "Bounce",
        "ID": event_id,
        "Type": bounce_type,
        "TypeCode": 1 if bounce_type == "HardBounce" else 4096,
        "Name": "Hard bounce" if bounce_type == "HardBounce" else "Soft bounce",
        "Tag": "",
        "MessageID": "883953f4-6105-42a2-a16a-77a8eac79483",
        "Metadata": {},
        "ServerID": 23,
        "MessageStream": "outbound",
        "Description": "The server was unable to deliver your message (ex: unknown user, mailbox not found).",
        "Details": "smtp;550 5.1.1 The email account that you tried to reach does not exist.",
        "Email": email,
        "From": "digest@example.org",
        "BouncedAt": "2026-11-05T16:33:54.9070259Z",
        "DumpAvailable": True,
        "Inactive": True,
        "CanActivate": True,
        "Subject": "5 new papers for you",
    }


def test_hard_bounce_suppresses_at_first_event_and_marks_the_delivery(webhook) -> None:
    subscriber = SubscriberFactory(email="gone@example.org")
    delivery = DeliveryFactory(subscriber=subscriber, status="sent", sent_at="2026-11-05T08:00:00Z")
    response = webhook("postmark", postmark_bounce("gone@example.org"))
    assert response.status_code == 200
    suppression = Suppression.objects.get(email="gone@example.org")
    assert suppression.reason == Suppression.Reason.HARD_BOUNCE
    delivery.refresh_from_db()
    assert delivery.bounced is True
    assert EmailEvent.objects.get().processed_at is not None


def test_a_retried_webhook_is_processed_once(webhook) -> None:
    SubscriberFactory(email="gone@example.org")
    assert webhook("postmark", postmark_bounce("gone@example.org")).status_code == 200
    assert webhook("postmark", postmark_bounce("gone@example.org")).status_code == 200
    assert EmailEvent.objects.count() == 1
    assert Suppression.objects.count() == 1


def test_an_event_for_another_spelling_of_the_address_suppresses_the_stored_one(webhook) -> None:
    # Subscriber rows hold normalized addresses (lowercase, IDN domain in ASCII form); ESPs report
    # the address as it was written.
    subscriber = SubscriberFactory(email="ann@xn--bcher-kva.example")
    DeliveryFactory(subscriber=subscriber, status="sent", sent_at="2026-11-05T08:00:00Z")
    assert webhook("postmark", postmark_bounce(" Ann@Bücher.example ")).status_code == 200
    assert Suppression.objects.get().email == "ann@xn--bcher-kva.example"
    assert EmailEvent.objects.get().email == "ann@xn--bcher-kva.example"
    assert subscriber.deliveries.get().bounced is True


def test_soft_bounces_suppress_only_when_repeated(webhook) -> None:
    SubscriberFactory(email="full@example.org")
    for event_id in (1, 2):
        webhook("postmark", postmark_bounce("full@example.org", bounce_type="SoftBounce", event_id=event_id))
    assert not Suppression.objects.filter(email="full@example.org").exists()
    webhook("postmark", postmark_bounce("full@example.org", bounce_type="SoftBounce", event_id=3))
    assert Suppression.objects.get(email="full@example.org").reason == Suppression.Reason.SOFT_BOUNCES


def test_complaint_suppresses_and_unsubscribes(webhook) -> None:
    subscriber = SubscriberFactory(email="angry@example.org")
    payload = {
        "RecordType": "SpamComplaint",
        "ID": 42,
        "Type": "SpamComplaint",
        "TypeCode": 512,
        "Name": "Spam complaint",
        "MessageID": "00000000-0000-0000-0000-000000000000",
        "Email": "angry@example.org",
        "From": "digest@example.org",
        "BouncedAt": "2026-11-05T16:33:54Z",
        "Description": "The subscriber explicitly marked this message as spam.",
        "Details": "Test spam complaint details",
        "Subject": "Digest",
    }
    assert webhook("postmark", payload).status_code == 200
    assert Suppression.objects.get(email="angry@example.org").reason == Suppression.Reason.COMPLAINT
    subscriber.refresh_from_db()
    assert subscriber.status == Subscriber.Status.UNSUBSCRIBED


def test_sendgrid_batch_of_events(webhook) -> None:
    SubscriberFactory(email="a@example.org")
    SubscriberFactory(email="b@example.org")
    SubscriberFactory(email="c@example.org")
    events = [
        {"email": "a@example.org", "timestamp": 1763800000, "event": "dropped", "reason": "Bounced Address",
         "sg_event_id": "ev-1", "sg_message_id": "m1"},
        {"email": "b@example.org", "timestamp": 1763800001, "event": "unsubscribe", "sg_event_id": "ev-2",
         "sg_message_id": "m2"},
        {"email": "c@example.org", "timestamp": 1763800002, "event": "delivered", "sg_event_id": "ev-3",
         "sg_message_id": "m3", "response": "250 OK"},
    ]  # fmt: skip
    assert webhook("sendgrid", events).status_code == 200
    assert set(Suppression.objects.values_list("email", "reason")) == {
        ("a@example.org", Suppression.Reason.REJECTED),
        ("b@example.org", Suppression.Reason.UNSUBSCRIBED),
    }
    assert Subscriber.objects.get(email="b@example.org").status == Subscriber.Status.UNSUBSCRIBED
    # "delivered" is not stored: only events with consequences are.
    assert not EmailEvent.objects.filter(email="c@example.org").exists()


@pytest.mark.parametrize("esp", ["postmark", "sendgrid"])
def test_webhooks_refuse_everything_while_no_secret_is_configured(webhook, settings, esp: str) -> None:
    # anymail alone would accept unauthenticated events (it only warns): anyone could unsubscribe anyone.
    settings.ANYMAIL = {"WEBHOOK_SECRET": ""}
    SubscriberFactory(email="gone@example.org")
    payload = (
        postmark_bounce("gone@example.org")
        if esp == "postmark"
        else [{"email": "gone@example.org", "timestamp": 1763800000, "event": "bounce", "sg_event_id": "e1"}]
    )
    response = webhook(esp, payload, auth=None)
    assert response.status_code == 403
    assert b"ANYMAIL_WEBHOOK_SECRET" in response.content
    assert not Suppression.objects.exists()
    assert not EmailEvent.objects.exists()


def test_webhook_without_credentials_is_refused_and_changes_nothing(webhook) -> None:
    SubscriberFactory(email="gone@example.org")
    response = webhook("postmark", postmark_bounce("gone@example.org"), auth=None)
    assert response.status_code in (400, 401, 403)
    assert not Suppression.objects.exists()
    assert not EmailEvent.objects.exists()


@pytest.mark.parametrize("body", ['{"RecordType": "Bounce", ', "not json at all", "[1, 2, 3]", "\xff\xfe"])
def test_malformed_webhook_gets_a_clear_400(webhook, body: str) -> None:
    response = webhook("postmark", body)
    assert response.status_code == 400
    assert not EmailEvent.objects.exists()


def test_suppressed_address_gets_no_confirmation_and_is_never_due(mailoutbox) -> None:
    Suppression.objects.create(email="gone@example.org", reason=Suppression.Reason.HARD_BOUNCE)
    answer = subscriber_subscribe(email="Gone@Example.org", preferences=Preferences())
    assert answer == Answer(Outcome.SUPPRESSED)
    assert mailoutbox == []
    active = SubscriberFactory(email="gone2@example.org", next_send_at="2026-01-01T00:00:00Z")
    Suppression.objects.create(email="gone2@example.org", reason=Suppression.Reason.COMPLAINT)
    assert active.pk not in subscribers_due(now=active.next_send_at)


def test_a_bounce_marks_the_latest_digest_sent_to_that_address_only() -> None:
    reader, other = SubscriberFactory(email="r@example.org"), SubscriberFactory(email="o@example.org")
    older = DeliveryFactory(subscriber=reader, status="sent", sent_at="2026-11-03T08:00:00Z")
    latest = DeliveryFactory(subscriber=reader, status="sent", sent_at="2026-11-04T08:00:00Z")
    DeliveryFactory(subscriber=reader, status="failed")  # newer, but never sent
    DeliveryFactory(subscriber=reader, status="pending")
    DeliveryFactory(subscriber=other, status="sent", sent_at="2026-11-05T08:00:00Z")  # newer, not theirs

    bounce_apply(email="r@example.org", kind="soft", detail="mailbox full")
    bounce_apply(email="nobody@example.org", kind="soft", detail="no such subscriber")

    assert list(Delivery.objects.filter(bounced=True)) == [latest]
    older.refresh_from_db()
    assert older.bounced is False

"""Reads (newsletter.selectors): who is due, the digest preview, the data export."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from django.utils import timezone

from newsletter.export_selectors import subscriber_export
from newsletter.models import Subscriber, Suppression
from newsletter.selectors import digest_preview, subscribers_due
from tests.factories import PaperFactory, SubscriberFactory
from tests.newsletter.helpers import build, delivery_for, quantization_paper

pytestmark = pytest.mark.django_db


# --- subscribers_due ---------------------------------------------------------------------------


def test_only_active_unsuppressed_scheduled_subscribers_are_due(django_assert_num_queries) -> None:
    now = timezone.now()
    past, future = now - timedelta(minutes=1), now + timedelta(minutes=1)
    later = SubscriberFactory(next_send_at=past)
    earlier = SubscriberFactory(next_send_at=past - timedelta(minutes=5))
    SubscriberFactory(next_send_at=future)
    SubscriberFactory(next_send_at=None)
    SubscriberFactory(next_send_at=past, status=Subscriber.Status.PENDING)
    SubscriberFactory(next_send_at=past, status=Subscriber.Status.UNSUBSCRIBED)
    SubscriberFactory(next_send_at=past, frequency=Subscriber.Frequency.OFF)
    suppressed = SubscriberFactory(next_send_at=past)
    Suppression.objects.create(email=suppressed.email, reason=Suppression.Reason.HARD_BOUNCE)

    with django_assert_num_queries(1):
        ids = subscribers_due(now=now)

    assert ids == [earlier.pk, later.pk]


# --- digest_preview ----------------------------------------------------------------------------


def test_preview_shows_what_the_digest_will_hold() -> None:
    for n in range(6):
        quantization_paper(f"Quantization paper {n}", upvotes=n * 40)
    PaperFactory(title="Unrelated", upvotes=1000)
    now = timezone.now()
    subscriber = SubscriberFactory(interests="quantization", papers_per_digest=4)

    preview = digest_preview(subscriber=subscriber, now=now)
    delivery = delivery_for(subscriber, now=now)

    assert [p.paper.id for p in preview] == build(delivery, now=now)[delivery.pk]
    # Once sent, the preview moves on to papers not sent yet.
    assert {p.paper.id for p in digest_preview(subscriber=subscriber, now=now)}.isdisjoint(
        p.paper.id for p in preview
    )


# --- subscriber_export -------------------------------------------------------------------------


def test_export_contains_everything_stored(subscriber_with_history: Subscriber) -> None:
    data = subscriber_export(subscriber=subscriber_with_history)

    assert json.loads(json.dumps(data)) == data  # plain JSON types only
    assert data["email"] == "ada@example.org"
    assert data["status"] == "active"
    assert data["preferences"]["topics"] == ["nlp"]
    assert data["preferences"]["interests"] == "parsing"
    [delivery] = data["deliveries"]
    assert delivery["period"] == "2026-03-01"
    assert delivery["status"] == "sent"
    assert delivery["papers"] == [
        {"title": "Parsing with transformers", "url": "https://arxiv.org/abs/2603.00001", "reasons": ["nlp"]}
    ]
    [feedback] = data["feedback"]
    assert feedback["title"] == "Parsing with transformers"
    assert feedback["choice"] == "more"
    assert [e["event_type"] for e in data["email_events"]] == ["delivered"]
    assert data["suppression"] is None
    assert subscriber_with_history.token_key not in json.dumps(data)


def test_export_includes_the_suppression_of_the_address() -> None:
    subscriber = SubscriberFactory(email="ada@example.org", status=Subscriber.Status.UNSUBSCRIBED)
    Suppression.objects.create(
        email="ada@example.org", reason=Suppression.Reason.HARD_BOUNCE, detail="550 5.1.1 no such user"
    )

    suppression = subscriber_export(subscriber=subscriber)["suppression"]

    assert (suppression["reason"], suppression["detail"]) == ("hard_bounce", "550 5.1.1 no such user")

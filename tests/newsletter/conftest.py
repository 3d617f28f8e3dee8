"""Fixtures of the newsletter tests (helper functions are in tests/newsletter/helpers.py)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import time_machine
from django.test import Client

from newsletter.models import Delivery, DeliveryItem, EmailEvent, Feedback, Subscriber
from newsletter.services.learning.feedback import feedback_record
from newsletter.services.learning.reader_model import reader_model_fit
from tests.factories import DeliveryFactory, PaperFactory, SubscriberFactory, TopicFactory
from tests.newsletter.helpers import NOW


@pytest.fixture
def frozen_clock() -> Iterator[time_machine.Traveller]:
    """The clock stands still at NOW: tokens and rate-limit windows read the clock, and must stay in
    step with the `now` given to services."""
    with time_machine.travel(NOW, tick=False) as traveller:
        yield traveller


@pytest.fixture
def send_emails(django_capture_on_commit_callbacks):
    """Run the on-commit email tasks (eager Celery) the services queue; the test transaction never
    commits, so without this nothing would be sent."""
    return lambda: django_capture_on_commit_callbacks(execute=True)


@pytest.fixture
def client() -> Client:
    """Every test client checks CSRF tokens, as the real middleware does for browsers."""
    return Client(enforce_csrf_checks=True)


@pytest.fixture
def recent_paper():
    """A paper in every subscriber's window: see test_manage_page_works_without_any_recent_paper."""
    return PaperFactory(title="An unrelated recent paper", abstract="About cooking recipes.")


@pytest.fixture
def subscriber_with_history() -> Subscriber:
    """A subscriber with a topic, a sent delivery with one paper, a "More like this" on it and the
    model fitted from it, and an email event of their own."""
    topic = TopicFactory(slug="nlp")
    subscriber = SubscriberFactory(email="ada@example.org", interests="parsing", topics=[topic])
    delivery = DeliveryFactory(subscriber=subscriber, period="2026-03-01", status=Delivery.Status.SENT)
    paper = PaperFactory(title="Parsing with transformers", url="https://arxiv.org/abs/2603.00001")
    DeliveryItem.objects.create(
        delivery=delivery, subscriber=subscriber, paper=paper, position=0, score=0.9, reasons=["nlp"]
    )
    feedback_record(subscriber=subscriber, paper_id=paper.pk, choice=Feedback.Choice.MORE)
    reader_model_fit(subscriber_id=subscriber.pk)
    EmailEvent.objects.create(event_id="esp:1", event_type="delivered", email="ada@example.org")
    EmailEvent.objects.create(event_id="esp:2", event_type="delivered", email="grace@example.org")
    return subscriber

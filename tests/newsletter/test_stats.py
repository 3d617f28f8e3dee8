from __future__ import annotations

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.utils import timezone

from newsletter.models import Delivery, Subscriber, Suppression
from newsletter.selectors import stats_deliveries_per_day, stats_subscribers
from tests.factories import DeliveryFactory, SubscriberFactory

pytestmark = pytest.mark.django_db


def test_subscribers_by_state() -> None:
    SubscriberFactory.create_batch(2)
    SubscriberFactory(status=Subscriber.Status.PENDING)
    Suppression.objects.create(email="x@example.org", reason=Suppression.Reason.COMPLAINT)
    stats = stats_subscribers()
    assert stats["Active"] == 2
    assert stats["Waiting for confirmation"] == 1
    assert stats["Unsubscribed"] == 0
    assert stats["Suppressed addresses"] == 1


def test_deliveries_per_day_counts_each_outcome() -> None:
    DeliveryFactory(status=Delivery.Status.SENT)
    DeliveryFactory(status=Delivery.Status.SENT, bounced=True)
    DeliveryFactory(status=Delivery.Status.FAILED)
    DeliveryFactory(status=Delivery.Status.PENDING)
    today = timezone.now().date()
    days = stats_deliveries_per_day(days=7, today=today)
    assert len(days) == 7
    assert days[-1].day == today
    assert (days[-1].sent, days[-1].failed, days[-1].bounced) == (2, 1, 1)
    assert all((d.sent, d.failed, d.bounced) == (0, 0, 0) for d in days[:-1])


def test_stats_page_is_for_staff_only() -> None:
    assert Client().get("/staff/stats/").status_code == 302  # to the admin login
    user = get_user_model().objects.create_user("ops", "ops@example.org", "pw", is_staff=True)
    client = Client()
    client.force_login(user)
    DeliveryFactory(status=Delivery.Status.SENT)
    response = client.get("/staff/stats/")
    assert response.status_code == 200
    assert b"<svg" in response.content
    assert b"1 sent, 0 failed, 0 bounced" in response.content

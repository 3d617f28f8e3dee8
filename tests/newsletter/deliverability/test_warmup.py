"""Warm-up (deliverability.warmup): a daily cap that doubles after clean days; the rest waits."""

from __future__ import annotations

from datetime import timedelta

import pytest
import time_machine
from django.utils import timezone

from newsletter.models import Delivery, WarmupDay
from newsletter.services.deliverability.warmup import WAITING, warmup_status, warmup_trouble
from newsletter.services.delivery import deliveries_send
from newsletter.services.dispatch import deliveries_sweep
from tests.newsletter.helpers import NOW, dispatch_one_chunk, due, quantization_papers

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def warmup(settings) -> None:
    settings.NEWSLETTER_WARMUP = 2


def test_the_cap_holds_and_the_rest_waits_for_the_next_day_oldest_first(smtp_sink) -> None:
    with time_machine.travel(NOW, tick=False):
        quantization_papers()
        for i in range(5):
            due(email=f"r{i}@example.org")
        ids = dispatch_one_chunk()
        result = deliveries_send(delivery_ids=ids)

        assert result.sent == ids[:2] and len(smtp_sink.messages) == 2
        assert result.waiting == ids[2:] and not result.deferred  # the sweeper brings them, not a retry
        waiting = Delivery.objects.filter(id__in=ids[2:])
        assert {(d.status, d.attempts, d.last_error) for d in waiting} == {
            (Delivery.Status.PENDING, 0, WAITING)
        }
        assert (warmup_status().cap, warmup_status().used, warmup_status().waiting) == (2, 2, 3)
        assert deliveries_sweep() == []  # not due again today

    with time_machine.travel(NOW + timedelta(days=1, minutes=2), tick=False):
        chunks = deliveries_sweep()
        assert chunks == [ids[2:]]
        result = deliveries_send(delivery_ids=chunks[0])
        # A clean first day: the cap doubled to 4, so all three go.
        assert result.sent == ids[2:]
        assert WarmupDay.objects.get(day=timezone.now().date()).cap == 4
    assert len(smtp_sink.messages) == 5


def test_a_troubled_day_keeps_the_cap() -> None:
    with time_machine.travel(NOW, tick=False):
        warmup_trouble()
    with time_machine.travel(NOW + timedelta(days=1), tick=False):
        assert warmup_status().cap == 2


def test_unsent_reservations_are_handed_back(smtp_sink) -> None:
    with time_machine.travel(NOW, tick=False):
        quantization_papers()
        due(email="ok@example.org")
        due(email="gone@example.org")
        smtp_sink.refuse["gone@example.org"] = "550 5.1.1 No such user"
        deliveries_send(delivery_ids=dispatch_one_chunk())
        assert WarmupDay.objects.get().used == 1


def test_the_stats_page_counts_the_digests_that_wait(smtp_sink) -> None:
    from django.contrib.auth import get_user_model
    from django.test import Client

    quantization_papers()
    for i in range(3):
        due(email=f"r{i}@example.org")
    deliveries_send(delivery_ids=dispatch_one_chunk())
    client = Client()
    client.force_login(get_user_model().objects.create_user("ops", "o@example.org", "pw", is_staff=True))
    page = client.get("/staff/stats/").content.decode()
    assert "today's cap 2, 2 used" in page and "1 digest waits for the next day's allowance" in page

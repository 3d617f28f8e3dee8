"""The brake (deliverability.brake): trips on complaint or hard-bounce rates with enough volume,
holds deliveries in PENDING, shows a red banner, and an admin action resumes sending."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from anymail.signals import EventType
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from newsletter.models import Delivery, EmailEvent, SendingPause
from newsletter.services.deliverability.brake import brake_check
from newsletter.services.delivery import deliveries_send
from newsletter.services.dispatch import deliveries_sweep
from tests.factories import DeliveryFactory
from tests.newsletter.helpers import dispatch_one_chunk, due, quantization_papers

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def small_volume(settings) -> None:
    settings.NEWSLETTER_BRAKE_MIN_SENT = 20


def sent(count: int) -> None:
    for _ in range(count):
        DeliveryFactory(status=Delivery.Status.SENT, sent_at=timezone.now())


def events(count: int, event_type: str, kind: str = "") -> None:
    """`count` events, each for another address (the brake counts each address once)."""
    for _ in range(count):
        n = EmailEvent.objects.count()
        EmailEvent.objects.create(
            event_id=f"t:{n}", event_type=event_type, email=f"x{n}@example.org", bounce_kind=kind
        )


def test_below_the_minimum_volume_nothing_trips() -> None:
    sent(10)
    events(1, EventType.COMPLAINED)  # 10%, but of 10
    assert brake_check() is None


def test_complaints_over_the_limit_pause_sending_with_the_numbers(caplog) -> None:
    sent(400)
    events(1, EventType.COMPLAINED)  # 0.25%: under 0.3%
    assert brake_check() is None
    events(1, EventType.COMPLAINED)  # 0.5%
    with caplog.at_level(logging.ERROR, logger="newsletter.brake"):
        pause = brake_check()
    assert pause is not None and pause.is_open
    assert (pause.events, pause.sent, pause.limit) == (2, 400, 0.003)
    assert "spam complaint rate 0.50%" in pause.reason
    assert any("sending paused" in r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert brake_check() == pause  # one open pause, not a second


def test_hard_bounces_over_the_limit_pause_sending() -> None:
    sent(40)
    events(3, EventType.BOUNCED, "soft")
    assert brake_check() is None
    events(3, EventType.BOUNCED, "hard")  # 7.5%
    assert "hard-bounce rate" in brake_check().reason


def test_while_paused_nothing_is_claimed_or_requeued_and_resume_sends_it(smtp_sink) -> None:
    quantization_papers()
    due(email="r@example.org")
    ids = dispatch_one_chunk()
    SendingPause.objects.create(reason="test", rate=0.01, limit=0.003, events=1, sent=100)

    assert deliveries_send(delivery_ids=ids).paused
    assert Delivery.objects.get().status == Delivery.Status.PENDING
    Delivery.objects.update(queued_at=timezone.now() - timedelta(hours=1))
    assert deliveries_sweep() == []

    staff = get_user_model().objects.create_superuser("ops", "ops@example.org", "pw")
    client = Client()
    client.force_login(staff)
    page = client.get(reverse("admin:index"))
    assert b'id="sending-paused"' in page.content and b"Sending is paused by the brake" in page.content
    stats = client.get(reverse("staff_stats"))
    assert b'id="sending-paused"' in stats.content

    pause = SendingPause.objects.get()
    response = client.post(
        reverse("admin:newsletter_sendingpause_changelist"),
        {"action": "resume", "_selected_action": [pause.pk]},
    )
    assert response.status_code == 302
    pause.refresh_from_db()
    assert (pause.is_open, pause.resumed_by) == (False, "ops")
    assert b'id="sending-paused"' not in client.get(reverse("admin:index")).content

    assert deliveries_sweep() == [ids]
    assert deliveries_send(delivery_ids=ids).sent == ids
    assert len(smtp_sink.messages) == 1


def test_a_resume_is_not_undone_by_the_same_old_numbers() -> None:
    sent(400)
    events(2, EventType.COMPLAINED)
    pause = brake_check()
    SendingPause.objects.filter(pk=pause.pk).update(is_open=False, resumed_at=timezone.now())
    assert brake_check() is None


def sent_at(count: int, when, status: str = Delivery.Status.SENT) -> None:
    DeliveryFactory.create_batch(count, status=status, sent_at=when)


def test_the_complaint_rate_counts_only_what_was_sent_in_the_last_7_days() -> None:
    now = timezone.now()
    sent_at(10, now)
    sent_at(15, now - timedelta(days=3))
    sent_at(30, now - timedelta(days=8))  # before the window
    sent_at(10, now, status=Delivery.Status.FAILED)  # not sent, whatever its sent_at says
    events(1, EventType.COMPLAINED)
    assert brake_check(now=now).sent == 25


def test_the_bounce_rate_counts_only_what_was_sent_in_the_last_24_hours() -> None:
    now = timezone.now()
    sent_at(20, now - timedelta(hours=23))
    sent_at(30, now - timedelta(hours=25))  # in the complaint window, not in this one
    sent_at(10, now, status=Delivery.Status.SKIPPED)
    events(2, EventType.BOUNCED, "hard")  # 2 of 20: over 5%; of 50 or 60 it would not be
    pause = brake_check(now=now)
    assert (pause.sent, pause.events) == (20, 2)

"""Dispatch (newsletter.services.dispatch): who gets a delivery, moving schedules, chunks, the sweeper;
and the whole pipeline from the dispatcher task."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.core import mail
from django.db import connection as db_connection
from django.db.models import NOT_PROVIDED
from django.utils import timezone

from newsletter.models import Delivery, DeliveryItem, Subscriber
from newsletter.services.delivery import deliveries_claim, deliveries_send
from newsletter.services.dispatch import (
    _INSERT_DELIVERIES,
    DueDigest,
    deliveries_sweep,
    digests_dispatch,
    digests_dispatch_iter,
    dispatch_plan,
)
from newsletter.services.schedule import next_send_time, period_key
from newsletter.tasks import dispatch_digests
from papers.services.ingest import papers_ingest_path
from tests.factories import DeliveryFactory, SubscriberFactory
from tests.newsletter.helpers import (
    delivery_of,
    dispatch_one_chunk,
    due,
    held_in_another_transaction,
    quantization_papers,
)

pytestmark = pytest.mark.django_db


# --- dispatch ----------------------------------------------------------------------------------


# 20:00 UTC: every subscriber's next 08:00 (local) is more than six hours away, so the regular
# schedule applies (a slot nearer than that is skipped after a late digest; tested below).
@time_machine.travel(datetime(2026, 11, 23, 20, 0, tzinfo=UTC), tick=False)
def test_dispatch_creates_one_pending_delivery_per_due_subscriber_in_chunks() -> None:
    now = timezone.now()
    subscribers = [
        due(timezone=tz) for tz in ("UTC", "America/New_York", "Asia/Kolkata", "Pacific/Auckland", "UTC")
    ]
    scheduled = {s.pk: s.next_send_at for s in subscribers}
    not_due = SubscriberFactory(next_send_at=now + timedelta(hours=1))

    chunks = digests_dispatch(now=now, chunk_size=2)

    assert [len(c) for c in chunks] == [2, 2, 1]
    deliveries = Delivery.objects.filter(id__in=[i for c in chunks for i in c])
    assert {d.subscriber_id for d in deliveries} == set(scheduled)
    for delivery in deliveries:
        subscriber = delivery.subscriber
        assert delivery.status == Delivery.Status.PENDING
        assert delivery.scheduled_for == scheduled[subscriber.pk]
        assert delivery.period == period_key(
            frequency=subscriber.frequency, scheduled_for=scheduled[subscriber.pk], tz=subscriber.timezone
        )
        assert (delivery.window_end, delivery.queued_at) == (now, now)
        # The schedule moved forward, past now, from the row's own time zone and hour.
        assert subscriber.next_send_at == next_send_time(
            frequency="daily", weekday=0, hour=8, tz=subscriber.timezone, after=now
        )
        assert subscriber.next_send_at > now
        assert subscriber.last_digest_at == now
    assert not Delivery.objects.filter(subscriber=not_due).exists()
    # Nothing is due any more.
    assert digests_dispatch(now=now) == []


def test_dispatch_hands_over_each_chunk_before_creating_the_next() -> None:
    # Workers can start on the first chunk of a large list while the rest is being dispatched.
    now = timezone.now()
    for _ in range(5):
        due()
    chunks = digests_dispatch_iter(now=now, chunk_size=2)

    first = next(chunks)
    assert Delivery.objects.count() == 2
    assert set(Delivery.objects.values_list("id", flat=True)) == set(first)
    assert [len(c) for c in chunks] == [2, 1]
    assert Delivery.objects.count() == 5


def test_a_subscriber_missed_for_days_gets_one_digest() -> None:
    now = timezone.now()
    subscriber = due(next_send_at=now - timedelta(days=3))

    assert sum(len(c) for c in digests_dispatch(now=now)) == 1
    subscriber.refresh_from_db()
    # The next regular slot, unless it is under six hours away: then the one after it.
    assert now + timedelta(hours=6) <= subscriber.next_send_at <= now + timedelta(days=1, hours=6)
    assert digests_dispatch(now=now + timedelta(minutes=5)) == []


@pytest.mark.parametrize(("minutes_before_slot", "skipped_days"), [(2, 1), (60 * 5, 1), (60 * 7, 0)])
def test_a_late_digest_is_not_followed_by_the_regular_one_minutes_later(
    minutes_before_slot: int, skipped_days: int
) -> None:
    slot = timezone.now().replace(hour=8, minute=0, second=0, microsecond=0) + timedelta(days=1)
    now = slot - timedelta(minutes=minutes_before_slot)
    subscriber = due(next_send_at=now - timedelta(days=2))
    assert sum(len(c) for c in digests_dispatch(now=now)) == 1
    subscriber.refresh_from_db()
    assert subscriber.next_send_at == slot + timedelta(days=skipped_days)


def test_no_second_delivery_for_the_same_period() -> None:
    """A subscriber who moves their hour later on the day of a digest gets no second one that day."""
    now = timezone.now().replace(hour=9, minute=0, second=0, microsecond=0)
    subscriber = due(next_send_at=now.replace(hour=8))
    digests_dispatch(now=now)
    first = Delivery.objects.get(subscriber=subscriber)

    subscriber.refresh_from_db()
    subscriber.send_hour = 20
    subscriber.next_send_at = now.replace(hour=20)
    subscriber.save()
    later = now.replace(hour=20, minute=5)

    assert digests_dispatch(now=later) == []
    assert list(Delivery.objects.filter(subscriber=subscriber)) == [first]
    subscriber.refresh_from_db()
    # Moved on to tomorrow anyway, and the window was not advanced by the digest that was not sent.
    assert subscriber.next_send_at == now.replace(hour=20) + timedelta(days=1)
    assert subscriber.last_digest_at == now


def test_the_plan_and_the_dispatcher_agree_on_who_already_has_this_periods_digest() -> None:
    now = timezone.now().replace(hour=9, minute=0, second=0, microsecond=0)
    served, fresh = due(next_send_at=now.replace(hour=8)), due(next_send_at=now.replace(hour=8))
    digests_dispatch(now=now)
    Delivery.objects.filter(subscriber=fresh).delete()  # as if fresh had never had today's digest
    Subscriber.objects.filter(pk__in=[served.pk, fresh.pk]).update(next_send_at=now.replace(hour=10))
    later = now.replace(hour=10, minute=5)
    period = Delivery.objects.get(subscriber=served).period

    plan = dispatch_plan(now=later)
    already_served: list[DueDigest] = []
    created = [i for chunk in digests_dispatch_iter(now=later, already_served=already_served) for i in chunk]

    assert sorted(plan, key=lambda d: d.subscriber_id) == [
        DueDigest(served.pk, period, already_has_digest=True),
        DueDigest(fresh.pk, period, already_has_digest=False),
    ]
    assert already_served == [DueDigest(served.pk, period, already_has_digest=True)]
    assert list(Delivery.objects.filter(id__in=created).values_list("subscriber_id", flat=True)) == [fresh.pk]


# serialized_rollback: keeps the default topics (a data migration) for the tests that follow.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_dispatch_skips_subscribers_locked_by_another_dispatcher() -> None:
    locked, free = due(), due()

    with held_in_another_transaction(
        lambda: list(Subscriber.objects.select_for_update().filter(pk=locked.pk))
    ):
        chunks = digests_dispatch()

    assert [Delivery.objects.get(pk=i).subscriber_id for c in chunks for i in c] == [free.pk]


# --- sweeper -----------------------------------------------------------------------------------


def test_sweeper_redrives_what_a_dead_worker_or_a_lost_task_left(settings) -> None:
    now = timezone.now()
    long_ago = now - settings.NEWSLETTER_CLAIM_LEASE - timedelta(minutes=1)
    dead_worker = DeliveryFactory(
        status=Delivery.Status.SENDING, claimed_at=long_ago, attempts=1, queued_at=long_ago
    )
    busy_worker = DeliveryFactory(status=Delivery.Status.SENDING, claimed_at=now, attempts=1, queued_at=now)
    out_of_attempts = DeliveryFactory(
        status=Delivery.Status.SENDING,
        claimed_at=long_ago,
        attempts=settings.NEWSLETTER_MAX_ATTEMPTS,
        queued_at=long_ago,
    )
    lost_task = DeliveryFactory(queued_at=now - settings.NEWSLETTER_STALE_PENDING - timedelta(minutes=1))
    just_queued = DeliveryFactory(queued_at=now)
    sent = DeliveryFactory(status=Delivery.Status.SENT, queued_at=long_ago)

    chunks = deliveries_sweep(now=now, chunk_size=1)

    assert chunks == [[dead_worker.pk], [lost_task.pk]]
    states = dict(Delivery.objects.values_list("id", "status"))
    assert states[dead_worker.pk] == states[lost_task.pk] == states[just_queued.pk] == Delivery.Status.PENDING
    assert states[busy_worker.pk] == Delivery.Status.SENDING
    assert states[out_of_attempts.pk] == Delivery.Status.FAILED
    assert states[sent.pk] == Delivery.Status.SENT
    # Re-queued just now: the next sweep leaves them to the task it queued.
    assert deliveries_sweep(now=now) == []


def test_after_a_broker_reconnect_the_sweeper_requeues_at_once_what_was_queued_before_the_loss() -> None:
    now = timezone.now()
    lost_at = now - timedelta(seconds=5)
    queued_before_the_loss = DeliveryFactory(queued_at=lost_at - timedelta(seconds=10))
    queued_since = DeliveryFactory(queued_at=lost_at + timedelta(seconds=1))
    retry_not_due = DeliveryFactory(queued_at=now + timedelta(minutes=1))

    assert deliveries_sweep(now=now) == []  # the stale limit alone would wait a minute
    assert deliveries_sweep(now=now, queued_before=lost_at) == [[queued_before_the_loss.pk]]
    # A second worker reconnecting from the same loss finds the re-queued row already taken care of.
    assert deliveries_sweep(now=now, queued_before=lost_at) == []
    assert Delivery.objects.get(pk=queued_since.pk).queued_at > lost_at
    assert Delivery.objects.get(pk=retry_not_due.pk).queued_at > now


def test_a_swept_delivery_is_then_sent(smtp_sink, settings) -> None:
    quantization_papers()
    subscriber = due()
    ids = dispatch_one_chunk()
    # A worker claimed the chunk and died before sending.
    deliveries_claim(
        delivery_ids=ids, now=timezone.now() - settings.NEWSLETTER_CLAIM_LEASE - timedelta(minutes=1)
    )

    assert deliveries_send(delivery_ids=ids).sent == []  # still held by the dead worker
    (chunk,) = deliveries_sweep()
    assert chunk == ids
    assert deliveries_send(delivery_ids=chunk).sent == ids

    delivery = delivery_of(subscriber)
    assert (delivery.status, delivery.attempts) == (Delivery.Status.SENT, 2)
    assert [m.rcpt_tos for m in smtp_sink.messages] == [[subscriber.email]]


# --- the whole pipeline ------------------------------------------------------------------------


def test_each_subscriber_gets_their_subject_first_through_the_pipeline(sample_files) -> None:
    for path in sample_files:
        papers_ingest_path(path=path)
    speech = due(interests="speech recognition")
    quantization = due(interests="quantization")
    agents = due(interests="LLM agents, tool use", excluded_keywords="multimodal")

    dispatch_digests.delay()  # eager in tests: dispatch and the chunk tasks run here

    assert Delivery.objects.filter(status=Delivery.Status.SENT).count() == 3
    first_words = {speech.email: "speech", quantization.email: "quantiz", agents.email: "agent"}
    for message in mail.outbox:
        (address,) = message.to
        subscriber = Subscriber.objects.get(email=address)
        items = list(
            DeliveryItem.objects.filter(subscriber=subscriber).order_by("position").select_related("paper")
        )
        assert items
        top = items[0].paper
        assert first_words[address] in f"{top.title} {top.abstract}".lower()
        # The email lists the recorded papers in the recorded order.
        positions = [message.body.index(f"{n}. {item.paper.title}") for n, item in enumerate(items, start=1)]
        assert positions == sorted(positions)
        assert all(item.reasons for item in items)
    assert sorted(m.to[0] for m in mail.outbox) == sorted([speech.email, quantization.email, agents.email])
    assert not any(
        "multimodal" in f"{i.paper.title} {i.paper.abstract}".lower()
        for i in DeliveryItem.objects.filter(subscriber=agents).select_related("paper")
    )


def _dispatched_rows(now: datetime) -> list[dict]:
    """Every column of the deliveries a dispatch at `now` creates, but the ones that differ by run."""
    subscribers = [due(last_digest_at=None), due(last_digest_at=now - timedelta(days=1), frequency="weekly")]
    chunks = digests_dispatch(now=now)
    rows = list(Delivery.objects.filter(id__in=chunks[0]).order_by("subscriber_id").values())
    for row, subscriber in zip(rows, subscribers, strict=True):
        assert row.pop("subscriber_id") == subscriber.pk
        assert row.pop("created_at") == now
        del row["id"]
    Delivery.objects.all().delete()
    return rows


@time_machine.travel(datetime(2026, 11, 23, 20, 0, tzinfo=UTC), tick=False)
def test_the_deliveries_insert_stores_what_the_portable_bulk_create_does(monkeypatch) -> None:
    now = timezone.now()
    inserted = _dispatched_rows(now)
    monkeypatch.setattr(db_connection, "vendor", "sqlite")  # dispatch.py's path for other databases

    assert _dispatched_rows(now) == inserted
    assert [row["first"] for row in inserted] == [True, False]
    assert {(row["kind"], row["status"], row["attempts"], row["bounced"]) for row in inserted} == {
        (Delivery.Kind.DIGEST, Delivery.Status.PENDING, 0, False)
    }


def test_the_deliveries_insert_names_every_column_a_new_row_needs() -> None:
    # A new NOT NULL column of Delivery must be added to the INSERT, or every dispatch fails.
    needed = {
        field.column
        for field in Delivery._meta.concrete_fields
        if not field.null and not field.primary_key and field.db_default is NOT_PROVIDED
    }
    columns = _INSERT_DELIVERIES.split("(", 1)[1].split(")", 1)[0]

    assert needed == {name.strip() for name in columns.split(",")} - {"queued_at"}


def test_only_a_subscribers_first_dispatched_delivery_is_marked_first() -> None:
    newcomer = due(last_digest_at=None)
    regular = due(last_digest_at=timezone.now() - timedelta(days=1))

    dispatch_one_chunk()

    assert delivery_of(newcomer).first is True
    assert delivery_of(regular).first is False

"""Delivery (newsletter.services.delivery): dispatch, atomic claim, sending over real SMTP, sweeping."""

from __future__ import annotations

import itertools
import threading
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from celery.exceptions import Retry
from django.core import mail
from django.db import connection, transaction
from django.utils import timezone

from newsletter.models import Delivery, DeliveryItem, Subscriber, Suppression
from newsletter.selectors import subscribers_due
from newsletter.services.delivery import deliveries_claim, deliveries_send
from newsletter.services.dispatch import deliveries_sweep, digests_dispatch, digests_dispatch_iter
from newsletter.services.schedule import next_send_time, period_key
from newsletter.tasks import RETRY_BACKOFF_MAX, DeliveriesDeferred, dispatch_digests, send_digest_chunk
from papers.models import Paper
from papers.services.ingest import papers_ingest_path
from tests.factories import DeliveryFactory, PaperFactory, SubscriberFactory
from tests.support import free_port

pytestmark = pytest.mark.django_db


def due(**fields) -> Subscriber:
    fields.setdefault("interests", "quantization")
    fields.setdefault("next_send_at", timezone.now() - timedelta(minutes=1))
    return SubscriberFactory(**fields)


_paper_numbers = itertools.count()


def quantization_papers(count: int = 3) -> list[Paper]:
    return [
        PaperFactory(
            title=f"Quantization study {next(_paper_numbers)}", abstract="We study quantization of weights."
        )
        for _ in range(count)
    ]


def dispatch_one_chunk() -> list[int]:
    chunks = digests_dispatch()
    assert len(chunks) == 1
    return chunks[0]


def delivery_of(subscriber: Subscriber) -> Delivery:
    return Delivery.objects.get(subscriber=subscriber)


# --- who is due -------------------------------------------------------------------------------


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


# --- dispatch ---------------------------------------------------------------------------------


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


# serialized_rollback: keeps the default topics (a data migration) for the tests that follow.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_dispatch_skips_subscribers_locked_by_another_dispatcher() -> None:
    locked, free = due(), due()
    holding, release = threading.Event(), threading.Event()

    def hold_lock() -> None:
        try:
            with transaction.atomic():
                list(Subscriber.objects.select_for_update().filter(pk=locked.pk))
                holding.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    thread = threading.Thread(target=hold_lock)
    thread.start()
    try:
        assert holding.wait(timeout=30)
        chunks = digests_dispatch()
    finally:
        release.set()
        thread.join()

    assert [Delivery.objects.get(pk=i).subscriber_id for c in chunks for i in c] == [free.pk]


# --- claim ------------------------------------------------------------------------------------


def test_claim_is_atomic_and_counts_attempts() -> None:
    now = timezone.now()
    deliveries = [DeliveryFactory() for _ in range(3)]
    ids = [d.pk for d in deliveries]

    first = deliveries_claim(delivery_ids=ids, now=now)
    second = deliveries_claim(delivery_ids=ids, now=now)

    assert [d.pk for d in first] == ids
    assert second == []
    for delivery in Delivery.objects.filter(id__in=ids):
        assert (delivery.status, delivery.attempts, delivery.claimed_at) == (Delivery.Status.SENDING, 1, now)


# serialized_rollback: keeps the default topics (a data migration) for the tests that follow.
@pytest.mark.django_db(transaction=True, serialized_rollback=True)
def test_claim_skips_rows_another_worker_is_claiming() -> None:
    ids = [DeliveryFactory().pk for _ in range(2)]
    holding, release = threading.Event(), threading.Event()
    claimed_by_other: list[int] = []

    def other_worker() -> None:
        try:
            with transaction.atomic():
                claimed_by_other.extend(
                    d.pk for d in deliveries_claim(delivery_ids=ids[:1], now=timezone.now())
                )
                holding.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    thread = threading.Thread(target=other_worker)
    thread.start()
    try:
        assert holding.wait(timeout=30)
        mine = deliveries_claim(delivery_ids=ids, now=timezone.now())
    finally:
        release.set()
        thread.join()

    assert claimed_by_other == ids[:1]
    assert [d.pk for d in mine] == ids[1:]
    assert deliveries_claim(delivery_ids=ids, now=timezone.now()) == []


# --- send over real SMTP ----------------------------------------------------------------------


def test_a_chunk_is_sent_over_one_smtp_connection(smtp_sink) -> None:
    quantization_papers()
    subscribers = [due() for _ in range(4)]
    ids = dispatch_one_chunk()

    result = deliveries_send(delivery_ids=ids)

    assert sorted(result.sent) == sorted(ids)
    assert smtp_sink.connections == 1
    assert sorted(r for m in smtp_sink.messages for r in m.rcpt_tos) == sorted(s.email for s in subscribers)
    received = {m["To"]: m for m in smtp_sink.parsed()}
    for delivery in Delivery.objects.filter(id__in=ids).select_related("subscriber"):
        assert delivery.status == Delivery.Status.SENT
        assert delivery.sent_at is not None
        assert delivery.last_error == ""
        assert delivery.message_id == received[delivery.subscriber.email]["Message-ID"].strip()
    assert len({d.message_id for d in Delivery.objects.all()}) == len(ids)


def synchronous_commit() -> str:
    # On the raw connection, so it can run inside an execute wrapper without going through it again.
    with connection.connection.cursor() as cursor:
        cursor.execute("SHOW synchronous_commit")
        return cursor.fetchone()[0]


@pytest.mark.parametrize("asynchronous", [True, False])
def test_outcomes_are_written_with_the_configured_commit_mode_and_the_session_is_restored(
    smtp_sink, settings, asynchronous: bool
) -> None:
    settings.NEWSLETTER_ASYNC_COMMIT_OUTCOMES = asynchronous
    quantization_papers()
    due()
    ids = dispatch_one_chunk()
    seen: list[str] = []

    def watch(execute, sql, params, many, context):
        if sql.startswith("UPDATE newsletter_delivery SET status"):
            seen.append(synchronous_commit())
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        assert deliveries_send(delivery_ids=ids).sent == ids

    assert seen == ["off" if asynchronous else "on"]
    # Nothing else this connection writes later (sign-ups, ingest) loses durability.
    assert synchronous_commit() == "on"


def test_sending_twice_sends_once(smtp_sink) -> None:
    quantization_papers()
    due(), due()
    ids = dispatch_one_chunk()

    deliveries_send(delivery_ids=ids)
    again = deliveries_send(delivery_ids=ids)

    assert (again.sent, again.failed, again.deferred, again.skipped) == ([], [], [], [])
    assert len(smtp_sink.messages) == 2


def test_a_permanent_refusal_fails_only_that_delivery(smtp_sink) -> None:
    quantization_papers()
    first, gone, last = due(), due(), due()
    smtp_sink.refuse[gone.email] = "550 5.1.1 No such user"
    ids = dispatch_one_chunk()

    result = deliveries_send(delivery_ids=ids)

    assert result.failed == [delivery_of(gone).pk]
    assert sorted(result.sent) == sorted([delivery_of(first).pk, delivery_of(last).pk])
    failed = delivery_of(gone)
    assert failed.status == Delivery.Status.FAILED
    assert "550" in failed.last_error and "No such user" in failed.last_error
    assert sorted(r for m in smtp_sink.messages for r in m.rcpt_tos) == sorted([first.email, last.email])
    # The refusal did not cost the others their connection.
    assert smtp_sink.connections == 1
    # A failed delivery is not retried.
    assert deliveries_send(delivery_ids=ids).sent == []


def test_a_temporary_refusal_defers_that_delivery_until_a_later_call(smtp_sink) -> None:
    quantization_papers()
    busy, fine = due(), due()
    smtp_sink.refuse[busy.email] = "451 4.2.1 Mailbox busy, try later"
    ids = dispatch_one_chunk()

    result = deliveries_send(delivery_ids=ids)

    assert result.deferred == [delivery_of(busy).pk]
    assert result.sent == [delivery_of(fine).pk]
    deferred = delivery_of(busy)
    assert (deferred.status, deferred.attempts) == (Delivery.Status.PENDING, 1)
    assert "451" in deferred.last_error

    del smtp_sink.refuse[busy.email]
    retried = deliveries_send(delivery_ids=ids)

    assert retried.sent == [deferred.pk]
    sent = delivery_of(busy)
    assert (sent.status, sent.attempts, sent.last_error) == (Delivery.Status.SENT, 2, "")
    assert sorted(r for m in smtp_sink.messages for r in m.rcpt_tos) == sorted([busy.email, fine.email])


def test_a_temporary_data_failure_defers_and_the_retry_sends_the_same_digest(smtp_sink) -> None:
    quantization_papers(2)
    subscriber = due()
    ids = dispatch_one_chunk()
    smtp_sink.data_replies.append("451 4.3.0 Temporary failure")  # the next DATA only

    assert deliveries_send(delivery_ids=ids).deferred == ids
    recorded = list(DeliveryItem.objects.filter(subscriber=subscriber).values_list("paper_id", flat=True))
    quantization_papers(2)  # new papers arrive before the retry

    assert deliveries_send(delivery_ids=ids).sent == ids
    (message,) = smtp_sink.parsed()
    text = message.get_body(("plain",)).get_content()
    assert all(Paper.objects.get(pk=p).title in text for p in recorded)
    assert text.count("Quantization study") == len(recorded)


def test_smtp_server_down_defers_everything_and_a_later_call_sends(smtp_sink, settings) -> None:
    quantization_papers()
    subscribers = [due() for _ in range(3)]
    ids = dispatch_one_chunk()
    settings.EMAIL_PORT = free_port()  # nothing listens there
    settings.EMAIL_TIMEOUT = 5

    result = deliveries_send(delivery_ids=ids)

    assert sorted(result.deferred) == sorted(ids)
    for delivery in Delivery.objects.filter(id__in=ids):
        assert (delivery.status, delivery.attempts) == (Delivery.Status.PENDING, 1)
        assert delivery.last_error

    settings.EMAIL_PORT = smtp_sink.port
    assert sorted(deliveries_send(delivery_ids=ids).sent) == sorted(ids)
    assert sorted(r for m in smtp_sink.messages for r in m.rcpt_tos) == sorted(s.email for s in subscribers)


def test_a_delivery_fails_after_the_last_attempt(smtp_sink, settings) -> None:
    settings.NEWSLETTER_MAX_ATTEMPTS = 3
    quantization_papers()
    subscriber = due()
    ids = dispatch_one_chunk()
    smtp_sink.refuse[subscriber.email] = "451 4.2.1 Mailbox busy"

    outcomes = [deliveries_send(delivery_ids=ids) for _ in range(4)]

    assert [(r.deferred, r.failed) for r in outcomes] == [(ids, []), (ids, []), ([], ids), ([], [])]
    delivery = delivery_of(subscriber)
    assert (delivery.status, delivery.attempts) == (Delivery.Status.FAILED, 3)
    assert "451" in delivery.last_error
    assert smtp_sink.messages == []


def test_the_chunk_task_retries_while_deliveries_are_deferred(smtp_sink, settings) -> None:
    quantization_papers()
    busy, fine = due(), due()
    smtp_sink.refuse[busy.email] = "451 4.2.1 Mailbox busy"
    ids = dispatch_one_chunk()

    # Eager in tests: the retry is raised rather than scheduled.
    with pytest.raises(Retry) as retry:
        send_digest_chunk.delay(ids)

    assert isinstance(retry.value.exc, DeliveriesDeferred)
    # The countdown stays under the broker's visibility timeout, or the task would run twice.
    # (Full jitter: anything from 0 up to the backoff.)
    assert (
        0
        <= retry.value.when
        <= RETRY_BACKOFF_MAX
        < settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]
    )
    assert send_digest_chunk.max_retries == settings.NEWSLETTER_MAX_ATTEMPTS
    assert delivery_of(busy).status == Delivery.Status.PENDING

    del smtp_sink.refuse[busy.email]
    send_digest_chunk.delay(ids)  # the retry: nothing deferred, no further retry

    assert delivery_of(busy).status == delivery_of(fine).status == Delivery.Status.SENT
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == sorted([busy.email, fine.email])


# --- who gets nothing -------------------------------------------------------------------------


def test_subscribers_who_left_after_the_dispatch_get_nothing() -> None:
    quantization_papers()
    stays, leaves, bounced = due(), due(), due()
    ids = dispatch_one_chunk()
    Subscriber.objects.filter(pk=leaves.pk).update(status=Subscriber.Status.UNSUBSCRIBED)
    Suppression.objects.create(email=bounced.email, reason=Suppression.Reason.HARD_BOUNCE)

    result = deliveries_send(delivery_ids=ids)

    assert result.sent == [delivery_of(stays).pk]
    assert sorted(result.skipped) == sorted([delivery_of(leaves).pk, delivery_of(bounced).pk])
    assert delivery_of(leaves).status == delivery_of(bounced).status == Delivery.Status.SKIPPED
    assert [m.to for m in mail.outbox] == [[stays.email]]


def test_an_empty_digest_is_skipped() -> None:
    subscriber = due(interests="protein folding")
    quantization_papers()
    ids = dispatch_one_chunk()

    result = deliveries_send(delivery_ids=ids)

    assert result.skipped == ids
    assert delivery_of(subscriber).status == Delivery.Status.SKIPPED
    assert mail.outbox == []


def test_an_empty_window_is_skipped_too() -> None:
    subscriber = due()
    ids = dispatch_one_chunk()

    assert deliveries_send(delivery_ids=ids).skipped == ids
    assert delivery_of(subscriber).status == Delivery.Status.SKIPPED


def test_weekly_subscribers_who_asked_hear_that_there_is_nothing_new() -> None:
    weekly = {"frequency": Subscriber.Frequency.WEEKLY, "interests": "protein folding"}
    notified = due(notify_empty=True, **weekly)
    silent = due(notify_empty=False, **weekly)
    daily = due(notify_empty=True, interests="protein folding")
    quantization_papers()
    ids = dispatch_one_chunk()

    result = deliveries_send(delivery_ids=ids)

    assert result.sent == [delivery_of(notified).pk]
    assert sorted(result.skipped) == sorted([delivery_of(silent).pk, delivery_of(daily).pk])
    notice = delivery_of(notified)
    assert (notice.kind, notice.status) == (Delivery.Kind.EMPTY, Delivery.Status.SENT)
    (message,) = mail.outbox
    assert message.to == [notified.email]
    assert message.subject == "No new papers matched your interests this week"
    assert "Nothing new this week" in message.body
    assert "Nothing new this week" in message.alternatives[0].content
    assert message.extra_headers["List-Unsubscribe"].startswith("<https://")


# --- sweeper ----------------------------------------------------------------------------------


def test_sweeper_redrives_what_a_dead_worker_or_a_lost_task_left(settings) -> None:
    now = timezone.now()
    long_ago = now - settings.NEWSLETTER_STALE_CLAIM - timedelta(minutes=1)
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


def test_a_swept_delivery_is_then_sent(smtp_sink, settings) -> None:
    quantization_papers()
    subscriber = due()
    ids = dispatch_one_chunk()
    # A worker claimed the chunk and died before sending.
    deliveries_claim(
        delivery_ids=ids, now=timezone.now() - settings.NEWSLETTER_STALE_CLAIM - timedelta(minutes=1)
    )

    assert deliveries_send(delivery_ids=ids).sent == []  # still held by the dead worker
    (chunk,) = deliveries_sweep()
    assert chunk == ids
    assert deliveries_send(delivery_ids=chunk).sent == ids

    delivery = delivery_of(subscriber)
    assert (delivery.status, delivery.attempts) == (Delivery.Status.SENT, 2)
    assert [m.rcpt_tos for m in smtp_sink.messages] == [[subscriber.email]]


# --- the whole pipeline -----------------------------------------------------------------------


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

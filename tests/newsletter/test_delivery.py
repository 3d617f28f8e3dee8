"""Delivery (newsletter.services.delivery): atomic claim, sending over real SMTP, recording outcomes."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from celery.exceptions import Retry
from django.core import mail
from django.db import connection
from django.utils import timezone

from newsletter.models import Delivery, DeliveryItem, Subscriber, Suppression
from newsletter.services.delivery import deliveries_claim, deliveries_send
from newsletter.services.outcomes import RETRY_DELAY_MAX
from newsletter.tasks import DeliveriesDeferred, send_digest_chunk
from papers.models import Paper
from tests.factories import DeliveryFactory
from tests.newsletter.helpers import (
    delivery_of,
    dispatch_one_chunk,
    due,
    held_in_another_transaction,
    quantization_papers,
)
from tests.support import PostfixSink, free_port

pytestmark = pytest.mark.django_db


# --- claim -------------------------------------------------------------------------------------


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

    with held_in_another_transaction(
        lambda: deliveries_claim(delivery_ids=ids[:1], now=timezone.now())
    ) as claimed_by_other:
        mine = deliveries_claim(delivery_ids=ids, now=timezone.now())

    assert [d.pk for d in claimed_by_other] == ids[:1]
    assert [d.pk for d in mine] == ids[1:]
    assert deliveries_claim(delivery_ids=ids, now=timezone.now()) == []


# --- send over real SMTP -----------------------------------------------------------------------


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


def test_an_asynchronous_chunk_ends_with_one_synchronous_write_that_makes_its_outcomes_durable(
    smtp_sink, settings
) -> None:
    settings.NEWSLETTER_ASYNC_COMMIT_OUTCOMES = True
    quantization_papers()
    due(), due()
    ids = dispatch_one_chunk()
    writes: list[tuple[str, str]] = []

    def watch(execute, sql, params, many, context):
        if sql.startswith("UPDATE newsletter_delivery"):
            writes.append((sql.split(" SET ")[1].split(" =")[0], synchronous_commit()))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(watch):
        assert deliveries_send(delivery_ids=ids).sent == ids

    # Two SENT marks committed asynchronously, then a synchronous commit of a real write, which
    # flushes the WAL up to it: a server crash after the chunk loses none of its marks.
    assert writes == [("status", "off"), ("status", "off"), ("claimed_at", "on")]


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
    # Each recorded paper twice (the overview and its row), and none of the new ones.
    assert text.count("Quantization study") == 2 * len(recorded)


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
    # The task comes back when the delivery's retry is due (the first backoff step), and the row says
    # so, so the sweeper does not re-queue it before then. Every countdown stays under the broker's
    # visibility timeout, or the task would run twice.
    deferred = delivery_of(busy)
    assert deferred.status == Delivery.Status.PENDING
    first_step = settings.NEWSLETTER_RETRY_BACKOFF_SECONDS
    assert first_step - 5 <= retry.value.when <= first_step
    assert abs((deferred.queued_at - deferred.claimed_at).total_seconds() - first_step) < 5
    assert settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"] > RETRY_DELAY_MAX
    assert send_digest_chunk.max_retries >= settings.NEWSLETTER_MAX_ATTEMPTS

    del smtp_sink.refuse[busy.email]
    send_digest_chunk.delay(ids)  # the retry: nothing deferred, no further retry

    assert delivery_of(busy).status == delivery_of(fine).status == Delivery.Status.SENT
    assert sorted(m.rcpt_tos[0] for m in smtp_sink.messages) == sorted([busy.email, fine.email])


# --- the SMTP transaction (services/smtp.py): refusals, hang-ups, servers with and without PIPELINING


def smtp_errors(*subscribers) -> list[tuple[str, str]]:
    return [(delivery_of(s).status, delivery_of(s).last_error) for s in subscribers]


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-command-per-turn"])
@pytest.mark.parametrize(
    ("step", "reply", "first_status"),
    [
        ("RCPT", "550 5.1.1 No such user", Delivery.Status.FAILED),
        ("RCPT", "450 4.2.1 Too many messages, slow down", Delivery.Status.PENDING),
        ("DATA", "554 5.6.0 Message refused", Delivery.Status.FAILED),
        ("DATA", "451 4.3.0 Temporary failure", Delivery.Status.PENDING),
    ],
)
def test_a_refused_email_is_classified_and_the_next_of_the_chunk_still_goes_out(
    smtp_sink, pipelining: bool, step: str, reply: str, first_status: str
) -> None:
    smtp_sink.pipelining = pipelining
    quantization_papers()
    first, second, third = due(), due(), due()
    if step == "RCPT":
        smtp_sink.refuse[first.email] = reply
    else:
        smtp_sink.data_replies.append(reply)  # the first DATA of the chunk: the first email's
    ids = dispatch_one_chunk()

    result = deliveries_send(delivery_ids=ids)

    code, text = reply.split(" ", 1)
    expected = f"recipient refused: {reply}" if step == "RCPT" else f"SMTP {code} {text}"
    assert smtp_errors(first) == [(first_status, expected)]
    assert sorted(result.sent) == sorted([delivery_of(second).pk, delivery_of(third).pk])
    assert sorted(r for m in smtp_sink.messages for r in m.rcpt_tos) == sorted([second.email, third.email])
    assert smtp_sink.connections == 1


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelining", "one-command-per-turn"])
@pytest.mark.parametrize("reply", ["451 4.3.2 Try again later", "550 5.7.1 Sender rejected"])
def test_a_refused_sender_defers_the_whole_chunk_as_before(smtp_sink, pipelining: bool, reply: str) -> None:
    smtp_sink.pipelining = pipelining
    smtp_sink.mail_replies.append(reply)
    quantization_papers()
    subscribers = [due() for _ in range(3)]
    ids = dispatch_one_chunk()

    result = deliveries_send(delivery_ids=ids)

    # Our own sender refused is a configuration problem: the rest of the chunk waits (delivery.py).
    assert sorted(result.deferred) == sorted(ids) and result.sent == []
    code, text = reply.split(" ", 1)
    errors = smtp_errors(*subscribers)
    assert errors[0] == (Delivery.Status.PENDING, f"sender refused: {code} b'{text}'")
    assert all(status == Delivery.Status.PENDING and "not attempted" in error for status, error in errors[1:])
    assert smtp_sink.messages == []


@contextmanager
def postfix_sink(settings, *options: str) -> Iterator[PostfixSink]:
    """Postfix's smtp-sink with Django's SMTP backend pointed at it."""
    if not PostfixSink.available():
        pytest.skip("Postfix's smtp-sink is not installed")
    with PostfixSink(*options) as sink:
        settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
        settings.EMAIL_HOST, settings.EMAIL_PORT = sink.host, sink.port
        settings.EMAIL_USE_TLS, settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = False, "", ""
        yield sink


@pytest.mark.parametrize("options", [(), ("-p",)], ids=["pipelining", "no-pipelining"])
def test_a_chunk_goes_out_through_postfix_smtp_sink(settings, options: tuple[str, ...]) -> None:
    quantization_papers()
    for _ in range(5):
        due()
    ids = dispatch_one_chunk()

    with postfix_sink(settings, *options) as sink:
        result = deliveries_send(delivery_ids=ids)
        delivered = sink.delivered()

    assert sorted(result.sent) == sorted(ids) and delivered == 5
    assert set(Delivery.objects.values_list("status", flat=True)) == {Delivery.Status.SENT}


@pytest.mark.parametrize("hang_up_after", ["RCPT", "."])
def test_a_server_hanging_up_mid_transaction_loses_the_connection_and_marks_nothing_sent(
    settings, hang_up_after: str
) -> None:
    quantization_papers()
    subscribers = [due() for _ in range(3)]
    ids = dispatch_one_chunk()

    with postfix_sink(settings, "-q", hang_up_after):
        result = deliveries_send(delivery_ids=ids)

    # No email got its 250, so none is SENT; the first is retried, the rest were not attempted.
    assert result.sent == [] and sorted(result.deferred) == sorted(ids)
    errors = smtp_errors(*subscribers)
    assert errors[0] == (Delivery.Status.PENDING, "SMTPServerDisconnected: Connection unexpectedly closed")
    assert all(status == Delivery.Status.PENDING and "not attempted" in error for status, error in errors[1:])


# --- who gets nothing --------------------------------------------------------------------------


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

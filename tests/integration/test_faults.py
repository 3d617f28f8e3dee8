"""Fault injection with the real moving parts: SIGKILLed workers, SMTP outages, a Redis restart.

Every test ends by counting what the SMTP server really accepted, recorded as a real MTA records it
(before it answers): every due digest at least once, and more than once only for a worker process
that died mid-send, at most one extra email per such process (the email it was waiting to hear about).
"""

from __future__ import annotations

import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from newsletter.models import Delivery, DeliveryItem
from newsletter.services.delivery import deliveries_send
from newsletter.services.dispatch import digests_dispatch
from papers.models import Paper, Topic
from papers.services.ingest import papers_ingest_path
from tests.factories import SubscriberFactory
from tests.integration.conftest import Workers, wait_until
from tests.support import RecordingSMTPServer

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

WORKER_START = 60  # seconds a cold worker may take to import Django, sklearn and connect


def due_subscribers(count: int) -> list[str]:
    """Active subscribers, all due now, with preferences that match the sample papers."""
    topic = Topic.objects.get(slug="language-models")
    now = timezone.now()
    subscribers = [
        SubscriberFactory(
            email=f"reader{i}@example.org",
            interests="language model pre-training",
            next_send_at=now - timedelta(minutes=1),
            topics=[topic],
        )
        for i in range(count)
    ]
    return [s.email for s in subscribers]


def statuses() -> dict[str, int]:
    counts: dict[str, int] = {}
    for status in Delivery.objects.values_list("status", flat=True):
        counts[status] = counts.get(status, 0) + 1
    return counts


def all_sent(expected: int) -> bool:
    return Delivery.objects.filter(status=Delivery.Status.SENT).count() == expected


def test_worker_killed_mid_chunk_delivers_every_digest_and_repeats_at_most_the_one_in_flight(
    sample_papers, workers: Workers, faulty_smtp: RecordingSMTPServer
) -> None:
    emails = due_subscribers(12)
    # The server holds its answer to the third message: the worker is killed mid-chunk while it waits
    # for the 250 of a message the server has already recorded, however slow the machine is.
    third_recorded, answer = threading.Event(), threading.Event()

    def hold_the_third(envelope: object) -> None:
        if len(faulty_smtp.messages) == 3:
            third_recorded.set()
            answer.wait(timeout=WORKER_START)

    faulty_smtp.on_data = hold_the_third
    faulty_smtp.start()
    smtp = faulty_smtp.email_env()
    first = workers.start(**smtp)
    result = workers.run_command("send_digests", **smtp)
    assert result.returncode == 0, result.stderr
    assert "queued 12 deliveries" in result.stdout

    assert third_recorded.wait(timeout=WORKER_START), workers.logs()
    workers.kill(first)
    answer.set()
    delivered_before = len(faulty_smtp.messages)
    assert delivered_before == 3, workers.logs()
    assert statuses().get(Delivery.Status.SENDING, 0) > 0  # the dead worker's claim is still there

    # A new worker and the next dispatcher run: the sweeper re-drives the stale claim.
    workers.start(NEWSLETTER_CLAIM_LEASE_SECONDS="0", **smtp)
    result = workers.run_command("send_digests", NEWSLETTER_CLAIM_LEASE_SECONDS="0", **smtp)
    assert result.returncode == 0, result.stderr
    wait_until(lambda: all_sent(12), timeout=WORKER_START, what=f"12 sent deliveries; now {statuses()}")

    # Nothing lost; one worker process died mid-send, so at most one recipient got a second email.
    received = faulty_smtp.recipients()
    assert set(received) == set(emails), workers.logs()
    assert sum(received.values()) - len(emails) <= 1, received
    # What arrived is what was recorded: each email lists exactly its delivery's papers.
    for message in faulty_smtp.parsed():
        delivery = Delivery.objects.get(subscriber__email=message["To"])
        titles = DeliveryItem.objects.filter(delivery=delivery).values_list("paper__title", flat=True)
        body = message.get_body(preferencelist=("plain",)).get_content()
        assert all(title in body for title in titles)


def test_smtp_down_then_temporary_errors_then_delivered_once(
    sample_papers, workers: Workers, faulty_smtp: RecordingSMTPServer
) -> None:
    emails = due_subscribers(5)
    smtp = faulty_smtp.email_env()
    workers.start(**smtp)  # the SMTP server is not running yet: connections are refused
    assert workers.run_command("send_digests", **smtp).returncode == 0
    wait_until(
        lambda: (
            Delivery.objects.filter(status=Delivery.Status.PENDING, attempts__gte=1)
            .exclude(last_error="")
            .count()
            == 5
        ),
        timeout=WORKER_START,
        what="deliveries deferred while SMTP is down",
    )
    assert "Connection" in Delivery.objects.first().last_error

    faulty_smtp.data_replies = ["451 4.3.0 Temporary failure"] * 2  # back, but answering 451 twice first
    faulty_smtp.start()
    wait_until(lambda: all_sent(5), timeout=60, what=f"5 sent deliveries after the outage; now {statuses()}")
    assert faulty_smtp.recipients() == {email: 1 for email in emails}
    assert faulty_smtp.data_replies == []
    assert max(Delivery.objects.values_list("attempts", flat=True)) >= 2


def test_permanent_refusal_fails_one_delivery_not_the_chunk(
    sample_papers, workers: Workers, faulty_smtp: RecordingSMTPServer
) -> None:
    emails = due_subscribers(4)
    faulty_smtp.refuse[emails[1]] = "550 5.1.1 No such user"
    faulty_smtp.start()
    smtp = faulty_smtp.email_env()
    workers.start(**smtp)
    assert workers.run_command("send_digests", **smtp).returncode == 0
    wait_until(
        lambda: (
            Delivery.objects.exclude(status__in=[Delivery.Status.PENDING, Delivery.Status.SENDING]).count()
            == 4
        ),
        timeout=WORKER_START,
        what="all four deliveries finished",
    )
    failed = Delivery.objects.get(status=Delivery.Status.FAILED)
    assert failed.subscriber.email == emails[1]
    assert "550" in failed.last_error
    assert failed.attempts == 1  # permanent: never retried
    assert faulty_smtp.recipients() == {e: 1 for e in emails if e != emails[1]}
    assert faulty_smtp.connections == 1  # one SMTP connection for the whole chunk


def test_redis_restarted_after_dispatch_loses_nothing(
    sample_papers, workers: Workers, faulty_smtp: RecordingSMTPServer, private_redis
) -> None:
    emails = due_subscribers(6)
    faulty_smtp.start()
    env = {**faulty_smtp.email_env(), "TEST_REDIS_URL": private_redis.url}
    private_redis.start()
    # The dispatcher runs and queues its chunk while no worker is up ...
    assert workers.run_command("send_digests", **env).returncode == 0
    assert statuses() == {Delivery.Status.PENDING: 6}
    # ... then Redis dies and comes back empty: the queued task is gone.
    private_redis.kill()
    private_redis.start()
    workers.start(**env)
    # The database still knows: the next dispatcher run re-queues what nobody picked up.
    result = workers.run_command("send_digests", NEWSLETTER_STALE_PENDING_SECONDS="0", **env)
    assert result.returncode == 0, result.stderr
    wait_until(lambda: all_sent(6), timeout=WORKER_START, what=f"6 sent deliveries; now {statuses()}")
    assert faulty_smtp.recipients() == {email: 1 for email in emails}


def test_redis_unreachable_while_dispatching_keeps_deliveries_for_the_next_run(
    sample_papers, workers: Workers, faulty_smtp: RecordingSMTPServer, private_redis
) -> None:
    emails = due_subscribers(3)
    faulty_smtp.start()
    env = {**faulty_smtp.email_env(), "TEST_REDIS_URL": private_redis.url}  # that Redis is not started
    result = workers.run_command("send_digests", **env)
    assert result.returncode != 0  # the operator sees the broker failure ...
    assert statuses() == {Delivery.Status.PENDING: 3}  # ... and the database kept the work
    private_redis.start()
    workers.start(**env)
    assert workers.run_command("send_digests", NEWSLETTER_STALE_PENDING_SECONDS="0", **env).returncode == 0
    wait_until(lambda: all_sent(3), timeout=WORKER_START, what=f"3 sent deliveries; now {statuses()}")
    assert faulty_smtp.recipients() == {email: 1 for email in emails}


def test_ingesting_while_digests_are_built_is_safe(sample_files, smtp_sink) -> None:
    papers_ingest_path(path=sample_files[0])
    due_subscribers(30)
    errors: list[BaseException] = []

    def ingest_the_rest() -> None:
        try:
            for path in sample_files[1:]:
                papers_ingest_path(path=path)
        except BaseException as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()  # the thread's own connection, or the test database cannot be dropped

    ingester = threading.Thread(target=ingest_the_rest)
    ingester.start()
    for chunk in digests_dispatch(chunk_size=10):
        deliveries_send(delivery_ids=chunk)
    ingester.join()
    assert errors == []
    assert statuses() == {Delivery.Status.SENT: 30}, set(
        Delivery.objects.values_list("last_error", flat=True)
    )
    assert Paper.objects.count() == Paper.objects.values("title_key").distinct().count()
    assert len(smtp_sink.messages) == 30

"""The whole digest pipeline on the real moving parts, in this process.

A real Celery worker (celery.contrib.testing.worker, in a thread of the test process) consumes from
the real Redis broker of the test settings; the dispatcher is queued with `.delay()`, fans out one
task per chunk, and the chunks are sent over SMTP to aiosmtpd. What arrived there is then compared
with what the database recorded.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from html.parser import HTMLParser

import pytest
import redis
from celery.contrib.testing.worker import start_worker
from celery.signals import task_postrun, task_prerun
from django.conf import settings
from django.db import connections
from django.utils import timezone

from config.celery import app
from newsletter.models import Delivery, DeliveryItem, Subscriber
from newsletter.services.tokens import Purpose, token_subscriber
from newsletter.tasks import dispatch_digests
from papers.models import Topic
from papers.services.ingest import papers_ingest_path
from tests.factories import SubscriberFactory
from tests.integration.conftest import wait_until

# serialized_rollback: the flush after a transactional test would otherwise drop the default topics
# (a data migration) that later tests rely on.
pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def _close_worker_connections(**kwargs) -> None:
    # Runs in the worker's thread: its Django connections are its own and must not outlive the test
    # (the test database is flushed, then dropped, after it).
    connections.close_all()


@contextmanager
def worker_running() -> Iterator[list[tuple[str, int]]]:
    """A real worker on the test broker (Redis db 13), running tasks in a thread of this process.

    Yields the (task name, thread id) of every task the worker ran, as it runs them."""
    broker = redis.Redis.from_url(settings.CELERY_BROKER_URL)
    broker.flushdb()  # nothing left over from another test
    ran: list[tuple[str, int]] = []

    def record(sender=None, **kwargs) -> None:
        ran.append((sender.name, threading.get_ident()))

    eager = app.conf.task_always_eager
    app.conf.task_always_eager = False
    task_prerun.connect(record, weak=False)
    task_postrun.connect(_close_worker_connections, weak=False)
    try:
        with start_worker(
            app, pool="solo", perform_ping_check=False, shutdown_timeout=30, loglevel="WARNING"
        ):
            yield ran
    finally:
        task_prerun.disconnect(record)
        task_postrun.disconnect(_close_worker_connections)
        app.conf.task_always_eager = eager
        broker.flushdb()


class _PaperTitles(HTMLParser):
    """Text of the `<a class="paper-title">` links of a digest, in order."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.titles: list[str] = []
        self._inside = False

    def handle_starttag(self, tag, attrs) -> None:
        if tag == "a" and ("class", "paper-title") in attrs:
            self._inside = True
            self.titles.append("")

    def handle_endtag(self, tag) -> None:
        if tag == "a":
            self._inside = False

    def handle_data(self, data) -> None:
        if self._inside:
            self.titles[-1] += data


def html_titles(html: str) -> list[str]:
    parser = _PaperTitles()
    parser.feed(html)
    return [" ".join(t.split()) for t in parser.titles]


def text_titles(text: str, count: int) -> list[str]:
    """The numbered titles of the plain-text part ("1. Title"): each is in the overview at the top
    and again at its row, the same."""
    lines = text.splitlines()
    titles = []
    for n in range(1, count + 1):
        overview, row = [line for line in lines if line.startswith(f"{n}. ")]
        assert overview == row
        titles.append(row[len(f"{n}. ") :])
    return titles


def test_dispatch_through_a_real_worker_sends_each_digest_once(sample_files, smtp_sink, settings) -> None:
    for path in sample_files:
        papers_ingest_path(path=path)
    settings.NEWSLETTER_CHUNK_SIZE = 2  # five subscribers: three chunk tasks through the broker
    past = timezone.now() - timedelta(minutes=1)
    subscribers = {
        "speech": SubscriberFactory(interests="speech recognition", next_send_at=past),
        "quantiz": SubscriberFactory(interests="quantization", next_send_at=past, papers_per_digest=4),
        "retriev": SubscriberFactory(
            interests="retrieval, reranking",
            topics=[Topic.objects.get(slug="retrieval-rag")],
            next_send_at=past,
        ),
        "agent": SubscriberFactory(
            interests="agents, tool use", email_format=Subscriber.Format.TEXT, next_send_at=past
        ),
        "reinforcement": SubscriberFactory(
            topics=[Topic.objects.get(slug="reinforcement-learning")],
            frequency=Subscriber.Frequency.WEEKLY,
            next_send_at=past,
        ),
    }
    SubscriberFactory(interests="quantization", next_send_at=timezone.now() + timedelta(hours=1))  # not due

    with worker_running() as ran:
        dispatch_digests.delay()
        try:
            wait_until(
                lambda: Delivery.objects.filter(status=Delivery.Status.SENT).count() == len(subscribers),
                timeout=90,
                what="every due digest to be sent by the worker",
            )
        except AssertionError as timeout:
            state = list(Delivery.objects.values_list("status", "attempts", "last_error"))
            raise AssertionError(f"{timeout}; tasks run: {ran}; deliveries: {state}") from timeout

    # The dispatcher and one task per chunk went through the broker to the worker's thread.
    assert (
        sorted(name for name, _ in ran)
        == ["newsletter.tasks.dispatch_digests"] + ["newsletter.tasks.send_digest_chunk"] * 3
    )
    assert threading.get_ident() not in {thread for _, thread in ran}
    assert Delivery.objects.count() == len(subscribers)
    assert smtp_sink.connections == 3  # one SMTP session per chunk
    received = smtp_sink.parsed()
    recipients = [address for m in smtp_sink.messages for address in m.rcpt_tos]
    assert sorted(recipients) == sorted(s.email for s in subscribers.values())  # exactly one each

    by_address = {m["To"]: m for m in received}
    for word, subscriber in subscribers.items():
        message = by_address[subscriber.email]
        delivery = Delivery.objects.get(subscriber=subscriber)
        assert delivery.message_id == message["Message-ID"].strip()

        unsubscribe = message["List-Unsubscribe"].strip()
        assert unsubscribe.startswith(f"<{settings.SITE_URL}/unsubscribe/") and unsubscribe.endswith(">")
        token = unsubscribe.strip("<>").rstrip("/").rsplit("/", 1)[1]
        assert token_subscriber(token=token, purpose=Purpose.UNSUBSCRIBE) == subscriber
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert message["List-Id"] == settings.NEWSLETTER_LIST_ID

        items = list(
            DeliveryItem.objects.filter(delivery=delivery).order_by("position").select_related("paper")
        )
        assert 0 < len(items) <= subscriber.papers_per_digest
        titles = [" ".join(item.paper.title.split()) for item in items]
        text = message.get_body(("plain",)).get_content()
        assert [" ".join(t.split()) for t in text_titles(text, len(items))] == titles
        if subscriber.email_format == Subscriber.Format.HTML:
            assert message.get_content_type() == "multipart/alternative"
            assert html_titles(message.get_body(("html",)).get_content()) == titles
        else:
            assert message.get_content_type() == "text/plain"
        # A subscriber interested in X gets X first.
        top = items[0].paper
        assert word in f"{top.title} {top.abstract}".lower()

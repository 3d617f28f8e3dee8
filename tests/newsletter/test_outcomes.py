"""Outcomes (newsletter.services.outcomes) when the sending process loses its real PostgreSQL
connection mid-chunk: the connection is terminated from another one (pg_terminate_backend) while the
SMTP server holds the answer to a message it has already recorded, as a database restart would."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

import psycopg
import pytest
from celery.exceptions import Retry
from django.db import OperationalError, connection
from django.utils import timezone

from newsletter.models import Delivery
from newsletter.services.dispatch import deliveries_sweep
from newsletter.tasks import DeliveriesDeferred, send_digest_chunk
from tests.newsletter.helpers import delivery_of, dispatch_one_chunk, due, quantization_papers
from tests.support import free_port

# The connection must really die and come back, so no test transaction may wrap it.
pytestmark = pytest.mark.django_db(transaction=True, serialized_rollback=True)

SENT, SENDING, PENDING = Delivery.Status.SENT, Delivery.Status.SENDING, Delivery.Status.PENDING


def backend_terminator(
    *, at_message: int, then: Callable[[psycopg.Connection], None] = lambda other: None
) -> Callable[[object], None]:
    """An SMTP `on_data` hook: when the server has recorded message number `at_message` (1-based) and
    before it answers, terminate this test process's database connection from another connection and
    wait until it is gone; then call `then` with that other connection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        backend = cursor.fetchone()[0]
    db = connection.settings_dict
    dsn = f"host={db['HOST']} port={db['PORT']} user={db['USER']} dbname={db['NAME']}"
    seen = 0

    def hook(envelope: object) -> None:
        nonlocal seen
        seen += 1
        if seen != at_message:
            return
        with psycopg.connect(dsn, autocommit=True) as other:
            other.execute("SELECT pg_terminate_backend(%s)", [backend])
            while other.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", [backend]).fetchone():
                time.sleep(0.01)
            then(other)

    return hook


def chunk_of_four() -> tuple[list, list[int]]:
    quantization_papers()
    readers = [due(email=f"reader{i}@example.org") for i in range(4)]
    return readers, dispatch_one_chunk()


def test_an_outcome_whose_connection_died_is_written_after_reconnecting_and_the_rest_sent_on_retry(
    smtp_sink, caplog
) -> None:
    readers, ids = chunk_of_four()

    def lose_first_mark(other: psycopg.Connection) -> None:
        # As a server crash loses an asynchronous commit: the first SENT mark is gone too.
        other.execute("UPDATE newsletter_delivery SET status = 'sending' WHERE id = %s", [ids[0]])

    smtp_sink.on_data = backend_terminator(at_message=2, then=lose_first_mark)

    with caplog.at_level(logging.INFO, logger="newsletter.delivery"), pytest.raises(Retry) as retry:
        send_digest_chunk.delay(ids)  # eager: the retry is raised rather than scheduled

    # The second email went out while the connection died: it is recorded as SENT, not sent again;
    # the first one's lost mark is written again.
    assert isinstance(retry.value.exc, DeliveriesDeferred)
    assert [delivery_of(r).status for r in readers] == [SENT, SENT, PENDING, PENDING]
    assert delivery_of(readers[2]).last_error == "not attempted: database unavailable"
    # The first error is the one logged, with the delivery and chunk ids.
    first = next(r.getMessage() for r in caplog.records if r.levelno == logging.ERROR)
    assert f"delivery={delivery_of(readers[1]).pk} chunk={min(ids)}..{max(ids)}" in first
    assert "terminating connection due to administrator command" in first
    assert "wrote 1 kept outcome(s) (and 1 written before, again) and released 2" in caplog.text

    send_digest_chunk.delay(ids)  # the retry: the released rest of the chunk

    assert [delivery_of(r).status for r in readers] == [SENT] * 4
    assert smtp_sink.recipients() == {r.email: 1 for r in readers}


def test_a_database_away_longer_than_the_budget_raises_with_the_first_error_logged(
    smtp_sink, settings, caplog
) -> None:
    settings.NEWSLETTER_CLAIM_LEASE = timedelta(seconds=2)  # writing again is tried for a second
    readers, ids = chunk_of_four()
    reachable = connection.settings_dict["PORT"]

    def unreachable(other: psycopg.Connection) -> None:
        connection.settings_dict["PORT"] = str(free_port())  # nothing listens there

    smtp_sink.on_data = backend_terminator(at_message=2, then=unreachable)
    try:
        with caplog.at_level(logging.INFO, logger="newsletter.delivery"), pytest.raises(Retry) as retry:
            send_digest_chunk.delay(ids)
    finally:
        connection.close()
        connection.settings_dict["PORT"] = reachable

    # The task retries on the connection error; its cause is the first error, which the log names.
    assert isinstance(retry.value.exc, OperationalError)
    assert "terminating connection due to administrator command" in str(retry.value.exc.__cause__)
    given_up = next(r.getMessage() for r in caplog.records if r.getMessage().startswith("gave up"))
    assert "gave up writing 1 outcome(s)" in given_up
    assert "terminating connection due to administrator command" in given_up
    # The unwritten outcome stays a claim: after its lease, the sweeper re-drives it and the rest.
    assert [delivery_of(r).status for r in readers] == [SENT, SENDING, SENDING, SENDING]
    later = timezone.now() + settings.NEWSLETTER_CLAIM_LEASE + timedelta(seconds=1)
    assert deliveries_sweep(now=later) == [ids[1:]]

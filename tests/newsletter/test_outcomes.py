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
from django.db import OperationalError, connection, transaction
from django.utils import timezone

from newsletter.models import Delivery
from newsletter.services.delivery import deliveries_claim
from newsletter.services.dispatch import deliveries_sweep
from newsletter.services.outcomes import Outcome, OutcomeRecorder
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


# --- the SENT mark as a prepared statement (NEWSLETTER_PREPARED_OUTCOMES) -----------------------


def prepared_marks() -> list[str]:
    """The SENT marks prepared on this process's current database connection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT statement FROM pg_prepared_statements")
        return [
            sql for (sql,) in cursor.fetchall() if sql.startswith("UPDATE newsletter_delivery SET status")
        ]


def claimed_chunk_of_four() -> list[int]:
    _, ids = chunk_of_four()
    deliveries_claim(delivery_ids=ids, now=timezone.now())
    return ids


def sent(delivery_id: int) -> Outcome:
    return Outcome(delivery_id, SENT, message_id=f"<{delivery_id}@digest.example.org>", kind="digest")


def statuses(ids: list[int]) -> list[str]:
    by_id = dict(Delivery.objects.filter(id__in=ids).values_list("id", "status"))
    return [by_id[i] for i in ids]


def test_sent_marks_are_one_statement_prepared_on_the_connection(settings) -> None:
    settings.NEWSLETTER_PREPARED_OUTCOMES = True
    ids = claimed_chunk_of_four()
    recorder = OutcomeRecorder(chunk_ids=ids)

    for delivery_id in ids:
        recorder.record(sent(delivery_id))

    assert not recorder.broken
    assert statuses(ids) == [SENT] * 4
    assert Delivery.objects.get(pk=ids[0]).message_id == f"<{ids[0]}@digest.example.org>"
    # Planned once for the four (psycopg ignores prepare=True while Django's prepare_threshold is None).
    assert len(prepared_marks()) == 1


def test_without_prepared_outcomes_the_mark_is_plain_sql(settings) -> None:
    settings.NEWSLETTER_PREPARED_OUTCOMES = False
    ids = claimed_chunk_of_four()
    recorder = OutcomeRecorder(chunk_ids=ids)

    recorder.record(sent(ids[0]))

    assert statuses(ids[:1]) == [SENT]
    assert prepared_marks() == []


def test_a_prepared_mark_is_part_of_the_transaction_around_it(settings) -> None:
    settings.NEWSLETTER_PREPARED_OUTCOMES = True
    ids = claimed_chunk_of_four()

    with pytest.raises(RuntimeError), transaction.atomic():
        OutcomeRecorder(chunk_ids=ids).record(sent(ids[0]))
        raise RuntimeError("the rest of recover() failed")

    assert statuses(ids[:1]) == [SENDING]


def test_a_prepared_mark_on_a_dead_connection_is_kept_and_written_again_after_reconnecting(settings) -> None:
    settings.NEWSLETTER_PREPARED_OUTCOMES = True
    ids = claimed_chunk_of_four()
    recorder = OutcomeRecorder(chunk_ids=ids)
    recorder.record(sent(ids[0]))
    assert len(prepared_marks()) == 1
    # Another connection kills this one, and (as a server crash loses an asynchronous commit) the
    # first mark with it.
    terminate = backend_terminator(
        at_message=1,
        then=lambda other: other.execute(
            "UPDATE newsletter_delivery SET status = 'sending' WHERE id = %s", [ids[0]]
        ),
    )
    terminate(None)

    recorder.record(sent(ids[1]))  # psycopg's error on the prepared statement, as Django's

    assert recorder.broken
    assert isinstance(recorder.first_error, OperationalError)
    recorder.recover(release=ids[2:])
    assert statuses(ids) == [SENT, SENT, PENDING, PENDING]
    assert len(prepared_marks()) == 1  # prepared again on the new connection

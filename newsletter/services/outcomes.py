"""Recording what happened to each email of a chunk, and holding the chunk's claim while it sends.

Part of step 4 (send, delivery.py). Two rules make "at most once per worker death" hold:

- **The lease.** A claimed delivery is SENDING with `claimed_at`; the sender renews it every
  NEWSLETTER_CLAIM_LEASE / 4 while it works, so the sweeper recognises a dead worker's claim after one
  lease (a minute by default) instead of a fixed quarter of an hour.
- **An outcome is never dropped.** Each one is written right after its SMTP transaction. When the
  database connection is lost, the email has already gone out: its outcome is kept here, sending
  stops (nothing more goes out that could not be recorded), and the chunk's outcomes are written again
  after reconnecting, with bounded backoff: all of them, not only the unwritten ones, because with
  asynchronous commit (NEWSLETTER_ASYNC_COMMIT_OUTCOMES) a server crash loses the last commits that
  were not yet flushed. A chunk that ends normally makes its outcomes durable with one synchronous
  commit, so a crash after its task ended loses none. Only if the database stays away longer than the
  lease allows are outcomes given up; then, and only then, the sweeper re-drives those deliveries and
  they are sent again. The first error is the one logged, with the delivery and chunk ids.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import psycopg
from django.conf import settings
from django.db import DEFAULT_DB_ALIAS, DatabaseError, connections, transaction
from django.db import connection as db_connection
from django.db.backends.utils import CursorWrapper
from django.db.models import F
from django.utils import timezone
from psycopg.abc import Params, Query

from newsletter.models import Delivery

logger = logging.getLogger("newsletter.delivery")

_MARK_SENT = (
    f"UPDATE {Delivery._meta.db_table} "
    "SET status = %s, sent_at = %s, message_id = %s, kind = %s, last_error = '' "
    "WHERE id = %s AND status IN (%s, %s)"
)
# A real write (a row version, so WAL) that changes nothing: its synchronous commit flushes the WAL
# up to it, and with it every asynchronous commit before it.
_TOUCH = f"UPDATE {Delivery._meta.db_table} SET claimed_at = claimed_at WHERE id = %s"
RETRY_DELAY_MAX = 600  # seconds; far under the broker's visibility timeout (1 h)


@dataclass(frozen=True)
class Outcome:
    delivery_id: int
    status: str
    error: str = ""
    message_id: str = ""
    kind: str = ""
    queued_at: datetime | None = None  # deferred: when its retry is due


def retry_delay(attempts: int) -> timedelta:
    """The wait before a deferred delivery's next attempt: doubles from NEWSLETTER_RETRY_BACKOFF_SECONDS
    up to 10 minutes. The sweeper counts from there, so it never re-queues a delivery whose retry is
    simply not due yet."""
    base = settings.NEWSLETTER_RETRY_BACKOFF_SECONDS
    return timedelta(seconds=min(base * 2 ** max(attempts - 1, 0), RETRY_DELAY_MAX))


@dataclass
class OutcomeRecorder:
    """The outcomes of one claimed chunk, written as they happen (see the module docstring)."""

    chunk_ids: Sequence[int]
    written: list[Outcome] = field(default_factory=list)  # perhaps committed asynchronously only
    unwritten: list[Outcome] = field(default_factory=list)
    first_error: Exception | None = None
    _renewed: float = field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        if self.first_error is not None:
            logger.error(
                "database error in chunk=%s..%s before sending: %s: %s",
                min(self.chunk_ids),
                max(self.chunk_ids),
                type(self.first_error).__name__,
                self.first_error,
            )

    @property
    def broken(self) -> bool:
        """The database went away: send nothing more that could not be recorded."""
        return self.first_error is not None

    def record(self, outcome: Outcome) -> None:
        if self.broken:
            self.unwritten.append(outcome)
            return
        try:
            _write(outcome)
        except DatabaseError as exc:
            self.first_error = exc
            self.unwritten.append(outcome)
            logger.error(
                "outcome not written, delivery=%s chunk=%s..%s: %s: %s; keeping it to write again",
                outcome.delivery_id,
                min(self.chunk_ids),
                max(self.chunk_ids),
                type(exc).__name__,
                exc,
            )
        else:
            self.written.append(outcome)

    def make_durable(self) -> None:
        """The chunk is done: wait until its outcomes are on disk (one synchronous commit; see the
        module docstring). Needed only when they were committed asynchronously."""
        if self.broken or not self.written:
            return
        try:
            with transaction.atomic(), db_connection.cursor() as cursor:
                cursor.execute("SET LOCAL synchronous_commit TO on")
                cursor.execute(_TOUCH, [self.written[-1].delivery_id])
        except DatabaseError as exc:
            self.first_error = exc
            logger.error(
                "outcomes not made durable, chunk=%s..%s: %s: %s",
                min(self.chunk_ids),
                max(self.chunk_ids),
                type(exc).__name__,
                exc,
            )

    def renew_lease(self) -> None:
        """Extend the claim of what is still to be sent, at most every quarter lease (one UPDATE).
        Rows of the chunk already finished are no longer SENDING, so the filter leaves them alone."""
        if self.broken or time.monotonic() - self._renewed < lease_seconds() / 4:
            return
        try:
            Delivery.objects.filter(id__in=self.chunk_ids, status=Delivery.Status.SENDING).update(
                claimed_at=timezone.now()
            )
        except DatabaseError as exc:
            self.first_error = exc
            logger.error("lease not renewed, chunk=%s..%s: %s", min(self.chunk_ids), max(self.chunk_ids), exc)
        self._renewed = time.monotonic()

    def postpone(self, delivery_ids: Sequence[int], *, until: datetime, reason: str) -> bool:
        """deliveries_postpone for the rest of the chunk; False (and broken) if the database failed."""
        try:
            deliveries_postpone(delivery_ids=delivery_ids, until=until, reason=reason)
        except DatabaseError as exc:
            self.first_error = exc
            logger.error("postpone failed, chunk=%s..%s: %s", min(self.chunk_ids), max(self.chunk_ids), exc)
            return False
        return True

    def recover(self, *, release: Sequence[int], sleep: Callable[[float], None] = time.sleep) -> None:
        """Write the kept outcomes and hand back the deliveries never attempted (`release`), after
        reconnecting. Retries with backoff for at most half a lease (the claim was renewed at most a
        quarter lease ago, so the sweeper cannot have taken these rows back meanwhile); then raises
        the last database error, and the sweeper takes over."""
        budget = lease_seconds() / 2
        started, delay = time.monotonic(), 0.25
        while True:
            db_connection.close()  # the broken connection is not reused; the next query reconnects
            try:
                with transaction.atomic():
                    # The SENT marks written before too: a crash may have lost their asynchronous
                    # commits, and writing one again that survived changes nothing (see _write). Not
                    # the earlier deferrals: another worker may be retrying those by now, and a lost
                    # one only leaves its row to the sweeper.
                    sent_before = [o for o in self.written if o.status == Delivery.Status.SENT]
                    for outcome in [*sent_before, *self.unwritten]:
                        _write(outcome)
                    _release(release)
            except DatabaseError as exc:
                if time.monotonic() - started + delay > budget:
                    logger.error(
                        "gave up writing %s outcome(s) of chunk=%s..%s after %.0f s; the sweeper will "
                        "re-drive them, and those already sent will be sent again. First error: %s",
                        len(self.unwritten),
                        min(self.chunk_ids),
                        max(self.chunk_ids),
                        time.monotonic() - started,
                        self.first_error,
                    )
                    raise exc from self.first_error
                sleep(delay)
                delay = min(delay * 2, 4.0)
                continue
            logger.warning(
                "database back: wrote %s kept outcome(s) (and %s written before, again) and released %s "
                "of chunk=%s..%s",
                len(self.unwritten),
                len(self.written),
                len(release),
                min(self.chunk_ids),
                max(self.chunk_ids),
            )
            self.written += self.unwritten
            self.unwritten.clear()
            return


def lease_seconds() -> float:
    return settings.NEWSLETTER_CLAIM_LEASE.total_seconds()


def _write(outcome: Outcome) -> None:
    if outcome.status == Delivery.Status.SENT:
        # The one write per email, so plain SQL: QuerySet.update() costs as much again in Python. A
        # row the sweeper already handed back (PENDING) is still marked: it did go out.
        with _mark_cursor() as cursor:
            cursor.execute(
                _MARK_SENT,
                [
                    Delivery.Status.SENT,
                    timezone.now(),
                    outcome.message_id[:255],
                    outcome.kind,
                    outcome.delivery_id,
                    Delivery.Status.SENDING,
                    Delivery.Status.PENDING,
                ],
            )
        return
    changes: dict = {"status": outcome.status, "last_error": outcome.error[:2000]}
    if outcome.queued_at is not None:
        changes["queued_at"] = outcome.queued_at
    Delivery.objects.filter(pk=outcome.delivery_id, status=Delivery.Status.SENDING).update(**changes)


class _PreparingCursor(psycopg.Cursor):
    """A psycopg cursor that binds on the server and prepares each statement on its connection the
    first time (psycopg keeps the name; later executions send only the parameters)."""

    def execute(
        self,
        query: Query,
        params: Params | None = None,
        *,
        prepare: bool | None = None,
        binary: bool | None = None,
    ) -> _PreparingCursor:
        return super().execute(query, params, prepare=True, binary=binary)


def _mark_cursor() -> CursorWrapper:
    """The cursor of the SENT mark. On PostgreSQL (NEWSLETTER_PREPARED_OUTCOMES) a server-side prepared
    statement: parsing and planning the UPDATE again for every email was a third of its database CPU
    in a real chunk (two thirds back to back), and Django's client-side binding half of its Python.
    Still inside Django's cursor wrapper, so errors arrive as django.db.DatabaseError (what
    OutcomeRecorder catches), transactions are Django's and execute wrappers see it. Where Django logs
    queries (DEBUG, tests that count them) it takes Django's own cursor, whose log shows the statement
    with its values."""
    # The wrapper itself, not the `connection` proxy: each attribute of that is a lookup in a
    # context-local, five per email.
    connection = connections[DEFAULT_DB_ALIAS]
    if not (
        settings.NEWSLETTER_PREPARED_OUTCOMES
        and connection.vendor == "postgresql"
        and not connection.queries_logged
    ):
        return connection.cursor()
    connection.ensure_connection()
    raw = connection.connection
    # Django turns psycopg's prepared statements off (prepare_threshold None, for poolers), which
    # would ignore prepare=True; a threshold no query reaches prepares only what asks for it. Django's
    # own cursors bind on the client and are never prepared.
    if raw.prepare_threshold is None:
        raw.prepare_threshold = sys.maxsize
    return connection.make_cursor(_PreparingCursor(raw))


def deliveries_postpone(*, delivery_ids: Sequence[int], until: datetime, reason: str) -> None:
    """Claimed but never attempted (the send rate, the warm-up cap): back to PENDING, due at `until`
    (the sweeper counts from there). Waiting is not a failed attempt, so the claim's is handed back."""
    Delivery.objects.filter(id__in=delivery_ids, status=Delivery.Status.SENDING).update(
        status=Delivery.Status.PENDING, queued_at=until, last_error=reason, attempts=F("attempts") - 1
    )


def _release(delivery_ids: Sequence[int]) -> None:
    """Never attempted: back to PENDING, due again at once (the task retries, or the sweeper)."""
    Delivery.objects.filter(id__in=delivery_ids, status=Delivery.Status.SENDING).update(
        status=Delivery.Status.PENDING,
        queued_at=timezone.now(),
        last_error="not attempted: database unavailable",
    )


@contextmanager
def outcome_writes(recorder: OutcomeRecorder) -> Iterator[None]:
    """The session setting for the outcome writes of one chunk (NEWSLETTER_ASYNC_COMMIT_OUTCOMES);
    at the end, the recorder makes what it wrote asynchronously durable."""
    if not (settings.NEWSLETTER_ASYNC_COMMIT_OUTCOMES and db_connection.vendor == "postgresql"):
        yield
        return
    with db_connection.cursor() as cursor:
        cursor.execute("SET synchronous_commit TO off")
    try:
        yield
        recorder.make_durable()
    finally:
        try:
            with db_connection.cursor() as cursor:
                cursor.execute("RESET synchronous_commit")
        except DatabaseError:
            # The connection died (the error that matters was logged where it happened). A new
            # connection starts with the server's default, so there is nothing to reset.
            db_connection.close()

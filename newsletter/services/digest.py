"""Step 2 of the pipeline: rank. Which papers each delivery carries: a chunk's deliveries are ranked
together (newsletter.services.ranking, as matrices) and their picks recorded before any email is sent,
so a retry sends the same digest and a paper never reaches a subscriber twice."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.conf import settings
from django.core.cache import cache
from django.db import connection as db_connection
from django.db.models import Exists, OuterRef

from newsletter.models import Delivery, DeliveryItem
from newsletter.selectors import papers_already_sent, picks_recorded, profiles_build
from newsletter.services.candidates import CandidatePool, Pick
from newsletter.services.ranking import rank
from papers.models import Paper
from papers.selectors import papers_candidates, topic_names


@dataclass
class DeliveryPicks:
    """A delivery and the papers recorded for it, best first (none: nothing new for this reader)."""

    delivery: Delivery
    picks: list[Pick]


def digests_build(*, deliveries: Sequence[Delivery], now: datetime) -> list[DeliveryPicks]:
    """The papers of each delivery. Deliveries built before (a retry, a re-driven delivery) keep
    what was recorded; the others are ranked together and their picks recorded before any email is
    sent, so a resend is the same digest and a paper is never given to a subscriber twice."""
    recorded = picks_recorded(delivery_ids=[d.pk for d in deliveries])
    fresh = [d for d in deliveries if d.pk not in recorded]
    if fresh:
        recorded.update(_rank_and_record(fresh, now))
    return [DeliveryPicks(delivery=d, picks=recorded.get(d.pk, [])) for d in deliveries]


def _rank_and_record(deliveries: Sequence[Delivery], now: datetime) -> dict[int, list[Pick]]:
    """Rank and record; returns what was recorded (a pick that lost a conflict is not)."""
    since = min(d.window_start for d in deliveries)
    until = max(d.window_end for d in deliveries)
    papers = papers_candidates(since=since, until=until, limit=settings.NEWSLETTER_MAX_CANDIDATES)
    pool = CandidatePool(papers, topic_names(), now)
    subscriber_ids = [d.subscriber_id for d in deliveries]
    sent = papers_already_sent(subscriber_ids=subscriber_ids, paper_ids=[p.id for p in papers])
    profiles = profiles_build(
        subscribers=[d.subscriber for d in deliveries],
        since=[d.window_start for d in deliveries],
        known=papers,
    )
    ranked = rank(profiles=profiles, pool=pool, already_sent=sent)
    # The ids once per delivery, not per pick (Model.pk is a property): 2,000 picks a chunk.
    by_delivery = [(d.pk, d.subscriber_id, picks) for d, picks in zip(deliveries, ranked, strict=True)]
    stored = picks_record(
        [
            (delivery_id, subscriber_id, pick.paper.id, position, pick.score, pick.reasons)
            for delivery_id, subscriber_id, picks in by_delivery
            for position, pick in enumerate(picks, start=1)
        ]
    )
    if stored is None:  # the portable path cannot tell: read back
        return picks_recorded(delivery_ids=[d.pk for d in deliveries])
    # The ranked picks the database kept, in digest order: what reading them back would give.
    kept = {
        delivery_id: [pick for pick in picks if (delivery_id, pick.paper.id) in stored]
        for delivery_id, _, picks in by_delivery
    }
    return {delivery_id: picks for delivery_id, picks in kept.items() if picks}


# delivery, subscriber, paper, position, score, reasons
PickRow = tuple[int, int, int, int, float, Sequence[str]]

# DeliveryItem has no foreign keys in the database (their per-row triggers cost a third of this
# statement): the joins store only rows whose delivery and paper exist, two primary-key look-ups a row
# without the triggers' row locks. A delete committed while the statement runs can still leave a row
# pointing at nothing; the sweeper deletes it (picks_orphans_delete).
_INSERT_PICKS = (
    f"INSERT INTO {DeliveryItem._meta.db_table} "
    "(delivery_id, subscriber_id, paper_id, position, score, reasons) "
    "SELECT d.id, (r->>1)::bigint, p.id, (r->>3)::smallint, (r->>4)::float8, r->5 "
    "FROM jsonb_array_elements(%s::jsonb) AS r "
    f"JOIN {Delivery._meta.db_table} AS d ON d.id = (r->>0)::bigint "
    f"JOIN {Paper._meta.db_table} AS p ON p.id = (r->>2)::bigint "
    "ON CONFLICT DO NOTHING RETURNING delivery_id, paper_id"
)


def picks_record(rows: Sequence[PickRow]) -> set[tuple[int, int]] | None:
    """Store the picks of a chunk in one statement. A paper another delivery of the same subscriber
    recorded meanwhile conflicts and is dropped, which is exactly "never twice". Returns the
    (delivery, paper) pairs stored, or None where the database cannot say (then read them back)."""
    if not rows:
        return set()
    if db_connection.vendor != "postgresql":
        picks_record_portable(rows)
        return None
    # One row per paper per digest is the largest write of a chunk. Sent as one JSON document it is
    # one parameter, encoded by json's C encoder and decoded by PostgreSQL's: a sixth of the worker
    # CPU of column arrays (psycopg adapts those element by element), and the same rows.
    with db_connection.cursor() as cursor:  # one statement: atomic by itself
        cursor.execute(_INSERT_PICKS, [json.dumps(rows)])
        return {(delivery_id, paper_id) for delivery_id, paper_id in cursor.fetchall()}


def picks_record_portable(rows: Sequence[PickRow]) -> None:
    """picks_record through the ORM, for databases other than PostgreSQL (SQLite for a try-out)."""
    deliveries = set(Delivery.objects.filter(pk__in={row[0] for row in rows}).values_list("pk", flat=True))
    papers = set(Paper.objects.filter(pk__in={row[2] for row in rows}).values_list("pk", flat=True))
    rows = [row for row in rows if row[0] in deliveries and row[2] in papers]  # as the joins above
    DeliveryItem.objects.bulk_create(
        [
            DeliveryItem(
                delivery_id=delivery_id,
                subscriber_id=subscriber_id,
                paper_id=paper_id,
                position=position,
                score=score,
                reasons=reasons,
            )
            for delivery_id, subscriber_id, paper_id, position, score, reasons in rows
        ],
        ignore_conflicts=True,
    )


# The sweeper's mark: the item ids its next run checks, (top id of the run before last, top id of
# the last run].
_ORPHANS_MARK = "newsletter:picks-orphans-mark"
# Without a mark (first run, cache emptied): the latest rows, about 4,000 digests.
_ORPHANS_FIRST_ROWS = 50_000


def picks_orphans_delete() -> int:
    """Delete the picks whose delivery or paper is gone; returns how many (called by the sweeper).

    Such a row can only come from a delete committed while a picks INSERT ran (DeliveryItem has no
    foreign keys in the database; picks_record joins both): an admin deleting a paper, or an erasure
    (subscriber_delete) during a chunk. So each row is checked once, one run after it was stored:
    the rows up to the top id of the last run and above the one before (ids are taken before an
    INSERT commits, so a row below the last run's top could have been invisible to it, not to the
    next: an INSERT takes well under the 30 s between runs). About 1 µs of PostgreSQL a row (two
    primary-key look-ups; docs/benchmark/lever-pg.md), against 6 µs for the two foreign keys'
    triggers; nothing when no picks were stored.
    """
    top = DeliveryItem.objects.order_by("-id").values_list("id", flat=True).first()
    if top is None:
        return 0
    first = top - _ORPHANS_FIRST_ROWS
    mark = cache.get(_ORPHANS_MARK)
    if mark is not None and mark[1] > top:  # the table was emptied and its ids restarted since
        mark = None
    older, last = mark or (first, top)
    gone = ~Exists(Delivery.objects.filter(pk=OuterRef("delivery_id"))) | ~Exists(
        Paper.objects.filter(pk=OuterRef("paper_id"))
    )
    deleted, _ = DeliveryItem.objects.filter(gone, id__gt=older, id__lte=last).delete()
    # Without a mark, the same rows again next time: some may not have been committed yet.
    cache.set(_ORPHANS_MARK, (last if mark is not None else older, top), timeout=None)
    return deleted

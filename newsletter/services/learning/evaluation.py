"""eval_ranking: how well the production digest builder finds papers a reader would call similar.

Each listing file is a "similar papers" list of its first paper (the anchor). A simulated reader
gets `rounds` digests of EVAL_LIMIT papers; precision is the share of a digest that is in the list.
Who the reader is (`Protocol`):

- by default their interests are the anchor's exact title (the paper is in the database, so the
  interest names it);
- `interests`: a file name -> interest text mapping replaces the title (a phrase a researcher types);
- `topics`: file name -> topic slugs; without `interests` the reader has these topics only;
- `without_anchor`: the anchor is not ingested (the reader read it elsewhere).
- `library`: N: the reader imports the first N papers of the list after the anchor as their library
  (pasted titles, through learning.library as the manage page does: papers we have become likes)
  and tells nothing else unless `interests` or `topics` say so. Those N papers are neither shown
  (a library paper is never picked) nor counted: precision is over the rest of the list.

After each digest the reader marks papers (`feedback`): `full` marks every paper shown, list members
"More like this" and the others "Not for me"; `likes` only likes the list members shown; `sparse`
likes at most the first SPARSE_LIKES list members of the digest. A digest shorter than EVAL_LIMIT while
at least EVAL_LIMIT unseen papers remained is counted in the list's `short_digests` (its round numbers).

Nothing here is a model of its own: the files go through ingest, the readers are Subscriber rows,
each digest is built by `digests_build` (candidates, profiles, `rank`, recorded picks: so papers
shown are never shown again), the marks go through `feedback_record` and the models are fitted by
`reader_model_fit`, the body of the task that feedback queues. All of it runs in one transaction
that is rolled back at the end: the database is left as it was, no subscriber or paper remains, and
the fit tasks queued on commit are never sent. The pool is exactly the files' papers: they get one
ingestion instant of their own and each digest's window holds only that instant. The baselines
(learning.baselines) run on the same readers, pool and feedback.

A new kind of reader is a field of `Protocol` and a line in `_reader` (and `_subscriber_create`
for what the reader tells the service).
"""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.db import transaction
from django.utils import timezone

from newsletter.models import Delivery, Feedback, Subscriber
from newsletter.services.digest import digests_build
from newsletter.services.learning.baselines import (
    EVAL_LIMIT,
    RANDOM_SEED,
    baselines_measure,
)
from newsletter.services.learning.feedback import feedback_record
from newsletter.services.learning.library import library_import
from newsletter.services.learning.library_formats import library_parse
from newsletter.services.learning.reader_model import reader_model_fit
from papers.models import Paper, Topic
from papers.services.ingest import papers_ingest_records
from papers.services.parsers import parse
from papers.services.records import PaperRecord, ParseError, title_key

__all__ = ["EVAL_LIMIT", "FEEDBACK_MODES", "RANDOM_SEED", "EvaluationError", "Protocol", "ranking_evaluate"]

FEEDBACK_MODES = ("full", "likes", "sparse")
SPARSE_LIKES = 2  # `sparse`: likes per digest at most
# The files' papers are stamped this far in the future: no real paper shares their instant.
POOL_OFFSET = timedelta(days=3650)


class EvaluationError(ValueError):
    """Input that cannot be evaluated (an unreadable list, a list of one paper, a reader file
    without an entry for a list, an unknown topic)."""


@dataclass(frozen=True)
class Listing:
    file: str
    keys: list[str]  # title keys, anchor first, each once
    records: dict[str, PaperRecord]

    @property
    def anchor(self) -> str:
        return self.records[self.keys[0]].title


@dataclass(frozen=True)
class Protocol:
    interests: Mapping[str, str] | None = None  # file name -> interest text
    topics: Mapping[str, Sequence[str]] | None = None  # file name -> topic slugs
    without_anchor: bool = False
    feedback: str = "full"
    library: int = 0  # papers of each list the reader imports as their library

    def as_dict(self) -> dict:
        return {
            "interests": "file" if self.interests is not None else "anchor title",
            "topics": self.topics is not None,
            "without_anchor": self.without_anchor,
            "feedback": self.feedback,
            "library": self.library,
        }


@dataclass(frozen=True)
class Reader:
    """What one simulated reader tells the service."""

    interests: str
    topics: tuple[str, ...] = ()
    library: tuple[str, ...] = ()  # title keys of the listing's papers they import


@dataclass
class Evaluation:
    # {"file", "anchor", "reader", "precision": [...], "short_digests": [...], "baselines": {...}}
    lists: list[dict] = field(default_factory=list)
    mean: list[float] = field(default_factory=list)
    baselines: dict[str, list[float]] = field(default_factory=dict)
    protocol: dict = field(default_factory=dict)
    pool: int = 0  # papers in the pool

    def as_dict(self) -> dict:
        return {
            "lists": self.lists,
            "mean": self.mean,
            "baselines": self.baselines,
            "protocol": self.protocol,
            "pool": self.pool,
        }


def listing_read(*, path: Path) -> Listing:
    try:
        records = parse(path.read_bytes()).records
    except (OSError, ParseError) as exc:
        raise EvaluationError(f"{path}: {exc}") from exc
    by_key: dict[str, PaperRecord] = {}
    for record in records:
        by_key.setdefault(title_key(record.title), record)
    if len(by_key) < 2:
        raise EvaluationError(f"{path}: a list needs its anchor and at least one similar paper")
    return Listing(file=path.name, keys=list(by_key), records=by_key)


def feedback_marks(*, shown: Sequence, relevant: set, mode: str) -> dict:
    """The reader's marks on one digest, in `mode`: {paper: True for a like, False for a dismissal}."""
    if mode == "full":
        return {paper: paper in relevant for paper in shown}
    liked = [paper for paper in shown if paper in relevant]
    return dict.fromkeys(liked[:SPARSE_LIKES] if mode == "sparse" else liked, True)


def ranking_evaluate(*, paths: Sequence[Path], rounds: int, protocol: Protocol | None = None) -> Evaluation:
    protocol = protocol or Protocol()
    if protocol.feedback not in FEEDBACK_MODES:
        raise EvaluationError(f"unknown feedback {protocol.feedback!r}; expected one of {FEEDBACK_MODES}")
    listings = [listing_read(path=path) for path in paths]
    readers = [_reader(listing, protocol) for listing in listings]
    with transaction.atomic():
        result = _production(listings, readers, rounds, protocol)
        topic_texts = {t.slug: f"{t.name}. {t.description} {t.keywords}" for t in Topic.objects.all()}
        transaction.set_rollback(True)
    pool = _pool(listings, protocol.without_anchor)
    per_list = baselines_measure(
        pool=pool,
        queries=[_query(r, topic_texts, pool) for r in readers],
        excluded=[
            {listing.keys[0], *reader.library} for listing, reader in zip(listings, readers, strict=True)
        ],
        relevant=[_relevant(listing, reader) for listing, reader in zip(listings, readers, strict=True)],
        rounds=rounds,
        marker=lambda shown, relevant: feedback_marks(shown=shown, relevant=relevant, mode=protocol.feedback),
    )
    for row, baselines in zip(result.lists, per_list, strict=True):
        row["baselines"] = baselines
    result.baselines = {name: _mean([b[name] for b in per_list]) for name in per_list[0]}
    result.protocol = protocol.as_dict()
    return result


def _query(reader: Reader, topic_texts: Mapping[str, str], pool: Mapping[str, PaperRecord]) -> str:
    """The baselines' query: what the reader said, their topics' text, or their library's papers."""
    said = [reader.interests, *(topic_texts[s] for s in reader.topics)]
    said += [f"{pool[k].title} {pool[k].abstract}" for k in reader.library]
    return " ".join(part for part in said if part)


def _relevant(listing: Listing, reader: Reader) -> set[str]:
    return set(listing.keys[1:]) - set(reader.library)


def _reader(listing: Listing, protocol: Protocol) -> Reader:
    library: tuple[str, ...] = ()
    if protocol.library:
        if len(listing.keys) < protocol.library + 2:
            raise EvaluationError(
                f"{listing.file}: --library {protocol.library} leaves no paper of the list to find"
            )
        library = tuple(listing.keys[1 : protocol.library + 1])
    reader = _reader_said(listing, protocol)
    return dataclasses.replace(reader, library=library) if library else reader


def _reader_said(listing: Listing, protocol: Protocol) -> Reader:
    topics: tuple[str, ...] = ()
    if protocol.topics is not None:
        if listing.file not in protocol.topics:
            raise EvaluationError(f"the topics file has no entry for {listing.file}")
        topics = tuple(protocol.topics[listing.file])
    if protocol.interests is not None:
        if listing.file not in protocol.interests:
            raise EvaluationError(f"the interests file has no entry for {listing.file}")
        return Reader(interests=protocol.interests[listing.file], topics=topics)
    return Reader(interests="" if topics or protocol.library else listing.anchor, topics=topics)


def _pool(listings: list[Listing], without_anchor: bool) -> dict[str, PaperRecord]:
    """Every paper of the files once; without the anchors when they are not ingested (an anchor that
    is also a member of another list stays: that list needs it)."""
    members = {key for listing in listings for key in listing.keys[1:]}
    pool: dict[str, PaperRecord] = {}
    for listing in listings:
        for key, record in listing.records.items():
            if without_anchor and key == listing.keys[0] and key not in members:
                continue
            pool.setdefault(key, record)
    return pool


def _production(
    listings: list[Listing], readers: list[Reader], rounds: int, protocol: Protocol
) -> Evaluation:
    pool = _pool(listings, protocol.without_anchor)
    if protocol.without_anchor:
        # A copy already in the database would still be named by a title interest.
        anchors = [listing.keys[0] for listing in listings if listing.keys[0] not in pool]
        Paper.objects.filter(title_key__in=anchors).delete()
    report = papers_ingest_records(
        records=((listing.file, r) for listing in listings for r in _own(listing, pool))
    )
    if report.errors:
        raise EvaluationError("; ".join(f"{name}: {why}" for name, why in report.errors))
    ids = dict(Paper.objects.filter(title_key__in=list(pool)).values_list("title_key", "id"))
    stamp = timezone.now() + POOL_OFFSET
    Paper.objects.filter(id__in=ids.values()).update(ingested_at=stamp)
    subscribers = [_subscriber_create(reader) for reader in readers]
    for subscriber, reader, listing in zip(subscribers, readers, listings, strict=True):
        if reader.library:
            _library_import(subscriber, [listing.records[k].title for k in reader.library])
    relevant = [
        {ids[k] for k in _relevant(listing, reader)}
        for listing, reader in zip(listings, readers, strict=True)
    ]
    unseen = [
        set(ids.values()) - {ids.get(listing.keys[0])} - {ids[k] for k in reader.library}
        for listing, reader in zip(listings, readers, strict=True)
    ]
    precision: list[list[float]] = [[] for _ in listings]
    short: list[list[int]] = [[] for _ in listings]
    for number in range(1, rounds + 1):
        deliveries = [
            Delivery.objects.create(
                subscriber=subscriber,
                period=f"eval-{number}",
                scheduled_for=stamp,
                window_start=stamp - timedelta(seconds=1),
                window_end=stamp,
            )
            for subscriber in subscribers
        ]
        for index, content in enumerate(digests_build(deliveries=deliveries, now=stamp)):
            shown = [pick.paper.id for pick in content.picks]
            precision[index].append(len(relevant[index].intersection(shown)) / EVAL_LIMIT)
            if len(shown) < EVAL_LIMIT and len(unseen[index]) >= EVAL_LIMIT:
                short[index].append(number)
            unseen[index].difference_update(shown)
            marks = feedback_marks(shown=shown, relevant=relevant[index], mode=protocol.feedback)
            for paper_id, liked in marks.items():
                choice = Feedback.Choice.MORE if liked else Feedback.Choice.LESS
                feedback_record(subscriber=subscribers[index], paper_id=paper_id, choice=choice)
        for subscriber in subscribers:
            reader_model_fit(subscriber_id=subscriber.pk)
    return Evaluation(
        lists=[
            {
                "file": listing.file,
                "anchor": listing.anchor,
                "reader": {
                    "interests": reader.interests,
                    "topics": list(reader.topics),
                    "library": [listing.records[k].title for k in reader.library],
                },
                "precision": values,
                "short_digests": rounds_short,
            }
            for listing, reader, values, rounds_short in zip(listings, readers, precision, short, strict=True)
        ],
        mean=_mean(precision),
        pool=len(ids),
    )


def _own(listing: Listing, pool: dict[str, PaperRecord]) -> list[PaperRecord]:
    return [record for key, record in listing.records.items() if key in pool]


def _subscriber_create(reader: Reader) -> Subscriber:
    subscriber = Subscriber.objects.create(
        email=f"eval-{secrets.token_hex(8)}@eval.invalid",
        status=Subscriber.Status.ACTIVE,
        frequency=Subscriber.Frequency.OFF,
        interests=reader.interests,
        papers_per_digest=EVAL_LIMIT,
    )
    if reader.topics:
        topics = list(Topic.objects.filter(slug__in=reader.topics))
        unknown = set(reader.topics) - {t.slug for t in topics}
        if unknown:
            raise EvaluationError(f"unknown topic(s): {', '.join(sorted(unknown))}")
        subscriber.topics.set(topics)
    return subscriber


def _library_import(subscriber: Subscriber, titles: list[str]) -> None:
    """The reader pastes the titles on the manage page; the fit is the task that import queues."""
    items = library_parse(data="\n".join(titles)).items
    library_import(subscriber=subscriber, items=items)
    reader_model_fit(subscriber_id=subscriber.pk)


def _mean(rows: list[list[float]]) -> list[float]:
    return [round(float(v), 4) for v in np.mean(np.array(rows), axis=0)]

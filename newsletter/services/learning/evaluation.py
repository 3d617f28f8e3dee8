"""eval_ranking: how well the production digest builder finds papers a reader would call similar.

Each listing file is a "similar papers" list of its first paper (the anchor). A simulated reader
whose interests are the anchor's title gets `rounds` digests of EVAL_LIMIT papers; after each, they
mark every paper shown: list members "More like this", the others "Not for me". Precision is the
share of a digest that is in the list.

Nothing here is a model of its own: the files go through ingest, the readers are Subscriber rows,
each digest is built by `digests_build` (candidates, profiles, `rank`, recorded picks: so papers
shown are never shown again), the marks go through `feedback_record` and the models are fitted by
`reader_model_fit`, the body of the task that feedback queues. All of it runs in one transaction
that is rolled back at the end: the database is left as it was, no subscriber or paper remains, and
the fit tasks queued on commit are never sent. The pool is exactly the files' papers: they get one
ingestion instant of their own and each digest's window holds only that instant.

Two baselines are measured in the same run on the same pool: scikit-learn's TfidfVectorizer
(the anchor's title against title + abstract, English stop words, sublinear tf) and random order
with a fixed seed. Neither learns: their later rounds are the next papers of the same order.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path

import numpy as np
from django.db import transaction
from django.utils import timezone
from sklearn.feature_extraction.text import TfidfVectorizer

from newsletter.models import Delivery, Feedback, Subscriber
from newsletter.services.digest import digests_build
from newsletter.services.learning.feedback import feedback_record
from newsletter.services.learning.reader_model import reader_model_fit
from papers.models import Paper
from papers.services.ingest import papers_ingest_path
from papers.services.parsers import parse
from papers.services.records import PaperRecord, ParseError, title_key

EVAL_LIMIT = 10
RANDOM_SEED = 0
# The files' papers are stamped this far in the future: no real paper shares their instant.
POOL_OFFSET = timedelta(days=3650)


class EvaluationError(ValueError):
    """A listing file that cannot be evaluated (unreadable, or fewer than two papers)."""


@dataclass(frozen=True)
class Listing:
    file: str
    keys: list[str]  # title keys, anchor first, each once
    records: dict[str, PaperRecord]

    @property
    def anchor(self) -> str:
        return self.records[self.keys[0]].title


@dataclass
class Evaluation:
    lists: list[dict] = field(default_factory=list)  # {"file", "anchor", "precision": [...]}
    mean: list[float] = field(default_factory=list)
    baselines: dict[str, list[float]] = field(default_factory=dict)

    def as_dict(self) -> dict:
        return {"lists": self.lists, "mean": self.mean, "baselines": self.baselines}


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


def ranking_evaluate(*, paths: Sequence[Path], rounds: int) -> Evaluation:
    listings = [listing_read(path=path) for path in paths]
    with transaction.atomic():
        result = _production(paths, listings, rounds)
        transaction.set_rollback(True)
    result.baselines = _baselines(listings, rounds)
    return result


def _production(paths: Sequence[Path], listings: list[Listing], rounds: int) -> Evaluation:
    for path in paths:
        report = papers_ingest_path(path=path)
        if report.errors:
            raise EvaluationError("; ".join(f"{name}: {why}" for name, why in report.errors))
    keys = {key for listing in listings for key in listing.keys}
    ids = dict(Paper.objects.filter(title_key__in=keys).values_list("title_key", "id"))
    stamp = timezone.now() + POOL_OFFSET
    Paper.objects.filter(id__in=ids.values()).update(ingested_at=stamp)
    readers = [
        Subscriber.objects.create(
            email=f"eval-{secrets.token_hex(8)}@eval.invalid",
            status=Subscriber.Status.ACTIVE,
            frequency=Subscriber.Frequency.OFF,
            interests=listing.anchor,
            papers_per_digest=EVAL_LIMIT,
        )
        for listing in listings
    ]
    relevant = [{ids[k] for k in listing.keys[1:]} for listing in listings]
    precision: list[list[float]] = [[] for _ in listings]
    for number in range(1, rounds + 1):
        deliveries = [
            Delivery.objects.create(
                subscriber=reader,
                period=f"eval-{number}",
                scheduled_for=stamp,
                window_start=stamp - timedelta(seconds=1),
                window_end=stamp,
            )
            for reader in readers
        ]
        for index, content in enumerate(digests_build(deliveries=deliveries, now=stamp)):
            shown = [pick.paper.id for pick in content.picks]
            precision[index].append(len(relevant[index].intersection(shown)) / EVAL_LIMIT)
            for paper_id in shown:
                choice = Feedback.Choice.MORE if paper_id in relevant[index] else Feedback.Choice.LESS
                feedback_record(subscriber=readers[index], paper_id=paper_id, choice=choice)
        for reader in readers:
            reader_model_fit(subscriber_id=reader.pk)
    return Evaluation(
        lists=[
            {"file": listing.file, "anchor": listing.anchor, "precision": values}
            for listing, values in zip(listings, precision, strict=True)
        ],
        mean=_mean(precision),
    )


def _baselines(listings: list[Listing], rounds: int) -> dict[str, list[float]]:
    pool: dict[str, PaperRecord] = {}
    for listing in listings:
        pool.update({k: r for k, r in listing.records.items() if k not in pool})
    keys = list(pool)
    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True)
    documents = vectorizer.fit_transform([f"{r.title} {r.abstract}" for r in pool.values()])
    shuffler = random.Random(RANDOM_SEED)
    tfidf_rounds, random_rounds = [], []
    for listing in listings:
        others = [k for k in keys if k != listing.keys[0]]
        cosine = (vectorizer.transform([listing.anchor]) @ documents.T).toarray()[0]
        position = {k: i for i, k in enumerate(keys)}
        by_cosine = sorted(others, key=lambda k: (-cosine[position[k]], position[k]))
        shuffled = shuffler.sample(others, len(others))
        relevant = set(listing.keys[1:])
        tfidf_rounds.append(_round_precision(by_cosine, relevant, rounds))
        random_rounds.append(_round_precision(shuffled, relevant, rounds))
    return {"tfidf_title": _mean(tfidf_rounds), "random": _mean(random_rounds)}


def _round_precision(order: list[str], relevant: set[str], rounds: int) -> list[float]:
    return [
        len(relevant.intersection(order[r * EVAL_LIMIT : (r + 1) * EVAL_LIMIT])) / EVAL_LIMIT
        for r in range(rounds)
    ]


def _mean(rows: list[list[float]]) -> list[float]:
    return [round(float(v), 4) for v in np.mean(np.array(rows), axis=0)]

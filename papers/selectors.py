"""Reads of papers, topics and feeds. Each is one query (or two), never one per paper."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from django.db.models import DateTimeField, DurationField, ExpressionWrapper, F, Q, Value
from django.utils import timezone

from papers.models import Feed, Paper, PaperTopic, Topic


@dataclass(frozen=True)
class CandidatePaper:
    """What ranking and the digest need of a paper: plain values, no model instance."""

    id: int
    title: str
    abstract: str
    authors: list[str]
    url: str
    upvotes: int | None
    github_stars: int | None
    github_url: str
    ingested_at: datetime
    published_at: datetime | None
    # arXiv id ("2403.12345"), "hf:..." for a Hugging Face page without one, or None (listings).
    external_id: str | None
    topic_ids: tuple[int, ...]
    # PaperTopic.score of each topic in `topic_ids`: how strongly the paper belongs to it.
    topic_scores: tuple[float, ...]


# A candidate's `abstract` is Paper.abstract_clean, the text readers see (and ranking reads).
_CANDIDATE_FIELDS = (
    "id", "title", "abstract_clean", "authors", "url", "upvotes", "github_stars", "github_url",
    "ingested_at", "published_at", "external_id",
)  # fmt: skip


def papers_candidates(*, since: datetime, until: datetime | None = None, limit: int) -> list[CandidatePaper]:
    """Papers ingested after `since` (newest first, at most `limit`), with their topic ids: two queries."""
    queryset = Paper.objects.filter(ingested_at__gt=since)
    if until is not None:
        queryset = queryset.filter(ingested_at__lte=until)
    rows = list(queryset.order_by("-ingested_at", "-id").values_list(*_CANDIDATE_FIELDS)[:limit])
    return _with_topics(rows)


def papers_by_ids(*, ids: Sequence[int]) -> list[CandidatePaper]:
    rows = list(Paper.objects.filter(id__in_array=ids).values_list(*_CANDIDATE_FIELDS))
    return _with_topics(rows)


def _with_topics(rows: list[tuple]) -> list[CandidatePaper]:
    topics: dict[int, list[tuple[int, float]]] = defaultdict(list)
    paper_ids = [r[0] for r in rows]
    for paper_id, topic_id, score in PaperTopic.objects.filter(paper_id__in_array=paper_ids).values_list(
        "paper_id", "topic_id", "score"
    ):
        topics[paper_id].append((topic_id, score))
    papers = []
    for row in rows:
        pairs = sorted(topics[row[0]])
        papers.append(
            CandidatePaper(
                *row,
                topic_ids=tuple(t for t, _ in pairs),
                topic_scores=tuple(float(score) for _, score in pairs),
            )
        )
    return papers


def papers_named(*, title_keys: Sequence[str], ids: Sequence[int]) -> list[tuple[str, CandidatePaper]]:
    """(title key, paper) of the papers with these title keys or ids, in one query and without their
    topics: the papers interests name and the papers readers liked, which ranking only reads."""
    rows = Paper.objects.filter(Q(title_key__in_array=title_keys) | Q(id__in_array=ids)).values_list(
        "title_key", *_CANDIDATE_FIELDS
    )
    return [(key, CandidatePaper(*row, topic_ids=(), topic_scores=())) for key, *row in rows]


def topic_names() -> dict[int, str]:
    return dict(Topic.objects.values_list("id", "name"))


def topic_texts() -> dict[int, str]:
    """Each topic's name, description and keywords: the text a reader's interests are compared with."""
    return {
        topic_id: f"{name}. {description}. {keywords}"
        for topic_id, name, description, keywords in Topic.objects.values_list(
            "id", "name", "description", "keywords"
        )
    }


def feeds_due() -> list[int]:
    """Ids of enabled feeds never fetched or whose interval has passed."""
    interval = ExpressionWrapper(F("interval_minutes") * timedelta(minutes=1), output_field=DurationField())
    # The application clock, not the database's NOW(): feed_fetch() stamps last_fetched_at with it.
    now = Value(timezone.now(), output_field=DateTimeField())
    return list(
        Feed.objects.filter(enabled=True)
        .filter(Q(last_fetched_at__isnull=True) | Q(last_fetched_at__lte=now - interval))
        .values_list("id", flat=True)
    )


@dataclass(frozen=True)
class FeedStats:
    name: str
    enabled: bool
    last_fetched_at: datetime | None
    last_status: str

    @property
    def failed(self) -> bool:
        return self.last_status.startswith("error")  # papers.services.fetch writes "error: ..."


def stats_feeds() -> list[FeedStats]:
    """Every feed with its last fetch and what it answered (an error is kept in last_status)."""
    return [
        FeedStats(*row)
        for row in Feed.objects.order_by("name").values_list(
            "name", "enabled", "last_fetched_at", "last_status"
        )
    ]

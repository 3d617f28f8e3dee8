"""Turn parsed records into Paper rows: dedupe, merge richer records, tag topics.

Records are handled in batches: one transaction per batch, two lookup queries, one bulk insert,
one bulk update and one re-tagging per batch. A database error rolls the whole batch back, so a
failed ingest never leaves a half-written paper behind, and a re-run completes it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from django.db import IntegrityError, transaction
from django.utils import timezone

from papers.models import Paper, Topic
from papers.services.latex import latex_to_text
from papers.services.parsers import parse
from papers.services.records import SOURCE_ARXIV, PaperRecord, ParseError, Rejection, title_key
from papers.services.tagging import TopicModel, papers_retag, topic_model_build

logger = logging.getLogger(__name__)

BATCH_SIZE = 500
MAX_FILE_BYTES = 200 * 1024 * 1024


@dataclass
class IngestReport:
    """What one ingest run did. A record of a paper that this same run created (the same paper listed
    twice in the input, or in two of its files) is a duplicate, merged into that paper: counted
    apart, so that a first run on an empty database does not report "updated" papers."""

    created: int = 0
    duplicates: int = 0
    updated: int = 0
    unchanged: int = 0
    rejected: list[tuple[str, Rejection]] = field(default_factory=list)  # (input name, why)
    errors: list[tuple[str, str]] = field(default_factory=list)  # whole inputs that failed
    created_ids: set[int] = field(default_factory=set)  # how later batches know a duplicate

    def merge(self, other: IngestReport) -> None:
        self.created += other.created
        self.duplicates += other.duplicates
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.rejected += other.rejected
        self.errors += other.errors
        self.created_ids |= other.created_ids

    def counts(self) -> str:
        """ "281 created, 45 duplicates merged, 0 updated, 0 unchanged, 0 rejected" (duplicates only
        when there were any)."""
        duplicates = f"{self.duplicates} duplicates merged, " if self.duplicates else ""
        return (
            f"{self.created} created, {duplicates}{self.updated} updated, {self.unchanged} unchanged, "
            f"{len(self.rejected)} rejected"
        )


_TEXT_FIELDS = {"title", "abstract"}


def _new_paper(record: PaperRecord) -> Paper:
    return Paper(
        external_id=record.external_id,
        title=record.title,
        title_key=title_key(record.title),
        abstract=record.abstract,
        abstract_clean=latex_to_text(record.abstract),
        authors=list(record.authors),
        published_at=record.published_at,
        source=record.source,
        url=record.url,
        upvotes=record.upvotes,
        github_url=record.github_url,
        github_stars=record.github_stars,
    )


def _merge_record(paper: Paper, record: PaperRecord, *, retitle: bool) -> set[str]:
    """Fold a later record into a paper; return the names of the fields that changed.

    Every rule is order-independent, so re-reading any mix of inputs in any order converges and a
    second run changes nothing: ids and links fill blanks, the longer abstract and author list
    win, popularity counts only grow, and the earliest publication date wins (a listing's date is
    the day the paper was listed, never before it was published). The title changes only when
    `retitle` says the record is the authoritative version of this very paper.
    """
    changes: dict[str, object] = {}
    if record.external_id and not paper.external_id:
        changes["external_id"] = record.external_id
    if retitle:
        changes["title"] = record.title
        changes["title_key"] = title_key(record.title)
    if len(record.abstract) > len(paper.abstract):
        changes["abstract"] = record.abstract
        changes["abstract_clean"] = latex_to_text(record.abstract)
    if len(record.authors) > len(paper.authors):
        changes["authors"] = list(record.authors)
    if record.published_at and (paper.published_at is None or record.published_at < paper.published_at):
        changes["published_at"] = record.published_at
    for name in ("url", "github_url"):
        if getattr(record, name) and not getattr(paper, name):
            changes[name] = getattr(record, name)
    for name in ("upvotes", "github_stars"):
        value = getattr(record, name)
        if value is not None and (getattr(paper, name) is None or value > getattr(paper, name)):
            changes[name] = value
    for name, value in changes.items():
        setattr(paper, name, value)
    return set(changes)


class _Batch:
    """One batch of records resolved against the database and against each other."""

    def __init__(self, records: Sequence[tuple[str, PaperRecord]], created_before: set[int]) -> None:
        self.records = records
        self.created_before = created_before  # papers this run created in earlier batches
        ids = {r.external_id for _, r in records if r.external_id}
        keys = {title_key(r.title) for _, r in records}
        self.by_id: dict[str, Paper] = {p.external_id: p for p in Paper.objects.filter(external_id__in=ids)}
        self.by_key: dict[str, Paper] = {p.title_key: p for p in Paper.objects.filter(title_key__in=keys)}
        for paper in self.by_id.values():
            self.by_key.setdefault(paper.title_key, paper)
        self.new: list[Paper] = []
        self.changed: dict[int, tuple[Paper, set[str]]] = {}  # id(paper) -> fields
        self.report = IngestReport()

    def resolve(self) -> None:
        for _name, record in self.records:
            key = title_key(record.title)
            paper = self.by_id.get(record.external_id) if record.external_id else None
            # arXiv is the authority on titles (v2 may fix v1's); other sources copy arXiv's.
            retitle = (
                paper is not None
                and record.source == SOURCE_ARXIV
                and key != paper.title_key
                and not self._key_taken(key)
            )
            if paper is None:
                paper = self.by_key.get(key)
            if paper is None:
                paper = _new_paper(record)
                self.new.append(paper)
                self._index(paper)
                self.report.created += 1
                continue
            fields = _merge_record(paper, record, retitle=retitle)
            duplicate = paper.pk is None or paper.pk in self.created_before
            if not fields:
                if duplicate:
                    self.report.duplicates += 1
                else:
                    self.report.unchanged += 1
                continue
            self._index(paper)
            if duplicate:
                self.report.duplicates += 1
            else:
                self.report.updated += 1
            if paper.pk:
                _, known = self.changed.get(id(paper), (paper, set()))
                self.changed[id(paper)] = (paper, known | fields)

    def _index(self, paper: Paper) -> None:
        if paper.external_id:
            self.by_id[paper.external_id] = paper
        self.by_key[paper.title_key] = paper

    def _key_taken(self, key: str) -> bool:
        return key in self.by_key or Paper.objects.filter(title_key=key).exists()

    def save(self, model: TopicModel | None) -> None:
        created = Paper.objects.bulk_create(self.new)
        self.report.created_ids = {paper.pk for paper in created}
        updated = [paper for paper, _ in self.changed.values()]
        now = timezone.now()
        for paper in updated:
            paper.updated_at = now  # bulk_update bypasses auto_now
        if updated:
            fields = set().union(*(f for _, f in self.changed.values()))
            Paper.objects.bulk_update(updated, [*sorted(fields), "updated_at"])
        retag = created + [p for p, f in self.changed.values() if f & _TEXT_FIELDS]
        if model is not None and retag:
            papers_retag(papers=retag, model=model)


def papers_ingest_records(
    *,
    records: Iterable[tuple[str, PaperRecord]],
    model: TopicModel | None = None,
    on_progress: Callable[[int], None] | None = None,
    created_before: set[int] | None = None,
) -> IngestReport:
    """Ingest (input name, record) pairs in batches; each batch commits or rolls back whole.
    `created_before`: papers an earlier input of the same run created (their records are duplicates)."""
    if model is None:
        model = topic_model_build(topics=Topic.objects.all())
    report = IngestReport()
    batch: list[tuple[str, PaperRecord]] = []

    def flush() -> None:
        report.merge(_ingest_batch(batch, model, (created_before or set()) | report.created_ids))
        if on_progress:
            on_progress(len(batch))
        batch.clear()

    for item in records:
        batch.append(item)
        if len(batch) >= BATCH_SIZE:
            flush()
    if batch:
        flush()
    return report


def _ingest_batch(
    batch: Sequence[tuple[str, PaperRecord]], model: TopicModel, created_before: set[int]
) -> IngestReport:
    for attempt in range(3):
        try:
            with transaction.atomic():
                resolved = _Batch(batch, created_before)
                resolved.resolve()
                resolved.save(model)
                return resolved.report
        except IntegrityError:
            # Another ingest inserted one of these papers after our lookup: look again.
            if attempt == 2:
                raise
            logger.info("ingest batch raced with another writer; retrying")
    raise AssertionError("unreachable")


def papers_ingest_bytes(
    *,
    data: bytes,
    name: str,
    model: TopicModel | None = None,
    on_progress: Callable[[int], None] | None = None,
    created_before: set[int] | None = None,
) -> IngestReport:
    """Parse one input (any supported format) and ingest it; a parse error is reported, not raised."""
    try:
        parsed = parse(data)
    except ParseError as exc:
        report = IngestReport()
        report.errors.append((name, str(exc)))
        return report
    report = papers_ingest_records(
        records=((name, r) for r in parsed.records),
        model=model,
        on_progress=on_progress,
        created_before=created_before,
    )
    report.rejected = [(name, r) for r in parsed.rejections] + report.rejected
    return report


def papers_ingest_path(
    *,
    path: Path,
    model: TopicModel | None = None,
    on_progress: Callable[[int], None] | None = None,
    created_before: set[int] | None = None,
) -> IngestReport:
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ParseError(f"file is {size} bytes (limit {MAX_FILE_BYTES})")
        data = path.read_bytes()
    except (OSError, ParseError) as exc:
        report = IngestReport()
        report.errors.append(
            (str(path), exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc))
        )
        return report
    return papers_ingest_bytes(
        data=data, name=str(path), model=model, on_progress=on_progress, created_before=created_before
    )

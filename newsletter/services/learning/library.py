"""A reader's library: papers they have read, to start from (as zotero-arxiv-daily starts from a
Zotero library, but from a paste or an export instead of an API key).

Reading the input is learning.library_formats; this module matches its items against our papers
and stores them as LibraryEntry rows, in one transaction:

- a paper we have (same arXiv id, else same title key) becomes a "More like this" (Feedback), so
  the reader model and the reasons ("Like “…”, which you liked") treat it as any liked paper;
- an unknown entry with an abstract is a further positive of the reader model (reader_model_fit);
- an unknown entry with only a title joins the interest text ranking matches (library_titles);
- an unknown id alone is kept, and waits: we have no text for it.

The caller queues the model fit (newsletter.tasks.fit_reader_model) on commit: no fit per request.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from django.db import transaction

from newsletter.models import Feedback, LibraryEntry, Subscriber
from newsletter.services.learning.feedback import feedback_record_many
from newsletter.services.learning.library_formats import LibraryItem
from papers.models import Paper
from papers.services.records import title_key


@dataclass
class LibraryReport:
    liked: int = 0  # papers we have: now liked
    abstracts: int = 0  # unknown, with an abstract: positives of the model
    titles: int = 0  # unknown, title only: interest text
    waiting: int = 0  # unknown id alone
    skipped: int = 0  # already in the library, or twice in the input

    @property
    def added(self) -> int:
        return self.liked + self.abstracts + self.titles + self.waiting


def entry_key(item: LibraryItem) -> str:
    """What makes two entries the same paper within one library."""
    if item.arxiv_id:
        return f"arxiv:{item.arxiv_id}"
    if item.doi:
        return f"doi:{item.doi}"
    return f"title:{title_key(item.title)}"


def library_import(
    *, subscriber: Subscriber, items: Sequence[LibraryItem], replace: bool = False
) -> LibraryReport:
    """Add the items to the subscriber's library (with `replace`, instead of what it held)."""
    report = LibraryReport()
    with transaction.atomic():
        if replace:
            library_clear(subscriber=subscriber)
        by_arxiv, by_key = _papers_known(items)
        existing = LibraryEntry.objects.filter(subscriber=subscriber)
        keys = set(existing.values_list("key", flat=True))
        papers = set(existing.exclude(paper=None).values_list("paper_id", flat=True))
        entries = []
        for item in items:
            key = entry_key(item)
            paper = by_arxiv.get(item.arxiv_id) if item.arxiv_id else None
            paper = paper or (by_key.get(title_key(item.title)) if item.title else None)
            if key in keys or (paper is not None and paper.pk in papers):
                report.skipped += 1
                continue
            keys.add(key)
            entries.append(_entry(subscriber, key, item, paper))
            if paper is not None:
                papers.add(paper.pk)
                report.liked += 1
            elif item.abstract:
                report.abstracts += 1
            elif item.title:
                report.titles += 1
            else:
                report.waiting += 1
        LibraryEntry.objects.bulk_create(entries)
        feedback_record_many(
            subscriber=subscriber,
            paper_ids=[e.paper_id for e in entries if e.paper_id],
            choice=Feedback.Choice.MORE,
        )
    return report


def _papers_known(items: Iterable[LibraryItem]) -> tuple[dict[str, Paper], dict[str, Paper]]:
    """Our papers by arXiv id and by title key, for these items: two queries."""
    ids = {item.arxiv_id for item in items if item.arxiv_id}
    keys = {title_key(item.title) for item in items if item.title}
    fields = ("id", "title", "external_id", "title_key")
    by_arxiv = (
        {p.external_id: p for p in Paper.objects.filter(external_id__in=ids).only(*fields)} if ids else {}
    )
    by_key = {p.title_key: p for p in Paper.objects.filter(title_key__in=keys).only(*fields)} if keys else {}
    return by_arxiv, by_key


def _entry(subscriber: Subscriber, key: str, item: LibraryItem, paper: Paper | None) -> LibraryEntry:
    return LibraryEntry(
        subscriber=subscriber,
        key=key,
        arxiv_id=item.arxiv_id,
        doi=item.doi,
        # A paper we have speaks for itself: its own title and abstract are what the model reads.
        title=paper.title if paper is not None else item.title,
        abstract="" if paper is not None else item.abstract,
        paper=paper,
    )


def library_entry_remove(*, subscriber: Subscriber, entry_id: int) -> bool:
    """Remove one entry, and the like it made; False when the reader has no such entry."""
    with transaction.atomic():
        entry = LibraryEntry.objects.select_for_update().filter(subscriber=subscriber, pk=entry_id).first()
        if entry is None:
            return False
        _likes_forget(subscriber, [entry.paper_id] if entry.paper_id else [])
        entry.delete()
    return True


def library_clear(*, subscriber: Subscriber) -> int:
    """Remove the whole library and the likes it made; how many entries there were."""
    with transaction.atomic():
        entries = LibraryEntry.objects.filter(subscriber=subscriber)
        _likes_forget(subscriber, list(entries.exclude(paper=None).values_list("paper_id", flat=True)))
        deleted, _ = entries.delete()
    return deleted


def _likes_forget(subscriber: Subscriber, paper_ids: list[int]) -> None:
    # Only a like: a reader who later said "Not for me" about the paper keeps that choice.
    Feedback.objects.filter(
        subscriber=subscriber, paper_id__in=paper_ids, choice=Feedback.Choice.MORE
    ).delete()

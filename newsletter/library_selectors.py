"""Reads of the reader's library (services/learning/library.py): the manage page, the export, the
confirmation link's binding, and what ranking and the reader model take from it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from newsletter.models import LibraryEntry, Subscriber


def library_entries(*, subscriber: Subscriber) -> list[LibraryEntry]:
    """The reader's library with the papers we matched, newest first (manage page, export)."""
    entries = LibraryEntry.objects.filter(subscriber=subscriber).select_related("paper")
    return list(entries.order_by("-created_at", "-id"))


def library_size(*, subscriber: Subscriber) -> int:
    return LibraryEntry.objects.filter(subscriber=subscriber).count()


def library_to_confirm(subscriber: Subscriber) -> list[tuple[str, str, str]]:
    """(arXiv id, DOI, title) of the library a confirmation activates, sorted: the sign-up's set
    aside on an unsubscribed row, else the pending row's own entries (tokens bind the link to it)."""
    if subscriber.pending_preferences is not None:
        items = subscriber.pending_preferences.get("library", [])
        return sorted((i["arxiv_id"], i["doi"], i["title"]) for i in items)
    if subscriber.status != Subscriber.Status.PENDING:
        return []
    entries = LibraryEntry.objects.filter(subscriber=subscriber)
    return sorted(entries.values_list("arxiv_id", "doi", "title"))


def library_titles(*, subscriber_ids: Sequence[int]) -> dict[int, list[str]]:
    """Titles of the library entries we know nothing else about (not our paper, no abstract): they
    are interest text. One query for a chunk."""
    rows = (
        LibraryEntry.objects.filter(subscriber_id__in_array=subscriber_ids, paper=None, abstract="")
        .exclude(title="")
        .order_by("id")
        .values_list("subscriber_id", "title")
    )
    titles: dict[int, list[str]] = defaultdict(list)
    for subscriber_id, title in rows:
        titles[subscriber_id].append(title)
    return dict(titles)


def library_abstracts(*, subscriber_id: int) -> list[tuple[str, str]]:
    """(title, abstract) of the library entries that are not our papers but have an abstract: the
    reader model's further positives."""
    entries = LibraryEntry.objects.filter(subscriber_id=subscriber_id, paper=None).exclude(abstract="")
    return list(entries.order_by("id").values_list("title", "abstract"))


def interests_with_library(interests: str, titles: Sequence[str]) -> str:
    """The interest text ranking reads: the reader's words, then one library title per line (each
    line may name a paper once we have it, candidates.title_keys)."""
    return "\n".join([interests, *titles]).strip() if titles else interests

"""Reads of subscribers, deliveries and their picks. Each is one query (or one per chunk), never one
per subscriber.

The previews rank (read-only) through the pure ranking module, the same code the digest builder
calls, so the manage page shows what the next digest will hold.
"""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
from django.conf import settings
from django.db.models import Exists, OuterRef

from newsletter.library_selectors import interests_with_library, library_titles
from newsletter.models import (
    Delivery,
    DeliveryItem,
    Feedback,
    ReaderModel,
    SendingPause,
    Subscriber,
    Suppression,
)
from newsletter.services.candidates import CandidatePool, Pick, Profile, Taste, implied_topics, title_keys
from newsletter.services.ranking import rank
from newsletter.services.schedule import window_start
from papers.selectors import (
    CandidatePaper,
    papers_by_ids,
    papers_candidates,
    papers_named,
    topic_names,
    topic_texts,
)


@dataclass(frozen=True)
class Preferences:
    """A subscriber's choices, as the forms give them and the subscription services store them."""

    topic_ids: tuple[int, ...] = ()
    interests: str = ""
    excluded_keywords: str = ""
    followed_authors: str = ""
    frequency: str = Subscriber.Frequency.DAILY
    weekday: int = 0
    send_hour: int = 8
    timezone: str = "UTC"
    papers_per_digest: int = 10
    email_format: str = Subscriber.Format.HTML
    notify_empty: bool = False


# The preferences stored as columns of the subscriber row (topics are a relation).
SCALAR_PREFERENCES = tuple(f.name for f in dataclasses.fields(Preferences) if f.name != "topic_ids")


def preferences_stored(subscriber: Subscriber) -> dict:
    """The subscriber's scalar preferences by name, as stored."""
    return {name: getattr(subscriber, name) for name in SCALAR_PREFERENCES}


def preferences_to_confirm(subscriber: Subscriber) -> Preferences:
    """What confirming activates: the sign-up set aside on an unsubscribed row, else the row's own."""
    if subscriber.pending_preferences is not None:
        # The sign-up's library waits beside them (learning.library; subscriber_subscribe).
        stored = {k: v for k, v in subscriber.pending_preferences.items() if k != "library"}
        return Preferences(**{**stored, "topic_ids": tuple(stored["topic_ids"])})
    topic_ids = tuple(subscriber.topics.order_by("id").values_list("id", flat=True))
    return Preferences(topic_ids=topic_ids, **preferences_stored(subscriber))


def subscribers_due(*, now: datetime) -> list[int]:
    """Ids of confirmed, unsuppressed subscribers whose next digest time has come, in one query."""
    suppressed = Suppression.objects.filter(email=OuterRef("email"))
    return list(
        Subscriber.objects.filter(status=Subscriber.Status.ACTIVE, next_send_at__lte=now)
        .exclude(frequency=Subscriber.Frequency.OFF)
        .filter(~Exists(suppressed))
        .order_by("next_send_at", "id")
        .values_list("id", flat=True)
    )


def reader_models(
    *, subscriber_ids: Sequence[int]
) -> dict[int, tuple[bytes, bytes, list[int], float, float]]:
    """The stored feedback models of these subscribers, one query: (features, weights, liked ids,
    threshold, confidence)."""
    rows = ReaderModel.objects.filter(subscriber_id__in_array=subscriber_ids).values_list(
        "subscriber_id", "features", "weights", "liked", "threshold", "confidence"
    )
    return {subscriber_id: (bytes(f), bytes(w), liked, t, c) for subscriber_id, f, w, liked, t, c in rows}


def papers_already_sent(*, subscriber_ids: Sequence[int], paper_ids: Sequence[int]) -> set[tuple[int, int]]:
    """(subscriber id, paper id) pairs among these that some earlier digest already carried, or that
    the reader rated (a paper of their library is a like: they have it already). One query."""
    # No ORDER BY in the UNION's parts (DeliveryItem's Meta has one): SQLite refuses it there.
    pairs = {"subscriber_id__in_array": subscriber_ids, "paper_id__in_array": paper_ids}
    sent = DeliveryItem.objects.filter(**pairs).order_by()
    rated = Feedback.objects.filter(**pairs).order_by()
    return set(
        sent.values_list("subscriber_id", "paper_id").union(rated.values_list("subscriber_id", "paper_id"))
    )


# --- ranking profiles: preferences plus the papers interests name and the fitted feedback model ---


def profiles_build(
    *,
    subscribers: Sequence[Subscriber],
    since: Sequence[datetime],
    known: Sequence[CandidatePaper] = (),
) -> list[Profile]:
    """One profile per subscriber, each with its own window start. `known`: papers already read
    (the chunk's candidates), which the liked papers are taken from rather than read again."""
    ids = [s.pk for s in subscribers]
    topics: dict[int, list[int]] = defaultdict(list)
    for subscriber_id, topic_id in Subscriber.topics.through.objects.filter(
        subscriber_id__in_array=ids
    ).values_list("subscriber_id", "topic_id"):
        topics[subscriber_id].append(topic_id)
    titles = library_titles(subscriber_ids=ids)
    profiles = [
        Profile(
            subscriber_id=subscriber.pk,
            topic_ids=tuple(sorted(topics[subscriber.pk])),
            interests=interests_with_library(subscriber.interests, titles.get(subscriber.pk, ())),
            excluded_keywords=subscriber.excluded_keywords,
            limit=subscriber.papers_per_digest,
            since=start,
            followed_authors=subscriber.followed_authors,
        )
        for subscriber, start in zip(subscribers, since, strict=True)
    ]
    return profiles_complete(profiles, models=True, known=known)


def profiles_complete(
    profiles: Sequence[Profile], *, models: bool, known: Sequence[CandidatePaper] = ()
) -> list[Profile]:
    """The profiles with the papers their interests name and, with `models`, their fitted models.
    Liked papers among `known` are not read again: readers like recent papers, the chunk's
    candidates, and reading them (abstracts, authors) was a third of what the models cost a chunk."""
    stored = reader_models(subscriber_ids=[p.subscriber_id for p in profiles]) if models else {}
    keys = [title_keys(p.interests) for p in profiles]
    liked_ids = {paper_id for _, _, liked, _, _ in stored.values() for paper_id in liked}
    by_key: dict[str, CandidatePaper] = {}
    by_id: dict[int, CandidatePaper] = {}
    if liked_ids and known:
        by_id = {paper.id: paper for paper in known if paper.id in liked_ids}
        liked_ids.difference_update(by_id)
    if liked_ids or any(keys):
        for key, paper in papers_named(title_keys=[k for ks in keys for k in ks], ids=list(liked_ids)):
            by_key[key] = by_id[paper.id] = paper
    # One query for the chunk, only when someone has interests.
    texts = [p.interests if p.interests.strip() else "" for p in profiles]
    implied = implied_topics(texts, topic_texts()) if any(texts) else [() for _ in profiles]
    result = []
    for profile, profile_keys, topics in zip(profiles, keys, implied, strict=True):
        named = {by_key[k].id: by_key[k] for k in profile_keys if k in by_key}
        anchors = tuple(named.values())
        taste = None
        if profile.subscriber_id in stored:
            features, weights, liked, threshold, confidence = stored[profile.subscriber_id]
            taste = Taste(
                features=np.frombuffer(features, dtype=np.int32),
                weights=np.frombuffer(weights, dtype=np.float32),
                liked=tuple(by_id[i] for i in liked if i in by_id),
                threshold=threshold,
                confidence=confidence,
            )
        # A paper the interests name says far more than a guessed topic.
        topics = () if anchors else topics
        result.append(dataclasses.replace(profile, anchors=anchors, taste=taste, implied_topics=topics))
    return result


def picks_recorded(*, delivery_ids: Sequence[int]) -> dict[int, list[Pick]]:
    """The papers recorded for each delivery, in digest order: two queries."""
    rows = list(
        DeliveryItem.objects.filter(delivery_id__in_array=delivery_ids)
        .order_by("delivery_id", "position")
        .values_list("delivery_id", "paper_id", "score", "reasons")
    )
    if not rows:  # a chunk built for the first time: nothing to read
        return {}
    papers = {p.id: p for p in papers_by_ids(ids=list({r[1] for r in rows}))}
    picks: dict[int, list[Pick]] = defaultdict(list)
    for delivery_id, paper_id, score, reasons in rows:
        if paper_id in papers:  # else deleted while the pick was stored; the sweeper deletes the pick
            picks[delivery_id].append(Pick(paper=papers[paper_id], score=score, reasons=tuple(reasons)))
    return dict(picks)


def digest_preview(*, subscriber: Subscriber, now: datetime, limit: int | None = None) -> list[Pick]:
    """The papers the subscriber would get if their digest were built now (manage page).

    `limit` overrides the subscriber's digest size (preview_digest --limit)."""
    since = window_start(subscriber=subscriber, now=now)
    papers = papers_candidates(since=since, limit=settings.NEWSLETTER_MAX_CANDIDATES)
    pool = CandidatePool(papers, topic_names(), now)
    sent = papers_already_sent(subscriber_ids=[subscriber.pk], paper_ids=[p.id for p in papers])
    (profile,) = profiles_build(subscribers=[subscriber], since=[since])
    if limit is not None:
        profile = dataclasses.replace(profile, limit=limit)
    return rank(profiles=[profile], pool=pool, already_sent=sent)[0]


def interests_preview(
    *, interests: str, topic_ids: Sequence[int], limit: int, since: datetime, now: datetime
) -> list[Pick]:
    """Rank papers for an ad-hoc profile (preview_digest --interests): no subscriber, no history."""
    papers = papers_candidates(since=since, limit=settings.NEWSLETTER_MAX_CANDIDATES)
    pool = CandidatePool(papers, topic_names(), now)
    bare = Profile(
        subscriber_id=0,
        topic_ids=tuple(topic_ids),
        interests=interests,
        excluded_keywords="",
        limit=limit,
        since=since,
    )
    (profile,) = profiles_complete([bare], models=False)
    return rank(profiles=[profile], pool=pool, already_sent=set())[0]


def feedback_given(*, subscriber: Subscriber) -> list[Feedback]:
    """The reader's "More like this" / "Not for me" marks with their papers, latest first."""
    marks = Feedback.objects.filter(subscriber=subscriber).select_related("paper")
    return list(marks.order_by("-updated_at", "-id"))


def papers_liked(*, subscriber: Subscriber) -> list[Feedback]:
    """The reader's "More like this" marks, latest first (the "Papers you liked" page)."""
    marks = Feedback.objects.filter(subscriber=subscriber, choice=Feedback.Choice.MORE)
    return list(marks.order_by("-updated_at", "-id"))


def digests_sent(*, subscriber: Subscriber, limit: int | None = None) -> list[Delivery]:
    """The reader's sent digests, latest first: the archive and the feed. "Nothing new" notices are
    not digests and have no web copy worth opening."""
    sent = Delivery.objects.filter(
        subscriber=subscriber, status=Delivery.Status.SENT, kind=Delivery.Kind.DIGEST
    ).order_by("-sent_at", "-id")
    return list(sent[:limit] if limit else sent)


def feedback_choice(*, subscriber: Subscriber, paper_id: int) -> str | None:
    marks = Feedback.objects.filter(subscriber=subscriber, paper_id=paper_id)
    return marks.values_list("choice", flat=True).first()


def sending_pause_active() -> SendingPause | None:
    """The open pause of the brake (newsletter.services.deliverability.brake), if sending is paused."""
    return SendingPause.objects.filter(is_open=True).first()

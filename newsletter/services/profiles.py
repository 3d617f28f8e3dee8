"""Ranking profiles from the database, for many subscribers at once.

A profile holds the subscriber's preferences plus what ranking needs besides: the papers their
interests name (matched by normalized title, as ingest dedupes) and their fitted feedback model.
Whatever the number of subscribers, this is three queries: topics, models, named and liked papers.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import replace
from datetime import datetime

import numpy as np

from newsletter.models import Subscriber
from newsletter.selectors import CandidatePaper, papers_named, reader_models
from newsletter.services.ranking import Profile, Taste, title_keys


def profiles_build(*, subscribers: Sequence[Subscriber], since: Sequence[datetime]) -> list[Profile]:
    """One profile per subscriber, each with its own window start."""
    ids = [s.pk for s in subscribers]
    topics: dict[int, list[int]] = defaultdict(list)
    for subscriber_id, topic_id in Subscriber.topics.through.objects.filter(
        subscriber_id__in=ids
    ).values_list("subscriber_id", "topic_id"):
        topics[subscriber_id].append(topic_id)
    profiles = [
        Profile(
            subscriber_id=subscriber.pk,
            topic_ids=tuple(sorted(topics[subscriber.pk])),
            interests=subscriber.interests,
            excluded_keywords=subscriber.excluded_keywords,
            limit=subscriber.papers_per_digest,
            since=start,
        )
        for subscriber, start in zip(subscribers, since, strict=True)
    ]
    return profiles_complete(profiles, models=True)


def profiles_complete(profiles: Sequence[Profile], *, models: bool) -> list[Profile]:
    """The profiles with the papers their interests name and, with `models`, their fitted models."""
    stored = reader_models(subscriber_ids=[p.subscriber_id for p in profiles]) if models else {}
    keys = [title_keys(p.interests) for p in profiles]
    liked_ids = {paper_id for _, _, liked in stored.values() for paper_id in liked}
    by_key: dict[str, CandidatePaper] = {}
    by_id: dict[int, CandidatePaper] = {}
    if liked_ids or any(keys):
        for key, paper in papers_named(title_keys=[k for ks in keys for k in ks], ids=list(liked_ids)):
            by_key[key] = by_id[paper.id] = paper
    result = []
    for profile, profile_keys in zip(profiles, keys, strict=True):
        named = {by_key[k].id: by_key[k] for k in profile_keys if k in by_key}
        anchors = tuple(named.values())
        taste = None
        if profile.subscriber_id in stored:
            features, weights, liked = stored[profile.subscriber_id]
            taste = Taste(
                features=np.frombuffer(features, dtype=np.int32),
                weights=np.frombuffer(weights, dtype=np.float32),
                liked=tuple(by_id[i] for i in liked if i in by_id),
            )
        result.append(replace(profile, anchors=anchors, taste=taste))
    return result

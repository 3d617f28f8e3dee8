"""Automatic topic tagging: keyword hits plus TF-IDF similarity to each topic's description.

Both signals are needed: keywords are precise but miss paraphrases ("speech recognition" vs "ASR"),
similarity catches paraphrases but is vague on short topic texts. A topic is assigned when its
keywords occur often enough, or when a keyword hit is backed by similarity, or when similarity alone
is strong. Everything is matrix arithmetic over a batch of papers, so 100k papers tag in seconds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from django.db import models

from papers.models import PaperTopic, Topic, keywords_split
from papers.services.text import PhraseSet, feature_counts, paper_text, tfidf

# Tuned on the shipped sample papers; see tests/papers/test_tagging.py for the behaviour they buy.
KEYWORD_HITS_ALONE = 3.0  # weighted hits (title counts double) that tag a paper on their own
KEYWORD_HITS_WITH_SIMILARITY = 1.0
SIMILARITY_WITH_KEYWORD = 0.04
SIMILARITY_ALONE = 0.12
MAX_TOPICS_PER_PAPER = 4
TITLE_WEIGHT = 2.0


@dataclass(frozen=True)
class TopicModel:
    topic_ids: list[int]
    topic_vectors: object  # sparse topics x features
    keywords: PhraseSet
    keyword_topics: np.ndarray  # phrases x topics, 1 where the phrase belongs to the topic


def topic_model_build(*, topics: Sequence[Topic]) -> TopicModel:
    topics = list(topics)
    topic_ids = [t.id for t in topics]
    # Topics of a migration's historical models have no `keyword_list`: split here.
    keyword_lists = [keywords_split(t.keywords) for t in topics]
    documents = [
        f"{t.name}. {t.description}. {', '.join(kw)}" for t, kw in zip(topics, keyword_lists, strict=True)
    ]
    pairs = [(kw, i) for i, t in enumerate(topics) for kw in [t.name, *keyword_lists[i]]]
    keywords = PhraseSet(kw for kw, _ in pairs)
    keyword_topics = np.zeros((len(pairs), len(topics)), dtype=np.float32)
    for row, (_, topic_index) in enumerate(pairs):
        keyword_topics[row, topic_index] = 1.0
    return TopicModel(
        topic_ids=topic_ids,
        topic_vectors=tfidf(feature_counts(documents)) if documents else None,
        keywords=keywords,
        keyword_topics=keyword_topics,
    )


def papers_tag(
    *, model: TopicModel, titles: Sequence[str], abstracts: Sequence[str]
) -> list[list[tuple[int, float]]]:
    """For each paper, the (topic id, score) pairs it is tagged with, best first."""
    if not titles:
        return []
    if not model.topic_ids:
        return [[] for _ in titles]
    texts = [paper_text(t, a) for t, a in zip(titles, abstracts, strict=True)]
    similarity = (tfidf(feature_counts(texts)) @ model.topic_vectors.T).toarray()
    # A phrase listed under two names of one topic ("RL", "reinforcement learning") counts for both.
    keyword_hits = (
        TITLE_WEIGHT * model.keywords.counts(feature_counts(titles))
        + model.keywords.counts(feature_counts(abstracts))
    ) @ model.keyword_topics
    tagged = (
        (keyword_hits >= KEYWORD_HITS_ALONE)
        | ((keyword_hits >= KEYWORD_HITS_WITH_SIMILARITY) & (similarity >= SIMILARITY_WITH_KEYWORD))
        | (similarity >= SIMILARITY_ALONE)
    )
    score = similarity + 0.05 * np.minimum(keyword_hits, 6.0)
    results: list[list[tuple[int, float]]] = []
    for row in range(len(texts)):
        columns = np.flatnonzero(tagged[row])
        # Ties broken by topic id so the order never depends on dict or set order.
        ranked = sorted(columns, key=lambda c: (-score[row, c], model.topic_ids[c]))
        results.append(
            [(model.topic_ids[c], round(float(score[row, c]), 4)) for c in ranked[:MAX_TOPICS_PER_PAPER]]
        )
    return results


def papers_retag(
    *, papers: Sequence[models.Model], model: TopicModel, through: type[models.Model] = PaperTopic
) -> None:
    """Replace the topics of these papers (rows with id, title, abstract). `through` is PaperTopic, or
    its historical model when a data migration re-tags everything after changing the topics."""
    tags = papers_tag(model=model, titles=[p.title for p in papers], abstracts=[p.abstract for p in papers])
    through.objects.filter(paper_id__in=[p.pk for p in papers]).delete()
    through.objects.bulk_create(
        through(paper_id=paper.pk, topic_id=topic_id, score=score)
        for paper, pairs in zip(papers, tags, strict=True)
        for topic_id, score in pairs
    )

"""Personalized ranking for a chunk of subscribers at once, as matrix operations.

For s subscribers and p candidate papers every signal is an s x p matrix:

    relevance = 3.0 * topics        (sum of PaperTopic.score over the chosen topics, 1 = 0.5+;
                                     going down to 1.0 as a fitted model's confidence c grows)
              + 4.0 * similarity    (TF-IDF cosine of the interest query and title+abstract, 1 = `full`;
                                     going down to 1.0 as a fitted model's confidence c grows, as
                                     the model holds the interests as its first positive)
              + 2.0 * keyword hits  (interest phrases found in the paper, 1 = three or more)
              + 1.0 * (1 - c) * implied topics (the topics the interests' text is closest to,
                                     candidates.implied_topics; not when the interests name a paper)
              + 24 * c * learned    (the subscriber's fitted feedback model, learning.reader_model,
                                     scaled so the strongest rated paper is 1: typically 0.1 to 0.4 for
                                     papers like the liked ones, negative near the dismissed ones;
                                     c = its confidence, 0..1, growing with its evidence)
    score     = relevance + 0.5 * popularity (log upvotes/stars, 1 = 500+) + 0.25 * recency
              + 100 * followed      (a paper by an author the subscriber follows: always first)

The interest query is the interests' text; an interest naming a paper of the database (its title)
adds that paper's title and abstract, "papers like that one". Longer queries have lower cosines, so
the cosine that counts fully (`full`) goes from 0.25 for a keyword or two down to 0.1 for a sentence,
a title or a whole paper, and the similarity needed to be relevant is a fifth of it.

A paper is eligible when it is in the subscriber's window, not excluded by their keywords, never sent
to them before, not a paper their interests name, and relevant (any topic, keyword, real similarity,
a model score above the model's own threshold, or an author they follow) unless they chose nothing,
in which case they get what is trending. Below that, a paper with positive evidence (any shared
term with the interests, or a positive model score) is a reserve, ranked after all relevant papers:
a digest is not cut short while such papers remain. Papers by followed authors take the first
places of the digest (within its size); excluded keywords still win over them, as "never" is the
reader's own word. The
per-paper work (vectors, topic matrix, popularity) is done once per chunk in `CandidatePool`; per
subscriber there is only a row of each matrix, and the fitted models of a chunk are one sparse matrix.

Every signal of a paper depends on the paper, the subscriber and `now` only, never on which other
papers share the pool: a subscriber ranked in a chunk (whose pool spans everyone's windows) gets the
same digest as ranked alone, and the manage-page preview shows what the digest will hold.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
from scipy import sparse
from scipy.sparse import _sparsetools

from newsletter.services.candidates import (
    CandidatePool,
    PhraseHits,
    Pick,
    Profile,
    interest_queries,
)
from newsletter.services.cosines import pool_cosines
from newsletter.services.reasons import Evidence, reasons_for
from papers.services.text import (
    N_FEATURES,
)

WEIGHT_TOPIC = 3.0
WEIGHT_SIMILARITY = 4.0
WEIGHT_KEYWORD = 2.0
# Topics the interests' text is close to (candidates.implied_topics); a guess the model replaces as
# its evidence grows.
WEIGHT_IMPLIED_TOPIC = 1.0
WEIGHT_LEARNED = 24.0
WEIGHT_SIMILARITY_LEARNED = 1.0  # instead of WEIGHT_SIMILARITY once a model is fitted
# Instead of WEIGHT_TOPIC once a model is fitted: a topic holds a broad field, the likes say which
# part of it the reader means (topics reader, rounds 2-5: 0.44 -> 0.49 sparse, 0.54 -> 0.63 full).
WEIGHT_TOPIC_LEARNED = 1.0
WEIGHT_POPULARITY = 0.5
WEIGHT_RECENCY = 0.25
WEIGHT_FOLLOWED = 100.0  # above any sum of the others: followed authors' papers come first
TOPIC_FULL = 0.5  # summed PaperTopic.score at which the topic signal counts fully (one strong topic ~0.35)
# Cosine at which similarity counts fully: SIMILARITY_FULL for a query of a few features, falling
# with the square root of the query's length down to SIMILARITY_FULL_LONG.
SIMILARITY_FULL = 0.25
SIMILARITY_FULL_LONG = 0.1
SIMILARITY_FULL_FEATURES = 3  # a two-word interest has 3 features (two words, one bigram)
SIMILARITY_MIN = 0.2  # of `full`: below this, similarity alone does not make a paper relevant
WEIGHT_RESERVE = 1000.0  # subtracted for ordering only: a reserve paper comes after every relevant one


def _learned(profiles: Sequence[Profile], pool: CandidatePool) -> np.ndarray:
    """s x p: each fitted model's score of each paper (float32; a zero row without a model): the
    rows with a model, stacked, times the pool's vectors, in one `dense_product`."""
    learned = np.zeros((len(profiles), len(pool)), dtype=np.float32)
    readers = [i for i, pr in enumerate(profiles) if pr.taste is not None]
    if not readers:
        return learned
    tastes = [profiles[i].taste for i in readers]
    indptr = np.zeros(len(tastes) + 1, dtype=np.int64)
    np.cumsum([len(t.features) for t in tastes], out=indptr[1:])
    data = np.concatenate([t.weights for t in tastes])
    indices = np.concatenate([t.features for t in tastes])
    stacked = sparse.csr_matrix((data, indices, indptr), shape=(len(tastes), N_FEATURES))
    learned[readers] = dense_product(stacked, pool.vectors_t)
    return learned


def dense_product(a: sparse.csr_matrix, b: sparse.csr_matrix) -> np.ndarray:
    """(a @ b).toarray(), bit for bit, in half the time when the result is nearly dense (the
    models' scores: every model has weights on most papers' words).

    scipy's product makes two passes over the work: one that counts the result's entries to size
    it, then the product itself. A dense result has at most rows x columns entries, so this sizes
    it so and runs only the second pass, the same kernel: the same sums in the same order."""
    index = np.int64 if max(a.nnz, b.nnz, a.shape[0] * b.shape[1]) >= 2**31 else np.int32
    rows, columns = a.shape[0], b.shape[1]
    dtype = np.result_type(a.dtype, b.dtype)
    indptr = np.zeros(rows + 1, dtype=index)
    found = np.zeros(rows * columns, dtype=index)
    values = np.zeros(rows * columns, dtype=dtype)
    _sparsetools.csr_matmat(
        rows,
        columns,
        a.indptr.astype(index, copy=False),
        a.indices.astype(index, copy=False),
        a.data.astype(dtype, copy=False),
        b.indptr.astype(index, copy=False),
        b.indices.astype(index, copy=False),
        b.data.astype(dtype, copy=False),
        indptr,
        found,
        values,
    )
    result = np.zeros((rows, columns), dtype=dtype)
    stored = int(indptr[-1])
    result[np.repeat(np.arange(rows), np.diff(indptr)), found[:stored]] = values[:stored]
    return result


def _topic_strength(
    weighted_topics: Sequence[Sequence[tuple[int, float]]], pool: CandidatePool
) -> np.ndarray:
    """s x p: each paper's topic scores summed over a subscriber's (topic id, weight) pairs; topics
    no paper of the pool has are left out."""
    cells = [
        (i, column, weight)
        for i, topics in enumerate(weighted_topics)
        for topic_id, weight in topics
        if (column := pool.topic_column.get(topic_id)) is not None
    ]
    rows = sparse.csr_matrix(
        (
            np.array([w for *_, w in cells], dtype=np.float32),
            ([i for i, _, _ in cells], [c for _, c, _ in cells]),
        ),
        shape=(len(weighted_topics), pool.topics.shape[1]),
    )
    return np.asarray((rows @ pool.topics.T).todense())


def rank(
    *, profiles: Sequence[Profile], pool: CandidatePool, already_sent: set[tuple[int, int]]
) -> list[list[Pick]]:
    """The ranked picks for each profile, best first, at most `profile.limit` each."""
    if not profiles:
        return []
    if not len(pool):
        return [[] for _ in profiles]
    s = len(profiles)

    topic_strength = _topic_strength([[(t, 1.0) for t in pr.topic_ids] for pr in profiles], pool)
    implied_strength = _topic_strength([pr.implied_topics for pr in profiles], pool)
    queries = interest_queries([pr.interests for pr in profiles], [pr.anchors for pr in profiles])
    similarity = np.asarray((queries @ pool.vectors_t).todense())
    query_features = np.diff(queries.indptr).astype(np.float64)
    full = np.clip(
        SIMILARITY_FULL * np.sqrt(SIMILARITY_FULL_FEATURES / np.maximum(query_features, 1.0)),
        SIMILARITY_FULL_LONG,
        SIMILARITY_FULL,
    )[:, None]
    learned = _learned(profiles, pool)
    keywords = PhraseHits([pr.phrases for pr in profiles], pool)
    keyword_hits = keywords.counts
    excluded = PhraseHits([pr.excluded for pr in profiles], pool).counts > 0

    similar = similarity >= SIMILARITY_MIN * full
    # A fitted model has the interests as its first positive: as its evidence grows it takes over
    # most of their weight (and of the chosen topics'), and its own weight grows from nothing to
    # WEIGHT_LEARNED.
    confidence = np.array([pr.taste.confidence if pr.taste else 0.0 for pr in profiles])[:, None]
    similarity_weight = WEIGHT_SIMILARITY - (WEIGHT_SIMILARITY - WEIGHT_SIMILARITY_LEARNED) * confidence
    topic_weight = WEIGHT_TOPIC - (WEIGHT_TOPIC - WEIGHT_TOPIC_LEARNED) * confidence
    # The score's weighted terms by name: the reasons credit the one that carries a pick. Similarity
    # below SIMILARITY_MIN still counts in the score (it is continuous), it only does not make a
    # paper relevant on its own.
    terms = {
        "topics": topic_weight * np.minimum(topic_strength / TOPIC_FULL, 1.0),
        "similarity": similarity_weight * np.minimum(similarity / full, 1.0) * similar,
        "keywords": WEIGHT_KEYWORD * np.minimum(keyword_hits, 3.0) / 3.0,
        "implied_topics": WEIGHT_IMPLIED_TOPIC
        * (1.0 - confidence)
        * np.minimum(implied_strength / TOPIC_FULL, 1.0),
        "learned": WEIGHT_LEARNED * confidence * learned,  # reasons.LEARNED
        "popularity": np.broadcast_to(WEIGHT_POPULARITY * pool.popularity, (s, len(pool))),
        "recency": np.broadcast_to(WEIGHT_RECENCY * pool.recency, (s, len(pool))),
    }
    relevance = terms["topics"] + terms["similarity"] + terms["keywords"] + terms["implied_topics"]
    followed = _followed(profiles, pool)
    has_preferences = np.array(
        [bool(pr.topic_ids or pr.interests.strip() or pr.taste or pr.followed) for pr in profiles]
    )
    # The model's eligibility threshold is relative to the scores it gives the reader's own
    # positives (learning.reader_model). Below it, a paper with some positive evidence (the model
    # likes it, or it shares a term with the interests) is a reserve: ranked after every paper
    # relevant on its own, so a digest is not cut short while such unseen papers remain.
    threshold = np.array([pr.taste.threshold if pr.taste else np.inf for pr in profiles])[:, None]
    relevant = (
        (topic_strength > 0)
        | similar
        | (keyword_hits > 0)
        | (learned >= threshold)
        | followed
        | ~has_preferences[:, None]
    )
    reserve = ~relevant & ((learned > 0) | (similarity > 0))
    since = np.array([pr.since.timestamp() for pr in profiles], dtype=np.float64)
    in_window = pool.ingested[None, :] > since[:, None]
    score = relevance + terms["learned"] + terms["popularity"] + terms["recency"] + WEIGHT_FOLLOWED * followed
    eligible = (relevant | reserve) & in_window & ~excluded
    col_of = {paper.id: j for j, paper in enumerate(pool.papers)}
    for i, pr in enumerate(profiles):
        # A paper the interests name is what they already know; its neighbours are the point.
        eligible[i, [col_of[a.id] for a in pr.anchors if a.id in col_of]] = False
    if already_sent:
        # A list per subscriber: a chunk may hold two deliveries of one subscriber (a re-driven
        # one and a new one), and both rows must exclude what they were sent.
        rows_of: dict[int, list[int]] = defaultdict(list)
        for i, pr in enumerate(profiles):
            rows_of[pr.subscriber_id].append(i)
        for subscriber_id, paper_id in already_sent:
            if paper_id in col_of:
                eligible[rows_of.get(subscriber_id, []), col_of[paper_id]] = False
    score = np.where(eligible, score, -np.inf)
    # Reserve papers in order of their faint similarity to the interests, then of the score.
    ordering = np.where(reserve, score - WEIGHT_RESERVE + similarity_weight * similarity / full, score)

    results = []
    paper_ids = np.array([paper.id for paper in pool.papers])
    # Cosines of every named and every liked paper of the chunk with the pool, which each subscriber's
    # reasons then read: kept per process (cosines.py), a product only for papers not seen before.
    anchor_cosines, anchor_at = pool_cosines([pr.anchors for pr in profiles], pool)
    liked_cosines, liked_at = pool_cosines([pr.taste.liked if pr.taste else () for pr in profiles], pool)
    for i, profile in enumerate(profiles):
        top = _top(ordering[i], paper_ids, profile.limit)
        start, end = queries.indptr[i], queries.indptr[i + 1]
        evidence = Evidence(
            terms={name: term[i] for name, term in terms.items()},
            similarity=similarity[i] / full[i, 0],
            cosine=similarity[i],
            query=dict(
                zip(queries.indices[start:end].tolist(), queries.data[start:end].tolist(), strict=True)
            ),
            anchors=anchor_cosines[anchor_at[i] : anchor_at[i + 1]]
            if anchor_at[i + 1] > anchor_at[i]
            else None,
            liked=liked_cosines[liked_at[i] : liked_at[i + 1]] if liked_at[i + 1] > liked_at[i] else None,
        )
        reasons = reasons_for(profile, pool, top, evidence, keywords)
        results.append(
            [
                Pick(paper=pool.papers[j], score=round(float(score[i, j]), 4), reasons=why)
                for j, why in zip(top, reasons, strict=True)
            ]
        )
    return results


def _followed(profiles: Sequence[Profile], pool: CandidatePool) -> np.ndarray:
    """s x p: the paper has an author the subscriber follows (the pool's author index is built only
    when someone in the chunk follows an author)."""
    followed = np.zeros((len(profiles), len(pool)), dtype=bool)
    for i, profile in enumerate(profiles):
        for key in profile.followed:
            followed[i, pool.by_author.get(key, [])] = True
    return followed


def _top(scores: np.ndarray, paper_ids: np.ndarray, limit: int) -> np.ndarray:
    """Column indices of the `limit` best finite scores, best first; ties go to the newer paper
    (higher id), so the result depends only on the scores, not on the order of the pool."""
    if limit <= 0:
        return np.array([], dtype=np.intp)
    if limit < len(scores):
        # Everything tied with the limit-th score stays in: argpartition alone would cut a tie at
        # the boundary by position in the pool, not by id.
        threshold = -np.partition(-scores, limit - 1)[limit - 1]
        candidates = np.flatnonzero(scores >= threshold)
    else:
        candidates = np.arange(len(scores))
    candidates = candidates[np.isfinite(scores[candidates])]
    return candidates[np.lexsort((-paper_ids[candidates], -scores[candidates]))][:limit]

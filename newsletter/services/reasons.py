"""Why a paper was picked, in words, for the email.

Computed for the picks only, from what `ranking.rank` measured: each reason names what really put
the paper there (a topic, a phrase, the words that carried the similarity, the paper the interests
name, a paper the reader liked), never a vague "matches your interests".
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from papers.services.records import author_key
from papers.services.text import content_tokens, features, gram_columns

if TYPE_CHECKING:
    from newsletter.services.candidates import CandidatePool, PhraseHits, Profile

SIMILARITY_REASON = 0.3  # of the full cosine: below this, similarity is not worth naming
LEARNED_REASON = 0.35  # the model's score at which the closest liked paper is named
LIKED_REASON_SIMILARITY = 0.03  # and the pick must be at least this close to that paper
TERMS_SHOWN = 3
TRENDING_UPVOTES = 20
TRENDING_STARS = 100


@dataclass(frozen=True)
class Evidence:
    """One subscriber's row of rank()'s signals."""

    similarity: np.ndarray  # cosine / full cosine, per pool paper
    learned: np.ndarray  # the fitted model's score, per pool paper
    query: dict[int, float]  # the interest query's weight per feature column
    anchors: np.ndarray | None  # cosines of profile.anchors (rows) with every pool paper
    liked: np.ndarray | None  # cosines of profile.taste.liked (rows) with every pool paper


def reasons_for(
    profile: Profile, pool: CandidatePool, top: Sequence[int], evidence: Evidence, keywords: PhraseHits
) -> list[tuple[str, ...]]:
    anchor_cosines = evidence.anchors[:, top] if evidence.anchors is not None else None
    liked_cosines = evidence.liked[:, top] if evidence.liked is not None else None
    phrases = profile.phrases
    grams = _query_grams(profile.interests, evidence.query)
    followed = profile.followed
    result = []
    for k, index in enumerate(top):
        paper = pool.papers[index]
        reasons = []
        if followed:
            names = [name for name in paper.authors if author_key(name) in followed]
            if names:
                reasons.append(f"By {' and '.join(names[:2])}, whom you follow")
        strength = dict(zip(paper.topic_ids, paper.topic_scores, strict=True))
        shared = sorted(
            (t for t in paper.topic_ids if t in profile.topic_ids and t in pool.topic_names),
            key=lambda t: -strength[t],
        )
        if shared:
            names = ", ".join(pool.topic_names[t] for t in shared[:3])
            reasons.append("Matches your topic" + ("s" if len(shared) > 1 else "") + ": " + names)
        found = keywords.found(phrases, index)
        if found:
            reasons.append("Mentions " + ", ".join(f"“{p}”" for p in found[:3]))
        if evidence.similarity[index] >= SIMILARITY_REASON:
            if anchor_cosines is not None:
                closest = profile.anchors[int(np.argmax(anchor_cosines[:, k]))]
                reasons.append(f"Similar to “{closest.title}”")
            else:
                terms = _shared_terms(grams, pool, index, found)
                if terms:
                    reasons.append("Matches your interest in " + ", ".join(f"“{t}”" for t in terms))
        if (
            liked_cosines is not None
            and evidence.learned[index] >= LEARNED_REASON
            and liked_cosines[:, k].max() >= LIKED_REASON_SIMILARITY
        ):
            liked = profile.taste.liked[int(np.argmax(liked_cosines[:, k]))]
            reasons.append(f"Like “{liked.title}”, which you liked")
        if (paper.upvotes or 0) >= TRENDING_UPVOTES:
            reasons.append(f"Trending: {paper.upvotes:,} upvotes")
        if (paper.github_stars or 0) >= TRENDING_STARS:
            reasons.append(f"{paper.github_stars:,} GitHub stars")
        if not reasons:
            interested = bool(profile.interests.strip())
            reasons.append("Close to your interests" if interested else "Among the most popular new papers")
        result.append(tuple(reasons))
    return result


@dataclass(frozen=True)
class QueryGrams:
    """The interests' grams that carry weight in the query, with their feature columns and weights:
    once per subscriber, not per paper."""

    names: list[str]
    columns: np.ndarray
    weights: np.ndarray


def _query_grams(interests: str, query: dict[int, float]) -> QueryGrams:
    grams = list(dict.fromkeys(features(interests)))
    pairs = [(g, c) for g, c in zip(grams, gram_columns(grams), strict=True) if c in query]
    return QueryGrams(
        names=[g for g, _ in pairs],
        columns=np.array([c for _, c in pairs], dtype=np.int64),
        weights=np.array([query[c] for _, c in pairs], dtype=np.float64),
    )


def _shared_terms(grams: QueryGrams, pool: CandidatePool, index: int, found: Sequence[str]) -> list[str]:
    """The words and word pairs of the interests that carry the paper's similarity, strongest first
    (a pair before its own words), leaving out those a "Mentions" reason already names."""
    vectors = pool.vectors  # indices sorted per row (CandidatePool)
    start, end = vectors.indptr[index], vectors.indptr[index + 1]
    row_columns = vectors.indices[start:end]
    if not len(row_columns):
        return []
    at = np.minimum(np.searchsorted(row_columns, grams.columns), len(row_columns) - 1)
    shares = np.where(row_columns[at] == grams.columns, grams.weights * vectors.data[start:end][at], 0.0)
    listed = {t for p in found for t in content_tokens(p)} | {p.lower() for p in found}
    # Hashed columns collide: a share counts only if the paper really has the gram.
    contributions = {
        gram: share
        for gram, share in zip(grams.names, shares.tolist(), strict=True)
        if share > 0 and gram not in listed and pool.has_token(index, gram)
    }
    chosen: list[str] = []
    for gram in sorted(contributions, key=lambda g: -contributions[g]):
        if any(gram in c.split() for c in chosen):
            continue
        chosen.append(gram)
        if len(chosen) == TERMS_SHOWN:
            break
    return chosen

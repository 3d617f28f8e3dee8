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
from scipy import sparse

from papers.services.text import content_tokens, features, phrase_columns

if TYPE_CHECKING:
    from newsletter.services.ranking import CandidatePool, PhraseHits, Profile

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
    query: sparse.csr_matrix  # the interest query, 1 x N_FEATURES
    anchors: sparse.csr_matrix  # vectors of profile.anchors, one row each
    liked: sparse.csr_matrix  # vectors of profile.taste.liked, one row each


def reasons_for(
    profile: Profile, pool: CandidatePool, top: Sequence[int], evidence: Evidence, keywords: PhraseHits
) -> list[tuple[str, ...]]:
    picked = pool.vectors[list(top)]
    anchor_cosines = (evidence.anchors @ picked.T).toarray() if evidence.anchors.shape[0] else None
    liked_cosines = (evidence.liked @ picked.T).toarray() if evidence.liked.shape[0] else None
    result = []
    for k, index in enumerate(top):
        paper = pool.papers[index]
        reasons = []
        strength = dict(zip(paper.topic_ids, paper.topic_scores, strict=True))
        shared = sorted(
            (t for t in paper.topic_ids if t in profile.topic_ids and t in pool.topic_names),
            key=lambda t: -strength[t],
        )
        if shared:
            names = ", ".join(pool.topic_names[t] for t in shared[:3])
            reasons.append("Matches your topic" + ("s" if len(shared) > 1 else "") + ": " + names)
        found = keywords.found(profile.phrases, index)
        if found:
            reasons.append("Mentions " + ", ".join(f"“{p}”" for p in found[:3]))
        if evidence.similarity[index] >= SIMILARITY_REASON:
            if anchor_cosines is not None:
                closest = profile.anchors[int(np.argmax(anchor_cosines[:, k]))]
                reasons.append(f"Similar to “{closest.title}”")
            else:
                terms = _shared_terms(profile.interests, pool, index, evidence.query, found)
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


def _shared_terms(
    interests: str, pool: CandidatePool, index: int, query: sparse.csr_matrix, found: Sequence[str]
) -> list[str]:
    """The words and word pairs of the interests that carry the paper's similarity, strongest first
    (a pair before its own words), leaving out those a "Mentions" reason already names."""
    row = pool.vectors[index]
    weight = dict(zip(row.indices, row.data, strict=True))
    query_weight = dict(zip(query.indices, query.data, strict=True))
    listed = {t for p in found for t in content_tokens(p)} | {p.lower() for p in found}
    contributions = {}
    for gram in dict.fromkeys(features(interests)):
        column = phrase_columns(gram)[0]
        share = query_weight.get(column, 0.0) * weight.get(column, 0.0)
        if share > 0 and gram not in listed and pool.has_token(index, gram):
            contributions[gram] = share
    chosen: list[str] = []
    for gram in sorted(contributions, key=lambda g: -contributions[g]):
        if any(gram in c.split() for c in chosen):
            continue
        chosen.append(gram)
        if len(chosen) == TERMS_SHOWN:
            break
    return chosen

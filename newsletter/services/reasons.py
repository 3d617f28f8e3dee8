"""Why a paper was picked, in words, for the email.

Computed for the picks only, from what `ranking.rank` measured: each reason names what really put
the paper there (a topic, a phrase, the words that carried the similarity, the paper the interests
name, a paper the reader liked), never a vague "matches your interests".

Phrase reasons quote the reader's own words (`written_terms`): a phrase they wrote or a word of it,
never a gram the text model made ("text speech" from "text to speech"), and no word twice in one
paper's reasons. A like is credited ("Because you liked “…”") when the learned term carries the largest
share of the pick's score and the model's pull on the pick comes from the liked papers at least as much
as from the interests, which the model also holds as a positive (learning.reader_model).
"""

from __future__ import annotations

import re
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from papers.services.records import author_key
from papers.services.text import content_spans, content_tokens, gram_columns

if TYPE_CHECKING:
    from newsletter.services.candidates import CandidatePool, PhraseHits, Profile

SIMILARITY_REASON = 0.3  # of the full cosine: below this, similarity is not worth naming
LIKED_REASON_SIMILARITY = 0.03  # a liked paper is named only if the pick is at least this close to it
LEARNED = "learned"  # the name of the fitted model's term in Evidence.terms (ranking.rank)
TERMS_SHOWN = 3
TRENDING_UPVOTES = 20
TRENDING_STARS = 100
# What may stand between two words the reader wrote for them to be quoted as one phrase: "text to
# speech" and "recognition, text" are no pairs, "video-language" is.
_SIDE_BY_SIDE = re.compile(r"[ \t]+|[ \t]*-[ \t]*")


@dataclass(frozen=True)
class Evidence:
    """One subscriber's row of rank()'s signals. `terms` are the score's weighted terms by name (with
    the followed-author bonus they sum to the score); the fitted model's is named LEARNED."""

    terms: dict[str, np.ndarray]  # per pool paper
    similarity: np.ndarray  # cosine / full cosine, per pool paper
    cosine: np.ndarray  # the interest query's cosine, per pool paper
    query: dict[int, float]  # the interest query's weight per feature column
    anchors: np.ndarray | None  # cosines of profile.anchors (rows) with every pool paper
    liked: np.ndarray | None  # cosines of profile.taste.liked (rows) with every pool paper


def because_you_liked(title: str) -> str:
    """The reason that credits a like; the feedback page looks for it in the preview."""
    return f"Because you liked “{title}”"


def reasons_for(
    profile: Profile, pool: CandidatePool, top: Sequence[int], evidence: Evidence, keywords: PhraseHits
) -> list[tuple[str, ...]]:
    top = np.asarray(top, dtype=np.intp)
    anchor_cosines = evidence.anchors[:, top] if evidence.anchors is not None else None
    credited = _credited_likes(profile, pool, top, evidence).tolist()
    phrases = profile.phrases
    followed = profile.followed
    chosen_topics = set(profile.topic_ids)
    similar = (evidence.similarity[top] >= SIMILARITY_REASON).tolist()
    # The interests' terms in each pick, for the similarity reasons that name them: made for all the
    # picks at once, and only when a pick has such a reason.
    written, strongest = None, []
    if anchor_cosines is None and any(similar):
        written = _query_terms(profile.interests, evidence.query)
        shares = _term_shares(written, pool, top)
        # Per pick, the terms it has, strongest first (the stable order keeps the reader's on a tie).
        order = np.argsort(-shares, axis=1, kind="stable").tolist()
        strongest = [o[:n] for o, n in zip(order, np.count_nonzero(shares > 0, axis=1).tolist(), strict=True)]
    tokens = _Tokens()
    result = []
    for k, index in enumerate(top.tolist()):
        paper = pool.papers[index]
        reasons = []
        if followed:
            names = [name for name in paper.authors if author_key(name) in followed]
            if names:
                reasons.append(f"By {' and '.join(names[:2])}, whom you follow")
        if credited[k] >= 0:
            reasons.append(because_you_liked(profile.taste.liked[credited[k]].title))
        shared = [t for t in paper.topic_ids if t in chosen_topics and t in pool.topic_names]
        if shared:
            strength = dict(zip(paper.topic_ids, paper.topic_scores, strict=True))
            shared.sort(key=lambda t: -strength[t])
            names = ", ".join(pool.topic_names[t] for t in shared[:3])
            reasons.append("Matches your topic" + ("s" if len(shared) > 1 else "") + ": " + names)
        found = _distinct(keywords.found(phrases, index), tokens)
        if found:
            reasons.append("Mentions " + ", ".join(f"“{p}”" for p in found[:3]))
        if similar[k]:
            if anchor_cosines is not None:
                closest = profile.anchors[int(np.argmax(anchor_cosines[:, k]))]
                reasons.append(f"Similar to “{closest.title}”")
            else:
                terms = _shared_terms(written, strongest[k], pool, index, found, tokens)
                if terms:
                    reasons.append("Matches your interest in " + ", ".join(f"“{t}”" for t in terms))
        if (paper.upvotes or 0) >= TRENDING_UPVOTES:
            reasons.append(f"Trending: {paper.upvotes:,} upvotes")
        if (paper.github_stars or 0) >= TRENDING_STARS:
            reasons.append(f"{paper.github_stars:,} GitHub stars")
        if not reasons:
            interested = bool(profile.interests.strip())
            reasons.append("Close to your interests" if interested else "Among the most popular new papers")
        result.append(tuple(reasons))
    return result


class _Tokens(dict):
    """content_tokens of each of a reader's phrases, made once per reasons_for call (a phrase is
    found in many of the picks)."""

    def __missing__(self, phrase: str) -> frozenset[str]:
        words = self[phrase] = frozenset(content_tokens(phrase))
        return words


def _credited_likes(
    profile: Profile, pool: CandidatePool, top: Sequence[int], evidence: Evidence
) -> np.ndarray:
    """Per pick, the row of the liked paper its reason names (the closest one), or -1 when no like
    carries it. The model holds the interests as a positive too (a Rocchio centroid sums the query's
    and the liked papers' cosines), so a pick it likes for the interests' sake is not the like's."""
    if evidence.liked is None or profile.taste is None:
        return np.full(len(top), -1)
    shares = np.stack([term[top] for term in evidence.terms.values()])  # terms x picks
    learned = evidence.terms[LEARNED][top]
    # A liked paper never credits itself (it is a pick when it was never sent).
    itself = np.array([p.id for p in profile.taste.liked])[:, None] == [pool.papers[i].id for i in top]
    liked = np.where(itself, 0.0, evidence.liked[:, top])
    carried = (learned > 0) & (learned >= shares.max(axis=0))
    from_likes = np.maximum(liked, 0.0).sum(axis=0) >= np.maximum(evidence.cosine[top], 0.0)
    near = liked.max(axis=0) >= LIKED_REASON_SIMILARITY
    return np.where(carried & from_likes & near, liked.argmax(axis=0), -1)


def _distinct(phrases: list[str], tokens: _Tokens) -> list[str]:
    """The phrases without those whose words a longer one already says ("speech" beside "text to
    speech"), in their order."""
    if len(phrases) < 2:
        return phrases
    words = [tokens[p] for p in phrases]
    kept: list[int] = []
    for i in sorted(range(len(phrases)), key=lambda i: -len(words[i])):
        if not any(words[i] <= words[j] for j in kept):
            kept.append(i)
    return [phrases[i] for i in sorted(kept)]


def written_terms(interests: str) -> dict[str, str]:
    """The interests' grams (as `features` makes them) that the reader wrote as such, each with the
    words as written: every content word, and every two content words written side by side."""
    lowered = interests.lower()
    source = interests if len(lowered) == len(interests) else lowered  # spans index the lowered text
    terms: dict[str, str] = {}
    previous: tuple[str, int, int, int] | None = None
    for token, position, start, end in content_spans(interests):
        terms.setdefault(token, source[start:end])
        if (
            previous is not None
            and previous[1] == position - 1
            and _SIDE_BY_SIDE.fullmatch(source, previous[3], start)
        ):
            terms.setdefault(f"{previous[0]} {token}", source[previous[2] : end])
        previous = (token, position, start, end)
    return terms


@dataclass(frozen=True)
class QueryTerms:
    """The reader's written terms that carry weight in the query, with their feature columns and
    weights: once per subscriber, not per paper."""

    grams: list[str]
    quotes: list[str]  # as the reader wrote them
    columns: np.ndarray
    weights: np.ndarray
    words: list[frozenset[str]]  # each gram's words


def _query_terms(interests: str, query: dict[int, float]) -> QueryTerms:
    written = written_terms(interests)
    pairs = [(g, c) for g, c in zip(written, gram_columns(list(written)), strict=True) if c in query]
    return QueryTerms(
        grams=[g for g, _ in pairs],
        quotes=[written[g] for g, _ in pairs],
        columns=np.array([c for _, c in pairs], dtype=np.int64),
        weights=np.array([query[c] for _, c in pairs], dtype=np.float64),
        words=[frozenset(g.split()) for g, _ in pairs],
    )


# Per pool (a chunk's): every stored entry of its TF-IDF rows as one sorted int64 key.
_POOL_KEYS: weakref.WeakKeyDictionary[CandidatePool, np.ndarray] = weakref.WeakKeyDictionary()


def _pool_keys(pool: CandidatePool) -> np.ndarray:
    """row * columns + column of every stored entry of pool.vectors: sorted, since the rows come in
    order and each row's columns are sorted (CandidatePool sorts them), so one searchsorted finds any
    (paper, column) pair of the chunk. Made once per pool, for all its readers."""
    keys = _POOL_KEYS.get(pool)
    if keys is None:
        vectors = pool.vectors
        rows = np.repeat(np.arange(vectors.shape[0], dtype=np.int64), np.diff(vectors.indptr))
        keys = _POOL_KEYS[pool] = rows * vectors.shape[1] + vectors.indices
    return keys


def _term_shares(terms: QueryTerms, pool: CandidatePool, top: np.ndarray) -> np.ndarray:
    """picks x terms: each term's query weight times its TF-IDF value in the pick's paper, 0 where
    the paper does not have it. One search for all of a reader's picks and terms."""
    keys = _pool_keys(pool)
    shares = np.zeros((len(top), len(terms.columns)))
    if not len(keys) or not shares.size:
        return shares
    wanted = top.astype(np.int64)[:, None] * pool.vectors.shape[1] + terms.columns[None, :]
    at = np.minimum(np.searchsorted(keys, wanted), len(keys) - 1)
    return np.where(keys[at] == wanted, terms.weights[None, :] * pool.vectors.data[at], 0.0)


def _shared_terms(
    terms: QueryTerms,
    strongest: list[int],
    pool: CandidatePool,
    index: int,
    found: Sequence[str],
    tokens: _Tokens,
) -> list[str]:
    """The reader's words that carry the paper's similarity (`strongest`: the terms the paper has,
    by _term_shares, strongest first), as they wrote them, leaving out a word that another term shown
    or a "Mentions" reason already says."""
    if not strongest:
        return []
    said = set().union(*(tokens[p] for p in found))
    chosen: list[str] = []
    for i in strongest:
        words = terms.words[i]
        # Hashed columns collide: a share counts only if the paper really has the gram.
        if words & said or not pool.has_token(index, terms.grams[i]):
            continue
        said |= words
        chosen.append(terms.quotes[i])
        if len(chosen) == TERMS_SHOWN:
            break
    return chosen

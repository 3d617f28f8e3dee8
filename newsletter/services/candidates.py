"""The inputs of ranking, built once per chunk: the subscribers' profiles, and the candidate papers
as matrices (`CandidatePool`: text vectors, topic strengths, popularity, recency). ranking.rank scores
one against the other; reasons.py words the result.
"""

from __future__ import annotations

import math
import re
from collections import OrderedDict, defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import cached_property

import numpy as np
from scipy import sparse
from sklearn.preprocessing import normalize

from papers.selectors import CandidatePaper
from papers.services.records import author_key, title_key
from papers.services.text import (
    N_FEATURES,
    PhraseSet,
    content_tokens,
    feature_counts,
    features,
    gram_counts,
    paper_text,
    phrase_grams,
    tfidf,
)

# Popularity on a fixed scale (upvotes plus stars/20 at which it counts fully), not relative to the
# most popular paper of the pool: a pool-relative scale made scores depend on the chunk.
POPULARITY_FULL = 500
RECENCY_DAYS = 14.0
MAX_PHRASE_WORDS = 4
TITLE_MIN_WORDS = 3  # an interest part this long may be a paper's title
IMPLIED_MIN = 0.5  # of the closest topic's cosine: topics less close are not implied

_PHRASE_SPLIT = re.compile(r"[,;\n]+")  # also splits the followed authors
_TITLE_SPLIT = re.compile(r"[;\n]+")


@dataclass(frozen=True, eq=False)
class Taste:
    """A subscriber's fitted feedback model (stored in ReaderModel): a sparse weight vector over the
    hashed text features, and the papers they liked, latest first, for the reasons."""

    features: np.ndarray  # int32 feature columns
    weights: np.ndarray  # float32, aligned with `features`
    liked: tuple[CandidatePaper, ...] = ()
    threshold: float = 0.25  # the score at which the model alone makes a paper eligible
    confidence: float = 1.0  # 0..1, how much evidence the model has: its weight in ranking


@dataclass(frozen=True)
class Profile:
    """What ranking needs to know about one subscriber."""

    subscriber_id: int
    topic_ids: tuple[int, ...]
    interests: str
    excluded_keywords: str
    limit: int
    since: datetime  # papers ingested after this instant are in the window
    anchors: tuple[CandidatePaper, ...] = ()  # papers the interests name by title (`title_keys`)
    taste: Taste | None = None
    followed_authors: str = ""
    # Topics the interests' text is close to, (topic id, 0..1 relative closeness): `implied_topics`.
    implied_topics: tuple[tuple[int, float], ...] = ()

    @property
    def followed(self) -> frozenset[str]:
        """The author keys (papers.services.parsers.author_key) of the authors they follow."""
        return frozenset(k for k in map(author_key, _PHRASE_SPLIT.split(self.followed_authors)) if k)

    @property
    def phrases(self) -> list[str]:
        """Short comma-separated parts of the interests are keywords; long sentences are not."""
        return _phrases(self.interests)

    @property
    def excluded(self) -> list[str]:
        return [p for p in _PHRASE_SPLIT.split(self.excluded_keywords) if content_tokens(p)]


def _title_parts(interests: str) -> dict[str, str]:
    """The parts of the interests that may be a paper's title, by title key: the whole text, each
    line or ;-separated part, and each comma-separated part long enough (titles may hold commas)."""
    parts = [interests, *_TITLE_SPLIT.split(interests), *_PHRASE_SPLIT.split(interests)]
    keyed = ((title_key(p), p) for p in parts if len(p.split()) >= TITLE_MIN_WORDS)
    return {key: part for key, part in keyed if key}


def title_keys(interests: str) -> list[str]:
    return list(_title_parts(interests))


def _unnamed(interests: str, named: Sequence[CandidatePaper]) -> str:
    """The interests without the parts that name these papers: a named paper's own title and
    abstract stand for it in the query, its title twice over would only tilt the query to it."""
    keys = {title_key(paper.title) for paper in named}
    for key, part in _title_parts(interests).items():
        if key in keys:
            interests = interests.replace(part, " ")
    return interests


def _phrases(text: str) -> list[str]:
    parts = (p.strip().strip("\"'") for p in _PHRASE_SPLIT.split(text))
    return [p for p in parts if p and 0 < len(content_tokens(p)) <= MAX_PHRASE_WORDS]


@dataclass(frozen=True)
class Pick:
    paper: CandidatePaper
    score: float
    reasons: tuple[str, ...]


def text_fingerprint(paper: CandidatePaper) -> int:
    """What a paper's vectors depend on: its title and abstract (an edited paper is computed again)."""
    return hash((paper.title, paper.abstract))


@dataclass(frozen=True)
class PaperFeatures:
    """What ranking needs from one paper's text: computed once per worker process, not per chunk."""

    fingerprint: int  # hash of title and abstract: an edited paper is computed again
    indices: np.ndarray  # its row of `feature_counts`, as CSR parts
    data: np.ndarray
    grams: np.ndarray  # sorted hash() of its grams, for exact checks of hashed hits (~3 KB)

    def has(self, gram: str) -> bool:
        key = hash(gram)
        position = np.searchsorted(self.grams, key)
        return bool(position < len(self.grams) and self.grams[position] == key)


class FeatureCache:
    """Most recently used papers' features. Every chunk of a dispatch round ranks nearly the same
    candidates, so after the first chunk a worker computes nothing but the new papers."""

    def __init__(self, max_papers: int) -> None:
        self.max_papers = max_papers
        self._entries: OrderedDict[int, PaperFeatures] = OrderedDict()

    def get(self, papers: Sequence[CandidatePaper]) -> list[PaperFeatures]:
        found: list[PaperFeatures | None] = []
        missing: list[int] = []
        for index, paper in enumerate(papers):
            entry = self._entries.get(paper.id)
            if entry is not None and entry.fingerprint == text_fingerprint(paper):
                self._entries.move_to_end(paper.id)
                found.append(entry)
            else:
                found.append(None)
                missing.append(index)
        if missing:
            gram_lists = [features(paper_text(papers[i].title, papers[i].abstract)) for i in missing]
            counts = gram_counts(gram_lists)
            for row, (index, grams) in enumerate(zip(missing, gram_lists, strict=True)):
                paper = papers[index]
                start, end = counts.indptr[row], counts.indptr[row + 1]
                entry = PaperFeatures(
                    fingerprint=text_fingerprint(paper),
                    indices=counts.indices[start:end].copy(),
                    data=counts.data[start:end].copy(),
                    grams=np.unique(np.fromiter(map(hash, grams), dtype=np.int64, count=len(grams))),
                )
                self._entries[paper.id] = entry
                found[index] = entry
            while len(self._entries) > self.max_papers:
                self._entries.popitem(last=False)
        return found  # type: ignore[return-value]


_features = FeatureCache(max_papers=5000)


class CandidatePool:
    """Candidate papers with the matrices ranking needs, built once and shared by a chunk."""

    def __init__(
        self, papers: Sequence[CandidatePaper], topic_names: Mapping[int, str], now: datetime
    ) -> None:
        self.papers = list(papers)
        self.topic_names = dict(topic_names)
        self.topic_column = {topic_id: i for i, topic_id in enumerate(sorted(self.topic_names))}
        # A quiet window has no candidates; the matrices are then empty, not an error, so a chunk
        # with nothing new skips (or says "nothing new") and the manage page still renders.
        self.features = _features.get(self.papers)
        self.counts = _counts(self.features)
        self.vectors = tfidf(self.counts) if self.papers else self.counts
        self.vectors.sort_indices()  # reasons look features up in a row by binary search
        # The transpose, as CSR, for the chunk's products (interests, models, named and liked
        # papers): `@ vectors.T` would convert it again for each of them, a quarter of their cost.
        self.vectors_t = self.vectors.T.tocsr()
        # How strongly each paper belongs to each topic (PaperTopic.score), not a yes/no.
        triples = [
            (i, self.topic_column[t], score)
            for i, p in enumerate(self.papers)
            for t, score in zip(p.topic_ids, p.topic_scores, strict=True)
            if t in self.topic_column
        ]
        rows, cols, scores = zip(*triples, strict=True) if triples else ((), (), ())
        self.topics = sparse.csr_matrix(
            (np.array(scores, dtype=np.float32), (rows, cols)),
            shape=(len(self.papers), max(len(self.topic_column), 1)),
        )
        self.ingested = np.array([p.ingested_at.timestamp() for p in self.papers], dtype=np.float64)
        heat = np.array(
            [math.log1p((p.upvotes or 0) + (p.github_stars or 0) / 20) for p in self.papers], dtype=np.float64
        )
        self.popularity = np.minimum(heat / math.log1p(POPULARITY_FULL), 1.0)
        reference = [(p.published_at or p.ingested_at).timestamp() for p in self.papers]
        age_days = (now.timestamp() - np.array(reference, dtype=np.float64)) / 86400.0
        self.recency = np.clip(1.0 - age_days / RECENCY_DAYS, 0.0, 1.0)

    def __len__(self) -> int:
        return len(self.papers)

    @cached_property
    def key(self) -> tuple[tuple[int, int], ...]:
        """The papers, in order, with their texts' fingerprints: all its vectors depend on."""
        pairs = zip(self.papers, self.features, strict=True)
        return tuple((paper.id, entry.fingerprint) for paper, entry in pairs)

    @cached_property
    def by_author(self) -> dict[str, list[int]]:
        """The pool's papers (column numbers) by author key; built only when a reader follows someone."""
        columns: dict[str, list[int]] = defaultdict(list)
        for column, paper in enumerate(self.papers):
            for name in paper.authors:
                columns[author_key(name)].append(column)
        return dict(columns)

    def has_token(self, index: int, token: str) -> bool:
        return self.features[index].has(token)

    def has_phrase(self, index: int, phrase: str) -> bool:
        """Whether the paper really has every gram of `phrase` (the exact check of a hashed hit)."""
        grams = phrase_grams(phrase)
        return bool(grams) and all(self.features[index].has(gram) for gram in grams)


class PhraseHits:
    """Which of the chunk's phrases occur in which paper, and how many of each subscriber's do."""

    def __init__(self, phrase_lists: Sequence[list[str]], pool: CandidatePool) -> None:
        lowered = [sorted({p.lower() for p in phrases}) for phrases in phrase_lists]
        vocabulary = sorted({p for phrases in lowered for p in phrases})
        self.column = {p: i for i, p in enumerate(vocabulary)}
        present = PhraseSet(vocabulary).counts(pool.counts) > 0  # p x k
        # The hashed feature columns collide (2**18 of them for every word pair of every paper:
        # "speech recognition" and "face year" share one), so each hit is confirmed on the paper's
        # real grams. Only hits are checked, against grams cached per process.
        for paper_index, column in zip(*np.nonzero(present), strict=True):
            if not pool.has_phrase(int(paper_index), vocabulary[column]):
                present[paper_index, column] = False
        self.present = present.astype(np.float32)
        rows = [i for i, phrases in enumerate(lowered) for _ in phrases]
        cols = [self.column[p] for phrases in lowered for p in phrases]
        chosen = sparse.csr_matrix(
            (np.ones(len(rows), dtype=np.float32), (rows, cols)),
            shape=(len(lowered), max(len(vocabulary), 1)),
        )
        self.counts = (
            np.asarray(chosen @ self.present.T) if vocabulary else np.zeros((len(lowered), len(pool)))
        )

    def found(self, phrases: Sequence[str], paper_index: int) -> list[str]:
        return [p for p in phrases if self.present[paper_index, self.column[p.lower()]]]


def paper_vectors(groups: Sequence[Sequence[CandidatePaper]]) -> tuple[sparse.csr_matrix, np.ndarray]:
    """TF-IDF rows of every paper of every group, and where each group's rows start (offsets)."""
    papers = [paper for group in groups for paper in group]
    offsets = np.zeros(len(groups) + 1, dtype=np.int64)
    np.cumsum([len(group) for group in groups], out=offsets[1:])
    counts = _counts(_features.get(papers))
    return (tfidf(counts) if papers else counts), offsets


def interest_queries(
    interests: Sequence[str], anchors: Sequence[Sequence[CandidatePaper]]
) -> sparse.csr_matrix:
    """One L2-normalized query row per profile: the interests' text plus the papers it names."""
    text = tfidf(
        feature_counts([_unnamed(text, named) for text, named in zip(interests, anchors, strict=True)])
    )
    if not any(anchors):
        return text
    vectors, offsets = paper_vectors(anchors)
    member = sparse.csr_matrix(
        (np.ones(int(offsets[-1]), dtype=np.float32), np.arange(int(offsets[-1])), offsets),
        shape=(len(interests), int(offsets[-1])),
    )
    return normalize(text + member @ vectors, copy=False).tocsr()


def _counts(entries: Sequence[PaperFeatures]) -> sparse.csr_matrix:
    indptr = np.zeros(len(entries) + 1, dtype=np.int64)
    np.cumsum([len(f.indices) for f in entries], out=indptr[1:])
    data = np.concatenate([f.data for f in entries] or [np.zeros(0, np.float32)])
    indices = np.concatenate([f.indices for f in entries] or [np.zeros(0, np.int32)])
    return sparse.csr_matrix((data, indices, indptr), shape=(len(entries), N_FEATURES))


_topic_vectors: dict[tuple, tuple[list[int], sparse.csr_matrix]] = {}


def implied_topics(
    interests: Sequence[str], topics: Mapping[int, str]
) -> list[tuple[tuple[int, float], ...]]:
    """The topics each interest text is closest to (cosine with the topic's name, description and
    keywords), relative to the closest: a reader of "video-language models" gets papers of the
    multimodal topic a little higher. Depends on the text and the topics only, never on the pool."""
    key = tuple(sorted(topics.items()))
    if key not in _topic_vectors:
        _topic_vectors.clear()  # the topics changed (an operator edited one): one entry is enough
        ids = [topic_id for topic_id, _ in key]
        _topic_vectors[key] = (ids, tfidf(feature_counts([text for _, text in key])) if key else None)
    ids, vectors = _topic_vectors[key]
    if vectors is None:
        return [() for _ in interests]
    affinity = (tfidf(feature_counts(list(interests))) @ vectors.T).toarray()
    result = []
    for row in affinity:
        best = row.max()
        columns = np.flatnonzero(row >= IMPLIED_MIN * best) if best > 0 else []
        result.append(tuple((ids[c], round(float(row[c] / best), 4)) for c in columns))
    return result

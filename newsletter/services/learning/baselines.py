"""The baselines eval_ranking measures next to the production ranking, on the same readers, pool and
feedback: plain retrieval and a plain learner, so a number of the project always has a reference
from the same run.

- `tfidf_title`: scikit-learn's TfidfVectorizer over title + abstract (English stop words, sublinear
  tf), papers in order of cosine with the reader's query text (the anchor's title in the default
  protocol; the key keeps its historical name).
- `bm25`: rank_bm25's BM25Okapi over the same tokens.
- `random`: a fixed-seed shuffle.
- `learner`: a reference learner in the manner of arxiv-sanity-lite: a LinearSVC on the TF-IDF rows,
  the query text as an extra positive, the reader's likes as positives and dismissals as negatives,
  papers already shown excluded. With no negative (likes-only feedback) it ranks by cosine with the
  centroid of the positives.

The first three do not learn: their later rounds are the next papers of the same order. Everything
here is pure: records in, precision per round out.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence

import numpy as np
from rank_bm25 import BM25Okapi
from scipy import sparse
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize
from sklearn.svm import LinearSVC

from papers.services.records import PaperRecord

EVAL_LIMIT = 10
RANDOM_SEED = 0
LEARNER_C = 0.1
BASELINES = ("tfidf_title", "bm25", "random", "learner")

# Marks of one round: shown papers, the reader's relevant papers -> {paper: liked?} (absent: unmarked).
Marker = Callable[[Sequence[str], set[str]], dict[str, bool]]


def baselines_measure(
    *,
    pool: dict[str, PaperRecord],
    queries: Sequence[str],
    excluded: Sequence[set[str]],
    relevant: Sequence[set[str]],
    rounds: int,
    marker: Marker,
) -> list[dict[str, list[float]]]:
    """Precision per round of each baseline, per reader. Reader i queries with `queries[i]`, never
    never gets the papers of `excluded[i]` (its anchor, and the papers of its library) and calls
    `relevant[i]` similar."""
    keys = list(pool)
    vectorizer = TfidfVectorizer(stop_words="english", sublinear_tf=True)
    documents = vectorizer.fit_transform([f"{r.title} {r.abstract}" for r in pool.values()]).tocsr()
    analyzer = vectorizer.build_analyzer()
    bm25 = BM25Okapi([analyzer(f"{r.title} {r.abstract}") or ["-"] for r in pool.values()])
    shuffler = random.Random(RANDOM_SEED)
    results = []
    for query, known, members in zip(queries, excluded, relevant, strict=True):
        candidates = np.array([i for i, k in enumerate(keys) if k not in known])
        vector = vectorizer.transform([query])
        cosine = (vector @ documents.T).toarray()[0]
        orders = {
            "tfidf_title": _ordered(candidates, cosine),
            "bm25": _ordered(candidates, bm25.get_scores(analyzer(query))),
            "random": [candidates[i] for i in shuffler.sample(range(len(candidates)), len(candidates))],
        }
        row = {name: _precision([keys[i] for i in order], members, rounds) for name, order in orders.items()}
        row["learner"] = _learner(keys, documents, vector, candidates, members, rounds, marker)
        results.append(row)
    return results


def _ordered(candidates: np.ndarray, scores: np.ndarray) -> list[int]:
    """Best score first; ties in pool order (stable)."""
    return [int(i) for i in candidates[np.argsort(-scores[candidates], kind="stable")]]


def _precision(order: list[str], relevant: set[str], rounds: int) -> list[float]:
    return [
        len(relevant.intersection(order[r * EVAL_LIMIT : (r + 1) * EVAL_LIMIT])) / EVAL_LIMIT
        for r in range(rounds)
    ]


def _learner(
    keys: list[str],
    documents: sparse.csr_matrix,
    query: sparse.csr_matrix,
    candidates: np.ndarray,
    relevant: set[str],
    rounds: int,
    marker: Marker,
) -> list[float]:
    position = {k: i for i, k in enumerate(keys)}
    liked: list[int] = []
    dismissed: list[int] = []
    unseen = list(candidates)
    precision = []
    for _ in range(rounds):
        positives = sparse.vstack([query, documents[liked]]).tocsr()
        if dismissed:
            rows = sparse.vstack([positives, documents[dismissed]]).tocsr()
            labels = np.r_[np.ones(positives.shape[0]), np.zeros(len(dismissed))]
            svm = LinearSVC(C=LEARNER_C, class_weight="balanced", random_state=0).fit(rows, labels)
            scores = svm.decision_function(documents)
        else:
            centroid = normalize(sparse.csr_matrix(positives.mean(axis=0)))
            scores = (documents @ centroid.T).toarray().ravel()
        shown = _ordered(np.array(unseen), scores)[:EVAL_LIMIT] if unseen else []
        precision.append(len(relevant.intersection(keys[i] for i in shown)) / EVAL_LIMIT)
        marks = marker([keys[i] for i in shown], relevant)
        liked += [position[k] for k, like in marks.items() if like]
        dismissed += [position[k] for k, like in marks.items() if not like]
        gone = set(shown)
        unseen = [i for i in unseen if i not in gone]
    return precision

"""Learning from "More like this" / "Not for me": one linear model per subscriber on the text features.

Positives are the subscriber's interests (their text and the papers they name), as a first positive
the way arxiv-sanity-lite uses a tag's query, plus every paper they liked; negatives are the papers
they dismissed. Every vector is the TF-IDF row of papers.services.text, so "like" means what ranking
and tagging mean by it.

- With fewer than MIN_RATINGS_CLASSIFIER ratings, or no dismissal yet: Rocchio,
  w = mean(positives) - ROCCHIO_NEGATIVE * mean(negatives).
- From there: a linear SVM (LinearSVC, C = 0.1, balanced classes) plus that Rocchio vector as a prior,
  each scaled so its strongest rated paper scores 1. On the shared lists (`eval_ranking`, rounds 2 / 3)
  the SVM alone scores 0.40 / 0.60, Rocchio alone 0.65 / 0.60, the sum 0.60 / 0.68
  (docs/ranking.md).

The sum is scaled so that the strongest rated paper scores ±1, pruned to its MAX_WEIGHTS largest
weights and stored in ReaderModel. Fitting runs in a Celery task when feedback changes; ranking only
multiplies a chunk's stored vectors, stacked, with the papers' vectors.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from django.db import transaction
from django.utils import timezone
from scipy import sparse
from sklearn.svm import LinearSVC

from newsletter.models import Feedback, ReaderModel, Subscriber
from newsletter.selectors import profiles_complete
from newsletter.services.candidates import Profile, interest_queries, paper_vectors
from papers.selectors import papers_by_ids
from papers.services.text import N_FEATURES

MIN_RATINGS_CLASSIFIER = 5  # ratings (likes + dismissals, the interests not counted) for the SVM
ROCCHIO_NEGATIVE = 0.25  # weight of the dismissed papers' centroid
CLASSIFIER_C = 0.1
ROCCHIO_PRIOR = 4.0  # weight of the scaled Rocchio vector added to the scaled SVM vector
MAX_WEIGHTS = 4000  # nonzero weights kept: bounds the stored row and the chunk's sparse product
LIKED_KEPT = 10  # latest liked papers remembered, for "Like “…”, which you liked"


@dataclass(frozen=True, eq=False)
class Fitted:
    kind: str  # ReaderModel.Kind
    features: np.ndarray  # int32 feature columns
    weights: np.ndarray  # float32


def taste_fit(*, positives: sparse.csr_matrix, negatives: sparse.csr_matrix, ratings: int) -> Fitted:
    """The weight vector for these rated rows (TF-IDF vectors), pure: no database."""
    rated = sparse.vstack([positives, negatives]).tocsr()
    rocchio = _centroid(positives) - ROCCHIO_NEGATIVE * _centroid(negatives)
    if ratings >= MIN_RATINGS_CLASSIFIER and positives.shape[0] and negatives.shape[0]:
        labels = np.r_[np.ones(positives.shape[0]), np.zeros(negatives.shape[0])]
        svm = LinearSVC(C=CLASSIFIER_C, class_weight="balanced", random_state=0).fit(rated, labels)
        weights = _scaled(svm.coef_.ravel(), rated) + ROCCHIO_PRIOR * _scaled(rocchio, rated)
        kind = ReaderModel.Kind.CLASSIFIER
    else:
        weights, kind = rocchio, ReaderModel.Kind.ROCCHIO
    kept = np.flatnonzero(weights)
    if len(kept) > MAX_WEIGHTS:
        kept = np.sort(kept[np.argpartition(-np.abs(weights[kept]), MAX_WEIGHTS)[:MAX_WEIGHTS]])
    pruned = np.zeros(N_FEATURES)
    pruned[kept] = weights[kept]
    pruned = _scaled(pruned, rated)
    return Fitted(kind=kind, features=kept.astype(np.int32), weights=pruned[kept].astype(np.float32))


def _centroid(rows: sparse.csr_matrix) -> np.ndarray:
    return np.asarray(rows.mean(axis=0)).ravel() if rows.shape[0] else np.zeros(N_FEATURES)


def _scaled(weights: np.ndarray, rated: sparse.csr_matrix) -> np.ndarray:
    """`weights` scaled so that the strongest rated row scores ±1 (comparable units to add and rank)."""
    strongest = np.abs(rated @ weights).max() if rated.shape[0] else 0.0
    return weights / strongest if strongest > 0 else weights


def reader_model_fit(*, subscriber_id: int) -> ReaderModel | None:
    """Fit and store the subscriber's model from their feedback; without feedback, drop it."""
    subscriber = Subscriber.objects.filter(pk=subscriber_id).first()
    if subscriber is None:
        return None
    rows = list(
        Feedback.objects.filter(subscriber_id=subscriber_id)
        .order_by("-updated_at", "-id")
        .values_list("paper_id", "choice")
    )
    if not rows:
        ReaderModel.objects.filter(subscriber_id=subscriber_id).delete()
        return None
    papers = {p.id: p for p in papers_by_ids(ids=[paper_id for paper_id, _ in rows])}
    liked = [papers[i] for i, choice in rows if choice == Feedback.Choice.MORE]
    dismissed = [papers[i] for i, choice in rows if choice == Feedback.Choice.LESS]
    vectors, offsets = paper_vectors([liked, dismissed])
    positives = vectors[: offsets[1]]
    if subscriber.interests.strip():
        (profile,) = profiles_complete([_bare_profile(subscriber)], models=False)
        positives = sparse.vstack([interest_queries([subscriber.interests], [profile.anchors]), positives])
    fitted = taste_fit(positives=positives.tocsr(), negatives=vectors[offsets[1] :], ratings=len(rows))
    with transaction.atomic():
        model, _ = ReaderModel.objects.update_or_create(
            subscriber_id=subscriber_id,
            defaults={
                "kind": fitted.kind,
                "ratings": len(rows),
                "features": fitted.features.tobytes(),
                "weights": fitted.weights.tobytes(),
                "liked": [p.id for p in liked[:LIKED_KEPT]],
                "fitted_at": timezone.now(),
            },
        )
    return model


def _bare_profile(subscriber: Subscriber) -> Profile:
    return Profile(
        subscriber_id=subscriber.pk,
        topic_ids=(),
        interests=subscriber.interests,
        excluded_keywords="",
        limit=0,
        since=timezone.now(),
    )

"""Learning from "More like this" / "Not for me": one linear model per subscriber on the text features.

Positives are the subscriber's interests (their text and the papers they name), as a first positive
the way arxiv-sanity-lite uses a tag's query, plus every paper they liked and the abstracts of their
library (learning.library); negatives are the papers they dismissed and, as weak negatives
(PASSED_WEIGHT), the papers their digests showed that they neither liked nor dismissed. Every vector
is the TF-IDF row of papers.services.text, so "like" means what ranking and tagging mean by it.

- Query expansion (Rocchio): w = mean(positives) - ROCCHIO_NEGATIVE * mean(dismissed): each like
  widens the interests. The passed papers are not subtracted: the reader may simply not have clicked.
- With MIN_RATINGS_CLASSIFIER likes + dismissals + passed papers and both classes: a linear SVM
  (LinearSVC, C = 0.1, balanced classes, passed papers at PASSED_WEIGHT) plus ROCCHIO_PRIOR times
  the Rocchio vector, each scaled so its strongest rated paper scores 1. Likes alone therefore fit
  the classifier too, against what the reader was shown and passed over.

The sum is scaled so that the strongest rated paper scores ±1, pruned to its MAX_WEIGHTS largest
weights and stored in ReaderModel with
- `threshold`: ELIGIBLE_SHARE of the median score of the reader's own positives, the score at which
  the model alone makes a paper eligible (relative to this reader, not a fixed number);
- `confidence`: the square root of evidence / EVIDENCE_FULL, capped at 1 (a like or dismissal is 1,
  a passed paper PASSED_WEIGHT), which ranking multiplies the model's weight by.
Measured alternatives: docs/ranking.md. Fitting runs in a Celery task when feedback changes;
ranking only multiplies a chunk's stored vectors, stacked, with the papers' vectors.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np
from django.db import transaction
from django.utils import timezone
from scipy import sparse
from sklearn.svm import LinearSVC

from newsletter.library_selectors import interests_with_library, library_abstracts, library_titles
from newsletter.models import DeliveryItem, Feedback, ReaderModel, Subscriber
from newsletter.selectors import profiles_complete
from newsletter.services.candidates import Profile, interest_queries, paper_vectors
from papers.selectors import papers_by_ids
from papers.services.text import N_FEATURES, paper_text, vectorize

MIN_RATINGS_CLASSIFIER = 5  # likes (library abstracts too) + dismissals + papers passed over, for the SVM
ROCCHIO_NEGATIVE = 0.25  # weight of the dismissed papers' centroid
PASSED_WEIGHT = 0.5  # a paper shown and neither liked nor dismissed: a weak negative
PASSED_KEPT = 500  # latest papers shown that count as passed over
CLASSIFIER_C = 0.1
ROCCHIO_PRIOR = 4.0  # weight of the scaled widened query added to the scaled SVM vector
ELIGIBLE_SHARE = 0.1  # of the median score of the reader's own positives: eligible on the model alone
EVIDENCE_FULL = 5.0  # evidence (likes + dismissals + PASSED_WEIGHT x passed) at full confidence
MAX_WEIGHTS = 4000  # nonzero weights kept: bounds the stored row and the chunk's sparse product
LIKED_KEPT = 10  # latest liked papers remembered, for "Because you liked “…”"


@dataclass(frozen=True, eq=False)
class Fitted:
    kind: str  # ReaderModel.Kind
    features: np.ndarray  # int32 feature columns
    weights: np.ndarray  # float32
    threshold: float  # the score at which the model alone makes a paper eligible
    confidence: float  # 0..1


def taste_fit(
    *,
    interests: sparse.csr_matrix,
    liked: sparse.csr_matrix,
    dismissed: sparse.csr_matrix,
    passed: sparse.csr_matrix,
) -> Fitted:
    """The weight vector for these TF-IDF rows, pure: no database. `interests` is the interest
    query (no row without interests), `passed` the papers shown and neither liked nor dismissed."""
    positives = sparse.vstack([interests, liked]).tocsr()
    negatives = sparse.vstack([dismissed, passed]).tocsr()
    rated = sparse.vstack([positives, negatives]).tocsr()
    # Query expansion: each liked paper widens the interests (Rocchio: the centroid of the interests
    # and the likes; the passed papers are too noisy to subtract, the reader may simply not have
    # clicked). Measured against interests + 2 x centroid(likes): docs/ranking.md.
    widened = _centroid(positives) - ROCCHIO_NEGATIVE * _centroid(dismissed)
    evidence = liked.shape[0] + dismissed.shape[0] + PASSED_WEIGHT * passed.shape[0]
    if (
        positives.shape[0]
        and negatives.shape[0]
        and liked.shape[0] + negatives.shape[0] >= MIN_RATINGS_CLASSIFIER
    ):
        labels = np.r_[np.ones(positives.shape[0]), np.zeros(negatives.shape[0])]
        weight = np.r_[
            np.ones(positives.shape[0] + dismissed.shape[0]), np.full(passed.shape[0], PASSED_WEIGHT)
        ]
        svm = LinearSVC(C=CLASSIFIER_C, class_weight="balanced", random_state=0)
        svm.fit(rated, labels, sample_weight=weight)
        weights = _scaled(svm.coef_.ravel(), rated) + ROCCHIO_PRIOR * _scaled(widened, rated)
        kind = ReaderModel.Kind.CLASSIFIER
    else:
        weights, kind = widened, ReaderModel.Kind.ROCCHIO
    kept = np.flatnonzero(weights)
    if len(kept) > MAX_WEIGHTS:
        kept = np.sort(kept[np.argpartition(-np.abs(weights[kept]), MAX_WEIGHTS)[:MAX_WEIGHTS]])
    pruned = np.zeros(N_FEATURES)
    pruned[kept] = weights[kept]
    pruned = _scaled(pruned, rated)
    own = positives @ pruned
    return Fitted(
        kind=kind,
        features=kept.astype(np.int32),
        weights=pruned[kept].astype(np.float32),
        threshold=float(ELIGIBLE_SHARE * np.median(own)) if len(own) else 0.0,
        confidence=confidence_of(evidence),
    )


def confidence_of(evidence: float) -> float:
    """The model's share of its full weight in ranking: grows with the evidence, full at EVIDENCE_FULL.
    A square root, not a straight line, so that one like already moves the next digest where the
    reader can see it (one like after a 3-paper digest: 0.63, not 0.4, enough for the liked paper's
    nearest unseen neighbour to lead). The eval protocols reach full confidence after their first
    digest either way: their numbers are the same with both curves (docs/ranking.md)."""
    return min(1.0, (evidence / EVIDENCE_FULL) ** 0.5)


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
    # The reader's library (learning.library): its papers we have are likes (rows above), the others'
    # abstracts further positives, and their bare titles part of the interests.
    library = library_abstracts(subscriber_id=subscriber_id)
    if not rows and not library:
        ReaderModel.objects.filter(subscriber_id=subscriber_id).delete()
        return None
    rated = {paper_id for paper_id, _ in rows}
    passed_ids = [
        paper_id
        for paper_id in DeliveryItem.objects.filter(subscriber_id=subscriber_id)
        .order_by("-id")
        .values_list("paper_id", flat=True)[:PASSED_KEPT]
        if paper_id not in rated
    ]
    papers = {p.id: p for p in papers_by_ids(ids=[*rated, *passed_ids])}
    liked = [papers[i] for i, choice in rows if choice == Feedback.Choice.MORE]
    dismissed = [papers[i] for i, choice in rows if choice == Feedback.Choice.LESS]
    passed = [papers[i] for i in dict.fromkeys(passed_ids) if i in papers]
    vectors, offsets = paper_vectors([liked, dismissed, passed])
    likes = vectors[: offsets[1]]
    if library:
        # An abstract of the library counts as a liked paper's text.
        likes = sparse.vstack([likes, vectorize([paper_text(t, a) for t, a in library])]).tocsr()
    text = interests_with_library(
        subscriber.interests, library_titles(subscriber_ids=[subscriber_id]).get(subscriber_id, ())
    )
    interests = sparse.csr_matrix((0, N_FEATURES), dtype=np.float32)
    if text.strip():
        (profile,) = profiles_complete(
            [dataclasses.replace(_bare_profile(subscriber), interests=text)], models=False
        )
        interests = interest_queries([text], [profile.anchors])
    ratings = len(rows) + len(library)
    fitted = taste_fit(
        interests=interests.tocsr(),
        liked=likes,
        dismissed=vectors[offsets[1] : offsets[2]],
        passed=vectors[offsets[2] :],
    )
    with transaction.atomic():
        model, _ = ReaderModel.objects.update_or_create(
            subscriber_id=subscriber_id,
            defaults={
                "kind": fitted.kind,
                "ratings": ratings,
                "features": fitted.features.tobytes(),
                "weights": fitted.weights.tobytes(),
                "liked": [p.id for p in liked[:LIKED_KEPT]],
                "threshold": fitted.threshold,
                "confidence": fitted.confidence,
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

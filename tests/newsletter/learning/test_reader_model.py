"""Feedback models (learning.reader_model) and how ranking uses them, on the sample papers."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.utils import timezone
from scipy import sparse

from newsletter.models import Feedback, ReaderModel
from newsletter.selectors import profiles_build
from newsletter.services.candidates import CandidatePool, Pick
from newsletter.services.learning.reader_model import (
    MAX_WEIGHTS,
    MIN_RATINGS_CLASSIFIER,
    reader_model_fit,
    taste_fit,
)
from newsletter.services.ranking import rank
from newsletter.services.reasons import because_you_liked
from papers.models import Paper, Topic
from papers.selectors import papers_candidates, topic_names
from papers.services.text import N_FEATURES, paper_text, vectorize
from tests.factories import SubscriberFactory

pytestmark = pytest.mark.django_db


def vectors(count: int, offset: int = 0):
    texts = [f"paper {i} about topic{i % 3} and word{i}" for i in range(offset, offset + count)]
    return vectorize(texts)


NONE = sparse.csr_matrix((0, N_FEATURES), dtype=np.float32)


def test_rocchio_below_a_handful_of_ratings_and_a_classifier_from_there() -> None:
    few = taste_fit(interests=NONE, liked=vectors(2), dismissed=vectors(1, 10), passed=NONE)
    enough = taste_fit(interests=NONE, liked=vectors(3), dismissed=vectors(3, 10), passed=NONE)
    likes_only = taste_fit(interests=vectors(1, 20), liked=vectors(8), dismissed=NONE, passed=NONE)
    passed_over = taste_fit(interests=vectors(1, 20), liked=vectors(2), dismissed=NONE, passed=vectors(8, 10))

    assert MIN_RATINGS_CLASSIFIER > 3
    assert few.kind == ReaderModel.Kind.ROCCHIO
    assert enough.kind == ReaderModel.Kind.CLASSIFIER
    assert likes_only.kind == ReaderModel.Kind.ROCCHIO  # a classifier needs both classes
    assert passed_over.kind == ReaderModel.Kind.CLASSIFIER  # papers passed over are its negatives
    for fitted in (few, enough, likes_only, passed_over):
        assert fitted.features.dtype == np.int32 and fitted.weights.dtype == np.float32
        assert len(fitted.features) == len(fitted.weights) <= MAX_WEIGHTS
        assert np.all(np.diff(fitted.features) > 0)


def test_the_strongest_rated_paper_scores_one() -> None:
    positives, negatives = vectors(3), vectors(3, 10)
    fitted = taste_fit(interests=NONE, liked=positives, dismissed=negatives, passed=NONE)
    weights = np.zeros(positives.shape[1])
    weights[fitted.features] = fitted.weights

    scores = np.r_[positives @ weights, negatives @ weights]

    assert np.abs(scores).max() == pytest.approx(1.0, abs=1e-4)
    assert (positives @ weights).min() > (negatives @ weights).max()


def test_the_threshold_is_relative_to_the_readers_own_positives_and_confidence_grows() -> None:
    fits = [
        taste_fit(interests=vectors(1, 20), liked=vectors(likes), dismissed=NONE, passed=passed)
        for likes, passed in [(1, NONE), (2, vectors(2, 10)), (6, vectors(30, 10))]
    ]

    for fitted in fits:
        weights = np.zeros(N_FEATURES)
        weights[fitted.features] = fitted.weights
        own = sparse.vstack([vectors(1, 20), vectors(1)]) @ weights
        assert 0 < fitted.threshold < own.max()
    assert [f.confidence for f in fits] == sorted(f.confidence for f in fits)
    assert fits[0].confidence < fits[1].confidence < fits[2].confidence == 1.0


def ranked(subscriber, limit: int = 10) -> list[Pick]:
    now = timezone.now()
    pool = CandidatePool(papers_candidates(since=now - timedelta(days=1), limit=1000), topic_names(), now)
    (profile,) = profiles_build(subscribers=[subscriber], since=[now - timedelta(days=1)])
    return rank(profiles=[profile], pool=pool, already_sent=set())[0][:limit]


def rate(subscriber, papers: list[Paper], choice: str) -> None:
    Feedback.objects.bulk_create(Feedback(subscriber=subscriber, paper=p, choice=choice) for p in papers)
    reader_model_fit(subscriber_id=subscriber.pk)


def paper_titled(prefix: str) -> Paper:
    return Paper.objects.get(title__startswith=prefix)


def test_a_liked_paper_lifts_its_neighbours_and_is_named(sample_papers) -> None:
    subscriber = SubscriberFactory(interests="language model")
    liked = paper_titled("W2v-BERT:")
    before = {p.paper.id: p.score for p in ranked(subscriber, limit=300)}

    rate(subscriber, [liked], Feedback.Choice.MORE)
    after = ranked(subscriber, limit=10)

    speech = [p for p in after if "speech" in p.paper.title.lower()]
    assert speech, "papers like the liked speech paper come up"
    assert all(p.score > before.get(p.paper.id, 0.0) for p in speech)
    assert any(because_you_liked(liked.title) in p.reasons for p in after if p.paper.id != liked.pk)


def test_neighbours_of_a_dismissed_paper_sink(sample_papers) -> None:
    # Topics only: the interests would be a positive of the model too, and lift what they match.
    subscriber = SubscriberFactory(topics=[Topic.objects.get(slug="speech-audio")])
    before = ranked(subscriber)
    dismissed, others = before[0].paper, before[1:]
    assert len(others) >= 3
    cosines = (
        vectorize([paper_text(p.paper.title, p.paper.abstract) for p in others])
        @ vectorize([paper_text(dismissed.title, dismissed.abstract)]).T
    )
    closest, farthest = others[int(cosines.argmax())], others[int(cosines.argmin())]

    rate(subscriber, [Paper.objects.get(pk=dismissed.id)], Feedback.Choice.LESS)
    after = {p.paper.id: p for p in ranked(subscriber)}

    drop_dismissed = before[0].score - after[dismissed.id].score
    drop_closest = closest.score - after[closest.paper.id].score
    drop_farthest = farthest.score - after[farthest.paper.id].score
    assert drop_dismissed > drop_closest > drop_farthest >= 0  # the dismissed paper itself sinks most
    assert list(after)[-1] == dismissed.id  # ranked last


def test_stored_weights_are_what_ranking_uses(sample_papers) -> None:
    subscriber = SubscriberFactory(interests="retrieval")
    liked = [paper_titled("RAG and RAU:"), paper_titled("MMed-RAG:")]
    rate(subscriber, liked, Feedback.Choice.MORE)
    model = ReaderModel.objects.get(subscriber=subscriber)
    (profile,) = profiles_build(subscribers=[subscriber], since=[timezone.now()])

    assert model.kind == ReaderModel.Kind.ROCCHIO and model.ratings == 2
    assert sorted(model.liked) == sorted(p.pk for p in liked)
    assert np.array_equal(profile.taste.features, np.frombuffer(bytes(model.features), dtype=np.int32))
    assert {p.id for p in profile.taste.liked} == {p.pk for p in liked}
    # Zeroing the stored weights takes the learned part out of ranking again.
    with_model = ranked(subscriber)
    ReaderModel.objects.filter(pk=model.pk).update(
        weights=np.zeros(len(profile.taste.features), dtype=np.float32).tobytes()
    )
    without = ranked(subscriber)
    assert [p.score for p in with_model] != [p.score for p in without]
    assert not any(r.startswith("Because you liked") for p in without for r in p.reasons)


def test_a_chunk_with_and_without_models_ranks_each_as_if_alone(sample_papers) -> None:
    now = timezone.now()
    readers = [SubscriberFactory(interests="speech recognition") for _ in range(3)]
    rate(readers[0], [paper_titled("W2v-BERT:")], Feedback.Choice.MORE)
    rate(readers[2], [paper_titled("Ask2Mask:")], Feedback.Choice.LESS)
    pool = CandidatePool(papers_candidates(since=now - timedelta(days=1), limit=1000), topic_names(), now)
    profiles = profiles_build(subscribers=readers, since=[now - timedelta(days=1)] * 3)

    together = rank(profiles=profiles, pool=pool, already_sent=set())
    alone = [rank(profiles=[p], pool=pool, already_sent=set())[0] for p in profiles]

    assert together == alone
    assert together[0] != together[1] != together[2]

"""Feedback (newsletter.services.feedback): one row per paper, the latest choice wins, a refit queued."""

from __future__ import annotations

import pytest

from newsletter.models import Feedback, ReaderModel
from newsletter.services.feedback import feedback_record, feedback_remove
from tests.factories import PaperFactory, SubscriberFactory

pytestmark = pytest.mark.django_db


def test_the_latest_choice_wins_on_one_row() -> None:
    subscriber, paper = SubscriberFactory(), PaperFactory()

    feedback_record(subscriber=subscriber, paper=paper, choice="more")
    feedback_record(subscriber=subscriber, paper=paper, choice="less")

    (row,) = Feedback.objects.filter(subscriber=subscriber)
    assert (row.paper_id, row.choice) == (paper.pk, Feedback.Choice.LESS)
    assert row.updated_at >= row.created_at


def test_an_unknown_choice_is_refused_and_nothing_is_stored() -> None:
    with pytest.raises(ValueError, match="unknown feedback choice"):
        feedback_record(subscriber=SubscriberFactory(), paper=PaperFactory(), choice="maybe")

    assert not Feedback.objects.exists()


def test_the_model_is_refitted_once_the_transaction_commits(django_capture_on_commit_callbacks) -> None:
    subscriber = SubscriberFactory(interests="speech recognition")
    liked = PaperFactory(title="Robust speech recognition", abstract="Speech recognition for noisy audio.")

    with django_capture_on_commit_callbacks() as callbacks:
        feedback_record(subscriber=subscriber, paper=liked, choice="more")
        assert not ReaderModel.objects.exists()  # nothing is fitted inside the request

    assert len(callbacks) == 1
    for callback in callbacks:
        callback()  # the task, eager in tests
    model = ReaderModel.objects.get(subscriber=subscriber)
    assert model.liked == [liked.pk]
    assert model.ratings == 1


def test_removing_feedback_refits_and_without_feedback_the_model_goes(
    django_capture_on_commit_callbacks,
) -> None:
    subscriber, paper = SubscriberFactory(), PaperFactory()
    with django_capture_on_commit_callbacks(execute=True):
        feedback_record(subscriber=subscriber, paper=paper, choice="less")
    assert ReaderModel.objects.filter(subscriber=subscriber).exists()

    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        assert feedback_remove(subscriber=subscriber, paper=paper) is True

    assert len(callbacks) == 1
    assert not Feedback.objects.exists()
    assert not ReaderModel.objects.filter(subscriber=subscriber).exists()
    with django_capture_on_commit_callbacks() as callbacks:
        assert feedback_remove(subscriber=subscriber, paper=paper) is False
    assert callbacks == []

"""Feedback (learning.feedback): one row per paper, the latest choice wins; a task fits."""

from __future__ import annotations

import pytest

from newsletter.models import Feedback, ReaderModel
from newsletter.services.learning.feedback import feedback_record, feedback_remove
from newsletter.tasks import fit_reader_model
from tests.factories import PaperFactory, SubscriberFactory

pytestmark = pytest.mark.django_db


def test_the_latest_choice_wins_on_one_row() -> None:
    subscriber, paper = SubscriberFactory(), PaperFactory()

    feedback_record(subscriber=subscriber, paper_id=paper.pk, choice="more")
    feedback_record(subscriber=subscriber, paper_id=paper.pk, choice="less")

    (row,) = Feedback.objects.filter(subscriber=subscriber)
    assert (row.paper_id, row.choice) == (paper.pk, Feedback.Choice.LESS)
    assert row.updated_at >= row.created_at


def test_an_unknown_choice_is_refused_and_nothing_is_stored() -> None:
    with pytest.raises(ValueError, match="unknown feedback choice"):
        feedback_record(subscriber=SubscriberFactory(), paper_id=PaperFactory().pk, choice="maybe")

    assert not Feedback.objects.exists()


def test_recording_fits_nothing_and_the_fit_task_stores_the_model() -> None:
    subscriber = SubscriberFactory(interests="speech recognition")
    liked = PaperFactory(title="Robust speech recognition", abstract="Speech recognition for noisy audio.")

    feedback_record(subscriber=subscriber, paper_id=liked.pk, choice="more")
    assert not ReaderModel.objects.exists()  # nothing is fitted inside the request

    fit_reader_model.delay(subscriber.pk)  # what the entry point queues on commit (eager in tests)
    model = ReaderModel.objects.get(subscriber=subscriber)
    assert model.liked == [liked.pk]
    assert model.ratings == 1


def test_removing_the_last_feedback_and_refitting_drops_the_model() -> None:
    subscriber, paper = SubscriberFactory(), PaperFactory()
    feedback_record(subscriber=subscriber, paper_id=paper.pk, choice="less")
    fit_reader_model.delay(subscriber.pk)
    assert ReaderModel.objects.filter(subscriber=subscriber).exists()

    assert feedback_remove(subscriber=subscriber, paper_id=paper.pk) is True
    fit_reader_model.delay(subscriber.pk)

    assert not Feedback.objects.exists()
    assert not ReaderModel.objects.filter(subscriber=subscriber).exists()
    assert feedback_remove(subscriber=subscriber, paper_id=paper.pk) is False

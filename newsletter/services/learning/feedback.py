"""A reader's "More like this" / "Not for me": one row per (subscriber, paper), the latest choice wins.

After a change the caller queues the task that refits the subscriber's model
(newsletter.tasks.fit_reader_model, learning.reader_model), so no email ever waits for a fit.
"""

from __future__ import annotations

from collections.abc import Sequence

from newsletter.models import Feedback, Subscriber


def feedback_record(*, subscriber: Subscriber, paper_id: int, choice: str) -> Feedback:
    if choice not in Feedback.Choice.values:
        raise ValueError(f"unknown feedback choice {choice!r}; expected one of {Feedback.Choice.values}")
    feedback, _ = Feedback.objects.update_or_create(
        subscriber=subscriber, paper_id=paper_id, defaults={"choice": choice}
    )
    return feedback


def feedback_remove(*, subscriber: Subscriber, paper_id: int) -> bool:
    """Forget the reader's choice on this paper; False when there was none."""
    deleted, _ = Feedback.objects.filter(subscriber=subscriber, paper_id=paper_id).delete()
    return bool(deleted)


def feedback_record_many(*, subscriber: Subscriber, paper_ids: Sequence[int], choice: str) -> int:
    """feedback_record for many papers in one statement (a library import); how many were given."""
    if choice not in Feedback.Choice.values:
        raise ValueError(f"unknown feedback choice {choice!r}; expected one of {Feedback.Choice.values}")
    Feedback.objects.bulk_create(
        [Feedback(subscriber=subscriber, paper_id=paper_id, choice=choice) for paper_id in paper_ids],
        update_conflicts=True,
        unique_fields=["subscriber", "paper"],
        update_fields=["choice", "updated_at"],
    )
    return len(paper_ids)

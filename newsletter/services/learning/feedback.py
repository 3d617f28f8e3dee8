"""A reader's "More like this" / "Not for me": one row per (subscriber, paper), the latest choice wins.

After a change the caller queues the task that refits the subscriber's model
(newsletter.tasks.fit_reader_model, learning.reader_model), so no email ever waits for a fit.
`like_effect` then tells the reader what their like did, from the same preview the manage page shows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from newsletter.models import Feedback, ReaderModel, Subscriber
from newsletter.selectors import digest_preview
from newsletter.services.reasons import because_you_liked
from papers.selectors import CandidatePaper


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


@dataclass(frozen=True)
class LikeEffect:
    """What a "More like this" has done to the reader's next digest, as the manage page would show it."""

    learned: bool  # the stored model was fitted after the like (the fit runs in a task)
    credited: tuple[str, ...] = ()  # titles of the next digest's papers credited to it, in order
    leads: bool = False  # the first of them is the digest's first paper


def like_effect(*, subscriber: Subscriber, paper: CandidatePaper, now: datetime) -> LikeEffect:
    """So that the page confirming a like claims only what is true: a paper of the preview counts
    only if its reasons credit this like ("Because you liked “…”")."""
    liked_at = Feedback.objects.filter(
        subscriber=subscriber, paper_id=paper.id, choice=Feedback.Choice.MORE
    ).values_list("updated_at", flat=True)
    fitted = ReaderModel.objects.filter(subscriber=subscriber, fitted_at__gte=liked_at[:1])
    if not fitted.exists():
        return LikeEffect(learned=False)
    reason = because_you_liked(paper.title)
    picks = digest_preview(subscriber=subscriber, now=now)
    credited = tuple(pick.paper.title for pick in picks if reason in pick.reasons)
    return LikeEffect(learned=True, credited=credited, leads=bool(credited) and reason in picks[0].reasons)

"""Digest content (newsletter.services.digest): which papers, from which window, recorded, never twice."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from newsletter.models import DeliveryItem
from newsletter.selectors import digest_preview
from newsletter.services.digest import picks_orphans_delete, picks_record, picks_record_portable
from newsletter.tasks import sweep_deliveries
from papers.models import Paper
from tests.factories import DeliveryFactory, PaperFactory, SubscriberFactory, TopicFactory
from tests.newsletter.helpers import build, delivery_for, orphan_pick, quantization_paper

pytestmark = pytest.mark.django_db


# --- windows -----------------------------------------------------------------------------------


def test_only_papers_since_the_previous_digest_are_candidates() -> None:
    now = timezone.now()
    before = quantization_paper("Quantization before the last digest")
    after = quantization_paper("Quantization after the last digest")
    Paper.objects.filter(pk=before.pk).update(ingested_at=now - timedelta(days=2))
    Paper.objects.filter(pk=after.pk).update(ingested_at=now - timedelta(hours=3))
    subscriber = SubscriberFactory(interests="quantization", last_digest_at=now - timedelta(days=1))

    assert list(build(delivery_for(subscriber, now=now)).values()) == [[after.id]]


def test_papers_ingested_after_the_dispatch_wait_for_the_next_digest() -> None:
    now = timezone.now()
    subscriber = SubscriberFactory(interests="quantization")
    delivery = delivery_for(subscriber, now=now - timedelta(minutes=5))
    quantization_paper("Quantization ingested after the dispatch")

    assert build(delivery, now=now) == {delivery.pk: []}


def test_a_window_without_papers_builds_an_empty_digest() -> None:
    now = timezone.now()
    Paper.objects.filter(pk=quantization_paper("Old quantization").pk).update(
        ingested_at=now - timedelta(days=30)
    )
    subscriber = SubscriberFactory(interests="quantization")
    delivery = delivery_for(subscriber, now=now)

    assert build(delivery, now=now) == {delivery.pk: []}
    assert digest_preview(subscriber=subscriber, now=now) == []


# --- recorded picks, never twice ---------------------------------------------------------------


def test_build_records_the_picks_in_order() -> None:
    topic = TopicFactory(slug="efficiency-test", name="Efficiency")
    both = quantization_paper("Quantization for small devices")
    both.topics.add(topic, through_defaults={"score": 1.0})
    keyword = quantization_paper("Quantization without the topic")
    PaperFactory(title="Unrelated", abstract="Nothing to see.")
    now = timezone.now()
    subscriber = SubscriberFactory(interests="quantization", topics=[topic])
    delivery = delivery_for(subscriber, now=now)

    assert build(delivery) == {delivery.pk: [both.id, keyword.id]}

    items = list(DeliveryItem.objects.filter(delivery=delivery).order_by("position"))
    assert [(i.paper_id, i.position, i.subscriber_id) for i in items] == [
        (both.id, 1, subscriber.pk),
        (keyword.id, 2, subscriber.pk),
    ]
    assert items[0].score > items[1].score
    assert items[0].reasons[:2] == ["Matches your topic: Efficiency", "Mentions “quantization”"]
    assert items[1].reasons[0] == "Mentions “quantization”"


def test_a_rebuilt_delivery_is_the_same_digest() -> None:
    """A retry (deferred, re-driven) sends what was recorded, even if better papers came since."""
    now = timezone.now()
    first = quantization_paper("Quantization, first")
    subscriber = SubscriberFactory(interests="quantization")
    delivery = delivery_for(subscriber, now=now + timedelta(hours=1))
    assert build(delivery) == {delivery.pk: [first.id]}

    quantization_paper("Quantization of quantization, better and newer")

    assert build(delivery) == {delivery.pk: [first.id]}
    assert DeliveryItem.objects.filter(delivery=delivery).count() == 1


def test_a_paper_is_never_sent_twice_to_a_subscriber() -> None:
    papers = [quantization_paper(f"Quantization paper {n}") for n in range(3)]
    now = timezone.now()
    subscriber = SubscriberFactory(interests="quantization", papers_per_digest=2)
    monday = delivery_for(subscriber, now=now, period="2026-01-12")
    monday_ids = build(monday)[monday.pk]
    assert len(monday_ids) == 2

    # Tuesday's window overlaps Monday's (and, say, the subscriber asked for a wider one).
    subscriber.last_digest_at = now - timedelta(days=30)
    subscriber.save()
    tuesday = delivery_for(subscriber, now=now + timedelta(days=1), period="2026-01-13")
    tuesday_ids = build(tuesday)[tuesday.pk]

    assert set(monday_ids).isdisjoint(tuesday_ids)
    assert set(monday_ids) | set(tuesday_ids) == {p.id for p in papers}
    # Other subscribers may get the same papers.
    other = SubscriberFactory(interests="quantization", papers_per_digest=3)
    assert set(build(delivery_for(other, now=now))[other.deliveries.get().pk]) == {p.id for p in papers}


def test_the_database_refuses_a_paper_twice_for_one_subscriber() -> None:
    paper = PaperFactory()
    subscriber = SubscriberFactory()
    first, second = DeliveryFactory(subscriber=subscriber), DeliveryFactory(subscriber=subscriber)
    DeliveryItem.objects.create(delivery=first, subscriber=subscriber, paper=paper, position=1, score=1.0)

    with pytest.raises(IntegrityError), transaction.atomic():
        DeliveryItem.objects.create(
            delivery=second, subscriber=subscriber, paper=paper, position=1, score=1.0
        )


@pytest.mark.parametrize("record", [picks_record, picks_record_portable])
def test_picks_of_a_delivery_or_a_paper_that_is_gone_are_not_stored(record) -> None:
    # DeliveryItem has no foreign keys in the database: the INSERT stores only rows whose delivery and
    # paper exist (the portable path filters the same rows).
    subscriber, paper, gone_paper = SubscriberFactory(), PaperFactory(), PaperFactory()
    delivery, gone_delivery = DeliveryFactory(subscriber=subscriber), DeliveryFactory(subscriber=subscriber)
    gone = (gone_delivery.pk, gone_paper.pk)
    gone_delivery.delete()
    gone_paper.delete()

    stored = record(
        [
            (gone[0], subscriber.pk, paper.pk, 1, 1.0, []),
            (delivery.pk, subscriber.pk, gone[1], 1, 1.0, []),
            (delivery.pk, subscriber.pk, paper.pk, 2, 1.0, []),
        ]
    )

    assert stored in ({(delivery.pk, paper.pk)}, None)  # None: the portable path cannot tell
    assert list(DeliveryItem.objects.values_list("delivery_id", "paper_id")) == [(delivery.pk, paper.pk)]


def test_recording_picks_returns_what_it_stored_and_refuses_a_paper_twice() -> None:
    papers = [PaperFactory() for _ in range(2)]
    subscriber = SubscriberFactory()
    earlier, delivery = DeliveryFactory(subscriber=subscriber), DeliveryFactory(subscriber=subscriber)
    picks_record([(earlier.pk, subscriber.pk, papers[0].pk, 1, 1.0, [])])

    stored = picks_record(
        [
            (delivery.pk, subscriber.pk, papers[0].pk, 1, 1.0, []),  # the subscriber has it already
            (delivery.pk, subscriber.pk, papers[1].pk, 2, 1.0, []),
        ]
    )

    assert stored == {(delivery.pk, papers[1].pk)}
    assert DeliveryItem.objects.filter(subscriber=subscriber).count() == 2


# --- picks pointing at nothing -----------------------------------------------------------------


def test_the_sweep_deletes_the_picks_of_a_delivery_or_a_paper_that_is_gone() -> None:
    subscriber, paper, kept_paper = SubscriberFactory(), PaperFactory(), PaperFactory()
    delivery = DeliveryFactory(subscriber=subscriber)
    DeliveryItem.objects.create(
        delivery=delivery, subscriber=subscriber, paper=kept_paper, position=1, score=1.0
    )
    gone_delivery, gone_paper = DeliveryFactory(subscriber=subscriber), PaperFactory()
    ids = gone_delivery.pk, gone_paper.pk
    gone_delivery.delete()
    gone_paper.delete()
    orphan_pick(delivery_id=ids[0], subscriber_id=subscriber.pk, paper_id=paper.pk)
    orphan_pick(delivery_id=delivery.pk, subscriber_id=subscriber.pk, paper_id=ids[1], position=2)

    sweep_deliveries()  # the beat's task

    assert list(DeliveryItem.objects.values_list("delivery_id", "paper_id")) == [(delivery.pk, kept_paper.pk)]
    assert picks_orphans_delete() == 0


def test_the_sweep_checks_each_pick_once_a_run_after_it_was_stored() -> None:
    """Bounded as history grows: a run reads the rows stored between the two runs before it (ids are
    taken before an INSERT commits, so a row below one run's top may be committed only after it)."""
    subscriber = SubscriberFactory()
    delivery = DeliveryFactory(subscriber=subscriber)
    missing = [PaperFactory() for _ in range(3)]
    missing_ids = [paper.pk for paper in missing]
    Paper.objects.filter(pk__in=missing_ids).delete()

    def pick(position: int) -> DeliveryItem:
        return DeliveryItem.objects.create(
            delivery=delivery, subscriber=subscriber, paper=PaperFactory(), position=position, score=1
        )

    def orphan(item: DeliveryItem, paper_id: int) -> None:
        DeliveryItem.objects.filter(pk=item.pk).update(paper_id=paper_id)

    checked_twice = pick(1)
    assert picks_orphans_delete() == 0  # no mark yet: the latest rows, and again next time
    orphan(checked_twice, missing_ids[0])
    later = pick(2)
    assert picks_orphans_delete() == 1  # checked_twice
    orphan(later, missing_ids[1])  # stored before the last run: checked by the next one
    latest = pick(3)
    assert picks_orphans_delete() == 1  # later
    orphan(latest, missing_ids[2])
    assert picks_orphans_delete() == 1  # latest
    orphan(pick(4), missing_ids[0])
    orphan(moved := pick(5), missing_ids[1])
    DeliveryItem.objects.filter(pk=moved.pk).update(id=later.pk)  # below every mark now: not read

    assert picks_orphans_delete() == 0  # stored after the last run: checked by the next one
    assert picks_orphans_delete() == 1
    assert list(DeliveryItem.objects.values_list("id", flat=True)) == [later.pk]


@pytest.mark.parametrize("record", [picks_record, picks_record_portable])
def test_recording_picks_stores_them_and_drops_a_paper_the_subscriber_already_has(record) -> None:
    # Both paths: the PostgreSQL one (one JSON document) and the ORM one SQLite uses.
    papers = [PaperFactory() for _ in range(3)]
    subscriber, other = SubscriberFactory(), SubscriberFactory()
    earlier, delivery = DeliveryFactory(subscriber=subscriber), DeliveryFactory(subscriber=subscriber)
    other_delivery = DeliveryFactory(subscriber=other)
    DeliveryItem.objects.create(
        delivery=earlier, subscriber=subscriber, paper=papers[1], position=1, score=1.0
    )

    record(
        [
            (delivery.pk, subscriber.pk, papers[0].pk, 1, 0.9, ["Matches your topic: Speech"]),
            (delivery.pk, subscriber.pk, papers[1].pk, 2, 0.8, ["already sent earlier"]),
            (delivery.pk, subscriber.pk, papers[2].pk, 3, 0.1 + 0.2, []),
            (other_delivery.pk, other.pk, papers[1].pk, 1, 0.5, ["Trending: 3 upvotes", "“quoted” <b>"]),
        ]
    )

    stored = {
        (item.delivery_id, item.paper_id): (item.position, item.score, item.reasons)
        for item in DeliveryItem.objects.exclude(delivery=earlier)
    }
    assert stored == {
        (delivery.pk, papers[0].pk): (1, 0.9, ["Matches your topic: Speech"]),
        (delivery.pk, papers[2].pk): (3, 0.1 + 0.2, []),  # every bit of a float8 kept
        (other_delivery.pk, papers[1].pk): (1, 0.5, ["Trending: 3 upvotes", "“quoted” <b>"]),
    }


def test_two_deliveries_of_one_subscriber_in_one_chunk_share_no_paper() -> None:
    papers = [quantization_paper(f"Quantization paper {n}") for n in range(5)]
    now = timezone.now()
    subscriber = SubscriberFactory(interests="quantization", papers_per_digest=3)
    # A re-driven delivery of yesterday and today's, in the same chunk.
    yesterday = delivery_for(subscriber, now=now, period="2026-01-12")
    today = delivery_for(subscriber, now=now, period="2026-01-13")

    built = build(yesterday, today)

    assert set(built[yesterday.pk]).isdisjoint(built[today.pk])
    assert len(built[yesterday.pk]) + len(built[today.pk]) <= len(papers)
    assert DeliveryItem.objects.filter(subscriber=subscriber).count() == sum(len(v) for v in built.values())


def test_a_chunk_builds_each_digest_as_if_alone() -> None:
    """Different windows make the chunk's pool larger than each subscriber's: scores must not move."""
    now = timezone.now()
    for n in range(12):
        paper = PaperFactory(
            title=f"Quantization and retrieval study {n}",
            abstract="Quantization of retrieval models." if n % 2 else "Retrieval with rerankers.",
            upvotes=n * 30,
            github_stars=(12 - n) * 150,
        )
        Paper.objects.filter(pk=paper.pk).update(ingested_at=now - timedelta(hours=2 * n + 1))
    subscribers = [
        SubscriberFactory(interests="quantization", last_digest_at=now - timedelta(hours=6)),
        SubscriberFactory(interests="retrieval", last_digest_at=now - timedelta(hours=30)),
        SubscriberFactory(last_digest_at=now - timedelta(hours=12), papers_per_digest=4),
    ]
    deliveries = [delivery_for(s, now=now) for s in subscribers]

    def recorded() -> dict[int, list[tuple[int, float]]]:
        return {
            d.pk: list(
                DeliveryItem.objects.filter(delivery=d).order_by("position").values_list("paper_id", "score")
            )
            for d in deliveries
        }

    build(*deliveries)
    together = recorded()
    DeliveryItem.objects.all().delete()
    for delivery in deliveries:
        build(delivery)

    assert recorded() == together
    assert all(together.values())

"""Digest content (newsletter.services.digest): windows, recorded picks, "never twice", presentation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from newsletter.models import Delivery, DeliveryItem, Subscriber
from newsletter.selectors import digest_preview
from newsletter.services.candidates import Pick
from newsletter.services.digest import digests_build, picks_record, picks_record_portable
from newsletter.services.render import (
    ABSTRACT_CHARS,
    AUTHORS_SHOWN,
    PaperRowCache,
    digest_values,
    paper_url,
    period_label,
)
from newsletter.services.schedule import window_start
from newsletter.services.tokens import Purpose, token_delivery, token_subscriber
from papers.models import Paper
from papers.selectors import papers_by_ids, topic_names
from tests.factories import DeliveryFactory, PaperFactory, SubscriberFactory, TopicFactory

pytestmark = pytest.mark.django_db


def delivery_for(subscriber: Subscriber, *, now: datetime, period: str = "2026-01-10") -> Delivery:
    return DeliveryFactory(
        subscriber=subscriber,
        period=period,
        window_start=window_start(subscriber=subscriber, now=now),
        window_end=now,
    )


def build(*deliveries: Delivery, now: datetime | None = None) -> dict[int, list[int]]:
    """Build the deliveries together; paper ids of each, in digest order."""
    deliveries = list(Delivery.objects.filter(pk__in=[d.pk for d in deliveries]).select_related("subscriber"))
    contents = digests_build(deliveries=deliveries, now=now or timezone.now())
    return {c.delivery.pk: [pick.paper.id for pick in c.picks] for c in contents}


def quantization_paper(title: str, **fields) -> Paper:
    return PaperFactory(title=title, abstract=f"{title}. We study quantization of weights.", **fields)


# --- windows ----------------------------------------------------------------------------------


def test_first_digest_window_is_the_recent_past(settings) -> None:
    now = datetime(2026, 1, 10, 8, tzinfo=UTC)
    subscriber = SubscriberFactory(last_digest_at=None)

    assert window_start(subscriber=subscriber, now=now) == now - settings.NEWSLETTER_FIRST_DIGEST_WINDOW


def test_later_windows_start_at_the_previous_digest_with_an_overlap(settings) -> None:
    last = datetime(2026, 1, 9, 8, tzinfo=UTC)
    subscriber = SubscriberFactory(last_digest_at=last)

    assert window_start(subscriber=subscriber, now=last + timedelta(days=1)) == (
        last - settings.NEWSLETTER_WINDOW_OVERLAP
    )


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


# --- recorded picks, never twice ----------------------------------------------------------------


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
def test_recording_picks_stores_them_and_drops_a_paper_the_subscriber_already_has(record) -> None:
    # Both paths: the PostgreSQL one (column arrays) and the ORM one SQLite uses.
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
            (delivery.pk, subscriber.pk, papers[2].pk, 3, 0.7, []),
            (other_delivery.pk, other.pk, papers[1].pk, 1, 0.5, ["Trending: 3 upvotes", "“quoted” <b>"]),
        ]
    )

    stored = {
        (item.delivery_id, item.paper_id): (item.position, item.score, item.reasons)
        for item in DeliveryItem.objects.exclude(delivery=earlier)
    }
    assert stored == {
        (delivery.pk, papers[0].pk): (1, 0.9, ["Matches your topic: Speech"]),
        (delivery.pk, papers[2].pk): (3, 0.7, []),
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


def test_preview_shows_what_the_digest_will_hold() -> None:
    for n in range(6):
        quantization_paper(f"Quantization paper {n}", upvotes=n * 40)
    PaperFactory(title="Unrelated", upvotes=1000)
    now = timezone.now()
    subscriber = SubscriberFactory(interests="quantization", papers_per_digest=4)

    preview = digest_preview(subscriber=subscriber, now=now)
    delivery = delivery_for(subscriber, now=now)

    assert [p.paper.id for p in preview] == build(delivery, now=now)[delivery.pk]
    # Once sent, the preview moves on to papers not sent yet.
    assert {p.paper.id for p in digest_preview(subscriber=subscriber, now=now)}.isdisjoint(
        p.paper.id for p in preview
    )


# --- presentation -----------------------------------------------------------------------------


def candidate(paper: Paper):
    (loaded,) = papers_by_ids(ids=[paper.pk])
    return loaded


def test_paper_url_falls_back_to_an_arxiv_title_search() -> None:
    paper = candidate(PaperFactory(title="Attention & you: a study", url=""))

    assert paper_url(paper) == "https://arxiv.org/search/?searchtype=title&query=Attention+%26+you%3A+a+study"


def test_paper_and_code_urls_are_ascii() -> None:
    paper = candidate(
        PaperFactory(url="https://example.org/papers/café résumé", github_url="https://github.com/zoë/repo")
    )

    item = PaperRowCache(topic_names()).rows([Pick(paper=paper, score=1.0, reasons=("r",))])[0]

    assert item.url == "https://example.org/papers/caf%C3%A9%20r%C3%A9sum%C3%A9"
    assert item.code_urls == ["https://github.com/zo%C3%AB/repo"]


def test_paper_row_shortens_long_author_lists_and_abstracts() -> None:
    authors = [f"Author {n}" for n in range(AUTHORS_SHOWN + 3)]
    paper = candidate(PaperFactory(authors=authors, abstract="word " * 400, github_url=""))

    item = PaperRowCache(topic_names()).rows([Pick(paper=paper, score=1.0, reasons=("Because",))])[0]

    assert item.authors == [", ".join(authors[:AUTHORS_SHOWN]) + " et al."]
    assert len(item.abstract) <= ABSTRACT_CHARS
    assert item.abstract.endswith("…")
    assert item.code_urls == []
    assert item.reasons == ["Because"]


def test_paper_row_without_authors() -> None:
    paper = candidate(PaperFactory(authors=[]))

    assert PaperRowCache(topic_names()).rows([Pick(paper=paper, score=1.0, reasons=())])[0].authors == []


def test_period_label_is_local() -> None:
    # 03:00 UTC on Tuesday 13 January is still Monday 12 January in New York.
    scheduled = datetime(2026, 1, 13, 3, tzinfo=UTC)
    daily = SubscriberFactory(timezone="America/New_York")
    weekly = SubscriberFactory(timezone="Asia/Kolkata", frequency=Subscriber.Frequency.WEEKLY)

    assert period_label(Delivery(scheduled_for=scheduled), daily) == "Monday 12 January"
    assert period_label(Delivery(scheduled_for=scheduled), weekly) == "week of Tuesday 13 January"


def test_digest_links_are_absolute_https_and_personal(settings) -> None:
    subscriber = SubscriberFactory()
    delivery = DeliveryFactory(subscriber=subscriber)

    values = digest_values(delivery=delivery, count=1)

    for name in ("manage_url", "unsubscribe_url", "web_url"):
        assert values[name].startswith(settings.SITE_URL + "/")
        assert settings.SITE_URL.startswith("https://")
    token = values["unsubscribe_url"].rstrip("/").rsplit("/", 1)[1]
    assert token_subscriber(token=token, purpose=Purpose.UNSUBSCRIBE) == subscriber
    # An unsubscribe token is no manage token.
    assert token_subscriber(token=token, purpose=Purpose.MANAGE) is None
    assert token_delivery(token=values["web_url"].rstrip("/").rsplit("/", 1)[1]) == delivery
    assert values["count_label"] == "1 new paper"
    assert digest_values(delivery=delivery, count=3)["count_label"] == "3 new papers"

"""The reader's archive: past digests opening their web copies, the papers they liked, and both in
"download my data" and gone with "delete everything"."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest
from django.test import Client

from newsletter.models import Delivery, DeliveryItem, Feedback, Subscriber
from newsletter.services.archive import digests_archived
from newsletter.services.tokens import Purpose, token_make
from tests.factories import DeliveryFactory, PaperFactory, SubscriberFactory
from tests.newsletter.helpers import INVALID_LINK_TEXT, csrf_token, orphan_pick, url

pytestmark = pytest.mark.django_db


def sent_digest(subscriber: Subscriber, titles: list[str], *, day: int, **fields) -> Delivery:
    fields.setdefault("status", Delivery.Status.SENT)
    moment = datetime(2026, 3, day, 7, 0, tzinfo=UTC)
    delivery = DeliveryFactory(
        subscriber=subscriber, period=f"2026-03-{day:02d}", scheduled_for=moment, sent_at=moment, **fields
    )
    for position, title in enumerate(titles):
        DeliveryItem.objects.create(
            delivery=delivery,
            subscriber=subscriber,
            paper=PaperFactory(title=title),
            position=position,
            score=1.0,
            reasons=[],
        )
    return delivery


def test_the_archive_lists_sent_digests_latest_first_with_their_papers() -> None:
    reader = SubscriberFactory(timezone="UTC")
    sent_digest(reader, ["Older paper"], day=1)
    latest = sent_digest(reader, ["Newer paper A", "Newer paper B"], day=2)
    sent_digest(reader, ["Never sent"], day=3, status=Delivery.Status.FAILED)
    sent_digest(reader, [], day=4, kind=Delivery.Kind.EMPTY)  # a "nothing new" notice is no digest
    sent_digest(SubscriberFactory(), ["Someone else's paper"], day=2)

    digests = digests_archived(subscriber=reader)

    assert [d.title for d in digests] == [
        "Monday 2 March 2026: 2 papers",
        "Sunday 1 March 2026: 1 paper",
    ]
    assert [p.title for p in digests[0].papers] == ["Newer paper A", "Newer paper B"]
    assert digests[0].web_url.endswith(
        f"/digests/{token_make(subscriber=reader, purpose=Purpose.DIGEST, object_id=latest.pk)}/"
    )


def test_the_archive_page_opens_each_digest_and_offers_the_feed(client: Client) -> None:
    reader = SubscriberFactory(timezone="UTC")
    delivery = sent_digest(reader, ["Attention is still all you need"], day=2)

    response = client.get(url("archive", reader, Purpose.MANAGE))

    assert response.status_code == 200
    assert "no-store" in response["Cache-Control"]
    html = response.content.decode()
    assert "Attention is still all you need" in html
    web_path = f"/digests/{token_make(subscriber=reader, purpose=Purpose.DIGEST, object_id=delivery.pk)}/"
    assert web_path in html
    assert f"/feeds/{token_make(subscriber=reader, purpose=Purpose.FEED)}/" in html
    assert client.get(web_path).status_code == 200  # the web copy it opens


def test_the_manage_page_links_the_archive_and_its_own_header_link_stays_there(client: Client) -> None:
    reader = SubscriberFactory()
    manage = url("manage", reader, Purpose.MANAGE)

    html = client.get(manage).content.decode()

    assert url("archive", reader, Purpose.MANAGE) in html
    assert url("liked", reader, Purpose.MANAGE) in html
    assert f'<a href="{manage}" aria-current="page">Manage your subscription</a>' in html
    assert '<a href="/manage/">' not in html  # not "send me a new link"
    # The pages reached from it keep the reader there too.
    for name in ("archive", "liked", "delete"):
        assert (
            f'<a href="{manage}">Manage your subscription</a>'
            in client.get(url(name, reader, Purpose.MANAGE)).content.decode()
        )


def test_papers_you_liked_lists_only_more_like_this_marks(client: Client) -> None:
    reader = SubscriberFactory()
    Feedback.objects.create(subscriber=reader, paper=PaperFactory(title="Liked one"), choice="more")
    Feedback.objects.create(subscriber=reader, paper=PaperFactory(title="Disliked one"), choice="less")
    Feedback.objects.create(
        subscriber=SubscriberFactory(), paper=PaperFactory(title="Not mine"), choice="more"
    )

    html = client.get(url("liked", reader, Purpose.MANAGE)).content.decode()

    assert "Liked one" in html
    assert "Disliked one" not in html and "Not mine" not in html


def test_archive_pages_need_a_valid_manage_link(client: Client) -> None:
    reader = SubscriberFactory()
    pending = SubscriberFactory(status=Subscriber.Status.PENDING)

    for name in ("archive", "liked"):
        assert client.get(url(name, reader, Purpose.UNSUBSCRIBE)).status_code == 404
        assert client.get(url(name, pending, Purpose.MANAGE)).status_code == 404
    assert INVALID_LINK_TEXT in client.get(url("archive", reader, Purpose.DIGEST)).content.decode()


def test_the_export_holds_the_archive_and_the_feed_address(client: Client) -> None:
    reader = SubscriberFactory()
    sent_digest(reader, ["Exported paper"], day=2)

    data = json.loads(client.get(url("export", reader, Purpose.MANAGE)).content)

    archive = data["archive"]
    assert archive["feed_url"].endswith(f"/feeds/{token_make(subscriber=reader, purpose=Purpose.FEED)}/")
    assert [p["title"] for p in archive["digests"][0]["papers"]] == ["Exported paper"]
    assert "/digests/" in archive["digests"][0]["web_url"]


def test_delete_everything_erases_the_archive_and_the_feed(client: Client) -> None:
    reader = SubscriberFactory()
    delivery = sent_digest(reader, ["Gone paper"], day=2)
    Feedback.objects.create(subscriber=reader, paper=PaperFactory(), choice="more")
    feed = f"/feeds/{token_make(subscriber=reader, purpose=Purpose.FEED)}/"
    web_copy = f"/digests/{token_make(subscriber=reader, purpose=Purpose.DIGEST, object_id=delivery.pk)}/"
    assert client.get(feed).status_code == 200
    delete_url = url("delete", reader, Purpose.MANAGE)

    client.post(delete_url, {"csrfmiddlewaretoken": csrf_token(client.get(delete_url))})

    assert not Delivery.objects.filter(pk=delivery.pk).exists()
    assert not Feedback.objects.exists()
    assert client.get(feed).status_code == 404
    assert client.get(web_copy).status_code == 404


def test_a_pick_whose_paper_is_gone_is_left_out_until_the_sweep_deletes_it(client: Client) -> None:
    """DeliveryItem has no foreign keys in the database: a paper deleted while a chunk stored its
    picks leaves a pick pointing at nothing until the sweeper runs. No page fails on it."""
    reader = SubscriberFactory(timezone="UTC")
    delivery = sent_digest(reader, ["Kept paper"], day=2)
    gone = PaperFactory(title="Deleted paper")
    Feedback.objects.create(subscriber=reader, paper=PaperFactory(title="Liked one"), choice="more")
    gone_id = gone.pk
    gone.delete()
    orphan_pick(delivery_id=delivery.pk, subscriber_id=reader.pk, paper_id=gone_id, position=5)

    assert [p.title for p in digests_archived(subscriber=reader)[0].papers] == ["Kept paper"]
    web_copy = f"/digests/{token_make(subscriber=reader, purpose=Purpose.DIGEST, object_id=delivery.pk)}/"
    pages = [
        url("archive", reader, Purpose.MANAGE),
        web_copy,
        f"/feeds/{token_make(subscriber=reader, purpose=Purpose.FEED)}/",
        url("liked", reader, Purpose.MANAGE),
    ]
    for page in pages:
        response = client.get(page)
        assert response.status_code == 200, page
        assert "Kept paper" in response.content.decode() or page.endswith(
            url("liked", reader, Purpose.MANAGE)
        )
    data = json.loads(client.get(url("export", reader, Purpose.MANAGE)).content)
    assert [p["title"] for p in data["deliveries"][0]["papers"]] == ["Kept paper"]
    assert [p["title"] for p in data["archive"]["digests"][0]["papers"]] == ["Kept paper"]

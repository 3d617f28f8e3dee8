"""The private Atom feed of a reader's digests (newsletter.feeds)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from django.test import Client

from newsletter.models import Subscriber, new_token_key
from newsletter.services.tokens import Purpose, token_make
from tests.factories import SubscriberFactory
from tests.newsletter.test_archive import sent_digest

pytestmark = pytest.mark.django_db

ATOM = "{http://www.w3.org/2005/Atom}"


def feed_path(subscriber: Subscriber) -> str:
    return f"/feeds/{token_make(subscriber=subscriber, purpose=Purpose.FEED)}/"


def test_the_feed_is_atom_with_one_entry_per_sent_digest(client: Client) -> None:
    reader = SubscriberFactory(timezone="UTC")
    sent_digest(reader, ["First <paper> & co"], day=1)
    latest = sent_digest(reader, ["Second paper"], day=2)

    response = client.get(feed_path(reader))

    assert response.status_code == 200
    assert response["Content-Type"].startswith("application/atom+xml")
    assert response["Cache-Control"] == "private, no-cache"
    feed = ET.fromstring(response.content)
    entries = feed.findall(f"{ATOM}entry")
    assert [e.findtext(f"{ATOM}title") for e in entries] == [
        "Monday 2 March 2026: 1 paper",
        "Sunday 1 March 2026: 1 paper",
    ]
    web_copy = f"/digests/{token_make(subscriber=reader, purpose=Purpose.DIGEST, object_id=latest.pk)}/"
    assert entries[0].find(f"{ATOM}link").get("href").endswith(web_copy)
    assert entries[0].findtext(f"{ATOM}updated").startswith("2026-03-02T07:00:00")
    # The summary is HTML, escaped once inside the XML: the paper title reads as written.
    assert "First &lt;paper&gt; &amp; co" in entries[1].findtext(f"{ATOM}summary")


def test_the_feed_of_a_reader_without_digests_is_empty_not_an_error(client: Client) -> None:
    response = client.get(feed_path(SubscriberFactory()))

    assert response.status_code == 200
    assert ET.fromstring(response.content).findall(f"{ATOM}entry") == []


def test_only_a_valid_feed_token_opens_the_feed(client: Client) -> None:
    reader = SubscriberFactory()
    manage_token = token_make(subscriber=reader, purpose=Purpose.MANAGE)
    pending = SubscriberFactory(status=Subscriber.Status.PENDING)

    assert client.get(f"/feeds/{manage_token}/").status_code == 404  # another purpose's token
    assert client.get(feed_path(pending)).status_code == 404
    assert client.get("/feeds/nonsense/").status_code == 404


def test_rotating_the_token_key_revokes_the_feed_with_the_other_links(client: Client) -> None:
    reader = SubscriberFactory()
    old_feed = feed_path(reader)
    assert client.get(old_feed).status_code == 200

    Subscriber.objects.filter(pk=reader.pk).update(token_key=new_token_key())

    assert client.get(old_feed).status_code == 404
    reader.refresh_from_db()
    assert client.get(feed_path(reader)).status_code == 200


def test_the_feed_costs_the_same_few_queries_however_many_digests(
    client: Client, django_assert_num_queries
) -> None:
    reader = SubscriberFactory()
    for day in range(1, 6):
        sent_digest(reader, [f"Paper {day}a", f"Paper {day}b"], day=day)

    # The token's subscriber, the deliveries, their items, and the papers with their topics.
    with django_assert_num_queries(5):
        response = client.get(feed_path(reader))

    assert len(ET.fromstring(response.content).findall(f"{ATOM}entry")) == 5

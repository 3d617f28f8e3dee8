"""Helpers shared by the newsletter tests: the fixed clock, email links, the page forms, due
subscribers and their papers, a row held locked by another transaction, and a pick pointing at nothing."""

from __future__ import annotations

import itertools
import re
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from django.core import mail
from django.db import connection, transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from newsletter.models import Delivery, Subscriber
from newsletter.selectors import Preferences
from newsletter.services.digest import digests_build
from newsletter.services.dispatch import digests_dispatch
from newsletter.services.schedule import window_start
from newsletter.services.subscription import Outcome, subscriber_request_link, subscriber_subscribe
from newsletter.services.tokens import Purpose, token_make, token_subscriber
from newsletter.tasks import queue_answer_email
from papers.models import Paper
from tests.factories import DeliveryFactory, PaperFactory, SubscriberFactory

# Monday 2 March 2026, 10:00 UTC (11:00 in Berlin, which is on UTC+1 until 29 March).
NOW = datetime(2026, 3, 2, 10, 0, tzinfo=UTC)

# --- emails ------------------------------------------------------------------------------------

LINK_RE = r"https://digest\.example\.org/{}/([\w:-]+)/"


def assert_email_contains(message: mail.EmailMultiAlternatives, text: str) -> None:
    """Both the plain-text body and the HTML alternative contain `text` (healthchecks' helper)."""
    assert text in message.body, f"{text!r} not in the text part"
    html = [content for content, mimetype in message.alternatives if mimetype == "text/html"]
    assert html, "no HTML part"
    assert text in html[0], f"{text!r} not in the HTML part"


def link_token(message: mail.EmailMessage, page: str) -> str:
    """The token of the /<page>/<token>/ link in an email's text part."""
    found = re.search(LINK_RE.format(page), message.body)
    assert found, f"no /{page}/ link in {message.body!r}"
    return found.group(1)


def linked_subscriber(message: mail.EmailMultiAlternatives, page: str) -> Subscriber | None:
    """Whom the email's /<page>/ link opens that page for; the link must be in both parts."""
    token = link_token(message, page)
    assert_email_contains(message, f"https://digest.example.org/{page}/{token}/")
    return token_subscriber(token=token, purpose=Purpose(page))


# --- sign-ups as the worker handles them -------------------------------------------------------


def subscribe(email: str = "ada@example.org", **preferences) -> Outcome:
    """A sign-up as the worker handles it: the service decides, then its email is queued."""
    answer = subscriber_subscribe(email=email, preferences=Preferences(**preferences), now=NOW)
    queue_answer_email(answer)
    return answer.outcome


def request_link(email: str, now: datetime = NOW) -> Outcome:
    answer = subscriber_request_link(email=email, now=now)
    queue_answer_email(answer)
    return answer.outcome


# --- pages -------------------------------------------------------------------------------------

INVALID_LINK_TEXT = "This link is not valid any more"


def csrf_token(response) -> str:
    found = re.search(rb'name="csrfmiddlewaretoken" value="([^"]+)"', response.content)
    assert found, "no CSRF token in the form"
    return found.group(1).decode()


def submit(client: Client, url: str, data: dict | None = None, **extra):
    """GET the page, then POST its form back with the CSRF token, like a browser."""
    token = csrf_token(client.get(url))
    return client.post(url, {**(data or {}), "csrfmiddlewaretoken": token}, **extra)


def signup_data(email: str, **overrides) -> dict:
    data = {
        "email": email,
        "interests": "graph neural networks",
        "excluded_keywords": "",
        "frequency": "daily",
        "weekday": "0",
        "send_hour": "8",
        "timezone": "Europe/Berlin",
        "papers_per_digest": "10",
        "email_format": "html",
        "website": "",
    }
    data.update(overrides)
    return data


def manage_data(**overrides) -> dict:
    data = signup_data("", frequency="weekly", weekday="4", send_hour="7", papers_per_digest="5")
    del data["email"], data["website"]
    data.update(overrides)
    return data


def url(name: str, subscriber: Subscriber, purpose: Purpose) -> str:
    """The subscriber's signed link to the page `name`."""
    return reverse(f"newsletter:{name}", args=[token_make(subscriber=subscriber, purpose=purpose)])


# --- due subscribers and their papers ----------------------------------------------------------


def due(**fields) -> Subscriber:
    """An active subscriber due a minute ago, interested in quantization unless told otherwise."""
    fields.setdefault("interests", "quantization")
    fields.setdefault("next_send_at", timezone.now() - timedelta(minutes=1))
    return SubscriberFactory(**fields)


_paper_numbers = itertools.count()


def quantization_papers(count: int = 3) -> list[Paper]:
    return [
        PaperFactory(
            title=f"Quantization study {next(_paper_numbers)}", abstract="We study quantization of weights."
        )
        for _ in range(count)
    ]


def quantization_paper(title: str, **fields) -> Paper:
    return PaperFactory(title=title, abstract=f"{title}. We study quantization of weights.", **fields)


def dispatch_one_chunk() -> list[int]:
    chunks = digests_dispatch()
    assert len(chunks) == 1
    return chunks[0]


def delivery_of(subscriber: Subscriber) -> Delivery:
    return Delivery.objects.get(subscriber=subscriber)


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


# --- concurrency -------------------------------------------------------------------------------


@contextmanager
def held_in_another_transaction(hold: Callable[[], object]) -> Iterator[object]:
    """Run `hold` in a transaction on another thread (and connection), keep that transaction open
    while the block runs, then commit it. Yields what `hold` returned. Needs committed rows:
    use it in `transaction=True` tests."""
    holding, release = threading.Event(), threading.Event()
    held: list[object] = []

    def other() -> None:
        try:
            with transaction.atomic():
                held.append(hold())
                holding.set()
                release.wait(timeout=30)
        finally:
            connection.close()

    thread = threading.Thread(target=other)
    thread.start()
    try:
        assert holding.wait(timeout=30), "the other transaction did not start"
        yield held[0]
    finally:
        release.set()
        thread.join()


def orphan_pick(*, delivery_id: int, subscriber_id: int, paper_id: int, position: int = 1) -> None:
    """A pick stored as if its delivery or paper had been deleted while the picks INSERT ran: raw SQL,
    as DeliveryItem has no foreign keys in the database (digest.picks_record)."""
    with connection.cursor() as cursor:
        cursor.execute(
            "INSERT INTO newsletter_deliveryitem"
            " (delivery_id, subscriber_id, paper_id, position, score, reasons)"
            " VALUES (%s, %s, %s, %s, 0.5, '[]')",
            [delivery_id, subscriber_id, paper_id, position],
        )

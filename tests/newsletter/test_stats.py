"""The operator page /staff/stats/: what the selectors count, the charts, who may see it."""

from __future__ import annotations

import base64
import re
from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from anymail.signals import EventType
from django.contrib.auth import get_user_model
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from newsletter.models import Delivery, EmailEvent, Subscriber, Suppression
from newsletter.stats_charts import chart_deliveries, chart_papers, chart_rates, chart_subscribers
from newsletter.stats_selectors import DayStats, stats_per_day, stats_subscribers
from papers.models import Feed
from papers.selectors import stats_feeds
from tests.factories import DeliveryFactory, PaperFactory, SubscriberFactory

pytestmark = pytest.mark.django_db

NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)


def staff_client() -> Client:
    user = get_user_model().objects.create_user("ops", "ops@example.org", "pw", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


def svg(data_uri: str) -> str:
    prefix = "data:image/svg+xml;base64,"
    assert data_uri.startswith(prefix)
    return base64.b64decode(data_uri.removeprefix(prefix)).decode()


def test_subscribers_by_state() -> None:
    SubscriberFactory.create_batch(2)
    SubscriberFactory(status=Subscriber.Status.PENDING)
    Suppression.objects.create(email="x@example.org", reason=Suppression.Reason.COMPLAINT)
    stats = stats_subscribers()
    assert stats["Active"] == 2
    assert stats["Waiting for confirmation"] == 1
    assert stats["Unsubscribed"] == 0
    assert stats["Suppressed addresses"] == 1


@time_machine.travel(NOW, tick=False)
def test_per_day_counts_each_outcome_on_its_day() -> None:
    yesterday = NOW - timedelta(days=1)
    long_ago = {"subscriber__confirmed_at": NOW - timedelta(days=90)}
    DeliveryFactory(status=Delivery.Status.SENT, **long_ago)
    DeliveryFactory(status=Delivery.Status.SENT, bounced=True, **long_ago)
    DeliveryFactory(status=Delivery.Status.FAILED, **long_ago)
    DeliveryFactory(status=Delivery.Status.PENDING, **long_ago)
    SubscriberFactory(confirmed_at=NOW)
    SubscriberFactory(confirmed_at=yesterday)
    SubscriberFactory(status=Subscriber.Status.UNSUBSCRIBED, confirmed_at=yesterday, unsubscribed_at=NOW)
    EmailEvent.objects.create(event_id="c1", event_type=EventType.COMPLAINED, email="a@example.org")
    EmailEvent.objects.create(event_id="b1", event_type=EventType.BOUNCED, email="b@example.org")
    for n, kind in enumerate((EventType.COMPLAINED, EventType.BOUNCED)):  # forged: counted apart
        EmailEvent.objects.create(event_id=f"u{n}", event_type=kind, email="c@example.org", verified=False)
    PaperFactory.create_batch(3)

    days = stats_per_day(days=7, today=NOW.date())

    assert len(days) == 7
    assert [d.day for d in days][-2:] == [yesterday.date(), NOW.date()]
    today = days[-1]
    assert (today.sent, today.failed, today.bounced, today.complaints, today.unverified) == (2, 1, 1, 1, 2)
    assert (today.confirmed, today.unsubscribed, today.papers) == (1, 1, 3)
    assert (today.bounce_rate, today.complaint_rate) == (0.5, 0.5)
    assert (days[-2].confirmed, days[-2].sent, days[-2].bounce_rate) == (2, 0, None)
    assert all(d.sent == d.papers == d.confirmed == 0 for d in days[:-2])


@time_machine.travel(NOW, tick=False)
def test_per_day_starts_at_midnight_utc_of_the_first_day() -> None:
    first = datetime(2026, 11, 17, tzinfo=UTC)  # 7 days up to NOW's
    counted = [first, first + timedelta(hours=23, minutes=59)]
    for created in (*counted, first - timedelta(minutes=1), first - timedelta(microseconds=1)):
        delivery = DeliveryFactory(status=Delivery.Status.SENT)
        Delivery.objects.filter(pk=delivery.pk).update(created_at=created)
    for n, received in enumerate((first, first - timedelta(minutes=1))):
        event = EmailEvent.objects.create(event_id=f"c{n}", event_type=EventType.COMPLAINED, email="a@x.org")
        EmailEvent.objects.filter(pk=event.pk).update(received_at=received)
    SubscriberFactory(confirmed_at=first + timedelta(hours=23, minutes=59))
    SubscriberFactory(confirmed_at=first - timedelta(minutes=1))

    with CaptureQueriesContext(connection) as queries:
        days = stats_per_day(days=7, today=NOW.date())

    assert days[0].day == first.date()
    assert (days[0].sent, days[0].complaints, days[0].confirmed) == (2, 1, 1)
    assert sum(d.sent for d in days) == 2
    # A plain comparison an index can serve, not a cast of every row to a date.
    delivery_query = next(q["sql"] for q in queries if 'FROM "newsletter_delivery"' in q["sql"])
    assert '"newsletter_delivery"."created_at" >= ' in delivery_query


def test_feeds_with_their_last_fetch_and_error() -> None:
    Feed.objects.all().delete()
    Feed.objects.create(name="b", url="https://b.example.org/", last_status="error: timed out")
    Feed.objects.create(name="a", url="https://a.example.org/", last_status="3 created, 0 updated")

    feeds = stats_feeds()

    assert [(f.name, f.failed) for f in feeds] == [("a", False), ("b", True)]


@time_machine.travel(NOW, tick=False)
def test_charts_are_svg_with_dates_on_the_axis_and_the_rate_line() -> None:
    DeliveryFactory(status=Delivery.Status.SENT)
    days = stats_per_day(days=30, today=NOW.date())

    drawn = {
        chart.__name__: svg(chart(days)) for chart in (chart_deliveries, chart_subscribers, chart_papers)
    }
    rates = svg(chart_rates(days))

    for name, chart in drawn.items():
        assert chart.lstrip().startswith("<?xml") and "<svg" in chart, name
        assert "Nov 23" in chart or "Nov 22" in chart, name  # dates as tick labels, as text
    assert "Gmail's 0.3% limit" in rates
    assert "0.3%" in rates or "0.4%" in rates  # the percent axis


def percent_ticks(svg_text: str) -> list[str]:
    """The y-axis labels of the rate chart: text elements that are a bare percentage."""
    return re.findall(r">(\d+(?:\.\d+)?%)</text>", svg_text)


@pytest.mark.parametrize(
    ("bounced", "sent", "ticks"),
    [
        (1, 1000, ["0.0%", "0.2%", "0.4%", "0.6%"]),  # low rates: the 0.3% line sets the scale
        (4, 100, ["0%", "1%", "2%", "3%", "4%"]),
        (1, 4, ["0%", "10%", "20%"]),
    ],
)
def test_rate_chart_ticks_are_round_evenly_named_percentages(
    bounced: int, sent: int, ticks: list[str]
) -> None:
    days = [DayStats(day=NOW.date() - timedelta(days=n), sent=sent, bounced=bounced) for n in (1, 0)]

    assert percent_ticks(svg(chart_rates(days))) == ticks


def test_stats_page_is_for_staff_only() -> None:
    assert Client().get("/staff/stats/").status_code == 302  # to the admin login


@time_machine.travel(NOW, tick=False)
def test_stats_page_shows_totals_rates_feeds_and_no_subscriber_navigation() -> None:
    DeliveryFactory(status=Delivery.Status.SENT)
    DeliveryFactory(status=Delivery.Status.SENT, bounced=True)
    Feed.objects.update(last_status="error: connection refused")

    response = staff_client().get("/staff/stats/")

    assert response.status_code == 200
    page = response.content.decode()
    assert "2 sent, 0 failed, 1 bounced, 0 complaints, 0 unverified bounce reports" in page
    assert 'class="bad" title="at or above the 0.3% line">50.00%' in page
    assert page.count('<img src="data:image/svg+xml;base64,') == 4
    assert "error: connection refused" in page
    assert "Manage your subscription" not in page

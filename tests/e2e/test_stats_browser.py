"""The operator page /staff/stats/ in Chromium: charts drawn, tables filled, nothing blocked."""

from __future__ import annotations

import pytest
from django.conf import settings
from django.contrib.auth import get_user_model
from django.test import Client
from playwright.sync_api import Page, expect

from newsletter.models import Delivery
from tests.factories import DeliveryFactory, PaperFactory

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


def log_in_as_staff(page: Page, live_server) -> None:
    user = get_user_model().objects.create_user("ops", "ops@example.org", "pw", is_staff=True)
    client = Client()
    client.force_login(user)
    session = client.cookies[settings.SESSION_COOKIE_NAME].value
    page.context.add_cookies(
        [{"name": settings.SESSION_COOKIE_NAME, "value": session, "url": live_server.url}]
    )


def test_operator_sees_charts_with_data_and_no_subscriber_navigation(
    page: Page, live_server, console_errors: list
) -> None:
    DeliveryFactory.create_batch(3, status=Delivery.Status.SENT)
    DeliveryFactory(status=Delivery.Status.FAILED)
    PaperFactory.create_batch(5)
    log_in_as_staff(page, live_server)

    page.goto("/staff/stats/")

    expect(page.get_by_role("heading", name="Operator statistics")).to_be_visible()
    charts = page.locator("figure.chart img")
    expect(charts).to_have_count(4)
    for index in range(4):
        chart = charts.nth(index)
        chart.scroll_into_view_if_needed()
        assert chart.evaluate("img => img.complete && img.naturalWidth > 0"), chart.get_attribute("alt")
        assert chart.bounding_box()["width"] > 300
    expect(page.locator("#totals")).to_contain_text("3 sent, 1 failed")
    expect(page.locator("#daily-stats tbody tr").first).to_contain_text("5")  # papers ingested today
    expect(page.locator("#feed-stats tbody tr")).to_have_count(2)  # the two feeds of the migrations
    expect(page.get_by_role("link", name="Manage your subscription")).to_have_count(0)
    expect(page.get_by_role("link", name="Admin")).to_be_visible()
    assert console_errors == []  # the Content-Security-Policy blocked nothing

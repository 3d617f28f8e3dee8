"""The whole subscriber journey in a real Chromium (Playwright) against the live server.

Sign up with the time zone the browser reports, confirm from the emailed link, change preferences,
unsubscribe, checking the database at each step; and the sign-up page on a phone-sized screen.
"""

from __future__ import annotations

import re
from io import StringIO
from zoneinfo import ZoneInfo

import pytest
from django.core.management import call_command
from django.urls import reverse
from playwright.sync_api import Browser, Page, expect

from newsletter.models import Subscriber
from newsletter.services.tokens import Purpose, token_make
from tests.conftest import SAMPLE_DATA
from tests.factories import SubscriberFactory

# serialized_rollback: the rows of data migrations (the default topics) are restored before the test,
# and the flush after it does not recreate content types, which would break the next test that
# restores them. Every transactional test of the suite must use it, or none.
pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture
def sample_papers() -> None:
    """The sample papers, so the manage page has a preview to show."""
    call_command("ingest_papers", str(SAMPLE_DATA), "--quiet", stdout=StringIO())


def emailed_link(mailoutbox: list, kind: str) -> str:
    found = re.search(rf"(http://\S+/{kind}/[\w:-]+/)", mailoutbox[-1].body)
    assert found, mailoutbox[-1].body
    return found.group(1)


@pytest.mark.usefixtures("sample_papers")
def test_sign_up_confirm_manage_and_unsubscribe(page: Page, console_errors: list, mailoutbox: list) -> None:
    page.goto("/subscribe/")
    expect(page.get_by_label("Time zone")).to_have_value("Europe/Berlin")  # from static/js/timezone.js
    expect(page.locator("#weekday-row")).to_be_hidden()  # daily is the default
    page.get_by_label("Email address").fill("  Ada.Lovelace@Example.org ")
    page.get_by_label("Pre-training & architectures").check()
    page.get_by_label("Multimodal & vision-language").check()
    page.get_by_label("Interests").fill("instruction tuning, in-context learning")
    page.get_by_role("button", name="Subscribe").click()

    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    subscriber = Subscriber.objects.get()
    assert subscriber.email == "ada.lovelace@example.org"
    assert subscriber.status == Subscriber.Status.PENDING
    assert subscriber.timezone == "Europe/Berlin"
    assert set(subscriber.topics.values_list("slug", flat=True)) == {"language-models", "multimodal"}
    assert [m.subject for m in mailoutbox] == ["Confirm your Paper Digest subscription"]

    page.goto(emailed_link(mailoutbox, "confirm"))
    expect(page.get_by_role("heading", name="Confirm your subscription")).to_be_visible()
    subscriber.refresh_from_db()
    assert subscriber.status == Subscriber.Status.PENDING  # opening the link is not confirming
    page.get_by_role("button", name="Confirm my subscription").click()

    expect(page).to_have_url(re.compile(r"/manage/[\w:-]+/$"))
    expect(page.get_by_role("status")).to_contain_text("You are subscribed.")
    expect(page.locator("#preview .paper").first).to_be_visible()
    subscriber.refresh_from_db()
    assert subscriber.status == Subscriber.Status.ACTIVE
    assert subscriber.next_send_at is not None

    expect(page.get_by_label("Time zone")).to_have_value("Europe/Berlin")
    page.get_by_label("Frequency").select_option("weekly")
    expect(page.locator("#weekday-row")).to_be_visible()
    page.get_by_label("Day (weekly digests)").select_option(label="Friday")
    page.get_by_label("Time of day").select_option(label="07:00")
    page.get_by_label("Papers per digest").fill("5")
    page.get_by_role("button", name="Save preferences").click()

    expect(page.get_by_role("status")).to_contain_text("Your preferences are saved.")
    subscriber.refresh_from_db()
    assert (subscriber.frequency, subscriber.weekday, subscriber.send_hour) == ("weekly", 4, 7)
    assert subscriber.papers_per_digest == 5
    local = subscriber.next_send_at.astimezone(ZoneInfo("Europe/Berlin"))
    assert (local.strftime("%A"), local.hour, local.minute) == ("Friday", 7, 0)
    expect(page.locator("#next-digest")).to_have_text(
        f"{local:%A} {local.day} {local:%B %Y}, 07:00 (Europe/Berlin)"
    )
    assert page.locator("#preview .paper").count() <= 5

    page.get_by_role("link", name="Unsubscribe").click()
    expect(page.get_by_role("heading", name="Unsubscribe?")).to_be_visible()
    subscriber.refresh_from_db()
    assert subscriber.status == Subscriber.Status.ACTIVE  # a GET never unsubscribes
    page.get_by_role("button", name="Unsubscribe").click()

    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    subscriber.refresh_from_db()
    assert subscriber.status == Subscriber.Status.UNSUBSCRIBED
    assert subscriber.next_send_at is None
    assert console_errors == []


def test_sign_up_page_fits_a_phone(browser: Browser, live_server, tmp_path) -> None:
    context = browser.new_context(viewport={"width": 375, "height": 800}, timezone_id="Europe/Berlin")
    try:
        page = context.new_page()
        page.goto(live_server.url + "/subscribe/")
        expect(page.get_by_role("button", name="Subscribe")).to_be_visible()

        screenshot = tmp_path / "subscribe-375.png"
        page.screenshot(path=screenshot, full_page=True)

        assert screenshot.stat().st_size > 0
        assert page.evaluate("document.documentElement.scrollWidth") <= 375
    finally:
        context.close()


def test_manage_page_keeps_the_chosen_time_zone(page: Page) -> None:
    """The browser's zone only pre-fills a blank sign-up form, never a saved choice."""
    subscriber = SubscriberFactory(timezone="UTC")

    page.goto(reverse("newsletter:manage", args=[token_make(subscriber=subscriber, purpose=Purpose.MANAGE)]))

    expect(page.get_by_label("Time zone")).to_have_value("UTC")

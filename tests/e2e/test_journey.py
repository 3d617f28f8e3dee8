"""The reader's whole journey in Chromium, in light and in dark, with axe-core on every page:

sign up → confirm from the email → a digest built from the Hugging Face JSON fixture, read in the
local outbox → "More like this" → the archive and the web copy → the private feed → unsubscribe →
subscribe again (from the page after unsubscribing and from a second visit to the link).

Set SCREENSHOTS_DIR to keep a full-page screenshot of every page visited, and the moderate and minor
axe findings in axe-remaining-<scheme>.txt.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ET
from datetime import timedelta
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from newsletter.models import Feedback, Subscriber
from newsletter.outbox import outbox_messages, outbox_read
from tests.e2e.axe import axe_check
from tests.e2e.conftest import TIMEOUT_MS
from tests.papers.helpers import HF_JSON

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

ATOM = "{http://www.w3.org/2005/Atom}"


@pytest.fixture(autouse=True)
def outbox(settings, tmp_path):
    settings.DEBUG = True
    settings.ROOT_URLCONF = "tests.e2e.outbox_urls"
    settings.EMAIL_BACKEND = "newsletter.outbox.OutboxBackend"
    settings.EMAIL_OUTBOX_DIR = tmp_path / "outbox"


class Walk:
    """One page of the journey after another: each is checked with axe, and kept as a screenshot
    when SCREENSHOTS_DIR is set."""

    def __init__(self, page: Page, scheme: str) -> None:
        self.page, self.scheme = page, scheme
        self.remaining: list[str] = []
        self.screens = Path(os.environ["SCREENSHOTS_DIR"]) if os.environ.get("SCREENSHOTS_DIR") else None
        self.count = 0

    def check(self, where: str, page: Page | None = None) -> None:
        page = page or self.page
        page.emulate_media(color_scheme=self.scheme)
        self.remaining += axe_check(page, where=where, schemes=(self.scheme,))
        if self.screens:
            self.count += 1
            self.screens.mkdir(parents=True, exist_ok=True)
            slug = re.sub(r"\W+", "-", where)
            name = f"journey-{self.scheme}-{self.count:02d}-{slug}.png"
            page.screenshot(path=self.screens / name, full_page=True)


def newest_email_html() -> str:
    message = outbox_read(outbox_messages()[0])  # newest first
    return message.get_body(preferencelist=("html",)).get_content()


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_the_whole_journey_is_accessible_in_both_colour_schemes(
    browser: Browser, live_server, settings, scheme: str
) -> None:
    settings.SITE_URL = live_server.url
    call_command("ingest_papers", str(HF_JSON), "--quiet", stdout=StringIO())
    context = browser.new_context(base_url=live_server.url, timezone_id="Europe/Berlin", color_scheme=scheme)
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    walk = Walk(page, scheme)

    # Sign up.
    page.goto("/subscribe/")
    walk.check("sign-up")
    page.get_by_label("Email address").fill("grace@example.org")
    page.get_by_label("Interests").fill("large language models, preference optimization, fine-tuning")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    walk.check("check-your-inbox")

    # Confirm from the email, read in the local outbox.
    page.goto("/dev/outbox/")
    walk.check("outbox")
    page.get_by_role("link", name="Confirm your Paper Digest subscription").click()
    expect(page.get_by_role("heading", name="Confirm your Paper Digest subscription")).to_be_visible()
    walk.check("outbox message")
    with page.expect_popup() as opened:  # links leave the sandboxed frame, as in a webmail
        page.frame_locator("iframe.email").get_by_role("link", name="Confirm my subscription").click()
    confirm = opened.value
    walk.check("confirm", confirm)
    confirm.get_by_role("button", name="Confirm my subscription").click()
    expect(confirm.get_by_role("status")).to_contain_text("You are subscribed.")
    walk.check("manage, just confirmed", confirm)
    manage_url = confirm.url
    # The header link of one's own manage page stays there (not "send me a new link").
    expect(confirm.get_by_role("link", name="Manage your subscription")).to_have_attribute(
        "href", re.compile(r"/manage/[\w:-]+/$")
    )
    confirm.close()
    subscriber = Subscriber.objects.get()
    assert subscriber.status == Subscriber.Status.ACTIVE

    # The digest, built from the HF JSON fixture when it is due.
    Subscriber.objects.filter(pk=subscriber.pk).update(next_send_at=timezone.now() - timedelta(minutes=1))
    call_command("send_digests", "--now", stdout=StringIO())
    page.goto("/dev/outbox/")
    page.locator("tbody a").first.click()  # the newest email: the digest
    expect(page.get_by_role("heading", name="HTML part")).to_be_visible()
    walk.check("outbox digest message")
    email = page.frame_locator("iframe.email")
    expect(email.locator(".paper-title").first).to_be_visible()
    first_title = email.locator(".paper-title").first.inner_text()

    # The email's own HTML, on its own (the outbox frame runs no scripts, so axe cannot run there).
    digest_html = newest_email_html()
    html_page = context.new_page()
    html_page.set_content(digest_html)
    walk.check("digest email HTML", html_page)
    # The rows carry what the HF JSON has: authors (past three, "et al."), the arXiv page and PDF.
    dpo = html_page.locator(".paper", has_text="Direct Preference Optimization")
    expect(dpo.locator(".authors")).to_have_text("Rafael Rafailov, Archit Sharma, Eric Mitchell et al.")
    expect(dpo.get_by_role("link", name="arXiv", exact=True)).to_have_attribute(
        "href", "https://arxiv.org/abs/2305.18290"
    )
    expect(dpo.get_by_role("link", name="PDF", exact=True)).to_have_attribute(
        "href", "https://arxiv.org/pdf/2305.18290"
    )
    # The overview at the top lists every row's title, in order, each linking to its row.
    rows = html_page.locator(".paper")
    overview = html_page.locator(".overview a")
    expect(overview).to_have_text(rows.locator(".paper-title").all_inner_texts())
    for number in range(overview.count()):
        target = overview.nth(number).get_attribute("href")
        assert rows.nth(number).get_attribute("id") == target.removeprefix("#")
    html_page.close()

    # "More like this".
    with page.expect_popup() as opened:
        email.get_by_role("link", name="More like this").first.click()
    feedback = opened.value
    expect(feedback.get_by_role("heading", name="More like this?")).to_be_visible()
    walk.check("feedback", feedback)
    feedback.get_by_role("button", name="More like this").click()
    expect(feedback.get_by_role("status")).to_contain_text("Saved")
    walk.check("feedback saved", feedback)
    feedback.close()
    assert Feedback.objects.get().paper.title == first_title

    # The archive: past digests, the web copy, the papers liked.
    page.goto(manage_url)
    page.get_by_role("link", name="Papers you liked").click()
    expect(page.get_by_role("heading", name="Papers you liked")).to_be_visible()
    expect(page.locator("#liked .paper-title")).to_have_text([first_title])
    walk.check("papers you liked")
    page.get_by_role("link", name="Past digests").click()
    expect(page.get_by_role("heading", name="Past digests")).to_be_visible()
    walk.check("archive")
    digest_link = page.locator(".archived-title a").first
    web_copy_url = digest_link.get_attribute("href")
    feed_url = page.get_by_label("Your feed address").input_value()
    digest_link.click()
    expect(page.get_by_role("heading", name="Your research digest")).to_be_visible()
    expect(page.locator(".paper-title").first).to_have_text(first_title)
    walk.check("digest web copy")

    # The private feed: one entry, opening the same web copy.
    response = page.request.get(feed_url)
    assert response.ok and response.headers["content-type"].startswith("application/atom+xml")
    (entry,) = ET.fromstring(response.body()).findall(f"{ATOM}entry")
    assert entry.find(f"{ATOM}link").get("href") == web_copy_url
    assert first_title in entry.findtext(f"{ATOM}summary")

    # Unsubscribe, then subscribe again from the page that confirms it.
    page.goto(manage_url)
    page.get_by_role("link", name="Unsubscribe").click()
    expect(page.get_by_role("heading", name="Unsubscribe?")).to_be_visible()
    walk.check("unsubscribe")
    unsubscribe_url = page.url
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    walk.check("unsubscribed")
    assert Subscriber.objects.get().status == Subscriber.Status.UNSUBSCRIBED
    page.get_by_role("button", name="Subscribe again").click()
    expect(page.get_by_role("status")).to_contain_text("Welcome back")
    walk.check("manage, subscribed again")
    subscriber = Subscriber.objects.get()
    assert subscriber.status == Subscriber.Status.ACTIVE
    assert subscriber.interests == "large language models, preference optimization, fine-tuning"

    # Once more, from a second visit to the unsubscribe link in an old email.
    page.goto(unsubscribe_url)
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    page.goto(unsubscribe_url)
    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    walk.check("unsubscribe link, second visit")
    page.get_by_role("button", name="Subscribe again").click()
    expect(page.get_by_role("status")).to_contain_text("Welcome back")
    assert Subscriber.objects.get().status == Subscriber.Status.ACTIVE

    assert errors == []
    context.close()
    if walk.screens:  # the moderate and minor findings, for the notes
        (walk.screens / f"axe-remaining-{scheme}.txt").write_text("\n".join(walk.remaining) + "\n")

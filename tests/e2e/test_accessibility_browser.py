"""Accessibility in Chromium beyond the journey (tests/e2e/test_journey.py): axe on the pages the
journey does not reach, a focused error summary, a select that shows its whole choice, and feedback
links tall enough to tap on a phone."""

from __future__ import annotations

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from playwright.sync_api import Browser, Page, expect

from newsletter.models import Feedback, Subscriber
from newsletter.services.tokens import Purpose, feedback_token, token_make
from tests.e2e.axe import axe_check
from tests.factories import PaperFactory, SubscriberFactory
from tests.papers.helpers import HF_JSON

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

PHONE = {"width": 375, "height": 800}
TAP_TARGET_PX = 44


def manage_path(subscriber: Subscriber, name: str = "manage") -> str:
    return reverse(f"newsletter:{name}", args=[token_make(subscriber=subscriber, purpose=Purpose.MANAGE)])


def test_the_other_pages_have_no_serious_axe_finding_in_either_scheme(page: Page) -> None:
    active = SubscriberFactory()
    gone = SubscriberFactory(status=Subscriber.Status.UNSUBSCRIBED, next_send_at=None)
    paper = PaperFactory(title="A paper to turn down")
    pages = {
        "send me a new link": "/manage/",
        "invalid link": "/manage/not-a-token/",
        "manage, unsubscribed": manage_path(gone),
        "delete": manage_path(active, "delete"),
        "not for me": f"/feedback/{feedback_token(subscriber=active, paper_id=paper.pk)}/less/",
        "archive, empty": manage_path(active, "archive"),
        "liked, empty": manage_path(active, "liked"),
    }
    for where, path in pages.items():
        page.goto(path)
        axe_check(page, where=where)

    page.goto("/subscribe/")
    page.get_by_role("button", name="Subscribe").click()  # nothing filled in
    expect(page.locator("#error-summary")).to_be_visible()
    axe_check(page, where="sign-up with errors")


def test_a_form_error_brings_a_focused_summary_at_the_top_linking_to_the_field(page: Page) -> None:
    subscriber = SubscriberFactory(papers_per_digest=10)
    page.goto(manage_path(subscriber))

    page.get_by_label("Papers per digest").fill("0")
    page.get_by_role("button", name="Save preferences").click()

    summary = page.locator("#error-summary")
    expect(summary).to_be_focused()
    expect(summary).to_be_in_viewport()
    link = summary.get_by_role("link", name="Papers per digest")
    expect(link).to_have_attribute("href", "#id_papers_per_digest")
    assert page.locator("#id_papers_per_digest").count() == 1
    link.click()
    expect(page.locator("#id_papers_per_digest")).to_be_in_viewport()
    subscriber.refresh_from_db()
    assert subscriber.papers_per_digest == 10  # nothing saved
    axe_check(page, where="manage with errors")


# The width the selected choice's text needs, and the width the select gives it.
CHOICE_FIT = """select => {
    const style = getComputedStyle(select);
    const probe = document.createElement("span");
    probe.style.font = style.font;
    probe.style.whiteSpace = "pre";
    probe.textContent = select.options[select.selectedIndex].text;
    document.body.append(probe);
    const needed = probe.getBoundingClientRect().width;
    probe.remove();
    return [needed, select.clientWidth - parseFloat(style.paddingLeft) - parseFloat(style.paddingRight)];
}"""
ARROW_PX = 20  # the drop-down arrow takes its share of the content box


@pytest.mark.parametrize("viewport", [{"width": 1280, "height": 800}, PHONE])
def test_the_email_format_select_shows_its_whole_choice(browser: Browser, live_server, viewport) -> None:
    subscriber = SubscriberFactory(email_format="html")
    context = browser.new_context(viewport=viewport)
    try:
        page = context.new_page()
        page.goto(live_server.url + manage_path(subscriber))
        select = page.get_by_label("Email format")
        expect(select).to_have_value("html")

        needed, available = select.evaluate(CHOICE_FIT)

        assert needed + ARROW_PX <= available, (needed, available)
    finally:
        context.close()


def feedback_link_heights(page: Page) -> list[float]:
    links = page.locator(".feedback a")
    assert links.count() >= 2
    return [links.nth(i).bounding_box()["height"] for i in range(links.count())]


def test_feedback_links_are_tall_enough_to_tap_on_a_phone(browser: Browser, live_server, mailoutbox) -> None:
    call_command("ingest_papers", str(HF_JSON), "--quiet", stdout=StringIO())
    subscriber = SubscriberFactory(
        interests="large language models", next_send_at=timezone.now() - timedelta(minutes=1)
    )
    call_command("send_digests", "--now", stdout=StringIO())
    (digest,) = mailoutbox
    paper = PaperFactory(title="A liked paper")
    Feedback.objects.create(subscriber=subscriber, paper=paper, choice="more")
    context = browser.new_context(viewport=PHONE)
    try:
        page = context.new_page()
        page.goto(live_server.url + manage_path(subscriber, "liked"))
        on_the_site = feedback_link_heights(page)
        email = (
            context.new_page()
        )  # a blank page: the site's Content-Security-Policy would block the email's <style>
        email.set_content(digest.alternatives[0][0])
        in_the_email = feedback_link_heights(email)
    finally:
        context.close()

    assert min(on_the_site) >= TAP_TARGET_PX, on_the_site
    assert min(in_the_email) >= TAP_TARGET_PX, in_the_email

"""The local outbox viewer in Chromium: the HTML frame fits its email, the text reads as in a mail client."""

from __future__ import annotations

import pytest
from django.core.mail import EmailMultiAlternatives
from playwright.sync_api import Page, expect

from newsletter.outbox import OutboxBackend, outbox_messages

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]


@pytest.fixture(autouse=True)
def outbox(settings, tmp_path):
    settings.DEBUG = True
    settings.ROOT_URLCONF = "tests.e2e.outbox_urls"
    settings.EMAIL_OUTBOX_DIR = tmp_path


def store(html: str, text: str = "Hello") -> str:
    message = EmailMultiAlternatives("Subject", text, "from@example.org", ["to@example.org"])
    message.attach_alternative(html, "text/html")
    OutboxBackend().send_messages([message])
    return outbox_messages()[0]


def frame_heights(page: Page, name: str) -> tuple[int, int]:
    page.goto(f"/dev/outbox/{name}/")
    frame = page.locator("iframe.email")
    expect(frame).to_be_visible()
    page.wait_for_function("document.querySelector('iframe.email').style.height !== ''")
    content = frame.content_frame.locator("html").evaluate("html => html.scrollHeight")
    return frame.bounding_box()["height"], content


def test_a_long_email_gets_a_frame_as_tall_as_its_content(page: Page, console_errors: list) -> None:
    name = store("<html><body>" + "<p>A paper worth reading.</p>" * 120 + "</body></html>")

    height, content = frame_heights(page, name)

    assert content > 2000
    assert abs(height - content) <= 4  # borders; no scrolling inside the frame
    assert console_errors == []


def test_a_short_email_leaves_no_blank_below_it(page: Page) -> None:
    name = store("<html><body><p>Confirm your subscription.</p></body></html>")

    height, content = frame_heights(page, name)

    assert height < 200
    assert abs(height - content) <= 4


def test_the_email_html_still_cannot_run_scripts(page: Page) -> None:
    name = store("<html><body><p id='x'>static</p><script>document.title = 'ran'</script></body></html>")

    frame_heights(page, name)

    assert page.frame_locator("iframe.email").locator("#x").inner_text() == "static"
    assert page.locator("iframe.email").content_frame.locator("title").count() == 0


# The left edge of each rendered line of an element's text.
LINE_LEFTS = """element => {
    const range = document.createRange();
    range.selectNodeContents(element);
    return Array.from(range.getClientRects(), rect => Math.round(rect.left));
}"""


def test_text_lines_wrap_under_their_own_indent(page: Page) -> None:
    long_line = "   " + "an abstract that goes on and on " * 12
    name = store("<p>x</p>", text=f"1. A title\n{long_line}\n")

    page.goto(f"/dev/outbox/{name}/")
    title = page.locator(".mail-text .indent-0").first.evaluate(LINE_LEFTS)
    abstract = page.locator(".mail-text .indent-3").evaluate(LINE_LEFTS)

    assert len(abstract) > 2  # wrapped inside the page, not scrolled sideways
    assert page.evaluate("document.documentElement.scrollWidth") <= page.viewport_size["width"]
    assert min(abstract) > title[0]  # every wrapped line starts under the indent, none at the margin

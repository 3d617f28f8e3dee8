"""The digest in Chromium, in the light and the dark colour scheme: the email as a mail client shows it,
its web copy and the sign-up page. Each is screenshot in both schemes, and each must change its
background with the scheme and keep its text readable (WCAG AA contrast)."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page

from newsletter.services.render import digest_email
from newsletter.services.tokens import Purpose, link
from tests.newsletter.hf_digest import hf_digest

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

SCHEMES = ("light", "dark")
AA = 4.5  # WCAG AA for body text

# The colours a text element is shown in: its own, and the first opaque background behind it.
_COLOURS = """element => {
  let node = element, background = null;
  while (node && node.nodeType === 1) {
    const colour = getComputedStyle(node).backgroundColor;
    if (colour !== 'rgba(0, 0, 0, 0)' && colour !== 'transparent') { background = colour; break; }
    node = node.parentElement;
  }
  return [getComputedStyle(element).color, background || 'rgb(255, 255, 255)'];
}"""


def _rgb(css: str) -> tuple[float, float, float]:
    r, g, b = (int(v) for v in re.findall(r"\d+", css)[:3])
    return r, g, b


def _luminance(css: str) -> float:
    def channel(value: float) -> float:
        value /= 255
        return value / 12.92 if value <= 0.03928 else ((value + 0.055) / 1.055) ** 2.4

    r, g, b = (channel(v) for v in _rgb(css))
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(foreground: str, background: str) -> float:
    lighter, darker = sorted((_luminance(foreground), _luminance(background)), reverse=True)
    return (lighter + 0.05) / (darker + 0.05)


def look(page: Page, selectors: list[str], screenshot: Path) -> float:
    """Screenshot the page, assert each selector's text is readable, return the body's luminance."""
    page.screenshot(path=screenshot, full_page=True)
    assert screenshot.stat().st_size > 0
    for selector in selectors:
        foreground, background = page.locator(selector).first.evaluate(_COLOURS)
        ratio = contrast(foreground, background)
        assert ratio >= AA, f"{screenshot.name}: {selector} is {foreground} on {background} ({ratio:.1f}:1)"
    return _luminance(page.locator("body").evaluate("b => getComputedStyle(b).backgroundColor"))


def in_both_schemes(
    browser: Browser, base_url: str, show, selectors: list[str], name: str, out: Path
) -> None:
    backgrounds = {}
    for scheme in SCHEMES:
        context = browser.new_context(
            color_scheme=scheme, base_url=base_url, viewport={"width": 720, "height": 900}
        )
        page = context.new_page()
        show(page)
        backgrounds[scheme] = look(page, selectors, out / f"{name}-{scheme}.png")
        context.close()
    # The dark scheme is dark: a background far darker than the light one's.
    assert backgrounds["dark"] < 0.05 < backgrounds["light"]


def test_the_digest_email_in_light_and_dark(browser: Browser, live_server, settings, tmp_path) -> None:
    settings.SITE_URL = live_server.url
    delivery, picks = hf_digest()
    html = digest_email(delivery=delivery, picks=picks).alternatives[0][0]

    def show(page: Page) -> None:
        page.set_content(html)
        # The overview's first entry jumps to the first row.
        page.locator(".overview-link").first.click()
        assert page.evaluate("location.hash") == "#paper-1"
        assert (
            page.locator("#paper-1 .authors").inner_text()
            == "Rafael Rafailov, Archit Sharma, Eric Mitchell et al."
        )

    selectors = [
        ".intro", ".overview-link", ".paper-title", ".authors", ".date", ".abstract", ".link", ".stat",
        ".reason", ".chip", ".feedback-link", ".footer",
    ]  # fmt: skip
    in_both_schemes(browser, live_server.url, show, selectors, "digest-email", tmp_path)


def test_the_web_copy_and_a_site_page_in_light_and_dark(
    browser: Browser, live_server, settings, tmp_path
) -> None:
    settings.SITE_URL = live_server.url
    delivery, _ = hf_digest()
    web_copy = link(subscriber=delivery.subscriber, purpose=Purpose.DIGEST, object_id=delivery.pk)

    def digest_page(page: Page) -> None:
        page.goto(web_copy)
        assert page.locator(".overview a").count() == 6
        assert page.locator("a[href='https://arxiv.org/abs/2305.18290']").count() == 1

    def sign_up_page(page: Page) -> None:
        page.goto("/")

    in_both_schemes(
        browser, live_server.url, digest_page,
        [
            ".lead", ".overview a", ".paper-title", ".authors", ".meta", ".abstract", ".links a", ".stat",
            ".chip", ".reasons li", ".site-footer",
        ],
        "digest-web", tmp_path,
    )  # fmt: skip
    in_both_schemes(
        browser, live_server.url, sign_up_page, ["h1", "label", ".lead", "button"], "sign-up", tmp_path
    )

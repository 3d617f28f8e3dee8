"""Chromium through Playwright for the browser tests: one browser per test, a page on the live server."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.db import connections
from playwright.sync_api import Browser, Page, sync_playwright

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
TIMEOUT_MS = 10_000


@pytest.fixture
def browser(monkeypatch) -> Iterator[Browser]:
    """One Chromium per test, started after the test database is set up and stopped before it is
    flushed: while Playwright's event loop runs, Django hands this thread a different connection
    object (connections are context-local), one that cannot restore a serialized_rollback."""
    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are still
    # synchronous, so Django's "called from an async context" guard must be lifted meanwhile.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        yield browser
        browser.close()
        # The ORM calls made while the loop ran opened a connection of their own: close it, or the
        # test database cannot be dropped at the end of the session.
        connections.close_all()


@pytest.fixture
def page(browser: Browser, live_server, settings) -> Iterator[Page]:
    settings.SITE_URL = live_server.url  # links in the emails point at the live server
    context = browser.new_context(timezone_id="Europe/Berlin", base_url=live_server.url)
    context.set_default_timeout(TIMEOUT_MS)
    yield context.new_page()
    context.close()


@pytest.fixture
def console_errors(page: Page) -> list[str]:
    """Errors the page logs, including scripts or styles the Content-Security-Policy blocked."""
    errors: list[str] = []
    page.on("console", lambda message: message.type == "error" and errors.append(message.text))
    return errors

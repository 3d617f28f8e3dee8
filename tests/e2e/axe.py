"""axe-core (bundled by axe-playwright-python) on a page in Chromium, in both colour schemes.

Serious and critical findings fail the test; moderate and minor ones are returned so a test can show
them (docs/architecture.md#accessibility-and-the-journey-test: none remain on the pages checked).
"""

from __future__ import annotations

from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page

AXE = Axe()
BLOCKING = {"serious", "critical"}
SCHEMES = ("light", "dark")
# Frames are checked on their own (the outbox's email frame is sandboxed without scripts, where
# axe cannot run; tests check the email's HTML directly instead).
OPTIONS = {"resultTypes": ["violations"], "iframes": False}


def _described(violation: dict) -> str:
    targets = [node["target"] for node in violation["nodes"][:3]]
    return f"{violation['id']} ({violation['impact']}): {violation['help']} at {targets}"


def axe_check(page: Page, *, where: str, schemes: tuple[str, ...] = SCHEMES) -> list[str]:
    """Run axe in each colour scheme: assert no serious or critical finding; return the others."""
    remaining: list[str] = []
    page.wait_for_load_state()  # axe needs the document a click may still be replacing
    for scheme in schemes:
        page.emulate_media(color_scheme=scheme)
        violations = AXE.run(page, options=OPTIONS).response["violations"]
        blocking = [_described(v) for v in violations if v["impact"] in BLOCKING]
        assert blocking == [], f"{where}, {scheme}: {blocking}"
        remaining += [f"{where}, {scheme}: {_described(v)}" for v in violations]
    return remaining

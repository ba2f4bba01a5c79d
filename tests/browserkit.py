"""Debian's headless Chromium through Playwright, shared by the report's browser tests."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
# Headless as root, offline: no sandbox, GPU, updates, sync or first-run chatter.
ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def chromium() -> Iterator[Any]:
    """Yield a launched browser (for a module-scoped fixture); skip when Chromium or Playwright is missing.

    Module scope: Playwright's sync API runs an event loop while it is open, and other test
    modules start their own.
    """
    if not CHROMIUM.exists():
        pytest.skip("Debian's Chromium is not at /usr/bin/chromium")
    sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), headless=True, args=ARGS)
        yield browser
        browser.close()


def watched_page(browser: Any, url: str) -> Iterator[Any]:
    """A fresh 1280x900 page at ``url`` whose console messages and page errors (CSP violations,
    script errors) are kept in ``page.console_messages``; its context is closed afterwards."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    pg.console_messages = []
    pg.on("console", lambda m: pg.console_messages.append(m.text))
    pg.on("pageerror", lambda e: pg.console_messages.append(str(e)))
    pg.goto(url)
    yield pg
    context.close()

"""Headless Chromium (Debian's, driven by Playwright) for the stack's pages: screenshots and sign-in.

Playwright is used only as a driver of the machine's own ``/usr/bin/chromium`` (``make chromium``
installs it); it never downloads a browser. Screenshots go to ``tests/artifacts/compose/``.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Iterator

import pytest

from tests.compose import ARTIFACTS

#: No background traffic: this machine reaches no network but the package registries.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-proxy-server",
                 "--disable-quic", "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]


@contextlib.contextmanager
def page(width: int = 1400, height: int = 900) -> Iterator[object]:
    from playwright.sync_api import sync_playwright

    binary = shutil.which("chromium")
    if binary is None:
        pytest.fail("chromium is not installed: run `make chromium` (Debian's chromium package)", pytrace=False)
    with sync_playwright() as driver:
        browser = driver.chromium.launch(executable_path=binary, headless=True, args=CHROMIUM_ARGS)
        try:
            context = browser.new_context(viewport={"width": width, "height": height})
            yield context.new_page()
        finally:
            browser.close()


def save(tab, name: str) -> str:
    """Screenshot the tab as ``<name>.png``; return the page's visible text."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shot = ARTIFACTS / f"{name}.png"
    tab.screenshot(path=str(shot), full_page=False)
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 10_000, shot
    print(f"\n  screenshot: {shot}")
    return tab.inner_text("body")


def screenshot(name: str, url: str, wait_for: str, timeout_ms: int = 90_000) -> str:
    """Load ``url``, wait until the text ``wait_for`` shows (the pages render in the browser), screenshot."""
    with page() as tab:
        tab.goto(url, timeout=timeout_ms)
        tab.get_by_text(wait_for, exact=False).first.wait_for(timeout=timeout_ms)
        tab.wait_for_timeout(1000)  # the rest of the page settles
        return save(tab, name)


def airflow_sign_in(base: str, user: str, password: str, then: str, name: str, wait_for: str,
                    timeout_ms: int = 90_000) -> str:
    """Sign in to Airflow's UI through its form, open ``then``, wait for ``wait_for``, screenshot."""
    with page() as tab:
        tab.goto(base + "/", timeout=timeout_ms)
        tab.get_by_text("Sign into Airflow").wait_for(timeout=timeout_ms)
        tab.get_by_label("Username").fill(user)
        tab.get_by_label("Password").fill(password)
        tab.get_by_role("button", name="Sign in").click()
        tab.wait_for_url(lambda address: "/auth/login" not in address, timeout=timeout_ms)
        tab.goto(base + then, timeout=timeout_ms)
        tab.get_by_text(wait_for, exact=False).first.wait_for(timeout=timeout_ms)
        tab.wait_for_timeout(1000)
        return save(tab, name)

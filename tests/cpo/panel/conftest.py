"""Browser fixtures: Debian's chromium driven by Playwright against the real daphne server.

A browser test that fails leaves a full-page screenshot in test-artifacts/ (gitignored).
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

# Tests marked `browser` are skipped without it (tests/conftest.py).
from tests.conftest import CHROMIUM

ROOT = Path(__file__).resolve().parent.parent.parent
ARTIFACTS = ROOT / "test-artifacts"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
PASSWORD = "panel-pass-2026"


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Any:  # noqa: ARG001
    report = yield
    setattr(item, f"rep_{report.when}", report)
    return report


@pytest_asyncio.fixture
async def browser_page(request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A fresh headless chromium page; on failure its screenshot goes to test-artifacts/."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        context = await browser.new_context(viewport={"width": 1400, "height": 1000})
        page = await context.new_page()
        errors: list[str] = []
        page.errors = errors  # type: ignore[attr-defined]  # read by the tests
        page.on("pageerror", lambda error: errors.append(str(error)))
        # Chromium reports what the Content-Security-Policy blocked on the console.
        refused: list[str] = []
        page.on(
            "console",
            lambda message: (
                refused.append(message.text) if "Content Security Policy" in message.text else None
            ),
        )
        try:
            yield page
            # Every page a browser test opens works under the CSP: nothing was blocked.
            assert refused == [], refused
        finally:
            report = getattr(request.node, "rep_call", None)
            if report is None or report.failed:
                ARTIFACTS.mkdir(exist_ok=True)
                name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)
                await page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)
            await context.close()
            await browser.close()


async def login(page: Any, base_url: str, username: str, password: str = PASSWORD) -> None:
    await page.goto(f"{base_url}/admin/login/?next=/admin/")
    await page.fill("#id_username", username)
    await page.fill("#id_password", password)
    await page.click("input[type=submit]")
    await page.wait_for_url(f"{base_url}/admin/")


def make_staff(username: str, role: str | None, *, superuser: bool = False) -> Any:
    from django.contrib.auth.models import Group

    from cpo.models import User

    user = User.objects.create_user(
        username=username, password=PASSWORD, is_staff=True, is_superuser=superuser
    )
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user

"""Failed panel logins in a real browser (finding 12 of issue 20): after three wrong passwords
the right one is refused too, with the reason on the login page, until the cooldown has
passed or a superuser lifts the lock on the Login lockouts page."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import pytest
from playwright.async_api import expect

from tests.conftest import DaphneServer, start_daphne
from tests.cpo.panel.conftest import (  # noqa: F401 - fixture
    CHROMIUM,
    CHROMIUM_ARGS,
    PASSWORD,
    browser_page,
    login,
    make_staff,
)

# Database calls on a pool thread that closes its connection (PostgreSQL drops the test
# database at the end only when none is left open).
from tests.faults.conftest import in_thread

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.live,
    pytest.mark.browser,
]

COOLDOWN_S = 4
LOCKED = "Too many failed logins for this username or from this address"


@pytest.fixture
def limited_daphne(transactional_db: Any) -> Iterator[DaphneServer]:  # noqa: ARG001
    server = start_daphne(
        "login-limits", LOGIN_FAILURE_LIMIT="3", LOGIN_LOCKOUT_SECONDS=str(COOLDOWN_S)
    )
    yield server
    server.stop()


async def try_login(page: Any, base: str, username: str, password: str) -> None:
    await page.goto(f"{base}/admin/login/?next=/admin/")
    await page.fill("#id_username", username)
    await page.fill("#id_password", password)
    await page.click("input[type=submit]")
    await page.wait_for_load_state()


async def test_wrong_logins_lock_out_until_the_cooldown_or_a_superuser_lifts_it(
    limited_daphne: DaphneServer,
    roles: None,
    browser_page: Any,  # noqa: F811
) -> None:
    base = limited_daphne.http_url
    await in_thread(make_staff)("olivia-op", "Operators")
    await in_thread(make_staff)("sam-sup", "Support")
    await in_thread(make_staff)("root", None, superuser=True)
    page = browser_page
    # The superuser's own session, opened before the address is locked.
    admin_context = await page.context.browser.new_context()
    admin_page = await admin_context.new_page()
    await login(admin_page, base, "root")

    for n in range(2):
        await try_login(page, base, "olivia-op", f"wrong-{n}")
        await expect(page.locator(".errornote")).to_contain_text("Please enter the correct")
    await try_login(page, base, "olivia-op", "wrong-2")
    await expect(page.locator(".errornote")).to_contain_text(LOCKED)

    await try_login(page, base, "olivia-op", PASSWORD)
    assert "/admin/login/" in page.url
    await expect(page.locator(".errornote")).to_contain_text("even with the right password")

    # After the cooldown the right password works.
    await asyncio.sleep(COOLDOWN_S + 1)
    await login(page, base, "olivia-op")
    await page.click("#logout-form button")

    # Locked again (the address still had its failures), then lifted by the superuser.
    await try_login(page, base, "sam-sup", "wrong")
    await expect(page.locator(".errornote")).to_contain_text(LOCKED)
    await try_login(page, base, "sam-sup", PASSWORD)
    await expect(page.locator(".errornote")).to_contain_text(LOCKED)

    await admin_page.goto(f"{base}/admin/cpo/loginthrottle/")
    rows = admin_page.locator("#result_list tbody tr")
    await expect(rows.filter(has_text="127.0.0.1")).to_contain_text("locked")
    await admin_page.check("#action-toggle")
    await admin_page.select_option("select[name=action]", "lift_lockouts")
    await admin_page.click("button[name=index]")
    await expect(admin_page.locator(".messagelist")).to_contain_text("Lifted")
    await expect(rows).to_have_count(0)
    await admin_context.close()

    await login(page, base, "sam-sup")
    await expect(page.locator("#user-tools")).to_contain_text("sam-sup")

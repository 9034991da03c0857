"""The panel's "Your API tokens" page and the ReDoc page in a real browser, against daphne."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from playwright.async_api import expect

from cpo.models import ApiToken
from tests.cpo.panel.conftest import login, make_staff

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.live,
    pytest.mark.browser,
]


def _get(url: str, token: str) -> tuple[int, Any]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"})  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=10) as response:  # noqa: S310 - loopback
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


async def test_a_support_user_makes_uses_and_revokes_its_own_token(
    daphne_server: Any, roles: None, browser_page: Any
) -> None:
    await sync_to_async(make_staff)("support1", "Support")
    page = browser_page
    await login(page, daphne_server.http_url, "support1")
    await page.click("text=Your API tokens")
    await expect(page.locator("#api-tokens")).to_contain_text("No tokens yet.")
    await page.fill("#id_name", "helpdesk script")
    await page.fill("#id_expires_in_days", "30")
    await page.click("#api-token-create")
    secret = (await page.locator("#new-token-secret").inner_text()).strip()
    assert secret.startswith("cpo_")
    row = page.locator("#api-tokens tbody tr").first
    await expect(row).to_contain_text("helpdesk script")
    await expect(row.locator(".token-state")).to_have_text("active")

    # The token works as that user.
    stations = f"{daphne_server.http_url}/api/v1/stations/"
    status, _body = await sync_to_async(_get)(stations, secret)
    assert status == 200
    # Shown once: a reload has no secret (and makes no token), the database holds only a hash.
    await page.reload()
    await expect(page.locator("#new-token-secret")).to_have_count(0)
    assert await sync_to_async(ApiToken.objects.count)() == 1
    stored = await sync_to_async(lambda: ApiToken.objects.values().get())()
    assert secret not in str(stored)
    assert stored["last_used_at"] is not None
    await expect(row).to_contain_text("from 127.0.0.1")
    await row.locator("input.revoke").click()
    await expect(page.locator(".messagelist")).to_contain_text("is revoked")
    await expect(
        page.locator("#api-tokens tbody tr").first.locator(".token-state")
    ).to_contain_text("revoked")
    status, body = await sync_to_async(_get)(stations, secret)
    assert status == 401
    assert body["errors"][0]["code"] == "authentication_failed"
    assert page.errors == []


async def test_redoc_renders_from_the_back_office_itself(
    daphne_server: Any, roles: None, browser_page: Any
) -> None:
    await sync_to_async(make_staff)("integrator1", "Support")
    page = browser_page
    await login(page, daphne_server.http_url, "integrator1")
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    response = await page.goto(f"{daphne_server.http_url}/api/redoc/")
    assert response is not None
    assert "script-src 'self'" in response.headers["content-security-policy"]
    await expect(page.locator("redoc")).to_contain_text(
        "/api/v1/stations/{identity}/", timeout=30_000
    )
    # ReDoc's search worker starts from a blob: of its own script.
    here = (daphne_server.http_url, f"blob:{daphne_server.http_url}")
    assert all(url.startswith(here) for url in requested), requested
    assert page.errors == []

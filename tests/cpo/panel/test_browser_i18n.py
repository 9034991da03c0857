"""The panel in Dutch, in a real browser: the header's switcher changes the language of the
dashboard, its menus and its live parts, numbers get a decimal comma, and the choice is the
user's (a new browser opens in it)."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from playwright.async_api import expect

from cpo.models import User
from stations.models import ChargingStation
from tests.cpo.panel.conftest import login, make_staff

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.live,
    pytest.mark.browser,
]


async def test_switching_to_dutch(daphne_server, roles, browser_page) -> None:
    await sync_to_async(ChargingStation.objects.create)(identity="I18N-OFF-1")
    await sync_to_async(make_staff)("i18n-operator", "Operators")
    page: Any = browser_page
    await login(page, daphne_server.http_url, "i18n-operator")
    await expect(page.locator("#widget-network h2")).to_have_text("Network")
    await expect(page.locator("#kpi-today-energy")).to_have_text("0.000")

    await page.select_option("#language-select", "nl")
    await page.wait_for_function("document.documentElement.lang === 'nl'")
    await page.wait_for_url(f"{daphne_server.http_url}/admin/")
    await expect(page.locator("#widget-network h2")).to_have_text("Netwerk")
    await expect(page.locator("#widget-alerts h2")).to_contain_text("Meldingen")
    await expect(page.locator("#site-name")).to_have_text("CPO-backoffice")
    quick_links = page.locator("#quick-links")
    await expect(quick_links.locator("h2")).to_have_text("Operators: ga naar")
    await expect(quick_links).to_contain_text("Laadpunten")
    await expect(quick_links).to_contain_text("Kaart van locaties")
    await expect(quick_links).to_contain_text("Beschikbaarheidsrapport")
    # The live parts come from the JSON endpoints, in the same language.
    await expect(page.locator("#panel-updated")).to_contain_text("Live: bijgewerkt", timeout=20_000)
    await expect(page.locator("#alert-list")).to_contain_text("I18N-OFF-1 offline")
    await expect(page.locator("#alert-list")).to_contain_text("nooit gezien")
    # A decimal comma, on the page as rendered and after every refresh.
    await expect(page.locator("#kpi-today-energy")).to_have_text("0,000")

    user = await sync_to_async(User.objects.get)(username="i18n-operator")
    assert user.language == "nl"

    # The choice is the user's: a browser with no cookie and an English Accept-Language.
    context = await page.context.browser.new_context(locale="en-US")
    other = await context.new_page()
    await login(other, daphne_server.http_url, "i18n-operator")
    await expect(other.locator("#widget-network h2")).to_have_text("Netwerk")
    await other.goto(f"{daphne_server.http_url}/admin/panel/map/")
    await expect(other.locator("h1")).to_have_text("Kaart van locaties")
    await context.close()
    assert page.errors == []

"""The panel in Dutch, in a real browser: the header's switcher changes the language of the
dashboard, its menus and its live parts, numbers get a decimal comma, and the choice is the
user's (a new browser opens in it); the station page and what its script writes are Dutch too."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from ocpp.v16 import call
from playwright.async_api import expect

from cpo.models import User
from stations.models import ChargingStation
from tests.cpo.panel.conftest import login, make_staff
from tests.ocpp_client import station

STATION_PASSWORD = "i18n-station-secret-01"


@sync_to_async
def make_station(identity: str) -> ChargingStation:
    row = ChargingStation(identity=identity)
    row.set_password(STATION_PASSWORD)
    row.save()
    return row


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


async def test_station_page_in_dutch(daphne_server, roles, browser_page) -> None:
    """The station page's own texts and the parts panel.js writes (relative times, the live
    state, the connector buttons) are Dutch: the script reads them from the page."""
    row = await make_station("I18N-ST-1")
    user = await sync_to_async(make_staff)("i18n-station", "Operators")
    user.language = "nl"
    await sync_to_async(user.save)(update_fields=["language"])
    page: Any = browser_page
    await login(page, daphne_server.http_url, "i18n-station")

    async with station(daphne_server.ws_url, "I18N-ST-1", password=STATION_PASSWORD) as cp:
        answer = await cp.cp.call(
            call.BootNotification(charge_point_vendor="ACME", charge_point_model="Wallbox 22")
        )
        assert answer.status == "Accepted"
        three_minutes_ago = timezone.now() - dt.timedelta(minutes=3)
        await cp.cp.call(
            call.StatusNotification(
                connector_id=1,
                error_code="NoError",
                status="Available",
                timestamp=three_minutes_ago.isoformat().replace("+00:00", "Z"),
            )
        )
        await page.goto(f"{daphne_server.http_url}/admin/stations/chargingstation/{row.pk}/change/")
        identity = page.locator("section.station-identity")
        await expect(identity).to_contain_text("Laatst gezien")
        await expect(identity.locator("summary")).to_have_text("Meer over dit laadpunt")
        await expect(page.locator("section[aria-label=Aansluitingen] h2")).to_have_text(
            "Aansluitingen"
        )
        # Written by panel.js after its first refresh: Dutch, not the script's English.
        await expect(page.locator("#panel-updated")).to_contain_text(
            "Live: bijgewerkt", timeout=20_000
        )
        connectors = page.locator("#station-connectors tbody")
        await expect(connectors).to_contain_text("Available")
        await expect(connectors).to_contain_text("3 min geleden")
        await expect(connectors.locator("button[data-command=unlock_connector]")).to_have_text(
            "Ontgrendelen"
        )
        await expect(page.locator("#station-last-seen")).to_have_text("zojuist")
        await expect(page.locator("#station-online")).to_have_text("Online")
    assert page.errors == []


async def test_the_change_language_button_switches_without_the_script(
    daphne_server,
    roles,  # noqa: ARG001
    browser_page,
) -> None:
    """The button the header keeps for keyboards and browsers without scripts: the value is set
    without a change event (so the script does not send the form), then the button is clicked."""
    page = browser_page
    await sync_to_async(make_staff)("i18n-keyboard", "Operators")
    await login(page, daphne_server.http_url, "i18n-keyboard")
    await page.evaluate("document.getElementById('language-select').value = 'de'")
    await page.click("#language-submit")
    await page.wait_for_function("document.documentElement.lang === 'de'")
    await expect(page.locator("#widget-network h2")).to_have_text("Netz")

    def saved() -> str:
        return User.objects.get(username="i18n-keyboard").language

    assert await sync_to_async(saved)() == "de"

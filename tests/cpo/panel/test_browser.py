"""The operator panel in a real browser: headless chromium against the real daphne server,
with real OCPP charge points connecting to that same server."""

from __future__ import annotations

import asyncio
import csv
import datetime as dt
import io
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from ocpp.v16 import call
from playwright.async_api import expect

from stations.commands.models import Command
from stations.models import ChargingStation
from tests.cpo.panel.conftest import login, make_staff
from tests.ocpp_client import station

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.live,
    pytest.mark.browser,
]

STATION_PASSWORD = "panel-station-secret-01"


@sync_to_async
def make_station(identity: str) -> ChargingStation:
    row = ChargingStation(identity=identity)
    row.set_password(STATION_PASSWORD)
    row.save()
    return row


async def boot(cp) -> None:
    answer = await cp.cp.call(
        call.BootNotification(charge_point_vendor="ACME", charge_point_model="Wallbox 22")
    )
    assert answer.status == "Accepted"
    now = timezone.now().isoformat().replace("+00:00", "Z")
    await cp.cp.call(
        call.StatusNotification(
            connector_id=1, error_code="NoError", status="Available", timestamp=now
        )
    )


async def test_dashboard_counts_a_station_online_without_reload(
    daphne_server, roles, browser_page
) -> None:
    await make_station("PANEL-LIVE-1")
    await sync_to_async(make_staff)("operator1", "Operators")
    page = browser_page
    await login(page, daphne_server.http_url, "operator1")
    online = page.locator("#kpi-stations-online")
    await expect(online).to_have_text("0")
    await expect(page.locator("#alert-list")).to_contain_text("PANEL-LIVE-1 offline")
    # A marker that a reload would wipe out.
    await page.evaluate("window.__stillTheSamePage = true")

    async with station(daphne_server.ws_url, "PANEL-LIVE-1", password=STATION_PASSWORD) as cp:
        await boot(cp)
        await expect(online).to_have_text("1", timeout=20_000)
        await expect(page.locator("#kpi-stations-offline")).to_have_text("0")
        await expect(page.locator("#connector-statuses")).to_contain_text("Available")
        await expect(page.locator("#alert-list")).not_to_contain_text("PANEL-LIVE-1")

    await expect(online).to_have_text("0", timeout=20_000)
    assert await page.evaluate("window.__stillTheSamePage") is True
    assert page.errors == []


async def test_remote_command_from_the_station_page_shows_its_result(
    daphne_server, roles, browser_page
) -> None:
    row = await make_station("PANEL-CMD-1")
    await sync_to_async(make_staff)("operator2", "Operators")
    page = browser_page
    await login(page, daphne_server.http_url, "operator2")

    async with station(daphne_server.ws_url, "PANEL-CMD-1", password=STATION_PASSWORD) as cp:
        await boot(cp)
        await page.goto(f"{daphne_server.http_url}/admin/stations/chargingstation/{row.pk}/change/")
        await expect(page.locator("#station-online")).to_have_text("Online")
        await expect(page.locator("#station-connectors")).to_contain_text("Available")

        await page.click("button[data-command=reset-soft]")
        await expect(page.locator("#command-flash")).to_contain_text("Reset queued")
        latest = page.locator("#station-commands tbody tr").first
        await expect(latest).to_contain_text("Reset")
        await expect(latest).to_have_attribute("data-status", "accepted", timeout=20_000)
        await expect(latest.locator(".command-result")).to_contain_text("status: Accepted")

        assert ("Reset", {"type": "Soft"}) in cp.cp.received_calls
    command = await sync_to_async(Command.objects.select_related("requested_by").get)(station=row)
    assert command.status == Command.Status.ACCEPTED
    assert command.origin == Command.Origin.ADMIN
    assert command.requested_by is not None
    assert command.requested_by.username == "operator2"
    assert page.errors == []


async def test_support_sees_the_station_page_with_the_driver_help_commands_only(
    daphne_server, roles, browser_page
) -> None:
    row = await make_station("PANEL-RO-1")
    await sync_to_async(make_staff)("support1", "Support")
    page = browser_page
    await login(page, daphne_server.http_url, "support1")
    await expect(page.locator("#quick-links")).to_contain_text("Tokens")
    await page.goto(f"{daphne_server.http_url}/admin/stations/chargingstation/{row.pk}/change/")
    await expect(page.locator("#station-connectors")).to_be_visible()
    # Never connected: no protocol, so no command can be sent yet.
    assert await page.locator("[data-command]").count() == 0
    # The endpoint refuses what is not Support's, not only the page.
    status = await page.evaluate(
        """async (url) => (await fetch(url, {method: "POST", headers: {Accept:
           "application/json", "X-CSRFToken": document.cookie.replace(/.*csrftoken=([^;]+).*/,
           "$1")}, body: new URLSearchParams({verb: "clear_cache"})})).status""",
        f"/admin/panel/stations/{row.pk}/command",
    )
    assert status == 403


@sync_to_async
def make_tariff_with_version() -> Any:
    from tests.billing.conftest import make_tariff

    return make_tariff(tariff_id="PANEL-SUPPORT-TARIFF")


async def test_support_unlocks_a_connector_and_is_refused_a_tariff_change(
    daphne_server, roles, browser_page
) -> None:
    """Issue 18: Support helps a driver (unlock, ask for status) from the station page, over a
    real websocket, and can change nothing else: no reset, no tariff change."""
    from tariffs.models import Tariff, TariffVersion

    row = await make_station("PANEL-SUP-1")
    tariff = await make_tariff_with_version()
    await sync_to_async(make_staff)("support2", "Support")
    page = browser_page
    await login(page, daphne_server.http_url, "support2")

    async with station(daphne_server.ws_url, "PANEL-SUP-1", password=STATION_PASSWORD) as cp:
        await boot(cp)
        await page.goto(f"{daphne_server.http_url}/admin/stations/chargingstation/{row.pk}/change/")
        await expect(page.locator("#station-online")).to_have_text("Online")
        await expect(page.locator("#station-connectors")).to_contain_text("Available")
        await expect(page.locator("button[data-command=trigger-status]")).to_have_count(1)
        for operator_only in ("reset-soft", "reset-hard", "clear-cache", "remote-start"):
            assert await page.locator(f"button[data-command={operator_only}]").count() == 0
        assert await page.locator("button[data-command=change_availability]").count() == 0

        # The first click after the page loaded: one click, one command.
        unlock = page.locator("#station-connectors button[data-command=unlock_connector]")
        await expect(unlock).to_have_count(1)
        await unlock.click()
        await expect(page.locator("#command-flash")).to_contain_text("UnlockConnector queued")
        latest = page.locator("#station-commands tbody tr").first
        await expect(latest).to_contain_text("UnlockConnector")
        await expect(latest).to_have_attribute("data-status", "accepted", timeout=20_000)
        await expect(latest.locator(".command-result")).to_contain_text("status: Unlocked")
        await asyncio.sleep(2)  # time for a second command, were one sent
        unlocks = [call for call in cp.cp.received_calls if call[0] == "UnlockConnector"]
        assert unlocks == [("UnlockConnector", {"connector_id": 1})]

    command = await sync_to_async(Command.objects.select_related("requested_by").get)(
        station=row, action="UnlockConnector"
    )
    assert command.requested_by.username == "support2"

    # A tariff: Support may look at it, and the change is refused.
    url = f"{daphne_server.http_url}/admin/tariffs/tariff/{tariff.pk}/change/"
    await page.goto(url)
    await expect(page.locator("#content h1")).to_contain_text("View tariff")
    assert await page.locator("input[name=_save]").count() == 0
    status = await page.evaluate(
        """async (url) => (await fetch(url, {method: "POST", headers: {"X-CSRFToken":
           document.cookie.replace(/.*csrftoken=([^;]+).*/, "$1")}, body: new URLSearchParams(
           {tariff_id: "PANEL-SUPPORT-TARIFF", name: "Cheaper", currency: "EUR"})})).status""",
        url,
    )
    assert status == 403
    saved = await sync_to_async(Tariff.objects.get)(pk=tariff.pk)
    assert saved.name == "Standard"
    assert await sync_to_async(TariffVersion.objects.filter(tariff=tariff).count)() == 1
    assert page.errors == []


@sync_to_async
def issue_invoices() -> list[str | None]:
    from billing import services
    from billing.models import Invoice
    from tests.billing.conftest import make_account, make_cdr, make_site

    site = make_site("PANEL-BILL-1")
    january = dt.datetime(2025, 1, 10, 12, tzinfo=dt.UTC)
    for n, amount in enumerate(("10.05", "7.77")):
        make_cdr(make_account(f"Panel account {n}"), site, end=january, excl=amount)
    after = dt.datetime(2025, 2, 1, 1, tzinfo=dt.UTC)
    services.billing_periods_close_due(now=after)
    for invoice in Invoice.objects.order_by("pk"):
        services.invoice_issue(invoice_id=invoice.pk, now=after)
    return list(Invoice.objects.order_by("number").values_list("number", flat=True))


async def test_finance_exports_invoices_as_csv_from_the_panel(
    daphne_server, roles, browser_page, tmp_path: Path
) -> None:
    numbers = await issue_invoices()
    assert len(numbers) == 2
    await sync_to_async(make_staff)("finance1", "Finance")
    page = browser_page
    await login(page, daphne_server.http_url, "finance1")

    # Two clicks from home: the Invoices quick link, then Export.
    await page.click("#quick-links >> text=Invoices")
    await page.click("a.export_link")
    await page.select_option("select[name=format]", label="csv")
    async with page.expect_download() as download_info:
        await page.click(".submit-row input[type=submit]")
    download = await download_info.value
    assert download.suggested_filename.endswith(".csv")
    target = tmp_path / download.suggested_filename
    await download.save_as(target)
    rows = list(csv.DictReader(io.StringIO(target.read_text(encoding="utf-8-sig"))))
    assert sorted(row["number"] for row in rows) == numbers


async def test_dashboard_and_station_page_render_the_demo_data_with_charts(
    daphne_server, roles, browser_page
) -> None:
    from cpo.demo import DEMO_LOGINS, demo_data_load

    await sync_to_async(demo_data_load)()
    _, username, password = next(login for login in DEMO_LOGINS if login[0] == "Operator")
    page = browser_page
    await login(page, daphne_server.http_url, username, password)

    assert await page.evaluate("typeof window.Chart") == "function"
    await expect(page.locator("#kpi-stations-offline")).to_have_text("2")
    for canvas in ("chart-connectors", "chart-energy", "chart-revenue"):
        await expect(page.locator(f"#{canvas}")).to_be_visible()
        assert await page.evaluate(
            "(id) => !!window.Chart.getChart(document.getElementById(id))", canvas
        ), canvas
    await expect(page.locator("#live-sessions")).to_be_visible()
    await expect(page.locator("#alert-list")).to_contain_text("DEMO-16")

    await page.click("#widget-alerts >> text=DEMO-16 offline")
    await expect(page.locator("#station-panel h2").first).to_contain_text("DEMO-16")
    await expect(page.locator("#station-connectors tbody tr")).to_have_count(2)
    await expect(page.locator("#chart-timeline")).to_be_visible()
    await page.wait_for_function(
        "() => !!window.Chart.getChart(document.getElementById('chart-timeline'))"
    )
    assert page.errors == []


async def test_the_api_docs_render_from_the_back_office_itself(daphne_server, roles, browser_page):
    """Swagger UI's files come from static/ (the CSP allows no CDN), its start-up script is a
    file too (no inline script), and it lists the API's operations."""
    await sync_to_async(make_staff)("integrator1", "Support")
    page = browser_page
    await login(page, daphne_server.http_url, "integrator1")
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    response = await page.goto(f"{daphne_server.http_url}/api/docs/")
    assert response is not None
    assert "script-src 'self'" in response.headers["content-security-policy"]
    await expect(page.locator(".swagger-ui .opblock").first).to_be_visible(timeout=20_000)
    await expect(page.locator(".swagger-ui")).to_contain_text("/api/tokens/")
    assert all(url.startswith(daphne_server.http_url) for url in requested), requested
    assert page.errors == []

"""Pending on purpose (OCPP 2.0.1 B02): an operator sets an Accepted station back to Pending
from its page, in a real browser; the station's next BootNotification, over a real daphne, is
answered Pending and it may then only boot and heartbeat. The API endpoint does the same."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from ocpp.v201 import call as call201
from playwright.async_api import expect

from stations.models import ChargingStation
from tests.cpo.panel.conftest import login, make_staff
from tests.ocpp_client import station

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.live,
    pytest.mark.browser,
]

PASSWORD = "pending-station-pass-01"


@sync_to_async
def make_station(identity: str) -> int:
    row = ChargingStation(identity=identity, registration_status="Accepted")
    row.set_password(PASSWORD)
    row.save()
    return row.pk


@sync_to_async
def registration(identity: str) -> str:
    return ChargingStation.objects.get(identity=identity).registration_status


async def boot_status(ws_url: str, identity: str) -> tuple[str, Any]:
    async with station(ws_url, identity, protocol="ocpp2.0.1", password=PASSWORD) as cp:
        boot = await cp.cp.call(
            call201.BootNotification(
                charging_station={"vendor_name": "ACME", "model": "W"}, reason="PowerUp"
            )
        )
        # Before Accepted, only BootNotification and Heartbeat are accepted.
        authorize = await cp.raw(
            [2, "a1", "Authorize", {"idToken": {"idToken": "X", "type": "ISO14443"}}]
        )
        return boot.status, authorize


async def test_an_operator_sets_a_station_back_to_pending_and_its_next_boot_is_pending(
    daphne_server, roles, browser_page: Any
) -> None:
    pk = await make_station("CP-PENDING")
    status, _ = await boot_status(daphne_server.ws_url, "CP-PENDING")
    assert status == "Accepted"

    await sync_to_async(make_staff)("operator-pending", "Operators")
    page = browser_page
    await login(page, daphne_server.http_url, "operator-pending")
    await page.goto(f"{daphne_server.http_url}/admin/stations/chargingstation/{pk}/change/")
    await expect(page.locator("#station-registration")).to_contain_text("Accepted")
    await page.click("button[data-action=set-pending]")
    await expect(page.locator("ul.messagelist")).to_contain_text(
        "CP-PENDING is Pending: its next BootNotification is answered Pending."
    )
    await expect(page.locator("#station-registration")).to_contain_text("Pending")
    # Already Pending: no button.
    await expect(page.locator("button[data-action=set-pending]")).to_have_count(0)
    assert await registration("CP-PENDING") == "Pending"
    assert page.errors == []

    status, authorize = await boot_status(daphne_server.ws_url, "CP-PENDING")
    assert status == "Pending"
    assert authorize[0] == 4
    assert authorize[2] == "SecurityError"


async def test_support_sees_no_pending_button(daphne_server, roles, browser_page: Any) -> None:
    pk = await make_station("CP-PENDING-2")
    await sync_to_async(make_staff)("support-pending", "Support")
    page = browser_page
    await login(page, daphne_server.http_url, "support-pending")
    await page.goto(f"{daphne_server.http_url}/admin/stations/chargingstation/{pk}/change/")
    await expect(page.locator("#station-registration")).to_contain_text("Accepted")
    await expect(page.locator("button[data-action=set-pending]")).to_have_count(0)
    assert await registration("CP-PENDING-2") == "Accepted"

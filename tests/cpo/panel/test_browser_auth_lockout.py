"""An operator lifts an OCPP authentication lockout in the panel (issue 20, finding 12): real
failed handshakes lock a station out on a real daphne, the operator clicks the admin action in
headless chromium, and the station is admitted again."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.core.cache import cache
from playwright.async_api import expect

from stations.models import AuthLockout, ChargingStation
from tests.conftest import DaphneServer, start_daphne
from tests.cpo.panel.conftest import login, make_staff
from tests.ocpp_client import basic_auth

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.live,
    pytest.mark.browser,
]

IDENTITY = "PANEL-LOCK-1"
STATION_PASSWORD = "panel-station-secret-01"


@pytest.fixture
def lockout_server(transactional_db) -> Iterator[DaphneServer]:  # noqa: ARG001
    server = start_daphne(
        "panel-lockout", OCPP_AUTH_FREE_FAILURES="1", OCPP_AUTH_LOCKOUT_FAILURES="2"
    )
    yield server
    server.stop()
    # The counters and locks live in the suite's one Redis: none may outlive the test.
    cache.delete_many(
        [
            f"ocpp-auth-{kind}:{subject}"
            for kind in ("fail", "lock")
            for subject in (f"identity:{IDENTITY}", "address:127.0.0.8", "address:127.0.0.9")
        ]
    )


async def handshake(server: DaphneServer, password: str, source: str) -> int:
    """The HTTP status of one handshake from `source` (a loopback address); 101: admitted."""
    try:
        ws = await websockets.connect(
            f"{server.ws_url}/{IDENTITY}",
            subprotocols=[websockets.Subprotocol("ocpp1.6")],
            additional_headers=basic_auth(IDENTITY, password),
            open_timeout=30,
            local_addr=(source, 0),
        )
    except websockets.InvalidStatus as refused:
        return refused.response.status_code
    await ws.close()
    return 101


@sync_to_async
def make_station() -> None:
    row = ChargingStation(identity=IDENTITY)
    row.set_password(STATION_PASSWORD)
    row.save()


@sync_to_async
def lockouts() -> list[tuple[str, str, bool]]:
    return [
        (lock.kind, lock.value, lock.is_active) for lock in AuthLockout.objects.order_by("kind")
    ]


async def test_an_operator_lifts_a_lockout_and_the_station_is_admitted_again(
    lockout_server, roles, browser_page: Any
) -> None:
    await make_station()
    # A wrong password: 401 Unauthorized (a Basic challenge); a lockout: 403.
    assert await handshake(lockout_server, "wrong-password-1", "127.0.0.8") == 401
    assert await handshake(lockout_server, "wrong-password-2", "127.0.0.8") == 401
    # Locked out: the right password from another address is refused too.
    assert await handshake(lockout_server, STATION_PASSWORD, "127.0.0.9") == 403
    assert await lockouts() == [
        ("address", "127.0.0.8", True),
        ("identity", IDENTITY, True),
    ]

    await sync_to_async(make_staff)("operator-lock", "Operators")
    page = browser_page
    base = lockout_server.http_url
    await login(page, base, "operator-lock")
    # The dashboard tells the operator.
    await expect(page.locator("[data-field='alerts.counts.auth_lockout']")).to_have_text("2")
    await page.goto(f"{base}/admin/stations/authlockout/")
    row = page.locator("#result_list tbody tr", has_text=IDENTITY)
    await expect(row).to_contain_text("active")
    await row.locator("input.action-select").check()
    await page.select_option("select[name=action]", "lift_lockouts")
    await page.click("button[name=index]")
    await expect(page.locator("ul.messagelist")).to_contain_text("1 lockout(s) lifted")
    await expect(page.locator("#result_list tbody tr", has_text=IDENTITY)).to_contain_text(
        "lifted by operator-lock"
    )

    assert await lockouts() == [
        ("address", "127.0.0.8", True),
        ("identity", IDENTITY, False),
    ]
    # The identity may authenticate again (from an address that is not locked out itself).
    assert await handshake(lockout_server, STATION_PASSWORD, "127.0.0.9") == 101
    assert await handshake(lockout_server, STATION_PASSWORD, "127.0.0.8") == 403
    assert page.errors == []

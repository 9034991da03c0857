"""Remote start and stop from the station page, in a real browser, on both protocols.

Headless chromium drives the page of a demo station served by a real daphne; the station is
the project's OCPP client (tests/ocpp_client.py), which answers the commands and then charges
as a real charger would (StartTransaction / TransactionEvent, then the stop). The page is
loaded with the session already running, because the first Stop click after a page load is
the one that used to go out twice.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from ocpp.v16 import call
from ocpp.v201 import call as call201
from playwright.async_api import expect

from sessions.models import ChargingSession
from stations.commands.models import Command
from stations.models import ChargingStation
from tests.cpo.panel.conftest import login
from tests.ocpp_client import Client, station

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.live,
    pytest.mark.browser,
]

TAG = "DEMO-TAG-OK"
START = {"ocpp1.6": "RemoteStartTransaction", "ocpp2.0.1": "RequestStartTransaction"}
STOP = {"ocpp1.6": "RemoteStopTransaction", "ocpp2.0.1": "RequestStopTransaction"}


def ts() -> str:
    return timezone.now().isoformat().replace("+00:00", "Z")


@sync_to_async
def demo() -> dict[str, Any]:
    from cpo.demo import DEMO_LOGINS, DEMO_STATIONS, demo_data_load

    demo_data_load()
    _, username, password = next(login for login in DEMO_LOGINS if login[0] == "Operator")
    return {
        "login": (username, password),
        "stations": {s["protocol"]: s for s in DEMO_STATIONS},
        "pks": dict(ChargingStation.objects.values_list("identity", "pk")),
    }


def frames_received(cp: Client, action: str) -> list[dict[str, Any]]:
    """The payloads of the CALLs of `action` the station received, as sent on the wire."""
    frames = [json.loads(frame) for frame in cp.connection.received]
    return [f[3] for f in frames if f[0] == 2 and f[2] == action]


async def wait_for_frames(cp: Client, action: str, count: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while len(frames_received(cp, action)) < count:
        assert time.monotonic() < deadline, f"{action} not received {count} time(s)"
        await asyncio.sleep(0.05)


async def boot(cp: Client, evses: int) -> None:
    if cp.protocol == "ocpp1.6":
        answer = await cp.cp.call(
            call.BootNotification(charge_point_vendor="ACME", charge_point_model="Wallbox 22")
        )
        assert answer.status == "Accepted"
        for number in range(evses + 1):
            await cp.cp.call(
                call.StatusNotification(
                    connector_id=number, error_code="NoError", status="Available", timestamp=ts()
                )
            )
    else:
        answer = await cp.cp.call(
            call201.BootNotification(
                charging_station={"vendor_name": "ACME", "model": "Wallbox 22"},
                reason="PowerUp",
            )
        )
        assert answer.status == "Accepted"
        for number in range(1, evses + 1):
            await cp.cp.call(
                call201.StatusNotification(
                    timestamp=ts(), connector_status="Available", evse_id=number, connector_id=1
                )
            )


async def charge(cp: Client, evse: int, request: dict[str, Any]) -> str:
    """What a charger does after accepting a remote start: its transaction starts."""
    if cp.protocol == "ocpp1.6":
        started = await cp.cp.call(
            call.StartTransaction(connector_id=evse, id_tag=TAG, meter_start=1000, timestamp=ts())
        )
        assert started.id_tag_info["status"] == "Accepted"
        await cp.cp.call(
            call.StatusNotification(
                connector_id=evse, error_code="NoError", status="Charging", timestamp=ts()
            )
        )
        return str(started.transaction_id)
    tx = "tx-browser-201"
    await cp.cp.call(
        call201.TransactionEvent(
            event_type="Started",
            timestamp=ts(),
            trigger_reason="RemoteStart",
            seq_no=0,
            transaction_info={
                "transaction_id": tx,
                "charging_state": "Charging",
                "remote_start_id": request["remoteStartId"],
            },
            id_token={"id_token": TAG, "type": "Central"},
            evse={"id": evse, "connector_id": 1},
            meter_value=[
                {
                    "timestamp": ts(),
                    "sampled_value": [{"value": 1000, "context": "Transaction.Begin"}],
                }
            ],
        )
    )
    return tx


async def end(cp: Client, evse: int, tx: str) -> None:
    """What a charger does after accepting a remote stop: its transaction ends."""
    if cp.protocol == "ocpp1.6":
        await cp.cp.call(
            call.StopTransaction(
                transaction_id=int(tx), meter_stop=4000, timestamp=ts(), reason="Remote"
            )
        )
        return
    await cp.cp.call(
        call201.TransactionEvent(
            event_type="Ended",
            timestamp=ts(),
            trigger_reason="RemoteStop",
            seq_no=1,
            transaction_info={"transaction_id": tx, "stopped_reason": "Remote"},
            meter_value=[
                {
                    "timestamp": ts(),
                    "sampled_value": [{"value": 4000, "context": "Transaction.End"}],
                }
            ],
        )
    )


@sync_to_async
def session_of(identity: str) -> ChargingSession | None:
    return ChargingSession.objects.filter(station__identity=identity).order_by("-pk").first()


@sync_to_async
def commands_of(identity: str, verb: str) -> list[Command]:
    return list(Command.objects.filter(station__identity=identity, verb=verb))


async def wait_for_session(identity: str, *, ended: bool, timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        session = await session_of(identity)
        if session is not None and (session.ended_at is not None) == ended:
            return session
        assert time.monotonic() < deadline, f"no {'ended' if ended else 'running'} session"
        await asyncio.sleep(0.1)


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_remote_start_then_stop_from_the_station_page_sends_one_command_each(
    daphne_server, roles, browser_page, protocol
) -> None:
    data = await demo()
    spec = data["stations"][protocol]
    identity = spec["identity"]
    page_url = (
        f"{daphne_server.http_url}/admin/stations/chargingstation/{data['pks'][identity]}/change/"
    )
    page = browser_page
    command_posts: list[str] = []

    def count_command_posts(request: Any) -> None:
        if request.method == "POST" and request.url.endswith("/command"):
            command_posts.append(request.post_data or "")

    page.on("request", count_command_posts)
    await login(page, daphne_server.http_url, *data["login"])

    async with station(
        daphne_server.ws_url, identity, protocol=protocol, password=spec["password"]
    ) as cp:
        await boot(cp, spec["evses"])
        await page.goto(page_url)
        await expect(page.locator("#station-online")).to_have_text("Online")

        # Remote start on the second EVSE: the form posts "2", the station must get 2.
        await page.select_option(".command-start select[name=evse_id]", label="2/1")
        await page.fill(".command-start input[name=id_token]", TAG)
        await page.click("button[data-command=remote-start]")
        await expect(page.locator("#command-flash")).to_contain_text(f"{START[protocol]} queued")
        await wait_for_frames(cp, START[protocol], 1)
        [request] = frames_received(cp, START[protocol])
        if protocol == "ocpp1.6":
            assert request["connectorId"] == 2
            assert type(request["connectorId"]) is int
            assert request["idTag"] == TAG
        else:
            assert request["evseId"] == 2
            assert type(request["evseId"]) is int
            assert request["idToken"]["idToken"] == TAG
        latest = page.locator("#station-commands tbody tr").first
        await expect(latest).to_have_attribute("data-status", "accepted", timeout=20_000)

        tx = await charge(cp, 2, request)
        running = await wait_for_session(identity, ended=False)
        assert running.transaction_id == tx
        assert (running.evse_id, running.id_tag) == (2, TAG)

        # A fresh page load with the session running: the Stop button is there from the start.
        await page.goto(page_url)
        row = page.locator("#station-connectors tbody tr[data-connector='2/1']")
        stop = row.locator("button[data-command=remote_stop]")
        await expect(stop).to_be_visible()
        posts_before = len(command_posts)
        await stop.click()
        await expect(page.locator("#command-flash")).to_contain_text(f"{STOP[protocol]} queued")
        await wait_for_frames(cp, STOP[protocol], 1)
        await expect(page.locator("#station-commands tbody tr").first).to_have_attribute(
            "data-status", "accepted", timeout=20_000
        )
        # Anything sent twice would have been sent by now.
        await asyncio.sleep(1.5)
        assert len(command_posts) - posts_before == 1
        [stop_request] = frames_received(cp, STOP[protocol])
        if protocol == "ocpp1.6":
            assert stop_request == {"transactionId": int(tx)}
        else:
            assert stop_request == {"transactionId": tx}

        await end(cp, 2, tx)
        ended = await wait_for_session(identity, ended=True)
        assert ended.pk == running.pk
        assert ended.status == ChargingSession.Status.COMPLETED

        assert len(frames_received(cp, START[protocol])) == 1
        assert len(frames_received(cp, STOP[protocol])) == 1
    assert len(await commands_of(identity, "remote_start")) == 1
    assert len(await commands_of(identity, "remote_stop")) == 1
    assert page.errors == []

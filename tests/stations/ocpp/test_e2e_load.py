"""End to end, real daphne: a saturated node answers BootNotification Pending with an interval
(stations.ocpp.load), and the websocket compression the server negotiates.

Saturation is forced with OCPP_BOOT_PENDING_BACKLOG=0 (every boot finds the node "full");
the same station then boots on a node at normal load and is Accepted.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async

from stations.models import ChargingStation, StationBoot
from tests.conftest import start_daphne
from tests.ocpp_client import basic_auth

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

PASSWORD = "station-secret-0001"

BOOT: dict[str, dict[str, Any]] = {
    "ocpp1.6": {"chargePointVendor": "ACME", "chargePointModel": "Wallbox 22"},
    "ocpp2.0.1": {
        "reason": "PowerUp",
        "chargingStation": {"vendorName": "ACME", "model": "Wallbox 22"},
    },
}
STATUS: dict[str, dict[str, Any]] = {
    "ocpp1.6": {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
    "ocpp2.0.1": {
        "timestamp": "2026-12-01T10:00:00Z",
        "connectorStatus": "Available",
        "evseId": 1,
        "connectorId": 1,
    },
}


@sync_to_async
def make_station(identity: str, protocol: str) -> ChargingStation:
    row = ChargingStation(identity=identity, protocol=protocol)
    row.set_password(PASSWORD)
    row.save()
    return row


@sync_to_async
def station_state(identity: str) -> tuple[str, int, str]:
    row = ChargingStation.objects.get(identity=identity)
    booted = StationBoot.objects.filter(station=row).count()
    return row.registration_status, booted, row.vendor


async def call(ws: Any, message_id: str, action: str, payload: dict[str, Any]) -> list[Any]:
    await ws.send(json.dumps([2, message_id, action, payload]))
    return json.loads(await ws.recv())


def healthz(url: str) -> dict[str, Any]:
    """The body of /healthz: 503 here, since no Celery worker runs in this test."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=30) as response:  # noqa: S310
            return json.loads(response.read())
    except urllib.error.HTTPError as error:
        return json.loads(error.read())


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_saturated_node_answers_boot_pending_then_a_normal_node_accepts(protocol):
    identity = f"LOAD-{protocol[-3:].replace('.', '')}"
    await make_station(identity, protocol)
    before = await station_state(identity)
    saturated = start_daphne("saturated", OCPP_BOOT_PENDING_BACKLOG="0")
    try:
        async with websockets.connect(
            f"{saturated.ws_url}/{identity}",
            subprotocols=[websockets.Subprotocol(protocol)],
            additional_headers=basic_auth(identity, PASSWORD),
            ping_interval=None,
        ) as ws:
            kind, _, boot = await call(ws, "b1", "BootNotification", BOOT[protocol])
            assert kind == 3
            assert boot["status"] == "Pending"
            assert 5 <= boot["interval"] <= 60
            # Pending: nothing but a boot (and heartbeats) until it boots again.
            refused = await call(ws, "s1", "StatusNotification", STATUS[protocol])
            assert refused[0] == 4
            assert refused[2] == "SecurityError"
            heartbeat = await call(ws, "h1", "Heartbeat", {})
            assert heartbeat[0] == 3
            again = await call(ws, "b2", "BootNotification", BOOT[protocol])
            assert again[2]["status"] == "Pending"
        health = await sync_to_async(healthz)(saturated.http_url)
        assert health["ocpp"]["boots_deferred"] == 2
        assert health["ocpp"]["boot_pending_threshold"] == 0
    finally:
        saturated.stop()
    # The deferred boots changed nothing on the station's record.
    assert await station_state(identity) == before

    normal = start_daphne("normal")
    try:
        async with websockets.connect(
            f"{normal.ws_url}/{identity}",
            subprotocols=[websockets.Subprotocol(protocol)],
            additional_headers=basic_auth(identity, PASSWORD),
            ping_interval=None,
        ) as ws:
            _, _, boot = await call(ws, "b3", "BootNotification", BOOT[protocol])
            assert boot["status"] == "Accepted"
            status = await call(ws, "s2", "StatusNotification", STATUS[protocol])
            assert status[0] == 3
        health = await sync_to_async(healthz)(normal.http_url)
        assert health["ocpp"]["boots_deferred"] == 0
    finally:
        normal.stop()
    registration, boots, vendor = await station_state(identity)
    assert (registration, vendor) == ("Accepted", "ACME")
    assert boots > before[1]


async def test_permessage_deflate_offered_by_a_charger_is_declined(daphne_server):
    """Compression is off (README "Performance"): an offer of permessage-deflate gets a
    handshake without the extension, and frames flow uncompressed."""
    await make_station("LOAD-DEFLATE", "ocpp1.6")
    async with websockets.connect(
        f"{daphne_server.ws_url}/LOAD-DEFLATE",
        subprotocols=[websockets.Subprotocol("ocpp1.6")],
        additional_headers=basic_auth("LOAD-DEFLATE", PASSWORD),
        compression="deflate",
        ping_interval=None,
    ) as ws:
        assert "Sec-WebSocket-Extensions" not in ws.response.headers
        assert ws.protocol.extensions == []
        _, _, boot = await call(ws, "b1", "BootNotification", BOOT["ocpp1.6"])
        assert boot["status"] == "Accepted"

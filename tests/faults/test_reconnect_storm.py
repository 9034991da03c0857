"""A reconnect storm: 250 stations, each with a session running, reconnect five times in quick
succession, all at once: alternately dropping the socket without a close frame and then
connecting again, and connecting again while the old connection is still open (which the
newer one replaces). No handshake may be answered with HTTP 5xx, nor any close fail in the
server's log; in the end every station is connected exactly once (one open connection row,
online, its last socket alive and answering) and its session is intact (still active, still
taking meter values).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import random
import time
from typing import Any

import pytest
import websockets
from django.utils import timezone

from tests.faults.conftest import ENERGY, Charger, fresh_daphne, in_thread, make_stations, ts

pytestmark = [pytest.mark.fault, pytest.mark.live, pytest.mark.django_db(transaction=True)]

STATIONS = 250  # 1.6 and 2.0.1 in turn
ROUNDS = 5


async def limited(limit: asyncio.Semaphore, coroutine: Any) -> Any:
    async with limit:
        return await coroutine


async def begin(charger: Charger, start: dt.datetime) -> Any:
    await charger.connect()
    if charger.protocol == "ocpp1.6":
        answer = await charger.call(
            "StartTransaction",
            {"connectorId": 1, "idTag": "FAULT-TAG-OK", "meterStart": 0, "timestamp": ts(start)},
        )
        return answer["transactionId"]
    tx = f"{charger.identity}-tx"
    await charger.call(
        "TransactionEvent",
        {
            "eventType": "Started",
            "timestamp": ts(start),
            "triggerReason": "Authorized",
            "seqNo": 0,
            "transactionInfo": {"transactionId": tx},
            "idToken": {"idToken": "FAULT-TAG-OK", "type": "ISO14443"},
            "evse": {"id": 1, "connectorId": 1},
        },
    )
    return tx


async def storm(charger: Charger) -> None:
    for n in range(ROUNDS):
        await asyncio.sleep(random.uniform(0, 0.05))
        old = charger.ws
        if n % 2 == 0:
            old.transport.abort()  # gone without a close frame, as a lost link looks
            await charger.connect()
        else:
            await charger.connect()  # the new connection replaces the still open one
            old.transport.abort()


async def meter(charger: Charger, tx: Any, at: dt.datetime) -> None:
    if charger.protocol == "ocpp1.6":
        await charger.call(
            "MeterValues",
            {
                "connectorId": 1,
                "transactionId": tx,
                "meterValue": [
                    {
                        "timestamp": ts(at),
                        "sampledValue": [
                            {"value": "500", "measurand": ENERGY, "context": "Sample.Periodic"}
                        ],
                    }
                ],
            },
        )
    else:
        await charger.call(
            "TransactionEvent",
            {
                "eventType": "Updated",
                "timestamp": ts(at),
                "triggerReason": "MeterValuePeriodic",
                "seqNo": 1,
                "transactionInfo": {"transactionId": tx, "chargingState": "Charging"},
                "meterValue": [
                    {
                        "timestamp": ts(at),
                        "sampledValue": [
                            {"value": 500, "measurand": ENERGY, "context": "Sample.Periodic"}
                        ],
                    }
                ],
            },
        )


def stored(prefix: str) -> dict[str, Any]:
    from sessions.models import ChargingSession, MeterSample
    from stations.models import ChargingStation, StationConnection

    stations = ChargingStation.objects.filter(identity__startswith=prefix)
    return {
        "offline": sorted(stations.filter(is_online=False).values_list("identity", flat=True)),
        "open_connections": {
            s.identity: s.connections.filter(disconnected_at=None).count() for s in stations
        },
        "connections": StationConnection.objects.filter(station__in=stations).count(),
        "sessions": {
            (s.station.identity, s.status, s.ocpp16_transaction_id or s.transaction_id)
            for s in ChargingSession.objects.filter(station__in=stations).select_related("station")
        },
        "session_rows": ChargingSession.objects.filter(station__in=stations).count(),
        "samples": MeterSample.objects.filter(
            station__in=stations, context="Sample.Periodic"
        ).count(),
    }


async def test_reconnect_storm_leaves_every_station_connected_once_with_its_session(
    transactional_db,  # noqa: ARG001
):
    rows = await make_stations("STORM", STATIONS, ("ocpp1.6", "ocpp2.0.1"))
    server = fresh_daphne("fault-storm")
    start = timezone.now().replace(microsecond=0) - dt.timedelta(minutes=30)
    chargers = [Charger(server.ws_url, row.identity, row.protocol) for row in rows]
    limit = asyncio.Semaphore(50)
    try:
        txs = await asyncio.gather(*(limited(limit, begin(c, start)) for c in chargers))
        began = time.monotonic()
        await asyncio.wait_for(asyncio.gather(*(storm(c) for c in chargers)), 150)
        took = time.monotonic() - began
        # Every last socket is the live one: answered now, and still after the dust settles.
        await asyncio.gather(*(c.call("Heartbeat", {}) for c in chargers))
        await asyncio.gather(
            *(
                meter(c, tx, start + dt.timedelta(minutes=5))
                for c, tx in zip(chargers, txs, strict=True)
            )
        )
        await asyncio.sleep(1.0)
        assert all(c.ws.state is websockets.State.OPEN for c in chargers)
        await asyncio.gather(*(c.call("Heartbeat", {}) for c in chargers))
        after = await in_thread(stored)("STORM-")
    finally:
        await asyncio.gather(*(c.close() for c in chargers), return_exceptions=True)
        server.stop()

    statuses = [code for c in chargers for code in c.handshake_statuses]
    failures = [f for c in chargers for f in c.handshake_failures]
    lost = sum(c.lost_connections for c in chargers)
    handshakes = sum(c.connects for c in chargers)
    print(
        f"{handshakes} handshakes of {STATIONS} stations; the storm took {took:.1f} s "
        f"({STATIONS * ROUNDS / took:.0f} reconnects/s); {len(failures)} failed handshakes "
        f"(statuses {sorted(set(statuses))}, {sorted(set(failures))[:3]}), {lost} calls lost with "
        "their connection"
    )
    assert not [code for code in statuses if code >= 500], failures[:5]
    # Nor did a close fail behind the scenes (a deadlock of a reconnect with the old
    # connection's close is an HTTP 500 only when the reconnect is its victim).
    log = server.log.read_text(errors="replace")
    assert "Traceback" not in log, log[log.find("Traceback") - 200 :][:3000]
    assert lost == 0  # no call on a final connection was cut off by a late "replaced"
    assert after["offline"] == []
    assert set(after["open_connections"].values()) == {1}, after["open_connections"]
    # A handshake the client gave up on may still have been recorded (and closed by the next).
    assert after["connections"] >= handshakes
    # Sessions intact: one per station, still active, the meter value after the storm kept.
    assert after["session_rows"] == STATIONS
    assert after["sessions"] == {
        (c.identity, "active", tx) for c, tx in zip(chargers, txs, strict=True)
    }
    assert after["samples"] == STATIONS

"""The uptime timeline end to end: a real OCPP 1.6 charge point on the real daphne goes
Faulted, then Available, then drops its connection; the status history and the connection
history the edge wrote are the timeline, and the uptime query reads the fault as outage
while connected and the time after the disconnect as offline."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone

from stations.models import ConnectorStatusEvent, StationConnection
from stations.monitoring import uptime
from tests.ocpp_client import station
from tests.stations.monitoring.conftest import boot16, make_station, status16

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]


@sync_to_async
def disconnected(identity: str) -> bool:
    return not StationConnection.objects.filter(
        station__identity=identity, disconnected_at=None
    ).exists()


@sync_to_async
def reports(identity: str) -> list[str]:
    return list(
        ConnectorStatusEvent.objects.filter(station__identity=identity)
        .order_by("timestamp", "pk")
        .values_list("status", flat=True)
    )


@sync_to_async
def figures(station_id: int, start, end) -> uptime.Seconds:
    [info] = uptime.evse_uptime(bounds=[start, end], station_id=station_id)
    return info.total()


async def test_a_real_station_faulted_then_offline_is_on_its_uptime_timeline(daphne_server):
    made = await make_station("UP-E2E-1")
    start = timezone.now()
    async with station(daphne_server.ws_url, "UP-E2E-1") as cp:
        await boot16(cp)
        await status16(cp, "Available")
        await asyncio.sleep(1.0)
        await status16(cp, "Faulted", error_code="GroundFailure")
        await asyncio.sleep(2.0)
        await status16(cp, "Available")
        await asyncio.sleep(1.0)
    deadline = time.monotonic() + 10
    while not await disconnected("UP-E2E-1"):
        assert time.monotonic() < deadline, "the disconnect was never recorded"
        await asyncio.sleep(0.1)
    await asyncio.sleep(2.0)
    end = timezone.now()
    assert await reports("UP-E2E-1") == ["Available", "Faulted", "Available"]
    seconds = await figures(made.pk, start, end)
    # Measured from the first report: ~1 s up, ~2 s Faulted, ~1 s up, then ~2 s offline.
    assert 5.5 <= seconds.measured <= (end - start).total_seconds()
    assert 1.8 <= seconds.down_online <= 2.6
    assert 1.9 <= seconds.offline <= 3.0
    assert seconds.outage == pytest.approx(seconds.down_online + seconds.offline)
    assert seconds.excluded == 0

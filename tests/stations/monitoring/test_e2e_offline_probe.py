"""The offline detector end to end: silence alone is not enough. A silent station is probed
with a TriggerMessage Heartbeat through the durable command queue; one that answers is not
flagged, one that stays silent is, and the incident clears when it speaks again."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import timedelta

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.utils import timezone

from stations.commands.models import Command
from stations.monitoring.models import Incident, IncidentType, StationProbe
from tests.conftest import DaphneServer, start_daphne
from tests.ocpp_client import station
from tests.stations.conftest import until, until_final
from tests.stations.monitoring.conftest import boot16, detect, incidents, make_station, timeline

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]


@pytest.fixture(scope="module")
def quick_daphne(django_db_setup, django_db_blocker) -> Iterator[DaphneServer]:  # noqa: ARG001
    """A daphne that gives up on an unanswered call after 2 s and records every frame's
    liveness (the defaults: 30 s each)."""
    server = start_daphne("node-mon", OCPP_RESPONSE_TIMEOUT="2", OCPP_LAST_SEEN_WRITE_INTERVAL="0")
    yield server
    server.stop()


@sync_to_async
def _silence(*identities: str, minutes: int) -> None:
    from stations.models import ChargingStation

    ChargingStation.objects.filter(identity__in=identities).update(
        last_seen_at=timezone.now() - timedelta(minutes=minutes)
    )


@sync_to_async
def _probe_command(identity: str) -> int | None:
    probe = StationProbe.objects.filter(station__identity=identity).first()
    return probe.command_id if probe else None


async def test_a_station_answering_the_probe_is_not_flagged_a_silent_one_is(quick_daphne):
    await make_station("MON-ALIVE")
    await make_station("MON-SILENT")
    async with station(quick_daphne.ws_url, "MON-ALIVE") as alive:
        await boot16(alive)
        # The silent one: a real websocket that boots and then never reads or answers again.
        silent = await websockets.connect(
            f"{quick_daphne.ws_url}/MON-SILENT", subprotocols=[websockets.Subprotocol("ocpp1.6")]
        )
        try:
            boot = [2, "boot-1", "BootNotification", {"chargePointVendor": "ACME",
                    "chargePointModel": "Mute"}]  # fmt: skip
            await silent.send(json.dumps(boot))
            assert json.loads(await silent.recv())[2]["status"] == "Accepted"

            # The consumer records liveness after its reply went out: let that write land
            # before the clock is turned back.
            await asyncio.sleep(1)
            # Both silent for 30 minutes, as far as the database knows (limit: 10 min).
            await _silence("MON-ALIVE", "MON-SILENT", minutes=30)
            await detect()
            assert await incidents("MON-ALIVE", IncidentType.STATION_OFFLINE) == []
            assert (
                await incidents("MON-SILENT", IncidentType.STATION_OFFLINE) == []
            )  # silence alone: probed, not flagged
            alive_probe = await _probe_command("MON-ALIVE")
            silent_probe = await _probe_command("MON-SILENT")
            assert alive_probe is not None
            assert silent_probe is not None
            answered = await until_final(alive_probe)
            unanswered = await until_final(silent_probe, timeout=15)
            assert answered.status == Command.Status.ACCEPTED
            assert unanswered.status == Command.Status.TIMED_OUT
            assert ("TriggerMessage", {"requested_message": "Heartbeat"}) in (
                alive.cp.received_calls
            )

            await _silence("MON-ALIVE", minutes=30)  # still silent, but it answered its probe
            await detect()
            assert await incidents("MON-ALIVE", IncidentType.STATION_OFFLINE) == []
            [offline] = await incidents("MON-SILENT", IncidentType.STATION_OFFLINE)
            assert offline.type == IncidentType.STATION_OFFLINE
            assert offline.severity == Incident.Severity.CRITICAL
            assert offline.details["probe"] == Command.Status.TIMED_OUT

            # It speaks again: the incident resolves at the next pass.
            await silent.send(json.dumps([2, "hb-1", "Heartbeat", {}]))
            from stations.models import ChargingStation

            recent = timezone.now() - timedelta(minutes=1)
            await until(
                lambda: ChargingStation.objects.filter(
                    identity="MON-SILENT", last_seen_at__gte=recent
                ).exists()
            )
            await detect()
            [offline] = await incidents("MON-SILENT", IncidentType.STATION_OFFLINE)
            assert offline.state == Incident.State.RESOLVED
        finally:
            await silent.close()


async def test_a_disconnected_station_is_flagged_once_its_probe_expires(quick_daphne, settings):
    settings.MONITORING_PROBE_EXPIRY_SECONDS = 1
    await make_station("MON-GONE", is_online=False)
    await _silence("MON-GONE", minutes=30)
    await detect()  # probe queued: no socket to send it on; it expires after 1 s
    assert await incidents("MON-GONE", IncidentType.STATION_OFFLINE) == []
    from stations.commands.results import commands_expire

    later = timezone.now() + timedelta(seconds=2)
    assert await sync_to_async(commands_expire)(now=later) == 1
    await detect()
    [offline] = await incidents("MON-GONE", IncidentType.STATION_OFFLINE)
    assert offline.details["probe"] == Command.Status.EXPIRED
    assert offline.details["socket_open"] is False

    # Probed again after MONITORING_PROBE_REPEAT_SECONDS: while the new probe waits, the
    # station stays offline (the timeline says a probe went out).
    await sync_to_async(StationProbe.objects.filter(station__identity="MON-GONE").update)(
        sent_at=timezone.now() - timedelta(hours=1)
    )
    await detect()
    [offline] = await incidents("MON-GONE", IncidentType.STATION_OFFLINE)
    assert offline.state == Incident.State.OPEN
    assert "probe_sent" in [kind for kind, _, _ in await timeline(offline.pk)]
    assert (
        await sync_to_async(
            Command.objects.filter(station__identity="MON-GONE", status="queued").count
        )()
        == 1
    )

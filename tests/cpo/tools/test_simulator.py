"""The fleet simulator against the real server and against the ceiling."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from django.core.management import call_command

from cpo.tools.bench.data import fleet_rows_count, fleet_stations_create
from cpo.tools.bench.runner import ceiling_running
from cpo.tools.simulator import Behaviour, Fleet, Swarm, fleet_specs

pytestmark = pytest.mark.live


def _behaviour(**extra: Any) -> Behaviour:
    return Behaviour(
        heartbeats=False,
        session_gap=None,
        meter_interval=None,
        validate=True,
        reconnect_min=0.2,
        response_timeout=15,
        id_tag="BENCH-TAG-OK",
        **extra,
    )


async def _wait(condition, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not reached in time"
        await asyncio.sleep(0.05)


@pytest.mark.django_db(transaction=True)
def test_fleet_sessions_and_samples_land_in_the_database(daphne_server):
    specs = fleet_specs(
        prefix="SMOKE-", count=5, protocols=["ocpp1.6", "ocpp2.0.1"], connectors=2, seed="smoke"
    )
    rows = fleet_stations_create(specs=specs)

    async def scenario() -> Swarm:
        swarm = Swarm(specs, daphne_server.ws_url, _behaviour())
        ready = await swarm.connect(deadline=time.time() + 30)
        assert ready["ready"] == 5
        for station in swarm.stations:
            connector = station.connectors[0]
            assert await station.start_session(connector, with_status=True)
            await station.send_meter_values(connector)
            await station.heartbeat()
        # An outage mid-session: meter values and the stop are queued, then replayed in order.
        offline = swarm.stations[0]
        await offline.outage(1.0)
        await _wait(lambda: not offline.online.is_set())
        await offline.send_meter_values(offline.connectors[0])
        await offline.stop_session(offline.connectors[0])
        assert len(offline.outbox) == 2
        await _wait(lambda: offline.online.is_set() and not offline.outbox and offline.booted)
        for station in swarm.stations[1:]:
            await station.send_meter_values(station.connectors[0])
            await station.stop_session(station.connectors[0], with_status=True)
        await swarm.close()
        return swarm

    swarm = asyncio.run(scenario())
    stats = swarm.stats
    assert stats.schema_violations == []
    assert not stats.call_errors
    assert not stats.timeouts
    assert stats.replayed == 2
    assert stats.disconnects == 1
    assert stats.sessions == 5
    # Energy, power and SoC per meter value; the 2.0.1 start and end carry the register too.
    assert stats.samples == 5 * 2 * 3 + 2 * 2
    persisted = fleet_rows_count(first_id=rows.first_id, last_id=rows.last_id)
    assert persisted["sessions"] == stats.sessions
    assert persisted["samples"] == stats.samples
    assert persisted["status_events"] == stats.status_events
    assert persisted["stations_booted"] == 5

    from sessions.models import ChargingSession, MeterSample

    # The replayed stop found its session: every session completed, no orphan, no loose sample.
    assert set(ChargingSession.objects.values_list("status", flat=True)) == {"completed"}
    assert not ChargingSession.objects.filter(is_orphan=True).exists()
    assert not MeterSample.objects.filter(session__isnull=True).exists()


def test_fleet_processes_against_the_ceiling(tmp_path):
    specs = fleet_specs(
        prefix="CEIL-", count=6, protocols=["ocpp1.6", "ocpp2.0.1"], connectors=2, seed="ceiling"
    )
    with ceiling_running(tmp_path) as ceiling:
        fleet = Fleet(specs, ceiling.url, _behaviour(), processes=2)
        fleet.start()
        try:
            replies = fleet.command("connect", deadline=time.time() + 30, timeout=60)
            assert sum(r["ready"] for r in replies) == 6
            fleet.command("prime", fraction=0.5, timeout=30)
            drive = fleet.command("drive", rate=15, duration=2, timeout=60)
            stats, counters = fleet.stats()
        finally:
            fleet.close()
    assert sum(d["issued"] for d in drive) >= 50
    assert counters["online"] == 6
    assert stats.schema_violations == []
    assert not stats.call_errors
    assert not stats.timeouts
    assert {"Heartbeat", "StatusNotification", "BootNotification"} <= set(stats.answered)
    assert stats.sessions >= 2


@pytest.mark.django_db(transaction=True)
def test_simulate_drives_the_demo_stations(daphne_server, roles, capsys):  # noqa: ARG001
    from cpo.demo import demo_data_load
    from sessions.models import ChargingSession, MeterSample

    demo_data_load()
    call_command(
        "simulate",
        "--demo",
        "--url",
        daphne_server.ws_url,
        "--duration",
        "6",
        "--session-gap",
        "0.2,0.4",
        "--session-length",
        "1.5,1.5",
        "--meter-interval",
        "0.5",
    )
    out = capsys.readouterr().out
    assert "schema violations" not in out
    # The demo history's sessions are not the simulator's.
    sessions = ChargingSession.objects.filter(
        station__identity__in=["DEMO-16", "DEMO-201"]
    ).exclude(transaction_id__startswith="demo-")
    assert {s.station.identity for s in sessions} == {"DEMO-16", "DEMO-201"}
    assert sessions.filter(status="completed").exists()
    assert MeterSample.objects.filter(session__in=sessions).exists()
    assert set(sessions.values_list("id_tag", flat=True)) == {"DEMO-TAG-OK"}

"""Daphne killed (SIGKILL, by PID) with transaction frames in flight.

Simulated chargers (cpo/tools/simulator.py: offline queues, replay in order, reconnect with
back-off) run a session each, then send a burst of MeterValues / TransactionEvents during
which daphne is killed. What was in flight goes back to the head of each charger's queue; the
chargers keep charging offline (stop, a new session, meter values, stop: all queued), then
reconnect to a daphne restarted on the same port and replay. Every message the CSMS
acknowledged, and every replayed one, must be stored exactly once.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from cpo.tools.simulator import ENERGY, Behaviour, SimulatedStation, StationSpec, Stats
from tests.conftest import free_port
from tests.faults.conftest import PASSWORD, TAG, daphne_on, in_thread, make_stations, sigkill

pytestmark = [pytest.mark.fault, pytest.mark.live, pytest.mark.django_db(transaction=True)]

STATIONS = 16  # half 1.6, half 2.0.1
BURST = 12  # meter messages per charger while daphne dies


class Plan:
    """What one charger sent for each of its sessions: the number of periodic meter messages."""

    def __init__(self, station: SimulatedStation):
        self.station = station
        self.sessions: list[tuple[Any, list[int]]] = []  # (simulator Session, [meter count])

    def started(self) -> list[int]:
        counter = [0]
        self.sessions.append((self.station.connectors[0].session, counter))
        return counter


async def run_session_start(plan: Plan) -> list[int]:
    station = plan.station
    assert await station.start_session(station.connectors[0])
    return plan.started()


async def meter(plan: Plan, counter: list[int], times: int) -> None:
    for _ in range(times):
        await plan.station.send_meter_values(plan.station.connectors[0])
        counter[0] += 1
        await asyncio.sleep(0.02)


@in_thread
def stored(identity: str) -> list[dict[str, Any]]:
    from sessions.models import ChargingSession

    rows = ChargingSession.objects.filter(station__identity=identity).order_by("started_at")
    return [
        {
            "tx": row.ocpp16_transaction_id or row.transaction_id,
            "status": row.status,
            "meter_stop": row.meter_stop_wh,
            "periodic": row.samples.filter(measurand=ENERGY, context="Sample.Periodic").count(),
            "events": sorted(row.transaction_events.values_list("seq_no", flat=True)),
        }
        for row in rows
    ]


async def test_daphne_sigkilled_with_frames_in_flight_then_offline_queues_replayed(
    transactional_db,  # noqa: ARG001
):
    await make_stations("KILL", STATIONS, ("ocpp1.6", "ocpp2.0.1"))
    port = free_port()
    server = daphne_on(port, "fault-kill-1")
    stats = Stats()
    behaviour = Behaviour(
        meter_interval=None,
        measurands=(ENERGY,),
        id_tag=TAG,
        session_gap=None,
        heartbeats=False,
        reconnect_min=0.2,
        reconnect_max=1.0,
        open_timeout=5,
        response_timeout=10,
        validate=True,
    )
    stations = [
        SimulatedStation(
            StationSpec(
                f"KILL-{n:04d}", "ocpp1.6" if n % 2 == 0 else "ocpp2.0.1", PASSWORD, connectors=1
            ),
            server.ws_url,
            behaviour,
            stats,
            bind=False,
        )
        for n in range(STATIONS)
    ]
    plans = [Plan(s) for s in stations]
    runs = [asyncio.create_task(s.run()) for s in stations]
    restarted = None
    try:
        await asyncio.wait_for(asyncio.gather(*(s.booted.wait() for s in stations)), 30)
        # Acknowledged before the fault: a session and three meter messages each.
        firsts = await asyncio.gather(*(run_session_start(p) for p in plans))
        await asyncio.gather(*(meter(p, c, 3) for p, c in zip(plans, firsts, strict=True)))

        async def burst(plan: Plan, counter: list[int]) -> None:
            await meter(plan, counter, BURST)
            # Offline by now: the charger goes on, its transaction messages queue.
            connector = plan.station.connectors[0]
            await plan.station.stop_session(connector)
            second = await run_session_start(plan)
            await meter(plan, second, 3)
            await plan.station.stop_session(connector)

        bursts = asyncio.gather(*(burst(p, c) for p, c in zip(plans, firsts, strict=True)))
        await asyncio.sleep(0.1)  # frames in flight on every connection
        answered_at_kill = sum(stats.answered.values())
        sigkill(server.process)
        await asyncio.wait_for(bursts, 60)
        assert all(not s.online.is_set() for s in stations)
        queued = sum(len(s.outbox) for s in stations)
        assert queued >= STATIONS * 5  # at least stop, start, 3 meters and a stop each

        restarted = daphne_on(port, "fault-kill-2")
        deadline = time.monotonic() + 60
        while any(s.outbox or s.replaying or not s.online.is_set() for s in stations):
            assert time.monotonic() < deadline, "offline queues not replayed within 60 s"
            await asyncio.sleep(0.1)
    finally:
        await asyncio.gather(*(s.stop() for s in stations), return_exceptions=True)
        for task in runs:
            task.cancel()
        await asyncio.gather(*runs, return_exceptions=True)
        sigkill(server.process)
        if restarted is not None:
            restarted.stop()

    assert stats.schema_violations == []
    assert not stats.call_errors, stats.call_errors
    assert stats.replayed >= queued
    print(
        f"daphne killed after {answered_at_kill} answers; {queued} messages queued offline, "
        f"{stats.replayed} replayed, {stats.disconnects} disconnects, "
        f"{stats.handshake_failures} refused reconnects"
    )
    for plan in plans:
        identity = plan.station.spec.identity
        rows = await stored(identity)
        assert len(rows) == 2, (identity, rows)
        for row, (session, counter) in zip(rows, plan.sessions, strict=True):
            assert row["tx"] == session.transaction_id, identity
            assert row["status"] == "completed", (identity, row)
            # Every meter message stored once: acknowledged, in flight, or replayed.
            assert row["periodic"] == counter[0], (identity, row, counter)
            if plan.station.protocol == "ocpp2.0.1":
                assert row["events"] == list(range(counter[0] + 2)), (identity, row)

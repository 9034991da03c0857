"""The fleet simulator against the real server and against the ceiling."""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
from django.core.management import call_command

from cpo.tools.bench.data import (
    fleet_acknowledged_missing,
    fleet_rows_count,
    fleet_stations_create,
)
from cpo.tools.bench.runner import ceiling_running
from cpo.tools.simulator import Behaviour, Fleet, Swarm, fleet_specs
from tests.conftest import ROOT, free_port, server_env

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
    from sessions.models import IdToken
    from stations.models import ChargingStation

    # The hot path measured is the real one: a token with an account, a budget, a concurrency
    # limit and an allowed site; a quarter of the stations show the running cost.
    token = IdToken.objects.get(uid="BENCH-TAG-OK")
    assert token.account is not None
    assert token.budget_energy_wh
    assert token.max_concurrent_sessions
    assert token.allowed_locations.count() == 1
    assert (
        ChargingStation.objects.filter(
            identity__startswith="SMOKE-", cost_display_enabled=True
        ).count()
        == 2
    )

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
    # Each acknowledged message looked up on its own, as the benchmark does.
    assert len(stats.acked_transactions) == 5
    assert len(stats.acked_samples) == 5 * 2 + 2 * 2
    checked = fleet_acknowledged_missing(
        first_id=rows.first_id,
        last_id=rows.last_id,
        transactions=stats.acked_transactions,
        samples=stats.acked_samples,
    )
    assert checked["transactions_missing"] == checked["meter_values_missing"] == 0, checked
    # A key that was never stored is found missing (the check can fail).
    assert (
        fleet_acknowledged_missing(
            first_id=rows.first_id,
            last_id=rows.last_id,
            transactions=["SMOKE-1\t999999"],
            samples=[stats.acked_samples[0].rsplit("\t", 1)[0] + "\t99"],
        )
        | {"examples": []}
    ) == {
        "transactions_checked": 1,
        "transactions_missing": 1,
        "meter_values_checked": 1,
        "meter_values_missing": 1,
        "examples": [],
    }

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


# --- `make simulate` as its user runs it: a real process, Ctrl-C ---------------------------------


class Running:
    """A command started in its own process group, as a terminal starts it; its output is
    read line by line as it comes."""

    def __init__(self, args: list[str], **env: str):
        self.lines: list[str] = []
        self.process = subprocess.Popen(
            args,
            cwd=ROOT,
            env=server_env(**env),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def wait_for(self, *texts: str, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while not all(text in self.output for text in texts):
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.kill()
                missing = [text for text in texts if text not in self.output]
                raise AssertionError(f"never printed {missing}; output:\n{self.output}")
            time.sleep(0.1)

    def ctrl_c(self, timeout: float = 60.0) -> int:
        """What Ctrl-C in a terminal does: SIGINT to every process of the group."""
        os.killpg(self.process.pid, signal.SIGINT)
        try:
            code = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.kill()
            raise
        self.reader.join(10)
        return code

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)


def assert_no_traceback(output: str) -> None:
    assert "Traceback" not in output, output
    assert "BrokenPipeError" not in output, output
    assert "KeyboardInterrupt" not in output, output


@pytest.mark.skipif(shutil.which("make") is None, reason="make is not installed")
@pytest.mark.django_db(transaction=True)
def test_make_simulate_honours_port_says_what_it_does_and_stops_on_ctrl_c(daphne_server, roles):  # noqa: ARG001
    from cpo.demo import demo_data_load
    from sessions.models import ChargingSession

    demo_data_load()
    run = Running(
        ["make", "--no-print-directory", "simulate"],
        PORT=str(daphne_server.port),
        SIMULATE_ARGS="--session-gap 1,1 --session-length 2,2 --meter-interval 1",
    )
    url = f"ws://127.0.0.1:{daphne_server.port}/ocpp"
    run.wait_for(
        f"Simulating 2 station(s) against {url}",
        "Each connector waits 1 s before a session (--session-gap) and charges 2 s",
        "DEMO-16: connected (ocpp1.6), boot accepted",
        "DEMO-201: connected (ocpp2.0.1), boot accepted",
        "DEMO-16: connector 1: waiting 1 s before the next session",
        "DEMO-201: connector 2: charging for 2 s",
        "session ended (Local)",
    )
    code = run.ctrl_c()
    output = run.output
    assert_no_traceback(output)
    assert "Stopping: closing the connections of 2 station(s)" in output
    assert "Stopped." in output.splitlines()
    # make waits for the simulator to finish, then ends by the same SIGINT (a shell shows 130).
    assert code in (0, 130, -signal.SIGINT), output
    assert "online 0" not in output
    assert (
        ChargingSession.objects.filter(
            station__identity__in=["DEMO-16", "DEMO-201"], ended_at__isnull=False
        )
        .exclude(transaction_id__startswith="demo-")
        .exists()
    )


@pytest.mark.django_db(transaction=True)
def test_simulate_says_why_it_cannot_connect_and_stops_on_ctrl_c(daphne_server) -> None:
    command = [sys.executable, "manage.py", "simulate", "--demo"]
    # Nothing listens on that port: the reason, the retry, and a clean stop.
    nowhere = free_port()
    run = Running(command, PORT=str(nowhere))
    run.wait_for(
        f"DEMO-16: failed to connect to ws://127.0.0.1:{nowhere}/ocpp/DEMO-16: connection "
        "refused (is the back office running on that port?); retrying in",
        "DEMO-201: failed to connect",
    )
    code = run.ctrl_c()
    assert_no_traceback(run.output)
    assert code in (0, 130), run.output
    assert "failed to connect" in run.output.splitlines()[-2]
    assert run.output.splitlines()[-1] == "Stopped."

    # The back office runs, but does not know the stations (no demo data loaded here).
    run = Running([*command, "--url", daphne_server.ws_url])
    run.wait_for(
        f"DEMO-16: failed to connect to {daphne_server.ws_url}/DEMO-16: HTTP 401: refused by "
        "the back office (unknown identity or wrong password)"
    )
    code = run.ctrl_c()
    assert_no_traceback(run.output)
    assert code in (0, 130), run.output


def test_the_default_url_is_where_make_run_listens(monkeypatch) -> None:
    from django.core.management.base import CommandError

    from cpo.management.commands.simulate import default_url

    monkeypatch.delenv("PORT", raising=False)
    monkeypatch.delenv("HOST", raising=False)
    assert default_url() == "ws://127.0.0.1:8000/ocpp"
    monkeypatch.setenv("PORT", "8123")
    assert default_url() == "ws://127.0.0.1:8123/ocpp"
    monkeypatch.setenv("HOST", "0.0.0.0")  # noqa: S104 - what make run listens on
    assert default_url() == "ws://127.0.0.1:8123/ocpp"
    monkeypatch.setenv("HOST", "10.1.2.3")
    assert default_url() == "ws://10.1.2.3:8123/ocpp"
    monkeypatch.setenv("HOST", "::1")
    assert default_url() == "ws://[::1]:8123/ocpp"
    monkeypatch.setenv("PORT", "eighty")
    with pytest.raises(CommandError, match="PORT must be a port number"):
        default_url()


@pytest.mark.django_db(transaction=True)
def test_simulated_ocpp21_stations_charge_with_schema_valid_frames(daphne_server):
    """The simulator speaks 2.1: stations negotiate `ocpp2.1`, charge, and every frame both
    ways is valid against the 2.1 schemas (the simulator validates what the CSMS sends)."""
    specs = fleet_specs(prefix="SIM21-", count=2, protocols=["ocpp2.1"], connectors=1, seed="21")
    rows = fleet_stations_create(specs=specs)

    async def scenario() -> Swarm:
        swarm = Swarm(specs, daphne_server.ws_url, _behaviour())
        ready = await swarm.connect(deadline=time.time() + 30)
        assert ready["ready"] == 2
        for station in swarm.stations:
            assert station.protocol == "ocpp2.1"
            connector = station.connectors[0]
            assert await station.start_session(connector, with_status=True)
            await station.send_meter_values(connector)
            await station.stop_session(connector, with_status=True)
        await swarm.close()
        return swarm

    swarm = asyncio.run(scenario())
    assert swarm.stats.schema_violations == []
    assert not swarm.stats.call_errors
    assert not swarm.stats.timeouts
    assert swarm.stats.sessions == 2
    persisted = fleet_rows_count(first_id=rows.first_id, last_id=rows.last_id)
    assert persisted["sessions"] == 2
    assert persisted["samples"] == swarm.stats.samples

    from stations.models import StationConnection

    assert set(StationConnection.objects.values_list("protocol", flat=True)) == {"ocpp2.1"}

"""The run command started, stopped and crashed as a newcomer and an operator would."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest
import websockets
from ocpp.v16 import call

from cpo.demo import DEMO_LOGINS, DEMO_STATIONS
from cpo.run import restart_delay
from tests.conftest import ROOT, free_port
from tests.ocpp_client import station

PASSWORDS = [password for _, _, password in DEMO_LOGINS] + [s["password"] for s in DEMO_STATIONS]


def _children_of_data_dir(data_dir: Path) -> list[psutil.Process]:
    found = []
    for process in psutil.process_iter(["cmdline", "environ"]):
        try:
            cmdline = " ".join(process.info["cmdline"] or [])
            environ = process.info["environ"] or {}
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        if str(data_dir) in cmdline or environ.get("CPO_DATA_DIR") == str(data_dir):
            found.append(process)
    return found


def _get(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:  # noqa: S310 - loopback only
            return response.status, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


def _embedded_env(data_dir: Path) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k
        not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "CPO_SQLITE_PATH", "DEMO")
    }
    env.update(CPO_DATA_DIR=str(data_dir), PYTHONUNBUFFERED="1")
    return env


@pytest.fixture(scope="module")
def first_run(tmp_path_factory) -> tuple[Path, str]:
    """What `make run` does before the run command, once, on a fresh data dir: migrate, and
    the demo data (wanted: the first run on the embedded defaults). Tests copy the result."""
    data_dir = tmp_path_factory.mktemp("first-run") / "data"
    env = _embedded_env(data_dir)
    output = ""
    for step in (["migrate", "--no-input", "-v0"], ["demo_data", "--if-wanted"]):
        done = subprocess.run(
            [sys.executable, "manage.py", *step],
            cwd=ROOT,
            env=env,
            check=True,
            timeout=300,
            capture_output=True,
            text=True,
        )
        output += done.stdout
    return data_dir, output


@dataclass
class Run:
    process: subprocess.Popen[bytes]
    port: int
    data_dir: Path
    log: Path

    def output(self) -> str:
        return self.log.read_text()

    def child(self, name: str) -> psutil.Process:
        """The run command's child that runs the program `name` (daphne, celery, redis-server)."""
        for child in psutil.Process(self.process.pid).children():
            try:
                # The program, or the script its interpreter runs (`python .venv/bin/daphne`).
                # daphne runs as `python -m cpo.lib.daphne_server` (cpo.run.daphne_command).
                command = child.cmdline()[:3]
                if name == "daphne" and "cpo.lib.daphne_server" in command:
                    return child
                if any(Path(part).name == name for part in command[:2]):
                    return child
            except psutil.NoSuchProcess:
                continue
        raise LookupError(name)

    def wait_healthy(self, timeout: float = 180) -> dict:
        import json

        deadline = time.monotonic() + timeout
        status, body = 0, b""
        while time.monotonic() < deadline:
            try:
                status, body = _get(f"http://127.0.0.1:{self.port}/healthz")
                if status == 200:
                    return json.loads(body)
            except OSError:
                pass
            time.sleep(0.5)
        raise AssertionError((status, body, self.output()[-3000:]))

    def station_row(self, identity: str) -> tuple[int, str]:
        with sqlite3.connect(self.data_dir / "cpo.sqlite3", timeout=20) as db:
            return db.execute(
                "SELECT is_online, node FROM stations_chargingstation WHERE identity = ?",
                [identity],
            ).fetchone()


@contextmanager
def run_command(first_run: tuple[Path, str], tmp_path: Path) -> Iterator[Run]:
    data_dir = tmp_path / "data"
    shutil.copytree(first_run[0], data_dir)
    env = _embedded_env(data_dir)
    port = free_port()
    env["PORT"] = str(port)
    log = tmp_path / "run.log"
    process = subprocess.Popen(
        [sys.executable, "-m", "cpo.run"],
        cwd=ROOT,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    run = Run(process, port, data_dir, log)
    try:
        yield run
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)


@pytest.mark.live
def test_run_command_serves_and_stops_cleanly(first_run, tmp_path):
    """`make run` on embedded defaults: admin, /healthz green, unknown station refused, and
    Ctrl-C leaves no daphne, Celery or Redis process behind."""
    with run_command(first_run, tmp_path) as run:
        run.wait_healthy()
        status, body = _get(f"http://127.0.0.1:{run.port}/admin/login/")
        assert status == 200
        assert b"username" in body

        async def unknown_station() -> None:
            with pytest.raises(websockets.InvalidStatus):
                await websockets.connect(
                    f"ws://127.0.0.1:{run.port}/ocpp/UNKNOWN-ID",
                    subprotocols=[websockets.Subprotocol("ocpp1.6")],
                    open_timeout=10,
                )

        asyncio.run(unknown_station())
        assert len(_children_of_data_dir(run.data_dir)) >= 3  # daphne, celery, redis-server
    assert run.process.returncode == 0
    output = run.output()
    assert "Operator panel" in output
    assert "Demo stations  : DEMO-16, DEMO-201" in output
    assert "README.md, Demo data" in output
    assert not any(password in output for password in PASSWORDS)
    time.sleep(0.5)
    assert _children_of_data_dir(run.data_dir) == []


def test_the_first_run_prints_the_demo_passwords_and_the_next_neither_loads_nor_prints(
    first_run, tmp_path
):
    _, demo_output = first_run
    assert all(password in demo_output for password in PASSWORDS)
    data_dir = tmp_path / "data"
    shutil.copytree(first_run[0], data_dir)
    again = subprocess.run(
        [sys.executable, "manage.py", "demo_data", "--if-wanted"],
        cwd=ROOT,
        env=_embedded_env(data_dir),
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    ).stdout
    assert "Demo data not loaded (not the first run)" in again
    assert not any(password in again for password in PASSWORDS)


@pytest.mark.live
def test_a_killed_daphne_comes_back_and_its_stations_go_offline_at_once(first_run, tmp_path):
    """kill -9 of the daphne child: the run command logs it, marks the station that daphne
    held offline at once (its heartbeat interval is 300 s: the sweep would take 15 minutes),
    starts daphne again after its back-off, and the station can reconnect. A killed Celery
    worker is started again too."""
    with run_command(first_run, tmp_path) as run:
        run.wait_healthy()
        daphne = run.child("daphne")
        identity, password = DEMO_STATIONS[0]["identity"], DEMO_STATIONS[0]["password"]
        ws_url = f"ws://127.0.0.1:{run.port}/ocpp"

        async def connected_when_daphne_dies() -> None:
            async with station(ws_url, identity, password=password) as cp:
                boot = await cp.cp.call(
                    call.BootNotification(charge_point_model="M", charge_point_vendor="V")
                )
                assert boot.status == "Accepted"
                assert run.station_row(identity)[0] == 1
                killed_at = time.monotonic()
                daphne.send_signal(signal.SIGKILL)
                while run.station_row(identity)[0] != 0:
                    assert time.monotonic() - killed_at < 5, run.output()[-3000:]
                    await asyncio.sleep(0.1)

        asyncio.run(connected_when_daphne_dies())
        node = run.station_row(identity)[1]
        assert node == f"{os.uname().nodename}:{run.port}"
        with sqlite3.connect(run.data_dir / "cpo.sqlite3") as db:
            reason = db.execute(
                "SELECT c.close_reason FROM stations_stationconnection c"
                " JOIN stations_chargingstation s ON s.id = c.station_id"
                " WHERE s.identity = ? ORDER BY c.connected_at DESC LIMIT 1",
                [identity],
            ).fetchone()[0]
        assert reason == "node died (daphne exited with code -9)"

        run.wait_healthy(timeout=60)
        assert run.child("daphne").pid != daphne.pid

        async def reconnects() -> None:
            async with station(ws_url, identity, password=password) as cp:
                await cp.cp.call(call.Heartbeat())
                assert run.station_row(identity)[0] == 1

        asyncio.run(reconnects())

        worker = run.child("celery")
        worker.send_signal(signal.SIGKILL)
        deadline = time.monotonic() + 90
        while True:
            try:
                if run.child("celery").pid != worker.pid:
                    break
            except LookupError:
                pass
            assert time.monotonic() < deadline, run.output()[-3000:]
            time.sleep(0.2)
        # 200 only with a Celery worker answering.
        assert run.wait_healthy(timeout=90)["celery"]["ok"]
    output = run.output()
    assert f"daphne (pid {daphne.pid}) exited with code -9" in output
    assert "station(s) of node" in output
    assert "daphne restarted" in output
    assert f"celery (pid {worker.pid}) exited with code -9" in output
    assert "celery restarted" in output
    assert run.process.returncode == 0
    # Nothing of the killed worker (its beat, its pool) outlived it, nor of the rest.
    time.sleep(0.5)
    assert _children_of_data_dir(run.data_dir) == []


def test_restarts_back_off_to_thirty_seconds():
    assert [restart_delay(n) for n in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]

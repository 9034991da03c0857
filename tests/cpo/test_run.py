"""The run command started and stopped as a newcomer would."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import psutil
import pytest
import websockets

from tests.conftest import ROOT, free_port


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


@pytest.mark.live
def test_run_command_serves_and_stops_cleanly(tmp_path):
    """`make run` on embedded defaults: admin, /healthz green, unknown station refused, and
    Ctrl-C leaves no daphne, Celery or Redis process behind."""
    data_dir = tmp_path / "data"
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE", "CPO_SQLITE_PATH")
    }
    env.update(CPO_DATA_DIR=str(data_dir), PORT=str(free_port()), PYTHONUNBUFFERED="1")
    for step in (["migrate", "--no-input", "-v0"], ["demo_data"]):
        subprocess.run(
            [sys.executable, "manage.py", *step], cwd=ROOT, env=env, check=True, timeout=300
        )
    log = (tmp_path / "run.log").open("wb")
    run = subprocess.Popen(
        [sys.executable, "-m", "cpo.run"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
    )
    port = env["PORT"]
    try:
        deadline = time.monotonic() + 180
        status, body = 0, b""
        while time.monotonic() < deadline:
            try:
                status, body = _get(f"http://127.0.0.1:{port}/healthz")
                if status == 200:
                    break
            except OSError:
                pass
            time.sleep(0.5)
        assert status == 200, (body, (tmp_path / "run.log").read_text()[-3000:])

        status, body = _get(f"http://127.0.0.1:{port}/admin/login/")
        assert status == 200
        assert b"username" in body

        async def unknown_station() -> None:
            with pytest.raises(websockets.InvalidStatus):
                await websockets.connect(
                    f"ws://127.0.0.1:{port}/ocpp/UNKNOWN-ID",
                    subprotocols=[websockets.Subprotocol("ocpp1.6")],
                    open_timeout=10,
                )

        import asyncio

        asyncio.run(unknown_station())
        assert len(_children_of_data_dir(data_dir)) >= 3  # daphne, celery, redis-server
    finally:
        run.send_signal(signal.SIGINT)
        run.wait(60)
    output = (tmp_path / "run.log").read_text()
    assert "Operator panel" in output
    assert "DEMO-16" in output
    time.sleep(0.5)
    assert _children_of_data_dir(data_dir) == []

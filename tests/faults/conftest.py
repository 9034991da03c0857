"""Fixtures of the fault suite: daphne on a fixed port (so that a killed server can be
restarted where the stations reconnect), SIGKILL by PID, and stations with passwords."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

from tests.conftest import BIN, ROOT, DaphneServer, free_port, server_env, wait_for_port

PASSWORD = "fault-suite-secret-01"
TAG = "FAULT-TAG-OK"
T = TypeVar("T")


def in_thread(function: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """sync_to_async on a pool thread that closes its database connection after the call: one
    left open there would keep PostgreSQL from dropping the test database at the end."""

    def call(*args: Any, **kwargs: Any) -> T:
        try:
            return function(*args, **kwargs)
        finally:
            connection.close()

    return sync_to_async(call, thread_sensitive=False)


def daphne_on(port: int, name: str, **extra_env: str) -> DaphneServer:
    """A daphne on `port` (its own process, killed by PID only)."""
    log = Path(settings.DATA_DIR) / f"daphne-{name}-{port}.log"
    process = subprocess.Popen(
        [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "cpo.asgi:application"],
        cwd=ROOT,
        env=server_env(CPO_NODE_NAME=name, **extra_env),
        stdout=log.open("ab"),
        stderr=subprocess.STDOUT,
    )
    wait_for_port(port, process)
    return DaphneServer(port, process, log)


def fresh_daphne(name: str, **extra_env: str) -> DaphneServer:
    return daphne_on(free_port(), name, **extra_env)


def sigkill(process: subprocess.Popen[bytes]) -> None:
    """SIGKILL one process we started, by its PID, and reap it."""
    if process.poll() is None:
        os.kill(process.pid, signal.SIGKILL)
    process.wait(10)


@in_thread
def make_stations(prefix: str, count: int, protocols: tuple[str, ...] = ("ocpp1.6",)) -> list[Any]:
    """`count` stations with PASSWORD (protocols taken in turn), and the accepted card TAG."""
    from sessions.models import IdToken
    from stations.models import ChargingStation

    rows = []
    for n in range(count):
        row = ChargingStation(identity=f"{prefix}-{n:04d}", protocol=protocols[n % len(protocols)])
        row.set_password(PASSWORD)
        rows.append(row)
    ChargingStation.objects.bulk_create(rows)
    IdToken.objects.get_or_create(uid=TAG)
    return list(ChargingStation.objects.filter(identity__startswith=f"{prefix}-"))


async def until(predicate: Callable[[], Any], timeout: float = 30.0, step: float = 0.1) -> Any:
    """Poll a synchronous (database) predicate until it returns something truthy."""
    check = in_thread(predicate)
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s")
        await asyncio.sleep(step)


def celery_popen(name: str) -> tuple[subprocess.Popen[bytes], Path, str]:
    """A Celery worker as tests/conftest.py starts one, returned at once (not after its first
    ping), so that a test can kill it while it works through a queue."""
    log = Path(settings.DATA_DIR) / f"celery-{name}.log"
    hostname = f"{name}@test-{os.getpid()}"
    process = subprocess.Popen(
        [
            str(BIN / "celery"),
            "-A",
            "cpo",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "INFO",
            "--hostname",
            hostname,
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=server_env(),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return process, log, hostname

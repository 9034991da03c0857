"""Fixtures of the fault suite: daphne on a fixed port (so that a killed server can be
restarted where the stations reconnect), SIGKILL by PID, and stations with passwords."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import itertools
import json
import os
import signal
import subprocess
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, TypeVar

import websockets
from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import connection

from tests.conftest import (
    ROOT,
    DaphneServer,
    celery_worker_popen,
    free_port,
    server_env,
    wait_for_port,
)
from tests.ocpp_client import basic_auth

ENERGY = "Energy.Active.Import.Register"

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
    """A daphne on `port` with the options `make run` gives it (listen backlog, handshake
    timeout), in its own process, killed by PID only."""
    from cpo.run import daphne_command, daphne_options

    log = Path(settings.DATA_DIR) / f"daphne-{name}-{port}.log"
    process = subprocess.Popen(
        [
            *daphne_command(),
            *daphne_options(host="127.0.0.1", port=port),
            "cpo.asgi:application",
        ],
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
    """A Celery worker returned at once, so that a test can kill it while it works through a
    queue."""
    return celery_worker_popen(name)


def ts(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


class Charger:
    """A bare OCPP-J charger over `websockets` that treats its transaction messages as a real
    one must (OCPP 1.6 §4.7, 2.0.1 E04/E13): a message answered with a CALLERROR, or lost
    with its connection, is sent again until the CSMS acknowledges it (a CALLERROR other than
    InternalError, a verdict on the message itself, fails the test). CALLs from the CSMS
    are answered NotImplemented."""

    def __init__(self, ws_url: str, identity: str, protocol: str):
        self.url = f"{ws_url}/{identity}"
        self.identity = identity
        self.protocol = protocol
        self.ws: Any = None
        self.ids = itertools.count(1)
        self.call_errors: list[str] = []
        self.connects = 0
        self.lost_connections = 0
        self.handshake_failures: list[str] = []
        self.handshake_statuses: list[int] = []

    async def connect(self, attempts: int = 50) -> None:
        for _ in range(attempts):
            try:
                self.ws = await websockets.connect(
                    self.url,
                    subprotocols=[websockets.Subprotocol(self.protocol)],
                    additional_headers=basic_auth(self.identity, PASSWORD),
                    open_timeout=10,
                    ping_interval=None,
                )
                self.connects += 1
                return
            except (OSError, TimeoutError, websockets.InvalidHandshake) as error:
                self.handshake_failures.append(f"{type(error).__name__}: {error}")
                if isinstance(error, websockets.InvalidStatus):
                    self.handshake_statuses.append(error.response.status_code)
                await asyncio.sleep(0.2)
        raise AssertionError(f"{self.identity}: no connection: {self.handshake_failures[-3:]}")

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()

    async def call(self, action: str, payload: dict[str, Any], timeout: float = 10.0) -> Any:
        """One CALL, sent again until it gets a CALLRESULT; returns its payload."""
        for _ in range(50):
            if self.ws is None or self.ws.state is not websockets.State.OPEN:
                await self.connect()
            message_id = f"{self.identity}-{next(self.ids)}"
            try:
                await self.ws.send(json.dumps([2, message_id, action, payload]))
                reply = await asyncio.wait_for(self._reply(message_id), timeout)
            except (websockets.ConnectionClosed, TimeoutError):
                self.lost_connections += 1
                with contextlib.suppress(Exception):
                    self.ws.transport.abort()
                self.ws = None
                await asyncio.sleep(0.1)
                continue
            if reply[0] == 3:
                return reply[2]
            self.call_errors.append(f"{action}: {reply[2]} {reply[3]}")
            if reply[2] != "InternalError":  # a verdict on the message: sending it again is futile
                raise AssertionError(f"{self.identity}: {action} refused: {reply}")
            await asyncio.sleep(0.1)
        raise AssertionError(f"{self.identity}: {action} never acknowledged: {self.call_errors}")

    async def _reply(self, message_id: str) -> list[Any]:
        while True:
            frame = json.loads(await self.ws.recv())
            if frame[0] == 2:
                await self.ws.send(json.dumps([4, frame[1], "NotImplemented", "", {}]))
            elif frame[1] == message_id:
                return frame


class Session:
    """One charging session a Charger runs, and what it had acknowledged."""

    def __init__(self, charger: Charger, start: dt.datetime, meters: int):
        self.charger = charger
        self.start = start
        self.meters = meters
        self.transaction_id: Any = None
        self.acknowledged = 0

    def at(self, n: int) -> str:
        return ts(self.start + dt.timedelta(seconds=n))

    async def run(self, pause: float = 0.0) -> None:
        charger = self.charger
        if charger.protocol == "ocpp1.6":
            started = await charger.call(
                "StartTransaction",
                {"connectorId": 1, "idTag": TAG, "meterStart": 0, "timestamp": self.at(0)},
            )
            self.transaction_id = started["transactionId"]
        else:
            self.transaction_id = f"{charger.identity}-tx"
            await charger.call("TransactionEvent", self._event("Started", 0))
        self.acknowledged += 1
        for n in range(1, self.meters + 1):
            if charger.protocol == "ocpp1.6":
                await charger.call(
                    "MeterValues",
                    {
                        "connectorId": 1,
                        "transactionId": self.transaction_id,
                        "meterValue": [
                            {"timestamp": self.at(n), "sampledValue": [self._sample(n)]}
                        ],
                    },
                )
            else:
                await charger.call("TransactionEvent", self._event("Updated", n))
            self.acknowledged += 1
            if pause:
                await asyncio.sleep(pause)
        end = self.meters + 1
        if charger.protocol == "ocpp1.6":
            await charger.call(
                "StopTransaction",
                {
                    "transactionId": self.transaction_id,
                    "meterStop": end * 100,
                    "timestamp": self.at(end),
                },
            )
        else:
            await charger.call("TransactionEvent", self._event("Ended", end))
        self.acknowledged += 1

    def _sample(self, n: int, context: str = "Sample.Periodic") -> dict[str, Any]:
        if self.charger.protocol == "ocpp1.6":
            return {"value": str(n * 100), "measurand": ENERGY, "unit": "Wh", "context": context}
        return {
            "value": n * 100,
            "measurand": ENERGY,
            "unitOfMeasure": {"unit": "Wh"},
            "context": context,
        }

    def _event(self, kind: str, n: int) -> dict[str, Any]:
        info: dict[str, Any] = {"transactionId": self.transaction_id}
        context = {"Started": "Transaction.Begin", "Ended": "Transaction.End"}
        payload: dict[str, Any] = {
            "eventType": kind,
            "timestamp": self.at(n),
            "triggerReason": {
                "Started": "Authorized",
                "Updated": "MeterValuePeriodic",
                "Ended": "EVDeparted",
            }[kind],
            "seqNo": n,
            "transactionInfo": info,
            "meterValue": [
                {
                    "timestamp": self.at(n),
                    "sampledValue": [self._sample(n, context.get(kind, "Sample.Periodic"))],
                }
            ],
        }
        if kind == "Started":
            payload["idToken"] = {"idToken": TAG, "type": "ISO14443"}
            payload["evse"] = {"id": 1, "connectorId": 1}
        if kind == "Ended":
            info["stoppedReason"] = "EVDisconnected"
        return payload

    def stored(self) -> dict[str, Any]:
        """The session as stored, with its periodic samples and (2.0.1) event numbers."""
        from sessions.models import ChargingSession

        key = (
            {"ocpp16_transaction_id": self.transaction_id}
            if self.charger.protocol == "ocpp1.6"
            else {"transaction_id": self.transaction_id}
        )
        rows = list(ChargingSession.objects.filter(station__identity=self.charger.identity))
        matching: list[Any] = [r for r in rows if all(getattr(r, k) == v for k, v in key.items())]
        [row] = matching or [None]
        return {
            "sessions": len(rows),
            "status": row.status if row else None,
            "periodic": row.samples.filter(measurand=ENERGY, context="Sample.Periodic").count()
            if row
            else 0,
            "events": sorted(row.transaction_events.values_list("seq_no", flat=True))
            if row
            else [],
            "meter_stop": row.meter_stop_wh if row else None,
        }

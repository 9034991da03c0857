"""Fault: Redis stopped and restarted under a connected station (`pytest -m fault`).

A real redis-server on a free port of its own, started, stopped and restarted by PID; a daphne
node uses it as its channel layer, as does this test process (command wake-ups). The restart
loses every key (no persistence), as a crashed Redis does: groups must be re-joined.
"""

from __future__ import annotations

import asyncio
import copy
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings

from tests.conftest import free_port, start_daphne
from tests.ocpp_client import station
from tests.stations.conftest import acreate, until, until_final, until_online

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live, pytest.mark.fault]


def _redis_binary() -> str:
    found = shutil.which("redis-server")
    if found:
        return found
    from cpo.lib.embedded_redis import redis_server_binary

    return redis_server_binary()


class RedisServer:
    """A throw-away redis-server on 127.0.0.1:<port>, stopped and started by PID."""

    def __init__(self, port: int, log: Path):
        self.port = port
        self.log = log
        self.url = f"redis://127.0.0.1:{port}/0"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        import redis

        self.process = subprocess.Popen(
            [
                _redis_binary(),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--logfile",
                str(self.log),
            ],
            stdin=subprocess.DEVNULL,
        )
        client = redis.Redis(port=self.port, socket_timeout=1, socket_connect_timeout=1)
        for _ in range(100):
            try:
                if client.ping():
                    return
            except redis.RedisError:
                pass
            if self.process.poll() is not None:
                raise RuntimeError(f"redis-server exited: {self.log.read_text()[-2000:]}")
            time.sleep(0.05)
        raise RuntimeError("redis-server did not answer")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None


@pytest.fixture
def redis_server() -> Iterator[RedisServer]:
    port = free_port()
    server = RedisServer(port, Path(settings.DATA_DIR) / f"redis-fault-{port}.log")
    server.start()
    yield server
    server.stop()


@pytest.fixture
def layer_on(settings, redis_server):
    """This process's channel layer on the fault test's Redis, as daphne's is."""
    layer = copy.deepcopy(settings.CHANNEL_LAYERS["default"])
    layer["CONFIG"]["hosts"] = [{"address": redis_server.url, "socket_connect_timeout": 1}]
    settings.CHANNEL_LAYERS = {"default": layer}


async def _heartbeat(client: Any, n: int) -> None:
    reply = await client.raw([2, f"hb-{n}", "Heartbeat", {}], timeout=10)
    assert reply[0] == 3, reply
    assert reply[2]["currentTime"]


async def test_a_redis_restart_keeps_the_station_connected_and_its_commands_flowing(
    redis_server, layer_on, make_station
):
    from stations.commands.models import Command
    from stations.models import StationConnection

    # A poll interval far beyond the test: a command can only arrive through the channel
    # layer, or through the re-join and poll that follow an outage.
    node = start_daphne("node-fault", REDIS_URL=redis_server.url, OCPP_COMMAND_POLL_INTERVAL="3600")
    try:
        cs = await sync_to_async(make_station)("FAULT-REDIS-1")
        async with station(node.ws_url, "FAULT-REDIS-1") as client:
            await until_online(cs.pk)

            # 1. A command in flight when Redis goes: the station answers after the stop.
            answer_now = asyncio.Event()

            async def slow_reset() -> Any:
                from ocpp.v16 import call_result

                await answer_now.wait()
                return call_result.Reset(status="Accepted")

            client.cp.responses["Reset"] = slow_reset()
            in_flight = await acreate(cs, verb="reset", params={"type": "soft"})
            await until(lambda: Command.objects.filter(pk=in_flight.pk, status="sent").exists(), 15)
            redis_server.stop()
            await asyncio.sleep(1)
            answer_now.set()
            assert (await until_final(in_flight.pk, 15)).status == Command.Status.ACCEPTED

            # 2. Redis is away: the station's own calls are answered, for several seconds.
            for n in range(4):
                await _heartbeat(client, n)
                await asyncio.sleep(0.5)
            # A command queued now: its wake-up cannot be sent (and must not fail the caller).
            during = await acreate(cs, verb="clear_cache")
            await _heartbeat(client, 10)

            # 3. Redis is back, empty: the command queued in the outage goes out...
            redis_server.start()
            done = await until_final(during.pk, 45)
            assert done.status == Command.Status.ACCEPTED
            # ... and the group was joined again: a new command's wake-up reaches the station.
            after = await acreate(cs, verb="get_local_list_version")
            assert (await until_final(after.pk, 15)).status == Command.Status.ACCEPTED
            await _heartbeat(client, 20)

            assert [action for action, _ in client.cp.received_calls] == [
                "Reset",
                "ClearCache",
                "GetLocalListVersion",
            ]
            assert not client.ws.close_code
        # One connection all along, closed only when the station left.
        connections = await sync_to_async(
            lambda: list(StationConnection.objects.filter(station=cs).values("close_reason"))
        )()
        assert len(connections) == 1, connections
        assert "1011" not in connections[0]["close_reason"]
    finally:
        node.stop()
    assert "Traceback" not in node.log.read_text()

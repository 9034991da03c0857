"""`NODES=2 make run`: two daphne nodes behind HAProxy, as real processes.

A command sent through one node reaches a station held by the other (the channel layer), and a
node killed outright loses its stations to the survivor through the balancer, where they finish
their transactions: every acknowledged message is stored once.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import json
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from ocpp.v16 import call

from cpo.run import Node, haproxy_binary, haproxy_config
from tests.conftest import ROOT, free_port
from tests.cpo.test_run import Run, _children_of_data_dir, _embedded_env
from tests.cpo.test_run import first_run as first_run  # the fixture, shared with test_run
from tests.ocpp_client import station

pytestmark = pytest.mark.skipif(
    haproxy_binary() is None, reason="HAProxy is missing: apt-get install haproxy"
)

STATIONS = [f"NODE-TEST-{n}" for n in range(1, 7)]
PASSWORD = "node-test-password-1234"

SETUP = f"""
from cpo.api_tokens import api_token_create
from cpo.models import User
from stations.services import station_create
for identity in {STATIONS!r}:
    station_create(
        data={{"identity": identity, "protocol": "ocpp1.6", "registration_status": "Accepted"}},
        password={PASSWORD!r},
        connector_count=1,
    )
_, raw = api_token_create(user=User.objects.get(username="operator"), name="node test")
print(raw)
"""


@contextmanager
def two_nodes(prepared: tuple[Path, str], tmp_path: Path) -> Iterator[tuple[Run, str]]:
    data_dir = tmp_path / "data"
    shutil.copytree(prepared[0], data_dir)
    env = _embedded_env(data_dir)
    token = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SETUP],
        cwd=ROOT,
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
        text=True,
    ).stdout.splitlines()[-1]  # after the shell's own "N objects imported" line
    port = free_port()
    # The nodes listen on the next two ports.
    while not all(_port_free(port + i) for i in (1, 2)):
        port = free_port()
    env.update(PORT=str(port), NODES="2", CPO_NODE_NAME="test")
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
        yield run, token
    finally:
        process.send_signal(signal.SIGINT)
        process.wait(60)


def _port_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _node_daphne(run: Run, node: str) -> psutil.Process:
    for child in psutil.Process(run.process.pid).children():
        try:
            if child.environ().get("CPO_NODE_NAME") == node:
                return child
        except psutil.NoSuchProcess:
            continue
    raise LookupError(node)


def _through_node(port: int, method: str, path: str, token: str, body: dict) -> tuple[int, dict]:
    """An HTTP request sent straight to one node, past the balancer: the node expects the
    PROXY protocol header HAProxy would put first, so the request carries one."""
    data = json.dumps(body).encode()
    request = (
        f"PROXY TCP4 127.0.0.9 127.0.0.1 40000 {port}\r\n"
        f"{method} {path} HTTP/1.0\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(data)}\r\n\r\n"
    ).encode() + data
    with socket.create_connection(("127.0.0.1", port), timeout=30) as conn:
        conn.sendall(request)
        answer = b""
        while chunk := conn.recv(65536):
            answer += chunk
    head, _, payload = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), json.loads(payload or b"{}")


def _rows(run: Run, sql: str, params: list | tuple = ()) -> list[tuple]:
    with sqlite3.connect(run.data_dir / "cpo.sqlite3", timeout=20) as db:
        return db.execute(sql, params).fetchall()


def _connection_addresses(run: Run, identity: str) -> list[str]:
    return [
        row[0]
        for row in _rows(
            run,
            "SELECT c.remote_addr FROM stations_stationconnection c"
            " JOIN stations_chargingstation s ON s.id = c.station_id WHERE s.identity = ?",
            [identity],
        )
    ]


def test_haproxy_config_hands_connections_to_the_least_loaded_node_with_the_proxy_protocol():
    config = haproxy_config(
        host="0.0.0.0",  # noqa: S104
        port=8000,
        nodes=[Node("a:8001", "10.0.0.1", 8001), Node("b:8001", "10.0.0.2", 8001)],
        maxconn=30000,
    )
    assert "bind 0.0.0.0:8000" in config
    assert "balance leastconn" in config
    assert "server a_8001 10.0.0.1:8001 send-proxy-v2 check" in config
    assert "server b_8001 10.0.0.2:8001 send-proxy-v2 check" in config
    assert "timeout tunnel 1h" in config
    assert "option redispatch 1" in config
    checked = subprocess.run(
        [haproxy_binary() or "haproxy", "-c", "-f", "/dev/stdin"],
        input=config,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_config_for_nodes_on_other_machines_is_the_same_file():
    from django.core.management import CommandError, call_command

    out = io.StringIO()
    call_command(
        "haproxy_config",
        "--bind",
        "0.0.0.0:8000",
        "--node",
        "app1=10.0.0.11:8001",
        "--node",
        "app2=10.0.0.12:8001",
        "--maxconn",
        "30000",
        stdout=out,
    )
    assert (
        out.getvalue().strip()
        == haproxy_config(
            host="0.0.0.0",  # noqa: S104
            port=8000,
            nodes=[Node("app1", "10.0.0.11", 8001), Node("app2", "10.0.0.12", 8001)],
            maxconn=30000,
        ).strip()
    )
    with pytest.raises(CommandError, match="not host:port"):
        call_command("haproxy_config", "--node", "app1=10.0.0.11")


@pytest.mark.live
def test_two_nodes_share_stations_commands_cross_nodes_and_a_killed_node_loses_nothing(
    first_run,
    tmp_path,
):
    with two_nodes(first_run, tmp_path) as (run, token):
        run.wait_healthy()
        ws_url = f"ws://127.0.0.1:{run.port}/ocpp"
        nodes = {f"test-{run.port + 1}": run.port + 1, f"test-{run.port + 2}": run.port + 2}
        transactions: dict[str, int] = {}
        acknowledged_samples: dict[str, int] = {}
        started = dt.datetime.now(dt.UTC).replace(microsecond=0)

        def stamp(seconds: int) -> str:
            return (started + dt.timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")

        async def meter(cp, identity: str, seconds: int, wh: int) -> None:
            await cp.cp.call(
                call.MeterValues(
                    connector_id=1,
                    transaction_id=transactions[identity],
                    meter_value=[
                        {
                            "timestamp": stamp(seconds),
                            "sampledValue": [{"value": str(wh), "unit": "Wh"}],
                        }
                    ],
                )
            )
            acknowledged_samples[identity] = acknowledged_samples.get(identity, 0) + 1

        async def scenario() -> str:
            clients = {}
            contexts = []
            for number, identity in enumerate(STATIONS, start=1):
                context = station(
                    ws_url, identity, password=PASSWORD, local_addr=(f"127.0.0.{number + 10}", 0)
                )
                contexts.append(context)
                clients[identity] = await context.__aenter__()
            try:
                for identity, cp in clients.items():
                    boot = await cp.cp.call(
                        call.BootNotification(charge_point_model="M", charge_point_vendor="V")
                    )
                    assert boot.status == "Accepted"
                    start = await cp.cp.call(
                        call.StartTransaction(
                            connector_id=1, id_tag="DEMO-TAG-OK", meter_start=0, timestamp=stamp(0)
                        )
                    )
                    assert start.id_tag_info["status"] == "Accepted"
                    transactions[identity] = start.transaction_id
                    await meter(cp, identity, 60, 1000)
                held = {
                    identity: _rows(
                        run,
                        "SELECT node FROM stations_chargingstation WHERE identity = ?",
                        [identity],
                    )[0][0]
                    for identity in STATIONS
                }
                # leastconn: the six stations are spread over both nodes.
                assert set(held.values()) == set(nodes), held
                # The balancer passed each charger's own address on (PROXY protocol).
                for number, identity in enumerate(STATIONS, start=1):
                    assert _connection_addresses(run, identity) == [f"127.0.0.{number + 10}"]

                # A command sent to node A's API for a station held by node B.
                node_a, node_b = sorted(nodes)
                on_b = next(identity for identity, node in held.items() if node == node_b)
                status, answer = await asyncio.to_thread(
                    _through_node,
                    nodes[node_a],
                    "POST",
                    f"/api/v1/stations/{on_b}/commands/",
                    token,
                    {
                        "verb": "get_configuration",
                        "params": {"keys": ["HeartbeatInterval"]},
                        "wait": 20,
                    },
                )
                assert status == 200, answer
                assert answer["status"] == "accepted", answer
                assert [a for a, _ in clients[on_b].cp.received_calls] == ["GetConfiguration"]

                # Node B's daphne killed outright: its stations reconnect through the balancer.
                victims = [identity for identity, node in held.items() if node == node_b]
                _node_daphne(run, node_b).send_signal(signal.SIGKILL)
                # The balancer closes their connections as soon as the node's sockets are gone.
                for identity in victims:
                    await asyncio.wait_for(clients[identity].ws.wait_closed(), 10)
                for number, identity in enumerate(STATIONS, start=1):
                    if identity not in victims:
                        continue
                    await contexts[number - 1].__aexit__(None, None, None)
                    contexts[number - 1] = station(
                        ws_url,
                        identity,
                        password=PASSWORD,
                        local_addr=(f"127.0.0.{number + 10}", 0),
                    )
                    clients[identity] = await contexts[number - 1].__aenter__()
                    boot = await clients[identity].cp.call(
                        call.BootNotification(charge_point_model="M", charge_point_vendor="V")
                    )
                    assert boot.status == "Accepted"
                for identity, cp in clients.items():
                    await meter(cp, identity, 120, 2000)
                    stop = await cp.cp.call(
                        call.StopTransaction(
                            meter_stop=3000,
                            timestamp=stamp(180),
                            transaction_id=transactions[identity],
                            reason="EVDisconnected",
                            id_tag="DEMO-TAG-OK",
                        )
                    )
                    assert stop.id_tag_info["status"] == "Accepted"
                moved = {
                    identity: _rows(
                        run,
                        "SELECT node FROM stations_chargingstation WHERE identity = ?",
                        [identity],
                    )[0][0]
                    for identity in victims
                }
                # The survivor holds them: the dead node's successor was not back yet.
                assert set(moved.values()) == {node_a}, moved
                return node_b
            finally:
                for context in contexts:
                    await context.__aexit__(None, None, None)

        killed = asyncio.run(scenario())
        for identity in STATIONS:
            sessions = _rows(
                run,
                "SELECT s.id, s.status, s.meter_stop_wh FROM charging_chargingsession s"
                " JOIN stations_chargingstation st ON st.id = s.station_id"
                " WHERE st.identity = ?",
                [identity],
            )
            assert len(sessions) == 1, (identity, sessions)
            session_id, status, meter_stop = sessions[0]
            assert (status, float(meter_stop)) == ("completed", 3000.0)
            samples = _rows(
                run,
                "SELECT COUNT(*) FROM charging_metersample WHERE session_id = ?",
                [session_id],
            )[0][0]
            # Each acknowledged MeterValues once (the start and stop values may add more).
            register = _rows(
                run,
                "SELECT COUNT(*) FROM charging_metersample WHERE session_id = ?"
                " AND context NOT IN ('Transaction.Begin', 'Transaction.End')",
                [session_id],
            )[0][0]
            assert register == acknowledged_samples[identity] == 2, (identity, samples)
        output = run.output()
        assert f"daphne {killed}" in output
        assert "exited with code -9" in output
    assert run.process.returncode == 0
    time.sleep(0.5)
    assert _children_of_data_dir(run.data_dir) == []

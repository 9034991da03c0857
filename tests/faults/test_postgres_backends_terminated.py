"""PostgreSQL backends terminated under daphne (PostgreSQL only; skipped on SQLite).

Chargers (1.6 and 2.0.1) run a session each, sending their transaction messages as fast as
they are answered, while for 3 s (FAULT_PG_SECONDS), every 0.1 s, `pg_terminate_backend` ends
every PostgreSQL backend that serves the daphne process (found by the client ports of
daphne's own TCP connections to the server). A charger sends a message again after a
CALLERROR or a lost connection (no answer within 10 s), as OCPP requires for transaction
messages; in the end every message must be acknowledged and stored exactly once.

Measured (printed): daphne's psycopg pool checks each connection it hands out and, when the
check fails, sleeps with exponential back-off before the next try (psycopg_pool 3.3); with
every database call on a few executor threads, the whole node stops answering for seconds
after such an episode, so some chargers time out and reconnect. While terminations go on
without end the node answers nothing at all.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import threading
import time

import psutil
import pytest
from django.db import connection

from tests.faults.conftest import Charger, Session, fresh_daphne, in_thread, make_stations

pytestmark = [pytest.mark.fault, pytest.mark.live, pytest.mark.django_db(transaction=True)]

STATIONS = 8  # half 1.6, half 2.0.1
METERS = 40
# Seconds of terminations (FAULT_PG_SECONDS): one episode, as a failover or a restart of the
# server would be, after which the chargers must get everything acknowledged.
EPISODE = float(os.environ.get("FAULT_PG_SECONDS", "3"))


def backend_ports(pid: int, db_port: int) -> list[int]:
    """The local ports of the process's TCP connections to PostgreSQL."""
    return [
        c.laddr.port
        for c in psutil.Process(pid).net_connections(kind="tcp")
        if c.raddr and c.raddr.port == db_port and c.status == psutil.CONN_ESTABLISHED
    ]


class Terminator(threading.Thread):
    """Ends the daphne's backends every `interval` seconds until stopped."""

    def __init__(self, pid: int, interval: float = 0.1, duration: float = EPISODE):
        super().__init__(daemon=True)
        self.pid = pid
        self.interval = interval
        self.done = threading.Event()
        self.duration = duration
        self.terminated = 0
        self.rounds = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        from django.db import connections

        try:
            db = connections["default"]
            port = int(db.settings_dict.get("PORT") or 5432)
            until = time.monotonic() + self.duration
            while not self.done.wait(self.interval) and time.monotonic() < until:
                ports = backend_ports(self.pid, port)
                self.rounds += 1
                if not ports:
                    continue
                with db.cursor() as cursor:
                    cursor.execute(
                        "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) "
                        "FROM pg_stat_activity "
                        "WHERE datname = current_database() AND client_port = ANY(%s) "
                        "AND pid <> pg_backend_pid()",
                        [ports],
                    )
                    self.terminated += cursor.fetchone()[0]
        except BaseException as error:  # reported by the test  # noqa: BLE001
            self.error = error
        finally:
            connections.close_all()


async def test_postgres_backends_of_daphne_terminated_while_stations_send_transactions(
    transactional_db,  # noqa: ARG001
):
    if connection.vendor != "postgresql":
        pytest.skip("pg_terminate_backend needs PostgreSQL (DATABASE_URL=postgres://...)")
    from django.utils import timezone

    rows = await make_stations("PGKILL", STATIONS, ("ocpp1.6", "ocpp2.0.1"))
    server = fresh_daphne("fault-pg")
    start = timezone.now().replace(microsecond=0) - dt.timedelta(hours=1)
    chargers = [Charger(server.ws_url, row.identity, row.protocol) for row in rows]
    sessions = [Session(c, start, METERS) for c in chargers]
    terminator = Terminator(server.process.pid)
    try:
        await asyncio.gather(*(c.connect() for c in chargers))
        terminator.start()
        await asyncio.wait_for(asyncio.gather(*(s.run() for s in sessions)), 120)
    finally:
        terminator.done.set()
        terminator.join(10)
        await asyncio.gather(*(c.close() for c in chargers), return_exceptions=True)
        server.stop()
    assert terminator.error is None, terminator.error
    errors = [e for c in chargers for e in c.call_errors]
    lost = sum(c.lost_connections for c in chargers)
    print(
        f"{terminator.terminated} backends terminated in {terminator.rounds} rounds; "
        f"{sum(s.acknowledged for s in sessions)} messages acknowledged after "
        f"{len(errors)} CALLERRORs and {lost} lost connections; {errors[:3]}"
    )
    assert terminator.terminated > 0
    # A CALLERROR is an InternalError of the CSMS, never a verdict on the message.
    assert all(": InternalError " in e for e in errors), errors
    for session in sessions:
        stored = await in_thread(session.stored)()
        assert stored["sessions"] == 1, (session.charger.identity, stored)
        assert stored["status"] == "completed", stored
        assert stored["periodic"] == METERS, stored
        if session.charger.protocol == "ocpp2.0.1":
            assert stored["events"] == list(range(METERS + 2)), stored

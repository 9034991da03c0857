"""The ceiling: a central system built from the `ocpp` library and `websockets` alone.

It answers the same messages as the back office, validates every frame inline against the
official schemas (as the back office does), and stores nothing. What it costs per message is
the floor under any CSMS written on this stack: the benchmark reports ours as a ratio of it.

    python -m cpo.tools.bench.ceiling --port 9001
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import signal
from datetime import UTC, datetime
from typing import Any

import ocpp.messages
import websockets
from ocpp.routing import on
from ocpp.v16 import ChargePoint as ChargePoint16
from ocpp.v16 import call_result as result16
from ocpp.v201 import ChargePoint as ChargePoint201
from ocpp.v201 import call_result as result201

from cpo.tools.simulator import raise_open_files_limit

# Inline validation: the library's default thread-pool validation collapses under load.
ocpp.messages.ASYNC_VALIDATION = False

_transaction_ids = itertools.count(1)
ACCEPTED = {"status": "Accepted"}


def _now() -> str:
    return datetime.now(UTC).isoformat().replace("+00:00", "Z")


class Ceiling16(ChargePoint16):
    @on("BootNotification")
    def on_boot(self, **_: Any) -> result16.BootNotification:
        return result16.BootNotification(current_time=_now(), interval=300, status="Accepted")

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> result16.Heartbeat:
        return result16.Heartbeat(current_time=_now())

    @on("StatusNotification")
    def on_status(self, **_: Any) -> result16.StatusNotification:
        return result16.StatusNotification()

    @on("Authorize")
    def on_authorize(self, **_: Any) -> result16.Authorize:
        return result16.Authorize(id_tag_info=ACCEPTED)

    @on("StartTransaction")
    def on_start(self, **_: Any) -> result16.StartTransaction:
        return result16.StartTransaction(
            transaction_id=next(_transaction_ids), id_tag_info=ACCEPTED
        )

    @on("StopTransaction")
    def on_stop(self, **_: Any) -> result16.StopTransaction:
        return result16.StopTransaction(id_tag_info=ACCEPTED)

    @on("MeterValues")
    def on_meter_values(self, **_: Any) -> result16.MeterValues:
        return result16.MeterValues()


class Ceiling201(ChargePoint201):
    @on("BootNotification")
    def on_boot(self, **_: Any) -> result201.BootNotification:
        return result201.BootNotification(current_time=_now(), interval=300, status="Accepted")

    @on("Heartbeat")
    def on_heartbeat(self, **_: Any) -> result201.Heartbeat:
        return result201.Heartbeat(current_time=_now())

    @on("StatusNotification")
    def on_status(self, **_: Any) -> result201.StatusNotification:
        return result201.StatusNotification()

    @on("Authorize")
    def on_authorize(self, **_: Any) -> result201.Authorize:
        return result201.Authorize(id_token_info=ACCEPTED)

    @on("TransactionEvent")
    def on_transaction_event(self, id_token: Any = None, **_: Any) -> result201.TransactionEvent:
        return result201.TransactionEvent(id_token_info=ACCEPTED if id_token else None)

    @on("MeterValues")
    def on_meter_values(self, **_: Any) -> result201.MeterValues:
        return result201.MeterValues()


async def _serve_connection(connection: Any) -> None:
    identity = connection.request.path.rstrip("/").rsplit("/", 1)[-1]
    cls = Ceiling16 if connection.subprotocol == "ocpp1.6" else Ceiling201
    point = cls(identity, connection)
    with contextlib.suppress(websockets.ConnectionClosed):
        await point.start()


async def serve(host: str, port: int) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with websockets.serve(
        _serve_connection,
        host,
        port,
        subprotocols=[websockets.Subprotocol("ocpp2.0.1"), websockets.Subprotocol("ocpp1.6")],
        # As the back office: a storm must not meet a backlog of 100.
        backlog=4096,
        compression=None,
        max_size=2**20,
    ):
        print(f"ceiling listening on {host}:{port}", flush=True)
        await stop


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9001)
    args = parser.parse_args()
    raise_open_files_limit()
    asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()

"""A real HTTP receiver on loopback for the outbox's deliveries, and a worker tuned to retry
within a test's patience."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from tests.conftest import CeleryWorker, free_port, start_celery_worker

# Back-off in tenths of seconds, three attempts, a two-second lease: what the worker and the
# test process both use here.
FAST = {
    "OUTBOX_RETRY_BASE_SECONDS": "0.2",
    "OUTBOX_RETRY_MAX_SECONDS": "1",
    "OUTBOX_MAX_ATTEMPTS": "3",
    "OUTBOX_LEASE_SECONDS": "2",
    "OUTBOX_HTTP_TIMEOUT_SECONDS": "5",
}


@dataclass
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def event(self) -> dict[str, Any]:
        return json.loads(self.body)


@dataclass
class Receiver:
    """Records every request; answers with the queued statuses, then 200. `hold` makes the
    next request wait until released (a delivery caught mid-way)."""

    port: int
    requests: list[Received] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    hold: threading.Event | None = None
    holding: threading.Event = field(default_factory=threading.Event)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks"

    def answer_with(self, *statuses: int) -> None:
        with self.lock:
            self.statuses.extend(statuses)

    def wait_for(
        self, count: int, timeout: float = 30.0, where: Callable[[Received], bool] | None = None
    ) -> list[Received]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                got = [r for r in self.requests if where is None or where(r)]
            if len(got) >= count:
                return got
            assert time.monotonic() < deadline, f"{len(got)} of {count} requests: {got}"
            time.sleep(0.05)


def _handler(receiver: Receiver) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - http.server's naming
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            hold = receiver.hold
            if hold is not None:
                receiver.hold = None
                receiver.holding.set()
                hold.wait(30)
            with receiver.lock:
                status = receiver.statuses.pop(0) if receiver.statuses else 200
                # Header names are case-insensitive (urllib sends "X-cpo-signature").
                headers = {name.lower(): value for name, value in self.headers.items()}
                receiver.requests.append(Received(self.path, headers, body, status))
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"ok" if status < 300 else b"try again")

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
            return

    return Handler


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    port = free_port()
    state = Receiver(port)
    server = ThreadingHTTPServer(("127.0.0.1", port), _handler(state))
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    if state.hold is not None:
        state.hold.set()
    server.shutdown()
    server.server_close()


@pytest.fixture
def fast_outbox(settings: Any) -> None:
    """The test process's outbox settings, the same as the worker's."""
    settings.OUTBOX_RETRY_BASE_SECONDS = float(FAST["OUTBOX_RETRY_BASE_SECONDS"])
    settings.OUTBOX_RETRY_MAX_SECONDS = float(FAST["OUTBOX_RETRY_MAX_SECONDS"])
    settings.OUTBOX_MAX_ATTEMPTS = int(FAST["OUTBOX_MAX_ATTEMPTS"])
    settings.OUTBOX_LEASE_SECONDS = int(FAST["OUTBOX_LEASE_SECONDS"])
    settings.OUTBOX_HTTP_TIMEOUT_SECONDS = float(FAST["OUTBOX_HTTP_TIMEOUT_SECONDS"])


@pytest.fixture
def outbox_worker(transactional_db: None, fast_outbox: None) -> Iterator[CeleryWorker]:  # noqa: ARG001
    """A real Celery worker process with the fast retry settings."""
    from cpo.celery import app

    app.control.purge()
    worker = start_celery_worker("outbox", **FAST)
    yield worker
    worker.stop()

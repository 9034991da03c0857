"""Helpers of the monitoring tests: stations, a detector pass and the incidents it leaves; a
real SMTP server on loopback and a worker that sends the alert e-mails to it."""

from __future__ import annotations

import asyncio
import email
import email.message
import email.policy
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from asgiref.sync import sync_to_async
from ocpp.v16 import call

from stations.monitoring import signals
from tests.conftest import CeleryWorker, free_port, start_celery_worker
from tests.cpo.outbox.conftest import FAST
from tests.cpo.outbox.conftest import fast_outbox as fast_outbox  # a fixture used here


@sync_to_async
def make_station(identity: str, *, protocol: str = "ocpp1.6", **fields: Any) -> Any:
    from stations.models import ChargingStation

    return ChargingStation.objects.create(identity=identity, protocol=protocol, **fields)


@sync_to_async
def detect() -> dict[str, Any]:
    """One detector pass, as the beat task runs it (in the test process, on the test DB)."""
    from stations.monitoring.detectors import detectors_run

    return detectors_run()


@sync_to_async
def remediate() -> int:
    from stations.monitoring.playbooks import playbooks_run

    return playbooks_run()


@sync_to_async
def incidents(identity: str, type_: str | None = None) -> list[Any]:
    from stations.monitoring.models import Incident

    rows = Incident.objects.filter(station__identity=identity).order_by("pk")
    if type_:
        rows = rows.filter(type=type_)
    return list(rows)


@sync_to_async
def timeline(incident_id: int) -> list[tuple[str, str, str]]:
    from stations.monitoring.models import IncidentEntry

    return list(
        IncidentEntry.objects.filter(incident_id=incident_id)
        .order_by("at", "pk")
        .values_list("kind", "step", "message")
    )


async def boot16(cp: Any) -> None:
    response = await cp.cp.call(
        call.BootNotification(charge_point_vendor="ACME", charge_point_model="Wallbox 22")
    )
    assert response.status == "Accepted"


async def status16(cp: Any, status: str, connector: int = 1, **extra: Any) -> None:
    await cp.cp.call(
        call.StatusNotification(
            connector_id=connector,
            error_code=extra.pop("error_code", "NoError"),
            status=status,
            **extra,
        )
    )


@pytest.fixture
def announced() -> Any:
    """What the incident port announced: (signal name, incident id, type)."""
    heard: list[tuple[str, int, str]] = []

    def opened(sender: Any, incident_id: int, type: str, **kwargs: Any) -> None:  # noqa: A002
        heard.append(("opened", incident_id, type))

    def resolved(sender: Any, incident_id: int, type: str, **kwargs: Any) -> None:  # noqa: A002
        heard.append(("resolved", incident_id, type))

    signals.incident_opened.connect(opened, dispatch_uid="test.opened")
    signals.incident_resolved.connect(resolved, dispatch_uid="test.resolved")
    yield heard
    signals.incident_opened.disconnect(dispatch_uid="test.opened")
    signals.incident_resolved.disconnect(dispatch_uid="test.resolved")


class SmtpServer:
    """An aiosmtpd server on a loopback port that keeps every message it accepts; `stop` and
    `start` take it down and bring it back on the same port (a mail server that was away)."""

    def __init__(self, port: int):
        self.port = port
        self.messages: list[email.message.EmailMessage] = []
        self.lock = threading.Lock()
        self.controller: Controller | None = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        message = email.message_from_bytes(envelope.content, policy=email.policy.default)
        with self.lock:
            self.messages.append(message)
        return "250 Message accepted for delivery"

    def start(self) -> None:
        self.controller = Controller(self, hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None

    async def wait_for(self, count: int, timeout: float = 30.0) -> list[email.message.EmailMessage]:
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                got = list(self.messages)
            if len(got) >= count:
                return got
            assert time.monotonic() < deadline, f"{len(got)} of {count} e-mails: {got}"
            await asyncio.sleep(0.05)


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    server = SmtpServer(free_port())
    server.start()
    yield server
    server.stop()


def start_alert_worker(smtp: SmtpServer, **extra: str) -> CeleryWorker:
    """A real Celery worker whose mail goes to `smtp`, with the outbox's fast retries."""
    from cpo.celery import app

    app.control.purge()
    env = {
        **FAST,
        "EMAIL_HOST": "127.0.0.1",
        "EMAIL_PORT": str(smtp.port),
        "EMAIL_TIMEOUT": "5",
        "DEFAULT_FROM_EMAIL": "alerts@cpo.test",
        **extra,
    }
    return start_celery_worker("alerts", **env)


@pytest.fixture
def alert_worker(
    transactional_db: None,  # noqa: ARG001
    fast_outbox: None,  # noqa: ARG001
    smtp_server: SmtpServer,
) -> Any:
    worker = start_alert_worker(smtp_server)
    yield worker
    worker.stop()

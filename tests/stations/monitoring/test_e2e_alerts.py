"""Alert e-mails end to end: a real OCPP station on a real daphne reports a fault, the
monitoring pass opens the incident, a real Celery worker delivers the outbox's e-mail to a real
SMTP server on loopback; the station's recovery resolves it and the resolved e-mail arrives in
the same thread. A mail server that is down delays the e-mail, never the detection."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async

from cpo.outbox.models import DeliveryAttempt, OutboxMessage
from stations.models import Location
from stations.monitoring.models import AlertRule, Incident, IncidentType
from tests.ocpp_client import station
from tests.stations.monitoring.conftest import (
    boot16,
    detect,
    incidents,
    make_station,
    start_alert_worker,
    status16,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]


@sync_to_async
def _rule(**fields) -> AlertRule:
    return AlertRule.objects.create(name="on call", **fields)


@sync_to_async
def _site(name: str) -> Location:
    return Location.objects.create(name=name, time_zone="Europe/Amsterdam")


@sync_to_async
def _email_rows() -> list[OutboxMessage]:
    return list(OutboxMessage.objects.filter(destination_kind="email").order_by("pk"))


@sync_to_async
def _attempts(message_id: int) -> list[bool]:
    return list(
        DeliveryAttempt.objects.filter(message_id=message_id)
        .order_by("number", "pk")
        .values_list("succeeded", flat=True)
    )


def _text(message) -> str:
    return message.get_body(preferencelist=("plain",)).get_content()


async def test_a_fault_mails_the_rule_and_its_recovery_answers_in_the_thread(
    daphne_server, settings, smtp_server, alert_worker
) -> None:
    settings.MONITORING_FAULTED_MINUTES = 0
    site = await _site("Depot North")
    await _rule(recipients="oncall@example.com, lead@example.com", location=site)
    await make_station("ALERT-E2E-1", location=site)
    async with station(daphne_server.ws_url, "ALERT-E2E-1") as cp:
        await boot16(cp)
        await status16(
            cp,
            "Faulted",
            connector=2,
            error_code="GroundFailure",
            info="RCD tripped",
            vendor_id="ACME",
            vendor_error_code="E-042",
        )
        await detect()
        [opened] = await smtp_server.wait_for(1)
        [incident] = await incidents("ALERT-E2E-1")
        assert incident.type == IncidentType.CONNECTOR_FAULTED

        assert opened["To"] == "oncall@example.com, lead@example.com"
        assert opened["From"] == "alerts@cpo.test"  # the worker's DEFAULT_FROM_EMAIL
        assert "ALERT-E2E-1" in opened["Subject"]
        assert "E-042" in opened["Subject"]
        body = _text(opened)
        assert "Station: ALERT-E2E-1 (ACME)" in body
        assert "Site: Depot North" in body
        # 1.6 connector 2 is EVSE 2's connector 1 (stations/ocpp/v16/addressing.py).
        assert "EVSE: 2\r\nConnector: 1\r\n" in body
        assert "vendor_error_code: E-042" in body
        assert "error_code: GroundFailure" in body
        assert "info: RCD tripped" in body

        await status16(cp, "Available", connector=2)
        await detect()
        _, resolved = await smtp_server.wait_for(2)
    assert resolved["Subject"] == f"Resolved: {opened['Subject']}"
    assert resolved["In-Reply-To"] == opened["Message-ID"]
    assert resolved["References"] == opened["Message-ID"]
    assert f"Incident #{incident.pk} resolved" in _text(resolved)
    rows = await _email_rows()
    assert [row.status for row in rows] == [OutboxMessage.Status.DELIVERED] * 2


async def test_a_rule_of_another_site_or_a_higher_severity_sends_nothing(
    daphne_server, settings, smtp_server, alert_worker
) -> None:
    settings.MONITORING_FAULTED_MINUTES = 0
    here, elsewhere = await _site("Here"), await _site("Elsewhere")
    await _rule(recipients="elsewhere@example.com", location=elsewhere)
    await _rule(recipients="critical@example.com", min_severity=Incident.Severity.CRITICAL)
    await _rule(recipients="here@example.com", location=here)
    await make_station("ALERT-E2E-2", location=here)
    async with station(daphne_server.ws_url, "ALERT-E2E-2") as cp:
        await boot16(cp)
        await status16(cp, "Faulted", error_code="ConnectorLockFailure")
        await detect()
        [mail] = await smtp_server.wait_for(1)
    assert mail["To"] == "here@example.com"
    await asyncio.sleep(1)  # what else the worker had to send would have arrived by now
    assert len(smtp_server.messages) == 1


async def test_the_mail_server_down_delays_the_mail_never_the_detection(
    daphne_server, settings, smtp_server, transactional_db, fast_outbox
) -> None:
    settings.MONITORING_FAULTED_MINUTES = 0
    smtp_server.stop()  # down before anything is sent; back on the same port later
    # Enough attempts for the outage (the fast back-off is 0.2 s, at most 1 s).
    worker = start_alert_worker(smtp_server, OUTBOX_MAX_ATTEMPTS="50")
    try:
        await _rule(recipients="oncall@example.com")
        await make_station("ALERT-E2E-3")
        async with station(daphne_server.ws_url, "ALERT-E2E-3") as cp:
            await boot16(cp)
            await status16(cp, "Faulted", error_code="GroundFailure", vendor_error_code="E-7")
            await detect()
            [incident] = await incidents("ALERT-E2E-3")
            assert incident.state == Incident.State.OPEN

            deadline = time.monotonic() + 30
            while True:
                [row] = await _email_rows()
                if row.attempts >= 2 and row.status == OutboxMessage.Status.PENDING:
                    break
                assert time.monotonic() < deadline, (row.status, row.attempts)
                await asyncio.sleep(0.1)
            assert row.last_error  # the refused connection, kept on the message
            # Detection goes on while the mail waits: the recovery resolves the incident.
            await status16(cp, "Available")
            await detect()
            [incident] = await incidents("ALERT-E2E-3")
            assert incident.state == Incident.State.RESOLVED
            assert smtp_server.messages == []

            smtp_server.start()
            opened, resolved = await smtp_server.wait_for(2, timeout=30)
    finally:
        worker.stop()
    assert "E-7" in opened["Subject"]
    assert resolved["In-Reply-To"] == opened["Message-ID"]
    first, second = await _email_rows()
    assert (first.status, second.status) == (OutboxMessage.Status.DELIVERED,) * 2
    tries = await _attempts(first.pk)
    assert tries[-1] is True
    assert tries[:-1]
    assert not any(tries[:-1])  # failed while down, then delivered

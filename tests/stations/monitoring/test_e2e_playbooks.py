"""Playbooks end to end: the steps reach a real station over its websocket through the
durable command queue, are logged on the incident, and stop at the hard limits."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async

from stations.commands.models import Command
from stations.monitoring.models import Incident, IncidentType, Playbook
from tests.ocpp_client import station
from tests.stations.conftest import until_final
from tests.stations.monitoring.conftest import (
    boot16,
    detect,
    incidents,
    make_station,
    remediate,
    status16,
    timeline,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]


@sync_to_async
def _playbook(steps: list[str], **fields: Any) -> Playbook:
    return Playbook.objects.create(
        incident_type=IncidentType.CONNECTOR_FAULTED, enabled=True, steps=steps, **fields
    )


@sync_to_async
def _commands(identity: str) -> list[Command]:
    return list(Command.objects.filter(station__identity=identity).order_by("pk"))


def _calls(cp: Any, action: str) -> list[dict[str, Any]]:
    return [payload for name, payload in cp.cp.received_calls if name == action]


async def test_faulted_connector_gets_an_availability_cycle_then_resolves(daphne_server, settings):
    settings.MONITORING_FAULTED_MINUTES = 0
    settings.MONITORING_BACKOFF_MIN_SECONDS = 1
    await _playbook(["availability_cycle", "soft_reset"], backoff_seconds=1)
    await make_station("MON-PB-1")
    async with station(daphne_server.ws_url, "MON-PB-1") as cp:
        await boot16(cp)
        await status16(cp, "Faulted", error_code="OtherError", vendor_error_code="0x17")
        await detect()
        assert await remediate() == 1
        inoperative, operative = await _commands("MON-PB-1")
        assert (await until_final(inoperative.pk)).status == Command.Status.ACCEPTED
        assert (await until_final(operative.pk)).status == Command.Status.ACCEPTED
        assert _calls(cp, "ChangeAvailability") == [
            {"connector_id": 1, "type": "Inoperative"},
            {"connector_id": 1, "type": "Operative"},
        ]
        # The cycle cleared the fault: the station says so, and the incident resolves.
        await status16(cp, "Available")
        await detect()
        assert await remediate() == 0  # resolved: no reset follows
    [incident] = await incidents("MON-PB-1")
    assert incident.state == Incident.State.RESOLVED
    entries = await timeline(incident.pk)
    assert [(kind, step) for kind, step, _ in entries] == [
        ("detected", ""),
        ("action_taken", "availability_cycle"),
        ("action_taken", "availability_cycle"),
        ("resolved", ""),
    ]
    assert "Inoperative" in entries[1][2]
    assert _calls(cp, "Reset") == []


@sync_to_async
def _due_now(identity: str) -> None:
    """The back-off of the station's incidents has passed."""
    from django.utils import timezone

    Incident.objects.filter(station__identity=identity).update(playbook_next_at=timezone.now())


async def test_one_automatic_reset_per_station_per_period(daphne_server, settings):
    settings.MONITORING_FAULTED_MINUTES = 0
    settings.MONITORING_BACKOFF_MIN_SECONDS = 1
    await _playbook(["soft_reset"], backoff_seconds=1, reset_period_minutes=60)
    await make_station("MON-PB-2")
    async with station(daphne_server.ws_url, "MON-PB-2") as cp:
        await boot16(cp)
        await status16(cp, "Faulted", connector=1, error_code="OtherError")
        await status16(cp, "Faulted", connector=2, error_code="OtherError")
        await detect()
        first, second = await incidents("MON-PB-2")
        assert await remediate() == 1  # two incidents, one reset
        [reset] = await _commands("MON-PB-2")
        assert (await until_final(reset.pk)).status == Command.Status.ACCEPTED
        assert _calls(cp, "Reset") == [{"type": "Soft"}]

        # A new fault after the first cleared: still inside the period, no second reset.
        await status16(cp, "Available", connector=1)
        await detect()
        await status16(cp, "Faulted", connector=1, error_code="OtherError")
        await detect()
        await _due_now("MON-PB-2")
        await remediate()
        assert len(await _commands("MON-PB-2")) == 1
        assert _calls(cp, "Reset") == [{"type": "Soft"}]
    skipped = [e for e in await timeline(second.pk) if e[0] == "action_skipped"]
    assert len(skipped) == 1
    assert "at most one automatic reset per 60 min" in skipped[0][2]
    third = (await incidents("MON-PB-2"))[-1]
    assert third.pk not in (first.pk, second.pk)
    assert [e[0] for e in await timeline(third.pk)] == ["detected", "action_skipped"]


@sync_to_async
def _stuck_session(identity: str) -> int:
    """The station's session, as if its last meter value was two hours ago."""
    from datetime import timedelta

    from django.utils import timezone

    from sessions.models import ChargingSession

    earlier = timezone.now() - timedelta(hours=2)
    session = ChargingSession.objects.get(station__identity=identity)
    ChargingSession.objects.filter(pk=session.pk).update(
        started_at=earlier, meter_last_at=earlier, updated_at=earlier
    )
    return session.pk


@sync_to_async
def _session(pk: int) -> Any:
    from sessions.models import ChargingSession

    return ChargingSession.objects.get(pk=pk)


async def test_stuck_transaction_is_asked_stopped_then_closed_on_an_estimate(
    daphne_server, settings
):
    from django.utils import timezone
    from ocpp.v16 import call

    from sessions.models import IdToken

    settings.MONITORING_STUCK_TRANSACTION_MINUTES = 30
    settings.MONITORING_BACKOFF_MIN_SECONDS = 1
    await sync_to_async(Playbook.objects.create)(
        incident_type=IncidentType.STUCK_TRANSACTION,
        enabled=True,
        steps=["transaction_status", "remote_stop", "close_estimated"],
        backoff_seconds=1,
    )
    await make_station("MON-PB-TX")
    await sync_to_async(IdToken.objects.create)(uid="MON-TX-TAG")
    async with station(daphne_server.ws_url, "MON-PB-TX") as cp:
        # A station that accepts the remote stop but never sends its StopTransaction.
        await boot16(cp)
        await status16(cp, "Charging")
        started = await cp.cp.call(
            call.StartTransaction(
                connector_id=1,
                id_tag="MON-TX-TAG",
                meter_start=1000,
                timestamp=timezone.now().isoformat(),
            )
        )
        session_id = await _stuck_session("MON-PB-TX")
        await detect()
        [incident] = await incidents("MON-PB-TX")
        assert incident.type == IncidentType.STUCK_TRANSACTION
        for _ in range(3):
            await _due_now("MON-PB-TX")
            await remediate()
            for command in await _commands("MON-PB-TX"):
                await until_final(command.pk)
        assert _calls(cp, "TriggerMessage") == [
            {"requested_message": "MeterValues", "connector_id": 1}
        ]
        assert _calls(cp, "RemoteStopTransaction") == [{"transaction_id": started.transaction_id}]
        session = await _session(session_id)
        assert session.status == "completed"
        assert session.is_estimated
        assert session.stop_reason == "EstimatedStuck"
        await detect()
    [incident] = await incidents("MON-PB-TX")
    assert incident.state == Incident.State.RESOLVED
    steps = [step for kind, step, _ in await timeline(incident.pk) if kind == "action_taken"]
    assert steps == ["transaction_status", "remote_stop", "close_estimated"]

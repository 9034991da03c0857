"""The playbook after an offline station reconnects, end to end: every connector is asked for
its status and every open session is reconciled through the command queue over the station's
real websocket; sessions the station no longer has are closed on their last meter value,
flagged estimated; every step is on the incident's timeline."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from ocpp.v16 import call
from ocpp.v201 import call as call201

from stations.commands.models import Command
from stations.monitoring.models import Incident, IncidentType, Playbook
from tests.ocpp_client import station
from tests.stations.conftest import until, until_final
from tests.stations.monitoring.conftest import (
    boot16,
    detect,
    make_station,
    remediate,
    status16,
    timeline,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

STEPS = ["reconnect_status", "reconnect_sessions"]


@sync_to_async
def _playbook() -> Playbook:
    return Playbook.objects.create(
        incident_type=IncidentType.STATION_OFFLINE, enabled=True, steps=STEPS, backoff_seconds=30
    )


@sync_to_async
def _offline(identity: str) -> Incident:
    """The incident the offline detector left while the station was away (its probe failed)."""
    from stations.models import ChargingStation
    from stations.monitoring.services import incident_open_or_touch

    cs = ChargingStation.objects.get(identity=identity)
    ChargingStation.objects.filter(pk=cs.pk).update(
        is_online=False, last_seen_at=timezone.now() - timedelta(hours=1)
    )
    incident, opened = incident_open_or_touch(
        type=IncidentType.STATION_OFFLINE,
        fingerprint=f"{IncidentType.STATION_OFFLINE}:{cs.pk}",
        station_id=cs.pk,
        severity=Incident.Severity.CRITICAL,
        title=f"{identity} offline",
    )
    assert opened
    return incident


@sync_to_async
def _due_now(incident_id: int) -> None:
    Incident.objects.filter(pk=incident_id).update(playbook_next_at=timezone.now())


@sync_to_async
def _commands(identity: str) -> list[Command]:
    return list(Command.objects.filter(station__identity=identity).order_by("pk"))


@sync_to_async
def _session(identity: str) -> Any:
    from sessions.models import ChargingSession

    return ChargingSession.objects.get(station__identity=identity)


@sync_to_async
def _token(uid: str) -> None:
    from sessions.models import IdToken

    IdToken.objects.get_or_create(uid=uid)


@sync_to_async
def _incident(pk: int) -> Incident:
    return Incident.objects.get(pk=pk)


def _calls(cp: Any, action: str) -> list[dict[str, Any]]:
    return [payload for name, payload in cp.cp.received_calls if name == action]


async def test_after_a_1_6_station_reconnects_its_connectors_and_sessions_are_reconciled(
    daphne_server,
):
    await _playbook()
    await make_station("MON-RC-1")
    await _token("MON-RC-TAG")
    async with station(daphne_server.ws_url, "MON-RC-1") as cp:
        await boot16(cp)
        await status16(cp, "Charging", connector=1)
        await status16(cp, "Available", connector=2)
        started = await cp.cp.call(
            call.StartTransaction(
                connector_id=1,
                id_tag="MON-RC-TAG",
                meter_start=1000,
                timestamp=timezone.now().isoformat(),
            )
        )
        assert started.id_tag_info["status"] == "Accepted"
        await cp.cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=started.transaction_id,
                meter_value=[
                    {
                        "timestamp": timezone.now().isoformat(),
                        "sampledValue": [{"value": "1800"}],
                    }
                ],
            )
        )
    offline = await _offline("MON-RC-1")
    assert await remediate() == 0  # still away: the reconciliation waits for it

    # Back, without a reboot (a boot would have closed its sessions by itself).
    async with station(daphne_server.ws_url, "MON-RC-1") as cp:
        await cp.cp.call(call.Heartbeat())
        await detect()
        assert (await _incident(offline.pk)).state == Incident.State.RESOLVED

        assert await remediate() == 1
        triggers = await _commands("MON-RC-1")
        assert [c.payload for c in triggers] == [
            {"requestedMessage": "StatusNotification", "connectorId": 1},
            {"requestedMessage": "StatusNotification", "connectorId": 2},
        ]
        for command in triggers:
            assert (await until_final(command.pk)).status == Command.Status.ACCEPTED
        assert len(_calls(cp, "TriggerMessage")) == 2
        # What the station then reports: connector 1 is Available, the session is gone.
        await status16(cp, "Available", connector=1)
        await status16(cp, "Available", connector=2)
        session = await _session("MON-RC-1")
        assert session.status == "completed"
        assert session.is_estimated
        assert session.meter_stop_wh == 1800

        assert await remediate() == 0  # inside the back-off: nothing
        await _due_now(offline.pk)
        assert await remediate() == 0  # no session left to ask for: skipped, logged
        await _due_now(offline.pk)
        await remediate()
    entries = await timeline(offline.pk)
    assert [(kind, step) for kind, step, _ in entries] == [
        ("detected", ""),
        ("resolved", ""),
        ("action_taken", "reconnect_status"),
        ("action_taken", "reconnect_status"),
        ("action_result", ""),
        ("action_skipped", "reconnect_sessions"),
    ]
    assert "nothing to reconcile" in entries[-1][2]
    assert (await _incident(offline.pk)).playbook_state == Incident.PlaybookState.DONE


def ts(at: datetime) -> str:
    return at.isoformat().replace("+00:00", "Z")


async def test_after_a_2_0_1_station_reconnects_a_forgotten_transaction_is_closed_estimated(
    daphne_server,
):
    await _playbook()
    await make_station("MON-RC-2", protocol="ocpp2.0.1")
    await _token("AABBCC01")
    start = datetime.now(UTC) - timedelta(minutes=30)
    async with station(daphne_server.ws_url, "MON-RC-2", protocol="ocpp2.0.1") as cp:
        await cp.cp.call(
            call201.BootNotification(
                charging_station={"model": "DC-150", "vendor_name": "ACME"}, reason="PowerUp"
            )
        )
        await cp.cp.call(
            call201.StatusNotification(
                timestamp=ts(start), connector_status="Occupied", evse_id=1, connector_id=1
            )
        )
        await cp.cp.call(
            call201.TransactionEvent(
                event_type="Started",
                timestamp=ts(start),
                trigger_reason="Authorized",
                seq_no=0,
                transaction_info={"transaction_id": "TX-RC-2", "charging_state": "Charging"},
                id_token={"id_token": "AABBCC01", "type": "ISO14443"},
                evse={"id": 1, "connector_id": 1},
                meter_value=[
                    {
                        "timestamp": ts(start),
                        "sampled_value": [{"value": 5000, "context": "Transaction.Begin"}],
                    }
                ],
            )
        )
    offline = await _offline("MON-RC-2")
    async with station(daphne_server.ws_url, "MON-RC-2", protocol="ocpp2.0.1") as cp:
        await cp.cp.call(call201.Heartbeat())
        await detect()
        assert (await _incident(offline.pk)).state == Incident.State.RESOLVED
        assert await remediate() == 1  # the connectors' status
        [trigger] = await _commands("MON-RC-2")
        assert trigger.payload == {
            "requestedMessage": "StatusNotification",
            "evse": {"id": 1, "connectorId": 1},
        }
        assert (await until_final(trigger.pk)).status == Command.Status.ACCEPTED
        await _due_now(offline.pk)
        assert await remediate() == 1  # the open session: GetTransactionStatus
        asked = (await _commands("MON-RC-2"))[-1]
        assert asked.action == "GetTransactionStatus"
        assert asked.payload == {"transactionId": "TX-RC-2"}
        assert (await until_final(asked.pk)).status == Command.Status.ACCEPTED
        # The station knows no such transaction and has nothing queued: closed, estimated.
        await until(lambda: _closed("MON-RC-2"))
    session = await _session("MON-RC-2")
    assert session.is_estimated
    assert session.meter_stop_wh == 5000
    steps = [step for kind, step, _ in await timeline(offline.pk) if kind == "action_taken"]
    assert steps == ["reconnect_status", "reconnect_sessions"]


def _closed(identity: str) -> bool:
    from sessions.models import ChargingSession

    return ChargingSession.objects.filter(
        station__identity=identity, status=ChargingSession.Status.COMPLETED
    ).exists()

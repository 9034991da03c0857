"""The connectivity, NotifyEvent and fleet detectors end to end, and the reconnect-flood
protection at the handshake: real daphne on loopback, real OCPP charge points, a detector
pass (the beat task's code) in the test process."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.utils import timezone
from ocpp.v16 import call
from ocpp.v16 import call_result as result16
from ocpp.v201 import call as call201

from stations.commands.models import Command
from stations.monitoring.models import (
    FirmwareTarget,
    Incident,
    IncidentType,
    MonitoringThresholds,
    ReconnectCooldown,
)
from tests.conftest import DaphneServer, start_daphne
from tests.ocpp_client import station
from tests.stations.conftest import acreate, until_final
from tests.stations.monitoring.conftest import boot16, detect, incidents, make_station, timeline

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]


@pytest.fixture(scope="module")
def fleet_daphne(django_db_setup, django_db_blocker) -> Iterator[DaphneServer]:  # noqa: ARG001
    """A daphne that records every frame's liveness at once (the default: every 30 s)."""
    server = start_daphne("node-fleet", OCPP_LAST_SEEN_WRITE_INTERVAL="0")
    yield server
    server.stop()


def ts(at: datetime | None = None) -> str:
    return (at or datetime.now(UTC)).isoformat().replace("+00:00", "Z")


@sync_to_async
def _age_last_seen(identity: str, seconds: int) -> None:
    from stations.models import ChargingStation

    ChargingStation.objects.filter(identity=identity).update(
        last_seen_at=timezone.now() - timedelta(seconds=seconds)
    )


@sync_to_async
def _fresh(identity: str, seconds: float = 5) -> bool:
    from stations.models import ChargingStation

    return ChargingStation.objects.filter(
        identity=identity, last_seen_at__gte=timezone.now() - timedelta(seconds=seconds)
    ).exists()


async def test_heartbeat_gap_while_connected_opens_and_a_heartbeat_clears_it(
    fleet_daphne, settings
):
    settings.OCPP_LAST_SEEN_WRITE_INTERVAL = 0
    settings.MONITORING_HEARTBEAT_GAP_SECONDS = 30
    await make_station("MON-HB-1", heartbeat_interval=60)
    async with station(fleet_daphne.ws_url, "MON-HB-1") as cp:
        await boot16(cp)
        await detect()
        assert await incidents("MON-HB-1", IncidentType.HEARTBEAT_GAP) == []
        await _age_last_seen("MON-HB-1", 80)  # 60 s interval + 30 s grace not passed yet
        await detect()
        assert await incidents("MON-HB-1", IncidentType.HEARTBEAT_GAP) == []
        await _age_last_seen("MON-HB-1", 120)  # connected, silent for two intervals
        await detect()
        [gap] = await incidents("MON-HB-1", IncidentType.HEARTBEAT_GAP)
        assert gap.state == Incident.State.OPEN
        assert gap.severity == Incident.Severity.WARNING
        assert gap.details["heartbeat_interval"] == 60
        # Not offline: its socket is open and the silence is below the offline minimum.
        assert await incidents("MON-HB-1", IncidentType.STATION_OFFLINE) == []

        await cp.cp.call(call.Heartbeat())
        for _ in range(50):
            if await _fresh("MON-HB-1"):
                break
            await asyncio.sleep(0.1)
        await detect()
    [gap] = await incidents("MON-HB-1", IncidentType.HEARTBEAT_GAP)
    assert gap.state == Incident.State.RESOLVED


@sync_to_async
def _thresholds(**values: int) -> MonitoringThresholds:
    MonitoringThresholds.objects.all().delete()
    return MonitoringThresholds.objects.create(**values)


@sync_to_async
def _cooldowns(identity: str) -> list[ReconnectCooldown]:
    return list(ReconnectCooldown.objects.filter(station__identity=identity).order_by("pk"))


@sync_to_async
def _end_cooldowns(identity: str) -> None:
    ReconnectCooldown.objects.filter(station__identity=identity).update(
        until=timezone.now() - timedelta(seconds=1)
    )


async def _handshake_status(url: str) -> int:
    """101 when the handshake is accepted (then closed at once), else the HTTP status."""
    return (await _handshake(url))[0]


async def _handshake(url: str) -> tuple[int, dict[str, str]]:
    """The handshake's status and, when refused, the answer's headers."""
    try:
        ws = await websockets.connect(
            url, subprotocols=[websockets.Subprotocol("ocpp1.6")], open_timeout=10
        )
    except websockets.exceptions.InvalidStatus as refused:
        headers = refused.response.headers
        return int(refused.response.status_code), {k.lower(): v for k, v in headers.raw_items()}
    await ws.close()
    return 101, {}


async def test_reconnect_flood_is_refused_for_a_cool_down_with_an_incident(fleet_daphne):
    # The thresholds as an operator set them in the panel: daphne (another process) reads them.
    await _thresholds(reconnects_per_hour=3, reconnect_cooldown_minutes=5)
    try:
        await make_station("MON-FLOOD-1")
        url = f"{fleet_daphne.ws_url}/MON-FLOOD-1"
        for _ in range(3):
            assert await _handshake_status(url) == 101
        # The fourth within the hour: refused at the handshake, 429 with the seconds of the
        # cool-down left, and again.
        status, headers = await _handshake(url)
        assert status == 429
        assert 0 < int(headers["retry-after"]) <= 5 * 60
        assert await _handshake_status(url) == 429
        [cooldown] = await _cooldowns("MON-FLOOD-1")
        assert cooldown.connects == 3
        assert cooldown.refused == 2
        assert timedelta(minutes=4) < cooldown.until - cooldown.started_at <= timedelta(minutes=5)
        [incident] = await incidents("MON-FLOOD-1", IncidentType.RECONNECT_REFUSED)
        assert incident.state == Incident.State.OPEN
        assert incident.details["connects"] == 3
        kinds = [kind for kind, _, _ in await timeline(incident.pk)]
        assert kinds == ["detected", "refused"]
        log = fleet_daphne.log.read_text()
        assert "refusing MON-FLOOD-1 for 5 minutes: 3 connections within the hour" in log

        await detect()  # the cool-down lasts: the incident stays open
        [incident] = await incidents("MON-FLOOD-1", IncidentType.RECONNECT_REFUSED)
        assert incident.state == Incident.State.OPEN

        # The cool-down is over: let in again (the connections before it no longer count).
        await _end_cooldowns("MON-FLOOD-1")
        async with station(fleet_daphne.ws_url, "MON-FLOOD-1") as cp:
            await boot16(cp)
        await detect()
        [incident] = await incidents("MON-FLOOD-1", IncidentType.RECONNECT_REFUSED)
        assert incident.state == Incident.State.RESOLVED
    finally:
        await sync_to_async(MonitoringThresholds.objects.all().delete)()


async def test_notify_event_problem_opens_an_incident_and_its_clearing_resolves_it(
    fleet_daphne,
):
    await make_station("MON-EVT-1", protocol="ocpp2.0.1")
    async with station(fleet_daphne.ws_url, "MON-EVT-1", protocol="ocpp2.0.1") as cp:
        await cp.cp.call(
            call201.BootNotification(
                charging_station={"model": "DC-150", "vendor_name": "ACME"}, reason="PowerUp"
            )
        )

        await cp.cp.call(
            call201.StatusNotification(
                timestamp=ts(), connector_status="Available", evse_id=1, connector_id=1
            )
        )

        def event(event_id: int, **fields: Any) -> dict[str, Any]:
            return {
                "event_id": event_id,
                "timestamp": ts(),
                "event_notification_type": "HardWiredNotification",
                "component": {"name": "Connector", "evse": {"id": 1, "connector_id": 1}},
                "variable": {"name": "Problem"},
                **fields,
            }

        # A value that changed without a problem: nothing.
        await cp.cp.call(
            call201.NotifyEvent(
                generated_at=ts(),
                seq_no=0,
                event_data=[
                    {
                        **event(1, trigger="Delta", actual_value="22"),
                        "variable": {"name": "Power"},
                    }
                ],
            )
        )
        await detect()
        assert await incidents("MON-EVT-1", IncidentType.DEVICE_PROBLEM) == []

        await cp.cp.call(
            call201.NotifyEvent(
                generated_at=ts(),
                seq_no=0,
                event_data=[
                    event(2, trigger="Alerting", actual_value="true", tech_code="GF01"),
                ],
            )
        )
        await detect()
        await detect()  # the same problem again: the same incident
        [problem] = await incidents("MON-EVT-1", IncidentType.DEVICE_PROBLEM)
        assert problem.state == Incident.State.OPEN
        assert problem.details["tech_code"] == "GF01"
        assert "Connector EVSE 1/1" in problem.title
        assert problem.evse_id is not None

        await cp.cp.call(
            call201.NotifyEvent(
                generated_at=ts(),
                seq_no=0,
                event_data=[event(3, trigger="Delta", actual_value="false", cleared=True)],
            )
        )
        await detect()
    [problem] = await incidents("MON-EVT-1", IncidentType.DEVICE_PROBLEM)
    assert problem.state == Incident.State.RESOLVED


async def test_firmware_other_than_the_models_target(fleet_daphne):
    await sync_to_async(FirmwareTarget.objects.create)(
        vendor="ACME", model="Wallbox 22", version="2.0"
    )
    await make_station("MON-FW-1")
    await make_station("MON-FW-2")
    async with station(fleet_daphne.ws_url, "MON-FW-1") as cp:
        await cp.cp.call(
            call.BootNotification(
                charge_point_vendor="ACME", charge_point_model="Wallbox 22", firmware_version="1.9"
            )
        )
        async with station(fleet_daphne.ws_url, "MON-FW-2") as other:
            # Another model, no target: not judged.
            await other.cp.call(
                call.BootNotification(
                    charge_point_vendor="ACME", charge_point_model="Pole", firmware_version="0.1"
                )
            )
            await detect()
        [mismatch] = await incidents("MON-FW-1", IncidentType.FIRMWARE_MISMATCH)
        assert mismatch.details == {
            "vendor": "ACME",
            "model": "Wallbox 22",
            "firmware_version": "1.9",
            "target": "2.0",
        }
        assert await incidents("MON-FW-2", IncidentType.FIRMWARE_MISMATCH) == []

        # Updated: it boots with the target version.
        await cp.cp.call(
            call.BootNotification(
                charge_point_vendor="ACME", charge_point_model="Wallbox 22", firmware_version="2.0"
            )
        )
        await detect()
    [mismatch] = await incidents("MON-FW-1", IncidentType.FIRMWARE_MISMATCH)
    assert mismatch.state == Incident.State.RESOLVED


async def test_configuration_drift_of_a_1_6_key_seen_in_get_configuration(fleet_daphne):
    cs = await make_station("MON-DRIFT-1")
    async with station(fleet_daphne.ws_url, "MON-DRIFT-1") as cp:
        await boot16(cp)
        changed = await acreate(
            cs, verb="set_configuration", params={"key": "MeterValueSampleInterval", "value": "60"}
        )
        assert (await until_final(changed.pk)).status == Command.Status.ACCEPTED
        # The station reports another value afterwards (reset to its default, say).
        cp.cp.responses["GetConfiguration"] = result16.GetConfiguration(
            configuration_key=[{"key": "MeterValueSampleInterval", "readonly": False, "value": "0"}]
        )
        asked = await acreate(
            cs, verb="get_configuration", params={"keys": ["MeterValueSampleInterval"]}
        )
        assert (await until_final(asked.pk)).status == Command.Status.ACCEPTED
        await detect()
        [drift] = await incidents("MON-DRIFT-1", IncidentType.CONFIGURATION_DRIFT)
        assert drift.details["key"] == "MeterValueSampleInterval"
        assert (drift.details["set_value"], drift.details["reported_value"]) == ("60", "0")
        assert drift.details["reported_by"] == "GetConfiguration"

        # It holds our value again.
        cp.cp.responses["GetConfiguration"] = result16.GetConfiguration(
            configuration_key=[
                {"key": "MeterValueSampleInterval", "readonly": False, "value": "60"}
            ]
        )
        asked = await acreate(
            cs, verb="get_configuration", params={"keys": ["MeterValueSampleInterval"]}
        )
        assert (await until_final(asked.pk)).status == Command.Status.ACCEPTED
        await detect()
    [drift] = await incidents("MON-DRIFT-1", IncidentType.CONFIGURATION_DRIFT)
    assert drift.state == Incident.State.RESOLVED


async def test_configuration_drift_of_a_2_0_1_variable_seen_in_notify_report(fleet_daphne):
    cs = await make_station("MON-DRIFT-2", protocol="ocpp2.0.1")
    async with station(fleet_daphne.ws_url, "MON-DRIFT-2", protocol="ocpp2.0.1") as cp:
        await cp.cp.call(
            call201.BootNotification(
                charging_station={"model": "DC-150", "vendor_name": "ACME"}, reason="PowerUp"
            )
        )
        changed = await acreate(
            cs,
            verb="set_configuration",
            params={"key": "SampledDataCtrlr.TxUpdatedInterval", "value": "60"},
        )
        assert (await until_final(changed.pk)).status == Command.Status.ACCEPTED
        await detect()
        assert await incidents("MON-DRIFT-2", IncidentType.CONFIGURATION_DRIFT) == []

        async def report(value: str) -> None:
            await cp.cp.call(
                call201.NotifyReport(
                    request_id=1,
                    generated_at=ts(),
                    seq_no=0,
                    report_data=[
                        {
                            "component": {"name": "SampledDataCtrlr"},
                            "variable": {"name": "TxUpdatedInterval"},
                            "variable_attribute": [{"type": "Actual", "value": value}],
                        }
                    ],
                )
            )

        await report("300")
        await detect()
        [drift] = await incidents("MON-DRIFT-2", IncidentType.CONFIGURATION_DRIFT)
        assert drift.details["key"] == "SampledDataCtrlr.TxUpdatedInterval"
        assert (drift.details["set_value"], drift.details["reported_value"]) == ("60", "300")
        assert drift.details["reported_by"] == "NotifyReport"
        await report("60")
        await detect()
    [drift] = await incidents("MON-DRIFT-2", IncidentType.CONFIGURATION_DRIFT)
    assert drift.state == Incident.State.RESOLVED

"""Each detector end to end: a real daphne on loopback and real OCPP charge points report the
malfunction; a detector pass (the beat task's code, in the test process) opens a deduplicated
incident with what the station said, and resolves it once the condition clears."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from ocpp.v16 import call

from stations.monitoring.models import Incident, IncidentType
from tests.ocpp_client import station
from tests.stations.monitoring.conftest import (
    boot16,
    detect,
    incidents,
    make_station,
    status16,
    timeline,
)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]


async def test_faulted_connector_opens_an_incident_with_the_vendor_code_and_clears(
    daphne_server, settings, announced
):
    settings.MONITORING_FAULTED_MINUTES = 5
    await make_station("MON-FAULT-1")
    async with station(daphne_server.ws_url, "MON-FAULT-1") as cp:
        await boot16(cp)
        await status16(
            cp,
            "Faulted",
            error_code="GroundFailure",
            info="RCD tripped",
            vendor_id="ACME",
            vendor_error_code="E-042",
        )
        await detect()
        assert await incidents("MON-FAULT-1") == []  # not faulted for 5 minutes yet

        settings.MONITORING_FAULTED_MINUTES = 0
        await detect()
        await detect()  # the same finding again: the same incident, touched
        [incident] = await incidents("MON-FAULT-1")
        assert incident.type == IncidentType.CONNECTOR_FAULTED
        assert incident.state == Incident.State.OPEN
        assert incident.severity == Incident.Severity.ERROR
        assert incident.details["error_code"] == "GroundFailure"
        assert incident.details["info"] == "RCD tripped"
        assert incident.details["vendor_error_code"] == "E-042"
        assert "E-042" in incident.title
        assert "GroundFailure" in incident.title
        assert incident.connector_id is not None
        assert incident.last_seen_at > incident.first_seen_at

        await status16(cp, "Available")
        await detect()
    [incident] = await incidents("MON-FAULT-1")
    assert incident.state == Incident.State.RESOLVED
    assert incident.resolved_at is not None
    kinds = [kind for kind, _, _ in await timeline(incident.pk)]
    assert kinds == ["detected", "resolved"]
    assert announced == [
        ("opened", incident.pk, "connector_faulted"),
        ("resolved", incident.pk, "connector_faulted"),
    ]


async def test_a_fault_after_resolution_opens_a_new_incident(daphne_server, settings):
    settings.MONITORING_FAULTED_MINUTES = 0
    await make_station("MON-FAULT-2")
    async with station(daphne_server.ws_url, "MON-FAULT-2") as cp:
        await boot16(cp)
        await status16(cp, "Faulted", error_code="ConnectorLockFailure")
        await detect()
        await status16(cp, "Available")
        await detect()
        await status16(cp, "Faulted", error_code="ConnectorLockFailure")
        await detect()
    first, second = await incidents("MON-FAULT-2")
    assert first.fingerprint == second.fingerprint
    assert (first.state, second.state) == (Incident.State.RESOLVED, Incident.State.OPEN)


async def test_stuck_preparing_and_finishing(daphne_server, settings):
    settings.MONITORING_PREPARING_MINUTES = 0
    settings.MONITORING_FINISHING_MINUTES = 0
    await make_station("MON-STUCK-1")
    async with station(daphne_server.ws_url, "MON-STUCK-1") as cp:
        await boot16(cp)
        await status16(cp, "Preparing", connector=1)
        await status16(cp, "Finishing", connector=2)
        await detect()
        types = {i.type for i in await incidents("MON-STUCK-1")}
        assert types == {IncidentType.STUCK_PREPARING, IncidentType.STUCK_FINISHING}
        await status16(cp, "Available", connector=1)
        await detect()
    states = {i.type: i.state for i in await incidents("MON-STUCK-1")}
    assert states == {
        IncidentType.STUCK_PREPARING: Incident.State.RESOLVED,
        IncidentType.STUCK_FINISHING: Incident.State.OPEN,
    }


async def test_flapping_station(daphne_server, settings):
    settings.MONITORING_FLAPPING_CONNECTS_PER_HOUR = 2
    await make_station("MON-FLAP-1")
    for _ in range(2):
        async with station(daphne_server.ws_url, "MON-FLAP-1") as cp:
            await boot16(cp)
    await detect()
    assert await incidents("MON-FLAP-1") == []  # two connects: within the limit
    async with station(daphne_server.ws_url, "MON-FLAP-1") as cp:
        await boot16(cp)
    await detect()
    [incident] = await incidents("MON-FLAP-1")
    assert incident.type == IncidentType.STATION_FLAPPING
    assert incident.details["connects"] == 3

    settings.MONITORING_FLAPPING_CONNECTS_PER_HOUR = 5  # fewer than that now: it clears
    await detect()
    [incident] = await incidents("MON-FLAP-1")
    assert incident.state == Incident.State.RESOLVED


async def test_burst_of_refused_authorizations(daphne_server, settings):
    settings.MONITORING_AUTH_REJECTED_COUNT = 2
    await make_station("MON-AUTH-1")
    async with station(daphne_server.ws_url, "MON-AUTH-1") as cp:
        await boot16(cp)
        for n in range(3):
            answer = await cp.cp.call(call.Authorize(id_tag=f"UNKNOWN-{n}"))
            assert answer.id_tag_info["status"] == "Invalid"
    await detect()
    [incident] = await incidents("MON-AUTH-1")
    assert incident.type == IncidentType.AUTH_REJECTED_BURST
    assert incident.details["refused"] == 3


@sync_to_async
def _token(uid: str) -> None:
    from sessions.models import IdToken

    IdToken.objects.create(uid=uid)


@sync_to_async
def _age_session(identity: str, minutes: int) -> None:
    """The session and its connector's status as they are `minutes` later (the database's
    clock is the only one a detector reads)."""
    from sessions.models import ChargingSession
    from stations.models import Connector

    earlier = timezone.now() - timedelta(minutes=minutes)
    ChargingSession.objects.filter(station__identity=identity).update(
        started_at=earlier, updated_at=earlier, meter_last_at=earlier
    )
    Connector.objects.filter(station__identity=identity).update(status_at=earlier)


async def test_stuck_transaction_charging_without_energy_and_ghost_session(daphne_server, settings):
    settings.MONITORING_STUCK_TRANSACTION_MINUTES = 30
    settings.MONITORING_NO_ENERGY_MINUTES = 15
    settings.MONITORING_NO_ENERGY_WH = 10
    settings.MONITORING_GHOST_SESSION_MINUTES = 5
    await make_station("MON-TX-1")
    await make_station("MON-GHOST-1")
    await _token("MON-TAG-1")
    now = timezone.now()
    async with station(daphne_server.ws_url, "MON-TX-1") as cp:
        await boot16(cp)
        await status16(cp, "Charging")
        started = await cp.cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="MON-TAG-1", meter_start=1000, timestamp=now.isoformat()
            )
        )
        assert started.id_tag_info["status"] == "Accepted"
        await detect()
        assert await incidents("MON-TX-1") == []  # everything fresh
        await _age_session("MON-TX-1", 40)
        await detect()
        found = {i.type: i for i in await incidents("MON-TX-1")}
        assert set(found) == {IncidentType.STUCK_TRANSACTION, IncidentType.NO_ENERGY}
        assert found[IncidentType.NO_ENERGY].session_id is not None
        # Energy flows again: both clear.
        await cp.cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=started.transaction_id,
                meter_value=[
                    {
                        "timestamp": timezone.now().isoformat(),
                        "sampledValue": [{"value": "3000"}],
                    }
                ],
            )
        )
        await detect()
        assert {i.state for i in await incidents("MON-TX-1")} == {Incident.State.RESOLVED}

    async with station(daphne_server.ws_url, "MON-GHOST-1") as cp:
        await boot16(cp)
        await status16(cp, "Available")
        # The station starts a transaction but its connector keeps saying Available.
        await cp.cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="MON-TAG-1", meter_start=0, timestamp=now.isoformat()
            )
        )
        await _age_session("MON-GHOST-1", 10)
        await detect()
        [ghost] = await incidents("MON-GHOST-1", IncidentType.GHOST_SESSION)
        assert ghost.state == Incident.State.OPEN
        await status16(cp, "Charging")
        await detect()
    [ghost] = await incidents("MON-GHOST-1", IncidentType.GHOST_SESSION)
    assert ghost.state == Incident.State.RESOLVED


async def test_reboot_loop_counts_the_boots_we_did_not_cause(daphne_server, settings):
    from stations.commands.models import Command
    from tests.stations.conftest import acreate, until_final

    settings.MONITORING_REBOOTS_PER_DAY = 2
    looping = await make_station("MON-BOOT-1")
    reset = await make_station("MON-BOOT-2")
    async with station(daphne_server.ws_url, "MON-BOOT-1") as cp:
        for _ in range(3):
            await boot16(cp)
    async with station(daphne_server.ws_url, "MON-BOOT-2") as cp:
        await boot16(cp)
        # Our Reset, accepted: the boots right after it are ours.
        command = await acreate(reset, verb="reset", params={"type": "soft"})
        assert (await until_final(command.pk)).status == Command.Status.ACCEPTED
        for _ in range(2):
            await boot16(cp)
    await detect()
    [incident] = await incidents("MON-BOOT-1")
    assert incident.type == IncidentType.REBOOT_LOOP
    assert incident.details["boots"] == 3
    assert incident.station_id == looping.pk
    assert await incidents("MON-BOOT-2") == []  # three boots, two of them after our reset

"""Energy services against the database: bad input gets a clear error or the fail-safe, never
an overload; what an allocation run stores and sends."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.utils import timezone

from cpo.tools.bench.data import fleet_stations_create
from cpo.tools.bench.energy import energy_site_create
from cpo.tools.simulator import V16, V201, StationSpec
from sessions.models import ChargingSession
from stations.commands.models import Command
from stations.commands.verbs import CommandError
from stations.energy import dispatch, services
from stations.energy.models import (
    ConnectorEnergy,
    ExternalLimit,
    GridNode,
    ProfileDispatch,
    SessionAllocation,
    StationEnergy,
)
from stations.energy.services import EnergyError
from stations.models import ChargingStation

pytestmark = pytest.mark.django_db


def site(count: int = 2, protocol: str = V16, **kwargs: Any) -> tuple[Any, list[ChargingStation]]:
    specs = [StationSpec(f"SV-{n}", protocol, "pw", connectors=1) for n in range(count)]
    fleet_stations_create(specs=specs)
    layout = energy_site_create(identities=[s.identity for s in specs], **kwargs)
    stations = list(ChargingStation.objects.filter(identity__startswith="SV-").order_by("identity"))
    ChargingStation.objects.filter(pk__in=[s.pk for s in stations]).update(is_online=True)
    return layout, stations


def charge(station: ChargingStation, n: int, minutes_ago: int = 0) -> ChargingSession:
    return ChargingSession.objects.create(
        station=station,
        evse_id=1,
        connector_id=1,
        transaction_id=str(1000 + n),
        ocpp16_transaction_id=1000 + n,
        started_at=timezone.now() - timedelta(minutes=minutes_ago + n),
    )


def test_a_parent_that_makes_a_cycle_is_refused_and_changes_nothing():
    layout, _ = site()
    connection = GridNode.objects.get(pk=layout.connection_id)
    circuit = GridNode.objects.get(pk=layout.circuit_ids[0])
    connection.parent = circuit
    with pytest.raises(EnergyError, match="cycle"):
        services.grid_node_save(node=connection)
    assert GridNode.objects.get(pk=connection.pk).parent_id is None


def test_a_parent_of_another_site_is_refused():
    layout, _ = site()
    from stations.models import Location

    other = services.energy_site_enable(location=Location.objects.create(name="Elsewhere"))
    foreign = services.grid_node_save(node=GridNode(site=other, name="Other connection"))
    circuit = GridNode.objects.get(pk=layout.circuit_ids[0])
    circuit.parent = foreign
    with pytest.raises(EnergyError, match="another site"):
        services.grid_node_save(node=circuit)


def test_a_limit_below_what_must_keep_running_is_refused():
    layout, _ = site()
    circuit = GridNode.objects.get(pk=layout.circuit_ids[0])
    circuit.unmanaged_kw = Decimal(10)  # 14.5 A on each of three phases at 230 V
    services.grid_node_save(node=circuit)
    circuit.limit_l1_a = circuit.limit_l2_a = circuit.limit_l3_a = Decimal(12)
    with pytest.raises(EnergyError, match="below what must keep running"):
        services.grid_node_save(node=circuit)
    assert GridNode.objects.get(pk=circuit.pk).limit_l1_a == Decimal(32)


def test_sessions_whose_minimums_do_not_fit_pause_instead_of_overloading():
    """16 A for three cars with a 6 A minimum: two charge at 8 A, the latest waits at 0 A."""
    layout, stations = site(3, circuit_limit_a=Decimal(16))
    for n, station in enumerate(stations):
        charge(station, n, minutes_ago=10 - n)
    run = services.site_allocate(site_id=layout.site_id, trigger="test")
    assert run is not None
    currents = {
        a.session.station.identity: (a.current_a, a.paused)
        for a in SessionAllocation.objects.select_related("session__station")
    }
    assert sorted(c for c, _ in currents.values()) == [Decimal(0), Decimal(8), Decimal(8)]
    assert [p for _, p in currents.values()].count(True) == 1
    circuit = run.loads[str(layout.circuit_ids[0])]
    assert max(circuit["allocated"].values()) <= 16
    paused = SessionAllocation.objects.get(paused=True)
    assert paused.explanation.startswith("paused: no room for the minimum current on Circuit 1")
    assert paused.binding_node_id == layout.circuit_ids[0]


def test_a_connector_without_phase_data_is_counted_on_every_phase():
    layout, stations = site(2, circuit_limit_a=Decimal(16), phases=None)
    GridNode.objects.filter(pk=layout.circuit_ids[0]).update(limit_l1_a=Decimal(40))
    ConnectorEnergy.objects.update(rotation=ConnectorEnergy.Rotation.UNKNOWN)
    for n, station in enumerate(stations):
        charge(station, n)
    run = services.site_allocate(site_id=layout.site_id, trigger="test")
    assert run is not None
    loads = run.loads[str(layout.circuit_ids[0])]["allocated"]
    # L2 and L3 (16 A) bind both cars even if they might be single-phase on L1: 8 A each.
    assert loads == {"L1": 16.0, "L2": 16.0, "L3": 16.0}
    assert set(SessionAllocation.objects.values_list("current_a", flat=True)) == {Decimal(8)}
    assert set(SessionAllocation.objects.values_list("binding_phase", flat=True)) <= {"L2", "L3"}


def test_a_stale_external_limit_falls_to_its_fail_safe_value():
    layout, stations = site(2)
    circuit = GridNode.objects.get(pk=layout.circuit_ids[0])
    limit = services.external_limit_push(
        node=circuit, limit_a=Decimal(30), fresh_for_s=60, name="building meter"
    )
    ExternalLimit.objects.filter(pk=limit.pk).update(
        failsafe_a=Decimal(10), received_at=timezone.now() - timedelta(minutes=2)
    )
    for n, station in enumerate(stations):
        charge(station, n)
    run = services.site_allocate(site_id=layout.site_id, trigger="test")
    assert run is not None
    assert any("stale, fail-safe applies" in note for note in run.notes)
    currents = sorted(SessionAllocation.objects.values_list("current_a", flat=True))
    assert currents == [Decimal(0), Decimal(10)]
    # Fresh again: the pushed 30 A applies, 15 A each.
    services.external_limit_push(node=circuit, limit_a=Decimal(30), name="building meter")
    services.site_allocate(site_id=layout.site_id, trigger="test")
    assert set(SessionAllocation.objects.values_list("current_a", flat=True)) == {Decimal(15)}


def test_a_cycle_written_around_the_services_sends_nothing():
    layout, stations = site(1)
    charge(stations[0], 0)
    GridNode.objects.filter(pk=layout.connection_id).update(parent_id=layout.circuit_ids[0])
    run = services.site_allocate(site_id=layout.site_id, trigger="test")
    assert run is not None
    assert "cycle" in run.notes[0]
    assert not ProfileDispatch.objects.exists()


def test_a_run_sends_decreases_at_once_and_holds_increases_until_they_are_answered():
    layout, stations = site(2, protocol=V201)
    first = charge(stations[0], 0, minutes_ago=5)
    services.site_allocate(site_id=layout.site_id, trigger="test")
    tx = ProfileDispatch.objects.get(connector__isnull=False)
    assert tx.kind == ProfileDispatch.Kind.INCREASE
    assert tx.state == ProfileDispatch.State.QUEUED
    assert tx.limit_a == Decimal(32)
    profile = tx.command.payload["chargingProfile"]
    assert profile["chargingProfilePurpose"] == "TxProfile"
    assert profile["transactionId"] == first.transaction_id
    periods = profile["chargingSchedule"][0]["chargingSchedulePeriod"]
    assert periods == [
        {"startPeriod": 0, "limit": 32.0, "numberPhases": 3},
        {"startPeriod": 300, "limit": 16.0, "numberPhases": 3},
    ]
    dispatch.profile_dispatch_answered(
        command_id=tx.command_id or 0, status="accepted", result="Accepted"
    )
    charge(stations[1], 1)
    services.site_allocate(site_id=layout.site_id, trigger="test")
    down = ProfileDispatch.objects.get(kind=ProfileDispatch.Kind.DECREASE)
    up = ProfileDispatch.objects.filter(kind=ProfileDispatch.Kind.INCREASE).latest("id")
    assert (down.limit_a, down.state) == (Decimal(16), ProfileDispatch.State.QUEUED)
    assert (up.limit_a, up.state, up.command_id) == (
        Decimal(16),
        ProfileDispatch.State.WAITING,
        None,
    )
    Command.objects.filter(pk=down.command_id or 0).update(status=Command.Status.ACCEPTED)
    dispatch.profile_dispatch_answered(
        command_id=down.command_id or 0, status="accepted", result="Accepted"
    )
    up.refresh_from_db()
    assert up.state == ProfileDispatch.State.QUEUED
    assert up.command is not None
    # A change under the hysteresis is not sent again.
    dispatch.profile_dispatch_answered(
        command_id=up.command_id or 0, status="accepted", result="Accepted"
    )
    before = ProfileDispatch.objects.count()
    services.site_allocate(site_id=layout.site_id, trigger="test")
    assert ProfileDispatch.objects.count() == before


@pytest.mark.parametrize(
    ("old", "new", "sent"),
    [
        (None, Decimal(6), True),
        (Decimal(16), Decimal("16.4"), False),
        (Decimal(16), Decimal("16.5"), False),
        (Decimal(16), Decimal("16.8"), True),
        (Decimal(32), Decimal("33.5"), False),
        (Decimal(32), Decimal("33.6"), True),
        # A decrease, however small, is sent: others were given what it takes off.
        (Decimal(32), Decimal("31.9"), True),
        (Decimal(0), Decimal(6), True),
        (Decimal(6), Decimal(0), True),
    ],
)
def test_increases_under_the_larger_of_half_an_ampere_and_five_percent_are_not_sent(old, new, sent):
    assert dispatch.worth_sending(old, new) is sent


def test_station_limits_shape_the_schedule():
    now = timezone.now()
    one_period = StationEnergy(max_periods=1, max_stack_level=0)
    sched = dispatch.schedule(
        limits=one_period,
        current_a=Decimal(20),
        phases=3,
        safe_a=Decimal(8),
        deadman_s=120,
        start=now,
    )
    # One period: the profile itself ends at the dead-man time (the default then applies).
    assert sched["duration"] == 120
    assert len(sched["periods"]) == 1
    watts = StationEnergy(rate_unit=StationEnergy.RateUnit.WATTS)
    sched = dispatch.schedule(
        limits=watts, current_a=Decimal(16), phases=1, safe_a=Decimal(8), deadman_s=120, start=now
    )
    assert sched["rate_unit"] == "W"
    assert [p["limit"] for p in sched["periods"]] == [3680.0, 1840.0]


def test_a_2_0_1_profile_never_uses_the_external_constraints_purpose():
    from stations.ocpp.v201.commands import charging_profile

    with pytest.raises(CommandError, match="K01.FR.22"):
        charging_profile({"purpose": "ChargingStationExternalConstraints", "schedule": {}})


def test_station_charging_limit_from_notify_charging_limit_caps_the_node():
    layout, stations = site(1, protocol=V201)
    services.station_charging_limit_record(
        station_id=stations[0].pk,
        action="NotifyChargingLimit",
        payload={
            "chargingLimit": {"chargingLimitSource": "EMS"},
            "chargingSchedule": [
                {
                    "id": 1,
                    "chargingRateUnit": "A",
                    "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 12}],
                }
            ],
        },
    )
    limit = ExternalLimit.objects.get()
    assert (limit.source, limit.limit_a, limit.node_id) == (
        "station",
        Decimal(12),
        layout.circuit_ids[0],
    )
    charge(stations[0], 0)
    services.site_allocate(site_id=layout.site_id, trigger="test")
    assert SessionAllocation.objects.get().current_a == Decimal(12)


@pytest.mark.parametrize("protocol", [V16, V201])
def test_a_run_sends_each_online_station_its_default_profile(protocol):
    layout, stations = site(2, protocol=protocol)
    run = services.site_allocate(site_id=layout.site_id, trigger="test")
    assert run is not None
    assert run.notes == []
    defaults = ProfileDispatch.objects.filter(kind=ProfileDispatch.Kind.DEFAULT)
    assert [d.state for d in defaults] == [ProfileDispatch.State.QUEUED] * 2
    payload = defaults[0].command.payload
    profile = payload.get("csChargingProfiles") or payload["chargingProfile"]
    schedule = profile["chargingSchedule"]
    schedule = schedule[0] if isinstance(schedule, list) else schedule
    assert [(p["startPeriod"], p["limit"]) for p in schedule["chargingSchedulePeriod"]] == [
        (0, 0.0),
        (600, 16.0),
    ]

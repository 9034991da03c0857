"""Reads of the network: uptime, connection intervals, the station's state, alerts."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from stations import selectors
from stations.models import ChargingStation, Connector, Location, StationConnection
from tests.stations.conftest import station_with_connectors, status_report

H = dt.timedelta(hours=1)


@pytest.mark.django_db
def test_uptime_splits_the_period_into_usable_faulted_unavailable_and_offline() -> None:
    t0 = (timezone.now() - dt.timedelta(days=2)).replace(microsecond=0)
    station = station_with_connectors("UP-1", location=Location.objects.create(name="Depot"))
    StationConnection.objects.create(
        station=station, protocol="ocpp1.6", connected_at=t0 - H, disconnected_at=t0 + 8 * H
    )
    status_report(station, t0 - H / 2, "Available")  # the state at the start of the period
    status_report(station, t0 + 2 * H, "Faulted")
    status_report(station, t0 + 3 * H, "Available")
    status_report(station, t0 + 5 * H, "Unavailable")
    status_report(station, t0 + 6 * H, "Charging")

    rows = selectors.uptime_report(start=t0, end=t0 + 10 * H)

    by_connector = {row["connector"]: row for row in rows}
    assert set(by_connector) == {"", "1/1"}
    connector = by_connector["1/1"]
    assert connector["usable_pct"] == 60.0
    assert connector["faulted_pct"] == 10.0
    assert connector["unavailable_pct"] == 10.0
    assert connector["offline_pct"] == 20.0
    assert connector["usable_h"] == 6.0
    assert by_connector[""]["usable_pct"] == 60.0
    assert by_connector[""]["site"] == "Depot"


@pytest.mark.django_db
def test_uptime_station_level_fault_and_second_connector() -> None:
    t0 = (timezone.now() - dt.timedelta(days=1)).replace(microsecond=0)
    station = station_with_connectors("UP-2", connectors=2)
    StationConnection.objects.create(station=station, protocol="ocpp1.6", connected_at=t0 - H)
    ChargingStation.objects.filter(pk=station.pk).update(is_online=True)
    status_report(station, t0, "Available", evse_id=1)
    status_report(station, t0, "Faulted", evse_id=2)
    status_report(station, t0 + 2 * H, "Faulted", evse_id=0)  # the whole station
    status_report(station, t0 + 3 * H, "Available", evse_id=0)

    rows = {r["connector"]: r for r in selectors.uptime_report(start=t0, end=t0 + 4 * H)}

    assert rows["1/1"]["usable_pct"] == 75.0
    assert rows["1/1"]["faulted_pct"] == 25.0
    assert rows["2/1"]["faulted_pct"] == 100.0
    # The station is usable while any connector is.
    assert rows[""]["usable_pct"] == 75.0
    assert rows[""]["faulted_pct"] == 25.0


@pytest.mark.django_db
def test_a_connection_left_open_by_a_dead_process_ends_when_the_station_was_last_seen() -> None:
    t0 = (timezone.now() - dt.timedelta(days=1)).replace(microsecond=0)
    station = station_with_connectors("OI-1")
    StationConnection.objects.create(station=station, protocol="ocpp1.6", connected_at=t0 + H)
    ChargingStation.objects.filter(pk=station.pk).update(last_seen_at=t0 + 3 * H)

    online = selectors.online_intervals(station_ids=[station.pk], start=t0, end=t0 + 6 * H)

    assert online == {station.pk: [(t0 + H, t0 + 3 * H)]}
    assert selectors.offline_gaps(intervals=online[station.pk], start=t0, end=t0 + 6 * H) == [
        (t0, t0 + H),
        (t0 + 3 * H, t0 + 6 * H),
    ]
    timeline = selectors.station_status_timeline(station=station, start=t0, end=t0 + 6 * H)
    assert timeline["rows"] == ["Connection", "Station", "1/1"]
    assert [s["status"] for s in timeline["segments"]] == ["Offline", "Online", "Offline"]


@pytest.mark.django_db
def test_station_state_and_network_counts() -> None:
    online = station_with_connectors("NS-ON", connectors=2)
    offline = station_with_connectors("NS-OFF")
    ChargingStation.objects.filter(pk=online.pk).update(is_online=True)
    Connector.objects.filter(station=online, evse__evse_id=2).update(
        status="Faulted", error_code="GroundFailure"
    )
    Connector.objects.filter(station=offline).update(status="Available")

    state = selectors.station_state(station=online)
    assert state["is_online"] is True  # re-read from the database
    assert [(c["evse_id"], c["connector_id"], c["status"]) for c in state["connectors"]] == [
        (1, 1, "Unknown"),
        (2, 1, "Faulted"),
    ]
    assert selectors.station_state(station=offline)["connectors"][0]["status"] == "Offline"
    assert selectors.station_counts() == {"total": 2, "online": 1, "offline": 1, "faulted": 1}
    assert selectors.connectors_by_status() == {"Faulted": 1, "Offline": 1, "Unknown": 1}
    alerts = selectors.network_alerts(limit=5)
    assert alerts["counts"] == {"station_offline": 1, "connector_faulted": 1, "auth_lockout": 0}
    assert [a["title"] for a in alerts["items"]] == ["NS-OFF offline", "NS-ON 2/1 faulted"]

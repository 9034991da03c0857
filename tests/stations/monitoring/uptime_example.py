"""The hand-computed uptime example (see tests/stations/monitoring/test_uptime.py for the
arithmetic), shared by the uptime tests of the reports, the panel and the API."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from django.contrib.auth import get_user_model

from stations import services as station_services
from stations.models import ChargingStation, Connector, Location, StationConnection
from stations.monitoring import services
from stations.monitoring.models import UptimeExclusion


def at(month: int, day: int, hour: int = 0, year: int = 2025) -> datetime:
    return datetime(year, month, day, hour, tzinfo=UTC)


def report(station: ChargingStation, evse_id: int, status: str, moment: datetime) -> None:
    station_services.connector_status_changed(
        station_id=station.pk,
        evse_id=evse_id,
        connector_id=1 if evse_id else 0,
        status=status,
        timestamp=moment,
    )


def make_operators(*, password: str | None = None) -> tuple[Any, Any]:
    users = get_user_model().objects
    return (
        users.create_user("alice", password=password, is_staff=True),
        users.create_user("bob", password=password, is_staff=True),
    )


def build_example(alice: Any, bob: Any) -> dict[str, Any]:
    site = Location.objects.create(name="Depot")
    a = ChargingStation.objects.create(identity="UP-A", location=site)
    b = ChargingStation.objects.create(identity="UP-B", location=site)
    station_services.station_evses_create(station=a, count=1)
    station_services.station_evses_create(station=b, count=1)
    Connector.objects.filter(station=a).update(max_power_w=150_000, power_type="DC")
    StationConnection.objects.create(
        station=a, protocol="ocpp1.6", connected_at=at(3, 31), disconnected_at=at(4, 20)
    )
    StationConnection.objects.create(
        station=a, protocol="ocpp1.6", connected_at=at(4, 20, 6), disconnected_at=at(1, 1, 0, 2026)
    )
    StationConnection.objects.create(
        station=b, protocol="ocpp1.6", connected_at=at(3, 31), disconnected_at=at(1, 1, 0, 2026)
    )
    report(a, 1, "Available", at(4, 1))
    report(a, 1, "Faulted", at(4, 10, 8))
    report(a, 1, "Available", at(4, 10, 20))
    report(a, 1, "Unavailable", at(4, 25, 10))
    report(a, 1, "Available", at(4, 25, 14))
    report(b, 1, "Available", at(4, 1))
    report(b, 0, "Faulted", at(4, 5, 0))
    report(b, 0, "Available", at(4, 5, 1))
    evse_a = a.evses.get()
    maintenance = services.uptime_exclusion_create(
        user=alice,
        starts_at=at(4, 25, 9),
        ends_at=at(4, 25, 15),
        reason=UptimeExclusion.Reason.PLANNED_MAINTENANCE,
        note="Replaced the cable",
        evse_id=evse_a.pk,
    )
    services.uptime_exclusion_approve(exclusion_id=maintenance.pk, user=bob)
    services.uptime_exclusion_create(
        user=alice,
        starts_at=at(4, 10, 8),
        ends_at=at(4, 10, 20),
        reason=UptimeExclusion.Reason.VANDALISM,
        note="Not yet approved",
        station_id=a.pk,
    )
    rejected = services.uptime_exclusion_create(
        user=bob,
        starts_at=at(4, 20),
        ends_at=at(4, 20, 6),
        reason=UptimeExclusion.Reason.UTILITY_OUTAGE,
        note="The grid was fine",
        location_id=site.pk,
    )
    services.uptime_exclusion_reject(exclusion_id=rejected.pk, user=alice)
    return {"site": site, "a": a, "b": b, "evse_a": evse_a}

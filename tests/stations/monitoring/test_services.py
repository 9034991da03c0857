"""The incident services: deduplication by fingerprint, the timeline, acknowledgement and
resolution, and the port they announce on."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import IntegrityError, transaction
from django.utils import timezone

from cpo.models import User
from stations.models import ChargingStation
from stations.monitoring import services
from stations.monitoring.models import Incident, IncidentType

pytestmark = pytest.mark.django_db


def _open(station: ChargingStation, **extra):
    return services.incident_open_or_touch(
        type=IncidentType.STATION_FLAPPING,
        fingerprint=f"station_flapping:{station.pk}",
        station_id=station.pk,
        severity=Incident.Severity.WARNING,
        title="flapping",
        **extra,
    )


def _kinds(incident: Incident) -> list[str]:
    return list(incident.entries.order_by("at", "pk").values_list("kind", flat=True))


def test_one_active_incident_per_fingerprint_with_its_timeline(announced, settings) -> None:
    settings.MONITORING_STILL_PRESENT_NOTE_MINUTES = 60
    station = ChargingStation.objects.create(identity="MON-SVC-1")
    start = timezone.now()
    incident, opened = _open(station, now=start)
    again, opened_again = _open(station, now=start + timedelta(minutes=5))
    assert (opened, opened_again) == (True, False)
    assert again.pk == incident.pk
    _open(station, now=start + timedelta(minutes=61))
    assert _kinds(incident) == ["detected", "still_present"]
    assert services.incident_resolve(incident_id=incident.pk) is not None
    assert services.incident_resolve(incident_id=incident.pk) is None  # once
    newer, opened = _open(station)
    assert opened
    assert newer.pk != incident.pk
    assert announced == [
        ("opened", incident.pk, "station_flapping"),
        ("resolved", incident.pk, "station_flapping"),
        ("opened", newer.pk, "station_flapping"),
    ]


def test_the_database_refuses_a_second_active_incident_of_one_fingerprint() -> None:
    station = ChargingStation.objects.create(identity="MON-SVC-2")
    incident, _ = _open(station)
    with pytest.raises(IntegrityError), transaction.atomic():
        Incident.objects.create(
            type=incident.type,
            fingerprint=incident.fingerprint,
            station=station,
            severity=incident.severity,
            title="duplicate",
        )


def test_acknowledge_once_and_only_while_open() -> None:
    station = ChargingStation.objects.create(identity="MON-SVC-3")
    user = User.objects.create_user("op", is_staff=True)
    incident, _ = _open(station)
    services.incident_acknowledge(incident_id=incident.pk, user=user, note="on site at 3")
    incident.refresh_from_db()
    assert incident.state == Incident.State.ACKNOWLEDGED
    assert incident.acknowledged_by == user
    with pytest.raises(services.IncidentError, match="acknowledged"):
        services.incident_acknowledge(incident_id=incident.pk, user=user)
    # Acknowledged is still active: the same finding touches it, and it resolves by itself.
    assert _open(station)[0].pk == incident.pk
    services.incident_resolve(incident_id=incident.pk)
    with pytest.raises(services.IncidentError, match="resolved"):
        services.incident_acknowledge(incident_id=incident.pk, user=user)
    entry = incident.entries.get(kind="acknowledged")
    assert entry.message == "acknowledged by op: on site at 3"
    assert entry.user == user

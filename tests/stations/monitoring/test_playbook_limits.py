"""The hard limits of the playbooks: refused at save, and held at every step (manual-only
stations, sessions under a reset, the per-site concurrency cap, escalation at the end).

The steps queue real commands; no station is connected (the end-to-end tests deliver them)."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.core.exceptions import ValidationError
from django.utils import timezone

from sessions.models import ChargingSession
from stations.commands.models import Command
from stations.models import ChargingStation, Location
from stations.monitoring.detectors import detectors_run
from stations.monitoring.models import Incident, IncidentEntry, IncidentType, Playbook
from stations.monitoring.playbooks import playbooks_run
from stations.services import connector_status_changed, station_evses_create

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _quick(settings: Any) -> None:
    settings.MONITORING_FAULTED_MINUTES = 0
    settings.MONITORING_BACKOFF_MIN_SECONDS = 1


def faulted(identity: str, *, connectors: int = 1, **fields: Any) -> ChargingStation:
    station = ChargingStation.objects.create(identity=identity, protocol="ocpp1.6", **fields)
    station_evses_create(station=station, count=connectors)
    connector_status_changed(
        station_id=station.pk,
        evse_id=1,
        connector_id=1,
        status="Faulted",
        timestamp=timezone.now() - timedelta(minutes=1),
        error_code="OtherError",
    )
    return station


def playbook(steps: list[str], **fields: Any) -> Playbook:
    return Playbook.objects.create(
        incident_type=IncidentType.CONNECTOR_FAULTED, enabled=True, steps=steps, **fields
    )


def entries(station: ChargingStation) -> list[tuple[str, str]]:
    return list(
        IncidentEntry.objects.filter(incident__station=station)
        .order_by("at", "pk")
        .values_list("kind", "step")
    )


@pytest.mark.parametrize(
    ("fields", "field", "words"),
    [
        ({"steps": ["soft_reset", "hard_reset"], "backoff_seconds": 60}, "steps", "reset period"),
        ({"steps": ["reboot"]}, "steps", "unknown step"),
        ({"steps": ["status", "status"]}, "steps", "at most once"),
        ({"steps": ["status"], "reset_period_minutes": 5}, "reset_period_minutes", "at least 60"),
        ({"steps": ["status"], "backoff_seconds": 0}, "backoff_seconds", "at least 1"),
        ({"steps": ["status"], "site_concurrency": 0}, "site_concurrency", "1 to 10"),
    ],
)
def test_a_playbook_beyond_its_limits_is_refused_at_save(fields, field, words) -> None:
    with pytest.raises(ValidationError) as refused:
        playbook(**fields)
    assert words in " ".join(refused.value.message_dict[field])
    assert not Playbook.objects.exists()


def test_resets_a_whole_period_apart_are_accepted() -> None:
    # soft_reset first (back-off 3600 s), hard reset after: 60 min apart, the period.
    saved = playbook(["soft_reset", "hard_reset"], backoff_seconds=3600, reset_period_minutes=60)
    assert saved.pk


def test_a_manual_only_station_gets_no_step() -> None:
    playbook(["status"])
    station = faulted("MON-LIM-MANUAL", manual_only=True)
    control = faulted("MON-LIM-AUTO")
    detectors_run()
    assert playbooks_run() == 1  # the other station's step only
    assert Command.objects.filter(station=control).count() == 1
    assert not Command.objects.filter(station=station).exists()
    assert entries(station) == [("detected", "")]


def test_no_reset_during_a_session_that_is_not_the_fault() -> None:
    playbook(["soft_reset"])
    station = faulted("MON-LIM-BUSY", connectors=2)
    ChargingSession.objects.create(
        station=station,
        evse_id=2,
        connector_id=1,
        transaction_id="77",
        started_at=timezone.now(),
        meter_start_wh=Decimal(0),
    )
    detectors_run()
    playbooks_run()
    assert not Command.objects.filter(station=station, action="Reset").exists()
    assert entries(station) == [("detected", ""), ("action_skipped", "soft_reset")]
    note = IncidentEntry.objects.get(kind="action_skipped").message
    assert "no reset during a session" in note


def test_the_site_concurrency_cap_holds_other_stations_back() -> None:
    playbook(["status", "availability_cycle"], site_concurrency=1)
    site = Location.objects.create(name="Cap site")
    first = faulted("MON-LIM-CAP-1", location=site)
    second = faulted("MON-LIM-CAP-2", location=site)
    elsewhere = faulted("MON-LIM-CAP-3")
    detectors_run()
    assert playbooks_run() == 2  # the first of the site, and the one without a site
    assert Command.objects.filter(station=first).count() == 1
    assert Command.objects.filter(station=second).count() == 0
    assert Command.objects.filter(station=elsewhere).count() == 1
    # The first one's incident clears: its slot goes to the second.
    Incident.objects.filter(station=first).update(playbook_state="done")
    assert playbooks_run() == 1
    assert Command.objects.filter(station=second).count() == 1


def test_steps_back_off_exponentially_and_escalate_at_the_end() -> None:
    playbook(["status", "availability_cycle"], backoff_seconds=10)
    station = faulted("MON-LIM-ESC")
    detectors_run()
    start = timezone.now()
    playbooks_run(now=start)
    incident = Incident.objects.get(station=station)
    assert incident.playbook_next_at == start + timedelta(seconds=10)
    assert playbooks_run(now=start + timedelta(seconds=5)) == 0  # backing off
    # Its command got its answer (the queue marks it), then the next step, 20 s after that.
    Command.objects.filter(station=station).update(status="accepted", result="Accepted")
    playbooks_run(now=start + timedelta(seconds=10))
    incident.refresh_from_db()
    assert incident.playbook_next_at == start + timedelta(seconds=30)
    Command.objects.filter(station=station).update(status="accepted", result="Accepted")
    playbooks_run(now=start + timedelta(seconds=30))
    incident.refresh_from_db()
    assert incident.playbook_state == Incident.PlaybookState.ESCALATED
    assert [kind for kind, _ in entries(station)] == [
        "detected",
        "action_taken",
        "action_result",
        "action_taken",
        "action_taken",
        "action_result",
        "escalated",
    ]

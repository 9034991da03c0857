"""Alert rules with the incident services: which rules an incident is mailed to (severity, site,
type), the outbox e-mail written in the incident's transaction and threaded on resolution,
quiet hours held and summarised once they end, and the rule's validation."""

from __future__ import annotations

import json
from datetime import UTC, datetime, time, timedelta

import pytest
from django.core.exceptions import ValidationError
from django.db import transaction

from cpo.outbox.models import OutboxMessage
from stations.models import ChargingStation, Location
from stations.monitoring import services
from stations.monitoring.alerts import alert_summaries_send
from stations.monitoring.models import AlertRule, HeldAlert, Incident, IncidentType

pytestmark = pytest.mark.django_db

# 12:00 UTC is 13:00 in Amsterdam (winter); 23:30 UTC is 00:30 there.
NOON = datetime(2026, 1, 15, 12, 0, tzinfo=UTC)
NIGHT = datetime(2026, 1, 15, 23, 30, tzinfo=UTC)


def _site(name: str) -> Location:
    return Location.objects.create(name=name, time_zone="Europe/Amsterdam")


def _rule(name: str, **fields) -> AlertRule:
    fields.setdefault("recipients", f"{name}@example.com")
    return AlertRule.objects.create(name=name, **fields)


def _open(station: ChargingStation, *, severity: str, type_: str = "connector_faulted", now=NOON):
    incident, opened = services.incident_open_or_touch(
        type=type_,
        fingerprint=f"{type_}:{station.pk}",
        station_id=station.pk,
        severity=severity,
        title=f"{type_} at {station.identity}",
        details={"error_code": "GroundFailure", "vendor_error_code": "E-042"},
        now=now,
    )
    assert opened
    return incident


def _mails(rule: AlertRule) -> list[dict]:
    rows = OutboxMessage.objects.filter(destination_kind="email", destination_ref=str(rule.pk))
    return [json.loads(bytes(row.body)) for row in rows.order_by("pk")]


def test_rules_filter_by_severity_site_and_type() -> None:
    here, there = _site("Here"), _site("There")
    station = ChargingStation.objects.create(identity="ALERT-1", location=here)
    errors = _rule("errors", min_severity=Incident.Severity.ERROR)
    critical_only = _rule("critical", min_severity=Incident.Severity.CRITICAL)
    at_here = _rule("here", min_severity=Incident.Severity.WARNING, location=here)
    at_there = _rule("there", min_severity=Incident.Severity.WARNING, location=there)
    offline_only = _rule(
        "offline", min_severity=Incident.Severity.WARNING, incident_types=["station_offline"]
    )
    inactive = _rule("off", min_severity=Incident.Severity.WARNING, is_active=False)

    _open(station, severity=Incident.Severity.ERROR)

    assert len(_mails(errors)) == 1
    assert len(_mails(at_here)) == 1
    for rule in (critical_only, at_there, offline_only, inactive):
        assert _mails(rule) == [], rule.name
    [mail] = _mails(errors)
    assert mail["to"] == ["errors@example.com"]
    assert "ALERT-1" in mail["subject"]
    assert "E-042" in mail["text"]
    assert "GroundFailure" in mail["text"]


def test_the_resolved_mail_answers_the_opened_one() -> None:
    station = ChargingStation.objects.create(identity="ALERT-2")
    rule = _rule("ops", recipients="a@example.com, b@example.com")
    incident = _open(station, severity=Incident.Severity.ERROR)
    services.incident_resolve(incident_id=incident.pk, now=NOON + timedelta(minutes=3))
    opened, resolved = _mails(rule)
    assert opened["to"] == resolved["to"] == ["a@example.com", "b@example.com"]
    assert resolved["subject"] == f"Resolved: {opened['subject']}"
    first_id = opened["headers"]["Message-ID"]
    assert first_id.startswith("<")
    assert first_id.endswith(">")
    assert resolved["headers"]["In-Reply-To"] == first_id
    assert resolved["headers"]["References"] == first_id
    assert resolved["headers"]["Message-ID"] != first_id
    keys = set(
        OutboxMessage.objects.filter(destination_kind="email").values_list(
            "ordering_key", flat=True
        )
    )
    assert keys == {f"incident:{incident.pk}"}  # the resolved one never goes first


def test_bulk_open_and_resolve_mail_every_incident() -> None:
    rule = _rule("bulk", min_severity=Incident.Severity.WARNING)
    stations = [ChargingStation.objects.create(identity=f"ALERT-B{n}") for n in range(3)]
    opened = services.incidents_open(
        type=IncidentType.STATION_OFFLINE,
        findings=[
            {
                "fingerprint": f"station_offline:{s.pk}",
                "station_id": s.pk,
                "severity": Incident.Severity.ERROR,
                "title": f"{s.identity} offline",
            }
            for s in stations
        ],
        now=NOON,
    )
    services.incidents_resolve(incident_ids=[i.pk for i in opened], now=NOON)
    subjects = [mail["subject"] for mail in _mails(rule)]
    assert len(subjects) == 6
    assert sum(s.startswith("Resolved: ") for s in subjects) == 3


def test_a_rolled_back_incident_writes_no_mail() -> None:
    station = ChargingStation.objects.create(identity="ALERT-3")
    rule = _rule("ops")

    def open_then_fail() -> None:
        with transaction.atomic():
            _open(station, severity=Incident.Severity.ERROR)
            raise RuntimeError("the pass failed after opening")

    with pytest.raises(RuntimeError):
        open_then_fail()
    assert _mails(rule) == []
    assert not Incident.objects.filter(station=station).exists()


def test_quiet_hours_hold_all_but_critical_and_send_one_summary_after() -> None:
    station = ChargingStation.objects.create(identity="ALERT-4")
    other = ChargingStation.objects.create(identity="ALERT-5")
    rule = _rule(
        "night",
        min_severity=Incident.Severity.WARNING,
        quiet_start=time(22, 0),
        quiet_end=time(7, 0),  # over midnight, in Amsterdam
        time_zone="Europe/Amsterdam",
    )
    assert rule.is_quiet(NIGHT)
    assert not rule.is_quiet(NOON)

    warning = _open(station, severity=Incident.Severity.WARNING, now=NIGHT)
    critical = _open(other, severity=Incident.Severity.CRITICAL, type_="station_offline", now=NIGHT)
    services.incident_resolve(incident_id=warning.pk, now=NIGHT + timedelta(minutes=5))
    [mail] = _mails(rule)  # the critical one, at once
    assert "ALERT-5" in mail["subject"]
    assert HeldAlert.objects.filter(rule=rule, summarised_at__isnull=True).count() == 2

    # Still inside the window (05:00 in Amsterdam): nothing yet.
    assert alert_summaries_send(now=datetime(2026, 1, 16, 4, 0, tzinfo=UTC)) == 0
    assert len(_mails(rule)) == 1
    # 07:00 in Amsterdam: one summary of both held alerts, then nothing more.
    after = datetime(2026, 1, 16, 6, 0, tzinfo=UTC)
    assert alert_summaries_send(now=after) == 1
    assert alert_summaries_send(now=after + timedelta(minutes=1)) == 0
    _, summary = _mails(rule)
    assert summary["subject"] == "2 incident alerts held during quiet hours (night)"
    assert f"#{warning.pk}" in summary["text"]
    assert "opened" in summary["text"]
    assert "resolved" in summary["text"]
    assert "ALERT-4" in summary["text"]
    assert f"#{critical.pk}" not in summary["text"]
    assert not HeldAlert.objects.filter(summarised_at__isnull=True).exists()


def test_quiet_hours_inside_one_day() -> None:
    rule = AlertRule(
        name="lunch",
        recipients="x@example.com",
        quiet_start=time(12, 0),
        quiet_end=time(14, 0),
        time_zone="Europe/Amsterdam",
    )
    assert rule.is_quiet(NOON)  # 13:00 there
    assert not rule.is_quiet(NOON + timedelta(hours=1))  # 14:00 there: over
    assert not rule.is_quiet(NOON - timedelta(hours=1, minutes=1))  # 11:59 there


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({"recipients": ""}, "recipients"),
        ({"recipients": "ops@example.com, not-an-address"}, "recipients"),
        ({"incident_types": ["no_such_type"]}, "incident_types"),
        ({"quiet_start": time(22, 0)}, "quiet_end"),
        ({"quiet_start": time(22, 0), "quiet_end": time(22, 0)}, "quiet_end"),
        ({"time_zone": "Mars/Olympus"}, "time_zone"),
    ],
)
def test_a_bad_rule_is_refused_at_save(fields, field) -> None:
    values = {"name": "bad", "recipients": "ops@example.com", **fields}
    with pytest.raises(ValidationError) as refused:
        AlertRule(**values).save()
    assert field in refused.value.message_dict
    assert not AlertRule.objects.exists()

"""Incidents in the REST API v1: filters, cursor pages, the timeline, acknowledge per role."""

from __future__ import annotations

import pytest

from stations.models import ChargingStation
from stations.monitoring import services
from stations.monitoring.models import Incident, IncidentType
from tests.apiv1 import bearer, errors, staff, walk

pytestmark = pytest.mark.django_db


def _incidents(station: ChargingStation, count: int) -> list[Incident]:
    return [
        services.incident_open_or_touch(
            type=IncidentType.CONNECTOR_FAULTED,
            fingerprint=f"api:{station.pk}:{n}",
            station_id=station.pk,
            severity=Incident.Severity.ERROR if n % 2 else Incident.Severity.WARNING,
            title=f"{station.identity} fault {n}",
            details={"vendor_error_code": f"E-{n}"},
        )[0]
        for n in range(count)
    ]


def test_every_role_lists_incidents_with_filters_and_stable_pages(roles) -> None:  # noqa: ARG001
    here = ChargingStation.objects.create(identity="API-INC-1", protocol="ocpp1.6")
    there = ChargingStation.objects.create(identity="API-INC-2", protocol="ocpp1.6")
    mine = _incidents(here, 7)
    _incidents(there, 2)
    services.incident_resolve(incident_id=mine[0].pk)

    for role in ("Operators", "Finance", "Support"):
        client = bearer(staff(f"inc-{role.lower()}", role))
        rows = walk(client, "/api/v1/incidents/", station="API-INC-1", page_size=2)
        assert [row["id"] for row in rows] == sorted((i.pk for i in mine), reverse=True)
        open_errors = client.get(
            "/api/v1/incidents/", {"station": "API-INC-1", "state": "open", "severity": "error"}
        ).json()["results"]
        assert {row["title"] for row in open_errors} == {f"API-INC-1 fault {n}" for n in (1, 3, 5)}
    assert bearer(None).get("/api/v1/incidents/").status_code == 401


def test_the_detail_has_the_timeline_and_operators_acknowledge(roles) -> None:  # noqa: ARG001
    station = ChargingStation.objects.create(identity="API-INC-3", protocol="ocpp1.6")
    (incident,) = _incidents(station, 1)
    support = bearer(staff("inc-support", "Support"))
    operator = bearer(staff("inc-operator", "Operators"))
    url = f"/api/v1/incidents/{incident.pk}/"

    detail = support.get(url).json()
    assert detail["station"] == "API-INC-3"
    assert detail["details"] == {"vendor_error_code": "E-0"}
    assert [entry["kind"] for entry in detail["timeline"]] == ["detected"]

    refused = support.post(f"{url}acknowledge/", {"note": "on it"}, format="json")
    assert refused.status_code == 403
    assert errors(refused) == [(None, "permission_denied")]

    done = operator.post(f"{url}acknowledge/", {"note": "on it"}, format="json")
    assert done.status_code == 200
    assert done.json()["state"] == "acknowledged"
    assert done.json()["acknowledged_by"] == "inc-operator"
    assert done.json()["timeline"][-1]["message"] == "acknowledged by inc-operator: on it"

    again = operator.post(f"{url}acknowledge/", {}, format="json")
    assert again.status_code == 409
    assert errors(again) == [(None, "not_open")]
    assert operator.get("/api/v1/incidents/999999/").status_code == 404

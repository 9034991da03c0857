"""/api/v1/ of the network: sites, stations by identity (create, update, password, registration),
EVSEs, connectors, and commands and jobs by station identity."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import override_settings

from stations import services
from stations.commands.models import Command, Job
from stations.models import ChargingStation, Connector, Evse, Location
from tests.apiv1 import bearer, errors, staff, walk

pytestmark = pytest.mark.django_db

STRONG = "a-strong-station-pass"


@pytest.fixture
def operator(roles: None) -> Any:  # noqa: ARG001
    return bearer(staff("olga", "Operators"))


@pytest.fixture
def support(roles: None) -> Any:  # noqa: ARG001
    return bearer(staff("sam", "Support"))


@pytest.fixture
def finance(roles: None) -> Any:  # noqa: ARG001
    return bearer(staff("finn", "Finance"))


def admits(identity: str, password: str) -> bool:
    return services.station_admit(
        identity=identity, basic_auth=(identity, password), cert_identity=None
    ).accepted


# --- stations -------------------------------------------------------------------------------------


def test_cursor_pages_neither_repeat_nor_skip_rows_inserted_during_the_walk(operator: Any) -> None:
    for n in range(7):
        ChargingStation.objects.create(identity=f"CP-{n:02d}")
    seen: list[str] = []
    page = operator.get("/api/v1/stations/", {"page_size": 3}).json()
    assert page["previous"] is None
    inserted = 0
    while True:
        seen += [row["identity"] for row in page["results"]]
        # Rows arrive while the client walks: before and after its position.
        ChargingStation.objects.create(identity=f"CP-00-{inserted}")
        ChargingStation.objects.create(identity=f"CP-99-{inserted}")
        inserted += 1
        if not page["next"]:
            break
        page = operator.get(page["next"]).json()
    assert len(seen) == len(set(seen))
    assert {f"CP-{n:02d}" for n in range(7)} <= set(seen)
    assert seen == sorted(seen)
    assert "offset" not in str(page)


def test_stations_filter_and_order(operator: Any) -> None:
    site = Location.objects.create(name="Depot")
    ChargingStation.objects.create(identity="AA-1", location=site, protocol="ocpp1.6")
    ChargingStation.objects.create(identity="BB-2", protocol="ocpp2.0.1", is_online=True)
    ChargingStation.objects.create(identity="CC-3", registration_status="Pending")

    def identities(**params: Any) -> list[str]:
        return [row["identity"] for row in walk(operator, "/api/v1/stations/", **params)]

    assert identities() == ["AA-1", "BB-2", "CC-3"]
    assert identities(ordering="-identity") == ["CC-3", "BB-2", "AA-1"]
    assert identities(protocol="ocpp2.0.1") == ["BB-2"]
    assert identities(location=site.pk) == ["AA-1"]
    assert identities(registration_status="Pending") == ["CC-3"]
    assert identities(is_online="true") == ["BB-2"]
    assert identities(identity="b-2") == ["BB-2"]
    bad = operator.get("/api/v1/stations/", {"protocol": "ocpp9"})
    assert bad.status_code == 400
    assert errors(bad) == [("protocol", "invalid_choice")]


def test_a_station_is_addressed_by_its_identity(support: Any) -> None:
    station = ChargingStation.objects.create(identity="DEMO-16")
    services.station_evses_create(station=station, count=2)
    detail = support.get("/api/v1/stations/DEMO-16/").json()
    assert detail["id"] == station.pk
    assert [evse["evse_id"] for evse in detail["evses"]] == [1, 2]
    assert detail["evses"][0]["connectors"][0]["connector_id"] == 1
    assert "password_hash" not in detail
    assert detail["has_password"] is False
    assert errors(support.get("/api/v1/stations/NOPE/")) == [(None, "not_found")]


def test_an_operator_creates_a_station_with_protocol_password_and_connectors(
    operator: Any, support: Any
) -> None:
    site = Location.objects.create(name="Depot")
    body = {
        "identity": "NEW-201",
        "protocol": "ocpp2.0.1",
        "location": site.pk,
        "password": STRONG,
        "connector_count": 2,
        "registration_status": "Pending",
    }
    assert support.post("/api/v1/stations/", body, format="json").status_code == 403
    made = operator.post("/api/v1/stations/", body, format="json")
    assert made.status_code == 201, made.json()
    assert "password" not in made.json()
    station = ChargingStation.objects.get(identity="NEW-201")
    assert (station.protocol, station.location, station.registration_status) == (
        "ocpp2.0.1",
        site,
        "Pending",
    )
    assert Connector.objects.filter(station=station).count() == 2
    assert STRONG not in station.password_hash
    assert admits("NEW-201", STRONG)
    assert not admits("NEW-201", "wrong-wrong-wrong-wrong")


def test_station_create_errors_name_their_fields(operator: Any) -> None:
    ChargingStation.objects.create(identity="TAKEN")

    def refused(body: dict[str, Any]) -> list[tuple[str | None, str]]:
        response = operator.post("/api/v1/stations/", body, format="json")
        assert response.status_code == 400
        return errors(response)

    assert refused({}) == [("identity", "required")]
    assert refused({"identity": "a/b"}) == [("identity", "invalid")]
    assert refused({"identity": "TAKEN"}) == [("identity", "unique")]
    assert refused({"identity": "X", "protocol": "ocpp9"}) == [("protocol", "invalid_choice")]
    assert refused({"identity": "X", "location": 999999}) == [("location", "does_not_exist")]
    short = operator.post("/api/v1/stations/", {"identity": "X", "password": "8-chars!"})
    [item] = short.json()["errors"]
    assert (item["field"], item["code"]) == ("password", "min_length")
    assert "OCPP_STATION_PASSWORD_MIN_LENGTH" in item["message"]
    assert not ChargingStation.objects.filter(identity="X").exists()


@override_settings(OCPP_STATION_PASSWORD_MIN_LENGTH=8)
def test_the_password_minimum_is_the_setting(operator: Any) -> None:
    """Legacy 1.6 chargers that ship with 8-character passwords (issue 18)."""
    made = operator.post(
        "/api/v1/stations/", {"identity": "LEGACY", "password": "8-chars!"}, format="json"
    )
    assert made.status_code == 201, made.json()
    assert admits("LEGACY", "8-chars!")


def test_a_password_is_set_or_rotated(operator: Any, support: Any) -> None:
    ChargingStation.objects.create(identity="ROT-1")
    url = "/api/v1/stations/ROT-1/password/"
    assert support.post(url, {"password": STRONG}, format="json").status_code == 403
    set_ = operator.post(url, {"password": STRONG}, format="json")
    assert set_.json() == {"identity": "ROT-1", "password": None}
    assert admits("ROT-1", STRONG)
    rotated = operator.post(url, {"rotate": True}, format="json").json()["password"]
    assert len(rotated) == 32
    assert admits("ROT-1", rotated)
    assert not admits("ROT-1", STRONG)
    assert errors(operator.post(url, {}, format="json")) == [(None, "one_of")]
    both = operator.post(url, {"password": STRONG, "rotate": True}, format="json")
    assert errors(both) == [(None, "one_of")]
    assert errors(operator.post(url, {"password": "short"}, format="json")) == [
        ("password", "min_length")
    ]
    assert admits("ROT-1", rotated)


def test_a_station_is_accepted_or_set_back_to_pending(operator: Any, finance: Any) -> None:
    ChargingStation.objects.create(identity="REG-1")
    url = "/api/v1/stations/REG-1/registration/"
    assert finance.post(url, {"registration_status": "Pending"}).status_code == 403
    pending = operator.post(url, {"registration_status": "Pending"}, format="json")
    assert pending.json()["registration_status"] == "Pending"
    assert ChargingStation.objects.get(identity="REG-1").registration_status == "Pending"
    boot = services.station_booted(
        station_id=ChargingStation.objects.get(identity="REG-1").pk,
        vendor="ACME",
        model="X",
    )
    assert boot.status == "Pending"
    operator.post(url, {"registration_status": "Accepted"}, format="json")
    assert ChargingStation.objects.get(identity="REG-1").registration_status == "Accepted"
    assert errors(operator.post(url, {"registration_status": "Maybe"}, format="json")) == [
        ("registration_status", "invalid_choice")
    ]


def test_an_operator_updates_a_station(operator: Any, support: Any) -> None:
    ChargingStation.objects.create(identity="UPD-1")
    site = Location.objects.create(name="Depot")
    url = "/api/v1/stations/UPD-1/"
    assert support.patch(url, {"heartbeat_interval": 60}, format="json").status_code == 403
    changed = operator.patch(
        url, {"location": site.pk, "heartbeat_interval": 60, "protocol": "ocpp1.6"}, format="json"
    )
    assert changed.status_code == 200, changed.json()
    station = ChargingStation.objects.get(identity="UPD-1")
    assert (station.location, station.heartbeat_interval, station.protocol) == (
        site,
        60,
        "ocpp1.6",
    )
    assert errors(operator.patch(url, {"heartbeat_interval": 1}, format="json")) == [
        ("heartbeat_interval", "min_value")
    ]


# --- sites, EVSEs, connectors ---------------------------------------------------------------


def test_sites_are_created_updated_and_checked(operator: Any, support: Any) -> None:
    made = operator.post(
        "/api/v1/locations/",
        {"name": "Harbour", "city": "Rotterdam", "country": "NLD", "latitude": "51.9"},
        format="json",
    )
    assert made.status_code == 201, made.json()
    site = made.json()["id"]
    assert support.patch(f"/api/v1/locations/{site}/", {"name": "x"}).status_code == 403
    renamed = operator.patch(f"/api/v1/locations/{site}/", {"name": "Port"}, format="json")
    assert renamed.json()["name"] == "Port"
    assert Location.objects.get(pk=site).name == "Port"
    bad = operator.post(
        "/api/v1/locations/",
        {"name": "Nowhere", "country": "ZZZ", "latitude": "91", "time_zone": "Mars/Base"},
        format="json",
    )
    assert {field for field, _code in errors(bad)} == {"country", "latitude"}
    zone = operator.patch(f"/api/v1/locations/{site}/", {"time_zone": "Mars/Base"}, format="json")
    assert [field for field, _code in errors(zone)] == ["time_zone"]
    assert Location.objects.get(pk=site).time_zone == "Europe/Amsterdam"
    found = walk(support, "/api/v1/locations/", city="rotter")
    assert [row["name"] for row in found] == ["Port"]


def test_evses_and_connectors_are_listed_per_station(support: Any) -> None:
    for identity in ("E-1", "E-2"):
        services.station_evses_create(
            station=ChargingStation.objects.create(identity=identity), count=2
        )
    evses = walk(support, "/api/v1/evses/", station="E-2")
    assert [(row["station"], row["evse_id"]) for row in evses] == [("E-2", 1), ("E-2", 2)]
    evse = Evse.objects.get(station__identity="E-1", evse_id=2)
    assert support.get(f"/api/v1/evses/{evse.pk}/").json()["uid"] == "E-1-2"
    connectors = walk(support, "/api/v1/connectors/", station="E-1", evse_id=2)
    assert [(row["station"], row["evse_id"]) for row in connectors] == [("E-1", 2)]
    connector = connectors[0]["id"]
    assert support.get(f"/api/v1/connectors/{connector}/").json()["connector_id"] == 1


# --- commands and jobs by station identity -------------------------------------------------------


def test_commands_are_sent_and_listed_by_station_identity(operator: Any, support: Any) -> None:
    ChargingStation.objects.create(identity="CMD-1", protocol="ocpp1.6")
    ChargingStation.objects.create(identity="CMD-2", protocol="ocpp1.6")
    url = "/api/v1/stations/CMD-1/commands/"
    queued = operator.post(url, {"verb": "clear_cache"}, format="json")
    assert queued.status_code == 202, queued.json()
    assert queued.json()["station_identity"] == "CMD-1"
    reset = {"verb": "reset", "params": {"type": "soft"}}
    assert support.post(url, reset, format="json").status_code == 403
    asked = support.post(
        url,
        {"verb": "trigger_message", "params": {"message": "StatusNotification"}},
        format="json",
    )
    assert asked.status_code == 202
    operator.post("/api/v1/stations/CMD-2/commands/", {"verb": "clear_cache"}, format="json")
    rows = walk(support, "/api/v1/commands/", station="CMD-1")
    assert [row["action"] for row in rows] == ["TriggerMessage", "ClearCache"]
    assert len(walk(support, "/api/v1/commands/", action="ClearCache")) == 2
    assert len(walk(support, "/api/v1/commands/", station="CMD-1", ordering="id")) == 2
    assert Command.objects.filter(station__identity="CMD-2").count() == 1
    invalid = operator.post(url, {"verb": "clear_cache", "action": "ClearCache"}, format="json")
    assert errors(invalid) == [(None, "invalid")]
    missing = operator.post("/api/v1/stations/NOPE/commands/", {"verb": "clear_cache"})
    assert missing.status_code == 404


def test_jobs_are_created_for_stations_by_identity(operator: Any, support: Any) -> None:
    for identity in ("JOB-1", "JOB-2", "JOB-3"):
        ChargingStation.objects.create(identity=identity, protocol="ocpp1.6")
    body = {"kind": "diagnostics", "station_identities": ["JOB-1", "JOB-3"]}
    assert support.post("/api/v1/jobs/", body, format="json").status_code == 403
    made = operator.post("/api/v1/jobs/", body, format="json")
    assert made.status_code == 201, made.json()
    job = Job.objects.get(pk=made.json()["id"])
    assert sorted(job.targets.values_list("station__identity", flat=True)) == ["JOB-1", "JOB-3"]
    assert [row["id"] for row in walk(support, "/api/v1/jobs/", station="JOB-3")] == [job.pk]
    assert walk(support, "/api/v1/jobs/", station="JOB-2") == []
    unknown = operator.post(
        "/api/v1/jobs/", {"kind": "diagnostics", "station_identities": ["NOPE"]}, format="json"
    )
    assert errors(unknown) == [("station_identities", "not_found")]
    cancelled = operator.post(f"/api/v1/jobs/{job.pk}/cancel/")
    assert cancelled.json()["status"] == "cancelled"

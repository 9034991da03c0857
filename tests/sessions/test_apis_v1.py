"""/api/v1/ of charging: sessions and their meter samples, tokens (create, change), drivers and
accounts: filters, ordering, cursor pages, errors in the one shape."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from sessions import services
from sessions.models import ChargingSession, IdToken, MeterSample
from stations.models import ChargingStation, Location
from tests.apiv1 import bearer, errors, staff, walk
from tests.billing.conftest import make_account, make_ended_session, make_tariff, make_token

pytestmark = pytest.mark.django_db

START = dt.datetime(2026, 3, 2, 8, tzinfo=dt.UTC)


@pytest.fixture
def operator(roles: None) -> Any:  # noqa: ARG001
    return bearer(staff("olga", "Operators"))


@pytest.fixture
def finance(roles: None) -> Any:  # noqa: ARG001
    return bearer(staff("finn", "Finance"))


@pytest.fixture
def support(roles: None) -> Any:  # noqa: ARG001
    return bearer(staff("sam", "Support"))


@pytest.fixture
def charged() -> dict[str, Any]:
    account = make_account("Fleet")
    token = make_token(account, "04AABBCCDD")
    tariff = make_tariff()
    stations = [ChargingStation.objects.create(identity=f"S-{n}") for n in (1, 2)]
    sessions = [
        make_ended_session(stations[n % 2], token, tariff, start=START + dt.timedelta(hours=n))
        for n in range(5)
    ]
    return {"account": account, "token": token, "stations": stations, "sessions": sessions}


def test_sessions_filter_order_and_page(finance: Any, charged: dict[str, Any]) -> None:
    sessions = charged["sessions"]
    everything = walk(finance, "/api/v1/sessions/", page_size=2)
    assert [row["id"] for row in everything] == [s.pk for s in reversed(sessions)]
    oldest_first = walk(finance, "/api/v1/sessions/", ordering="started_at", page_size=2)
    assert [row["id"] for row in oldest_first] == [s.pk for s in sessions]
    at_s2 = walk(finance, "/api/v1/sessions/", station="S-2")
    assert {row["station"] for row in at_s2} == {"S-2"}
    assert len(at_s2) == 2
    window = walk(
        finance,
        "/api/v1/sessions/",
        started_after=(START + dt.timedelta(hours=1)).isoformat(),
        started_before=(START + dt.timedelta(hours=3)).isoformat(),
    )
    assert [row["id"] for row in window] == [sessions[2].pk, sessions[1].pk]
    ChargingSession.objects.filter(pk=sessions[0].pk).update(anomalies=["meter went back"])
    assert [row["id"] for row in walk(finance, "/api/v1/sessions/", flagged="true")] == [
        sessions[0].pk
    ]
    assert len(walk(finance, "/api/v1/sessions/", id_token=charged["token"].pk)) == 5
    bad = finance.get("/api/v1/sessions/", {"started_after": "yesterday"})
    assert errors(bad) == [("started_after", "invalid")]
    detail = finance.get(f"/api/v1/sessions/{sessions[0].pk}/").json()
    assert detail["energy_wh"] == "10000.000"
    assert detail["station"] == "S-1"


def test_the_meter_samples_of_a_session(support: Any, charged: dict[str, Any]) -> None:
    session = charged["sessions"][0]
    url = f"/api/v1/sessions/{session.pk}/samples/"
    rows = walk(support, url, page_size=2)
    assert len(rows) == 5
    assert [row["timestamp"] for row in rows] == sorted(row["timestamp"] for row in rows)
    assert rows[0]["value"] == "1000.000000"
    MeterSample.objects.create(
        session=session,
        station=session.station,
        timestamp=START + dt.timedelta(minutes=61),
        value=11000,
        after_stop=True,
    )
    late = walk(support, url, after_stop="true")
    assert len(late) == 1
    assert errors(support.get("/api/v1/sessions/999999/samples/")) == [(None, "not_found")]


def test_tokens_are_created_changed_and_filtered(
    operator: Any, support: Any, charged: dict[str, Any]
) -> None:
    site = Location.objects.create(name="Depot")
    body = {"uid": "04A1B2C3", "visual_number": "NL-1", "account": charged["account"].pk}
    assert support.post("/api/v1/tokens/", body, format="json").status_code == 403
    made = operator.post("/api/v1/tokens/", body, format="json")
    assert made.status_code == 201, made.json()
    token_id = made.json()["id"]
    url = f"/api/v1/tokens/{token_id}/"
    assert support.patch(url, {"visual_number": "x"}, format="json").status_code == 403
    changed = operator.patch(
        url,
        {"visual_number": "NL-2", "allowed_locations": [site.pk], "max_concurrent_sessions": 1},
        format="json",
    )
    assert changed.status_code == 200, changed.json()
    token = IdToken.objects.get(pk=token_id)
    assert (token.visual_number, list(token.allowed_locations.all())) == ("NL-2", [site])
    # uid and type never change: the update serializer has no such fields.
    operator.patch(url, {"uid": "FFFFFFFF"}, format="json")
    assert IdToken.objects.get(pk=token_id).uid == "04A1B2C3"
    assert errors(operator.patch(url, {"max_concurrent_sessions": 0}, format="json")) == [
        ("max_concurrent_sessions", "min_value")
    ]
    duplicate = operator.post("/api/v1/tokens/", {"uid": "04a1b2c3"}, format="json")
    assert duplicate.status_code == 400
    assert [field for field, _code in errors(duplicate)] == [None]
    assert "already exists" in duplicate.json()["errors"][0]["message"]
    assert [row["uid"] for row in walk(support, "/api/v1/tokens/", q="a1b2")] == ["04A1B2C3"]
    blocked = operator.post(f"/api/v1/tokens/{token_id}/block/", {"reason": "lost"})
    assert blocked.json()["blocked"] is True
    assert [row["id"] for row in walk(support, "/api/v1/tokens/", blocked="true")] == [token_id]
    unknown = support.get("/api/v1/tokens/", {"account": 999999})
    assert errors(unknown) == [("account", "invalid_choice")]


def test_drivers_and_accounts_are_listed_and_filtered(
    support: Any, charged: dict[str, Any]
) -> None:
    other = make_account("Other")
    services.driver_create(account=charged["account"], name="Dana", reference="D-1")
    services.driver_create(account=other, name="Eli", reference="D-2")
    drivers = walk(support, "/api/v1/drivers/", account=charged["account"].pk)
    assert [row["name"] for row in drivers] == ["Dana"]
    assert [row["name"] for row in walk(support, "/api/v1/drivers/", name="el")] == ["Eli"]
    dana = drivers[0]["id"]
    assert support.get(f"/api/v1/drivers/{dana}/").json()["reference"] == "D-1"
    names = [row["name"] for row in walk(support, "/api/v1/accounts/", ordering="-name")]
    assert names == ["Other", "Fleet"]
    assert support.get(f"/api/v1/accounts/{other.pk}/").json()["name"] == "Other"

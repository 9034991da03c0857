"""REST API for tokens, drivers and accounts: token authentication and role permissions."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from sessions import services
from sessions.models import Driver, IdToken
from stations.models import Location

pytestmark = pytest.mark.django_db


def api(user: Any | None) -> APIClient:
    client = APIClient()
    if user is not None:
        key = Token.objects.create(user=user).key
        client.credentials(HTTP_AUTHORIZATION=f"Token {key}")
    return client


def test_operator_manages_tokens(
    operator: Any, account: Any, token_changes: Any, django_capture_on_commit_callbacks: Any
) -> None:
    client = api(operator)
    site = Location.objects.create(name="Depot")
    driver = services.driver_create(account=account, name="Dana", reference="D-1")

    with django_capture_on_commit_callbacks(execute=True):
        created = client.post(
            "/api/tokens/create/",
            {
                "uid": "04A1B2C3",
                "type": "ISO14443",
                "visual_number": "NL-ACM-000001",
                "driver": driver.pk,
                "valid_until": "2031-01-01T00:00:00Z",
                "allowed_locations": [site.pk],
                "max_concurrent_sessions": 1,
            },
            format="json",
        )
    assert created.status_code == 201, created.json()
    body = created.json()
    token_id = body["id"]
    assert body["account"] == account.pk  # the driver's account pays
    assert body["allowed_locations"] == [site.pk]
    assert token_changes.calls == [[token_id]]

    duplicate = client.post("/api/tokens/create/", {"uid": "04a1b2c3"}, format="json")
    assert duplicate.status_code == 400
    assert "already exists" in str(duplicate.json())
    bad = client.post("/api/tokens/create/", {"uid": "not-hex!"}, format="json")
    assert bad.status_code == 400
    assert [e["field"] for e in bad.json()["errors"]] == ["uid"]

    found = client.get("/api/tokens/", {"q": "04a1"}).json()
    assert [t["uid"] for t in found["results"]] == ["04A1B2C3"]
    assert client.get("/api/tokens/", {"q": "ACM-000001"}).json()["count"] == 1
    assert client.get("/api/tokens/", {"blocked": "true"}).json()["count"] == 0

    with django_capture_on_commit_callbacks(execute=True):
        updated = client.post(
            f"/api/tokens/{token_id}/update/",
            {"valid_until": None, "allowed_locations": []},
            format="json",
        )
    assert updated.status_code == 200
    assert updated.json()["valid_until"] is None
    assert updated.json()["allowed_locations"] == []

    with django_capture_on_commit_callbacks(execute=True):
        blocked = client.post(f"/api/tokens/{token_id}/block/", {"reason": "lost"}, format="json")
    assert blocked.status_code == 200
    assert blocked.json()["blocked"] is True
    assert blocked.json()["blocked_reason"] == "lost"
    assert token_changes.calls[-1] == [token_id]

    unblocked = client.post(f"/api/tokens/{token_id}/unblock/")
    assert unblocked.json()["blocked"] is False

    assert client.get(f"/api/tokens/{token_id}/").json()["uid"] == "04A1B2C3"
    assert client.post(f"/api/tokens/{token_id}/delete/").status_code == 204
    assert not IdToken.objects.exists()


def test_support_reads_but_cannot_write(support: Any, account: Any) -> None:
    token = services.id_token_create(uid="04A1B2C3", account=account)
    client = api(support)
    assert client.get("/api/tokens/").status_code == 200
    assert client.get(f"/api/tokens/{token.pk}/").status_code == 200
    assert client.get("/api/accounts/").status_code == 200
    assert client.post("/api/tokens/create/", {"uid": "04FFFFFF"}, format="json").status_code == 403
    assert client.post(f"/api/tokens/{token.pk}/block/").status_code == 403
    assert (
        client.post(
            f"/api/tokens/{token.pk}/update/", {"visual_number": "x"}, format="json"
        ).status_code
        == 403
    )
    assert client.post(f"/api/tokens/{token.pk}/delete/").status_code == 403
    assert (
        client.post(
            "/api/drivers/create/", {"account": account.pk, "name": "X"}, format="json"
        ).status_code
        == 403
    )
    token.refresh_from_db()
    assert not token.blocked
    assert token.visual_number == ""


def test_no_role_no_access_and_no_credentials_401(account: Any) -> None:
    from django.contrib.auth import get_user_model

    nobody = get_user_model().objects.create_user(username="nobody", password="x-long-pass-1")
    assert api(nobody).get("/api/tokens/").status_code == 403
    assert api(None).get("/api/tokens/").status_code == 401


def test_accounts_and_drivers(
    operator: Any, token_changes: Any, django_capture_on_commit_callbacks: Any
) -> None:
    client = api(operator)
    account = client.post(
        "/api/accounts/create/",
        {
            "name": "Blue Fleet",
            "reference": "BLUE",
            "kind": "company",
            "legal_name": "Blue Fleet GmbH",
            "country": "DE",
            "vat_id": "DE123456789",
            "currency": "EUR",
            "billing_period": "monthly",
        },
        format="json",
    )
    assert account.status_code == 201, account.json()
    account_id = account.json()["id"]
    assert (
        client.post(
            "/api/accounts/create/", {"name": "x", "currency": "euro"}, format="json"
        ).status_code
        == 400
    )

    driver = client.post(
        "/api/drivers/create/",
        {
            "account": account_id,
            "name": "Eve",
            "reference": "E-1",
            "email": "eve@blue.invalid",
        },
        format="json",
    )
    assert driver.status_code == 201
    driver_id = driver.json()["id"]
    token = services.id_token_create(uid="04EEEE01", driver=Driver.objects.get(pk=driver_id))
    assert token.account_id == account_id

    found = client.get("/api/drivers/", {"q": "04eeee"}).json()
    assert [d["name"] for d in found["results"]] == ["Eve"]
    assert found["results"][0]["token_count"] == 1
    assert client.get("/api/accounts/", {"q": "BLUE"}).json()["count"] == 1

    with django_capture_on_commit_callbacks(execute=True):
        deactivated = client.post(
            f"/api/accounts/{account_id}/update/", {"is_active": False}, format="json"
        )
    assert deactivated.json()["is_active"] is False
    assert token_changes.calls[-1] == [token.pk]
    decision = services.authorization_decide(uid="04EEEE01", context="Authorize")
    assert (decision.status, decision.reason) == ("Blocked", f"account {account_id} inactive")

    sessions = client.get(f"/api/drivers/{driver_id}/sessions/")
    assert sessions.status_code == 200
    assert sessions.json()["count"] == 0


def test_sessions_carry_what_the_integrity_checks_found(support: Any) -> None:
    import datetime as dt
    from decimal import Decimal

    from sessions.models import ChargingSession, MeterSample
    from stations.models import ChargingStation

    station = ChargingStation.objects.create(identity="CP-API-1")
    start = dt.datetime(2026, 10, 1, 10, tzinfo=dt.UTC)
    flagged = ChargingSession.objects.create(
        station=station,
        transaction_id="1",
        status="completed",
        started_at=start,
        ended_at=start + dt.timedelta(hours=1),
        energy_wh=Decimal(4000),
        rating_status="needs_review",
        is_estimated=True,
        sample_conflicts=2,
        anomalies=["started with a Blocked token: held for review, not billed"],
    )
    MeterSample.objects.create(
        session=flagged, station=station, timestamp=start, value=Decimal(1), after_stop=True
    )
    clean = ChargingSession.objects.create(
        station=station, transaction_id="2", started_at=start - dt.timedelta(days=1)
    )
    client = api(support)  # read-only role: may read sessions
    listed = client.get("/api/sessions/")
    assert listed.status_code == 200, listed.json()
    rows = {row["id"]: row for row in listed.json()["results"]}
    assert rows[flagged.pk]["needs_review"] is True
    assert rows[flagged.pk]["is_estimated"] is True
    assert rows[flagged.pk]["sample_conflicts"] == 2
    assert rows[flagged.pk]["samples_after_stop"] == 1
    assert rows[flagged.pk]["anomalies"] == flagged.anomalies
    assert rows[clean.pk]["anomalies"] == []
    only_flagged = client.get("/api/sessions/", {"flagged": "true"}).json()["results"]
    assert [row["id"] for row in only_flagged] == [flagged.pk]
    review = client.get("/api/sessions/", {"needs_review": "true"}).json()["results"]
    assert [row["id"] for row in review] == [flagged.pk]
    detail = client.get(f"/api/sessions/{flagged.pk}/").json()
    assert (detail["energy_wh"], detail["samples_after_stop"]) == ("4000.000", 1)
    assert api(None).get("/api/sessions/").status_code in (401, 403)


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        ("/api/accounts/create/", {"name": "Z", "country": "ZZ"}, "country"),
        ("/api/accounts/create/", {"name": "Z", "country": "nl"}, "country"),
        ("/api/accounts/create/", {"name": "Z", "country_code": "XX"}, "country_code"),
        (
            "/api/tokens/create/",
            {"uid": "EMSP-1", "type": "Central", "issuer_country_code": "ZZ"},
            "issuer_country_code",
        ),
    ],
)
def test_country_codes_are_checked_against_iso_3166(
    operator: Any, account: Any, path: str, body: dict[str, Any], field: str
) -> None:
    """Issue 20, finding 15: the API took country "ZZ"."""
    response = api(operator).post(path, body, format="json")
    assert response.status_code == 400, response.json()
    [error] = response.json()["errors"]
    assert (error["field"], error["code"]) == (field, "country")
    assert "ISO 3166-1 alpha-2" in error["message"]


def test_a_real_country_is_taken_and_an_update_to_a_fake_one_refused(
    operator: Any, account: Any
) -> None:
    client = api(operator)
    created = client.post(
        "/api/accounts/create/", {"name": "Island", "country": "IS"}, format="json"
    )
    assert created.status_code == 201, created.json()
    url = f"/api/accounts/{created.json()['id']}/update/"
    assert client.post(url, {"country": "ZZ"}, format="json").status_code == 400
    assert client.post(url, {"country": "BE"}, format="json").json()["country"] == "BE"


def test_the_models_check_countries_too() -> None:
    """Whatever writes them (panel, import, services): alpha-2 for accounts and tokens, alpha-3
    for locations (OCPI 2.2.1's Location.country)."""
    from django.core.exceptions import ValidationError

    from sessions.models import CustomerAccount

    with pytest.raises(ValidationError) as refused:
        CustomerAccount(name="Z", country="ZZ").full_clean()
    assert set(refused.value.message_dict) == {"country"}
    with pytest.raises(ValidationError) as refused:
        Location(name="Nowhere", country="NL").full_clean()
    assert set(refused.value.message_dict) == {"country"}
    Location(name="Depot", country="NLD").full_clean()

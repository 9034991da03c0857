"""The Tokens module as receiver: the eMSP's PUT, PATCH and GET, keyed by country, party,
uid and type; every bad body is 2001 and changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.test import Client

from roaming.models import EmspToken, OurParty, Partner
from tests.roaming.conftest import auth, envelope_of, put
from tests.roaming.test_locations import registered

pytestmark = pytest.mark.django_db

URL = "/ocpi/2.2.1/tokens/DE/MSP/04A1B2C3"


@pytest.fixture
def token(partner: Partner) -> str:
    return registered(partner)


def rfid(**changes: Any) -> dict[str, Any]:
    body = {
        "country_code": "DE",
        "party_id": "MSP",
        "uid": "04A1B2C3",
        "type": "RFID",
        "contract_id": "DE-MSP-C12345-6",
        "visual_number": "DF000-2001-8999",
        "issuer": "eMSP One",
        "valid": True,
        "whitelist": "ALLOWED",
        "last_updated": "2026-01-01T10:00:00Z",
    }
    body.update(changes)
    return body


def patch(client: Client, url: str, body: Any, token: str) -> Any:
    return client.patch(url, json.dumps(body), content_type="application/json", **auth(token))


def test_put_creates_then_replaces_and_get_returns_it(token: str) -> None:
    client = Client()
    created = put(client, URL, rfid(), **auth(token))
    assert (created.status_code, envelope_of(created)["status_code"]) == (201, 1000)
    replaced = put(
        client, URL, rfid(valid=False, last_updated="2026-01-02T10:00:00Z"), **auth(token)
    )
    assert replaced.status_code == 200
    stored = EmspToken.objects.get()
    assert (stored.valid, stored.contract_id, stored.whitelist) == (
        False,
        "DE-MSP-C12345-6",
        "ALLOWED",
    )
    got = envelope_of(client.get(URL, **auth(token)))["data"]
    assert got == rfid(valid=False, last_updated="2026-01-02T10:00:00Z")
    old = envelope_of(client.get("/ocpi/2.1.1/tokens/DE/MSP/04A1B2C3", **auth(token, b64=False)))
    assert old["data"]["auth_id"] == "DE-MSP-C12345-6"
    assert "country_code" not in old["data"]


def test_the_same_uid_of_another_type_is_another_token(token: str) -> None:
    client = Client()
    put(client, URL, rfid(), **auth(token))
    app = put(
        client, f"{URL}?type=APP_USER", rfid(type="APP_USER", whitelist="NEVER"), **auth(token)
    )
    assert app.status_code == 201
    assert EmspToken.objects.count() == 2
    assert (
        envelope_of(client.get(f"{URL}?type=APP_USER", **auth(token)))["data"]["whitelist"]
        == "NEVER"
    )
    assert envelope_of(client.get(URL, **auth(token)))["data"]["whitelist"] == "ALLOWED"


def test_patch_changes_fields_of_a_known_token_and_unknown_is_2004(token: str) -> None:
    client = Client()
    unknown = patch(client, URL, {"valid": False, "last_updated": "2026-01-02T00:00:00Z"}, token)
    assert (unknown.status_code, envelope_of(unknown)["status_code"]) == (404, 2004)
    put(client, URL, rfid(), **auth(token))
    done = patch(client, URL, {"valid": False, "last_updated": "2026-01-02T00:00:00Z"}, token)
    assert envelope_of(done)["status_code"] == 1000
    stored = EmspToken.objects.get()
    assert stored.valid is False
    assert stored.issuer == "eMSP One"
    without_date = patch(client, URL, {"valid": True}, token)
    assert envelope_of(without_date)["status_code"] == 2001
    moved = patch(client, URL, {"uid": "OTHER", "last_updated": "2026-01-03T00:00:00Z"}, token)
    assert envelope_of(moved)["status_code"] == 2001
    assert EmspToken.objects.get().valid is False


def test_an_unknown_token_get_is_2004(token: str) -> None:
    response = Client().get(URL, **auth(token))
    assert (response.status_code, envelope_of(response)["status_code"]) == (404, 2004)


@pytest.mark.parametrize(
    "body",
    [
        rfid(surprise=1),
        rfid(valid="yes"),
        rfid(whitelist="SOMETIMES"),
        rfid(type="FINGERPRINT"),
        rfid(contract_id="C" * 37),
        rfid(last_updated="yesterday"),
        rfid(uid="ANOTHER"),
        rfid(party_id="XYZ"),
        {k: v for k, v in rfid().items() if k != "issuer"},
        [rfid()],
    ],
)
def test_bad_tokens_are_2001_and_change_nothing(token: str, body: Any) -> None:
    response = put(Client(), URL, body, **auth(token))
    assert (response.status_code, envelope_of(response)["status_code"]) == (200, 2001)
    assert not EmspToken.objects.exists()


def test_malformed_json_is_400_in_the_envelope(token: str) -> None:
    response = Client().put(URL, "{oops", content_type="application/json", **auth(token))
    assert (response.status_code, envelope_of(response)["status_code"]) == (400, 2001)


def test_a_party_outside_the_partner_is_refused(token: str) -> None:
    url = "/ocpi/2.2.1/tokens/FR/XXX/04A1B2C3"
    response = put(Client(), url, rfid(country_code="FR", party_id="XXX"), **auth(token))
    assert envelope_of(response)["status_code"] == 2001
    assert not EmspToken.objects.exists()


def test_behind_a_hub_the_party_is_the_routing_headers_one(party: OurParty) -> None:
    hub = Partner.objects.create(name="Hub", is_hub=True)
    hub.allowed_parties.add(party)
    hub_token = registered(hub)
    client = Client()
    headers: dict[str, Any] = {
        "HTTP_OCPI_FROM_COUNTRY_CODE": "DE",
        "HTTP_OCPI_FROM_PARTY_ID": "MSP",
    }
    assert put(client, URL, rfid(), **auth(hub_token), **headers).status_code == 201
    other: dict[str, Any] = {"HTTP_OCPI_FROM_COUNTRY_CODE": "BE", "HTTP_OCPI_FROM_PARTY_ID": "OTH"}
    refused = put(client, URL, rfid(valid=False), **auth(hub_token), **other)
    assert envelope_of(refused)["status_code"] == 2001
    assert EmspToken.objects.get().valid is True

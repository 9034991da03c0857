"""Versions and the credentials exchange as receiver (the partner registers with our token A)
and as initiator (we register with theirs), through Django's test client, with the partner's
platform on loopback for the callbacks."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from cpo.lib.sealing import unseal
from roaming import services
from roaming.models import CredentialsEvent, IssuedToken, Partner
from roaming.tokens import token_hash
from tests.roaming.conftest import LoopbackPlatform, auth, credentials_body, envelope_of, post, put

pytestmark = pytest.mark.django_db

CREDENTIALS = "/ocpi/2.2.1/credentials"


@pytest.fixture
def token_a(partner: Any) -> str:
    return services.registration_token_issue(partner_id=partner.pk)


def register(client: Client, token_a: str, platform: LoopbackPlatform) -> dict[str, Any]:
    response = post(client, CREDENTIALS, credentials_body(platform), **auth(token_a))
    body = envelope_of(response)
    assert (response.status_code, body["status_code"]) == (200, 1000), body
    return body["data"]


def test_versions_and_details_need_a_token_and_list_both_versions(token_a: str) -> None:
    client = Client()
    refused = client.get("/ocpi/versions")
    assert refused.status_code == 401
    assert envelope_of(refused)["status_code"] == 2000
    assert client.get("/ocpi/versions", **auth("not-ours")).status_code == 401
    versions = envelope_of(client.get("/ocpi/versions", **auth(token_a)))["data"]
    assert [v["version"] for v in versions] == ["2.2.1", "2.1.1"]
    assert versions[0]["url"] == "http://localhost:8000/ocpi/2.2.1"
    details = envelope_of(client.get("/ocpi/2.2.1", **auth(token_a)))["data"]
    assert {(e["identifier"], e["role"]) for e in details["endpoints"]} == {
        ("credentials", "SENDER"),
        ("locations", "SENDER"),
        ("tariffs", "SENDER"),
        ("tokens", "RECEIVER"),
        ("sessions", "SENDER"),
        ("cdrs", "SENDER"),
        ("commands", "RECEIVER"),
        ("chargingprofiles", "RECEIVER"),
        ("hubclientinfo", "RECEIVER"),
    }
    old = envelope_of(client.get("/ocpi/2.1.1/", **auth(token_a, b64=False)))["data"]
    assert old["version"] == "2.1.1"
    assert all("role" not in e for e in old["endpoints"])
    # 2.1.1 has no chargingprofiles nor hubclientinfo.
    assert {e["identifier"] for e in old["endpoints"]} == {
        "credentials",
        "locations",
        "tariffs",
        "tokens",
        "sessions",
        "cdrs",
        "commands",
    }


def test_token_a_opens_only_versions_and_credentials(token_a: str) -> None:
    response = Client().get("/ocpi/2.2.1/locations", **auth(token_a))
    assert response.status_code == 401
    assert envelope_of(response)["status_code"] == 2000


def test_receiver_registration_stores_their_side_and_consumes_token_a(
    partner: Partner, token_a: str, platform: LoopbackPlatform
) -> None:
    client = Client()
    ours = register(client, token_a, platform)
    assert ours["url"] == "http://localhost:8000/ocpi/versions"
    assert ours["roles"] == [
        {
            "role": "CPO",
            "business_details": {"name": "CPO Operations"},
            "party_id": "CPO",
            "country_code": "NL",
        }
    ]
    # Our callback used their token B, base64 as they used ours.
    assert [r["path"] for r in platform.requests] == ["/versions", "/2.2.1"]
    assert platform.requests[0]["headers"]["Authorization"] == "Token dGhlaXItdG9rZW4tQg=="
    partner.refresh_from_db()
    assert partner.status == Partner.Status.REGISTERED
    assert partner.version == "2.2.1"
    assert partner.encode_token_b64 is True
    assert partner.endpoint_url("tokens", "SENDER") == f"{platform.url}/2.2.1/tokens"
    assert partner.party_keys() == {("DE", "MSP")}
    # Nothing in the clear: their token sealed, ours hashed and sealed.
    assert "their-token-B" not in partner.their_token_sealed
    assert unseal(partner.their_token_sealed) == "their-token-B"
    token_c = IssuedToken.objects.get(token_hash=token_hash(ours["token"]))
    assert token_c.kind == IssuedToken.Kind.CREDENTIALS
    assert ours["token"] not in token_c.token_sealed
    # Token C opens the modules; token A is spent for everything but a replay.
    assert client.get("/ocpi/2.2.1/locations", **auth(ours["token"])).status_code == 200
    assert client.get("/ocpi/versions", **auth(token_a)).status_code == 401
    assert list(partner.events.values_list("action", flat=True)) == ["REGISTERED", "TOKEN_A_ISSUED"]


def test_a_retry_of_the_same_post_gets_the_same_answer_and_another_token_b_gets_405(
    token_a: str, platform: LoopbackPlatform
) -> None:
    client = Client()
    first = register(client, token_a, platform)
    again = register(client, token_a, platform)
    assert again["token"] == first["token"]
    other = post(
        client, CREDENTIALS, credentials_body(platform, token="another-B"), **auth(token_a)
    )
    assert other.status_code == 405
    assert envelope_of(other)["status_code"] == 2000
    # A registered partner POSTing with its token C: 405 too (PUT is the update).
    again_c = post(client, CREDENTIALS, credentials_body(platform), **auth(first["token"]))
    assert again_c.status_code == 405


def test_a_failed_callback_answers_3001_and_token_a_still_works(
    partner: Partner, token_a: str, platform: LoopbackPlatform
) -> None:
    client = Client()
    platform.down = True
    response = post(client, CREDENTIALS, credentials_body(platform), **auth(token_a))
    body = envelope_of(response)
    assert (response.status_code, body["status_code"]) == (200, 3001)
    partner.refresh_from_db()
    assert partner.status == Partner.Status.PENDING
    assert IssuedToken.objects.get(token_hash=token_hash(token_a)).consumed_at is None
    assert partner.events.filter(action=CredentialsEvent.Action.FAILED).exists()
    platform.down = False
    assert register(client, token_a, platform)["token"]


def test_no_mutual_version_is_3002_and_missing_credentials_endpoint_is_3003(
    token_a: str, platform: LoopbackPlatform
) -> None:
    client = Client()
    platform.versions = ("2.1.1",)
    body = envelope_of(post(client, CREDENTIALS, credentials_body(platform), **auth(token_a)))
    assert body["status_code"] == 3002
    platform.versions = ("2.2.1",)
    original = platform.route

    def no_credentials(method: str, path: str, body: Any) -> dict[str, Any]:
        answer = original(method, path, body)
        if path == "/2.2.1":
            answer["data"]["endpoints"] = [
                e for e in answer["data"]["endpoints"] if e["identifier"] != "credentials"
            ]
        return answer

    platform.route = no_credentials  # type: ignore[method-assign]
    body = envelope_of(post(client, CREDENTIALS, credentials_body(platform), **auth(token_a)))
    assert body["status_code"] == 3003


@pytest.mark.parametrize(
    ("body", "http_status"),
    [
        ("{not json", 400),
        ([1, 2], 200),
        ({"url": "http://x/versions", "roles": []}, 200),
        ({"token": "t" * 65, "url": "http://x/versions", "roles": []}, 200),
        ({"token": "ok", "url": "ftp://x", "roles": []}, 200),
        ({"token": "ok", "url": "http://x/versions", "roles": []}, 200),
        (
            {
                "token": "ok",
                "url": "http://x/v",
                "roles": [{"role": "EMSP", "party_id": "TOOLONG", "country_code": "DE"}],
            },
            200,
        ),
    ],
)
def test_bad_credentials_bodies_are_2001_and_change_nothing(
    partner: Partner, token_a: str, body: Any, http_status: int
) -> None:
    client = Client()
    raw = body if isinstance(body, str) else __import__("json").dumps(body)
    response = client.post(CREDENTIALS, raw, content_type="application/json", **auth(token_a))
    envelope = envelope_of(response)
    assert (response.status_code, envelope["status_code"]) == (http_status, 2001)
    partner.refresh_from_db()
    assert partner.status == Partner.Status.PENDING
    assert IssuedToken.objects.get(token_hash=token_hash(token_a)).consumed_at is None


def test_an_expired_token_a_is_401(partner: Partner, platform: LoopbackPlatform) -> None:
    token = services.registration_token_issue(
        partner_id=partner.pk, now=timezone.now() - dt.timedelta(days=30)
    )
    response = post(Client(), CREDENTIALS, credentials_body(platform), **auth(token))
    assert response.status_code == 401
    assert envelope_of(response)["status_code"] == 2000


def test_a_new_token_a_ends_the_previous_one(partner: Partner) -> None:
    first = services.registration_token_issue(partner_id=partner.pk)
    second = services.registration_token_issue(partner_id=partner.pk)
    client = Client()
    assert client.get("/ocpi/versions", **auth(first)).status_code == 401
    assert client.get("/ocpi/versions", **auth(second)).status_code == 200


def test_get_credentials_answers_with_the_token_in_use(
    token_a: str, platform: LoopbackPlatform
) -> None:
    client = Client()
    ours = register(client, token_a, platform)
    got = envelope_of(client.get(CREDENTIALS, **auth(ours["token"])))
    assert got["status_code"] == 1000
    assert got["data"]["token"] == ours["token"]


@override_settings(ROAMING_REROLL_GRACE_SECONDS=60)
def test_put_rerolls_and_the_old_token_works_for_the_grace_window_only(
    partner: Partner, token_a: str, platform: LoopbackPlatform
) -> None:
    client = Client()
    old = register(client, token_a, platform)["token"]
    platform.token = "their-token-B2"
    response = put(client, CREDENTIALS, credentials_body(platform), **auth(old))
    new = envelope_of(response)["data"]["token"]
    assert new != old
    partner.refresh_from_db()
    assert unseal(partner.their_token_sealed) == "their-token-B2"
    assert client.get("/ocpi/2.2.1/locations", **auth(old)).status_code == 200
    assert client.get("/ocpi/2.2.1/locations", **auth(new)).status_code == 200
    grace = IssuedToken.objects.get(token_hash=token_hash(old)).expires_at
    assert grace is not None
    assert dt.timedelta(seconds=55) < grace - timezone.now() <= dt.timedelta(seconds=60)
    IssuedToken.objects.filter(token_hash=token_hash(old)).update(expires_at=timezone.now())
    assert client.get("/ocpi/2.2.1/locations", **auth(old)).status_code == 401
    assert client.get("/ocpi/2.2.1/locations", **auth(new)).status_code == 200


def test_a_put_whose_callback_fails_keeps_the_old_token_alone(
    partner: Partner, token_a: str, platform: LoopbackPlatform
) -> None:
    client = Client()
    old = register(client, token_a, platform)["token"]
    platform.down = True
    assert (
        envelope_of(put(client, CREDENTIALS, credentials_body(platform), **auth(old)))[
            "status_code"
        ]
        == 3001
    )
    assert IssuedToken.objects.get(token_hash=token_hash(old)).expires_at is None


def test_put_and_delete_before_registration_are_405(
    token_a: str, platform: LoopbackPlatform
) -> None:
    client = Client()
    assert put(client, CREDENTIALS, credentials_body(platform), **auth(token_a)).status_code == 405
    response = client.delete(CREDENTIALS, **auth(token_a))
    assert response.status_code == 405
    assert envelope_of(response)["status_code"] == 2000


def test_delete_unregisters_revokes_and_keeps_history(
    partner: Partner, token_a: str, platform: LoopbackPlatform
) -> None:
    client = Client()
    token_c = register(client, token_a, platform)["token"]
    response = client.delete(CREDENTIALS, **auth(token_c))
    assert (response.status_code, envelope_of(response)["status_code"]) == (200, 1000)
    partner.refresh_from_db()
    assert partner.status == Partner.Status.UNREGISTERED
    assert partner.their_token_sealed == ""
    assert client.get("/ocpi/versions", **auth(token_c)).status_code == 401
    assert IssuedToken.objects.filter(partner=partner).count() == 2
    assert list(partner.events.values_list("action", flat=True)) == [
        "UNREGISTERED",
        "REGISTERED",
        "TOKEN_A_ISSUED",
    ]
    # A new token A may follow; the partner registers again.
    again = services.registration_token_issue(partner_id=partner.pk)
    assert register(client, again, platform)["token"]


def test_raw_tokens_are_accepted_and_a_211_partner_is_called_raw(
    partner: Partner, platform: LoopbackPlatform
) -> None:
    token = services.registration_token_issue(partner_id=partner.pk)
    platform.b64 = False
    platform.versions = ("2.1.1", "2.2.1")
    body = {
        "token": platform.token,
        "url": platform.versions_url,
        "party_id": "MSP",
        "country_code": "DE",
        "business_details": {"name": "eMSP"},
    }
    response = post(Client(), "/ocpi/2.1.1/credentials", body, **auth(token, b64=False))
    ours = envelope_of(response)["data"]
    assert set(ours) == {"token", "url", "business_details", "party_id", "country_code"}
    partner.refresh_from_db()
    assert (partner.version, partner.encode_token_b64) == ("2.1.1", False)
    assert platform.requests[0]["headers"]["Authorization"] == "Token their-token-B"


def test_initiator_registration_with_their_versions_and_token(
    partner: Partner, platform: LoopbackPlatform
) -> None:
    platform.token = "their-token-A"
    registered = services.partner_register(
        partner_id=partner.pk,
        versions_url_theirs=platform.versions_url,
        their_token_a="their-token-A",
    )
    assert registered.status == Partner.Status.REGISTERED
    assert registered.version == "2.2.1"
    assert unseal(registered.their_token_sealed) == "their-token-C"
    posted = next(r for r in platform.requests if r["method"] == "POST")
    assert posted["path"] == "/2.2.1/credentials"
    assert posted["body"]["url"] == "http://localhost:8000/ocpi/versions"
    token_b = posted["body"]["token"]
    assert Client().get("/ocpi/2.2.1/locations", **auth(token_b)).status_code == 200
    assert registered.events.first().initiated_by_us is True


def test_initiator_registration_that_fails_revokes_our_token(
    partner: Partner, platform: LoopbackPlatform
) -> None:
    platform.token = "their-token-A"
    original = platform.route

    def refuse_post(method: str, path: str, body: Any) -> dict[str, Any]:
        if method == "POST":
            return {
                "status_code": 2001,
                "status_message": "no",
                "timestamp": "2026-01-01T00:00:00Z",
            }
        return original(method, path, body)

    platform.route = refuse_post  # type: ignore[method-assign]
    with pytest.raises(services.RegistrationError, match="2001"):
        services.partner_register(
            partner_id=partner.pk,
            versions_url_theirs=platform.versions_url,
            their_token_a="their-token-A",
        )
    partner.refresh_from_db()
    assert partner.status == Partner.Status.PENDING
    token_b = next(r for r in platform.requests if r["method"] == "POST")["body"]["token"]
    assert Client().get("/ocpi/versions", **auth(token_b)).status_code == 401
    with pytest.raises(services.RegistrationError, match="401"):
        services.partner_register(
            partner_id=partner.pk, versions_url_theirs=platform.versions_url, their_token_a="wrong"
        )


@pytest.mark.parametrize("refuse_with_3000", [False, True])
def test_the_callback_tries_the_other_token_encoding_when_refused(
    partner: Partner, platform: LoopbackPlatform, refuse_with_3000: bool
) -> None:
    """The partner sent our token raw but wants its own base64: refused one way (401, or a
    3000 from platforms that fail to decode), the callback tries the other."""
    token = services.registration_token_issue(partner_id=partner.pk)
    platform.refuse_with_3000 = refuse_with_3000
    response = post(Client(), CREDENTIALS, credentials_body(platform), **auth(token, b64=False))
    assert envelope_of(response)["status_code"] == 1000
    sent = [r["headers"]["Authorization"] for r in platform.requests]
    assert sent == [
        "Token their-token-B",
        "Token dGhlaXItdG9rZW4tQg==",
        "Token dGhlaXItdG9rZW4tQg==",
    ]
    partner.refresh_from_db()
    assert partner.encode_token_b64 is True


def test_a_partner_whose_parties_were_taken_away_gets_3000_and_keeps_token_a(
    partner: Partner, token_a: str, platform: LoopbackPlatform
) -> None:
    partner.allowed_parties.clear()
    response = post(Client(), CREDENTIALS, credentials_body(platform), **auth(token_a))
    assert envelope_of(response)["status_code"] == 3000
    assert IssuedToken.objects.get(token_hash=token_hash(token_a)).consumed_at is None
    partner.refresh_from_db()
    assert partner.status == Partner.Status.PENDING


def test_the_correlation_id_is_carried_onto_our_callback(
    token_a: str, platform: LoopbackPlatform
) -> None:
    response = post(
        Client(),
        CREDENTIALS,
        credentials_body(platform),
        **auth(token_a),
        HTTP_X_CORRELATION_ID="corr-42",
        HTTP_X_REQUEST_ID="req-42",
    )
    assert response["X-Correlation-ID"] == "corr-42"
    assert response["X-Request-ID"] == "req-42"
    # Header names are case-insensitive (urllib sends them capitalized).
    sent = [{k.lower(): v for k, v in r["headers"].items()} for r in platform.requests]
    assert {h["x-correlation-id"] for h in sent} == {"corr-42"}
    # Each call of ours is a request of its own.
    assert len({h["x-request-id"] for h in sent}) == len(sent) == 2
    assert "req-42" not in {h["x-request-id"] for h in sent}

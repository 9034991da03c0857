"""Real-time authorization through the charging authorization service: the whitelist rules,
unknown tokens asked of the eMSPs under the deadline, the local rules still applied to the
roaming token's twin, and hubclientinfo stopping the calls to a party that is offline.

The eMSP is a plain HTTP server on loopback answering POST {tokens}/{uid}/authorize (the
stand-in eMSP on extrawest-ocpi does the same in tests/roaming/test_commands_live.py)."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from cpo.lib.sealing import seal
from roaming import services
from roaming.models import ClientInfo, Partner, RealtimeAuthorization
from sessions.models import AuthorizationDecision, ChargingSession, IdToken
from sessions.services import authorization_decide
from stations.models import ChargingStation
from tests.roaming.conftest import auth, envelope_of, make_site, put
from tests.roaming.test_locations import registered

pytestmark = pytest.mark.django_db


class Emsp:
    """An eMSP's tokens sender on loopback: `allowed` answered after `delay` seconds (or 503
    while `down`); every request recorded."""

    def __init__(self) -> None:
        self.allowed = "ALLOWED"
        self.delay = 0.0
        self.down = False
        self.requests: list[dict[str, Any]] = []
        emsp = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802
                length = int(self.headers.get("Content-Length") or 0)
                body = json.loads(self.rfile.read(length)) if length else None
                emsp.requests.append({"path": self.path, "body": body})
                time.sleep(emsp.delay)
                answer: dict[str, Any]
                if emsp.down:
                    code, answer = 503, {"status_code": 3000}
                else:
                    code, answer = (
                        200,
                        {
                            "status_code": 1000,
                            "data": {"allowed": emsp.allowed, "authorization_reference": "REF-9"},
                        },
                    )
                raw = json.dumps(answer | {"timestamp": "2026-01-01T00:00:00Z"}).encode()
                try:
                    self.send_response(code)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(raw)))
                    self.end_headers()
                    self.wfile.write(raw)
                except OSError:  # we stopped waiting: the deadline passed
                    pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def emsp() -> Iterator[Emsp]:
    server = Emsp()
    yield server
    server.stop()


@pytest.fixture
def token(partner: Partner, emsp: Emsp) -> str:
    """The partner registered, with its tokens sender endpoint on the loopback eMSP."""
    issued = registered(
        partner,
        version="2.2.1",
        their_token_sealed=seal("their-token"),
        endpoints=[{"identifier": "tokens", "role": "SENDER", "url": f"{emsp.url}/tokens/"}],
    )
    return issued


@pytest.fixture
def station_id(party: Any) -> int:
    return make_site("RT", evses=2).stations.get().pk


def pushed(partner: Partner, *, uid: str = "04A1B2C3", **changes: Any) -> None:
    body = {
        "country_code": "DE",
        "party_id": "MSP",
        "uid": uid,
        "type": "RFID",
        "contract_id": "DE-MSP-C1",
        "issuer": "eMSP One",
        "valid": True,
        "whitelist": "ALLOWED",
        "last_updated": "2026-01-01T10:00:00Z",
        **changes,
    }
    services.emsp_token_put(
        partner_id=partner.pk,
        country_code="DE",
        party_id="MSP",
        uid=uid,
        token_type="RFID",
        body=body,
        version="2.2.1",
        routing_from=("DE", "MSP"),  # what a hub's headers would say; unread peer-to-peer
    )


def decide(station_id: int, uid: str = "04A1B2C3") -> Any:
    return authorization_decide(
        uid=uid, context=AuthorizationDecision.Context.AUTHORIZE, station_id=station_id
    )


@pytest.mark.parametrize(
    ("whitelist", "valid", "emsp_says", "status", "asked"),
    [
        ("ALWAYS", True, "BLOCKED", "Accepted", False),
        ("ALWAYS", False, "ALLOWED", "Blocked", False),
        ("ALLOWED", True, "BLOCKED", "Accepted", False),
        ("ALLOWED", False, "ALLOWED", "Accepted", True),
        ("ALLOWED", False, "BLOCKED", "Blocked", True),
        ("ALLOWED_OFFLINE", True, "EXPIRED", "Expired", True),
        ("ALLOWED_OFFLINE", True, "down", "Accepted", True),
        ("ALLOWED_OFFLINE", False, "down", "Blocked", True),
        ("NEVER", True, "NO_CREDIT", "NoCredit", True),
        ("NEVER", True, "NOT_ALLOWED", "NotAtThisLocation", True),
        ("NEVER", True, "down", "Invalid", True),
    ],
)
def test_the_whitelist_decides_between_cache_and_real_time(
    token: str,
    partner: Partner,
    emsp: Emsp,
    station_id: int,
    whitelist: str,
    valid: bool,
    emsp_says: str,
    status: str,
    asked: bool,
) -> None:
    pushed(partner, whitelist=whitelist, valid=valid)
    emsp.down = emsp_says == "down"
    emsp.allowed = emsp_says if not emsp.down else "ALLOWED"
    result = decide(station_id)
    assert result.status == status, result.reason
    assert bool(emsp.requests) is asked
    if asked:
        request = emsp.requests[0]
        assert request["path"] == "/tokens/04A1B2C3/authorize?type=RFID"
        site = ChargingStation.objects.get(pk=station_id).location_id
        assert request["body"]["location_id"] == str(site)
        assert request["body"]["evse_uids"] == ["RT-0-1", "RT-0-2"]
    # The decision names the roaming token's local twin, issued by the eMSP's party.
    twin = IdToken.objects.get(pk=result.token_id)
    assert (twin.uid, twin.issuer_country_code, twin.issuer_party_id, twin.in_local_list) == (
        "04A1B2C3",
        "DE",
        "MSP",
        False,
    )
    if asked and emsp_says == "ALLOWED":
        assert result.authorization_reference == "REF-9"


def test_the_local_rules_apply_to_a_roaming_token(
    token: str, partner: Partner, emsp: Emsp, station_id: int
) -> None:
    pushed(partner, whitelist="ALWAYS")
    twin = IdToken.objects.get(pk=decide(station_id).token_id)
    twin.max_concurrent_sessions = 1
    twin.save()
    ChargingSession.objects.create(
        station_id=station_id,
        evse_id=1,
        connector_id=1,
        transaction_id="1",
        id_token=twin,
        started_at=timezone.now(),
    )
    assert decide(station_id).status == "ConcurrentTx"
    twin.blocked = True
    twin.save()
    assert decide(station_id).status == "Blocked"
    # The eMSP's next push keeps what the operator set on the twin.
    pushed(partner, whitelist="ALWAYS", last_updated="2026-02-01T00:00:00Z")
    twin.refresh_from_db()
    assert (twin.blocked, twin.max_concurrent_sessions) == (True, 1)


def test_an_unknown_token_without_roaming_partners_costs_no_call(
    partner: Partner, emsp: Emsp, station_id: int
) -> None:
    # The partner is not registered: it is not asked.
    result = decide(station_id, uid="UNKNOWN1")
    assert (result.status, result.reason) == ("Invalid", "unknown token")
    assert emsp.requests == []
    assert not RealtimeAuthorization.objects.exists()


def test_an_unknown_token_is_asked_in_real_time_and_kept_to_the_deadline(
    token: str, emsp: Emsp, station_id: int
) -> None:
    result = decide(station_id, uid="UNKNOWN1")
    assert (result.status, result.authorization_reference) == ("Accepted", "REF-9")
    assert [r.result for r in RealtimeAuthorization.objects.all()] == ["ALLOWED"]
    emsp.delay = 1.5
    with override_settings(ROAMING_REALTIME_DEADLINE=0.3):
        began = time.monotonic()
        slow = decide(station_id, uid="UNKNOWN2")
        took = time.monotonic() - began
    assert slow.status == "Invalid"
    assert took < 0.8, took
    latest = RealtimeAuthorization.objects.filter(uid="UNKNOWN2").get()
    assert latest.result == "TIMEOUT"


def test_a_party_reported_offline_gets_no_real_time_requests(
    token: str, partner: Partner, emsp: Emsp, station_id: int
) -> None:
    client = Client()
    url = "/ocpi/2.2.1/hubclientinfo/DE/MSP"
    info = {
        "party_id": "MSP",
        "country_code": "DE",
        "role": "EMSP",
        "status": "OFFLINE",
        "last_updated": "2026-01-01T10:00:00Z",
    }
    created = put(client, url, info, **auth(token))
    assert (created.status_code, envelope_of(created)["status_code"]) == (201, 1000)
    partner.refresh_from_db()
    assert partner.client_status == "OFFLINE"
    assert not partner.accepts_traffic()
    assert decide(station_id, uid="UNKNOWN1").status == "Invalid"
    pushed(partner, whitelist="NEVER")
    assert decide(station_id).status == "Invalid"
    assert emsp.requests == []
    # Back: asked again.
    put(client, url, info | {"status": "CONNECTED"}, **auth(token))
    assert decide(station_id).status == "Accepted"
    assert len(emsp.requests) == 1
    got = envelope_of(client.get(url, **auth(token)))
    assert got["data"] == info | {"status": "CONNECTED"}


def test_a_hub_party_reported_suspended_is_not_asked_but_others_behind_the_hub_are(
    token: str, partner: Partner, emsp: Emsp, station_id: int
) -> None:
    Partner.objects.filter(pk=partner.pk).update(is_hub=True)
    partner.refresh_from_db()
    pushed(partner, whitelist="NEVER")
    ClientInfo.objects.create(
        partner=partner,
        country_code="DE",
        party_id="MSP",
        role="EMSP",
        status="SUSPENDED",
        last_updated=timezone.now(),
    )
    assert partner.accepts_traffic()
    assert not partner.accepts_traffic(("DE", "MSP"))
    assert decide(station_id).status == "Invalid"
    assert emsp.requests == []
    assert partner.accepts_traffic(("NL", "ABC"))


@pytest.mark.parametrize(
    ("changes", "code"),
    [
        ({"status": "SLEEPING"}, 2001),
        ({"role": "PIRATE"}, 2001),
        ({"party_id": "XYZ"}, 2001),  # not the URL's
        ({"last_updated": "yesterday"}, 2001),
        ({"extra": 1}, 2001),
    ],
)
def test_bad_client_info_changes_nothing(
    token: str, partner: Partner, changes: dict[str, Any], code: int
) -> None:
    info = {
        "party_id": "MSP",
        "country_code": "DE",
        "role": "EMSP",
        "status": "OFFLINE",
        "last_updated": "2026-01-01T10:00:00Z",
    } | changes
    response = put(Client(), "/ocpi/2.2.1/hubclientinfo/DE/MSP", info, **auth(token))
    assert envelope_of(response)["status_code"] == code
    assert not ClientInfo.objects.exists()
    partner.refresh_from_db()
    assert partner.client_status == ""


def test_hubclientinfo_is_not_in_211(token: str) -> None:
    response = Client().get("/ocpi/2.1.1/hubclientinfo/DE/MSP", **auth(token, b64=False))
    assert response.status_code == 404

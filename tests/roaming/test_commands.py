"""Commands (receiver) through Django's test client: what is checked before anything is
stored, what a command becomes in the station queue, and the result the partner gets through
the outbox from the station's answer or from the sweeper. The whole path over real HTTP with
a real station and the stand-in eMSP is tests/roaming/test_commands_live.py."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from cpo.outbox.models import OutboxMessage
from roaming.commands import roaming_commands_timeout
from roaming.models import EmspToken, Partner, RoamingCommand
from stations.commands.models import Command
from stations.commands.results import command_result_record
from tests.roaming.conftest import auth, envelope_of, make_site
from tests.roaming.test_locations import registered

pytestmark = pytest.mark.django_db

# A public address (TEST-NET-3 is not: the guard's own rule), never called by these tests.
RESPONSE_URL = "https://emsp.example.com/results/1"


@pytest.fixture(autouse=True)
def _public_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """emsp.example.com resolves to a public address without DNS (the machine may have none);
    every other name is looked up for real."""
    import socket

    real = socket.getaddrinfo

    def lookup(host: str, *args: Any, **kwargs: Any) -> Any:
        if host == "emsp.example.com":
            return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", 443))]
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", lookup)


@pytest.fixture
def token(partner: Partner) -> str:
    return registered(partner)


@pytest.fixture
def site(party: Any) -> Any:
    return make_site("CMD", evses=2)


def ocpi_token(uid: str = "04A1B2C3", **changes: Any) -> dict[str, Any]:
    return {
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


def start_body(site: Any, **changes: Any) -> dict[str, Any]:
    return {
        "response_url": RESPONSE_URL,
        "token": ocpi_token(),
        "location_id": str(site.pk),
        "evse_uid": "CMD-0-1",
        **changes,
    }


def counts() -> tuple[int, int, int, int]:
    return (
        RoamingCommand.objects.count(),
        Command.objects.count(),
        EmspToken.objects.count(),
        OutboxMessage.objects.count(),
    )


def send(token: str, kind: str, body: Any, *, version: str = "2.2.1") -> tuple[int, dict]:
    url = f"/ocpi/{version}/commands/{kind}"
    raw = body if isinstance(body, str) else json.dumps(body)
    response = Client().post(url, raw, content_type="application/json", **auth(token))
    return response.status_code, envelope_of(response)


def test_start_session_becomes_a_queued_remote_start(token: str, site: Any) -> None:
    http, answer = send(token, "START_SESSION", start_body(site, authorization_reference="R1"))
    assert (http, answer["status_code"]) == (200, 1000), answer
    assert answer["data"] == {"result": "ACCEPTED", "timeout": 60}
    roaming = RoamingCommand.objects.get()
    command = roaming.command
    assert command is not None
    assert (command.verb, command.origin, command.status) == ("remote_start", "roaming", "queued")
    assert command.payload == {"idTag": "04A1B2C3", "connectorId": 1}
    assert (roaming.response_url, roaming.authorization_reference) == (RESPONSE_URL, "R1")
    assert roaming.deadline > timezone.now()
    # The token it carries is stored (the eMSP vouches for it: not checked against a cache).
    assert EmspToken.objects.get().uid == "04A1B2C3"


@pytest.mark.parametrize(
    ("body", "http", "code"),
    [
        ("{not json", 400, 2001),
        (["a", "list"], 200, 2001),
        ({"unknown": 1}, 200, 2001),
        ({"location_id": 7}, 200, 2001),  # wrong type
        ({"token": {"uid": "x"}}, 200, 2001),  # not a whole token
        ({"location_id": "999999"}, 404, 2003),
        ({"location_id": "not-a-number"}, 404, 2003),
        ({"evse_uid": "no-such-evse"}, 404, 2003),
        ({"response_url": "ftp://emsp.example.com/x"}, 200, 2001),
        ({"response_url": "http://127.0.0.1:9/results"}, 200, 2001),  # the SSRF guard
        ({"response_url": "http://10.1.2.3/results"}, 200, 2001),
        ({"response_url": "http://localhost/results"}, 200, 2001),
    ],
)
def test_bad_commands_get_their_status_code_and_change_nothing(
    token: str, site: Any, body: Any, http: int, code: int
) -> None:
    payload = body if isinstance(body, str | list) else start_body(site, **body)
    before = counts()
    status, answer = send(token, "START_SESSION", payload)
    assert (status, answer["status_code"]) == (http, code), answer
    assert counts() == before


def test_an_unpublished_location_is_unknown_to_the_partner(token: str, site: Any) -> None:
    site.publish = False
    site.save()
    status, answer = send(token, "START_SESSION", start_body(site))
    assert (status, answer["status_code"]) == (404, 2003)
    assert counts() == (0, 0, 0, 0)


def test_a_partner_allowed_private_urls_may_use_loopback(
    token: str, site: Any, partner: Partner
) -> None:
    loopback = start_body(site, response_url="http://127.0.0.1:9/results")
    assert send(token, "START_SESSION", loopback)[1]["status_code"] == 2001
    Partner.objects.filter(pk=partner.pk).update(allow_private_urls=True)
    assert send(token, "START_SESSION", loopback)[1]["data"]["result"] == "ACCEPTED"
    Partner.objects.filter(pk=partner.pk).update(allow_private_urls=False)
    with override_settings(ROAMING_ALLOW_PRIVATE_URLS=True):
        assert send(token, "START_SESSION", loopback)[1]["data"]["result"] == "ACCEPTED"


def test_an_offline_station_is_rejected_at_once_and_nothing_is_stored(
    token: str, party: Any
) -> None:
    offline = make_site("OFF", evses=1, online=False)
    status, answer = send(token, "START_SESSION", start_body(offline, evse_uid="OFF-0-1"))
    assert answer["data"]["result"] == "REJECTED"
    assert answer["data"]["message"][0]["text"] == "the charging station is offline"
    assert counts() == (0, 0, 0, 0)


def test_unknown_commands_and_211_cancel_reservation_are_404(token: str, site: Any) -> None:
    assert send(token, "SELF_DESTRUCT", {})[:1] == (404,)
    status, answer = send(
        token,
        "CANCEL_RESERVATION",
        {"response_url": RESPONSE_URL, "reservation_id": "1"},
        version="2.1.1",
    )
    assert (status, answer["status_code"]) == (404, 2000)


def test_the_station_answer_is_the_partners_result_through_the_outbox(
    token: str, site: Any, partner: Partner
) -> None:
    send(
        token,
        "RESERVE_NOW",
        {
            "response_url": RESPONSE_URL,
            "token": ocpi_token(),
            "expiry_date": "2030-01-01T12:00:00Z",
            "reservation_id": "THEIRS-1",
            "location_id": str(site.pk),
            "evse_uid": "CMD-0-2",
        },
    )
    roaming = RoamingCommand.objects.get()
    assert roaming.command is not None
    payload = roaming.command.payload
    # Our own reservation id (an integer), not theirs.
    assert payload["reservationId"] == roaming.reservation_id
    assert payload["connectorId"] == 2
    command_result_record(
        command_id=roaming.command.pk,
        status=Command.Status.REJECTED,
        result="Occupied",
        response={"status": "Occupied"},
    )
    message = OutboxMessage.objects.get()
    assert (message.destination_kind, message.destination_ref) == ("ocpi", str(partner.pk))
    assert (message.method, message.url) == ("POST", RESPONSE_URL)
    assert json.loads(bytes(message.body)) == {
        "result": "EVSE_OCCUPIED",
        "message": [{"language": "en", "text": "Occupied"}],
    }
    roaming.refresh_from_db()
    assert roaming.result == "EVSE_OCCUPIED"
    # The sweeper leaves a command with its result alone.
    assert roaming_commands_timeout(now=timezone.now() + dt.timedelta(hours=1)) == 0


def test_the_sweeper_times_out_a_silent_station_and_a_late_answer_changes_nothing(
    token: str, site: Any
) -> None:
    send(
        token,
        "UNLOCK_CONNECTOR",
        {
            "response_url": RESPONSE_URL,
            "location_id": str(site.pk),
            "evse_uid": "CMD-0-1",
            "connector_id": "1",
        },
    )
    roaming = RoamingCommand.objects.get()
    assert roaming_commands_timeout(now=roaming.deadline - dt.timedelta(seconds=1)) == 0
    assert roaming_commands_timeout(now=roaming.deadline + dt.timedelta(seconds=1)) == 1
    assert json.loads(bytes(OutboxMessage.objects.get().body)) == {
        "result": "TIMEOUT",
        "message": [{"language": "en", "text": "no answer from the station"}],
    }
    assert roaming.command is not None
    command_result_record(
        command_id=roaming.command.pk, status=Command.Status.ACCEPTED, result="Unlocked"
    )
    assert OutboxMessage.objects.count() == 1


def test_211_results_fold_into_its_four_results(token: str, site: Any) -> None:
    body = {
        "response_url": RESPONSE_URL,
        "token": {
            k: v
            for k, v in ocpi_token().items()
            if k not in ("country_code", "party_id", "contract_id")
        }
        | {"auth_id": "DE-MSP-C1"},
        "location_id": str(site.pk),
        "evse_uid": "CMD-0-1",
    }
    status, answer = send(token, "START_SESSION", body, version="2.1.1")
    assert answer["data"] == {"result": "ACCEPTED"}, answer
    roaming = RoamingCommand.objects.get()
    assert roaming.command is not None
    command_result_record(
        command_id=roaming.command.pk, status=Command.Status.FAILED, error_code="InternalError"
    )
    assert json.loads(bytes(OutboxMessage.objects.get().body)) == {"result": "REJECTED"}


def test_stop_session_of_another_partners_session_is_unknown(token: str, site: Any) -> None:
    from sessions.models import ChargingSession, IdToken

    theirs = IdToken.objects.create(
        uid="AA11", type="RFID", issuer_country_code="FR", issuer_party_id="XYZ"
    )
    session = ChargingSession.objects.create(
        station=site.stations.get(),
        evse_id=1,
        connector_id=1,
        transaction_id="7",
        id_token=theirs,
        started_at=timezone.now(),
    )
    status, answer = send(
        token, "STOP_SESSION", {"response_url": RESPONSE_URL, "session_id": str(session.uid)}
    )
    assert answer["data"]["result"] == "UNKNOWN_SESSION"
    assert counts()[:2] == (0, 0)

"""chargingprofiles (receiver, OCPI 2.2.1): PUT sets a TxProfile on the session's transaction,
GET asks the composite schedule, DELETE clears our profile; each a command of the station
queue whose answer becomes the partner's result through the outbox."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import urlencode

import pytest
from django.test import Client
from django.utils import timezone

from cpo.outbox.models import OutboxMessage
from roaming.chargingprofiles import profile_id_of
from roaming.models import Partner, RoamingCommand
from sessions.models import ChargingSession, IdToken
from stations.commands.models import Command
from stations.commands.results import command_result_record
from tests.roaming.conftest import auth, envelope_of, make_site, put
from tests.roaming.test_commands import RESPONSE_URL, _public_names  # noqa: F401
from tests.roaming.test_locations import registered

pytestmark = pytest.mark.django_db


@pytest.fixture
def token(partner: Partner) -> str:
    return registered(partner)


@pytest.fixture
def session(party: Any) -> ChargingSession:
    """An active session on EVSE 2 of a 1.6 station, of a driver of the partner (DE*MSP)."""
    station = make_site("CP", evses=2).stations.get()
    twin = IdToken.objects.create(
        uid="04A1B2C3", type="RFID", issuer_country_code="DE", issuer_party_id="MSP"
    )
    return ChargingSession.objects.create(
        station=station,
        evse_id=2,
        connector_id=2,
        transaction_id="4711",
        ocpp16_transaction_id=4711,
        id_token=twin,
        started_at=timezone.now(),
    )


PROFILE = {
    "charging_rate_unit": "W",
    "duration": 3600,
    "charging_profile_period": [
        {"start_period": 0, "limit": 7400},
        {"start_period": 1800, "limit": 3700.5},
    ],
}


def url(session: ChargingSession, **query: str) -> str:
    base = f"/ocpi/2.2.1/chargingprofiles/{session.uid}"
    return f"{base}?{urlencode(query)}" if query else base


def outcome(status: str, result: str, response: dict[str, Any] | None = None) -> dict[str, Any]:
    command = RoamingCommand.objects.get().command
    assert command is not None
    command_result_record(
        command_id=command.pk, status=status, result=result, response=response or {}
    )
    return json.loads(bytes(OutboxMessage.objects.get().body))


def test_put_sets_a_tx_profile_on_the_sessions_transaction(
    token: str, session: ChargingSession
) -> None:
    response = put(
        Client(),
        url(session),
        {"charging_profile": PROFILE, "response_url": RESPONSE_URL},
        **auth(token),
    )
    body = envelope_of(response)
    assert body["data"] == {"result": "ACCEPTED", "timeout": 60}, body
    command = Command.objects.get()
    assert (command.action, command.origin) == ("SetChargingProfile", "roaming")
    assert command.payload == {
        "connectorId": 2,
        "csChargingProfiles": {
            "chargingProfileId": profile_id_of(session),
            "stackLevel": 1,
            "chargingProfilePurpose": "TxProfile",
            "chargingProfileKind": "Relative",
            "transactionId": 4711,
            "chargingSchedule": {
                "chargingRateUnit": "W",
                "duration": 3600,
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "limit": 7400.0},
                    {"startPeriod": 1800, "limit": 3700.5},
                ],
            },
        },
    }
    assert outcome(Command.Status.ACCEPTED, "Accepted") == {"result": "ACCEPTED"}
    message = OutboxMessage.objects.get()
    assert (message.destination_kind, message.url) == ("ocpi", RESPONSE_URL)


def test_get_asks_the_composite_schedule_and_posts_the_active_profile(
    token: str, session: ChargingSession
) -> None:
    answer = envelope_of(
        Client().get(url(session, duration="900", response_url=RESPONSE_URL), **auth(token))
    )
    assert answer["data"]["result"] == "ACCEPTED"
    command = Command.objects.get()
    assert (command.action, command.payload) == (
        "GetCompositeSchedule",
        {"connectorId": 2, "duration": 900},
    )
    posted = outcome(
        Command.Status.ACCEPTED,
        "Accepted",
        {
            "status": "Accepted",
            "connectorId": 2,
            "scheduleStart": "2026-03-01T12:00:00Z",
            "chargingSchedule": {
                "chargingRateUnit": "W",
                "duration": 900,
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7400}],
            },
        },
    )
    assert posted == {
        "result": "ACCEPTED",
        "profile": {
            "start_date_time": "2026-03-01T12:00:00Z",
            "charging_profile": {
                "charging_rate_unit": "W",
                "duration": 900,
                "charging_profile_period": [{"start_period": 0, "limit": 7400}],
            },
        },
    }


def test_delete_clears_our_profile(token: str, session: ChargingSession) -> None:
    answer = envelope_of(Client().delete(url(session, response_url=RESPONSE_URL), **auth(token)))
    assert answer["data"]["result"] == "ACCEPTED"
    command = Command.objects.get()
    assert (command.action, command.payload) == (
        "ClearChargingProfile",
        {"id": profile_id_of(session)},
    )
    assert outcome(Command.Status.REJECTED, "Unknown") == {"result": "UNKNOWN"}


@pytest.mark.parametrize(
    ("method", "body", "query", "code"),
    [
        ("PUT", {"charging_profile": {"charging_rate_unit": "kW"}}, {}, 2001),
        ("PUT", {"charging_profile": PROFILE | {"charging_profile_period": []}}, {}, 2001),
        ("PUT", {"charging_profile": PROFILE | {"start_date_time": "noon"}}, {}, 2001),
        ("PUT", {"charging_profile": PROFILE | {"min_charging_rate": "low"}}, {}, 2001),
        (
            "PUT",
            {"charging_profile": PROFILE | {"charging_profile_period": [{"limit": 1}]}},
            {},
            2001,
        ),
        ("PUT", {"charging_profile": PROFILE, "response_url": "http://127.0.0.1/x"}, {}, 2001),
        ("GET", None, {"response_url": RESPONSE_URL}, 2001),  # no duration
        ("GET", None, {"duration": "900"}, 2001),  # no response_url
        ("DELETE", None, {"response_url": "http://192.168.1.1/x"}, 2001),
    ],
)
def test_bad_profile_calls_change_nothing(
    token: str,
    session: ChargingSession,
    method: str,
    body: dict[str, Any] | None,
    query: dict[str, str],
    code: int,
) -> None:
    client = Client()
    target = url(session, **query)
    if method == "PUT":
        assert body is not None
        response = put(client, target, {"response_url": RESPONSE_URL} | body, **auth(token))
    elif method == "GET":
        response = client.get(target, **auth(token))
    else:
        response = client.delete(target, **auth(token))
    assert envelope_of(response)["status_code"] == code
    assert (Command.objects.count(), RoamingCommand.objects.count()) == (0, 0)


def test_an_ended_or_unknown_session_is_unknown(token: str, session: ChargingSession) -> None:
    client = Client()
    body = {"charging_profile": PROFILE, "response_url": RESPONSE_URL}
    unknown = put(client, "/ocpi/2.2.1/chargingprofiles/12345", body, **auth(token))
    assert envelope_of(unknown)["data"]["result"] == "UNKNOWN_SESSION"
    session.status = ChargingSession.Status.COMPLETED
    session.save()
    ended = put(client, url(session), body, **auth(token))
    assert envelope_of(ended)["data"]["result"] == "UNKNOWN_SESSION"
    assert not Command.objects.exists()

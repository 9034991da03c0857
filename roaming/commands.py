"""Commands a partner sends us (we are the receiver of commands and chargingprofiles).

A command is checked (the body, the response_url against the SSRF guard, the location
published to that partner, the EVSE, the station online), answered at once with a
CommandResponse, and becomes a durable command of the station command queue
(`stations.commands`) beside a `RoamingCommand` that remembers what we owe the partner: the
result at its response_url. When the station's command becomes final (the queue announces
`command_finished` inside the transaction that recorded it), the result is written and an
outbox message of kind "ocpi" is enqueued in that same transaction; the outbox delivers it
(retries, back-off, dead letters). A command still without a result at its deadline gets
TIMEOUT from the sweeper (Celery beat, `roaming_commands_timeout`).
"""

from __future__ import annotations

import hashlib
from base64 import b32encode
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from roaming import chargingprofiles, selectors, services
from roaming.emsp_tokens import token_check
from roaming.models import EmspToken, OurParty, Partner, RoamingCommand
from roaming.ocpi import status
from roaming.ocpi.status import OcpiError, parse_ocpi_datetime
from roaming.receiving import fields_check, result_store, session_find, url_guard
from sessions.models import ChargingSession
from stations.commands.codec import codec
from stations.commands.models import Command
from stations.commands.services import command_create
from stations.commands.verbs import CommandError, new_request_id
from stations.models import ChargingStation, Connector, Evse

Type = RoamingCommand.Type

# Per version, per command type: field -> (type, max length, required).
_TOKEN = (dict, None, True)
_URL = (str, 255, True)
FIELDS: dict[str, dict[str, dict[str, tuple[type, int | None, bool]]]] = {
    "2.2.1": {
        Type.START_SESSION: {
            "response_url": _URL,
            "token": _TOKEN,
            "location_id": (str, 36, True),
            "evse_uid": (str, 36, False),
            "connector_id": (str, 36, False),
            "authorization_reference": (str, 36, False),
        },
        Type.STOP_SESSION: {"response_url": _URL, "session_id": (str, 36, True)},
        Type.RESERVE_NOW: {
            "response_url": _URL,
            "token": _TOKEN,
            "expiry_date": (str, None, True),
            "reservation_id": (str, 36, True),
            "location_id": (str, 36, True),
            "evse_uid": (str, 36, False),
            "authorization_reference": (str, 36, False),
        },
        Type.CANCEL_RESERVATION: {"response_url": _URL, "reservation_id": (str, 36, True)},
        Type.UNLOCK_CONNECTOR: {
            "response_url": _URL,
            "location_id": (str, 36, True),
            "evse_uid": (str, 36, True),
            "connector_id": (str, 36, True),
        },
    },
    "2.1.1": {
        Type.START_SESSION: {
            "response_url": _URL,
            "token": _TOKEN,
            "location_id": (str, 39, True),
            "evse_uid": (str, 39, False),
        },
        Type.STOP_SESSION: {"response_url": _URL, "session_id": (str, 36, True)},
        Type.RESERVE_NOW: {
            "response_url": _URL,
            "token": _TOKEN,
            "expiry_date": (str, None, True),
            "reservation_id": (int, None, True),
            "location_id": (str, 39, True),
            "evse_uid": (str, 39, False),
        },
        Type.UNLOCK_CONNECTOR: {
            "response_url": _URL,
            "location_id": (str, 39, True),
            "evse_uid": (str, 39, True),
            "connector_id": (str, 39, True),
        },
    },
}
COMMAND_TYPES = {version: set(types) for version, types in FIELDS.items()}


# --- results --------------------------------------------------------------------------------------

# The station's one-word answer (Command.result) of a refused command -> CommandResultType.
_REFUSALS = {
    "Occupied": "EVSE_OCCUPIED",
    "Faulted": "EVSE_INOPERATIVE",
    "Unavailable": "EVSE_INOPERATIVE",
    "UnlockFailed": "FAILED",
    "NotSupported": "NOT_SUPPORTED",
    "UnknownConnector": "REJECTED",
    "OngoingAuthorizedTransaction": "REJECTED",
}
# 2.1.1's result is a CommandResponseType: the finer 2.2.1 results fold into REJECTED.
_RESULTS_211 = {"ACCEPTED", "REJECTED", "NOT_SUPPORTED", "TIMEOUT"}


def result_of(command: Command, kind: str) -> str:
    """The CommandResultType of a final station command."""
    if command.status == Command.Status.ACCEPTED:
        return "ACCEPTED"
    if command.status == Command.Status.REJECTED:
        if kind == Type.CANCEL_RESERVATION:
            return "UNKNOWN_RESERVATION"
        return _REFUSALS.get(command.result, "REJECTED")
    if command.status in (Command.Status.TIMED_OUT, Command.Status.EXPIRED):
        return "TIMEOUT"
    if command.error_code in ("NotSupported", "NotImplemented"):
        return "NOT_SUPPORTED"
    return "FAILED"


def _message(text: str) -> list[dict[str, str]]:
    return [{"language": "en", "text": text[:512]}] if text else []


def command_result_body(version: str, result: str, text: str = "") -> dict[str, Any]:
    if version == "2.1.1":
        return {"result": result if result in _RESULTS_211 else "REJECTED"}
    body: dict[str, Any] = {"result": result}
    if text:
        body["message"] = _message(text)
    return body


def command_finished_receiver(sender: Any, command: Command, **kwargs: Any) -> None:
    """The queue's command became final: the partner's result, in that transaction."""
    if command.origin != Command.Origin.ROAMING:
        return
    roaming = RoamingCommand.objects.filter(command=command, result="").first()
    if roaming is None:
        return
    if roaming.type in chargingprofiles.TYPES:
        result, body = chargingprofiles.result_of(roaming, command)
    else:
        result = result_of(command, roaming.type)
        text = command.result or command.error_description
        body = command_result_body(roaming.version, result, text)
    result_store(roaming, result=result, body=body)


@transaction.atomic
def roaming_commands_timeout(*, now: datetime | None = None) -> int:
    """Commands past their deadline without a result get TIMEOUT (the sweeper)."""
    now = now or timezone.now()
    due = list(
        RoamingCommand.objects.select_for_update(skip_locked=True)
        .filter(result="", deadline__lte=now)
        .order_by("deadline")[:500]
    )
    count = 0
    for roaming in due:
        if roaming.type in chargingprofiles.TYPES:
            body = chargingprofiles.timeout_body(roaming)
        else:
            body = command_result_body(roaming.version, "TIMEOUT", "no answer from the station")
        count += result_store(roaming, result="TIMEOUT", body=body)
    return count


# --- receiving ------------------------------------------------------------------------------------


def command_response(
    version: str, result: str, text: str = "", *, timeout: int | None = None
) -> dict[str, Any]:
    """The synchronous CommandResponse (2.1.1: its result only)."""
    if version == "2.1.1":
        return {"result": result}
    body: dict[str, Any] = {
        "result": result,
        "timeout": settings.ROAMING_COMMAND_TIMEOUT if timeout is None else timeout,
    }
    if text:
        body["message"] = _message(text)
    return body


def id_tag_for(token: EmspToken, station: ChargingStation) -> str:
    """The id tag a station gets for a partner's token: the uid, or, when it is longer than
    the station's protocol holds (1.6: 20 characters), a stable surrogate of that length
    (derived from the token's keys: the same token always gets the same one)."""
    limit = codec().id_token_max_length(station.protocol)
    if len(token.uid) <= limit:
        return token.uid
    digest = hashlib.sha256(
        f"{token.country_code}*{token.party_id}*{token.type}*{token.uid}".encode()
    ).digest()
    return ("R" + b32encode(digest).decode().rstrip("="))[:limit]


def _token_store(partner: Partner, data: dict[str, Any], version: str, routing: Any) -> EmspToken:
    """The token the command carries, upserted like a pushed one (the eMSP vouches for it:
    it is not checked against the cache)."""
    checked = token_check(data, version=version)
    if version == "2.1.1":
        keys = sorted(partner.party_keys())
        if not keys:
            raise OcpiError(status.INVALID_PARAMETERS, "the partner has no party for the token")
        country, party = keys[0]
    else:
        country, party = checked["country_code"], checked["party_id"]
    token, _ = services.emsp_token_put(
        partner_id=partner.pk,
        country_code=country,
        party_id=party,
        uid=checked["uid"],
        token_type=checked["type"],
        body=checked,
        version=version,
        routing_from=routing,
    )
    return token


def _evse_find(
    parties: list[OurParty], location_id: str, evse_uid: str | None
) -> tuple[ChargingStation | None, Evse | None]:
    """The EVSE of a location this partner sees (2003 for an unknown location or EVSE)."""
    if not location_id.isdigit() or not (
        selectors.locations_visible(parties=parties).filter(pk=int(location_id)).exists()
    ):
        raise OcpiError(status.UNKNOWN_LOCATION, "unknown location", http_status=404)
    if evse_uid is None:
        return None, None
    evse = (
        Evse.objects.select_related("station")
        .filter(uid=evse_uid, station__location_id=int(location_id))
        .filter(station__registration_status=ChargingStation.RegistrationStatus.ACCEPTED)
        .first()
    )
    if evse is None:
        raise OcpiError(status.UNKNOWN_LOCATION, "unknown EVSE", http_status=404)
    return evse.station, evse


def _reservation_id_new() -> int:
    for _ in range(10):
        candidate = new_request_id()
        if not RoamingCommand.objects.filter(reservation_id=candidate).exists():
            return candidate
    raise OcpiError(status.SERVER_ERROR, "no free reservation id")


def command_receive(
    *,
    partner: Partner,
    parties: list[OurParty],
    version: str,
    command_type: str,
    body: dict[str, Any],
    routing: tuple[str, str] = ("", ""),
) -> dict[str, Any]:
    """Check a partner's command, queue it, and answer its CommandResponse. Bad input is an
    OCPI error and changes nothing; a valid command the station cannot take now (offline) is
    answered REJECTED and stores nothing either."""
    if command_type not in COMMAND_TYPES[version]:
        raise OcpiError(status.CLIENT_ERROR, f"unknown command {command_type}", http_status=404)
    data = fields_check(body, FIELDS[version][command_type])
    url_guard(partner, data["response_url"])
    now = timezone.now()
    with transaction.atomic():
        return _receive(partner, parties, version, command_type, data, routing, now)


def _receive(
    partner: Partner,
    parties: list[OurParty],
    version: str,
    kind: str,
    data: dict[str, Any],
    routing: tuple[str, str],
    now: datetime,
) -> dict[str, Any]:
    roaming = RoamingCommand(
        partner=partner,
        version=version,
        type=kind,
        request=data,
        response_url=data["response_url"],
        deadline=now + timedelta(seconds=settings.ROAMING_COMMAND_TIMEOUT),
        created_at=now,
    )
    station: ChargingStation | None = None
    verb = ""
    params: dict[str, Any] = {}
    if kind in (Type.START_SESSION, Type.RESERVE_NOW, Type.UNLOCK_CONNECTOR):
        station, evse = _evse_find(parties, data["location_id"], data.get("evse_uid"))
        if station is None:
            # No EVSE named: the site's only EVSE, else the station picks (1.6 connector 0).
            candidates = list(
                Evse.objects.select_related("station").filter(
                    station__location_id=int(data["location_id"]),
                    station__registration_status=ChargingStation.RegistrationStatus.ACCEPTED,
                )[:2]
            )
            if len(candidates) != 1:
                return command_response(version, "REJECTED", "evse_uid is required here")
            evse = candidates[0]
            station = evse.station
        assert evse is not None
        roaming.station, roaming.evse_id = station, evse.evse_id
        if kind == Type.UNLOCK_CONNECTOR:
            connector = (
                Connector.objects.filter(evse=evse, connector_id=int(data["connector_id"])).first()
                if data["connector_id"].isdigit()
                else None
            )
            if connector is None:
                raise OcpiError(status.UNKNOWN_LOCATION, "unknown connector", http_status=404)
            verb = "unlock_connector"
            within = 1 if station.protocol == "ocpp1.6" else connector.connector_id
            params = {"evse_id": evse.evse_id, "connector_id": within}
        else:
            if kind == Type.RESERVE_NOW:
                try:
                    expiry = parse_ocpi_datetime(data["expiry_date"])
                except ValueError as exc:
                    raise OcpiError(status.INVALID_PARAMETERS, f"expiry_date: {exc}") from exc
            token = _token_store(partner, data["token"], version, routing)
            roaming.emsp_token = token
            roaming.id_tag = id_tag_for(token, station)
            roaming.authorization_reference = data.get("authorization_reference") or ""
            params = {"id_token": roaming.id_tag, "evse_id": evse.evse_id}
            if kind == Type.START_SESSION:
                verb = "remote_start"
            else:
                verb = "reserve_now"
                roaming.their_reservation_id = str(data["reservation_id"])
                earlier = RoamingCommand.objects.filter(
                    partner=partner,
                    type=Type.RESERVE_NOW,
                    their_reservation_id=roaming.their_reservation_id,
                    reservation_id__isnull=False,
                ).first()
                # The same reservation again replaces it (OCPI): our id stays.
                roaming.reservation_id = (
                    earlier.reservation_id if earlier else _reservation_id_new()
                )
                if earlier is not None:
                    RoamingCommand.objects.filter(pk=earlier.pk).update(reservation_id=None)
                params |= {"reservation_id": roaming.reservation_id, "expires_at": expiry}
    elif kind == Type.STOP_SESSION:
        session = session_find(partner, data["session_id"])
        if session is None or session.status != ChargingSession.Status.ACTIVE:
            return command_response(version, "UNKNOWN_SESSION", "no active session with this id")
        station, roaming.session, roaming.evse_id = session.station, session, session.evse_id
        verb, params = "remote_stop", {"transaction_id": session.transaction_id}
    else:  # CANCEL_RESERVATION
        reserved = RoamingCommand.objects.filter(
            partner=partner,
            type=Type.RESERVE_NOW,
            their_reservation_id=data["reservation_id"],
            reservation_id__isnull=False,
        ).first()
        if reserved is None or reserved.station is None:
            return command_response(version, "REJECTED", "unknown reservation")
        station = reserved.station
        roaming.evse_id = reserved.evse_id
        verb, params = "cancel_reservation", {"reservation_id": reserved.reservation_id}
    return _queue(roaming, station, verb, params)


def _queue(
    roaming: RoamingCommand, station: ChargingStation, verb: str, params: dict[str, Any]
) -> dict[str, Any]:
    version = roaming.version
    if not station.is_online:
        transaction.set_rollback(True)  # an offline station: nothing stored, nothing sent
        return command_response(version, "REJECTED", "the charging station is offline")
    if not codec().supports(station.protocol, verb):
        transaction.set_rollback(True)
        return command_response(version, "NOT_SUPPORTED", f"the station has no {verb}")
    try:
        command = command_create(
            station=station,
            verb=verb,
            params=params,
            origin=Command.Origin.ROAMING,
            expires_in=timedelta(seconds=settings.ROAMING_COMMAND_TIMEOUT),
        )
    except CommandError as error:
        transaction.set_rollback(True)
        return command_response(version, "REJECTED", error.message)
    roaming.station = station
    roaming.command = command
    try:
        with transaction.atomic():
            roaming.save()
    except IntegrityError as exc:  # two RESERVE_NOW racing for one new reservation id
        raise OcpiError(status.SERVER_ERROR, "try again") from exc
    return command_response(version, "ACCEPTED")

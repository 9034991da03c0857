"""Smart charging a partner asks for (OCPI 2.2.1 chargingprofiles, we are the receiver).

PUT sets a TxProfile on the session's transaction (SetChargingProfile), GET asks the
station's composite schedule (GetCompositeSchedule), DELETE clears our profile
(ClearChargingProfile). Each is a command of the station queue beside a `RoamingCommand`;
the answer is a ChargingProfileResponse at once, and the result (ChargingProfileResult,
ActiveChargingProfileResult, ClearProfileResult) goes to the partner's response_url through
the outbox when the station answered, REJECTED when it did not by the deadline.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from roaming.models import Partner, RoamingCommand
from roaming.ocpi import status
from roaming.ocpi.status import OcpiError, ocpi_datetime, parse_ocpi_datetime
from roaming.receiving import fields_check, session_find, url_guard
from sessions.models import ChargingSession
from stations.commands.codec import codec
from stations.commands.models import Command
from stations.commands.services import command_create
from stations.commands.verbs import CommandError

Type = RoamingCommand.Type
TYPES = (Type.SET_CHARGING_PROFILE, Type.GET_ACTIVE_PROFILE, Type.CLEAR_PROFILE)
# The profile we set on a session: one per session, at a stack level above the defaults.
PROFILE_BASE_ID = 700_000_000
STACK_LEVEL = 1

PROFILE_FIELDS: dict[str, tuple[type, int | None, bool]] = {
    "start_date_time": (str, None, False),
    "duration": (int, None, False),
    "charging_rate_unit": (str, None, True),
    "min_charging_rate": ((int, float), None, False),  # type: ignore[dict-item]
    "charging_profile_period": (list, None, False),
}


def profile_id_of(session: ChargingSession) -> int:
    return PROFILE_BASE_ID + session.pk % 1_000_000_000


def neutral_profile(session: ChargingSession, profile: dict[str, Any]) -> dict[str, Any]:
    """An OCPI ChargingProfile as the queue's neutral TxProfile on the session's transaction;
    2001 when it is not one."""
    fields_check(profile, PROFILE_FIELDS)
    if profile["charging_rate_unit"] not in ("W", "A"):
        raise OcpiError(status.INVALID_PARAMETERS, "charging_rate_unit: W or A")
    periods = []
    for period in profile.get("charging_profile_period") or []:
        if (
            not isinstance(period, dict)
            or set(period) != {"start_period", "limit"}
            or not isinstance(period["start_period"], int)
            or isinstance(period["limit"], bool)
            or not isinstance(period["limit"], int | float)
            or period["start_period"] < 0
            or period["limit"] < 0
        ):
            raise OcpiError(
                status.INVALID_PARAMETERS,
                "charging_profile_period: objects of start_period (int) and limit (number)",
            )
        periods.append({"start": period["start_period"], "limit": period["limit"]})
    if not periods:
        raise OcpiError(status.INVALID_PARAMETERS, "charging_profile_period: at least one")
    schedule: dict[str, Any] = {"rate_unit": profile["charging_rate_unit"], "periods": periods}
    kind = "Relative"
    if profile.get("start_date_time"):
        try:
            start = parse_ocpi_datetime(profile["start_date_time"])
        except ValueError as exc:
            raise OcpiError(status.INVALID_PARAMETERS, f"start_date_time: {exc}") from exc
        schedule["start"] = start.isoformat()
        kind = "Absolute"
    if profile.get("duration") is not None:
        schedule["duration"] = profile["duration"]
    if profile.get("min_charging_rate") is not None:
        schedule["min_rate"] = profile["min_charging_rate"]
    return {
        "id": profile_id_of(session),
        "stack_level": STACK_LEVEL,
        "purpose": "TxProfile",
        "kind": kind,
        "transaction_id": session.transaction_id,
        "schedule": schedule,
    }


def _response(result: str) -> dict[str, Any]:
    return {"result": result, "timeout": settings.ROAMING_COMMAND_TIMEOUT}


def profile_receive(
    *,
    partner: Partner,
    method: str,
    session_id: str,
    body: dict[str, Any] | None,
    query: dict[str, str],
) -> dict[str, Any]:
    """Check and queue a chargingprofiles call; its ChargingProfileResponse."""
    if method == "PUT":
        data = fields_check(
            body or {}, {"charging_profile": (dict, None, True), "response_url": (str, 255, True)}
        )
        kind, response_url = Type.SET_CHARGING_PROFILE, data["response_url"]
    else:
        response_url = query.get("response_url", "")
        if not response_url:
            raise OcpiError(status.INVALID_PARAMETERS, "response_url is required")
        kind = Type.GET_ACTIVE_PROFILE if method == "GET" else Type.CLEAR_PROFILE
        data = dict(query)
    url_guard(partner, response_url)
    session = session_find(partner, session_id)
    if session is None or session.status != ChargingSession.Status.ACTIVE:
        return _response("UNKNOWN_SESSION")
    station = session.station
    if kind == Type.SET_CHARGING_PROFILE:
        verb = "set_charging_profile"
        params: dict[str, Any] = {
            "evse_id": session.evse_id,
            "charging_profile": neutral_profile(session, data["charging_profile"]),
        }
    elif kind == Type.GET_ACTIVE_PROFILE:
        duration = query.get("duration", "")
        if not duration.isdigit() or int(duration) <= 0:
            raise OcpiError(status.INVALID_PARAMETERS, "duration: a positive number of seconds")
        verb = "get_composite_schedule"
        params = {"evse_id": session.evse_id, "duration": int(duration)}
    else:
        verb = "clear_charging_profile"
        params = {"profile_id": profile_id_of(session)}
    if not station.is_online:
        return _response("REJECTED")
    if not codec().supports(station.protocol, verb):
        return _response("NOT_SUPPORTED")
    now = timezone.now()
    with transaction.atomic():
        try:
            command = command_create(
                station=station,
                verb=verb,
                params=params,
                origin=Command.Origin.ROAMING,
                expires_in=timedelta(seconds=settings.ROAMING_COMMAND_TIMEOUT),
            )
        except CommandError as error:
            raise OcpiError(status.INVALID_PARAMETERS, error.message) from error
        RoamingCommand.objects.create(
            partner=partner,
            version="2.2.1",
            type=kind,
            request=data,
            response_url=response_url,
            command=command,
            station=station,
            session=session,
            evse_id=session.evse_id,
            deadline=now + timedelta(seconds=settings.ROAMING_COMMAND_TIMEOUT),
            created_at=now,
        )
    return _response("ACCEPTED")


def _schedule(response: dict[str, Any]) -> dict[str, Any] | None:
    """The ActiveChargingProfile of a GetCompositeSchedule answer (1.6 or 2.0.1)."""
    schedule = response.get("chargingSchedule") or response.get("schedule")
    if not isinstance(schedule, dict):
        return None
    start = response.get("scheduleStart") or schedule.get("scheduleStart")
    if start is None:
        start = schedule.get("startSchedule") or ocpi_datetime(timezone.now())
    try:
        start_text = ocpi_datetime(parse_ocpi_datetime(str(start).replace("Z", "+00:00")))
    except ValueError:
        start_text = ocpi_datetime(timezone.now())
    profile: dict[str, Any] = {
        "charging_rate_unit": schedule.get("chargingRateUnit", "A"),
        "charging_profile_period": [
            {"start_period": int(period.get("startPeriod", 0)), "limit": period.get("limit", 0)}
            for period in schedule.get("chargingSchedulePeriod") or []
        ],
    }
    if schedule.get("duration") is not None:
        profile["duration"] = schedule["duration"]
    if schedule.get("minChargingRate") is not None:
        profile["min_charging_rate"] = schedule["minChargingRate"]
    return {"start_date_time": start_text, "charging_profile": profile}


def result_of(roaming: RoamingCommand, command: Command) -> tuple[str, dict[str, Any]]:
    """The result we owe for a final station command: (our column, the body to post)."""
    if command.status == Command.Status.ACCEPTED:
        result = "ACCEPTED"
    elif command.status == Command.Status.REJECTED and command.result == "Unknown":
        result = "UNKNOWN"
    elif command.status in (Command.Status.TIMED_OUT, Command.Status.EXPIRED):
        return "TIMEOUT", {"result": "REJECTED"}
    else:
        result = "REJECTED"
    body: dict[str, Any] = {"result": result}
    if roaming.type == Type.GET_ACTIVE_PROFILE and result == "ACCEPTED":
        profile = _schedule(command.response or {})
        if profile is not None:
            body["profile"] = profile
    return result, body


def timeout_body(roaming: RoamingCommand) -> dict[str, Any]:
    # ChargingProfileResultType has no TIMEOUT: a station that did not answer did not accept.
    return {"result": "REJECTED"}

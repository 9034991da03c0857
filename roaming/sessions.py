"""Sessions as OCPI sends them (we are the sender): one internal model built from the
charging session, one serializer per OCPI version.

- id: the session's uid; status ACTIVE while charging, COMPLETED once ended (an OCPP session
  is created when the charge starts: PENDING is not used).
- kwh: the energy so far; charging_periods: one period from the start with the ENERGY and
  TIME consumed so far; total_cost: the running cost the rating computed (excl. VAT), once
  known.
- cdr_token (2.2.1) / auth_id (2.1.1): the eMSP's token the session was authorized with.
- auth_method: COMMAND for a remote start, AUTH_REQUEST when the eMSP authorized it in real
  time (an authorization_reference), else WHITELIST.
- 2.1.1 embeds the location with only the session's EVSE and connector.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings

from roaming.locations import SERIALIZERS, OcpiLocation
from roaming.models import EmspToken, OurParty
from roaming.ocpi.status import ocpi_datetime
from sessions.models import ChargingSession

STATUS: dict[str, str] = {
    ChargingSession.Status.ACTIVE: "ACTIVE",
    ChargingSession.Status.COMPLETED: "COMPLETED",
    ChargingSession.Status.INCOMPLETE: "COMPLETED",
}


def _number(value: Decimal, places: int = 4) -> float | int:
    value = value.quantize(Decimal(1).scaleb(-places))
    return int(value) if value == value.to_integral_value() else float(value)


@dataclass(frozen=True)
class OcpiSession:
    party: OurParty
    id: str
    start: dt.datetime
    end: dt.datetime | None
    kwh: Decimal
    hours: Decimal
    token: EmspToken | None
    id_tag: str
    auth_method: str
    authorization_reference: str
    location: OcpiLocation
    evse_uid: str
    connector_id: str
    currency: str
    total_cost: Decimal | None
    status: str
    last_updated: dt.datetime


def session_model(
    session: ChargingSession,
    *,
    party: OurParty,
    location: OcpiLocation,
    evse_uid: str,
    token: EmspToken | None,
    now: dt.datetime,
) -> OcpiSession:
    end = session.ended_at
    until = end or now
    seconds = max((until - session.started_at).total_seconds(), 0.0)
    reference = getattr(session, "authorization_reference", "") or ""
    if session.remote_start_id is not None:
        method = "COMMAND"
    elif reference:
        method = "AUTH_REQUEST"
    else:
        method = "WHITELIST"
    return OcpiSession(
        party=party,
        id=str(session.uid),
        start=session.started_at,
        end=end,
        kwh=(session.energy_wh or Decimal(0)) / 1000,
        hours=Decimal(str(seconds)) / 3600,
        token=token,
        id_tag=session.id_tag,
        auth_method=method,
        authorization_reference=reference,
        location=location,
        evse_uid=evse_uid,
        connector_id=str(session.connector_id or 1),
        currency=session.live_cost_currency or settings.OCPI_DEFAULT_CURRENCY,
        total_cost=session.live_cost,
        status=STATUS.get(session.status, "ACTIVE"),
        last_updated=max(session.updated_at, session.meter_last_at or session.updated_at),
    )


def _periods(model: OcpiSession, *, tariff_id: bool) -> list[dict[str, Any]]:
    if model.kwh <= 0 and model.hours <= 0:
        return []
    return [
        {
            "start_date_time": ocpi_datetime(model.start),
            "dimensions": [
                {"type": "ENERGY", "volume": _number(model.kwh)},
                {"type": "TIME", "volume": _number(model.hours)},
            ],
        }
    ]


def session_v221(model: OcpiSession) -> dict[str, Any]:
    token = model.token
    data: dict[str, Any] = {
        "country_code": model.party.country_code,
        "party_id": model.party.party_id,
        "id": model.id,
        "start_date_time": ocpi_datetime(model.start),
        "kwh": _number(model.kwh),
        "cdr_token": {
            "country_code": token.country_code if token else model.party.country_code,
            "party_id": token.party_id if token else model.party.party_id,
            "uid": token.uid if token else model.id_tag,
            "type": token.type if token else "OTHER",
            "contract_id": token.contract_id if token else model.id_tag,
        },
        "auth_method": model.auth_method,
        "location_id": model.location.id,
        "evse_uid": model.evse_uid,
        "connector_id": model.connector_id,
        "currency": model.currency,
        "charging_periods": _periods(model, tariff_id=True),
        "status": model.status,
        "last_updated": ocpi_datetime(model.last_updated),
    }
    if model.end is not None:
        data["end_date_time"] = ocpi_datetime(model.end)
    if model.authorization_reference:
        data["authorization_reference"] = model.authorization_reference
    if model.total_cost is not None:
        data["total_cost"] = {"excl_vat": _number(model.total_cost, 2)}
    return data


def session_v211(model: OcpiSession) -> dict[str, Any]:
    token = model.token
    data: dict[str, Any] = {
        "id": model.id,
        "start_datetime": ocpi_datetime(model.start),
        "kwh": _number(model.kwh),
        "auth_id": token.contract_id if token else model.id_tag,
        "auth_method": "WHITELIST" if model.auth_method == "COMMAND" else model.auth_method,
        "location": SERIALIZERS["2.1.1"]["location"](model.location),
        "currency": model.currency,
        "charging_periods": _periods(model, tariff_id=False),
        "status": model.status,
        "last_updated": ocpi_datetime(model.last_updated),
    }
    if model.end is not None:
        data["end_datetime"] = ocpi_datetime(model.end)
    if model.total_cost is not None:
        data["total_cost"] = _number(model.total_cost, 2)
    return data


def session_patch(model: OcpiSession, *, version: str) -> dict[str, Any]:
    """What a periodic PATCH carries: the fields that move while charging."""
    full = SESSION_SERIALIZERS[version](model)
    keys = ("kwh", "charging_periods", "total_cost", "status", "last_updated")
    return {key: full[key] for key in keys if key in full}


SESSION_SERIALIZERS: dict[str, Callable[[OcpiSession], dict[str, Any]]] = {
    "2.2.1": session_v221,
    "2.1.1": session_v211,
}

"""CDRs as OCPI sends them (we are the sender): billing's frozen CDR (billing.Cdr, with its
site, token and tariff snapshots), one serializer per OCPI version.

A credit CDR (billing's correction of a CDR) is sent as one: 2.2.1 with `credit: true`,
`credit_reference_id` = the credited CDR's id and negative amounts; 2.1.1 has no credit
CDRs, it gets the negative amounts and a remark naming the credited CDR. The tariff the
session was rated with is embedded (`tariffs`), serialized from the tariff version the
rating used.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from billing.models import Cdr
from roaming.locations import AC_VOLTAGE, DC_VOLTAGE
from roaming.models import EmspToken, OurParty
from roaming.ocpi.status import ocpi_datetime
from roaming.tariffs import TARIFF_SERIALIZERS

DIMENSIONS_211 = {"ENERGY", "FLAT", "MAX_CURRENT", "MIN_CURRENT", "PARKING_TIME", "TIME"}


def _number(value: Any, places: int = 4) -> float | int:
    number = Decimal(str(value)).quantize(Decimal(1).scaleb(-places))
    return int(number) if number == number.to_integral_value() else float(number)


def _money(value: Decimal) -> float | int:
    return _number(value, 2)


def _price(excl: Decimal, incl: Decimal) -> dict[str, Any]:
    return {"excl_vat": _money(excl), "incl_vat": _money(incl)}


def cdr_id(cdr: Cdr, version: str) -> str:
    # 2.1.1 CDR ids are at most 36 characters; a credit's "-C" is kept at the end.
    if version == "2.1.1" and len(cdr.uid) > 36:
        return cdr.uid[:34] + cdr.uid[-2:] if cdr.credit else cdr.uid[:36]
    return cdr.uid


def _periods(cdr: Cdr, *, version: str) -> list[dict[str, Any]]:
    periods = []
    for period in cdr.charging_periods or []:
        dimensions = [
            {"type": d["type"], "volume": _number(d["volume"])}
            for d in period.get("dimensions", [])
            if version != "2.1.1" or d["type"] in DIMENSIONS_211
        ]
        if not dimensions:
            continue
        item: dict[str, Any] = {
            "start_date_time": ocpi_datetime(_parse(period["start_date_time"])),
            "dimensions": dimensions,
        }
        if version != "2.1.1" and period.get("tariff_id"):
            item["tariff_id"] = period["tariff_id"]
        periods.append(item)
    if not periods:
        # OCPI wants at least one period: the whole session's energy and time.
        periods.append(
            {
                "start_date_time": ocpi_datetime(cdr.start),
                "dimensions": [
                    {"type": "ENERGY", "volume": _number(cdr.total_energy_kwh)},
                    {"type": "TIME", "volume": _number(cdr.total_time_h)},
                ],
            }
        )
    return periods


def _parse(text: str) -> dt.datetime:
    return dt.datetime.fromisoformat(str(text).replace("Z", "+00:00"))


def _tariffs(cdr: Cdr, party: OurParty, version: str) -> list[dict[str, Any]]:
    if cdr.tariff_version is None:
        return []
    return [TARIFF_SERIALIZERS[version](cdr.tariff_version, party)]


def _auth_method(cdr: Cdr) -> str:
    session = cdr.session
    if session.remote_start_id is not None:
        return "COMMAND"
    if getattr(session, "authorization_reference", ""):
        return "AUTH_REQUEST"
    return "WHITELIST"


def _cdr_location(cdr: Cdr, evse_id: str) -> dict[str, Any]:
    site = cdr.site_snapshot or {}
    data: dict[str, Any] = {
        "id": str(site.get("location_id") or cdr.location_id or ""),
        "address": site.get("address", ""),
        "city": site.get("city", ""),
        "country": site.get("country", ""),
        "coordinates": {
            "latitude": f"{Decimal(site.get('coordinates', {}).get('latitude') or 0):.6f}",
            "longitude": f"{Decimal(site.get('coordinates', {}).get('longitude') or 0):.6f}",
        },
        "evse_uid": cdr.evse_uid or site.get("evse_uid", ""),
        "evse_id": evse_id,
        "connector_id": str(cdr.connector_id or 1),
        "connector_standard": site.get("connector_standard") or "IEC_62196_T2",
        "connector_format": site.get("connector_format") or "SOCKET",
        "connector_power_type": site.get("connector_power_type") or "AC_3_PHASE",
    }
    if site.get("name"):
        data["name"] = site["name"]
    if site.get("postal_code"):
        data["postal_code"] = site["postal_code"]
    return data


def _evse_id(cdr: Cdr, party: OurParty) -> str:
    site = cdr.site_snapshot or {}
    if site.get("evse_emi3_id"):
        return str(site["evse_emi3_id"])
    station_part = re.sub(r"[^A-Z0-9]", "", cdr.station_identity.upper())
    suffix = f"*{site.get('evse_id', 1)}"
    return f"{party.country_code}*{party.party_id}*E{station_part[: 30 - len(suffix)]}{suffix}"


def cdr_v221(cdr: Cdr, *, party: OurParty, token: EmspToken | None) -> dict[str, Any]:
    snapshot = cdr.token_snapshot or {}
    data: dict[str, Any] = {
        "country_code": party.country_code,
        "party_id": party.party_id,
        "id": cdr_id(cdr, "2.2.1"),
        "start_date_time": ocpi_datetime(cdr.start),
        "end_date_time": ocpi_datetime(cdr.end),
        "session_id": str(cdr.session.uid),
        "cdr_token": {
            "country_code": token.country_code if token else party.country_code,
            "party_id": token.party_id if token else party.party_id,
            "uid": token.uid if token else str(snapshot.get("uid") or cdr.token_uid),
            "type": token.type if token else "OTHER",
            "contract_id": token.contract_id
            if token
            else str(snapshot.get("contract_id") or cdr.token_uid),
        },
        "auth_method": _auth_method(cdr),
        "cdr_location": _cdr_location(cdr, _evse_id(cdr, party)),
        "currency": cdr.currency,
        "charging_periods": _periods(cdr, version="2.2.1"),
        "total_cost": _price(cdr.total_cost_excl_vat, cdr.total_cost_incl_vat),
        "total_energy": _number(cdr.total_energy_kwh),
        "total_time": _number(cdr.total_time_h),
        "last_updated": ocpi_datetime(cdr.created_at),
    }
    reference = getattr(cdr.session, "authorization_reference", "")
    if reference:
        data["authorization_reference"] = reference
    tariffs = _tariffs(cdr, party, "2.2.1")
    if tariffs:
        data["tariffs"] = tariffs
    for name in ("fixed", "energy", "time", "parking", "reservation"):
        excl = getattr(cdr, f"total_{name}_cost_excl_vat")
        incl = getattr(cdr, f"total_{name}_cost_incl_vat")
        if excl or incl:
            data[f"total_{name}_cost"] = _price(excl, incl)
    if cdr.total_parking_time_h:
        data["total_parking_time"] = _number(cdr.total_parking_time_h)
    if cdr.credit:
        data["credit"] = True
        assert cdr.credit_of is not None
        data["credit_reference_id"] = cdr_id(cdr.credit_of, "2.2.1")
    return data


def cdr_v211(cdr: Cdr, *, party: OurParty, token: EmspToken | None) -> dict[str, Any]:
    site = cdr.site_snapshot or {}
    location = _cdr_location(cdr, _evse_id(cdr, party))
    power_type = location["connector_power_type"]
    stamp = ocpi_datetime(cdr.created_at)
    data: dict[str, Any] = {
        "id": cdr_id(cdr, "2.1.1"),
        "start_date_time": ocpi_datetime(cdr.start),
        "stop_date_time": ocpi_datetime(cdr.end),
        # The 2.1.1 text says stop_date_time; implementations that read the later name
        # (extrawest-ocpi's model does) find it too. Receivers ignore fields they do not know.
        "end_date_time": ocpi_datetime(cdr.end),
        "auth_id": token.contract_id if token else cdr.token_uid,
        "auth_method": "WHITELIST" if _auth_method(cdr) == "COMMAND" else _auth_method(cdr),
        "location": {
            "id": location["id"],
            "type": "UNKNOWN",
            "address": location["address"],
            "city": location["city"],
            "postal_code": site.get("postal_code") or "",
            "country": location["country"],
            "coordinates": location["coordinates"],
            "time_zone": site.get("time_zone") or "UTC",
            "evses": [
                {
                    "uid": location["evse_uid"],
                    "evse_id": location["evse_id"],
                    "status": "AVAILABLE",
                    "connectors": [
                        {
                            "id": location["connector_id"],
                            "standard": location["connector_standard"],
                            "format": location["connector_format"],
                            "power_type": power_type,
                            "voltage": DC_VOLTAGE if power_type == "DC" else AC_VOLTAGE,
                            "amperage": 32,
                            "last_updated": stamp,
                        }
                    ],
                    "last_updated": stamp,
                }
            ],
            "last_updated": stamp,
        },
        "currency": cdr.currency,
        "charging_periods": _periods(cdr, version="2.1.1"),
        "total_cost": _money(cdr.total_cost_incl_vat),
        "total_energy": _number(cdr.total_energy_kwh),
        "total_time": _number(cdr.total_time_h),
        "last_updated": stamp,
    }
    if site.get("name"):
        data["location"]["name"] = site["name"]
    if cdr.tariff_version is not None:
        connector = data["location"]["evses"][0]["connectors"][0]
        connector["tariff_id"] = cdr.tariff_version.ocpi["id"]
    tariffs = _tariffs(cdr, party, "2.1.1")
    if tariffs:
        data["tariffs"] = tariffs
    if cdr.total_parking_time_h:
        data["total_parking_time"] = _number(cdr.total_parking_time_h)
    if cdr.credit:
        assert cdr.credit_of is not None
        data["remark"] = f"credit of CDR {cdr_id(cdr.credit_of, '2.1.1')}"
    return data


CDR_SERIALIZERS: dict[str, Callable[..., dict[str, Any]]] = {
    "2.2.1": cdr_v221,
    "2.1.1": cdr_v211,
}

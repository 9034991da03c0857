"""Tariffs as OCPI sends them: the published version in force (tariffs.TariffVersion, the one
the rating uses), one serializer per OCPI version.

A version's stored form is OCPI 2.2.1 with prices as decimal strings and dates in ISO form;
the wire wants numbers and UTC `Z` dates, and the party the tariff is published under.
2.1.1 has no VAT, no min/max price, no tariff type, and no restrictions on current or on
reservations: elements restricted in ways 2.1.1 cannot say are left out rather than sent
without the restriction (which would price other sessions with them).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from roaming.models import OurParty
from roaming.ocpi.status import ocpi_datetime
from tariffs.models import TariffVersion

RESTRICTIONS_211 = {
    "start_time",
    "end_time",
    "start_date",
    "end_date",
    "min_kwh",
    "max_kwh",
    "min_power",
    "max_power",
    "min_duration",
    "max_duration",
    "day_of_week",
}
NUMERIC_RESTRICTIONS = {
    "min_kwh",
    "max_kwh",
    "min_current",
    "max_current",
    "min_power",
    "max_power",
}


def _number(text: Any) -> float | int:
    value = Decimal(str(text))
    return int(value) if value == value.to_integral_value() else float(value)


def _price(price: dict[str, Any]) -> dict[str, Any]:
    return {key: _number(value) for key, value in price.items()}


def _date(text: str) -> str:
    return ocpi_datetime(dt.datetime.fromisoformat(text))


def _components(components: list[dict[str, Any]], *, vat: bool) -> list[dict[str, Any]]:
    out = []
    for component in components:
        item: dict[str, Any] = {
            "type": component["type"],
            "price": _number(component["price"]),
            "step_size": component.get("step_size") or 1,
        }
        if vat and component.get("vat") is not None:
            item["vat"] = _number(component["vat"])
        out.append(item)
    return out


def _restrictions(restrictions: dict[str, Any]) -> dict[str, Any]:
    return {
        key: _number(value) if key in NUMERIC_RESTRICTIONS else value
        for key, value in restrictions.items()
    }


def _last_updated(version: TariffVersion) -> dt.datetime:
    return getattr(version, "last_updated", None) or version.created_at


def tariff_v221(version: TariffVersion, party: OurParty) -> dict[str, Any]:
    stored = version.ocpi
    data: dict[str, Any] = {
        "country_code": party.country_code,
        "party_id": party.party_id,
        "id": stored["id"],
        "currency": stored["currency"],
        "elements": [
            {
                "price_components": _components(element["price_components"], vat=True),
                **(
                    {"restrictions": _restrictions(element["restrictions"])}
                    if element.get("restrictions")
                    else {}
                ),
            }
            for element in stored["elements"]
        ],
        "last_updated": ocpi_datetime(_last_updated(version)),
    }
    for key in ("type", "tariff_alt_text"):
        if stored.get(key):
            data[key] = stored[key]
    for key in ("min_price", "max_price"):
        if stored.get(key):
            data[key] = _price(stored[key])
    for key in ("start_date_time", "end_date_time"):
        if stored.get(key):
            data[key] = _date(stored[key])
    return data


def tariff_v211(version: TariffVersion, party: OurParty) -> dict[str, Any]:
    stored = version.ocpi
    elements = []
    for element in stored["elements"]:
        restrictions = element.get("restrictions") or {}
        if set(restrictions) - RESTRICTIONS_211:
            continue
        item: dict[str, Any] = {
            "price_components": _components(element["price_components"], vat=False)
        }
        if restrictions:
            item["restrictions"] = _restrictions(restrictions)
        elements.append(item)
    data: dict[str, Any] = {
        "id": stored["id"],
        "currency": stored["currency"],
        "elements": elements,
        "last_updated": ocpi_datetime(_last_updated(version)),
    }
    if stored.get("tariff_alt_text"):
        data["tariff_alt_text"] = stored["tariff_alt_text"]
    return data


TARIFF_SERIALIZERS: dict[str, Callable[[TariffVersion, OurParty], dict[str, Any]]] = {
    "2.2.1": tariff_v221,
    "2.1.1": tariff_v211,
}

"""Our tariff versions as OCPP 2.1 tariffs (SetDefaultTariff, ChangeTransactionTariff): the
station shows and computes the cost itself (cost in its TransactionEvents), from the same
version our rating uses.

What goes over: per dimension (energy, charging time, parking as idle time, a fixed fee), the
price of the first element without restrictions, with its VAT as the tax rate; the minimum
and maximum prices; the tariff's display text as the description. Elements with restrictions
(times of day, kWh or power bands) have no conditions in this first version: a tariff that has
any is still sent with its unrestricted prices, and the description says that the CDR is what
counts. The queued command is checked against the 2.1 schema when it is created.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sessions.models import ChargingSession
from stations.commands.models import Command
from stations.commands.services import command_create
from stations.models import ChargingStation
from tariffs.models import SessionTariff, TariffVersion

OCPP21 = "ocpp2.1"
_DIMENSIONS = {"ENERGY": "energy", "TIME": "chargingTime", "PARKING_TIME": "idleTime"}


def _number(value: Any) -> float:
    # The schema's numbers are JSON numbers: our Decimals, exact to the cent of a cent.
    return float(Decimal(str(value)))


def _taxed(prices: list[dict[str, Any]], vat: Any) -> dict[str, Any]:
    block: dict[str, Any] = {"prices": prices}
    if vat not in (None, ""):
        block["taxRates"] = [{"type": "VAT", "tax": _number(vat)}]
    return block


def tariff_ocpp21(version: TariffVersion) -> dict[str, Any]:
    """The OCPP 2.1 TariffType of one of our tariff versions."""
    ocpi = version.ocpi
    tariff: dict[str, Any] = {
        "tariffId": f"{ocpi.get('id', version.tariff_id)}-v{version.number}"[:60],
        "currency": version.currency,
    }
    restricted = False
    for element in ocpi.get("elements", []):
        if element.get("restrictions"):
            restricted = True
            continue
        for component in element.get("price_components", []):
            kind, price, vat = component.get("type"), component.get("price"), component.get("vat")
            if kind == "FLAT" and "fixedFee" not in tariff:
                tariff["fixedFee"] = _taxed([{"priceFixed": _number(price)}], vat)
            elif kind == "ENERGY" and "energy" not in tariff:
                tariff["energy"] = _taxed([{"priceKwh": _number(price)}], vat)
            elif kind in _DIMENSIONS and _DIMENSIONS[kind] not in tariff:
                # OCPI prices time per hour; OCPP 2.1 per minute.
                per_minute = Decimal(str(price)) / 60
                tariff[_DIMENSIONS[kind]] = _taxed([{"priceMinute": _number(per_minute)}], vat)
    for ours, theirs in (("min_price", "minCost"), ("max_price", "maxCost")):
        price = ocpi.get(ours)
        if price:
            cost = {"exclTax": _number(price["excl_vat"])}
            if price.get("incl_vat") is not None:
                cost["inclTax"] = _number(price["incl_vat"])
            tariff[theirs] = cost
    texts = [
        {"format": "UTF8", "language": text.get("language", "en")[:8], "content": text["text"]}
        for text in ocpi.get("tariff_alt_text", [])
        if text.get("text")
    ][:9]
    if restricted:
        texts.append(
            {
                "format": "UTF8",
                "language": "en",
                "content": "Prices vary by time or use; the invoice shows the exact cost.",
            }
        )
    if texts:
        tariff["description"] = [{**text, "content": text["content"][:1024]} for text in texts[:10]]
    return tariff


def station_default_tariff_send(
    *, station: ChargingStation, version: TariffVersion, evse_id: int = 0, requested_by: Any = None
) -> Command:
    """Queue SetDefaultTariff: `version` becomes the station's (or one EVSE's) default."""
    return command_create(
        station=station,
        action="SetDefaultTariff",
        payload={"evseId": evse_id, "tariff": tariff_ocpp21(version)},
        origin=Command.Origin.ADMIN if requested_by else Command.Origin.SYSTEM,
        requested_by=requested_by,
    )


def session_tariff_change_send(*, session: ChargingSession, requested_by: Any = None) -> Command:
    """Queue ChangeTransactionTariff with the version fixed on the session (after an
    operator assigned another one): the station recomputes the running cost with it."""
    version = SessionTariff.objects.select_related("version").get(session=session).version
    return command_create(
        station=session.station,
        action="ChangeTransactionTariff",
        payload={"transactionId": session.transaction_id, "tariff": tariff_ocpp21(version)},
        origin=Command.Origin.ADMIN if requested_by else Command.Origin.SYSTEM,
        requested_by=requested_by,
    )

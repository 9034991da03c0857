"""Our network as OCPI sees it: one internal model per object (location, EVSE, connector),
built from the stations domain, and one serializer per OCPI version.

- A site (stations.Location) is one OCPI Location; its id is the site's primary key.
- An EVSE is stations.Evse: 1.6 stations have one per connector (the OCA guidance OCPI
  quotes), 2.0.1 stations their own EVSEs. Its `uid` is the stable opaque one stored there;
  `evse_id` is the configured eMI3 id or, without one, built from the party and the station.
- Status follows the station's connectivity first (offline -> UNKNOWN), the station as a
  whole next (connector 0 Unavailable -> INOPERATIVE, Faulted -> OUTOFORDER), then the
  connectors' OCPP statuses.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from roaming.models import OurParty
from roaming.ocpi.status import ocpi_datetime
from stations.models import ChargingStation, Connector, Evse, Location

# OCPP 1.6 ChargePointStatus and 2.0.1 ConnectorStatusEnumType -> OCPI EVSE status.
OCPP_TO_OCPI_STATUS = {
    "Available": "AVAILABLE",
    "Preparing": "CHARGING",
    "Charging": "CHARGING",
    "SuspendedEV": "CHARGING",
    "SuspendedEVSE": "CHARGING",
    "Finishing": "CHARGING",
    "Occupied": "CHARGING",
    "Reserved": "RESERVED",
    "Unavailable": "INOPERATIVE",
    "Faulted": "OUTOFORDER",
}
# An EVSE of several connectors (2.0.1) shows the most telling of its connectors' states.
STATUS_PRECEDENCE = ("CHARGING", "RESERVED", "AVAILABLE", "INOPERATIVE", "OUTOFORDER", "UNKNOWN")
# Nominal line-to-neutral voltages: the stations domain stores the power only.
AC_VOLTAGE = 230
DC_VOLTAGE = 500
CAPABILITIES = ["RFID_READER"]


@dataclass(frozen=True)
class OcpiConnector:
    id: str
    standard: str
    format: str
    power_type: str
    max_voltage: int
    max_amperage: int
    max_electric_power: int
    tariff_ids: list[str]
    last_updated: dt.datetime


@dataclass(frozen=True)
class OcpiEvse:
    uid: str
    evse_id: str
    status: str
    capabilities: list[str]
    physical_reference: str
    connectors: list[OcpiConnector]
    last_updated: dt.datetime


@dataclass(frozen=True)
class OcpiLocation:
    country_code: str
    party_id: str
    id: str
    publish: bool
    name: str
    address: str
    city: str
    postal_code: str
    country: str
    latitude: str
    longitude: str
    time_zone: str
    operator: dict[str, str]
    last_updated: dt.datetime
    evses: list[OcpiEvse] = field(default_factory=list)


def _latest(*values: dt.datetime | None) -> dt.datetime:
    return max(value for value in values if value is not None)


def evse_status(station: ChargingStation, connectors: list[Connector]) -> str:
    if not station.is_online:
        return "UNKNOWN"
    if station.status in ("Unavailable", "Faulted"):
        return OCPP_TO_OCPI_STATUS[station.status]
    found = {OCPP_TO_OCPI_STATUS.get(connector.status, "UNKNOWN") for connector in connectors}
    return next((status for status in STATUS_PRECEDENCE if status in found), "UNKNOWN")


def emi3_evse_id(party: OurParty, station: ChargingStation, evse: Evse) -> str:
    """The configured eMI3 id, or CC*PID*E<station><evse> (ISO 15118 form, at most 30 after E)."""
    if evse.emi3_id:
        return evse.emi3_id
    station_part = re.sub(r"[^A-Z0-9]", "", station.identity.upper())
    suffix = f"*{evse.evse_id}"
    return f"{party.country_code}*{party.party_id}*E{station_part[: 30 - len(suffix)]}{suffix}"


# The tariff ids that apply to a connector (station, EVSE number, connector number).
TariffIds = Callable[[ChargingStation, Evse, Connector], list[str]]


def no_tariffs(station: ChargingStation, evse: Evse, connector: Connector) -> list[str]:
    return []


def connector_model(
    station: ChargingStation, connector: Connector, tariff_ids: list[str] | None = None
) -> OcpiConnector:
    power = connector.max_power_w
    if connector.power_type == Connector.PowerType.DC:
        voltage, amperage = DC_VOLTAGE, round(power / DC_VOLTAGE)
    elif connector.power_type == Connector.PowerType.AC_3_PHASE:
        voltage, amperage = AC_VOLTAGE, round(power / (3 * AC_VOLTAGE))
    else:
        voltage, amperage = AC_VOLTAGE, round(power / AC_VOLTAGE)
    return OcpiConnector(
        id=str(connector.connector_id),
        standard=connector.standard,
        format=connector.format or "SOCKET",
        power_type=connector.power_type,
        max_voltage=voltage,
        max_amperage=amperage,
        max_electric_power=power,
        tariff_ids=tariff_ids or [],
        last_updated=_latest(station.updated_at, connector.status_at),
    )


def evse_model(
    party: OurParty, station: ChargingStation, evse: Evse, tariffs: TariffIds = no_tariffs
) -> OcpiEvse:
    connectors = list(evse.connectors.all())
    models = [
        connector_model(station, connector, tariffs(station, evse, connector))
        for connector in connectors
    ]
    return OcpiEvse(
        uid=evse.uid,
        evse_id=emi3_evse_id(party, station, evse),
        status=evse_status(station, connectors),
        capabilities=list(CAPABILITIES),
        physical_reference=str(evse.evse_id),
        connectors=models,
        last_updated=_latest(
            station.updated_at,
            station.connected_at,
            evse.status_at,
            *(model.last_updated for model in models),
        ),
    )


def location_party(location: Location, default: OurParty | None) -> OurParty:
    owner = getattr(location, "ocpi_party", None)
    if owner is not None:
        return owner.party
    if default is None:
        raise LookupError("a site without a party and no default party")
    return default


def location_model(
    location: Location, *, default_party: OurParty | None, tariffs: TariffIds = no_tariffs
) -> OcpiLocation:
    party = location_party(location, default_party)
    evses = [
        evse_model(party, station, evse, tariffs)
        for station in location.stations.all()
        for evse in station.evses.all()
        if evse.connectors.all()
    ]
    last_updated = getattr(location, "last_updated", None) or location.updated_at
    return OcpiLocation(
        country_code=party.country_code,
        party_id=party.party_id,
        id=str(location.pk),
        publish=location.publish,
        name=location.name,
        address=location.address,
        city=location.city,
        postal_code=location.postal_code,
        country=location.country,
        latitude=f"{location.latitude:.6f}",
        longitude=f"{location.longitude:.6f}",
        time_zone=location.time_zone,
        operator=party.business_details(),
        last_updated=_latest(last_updated, *(evse.last_updated for evse in evses)),
        evses=evses,
    )


# --- serializers, one per version ---------------------------------------------------------------


def connector_v221(connector: OcpiConnector) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": connector.id,
        "standard": connector.standard,
        "format": connector.format,
        "power_type": connector.power_type,
        "max_voltage": connector.max_voltage,
        "max_amperage": connector.max_amperage,
        "max_electric_power": connector.max_electric_power,
        "last_updated": ocpi_datetime(connector.last_updated),
    }
    if connector.tariff_ids:
        data["tariff_ids"] = connector.tariff_ids
    return data


def evse_v221(evse: OcpiEvse) -> dict[str, Any]:
    return {
        "uid": evse.uid,
        "evse_id": evse.evse_id,
        "status": evse.status,
        "capabilities": evse.capabilities,
        "connectors": [connector_v221(connector) for connector in evse.connectors],
        "physical_reference": evse.physical_reference,
        "last_updated": ocpi_datetime(evse.last_updated),
    }


def location_v221(location: OcpiLocation) -> dict[str, Any]:
    data: dict[str, Any] = {
        "country_code": location.country_code,
        "party_id": location.party_id,
        "id": location.id,
        "publish": location.publish,
        "name": location.name,
        "address": location.address,
        "city": location.city,
        "country": location.country,
        "coordinates": {"latitude": location.latitude, "longitude": location.longitude},
        "evses": [evse_v221(evse) for evse in location.evses],
        "operator": location.operator,
        "time_zone": location.time_zone,
        "last_updated": ocpi_datetime(location.last_updated),
    }
    if location.postal_code:
        data["postal_code"] = location.postal_code
    return data


def connector_v211(connector: OcpiConnector) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": connector.id,
        "standard": connector.standard,
        "format": connector.format,
        "power_type": connector.power_type,
        "voltage": connector.max_voltage,
        "amperage": connector.max_amperage,
        "last_updated": ocpi_datetime(connector.last_updated),
    }
    if connector.tariff_ids:
        # 2.1.1 has one tariff per connector.
        data["tariff_id"] = connector.tariff_ids[0]
    return data


def evse_v211(evse: OcpiEvse) -> dict[str, Any]:
    return {
        "uid": evse.uid,
        "evse_id": evse.evse_id,
        "status": evse.status,
        "capabilities": evse.capabilities,
        "connectors": [connector_v211(connector) for connector in evse.connectors],
        "physical_reference": evse.physical_reference,
        "last_updated": ocpi_datetime(evse.last_updated),
    }


def location_v211(location: OcpiLocation) -> dict[str, Any]:
    data: dict[str, Any] = {
        "id": location.id,
        # Required in 2.1.1; the stations domain does not record the kind of site.
        "type": "UNKNOWN",
        "name": location.name,
        "address": location.address,
        "city": location.city,
        "country": location.country,
        "coordinates": {"latitude": location.latitude, "longitude": location.longitude},
        "evses": [evse_v211(evse) for evse in location.evses],
        "operator": location.operator,
        "time_zone": location.time_zone,
        "last_updated": ocpi_datetime(location.last_updated),
    }
    if location.postal_code:
        data["postal_code"] = location.postal_code
    return data


SERIALIZERS: dict[str, dict[str, Callable[[Any], dict[str, Any]]]] = {
    "2.2.1": {"location": location_v221, "evse": evse_v221, "connector": connector_v221},
    "2.1.1": {"location": location_v211, "evse": evse_v211, "connector": connector_v211},
}

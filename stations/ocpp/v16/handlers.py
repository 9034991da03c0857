"""OCPP 1.6J: charger-initiated messages translated to version-neutral service calls."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sessions import services as charging
from sessions.models import AuthorizationDecision
from stations import services as network
from stations.ocpp.db import db
from stations.ocpp.handlers import BaseHandlers, now_iso, parse_time, parse_time_or_none
from stations.ocpp.v16.addressing import evse_address
from stations.ocpp.v16.commands import AUTHORIZATION_STATUS, ID_TAG_LENGTH


def id_tag_info(auth: charging.AuthorizationResult) -> dict[str, Any]:
    info: dict[str, Any] = {"status": AUTHORIZATION_STATUS[auth.status]}
    if auth.expiry:
        info["expiryDate"] = auth.expiry.isoformat()
    # A group id longer than parentIdTag's 20 characters cannot be expressed in 1.6.
    if auth.group_uid and len(auth.group_uid) <= ID_TAG_LENGTH:
        info["parentIdTag"] = auth.group_uid
    return info


def samples_from(meter_values: list[dict[str, Any]]) -> list[charging.Sample]:
    samples = []
    for meter_value in meter_values:
        timestamp = parse_time(meter_value.get("timestamp"))
        for sampled in meter_value.get("sampledValue", []):
            signed = sampled.get("format") == "SignedData"
            samples.append(
                charging.Sample(
                    timestamp=timestamp,
                    value=sampled.get("value", ""),
                    measurand=sampled.get("measurand", charging.ENERGY_REGISTER),
                    phase=sampled.get("phase", ""),
                    location=sampled.get("location", ""),
                    context=sampled.get("context", ""),
                    # The 1.6 schema spells "Celcius"; chargers may send either.
                    unit=sampled.get("unit", "Wh" if not sampled.get("measurand") else ""),
                    format=sampled.get("format", ""),
                    signed_data=sampled.get("value", "") if signed else "",
                )
            )
    return samples


class Handlers(BaseHandlers):
    """The charger-initiated actions of OCPP 1.6J (core, firmware, security extension)."""

    async def BootNotification(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        if (deferred := self.boot_deferred()) is not None:
            return deferred
        # 1.6 transactions do not outlive a reboot: the station's open sessions end (on an
        # estimate, unless its queued StopTransaction comes first).
        result = await db(charging.station_boot_record)(
            station_id=self.station_id,
            vendor=p["chargePointVendor"],
            model=p["chargePointModel"],
            serial_number=p.get("chargePointSerialNumber") or p.get("chargeBoxSerialNumber", ""),
            firmware_version=p.get("firmwareVersion", ""),
            iccid=p.get("iccid", ""),
            imsi=p.get("imsi", ""),
            meter_type=p.get("meterType", ""),
            meter_serial_number=p.get("meterSerialNumber", ""),
        )
        self.consumer.registration_status = result.status
        return {"status": result.status, "currentTime": now_iso(), "interval": result.interval}

    async def Heartbeat(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        # Liveness is recorded by the consumer for every frame, throttled; a heartbeat needs
        # no write of its own.
        return {"currentTime": now_iso()}

    async def StatusNotification(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        evse_id, connector_id = evse_address(p["connectorId"])
        # Optional in 1.6: without it the report is stored at its receive time, and marked so.
        timestamp = parse_time_or_none(p.get("timestamp"))
        await db(charging.connector_status_record)(
            station_id=self.station_id,
            evse_id=evse_id,
            connector_id=connector_id,
            status=p["status"],
            error_code=p["errorCode"] if p["errorCode"] != "NoError" else "",
            info=p.get("info", ""),
            vendor_id=p.get("vendorId", ""),
            vendor_error_code=p.get("vendorErrorCode", ""),
            timestamp=timestamp,
            # A 1.6 connector is Available only with no transaction on it.
            available=p["status"] == "Available",
        )
        await self.energy_notify("status")
        return {}

    async def Authorize(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        auth = await db(charging.authorization_decide)(
            uid=p["idTag"],
            context=AuthorizationDecision.Context.AUTHORIZE,
            station_id=self.station_id,
        )
        return {"idTagInfo": id_tag_info(auth)}

    async def StartTransaction(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        evse_id, connector_id = evse_address(p["connectorId"])
        result = await db(charging.session_start)(
            station_id=self.station_id,
            evse_id=evse_id,
            connector_id=connector_id,
            id_tag=p["idTag"],
            # Absent only when the edge dropped an absurd one (stations.ocpp.bounds).
            meter_start_wh=Decimal(p["meterStart"]) if "meterStart" in p else None,
            timestamp=parse_time(p["timestamp"]),
            reservation_id=p.get("reservationId"),
            anomalies=self.anomalies,
        )
        return {
            "transactionId": result.transaction_id,
            "idTagInfo": id_tag_info(result.authorization),
        }

    async def MeterValues(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        evse_id, connector_id = evse_address(p["connectorId"])
        batch = charging.SampleBatch(evse_id, connector_id, samples_from(p["meterValue"]))
        await db(charging.session_meter_samples)(
            station_id=self.station_id,
            batch=batch,
            transaction_id=p.get("transactionId"),
            anomalies=self.anomalies,
        )
        await self.energy_notify("meter")
        return {}

    async def StopTransaction(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        data = p.get("transactionData")
        batch = charging.SampleBatch(0, 0, samples_from(data)) if data else None
        auth = await db(charging.session_stop)(
            station_id=self.station_id,
            transaction_id=p["transactionId"],
            meter_stop_wh=Decimal(p["meterStop"]) if "meterStop" in p else None,
            timestamp=parse_time(p["timestamp"]),
            reason=p.get("reason", "Local"),
            id_tag=p.get("idTag", ""),
            transaction_data=batch,
            anomalies=self.anomalies,
        )
        return {"idTagInfo": id_tag_info(auth)} if auth is not None else {}

    async def DataTransfer(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        await self._notify("DataTransfer", p, status=p.get("vendorId", ""))
        # No vendor extension is registered: the honest answer per the spec.
        return {"status": "UnknownVendorId"}

    async def DiagnosticsStatusNotification(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        await self._notify("DiagnosticsStatusNotification", p, status=p["status"])
        return {}

    async def FirmwareStatusNotification(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        await self._notify("FirmwareStatusNotification", p, status=p["status"])
        return {}

    async def LogStatusNotification(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        await self._notify(
            "LogStatusNotification", p, status=p["status"], request_id=p.get("requestId")
        )
        return {}

    async def SignedFirmwareStatusNotification(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        await self._notify(
            "SignedFirmwareStatusNotification", p, status=p["status"], request_id=p.get("requestId")
        )
        return {}

    async def SecurityEventNotification(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        await db(network.security_event_record)(
            station_id=self.station_id,
            type=p["type"],
            timestamp=parse_time(p["timestamp"]),
            tech_info=p.get("techInfo", ""),
        )
        return {}

    async def SignCertificate(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        return await self.sign_certificate(p["csr"])

"""OCPP 2.0.1: charger-initiated messages translated to version-neutral service calls."""

from __future__ import annotations

import asyncio
from typing import Any

from sessions import services as charging
from sessions.models import AuthorizationDecision
from stations import certificate_services
from stations import services as network
from stations.charging_needs import charging_needs_answer
from stations.energy import services as energy_services
from stations.ocpp.db import db
from stations.ocpp.handlers import BaseHandlers, Handler, now_iso, parse_time
from stations.ocpp.v201.commands import TOKEN_TYPE


def id_token_info(auth: charging.AuthorizationResult) -> dict[str, Any]:
    info: dict[str, Any] = {"status": auth.status}
    if auth.expiry:
        info["cacheExpiryDateTime"] = auth.expiry.isoformat()
    if auth.group_uid:
        # Roaming (OCPI) token types have no 2.0.1 equivalent but Central.
        group_type = TOKEN_TYPE.get(auth.group_type, auth.group_type) or "Central"
        info["groupIdToken"] = {"idToken": auth.group_uid, "type": group_type}
    return info


def samples_from(meter_values: list[dict[str, Any]]) -> list[charging.Sample]:
    samples = []
    for meter_value in meter_values:
        timestamp = parse_time(meter_value.get("timestamp"))
        for sampled in meter_value.get("sampledValue", []):
            signed = sampled.get("signedMeterValue") or {}
            unit = (sampled.get("unitOfMeasure") or {}).get("unit", "")
            multiplier = (sampled.get("unitOfMeasure") or {}).get("multiplier", 0)
            value = sampled.get("value", "")
            if multiplier and isinstance(value, int | float):
                # Keep exact: apply the power-of-ten multiplier on the decimal string.
                value = f"{value}e{multiplier}"
            samples.append(
                charging.Sample(
                    timestamp=timestamp,
                    value=str(value),
                    measurand=sampled.get("measurand", charging.ENERGY_REGISTER),
                    phase=sampled.get("phase", ""),
                    location=sampled.get("location", ""),
                    context=sampled.get("context", ""),
                    unit=unit or ("Wh" if not sampled.get("measurand") else ""),
                    signed_data=signed.get("signedMeterData", ""),
                    signing_method=signed.get("signingMethod", ""),
                    encoding_method=signed.get("encodingMethod", ""),
                    public_key=signed.get("publicKey", ""),
                )
            )
    return samples


# Actions that are stored as reported and answered with a fixed, schema-valid payload.
_RECORDED = {
    "NotifyMonitoringReport": {},
    "FirmwareStatusNotification": {},
    "LogStatusNotification": {},
    "ReservationStatusUpdate": {},
    "NotifyChargingLimit": {},
    "ClearedChargingLimit": {},
    "ReportChargingProfiles": {},
    "NotifyCustomerInformation": {},
    "NotifyDisplayMessages": {},
    "NotifyEVChargingSchedule": {"status": "Accepted"},
    # From a local controller (L03): the progress of a PublishFirmware.
    "PublishFirmwareStatusNotification": {},
}


class Handlers(BaseHandlers):
    """The charger-initiated actions of OCPP 2.0.1."""

    async def BootNotification(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        if (deferred := self.boot_deferred()) is not None:
            return deferred
        station = p["chargingStation"]
        modem = station.get("modem") or {}
        # Open sessions the station may have lost in the reboot: it is asked about each
        # (GetTransactionStatus), and its answer decides (`answered`).
        result = await db(charging.station_boot_record)(
            station_id=self.station_id,
            vendor=station["vendorName"],
            model=station["model"],
            serial_number=station.get("serialNumber", ""),
            firmware_version=station.get("firmwareVersion", ""),
            iccid=modem.get("iccid", ""),
            imsi=modem.get("imsi", ""),
            reason=p["reason"],
        )
        self.consumer.registration_status = result.status
        return {"status": result.status, "currentTime": now_iso(), "interval": result.interval}

    async def Heartbeat(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        # Liveness is recorded by the consumer for every frame, throttled; a heartbeat needs
        # no write of its own.
        return {"currentTime": now_iso()}

    async def StatusNotification(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        timestamp = parse_time(p["timestamp"])
        await db(charging.connector_status_record)(
            station_id=self.station_id,
            evse_id=p["evseId"],
            connector_id=p["connectorId"],
            status=p["connectorStatus"],
            timestamp=timestamp,
            # A 2.0.1 transaction may run on an Available connector (TxStartPoint before the
            # cable): the station is asked about any open session there, not presumed.
            available=p["connectorStatus"] == "Available",
        )
        await self.energy_notify("status")
        return {}

    async def Authorize(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        token = p["idToken"]
        auth = await db(charging.authorization_decide)(
            uid=token["idToken"],
            token_type=token["type"],
            context=AuthorizationDecision.Context.AUTHORIZE,
            station_id=self.station_id,
        )
        return {"idTokenInfo": id_token_info(auth)}

    async def TransactionEvent(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        info = p["transactionInfo"]
        evse = p.get("evse") or {}
        token = p.get("idToken") or {}
        event = charging.TransactionEvent(
            event_type=p["eventType"],
            timestamp=parse_time(p["timestamp"]),
            trigger_reason=p["triggerReason"],
            seq_no=p["seqNo"],
            transaction_id=info["transactionId"],
            charging_state=info.get("chargingState", ""),
            stopped_reason=info.get("stoppedReason", ""),
            remote_start_id=info.get("remoteStartId"),
            reservation_id=p.get("reservationId"),
            offline=bool(p.get("offline", False)),
            evse_id=evse.get("id", 0),
            connector_id=evse.get("connectorId", 0),
            # NoAuthorization tokens carry an empty idToken: nothing to authorize.
            id_token=token.get("idToken", "") if token.get("type") != "NoAuthorization" else "",
            id_token_type=token.get("type", ""),
            samples=samples_from(p.get("meterValue", [])),
            payload=p,
            anomalies=self.anomalies,
        )
        result = await db(charging.session_transaction_event)(
            station_id=self.station_id, event=event
        )
        if event.event_type == "Updated":
            # Started and Ended are announced by the charging domain (session signals).
            await self.energy_notify("meter" if event.samples else "transaction")
        response: dict[str, Any] = {}
        if result.authorization is not None:
            response["idTokenInfo"] = id_token_info(result.authorization)
        if self.consumer.cost_display_enabled and result.cost is not None:
            # The cost so far, kept up by the charging domain with each meter value.
            response["totalCost"] = float(result.cost)
        return response

    async def MeterValues(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        batch = charging.SampleBatch(p["evseId"], 0, samples_from(p["meterValue"]))
        await db(charging.session_meter_samples)(station_id=self.station_id, batch=batch)
        await self.energy_notify("meter")
        return {}

    async def NotifyReport(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        await db(network.device_report_record)(
            station_id=self.station_id, report_data=p.get("reportData", [])
        )
        await self._notify(
            "NotifyReport",
            {k: v for k, v in p.items() if k != "reportData"},
            request_id=p["requestId"],
            status="tbc" if p.get("tbc") else "done",
        )
        return {}

    async def NotifyEvent(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        await db(network.device_events_record)(station_id=self.station_id, events=p["eventData"])
        return {}

    async def SecurityEventNotification(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        await db(network.security_event_record)(
            station_id=self.station_id,
            type=p["type"],
            timestamp=parse_time(p["timestamp"]),
            tech_info=p.get("techInfo", ""),
        )
        return {}

    async def DataTransfer(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        await self._notify("DataTransfer", p, status=p.get("vendorId", ""))
        return {"status": "UnknownVendorId"}

    async def SignCertificate(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        answer = await self.sign_certificate(p["csr"], p.get("certificateType", ""))
        if answer["status"] == "Rejected":
            answer["statusInfo"] = {"reasonCode": "InvalidCSR"}
        return answer

    async def Get15118EVCertificate(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        answer = await asyncio.to_thread(
            certificate_services.ev_certificate, identity=self.consumer.identity, request=p
        )
        await self._notify("Get15118EVCertificate", p, status=answer.status)
        payload: dict[str, Any] = {"status": answer.status, "exiResponse": answer.payload}
        if answer.reason:
            payload["statusInfo"] = {
                "reasonCode": "NotSupported"
                if answer.reason.startswith("no ")
                else "ServiceUnavailable",
                "additionalInfo": answer.reason[:512],
            }
        return payload

    async def GetCertificateStatus(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        answer = await asyncio.to_thread(certificate_services.ocsp_status, p["ocspRequestData"])
        if answer.status == "Accepted":
            return {"status": "Accepted", "ocspResult": answer.payload}
        return {
            "status": "Failed",
            "statusInfo": {"reasonCode": "OCSPFailed", "additionalInfo": answer.reason[:512]},
        }

    async def NotifyEVChargingNeeds(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        # Stored as sent; Accepted only when energy management will send a schedule
        # (stations.charging_needs: the planner hook), Rejected until then (K15.FR.03).
        answer = charging_needs_answer(
            station_id=self.station_id, evse_id=p["evseId"], needs=p["chargingNeeds"]
        )
        await self._notify("NotifyEVChargingNeeds", p, status=answer.status)
        response: dict[str, Any] = {"status": answer.status}
        if answer.reason:
            response["statusInfo"] = {"reasonCode": "NoSchedule", "additionalInfo": answer.reason}
        return response

    async def answered(self, action: str, request: dict[str, Any], response: Any) -> None:
        if action == "GetTransactionStatus" and request.get("transactionId"):
            await db(charging.session_transaction_status_answered)(
                station_id=self.station_id,
                transaction_id=request["transactionId"],
                ongoing=response.get("ongoingIndicator"),
                messages_in_queue=bool(response.get("messagesInQueue")),
            )

    async def _recorded(self, action: str, p: dict[str, Any]) -> dict[str, Any]:
        status = str(p.get("status") or p.get("chargingLimit", {}).get("chargingLimitSource", ""))
        await self._notify(action, p, status=status, request_id=p.get("requestId"))
        if action in ("NotifyChargingLimit", "ClearedChargingLimit"):
            await db(energy_services.station_charging_limit_record)(
                station_id=self.station_id, action=action, payload=p
            )
        return dict(_RECORDED[action])

    def handler_for(self, action: str) -> Handler | None:
        if action in _RECORDED:

            async def recorded(p: dict[str, Any]) -> dict[str, Any]:
                return await self._recorded(action, p)

            return recorded
        return super().handler_for(action)

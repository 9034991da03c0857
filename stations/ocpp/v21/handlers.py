"""OCPP 2.1: the 2.0.1 handlers (the messages 2.1 kept are the same), and the 2.1 messages a
station sends. Everything is validated against the 2.1 schemas by the consumer.

Acted on: NotifySettlement (an ad hoc payment at the station's terminal, recorded in billing
against the session and its CDR). Stored and answered, not acted on yet: the DER, priority
charging, periodic event stream and battery swap notifications (`_RECORDED_21`); refused:
dynamic schedules and periodic event streams (we run none), VAT number validation.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from billing import services as billing
from stations.ocpp.db import db
from stations.ocpp.handlers import Handler, parse_time
from stations.ocpp.v201 import handlers as v201

_RECORDED_21: dict[str, dict[str, Any]] = {
    "NotifyDERAlarm": {},
    "NotifyDERStartStop": {},
    "NotifyPriorityCharging": {},
    "ReportDERControl": {},
    "ClosePeriodicEventStream": {},
    "BatterySwap": {},
    # Only ever a SEND (never answered): stored.
    "NotifyPeriodicEventStream": {},
    "OpenPeriodicEventStream": {
        "status": "Rejected",
        "statusInfo": {"reasonCode": "NotSupported", "additionalInfo": "No event streams yet"},
    },
    "PullDynamicScheduleUpdate": {
        "status": "Rejected",
        "statusInfo": {"reasonCode": "NoSchedule", "additionalInfo": "No dynamic schedules"},
    },
}


class Handlers(v201.Handlers):
    """The charger-initiated actions of OCPP 2.1."""

    async def NotifySettlement(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        payment = await db(billing.adhoc_payment_record)(
            station_id=self.station_id,
            transaction_id=p.get("transactionId", ""),
            psp_ref=p["pspRef"],
            status=p["status"],
            amount=Decimal(str(p["settlementAmount"])),
            settled_at=parse_time(p["settlementTime"]),
            receipt_id=p.get("receiptId", ""),
            receipt_url=p.get("receiptUrl", ""),
            payload=p,
        )
        await self._notify("NotifySettlement", p, status=p["status"])
        answer: dict[str, Any] = {}
        if payment.receipt_id:
            answer["receiptId"] = payment.receipt_id
        return answer

    async def VatNumberValidation(self, p: dict[str, Any]) -> dict[str, Any]:  # noqa: N802
        await self._notify("VatNumberValidation", p)
        return {
            "vatNumber": p["vatNumber"],
            "status": "Rejected",
            "statusInfo": {"reasonCode": "NotSupported", "additionalInfo": "No VAT lookup"},
        }

    def handler_for(self, action: str) -> Handler | None:
        if action in _RECORDED_21:

            async def recorded(p: dict[str, Any]) -> dict[str, Any]:
                status = str(p.get("status", ""))
                await self._notify(action, p, status=status, request_id=p.get("requestId"))
                return dict(_RECORDED_21[action])

            return recorded
        return super().handler_for(action)

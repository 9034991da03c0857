"""OCPP 2.1 end to end: a station negotiates `ocpp2.1`, boots, gets our tariff
(SetDefaultTariff), charges with a token, is told its cost in the TransactionEvent answers,
reports the station's own cost (costDetails), settles the payment at its terminal
(NotifySettlement), and is billed: a real Celery worker rates the session into a CDR, to which
the ad hoc payment is linked.

Real daphne on loopback, the project's OCPP client speaking 2.1 (tests/ocpp_client.py), which
checks every frame the server sends against the official 2.1 schemas of the `ocpp` package;
what the station sends is checked here against the same schemas before it goes.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from ocpp.messages import get_validator

from tests.ocpp_client import station
from tests.stations.conftest import until, until_final, until_online

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

IDENTITY = "DEMO-201"
PASSWORD = "DEMO-201-secret-pass"


def ts(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def valid21(action: str, payload: dict) -> dict:
    errors = [e.message for e in get_validator(2, action, "2.1").iter_errors(payload)]
    assert errors == [], (action, errors)
    return payload


async def call21(cp, number: int, action: str, payload: dict) -> dict:
    reply = await cp.raw([2, f"m{number}", action, valid21(action, payload)])
    assert reply[0] == 3, reply
    return reply[2]


def event(kind: str, seq: int, at, trigger: str, register: int | None = None, **extra) -> dict:
    payload = {
        "eventType": kind,
        "timestamp": ts(at),
        "triggerReason": trigger,
        "seqNo": seq,
        "transactionInfo": {"transactionId": "TX-21-A", **extra.pop("info", {})},
        "evse": {"id": 1, "connectorId": 1},
        **extra,
    }
    if register is not None:
        payload["meterValue"] = [
            {
                "timestamp": ts(at),
                "sampledValue": [{"value": register, "measurand": "Energy.Active.Import.Register"}],
            }
        ]
    return payload


async def test_an_ocpp21_station_boots_charges_and_is_billed(daphne_server, celery_worker):
    from billing.models import AdHocPayment, Cdr
    from stations.models import ChargingStation, OcppMessage, StationNotification
    from tariffs.models import TariffVersion
    from tariffs.ocpp21 import station_default_tariff_send

    @sync_to_async
    def load() -> ChargingStation:
        from cpo.demo import demo_data_load

        demo_data_load()
        return ChargingStation.objects.get(identity=IDENTITY)

    row = await load()
    start = timezone.now().replace(microsecond=0) - timedelta(minutes=40)
    async with station(
        daphne_server.ws_url,
        IDENTITY,
        password=PASSWORD,
        subprotocols=["ocpp2.1", "ocpp2.0.1", "ocpp1.6"],
    ) as cp:
        assert cp.ws.subprotocol == "ocpp2.1"
        boot = await call21(
            cp,
            1,
            "BootNotification",
            {"chargingStation": {"vendorName": "ACME", "model": "W21"}, "reason": "PowerUp"},
        )
        assert boot["status"] == "Accepted"
        await until_online(row.pk)

        # Our tariff, as the station's default, from the version our rating uses.
        @sync_to_async
        def send_tariff():
            row.refresh_from_db()
            version = TariffVersion.objects.get(tariff__tariff_id="DEMO-STANDARD")
            return station_default_tariff_send(station=row, version=version)

        command = await send_tariff()
        assert (await until_final(command.pk, timeout=15)).status == "accepted"
        (tariff_call,) = [p for a, p in cp.cp.received_calls if a == "SetDefaultTariff"]
        assert tariff_call["evse_id"] == 0
        assert tariff_call["tariff"]["energy"]["prices"] == [{"price_kwh": 0.3}]
        assert tariff_call["tariff"]["currency"] == "EUR"

        await call21(
            cp,
            2,
            "StatusNotification",
            {"timestamp": ts(start), "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1},
        )
        started = await call21(
            cp,
            3,
            "TransactionEvent",
            event(
                "Started",
                0,
                start,
                "Authorized",
                100_000,
                idToken={"idToken": "DEMO-TAG-OK", "type": "ISO14443"},
                info={"chargingState": "Charging"},
            ),
        )
        assert started["idTokenInfo"]["status"] == "Accepted"
        updated = await call21(
            cp,
            4,
            "TransactionEvent",
            event("Updated", 1, start + timedelta(minutes=20), "MeterValuePeriodic", 105_000),
        )
        # The running cost, from the same tariff version (DEMO-201 shows it).
        assert updated["totalCost"] > 0

        # The session's tariff, sent again for this transaction (after an operator changed it).
        @sync_to_async
        def change_tariff():
            from sessions.models import ChargingSession
            from tariffs.ocpp21 import session_tariff_change_send

            session = ChargingSession.objects.get(station=row, transaction_id="TX-21-A")
            return session_tariff_change_send(session=session)

        change = await change_tariff()
        assert (await until_final(change.pk, timeout=15)).status == "accepted"
        (changed,) = [p for a, p in cp.cp.received_calls if a == "ChangeTransactionTariff"]
        assert changed["transaction_id"] == "TX-21-A"
        assert changed["tariff"]["tariff_id"] == tariff_call["tariff"]["tariff_id"]
        station_cost = {
            "currency": "EUR",
            "typeOfCost": "NormalCost",
            "total": {"exclTax": 2.5, "inclTax": 3.03},
        }
        await call21(
            cp,
            5,
            "TransactionEvent",
            event(
                "Ended",
                2,
                start + timedelta(minutes=30),
                "EVCommunicationLost",
                110_000,
                info={"stoppedReason": "EVDisconnected", "chargingState": "Idle"},
                costDetails={
                    "totalCost": station_cost,
                    "totalUsage": {"energy": 10.0, "chargingTime": 1800, "idleTime": 0},
                },
            ),
        )
        # The station's terminal settled the payment.
        settled = await call21(
            cp,
            6,
            "NotifySettlement",
            {
                "transactionId": "TX-21-A",
                "pspRef": "PSP-4711",
                "status": "Settled",
                "settlementAmount": 3.03,
                "settlementTime": ts(start + timedelta(minutes=31)),
                "receiptId": "R-1",
            },
        )
        assert settled == {"receiptId": "R-1"}

        # OCPP-J 2.1 frames: a SEND gets no answer at all; a CALLRESULTERROR neither.
        # (The `ocpp` package ships no schema of NotifyPeriodicEventStream, the one message
        # OCPP 2.1 sends as a SEND: it cannot be validated, so it is logged as an error.)
        send = {"id": 1, "pending": 0, "basetime": ts(start), "data": [{"t": 0, "v": "1"}]}
        await cp.connection.send(json.dumps([6, "s1", "NotifyPeriodicEventStream", send]))
        # A SEND of a message with a schema is handled like a CALL, without an answer.
        priority = valid21(
            "NotifyPriorityCharging", {"transactionId": "TX-21-A", "activated": True}
        )
        await cp.connection.send(json.dumps([6, "s2", "NotifyPriorityCharging", priority]))
        await cp.connection.send(json.dumps([5, "m1", "InternalError", "oops", {}]))
        heartbeat = await cp.raw([2, "m7", "Heartbeat", {}])
        assert heartbeat[0] == 3
        await asyncio.sleep(0.3)
        assert not any(json.loads(f)[1] in ("s1", "s2") for f in cp.connection.received)

    def cdr_made():
        return Cdr.objects.filter(
            session__station=row, session__transaction_id="TX-21-A", credit=False
        ).first()

    cdr = await until(cdr_made, timeout=60)
    session = await sync_to_async(lambda: cdr.session)()
    assert session.status == "completed"
    assert session.energy_wh == Decimal(10_000)
    # DEMO-STANDARD: 0.30 EUR/kWh + 0.50 EUR per session, 21 % VAT (no parking: 0 idle).
    assert cdr.total_cost_excl_vat == Decimal("3.50")
    assert cdr.currency == "EUR"

    @sync_to_async
    def stored():
        payment = AdHocPayment.objects.get(station=row, psp_ref="PSP-4711")
        send = StationNotification.objects.get(station=row, action="NotifyPriorityCharging")
        unvalidated = OcppMessage.objects.filter(
            identity=IDENTITY, is_error=True, frame__contains="NotifyPeriodicEventStream"
        ).exists()
        return payment, send, unvalidated

    payment, send_row, unvalidated = await stored()
    assert (payment.status, payment.amount, payment.session_id) == (
        "Settled",
        Decimal("3.03"),
        session.pk,
    )
    assert payment.cdr_id == cdr.pk
    assert send_row.payload["activated"] is True
    assert unvalidated

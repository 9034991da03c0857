"""A charge on the demo station, through the real websocket, becomes a CDR priced by the engine.

Real parts end to end: daphne on loopback, the `ocpp` library's charge point, the
session_ended signal, a Celery worker process rating the session, the demo tariff.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from ocpp.v16 import call

from tests.ocpp_client import station

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]


def ts(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def test_demo_charge_produces_the_engines_cdr(daphne_server, celery_worker):
    @sync_to_async
    def load() -> None:
        from cpo.demo import demo_data_load

        demo_data_load()

    await load()
    start = timezone.now().replace(microsecond=0) - timedelta(minutes=45)

    async with station(daphne_server.ws_url, "DEMO-16", password="DEMO-16-secret-pass") as cp:

        async def status(value: str, at) -> None:
            await cp.cp.call(
                call.StatusNotification(
                    connector_id=2, error_code="NoError", status=value, timestamp=ts(at)
                )
            )

        await status("Preparing", start - timedelta(minutes=1))
        started = await cp.cp.call(
            call.StartTransaction(
                connector_id=2, id_tag="DEMO-TAG-OK", meter_start=250_000, timestamp=ts(start)
            )
        )
        assert started.id_tag_info["status"] == "Accepted"
        await status("Charging", start)
        for minutes, register in ((15, 254_000), (30, 258_000)):
            await cp.cp.call(
                call.MeterValues(
                    connector_id=2,
                    transaction_id=started.transaction_id,
                    meter_value=[
                        {
                            "timestamp": ts(start + timedelta(minutes=minutes)),
                            "sampledValue": [{"value": str(register), "unit": "Wh"}],
                        }
                    ],
                )
            )
        # Full battery: the car stays plugged in, taking nothing (parking, per OCPI 2.2.1).
        await status("SuspendedEV", start + timedelta(minutes=30))
        await cp.cp.call(
            call.StopTransaction(
                transaction_id=started.transaction_id,
                meter_stop=258_000,
                timestamp=ts(start + timedelta(minutes=40)),
                reason="EVDisconnected",
            )
        )

    @sync_to_async
    def cdr_of_session():
        from billing.models import Cdr

        return Cdr.objects.filter(session__ocpp16_transaction_id=started.transaction_id).first()

    cdr = None
    for _ in range(120):  # rated by the worker after the stop commits
        cdr = await cdr_of_session()
        if cdr is not None:
            break
        await asyncio.sleep(0.25)
    assert cdr is not None, "the worker produced no CDR"

    @sync_to_async
    def engine_result():
        from sessions.models import ChargingSession
        from tariffs.services import session_rate

        return session_rate(
            session=ChargingSession.objects.get(ocpp16_transaction_id=started.transaction_id)
        )

    @sync_to_async
    def frozen_tariff() -> str:
        from sessions.models import ChargingSession

        session = ChargingSession.objects.get(ocpp16_transaction_id=started.transaction_id)
        return session.tariff.version.ocpi["id"]

    # The demo tariff's version was fixed on the session when it started.
    assert await frozen_tariff() == "DEMO-STANDARD"
    rating = await engine_result()
    # Demo tariff: 8 kWh x 0.30 + 0.50 per session + 10 min parking at 2.00/h, 21 % VAT.
    assert cdr.currency == "EUR"
    assert cdr.total_energy_kwh == Decimal("8")
    assert cdr.total_parking_time_h.quantize(Decimal("0.0001")) == Decimal("0.1667")
    assert cdr.total_cost_excl_vat == rating.total_cost_excl_vat == Decimal("3.23")
    assert cdr.total_cost_incl_vat == rating.total_cost_incl_vat == Decimal("3.91")
    assert cdr.tariff_snapshot["id"] == "DEMO-STANDARD"
    assert cdr.station_identity == "DEMO-16"

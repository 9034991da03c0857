"""Live cost through the real websocket: a 2.0.1 station with cost display gets totalCost in
every TransactionEventResponse, priced by the tariff frozen on the session."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from ocpp.v201 import call as call201

from sessions.models import ChargingSession
from stations.models import ChargingStation, Location
from tariffs import services
from tariffs.models import PriceComponent, Tariff, TariffAssignment, TariffElement
from tests.ocpp_client import station

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

PASSWORD = "station-secret-0042"


@sync_to_async
def set_up() -> None:
    site = Location.objects.create(name="Cost site", time_zone="Europe/Berlin")
    cp = ChargingStation(
        identity="CP-COST-201", protocol="ocpp2.0.1", location=site, cost_display_enabled=True
    )
    cp.set_password(PASSWORD)
    cp.save()
    tariff = Tariff.objects.create(tariff_id="COST-T", name="Cost", currency="EUR")
    element = TariffElement.objects.create(tariff=tariff)
    PriceComponent.objects.create(element=element, type="ENERGY", price=Decimal("0.30"), vat=21)
    PriceComponent.objects.create(element=element, type="FLAT", price=Decimal("0.50"), vat=21)
    TariffAssignment.objects.create(tariff=tariff, station=cp)
    services.tariff_version_publish(
        tariff=tariff, effective_from=timezone.now() - timedelta(days=1)
    )


@sync_to_async
def session_and_rating() -> tuple[ChargingSession, Decimal]:
    session = ChargingSession.objects.select_related("station__location").get(
        transaction_id="TX-COST-1"
    )
    return session, services.session_rate(session=session).total_cost.incl_vat


async def test_total_cost_in_transaction_event_responses(daphne_server):
    await set_up()
    start = timezone.now().replace(microsecond=0) - timedelta(minutes=30)

    def event(event_type: str, seq: int, minutes: int, wh: int, context: str, **extra):
        moment = (start + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
        return call201.TransactionEvent(
            event_type=event_type,
            timestamp=moment,
            trigger_reason="MeterValuePeriodic" if event_type == "Updated" else "Authorized",
            seq_no=seq,
            transaction_info={"transaction_id": "TX-COST-1", "charging_state": "Charging"},
            meter_value=[
                {"timestamp": moment, "sampled_value": [{"value": wh, "context": context}]}
            ],
            **extra,
        )

    async with station(
        daphne_server.ws_url, "CP-COST-201", protocol="ocpp2.0.1", password=PASSWORD
    ) as cp:
        started = await cp.cp.call(
            event("Started", 0, 0, 1000, "Transaction.Begin", evse={"id": 1, "connector_id": 1})
        )
        updated = await cp.cp.call(event("Updated", 1, 15, 9000, "Sample.Periodic"))
        ended = await cp.cp.call(event("Ended", 2, 30, 14000, "Transaction.End"))

    # 0.50 flat, then + 8 kWh and + 13 kWh at 0.30, all with 21 % VAT.
    assert started.total_cost == pytest.approx(0.61)
    assert updated.total_cost == pytest.approx(3.51)
    assert ended.total_cost == pytest.approx(5.32)
    session, rated = await session_and_rating()
    version, _ = await sync_to_async(services.session_rating_tariff)(session=session)
    assert version.ocpi["id"] == "COST-T"
    assert session.live_cost == Decimal("5.32") == rated

"""A cost budget holds on an OCPP 1.6 station: the running cost of a session, kept up with its
meter values, counts against the token's budget, and the CDR's total does once it is rated.

Real parts: daphne on loopback, the `ocpp` library's 1.6 charge point, a Celery worker rating
the session.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from ocpp.v16 import call

from tests.ocpp_client import station

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

PASSWORD = "budget-station-pass-1"
TAG = "BUDGET-TAG-1"


def ts(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@sync_to_async
def _network() -> None:
    from sessions.models import CustomerAccount, IdToken
    from stations.models import ChargingStation, Location
    from tariffs.models import PriceComponent, Tariff, TariffAssignment, TariffElement
    from tariffs.services import tariff_version_publish

    site = Location.objects.create(name="Budget site", time_zone="Europe/Amsterdam")
    cp = ChargingStation(identity="BUDGET-16", protocol="ocpp1.6", location=site)
    cp.set_password(PASSWORD)
    cp.save()
    account = CustomerAccount.objects.create(name="Budget fleet", kind="company")
    IdToken.objects.create(
        uid=TAG, type="Central", account=account, budget_cost=Decimal("3.00"), budget_period="day"
    )
    tariff = Tariff.objects.create(tariff_id="BUDGET-T", name="Budget", currency="EUR")
    element = TariffElement.objects.create(tariff=tariff)
    PriceComponent.objects.create(element=element, type="ENERGY", price=Decimal("0.30"), vat=21)
    tariff_version_publish(tariff=tariff, effective_from=timezone.now() - dt.timedelta(days=1))
    TariffAssignment.objects.create(tariff=tariff)


@sync_to_async
def _session(tx: int) -> tuple[Decimal | None, str, str]:
    from sessions.models import ChargingSession

    session = ChargingSession.objects.get(ocpp16_transaction_id=tx)
    return session.live_cost, session.live_cost_currency, session.rating_status


async def test_a_1_6_session_uses_up_the_cost_budget(daphne_server, celery_worker) -> None:
    await _network()
    start = timezone.now().replace(microsecond=0) - dt.timedelta(hours=1)
    async with station(daphne_server.ws_url, "BUDGET-16", password=PASSWORD) as cp:
        first = await cp.cp.call(
            call.StartTransaction(connector_id=1, id_tag=TAG, meter_start=0, timestamp=ts(start))
        )
        assert first.id_tag_info["status"] == "Accepted"
        tx = first.transaction_id
        for minutes, wh in ((15, 4000), (30, 8000)):
            await cp.cp.call(
                call.MeterValues(
                    connector_id=1,
                    transaction_id=tx,
                    meter_value=[
                        {
                            "timestamp": ts(start + dt.timedelta(minutes=minutes)),
                            "sampledValue": [{"value": str(wh), "unit": "Wh"}],
                        }
                    ],
                )
            )
        # 8 kWh x 0.30 = 2.40 excl., 2.90 incl. 21 % VAT: the budget (3.00) is not used up.
        assert await _session(tx) == (Decimal("2.9000"), "EUR", "pending")
        asked = await cp.cp.call(call.Authorize(id_tag=TAG))
        assert asked.id_tag_info["status"] == "Accepted"

        await cp.cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=tx,
                meter_value=[
                    {
                        "timestamp": ts(start + dt.timedelta(minutes=45)),
                        "sampledValue": [{"value": "10000", "unit": "Wh"}],
                    }
                ],
            )
        )
        # 10 kWh: 3.63 incl. VAT, over the budget. 1.6 has no NoCredit: its nearest is Blocked
        # (as OCPI's guidance maps NO_CREDIT for 1.6).
        assert (await _session(tx))[0] == Decimal("3.6300")
        refused = await cp.cp.call(call.Authorize(id_tag=TAG))
        assert refused.id_tag_info["status"] == "Blocked"
        second = await cp.cp.call(
            call.StartTransaction(
                connector_id=2,
                id_tag=TAG,
                meter_start=0,
                timestamp=ts(start + dt.timedelta(minutes=50)),
            )
        )
        assert second.id_tag_info["status"] == "Blocked"
        await cp.cp.call(
            call.StopTransaction(
                transaction_id=tx, meter_stop=10_000, timestamp=ts(start + dt.timedelta(hours=1))
            )
        )

    for _ in range(120):  # rated by the worker: the CDR's total is the session's cost now
        cost, currency, status = await _session(tx)
        if status == "rated":
            break
        await asyncio.sleep(0.25)
    assert (cost, currency, status) == (Decimal("3.6300"), "EUR", "rated")

    @sync_to_async
    def decisions() -> list[tuple[str, str]]:
        from sessions.models import AuthorizationDecision

        return list(
            AuthorizationDecision.objects.filter(uid=TAG, status="NoCredit")
            .order_by("created_at")
            .values_list("context", "reason")
        )

    refusals = await decisions()
    assert [context for context, _ in refusals] == ["Authorize", "StartTransaction"]
    assert refusals[0][1].startswith("cost budget used up: 3.63")

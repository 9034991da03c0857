"""A price edited while a session runs never reaches that session.

Over the real websocket (1.6J and 2.0.1): a session starts under the published tariff; an
operator raises the price in the panel (a new version); the session ends and is rated by a
Celery worker at the price of its start, its invoice line says so, and the next session pays
the new price.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.utils import timezone
from ocpp.v16 import call as call16
from ocpp.v201 import call as call201

from tests.ocpp_client import station
from tests.tariffs.test_admin import element_data, tariff_post

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

PASSWORD = "versions-secret-pass-1"
TAG = "VERSIONS-TAG"


def ts(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@sync_to_async
def _network(identity: str, protocol: str) -> None:
    from sessions.models import CustomerAccount, IdToken
    from stations.models import ChargingStation, Connector, Evse, Location
    from tariffs.models import PriceComponent, Tariff, TariffAssignment, TariffElement
    from tariffs.services import tariff_version_publish

    site = Location.objects.create(name="Versions site", time_zone="Europe/Amsterdam")
    cp = ChargingStation(identity=identity, protocol=protocol, location=site)
    cp.set_password(PASSWORD)
    cp.save()
    evse = Evse.objects.create(station=cp, evse_id=1, uid=f"{identity}-1")
    Connector.objects.create(station=cp, evse=evse, connector_id=1)
    account = CustomerAccount.objects.create(name="Versions Fleet", kind="company")
    IdToken.objects.create(uid=TAG, type="Central", account=account)
    tariff = Tariff.objects.create(tariff_id="VERSIONED", name="Versioned", currency="EUR")
    element = TariffElement.objects.create(tariff=tariff, position=0)
    PriceComponent.objects.create(element=element, type="ENERGY", price=Decimal("0.30"), vat=21)
    tariff_version_publish(tariff=tariff, effective_from=timezone.now() - dt.timedelta(days=90))
    TariffAssignment.objects.create(tariff=tariff)


@sync_to_async
def _operator_raises_the_price(price: str) -> int:
    """The operator's save of the tariff page with a new energy price; the version number."""
    from django.contrib.auth.models import Group

    from cpo.models import User
    from tariffs.models import Tariff

    tariff = Tariff.objects.get(tariff_id="VERSIONED")
    operator = User.objects.create_user("pricing-op", password="x", is_staff=True)
    operator.groups.add(Group.objects.get(name="Operators"))
    client = Client()
    client.force_login(operator)
    element = tariff.elements.get()
    response = client.post(
        f"/admin/tariffs/tariff/{tariff.pk}/change/",
        tariff_post(
            [element_data(0, id=element.pk, position="0", energy_price=price, energy_vat="21")],
            initial=1,
            tariff_id="VERSIONED",
            name="Versioned",
        ),
    )
    assert response.status_code == 302, response.content[-1500:]
    return int(tariff.versions.count())


class Charger:
    """One transaction of either version: start, meter value, stop."""

    def __init__(self, cp: Any, protocol: str):
        self.cp = cp
        self.protocol = protocol
        self.seq = 0

    async def start(self, tx: str, at: dt.datetime) -> str:
        if self.protocol == "ocpp1.6":
            started = await self.cp.call(
                call16.StartTransaction(connector_id=1, id_tag=TAG, meter_start=0, timestamp=ts(at))
            )
            assert started.id_tag_info["status"] == "Accepted"
            return str(started.transaction_id)
        self.seq = 0
        started = await self.cp.call(
            self._event(
                "Started",
                tx,
                at,
                0,
                evse={"id": 1, "connector_id": 1},
                id_token={"id_token": TAG, "type": "Central"},
            )
        )
        assert started.id_token_info["status"] == "Accepted"
        return tx

    async def stop(self, tx: str, at: dt.datetime, wh: int) -> None:
        if self.protocol == "ocpp1.6":
            await self.cp.call(
                call16.StopTransaction(transaction_id=int(tx), meter_stop=wh, timestamp=ts(at))
            )
            return
        await self.cp.call(self._event("Ended", tx, at, wh, stopped_reason="EVDisconnected"))

    def _event(self, kind: str, tx: str, at: dt.datetime, wh: int, **extra: Any) -> Any:
        stopped = extra.pop("stopped_reason", None)
        info: dict[str, Any] = {"transaction_id": tx}
        if stopped:
            info["stopped_reason"] = stopped
        context = {"Started": "Transaction.Begin", "Ended": "Transaction.End"}[kind]
        event = call201.TransactionEvent(
            event_type=kind,
            timestamp=ts(at),
            trigger_reason="Authorized" if kind == "Started" else "EVCommunicationLost",
            seq_no=self.seq,
            transaction_info=info,
            meter_value=[
                {"timestamp": ts(at), "sampled_value": [{"value": wh, "context": context}]}
            ],
            **extra,
        )
        self.seq += 1
        return event


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_an_edit_after_start_changes_nothing_for_the_running_session(
    daphne_server, celery_worker, roles, protocol
):  # noqa: ARG001
    identity = f"VERSIONS-{protocol[4:].replace('.', '')}"
    await _network(identity, protocol)
    now = timezone.now().replace(microsecond=0)
    # Last month, so that the period closes now and the session is on its invoice.
    first_of_month = now.replace(day=1, hour=0, minute=0, second=0)
    started_at = (first_of_month - dt.timedelta(days=10)).replace(hour=10)

    async with station(daphne_server.ws_url, identity, protocol=protocol, password=PASSWORD) as cp:
        charger = Charger(cp.cp, protocol)
        running = await charger.start("TX-RUNNING", started_at)
        assert await _operator_raises_the_price("0.60") == 2
        await charger.stop(running, started_at + dt.timedelta(hours=1), 10_000)
        # A session that starts after the edit pays the new price.
        after = timezone.now().replace(microsecond=0) + dt.timedelta(seconds=1)
        later = await charger.start("TX-AFTER", after)
        await charger.stop(later, after + dt.timedelta(minutes=10), 10_000)

    @sync_to_async
    def cdrs() -> list[Any]:
        from billing.models import Cdr

        return list(
            Cdr.objects.filter(session__station__identity=identity)
            .select_related("session", "tariff_version")
            .order_by("start")
        )

    rated: list[Any] = []
    for _ in range(160):
        rated = await cdrs()
        if len(rated) == 2:
            break
        await asyncio.sleep(0.25)
    assert len(rated) == 2, "the worker did not rate both sessions"
    before, after_edit = rated
    assert (before.tariff_version.number, before.total_cost_excl_vat) == (1, Decimal("3.00"))
    assert before.tariff_snapshot["elements"][0]["price_components"][0]["price"] == "0.3"
    assert (after_edit.tariff_version.number, after_edit.total_cost_excl_vat) == (
        2,
        Decimal("6.00"),
    )

    @sync_to_async
    def invoice_lines() -> list[tuple[Any, ...]]:
        from billing.models import InvoiceLine
        from billing.services import billing_periods_close_due
        from tariffs.models import SessionTariff

        # The session's own record: version 1, fixed when it started.
        assert SessionTariff.objects.get(session=before.session).version.number == 1
        billing_periods_close_due(now=timezone.now())
        return list(
            InvoiceLine.objects.filter(cdr__session__station__identity=identity).values_list(
                "cdr__session__transaction_id", "amount_excl_vat"
            )
        )

    # Only last month's session is on last month's invoice, at the price of its start.
    assert await invoice_lines() == [(before.session.transaction_id, Decimal("3.00"))]

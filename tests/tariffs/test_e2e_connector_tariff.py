"""A tariff an operator assigns to connector 2 of a 1.6 station in the panel prices the real
1.6 session on connector 2, and only that one.

Real parts: the admin's assignment form, daphne on loopback with the `ocpp` library's 1.6
charge point, a Celery worker freezing the tariff at start and rating the session into a CDR.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.utils import timezone
from ocpp.v16 import call

from tests.ocpp_client import station

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]


def ts(moment: Any) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@sync_to_async
def _operator_assigns(tariff_id: str, *, evse: int, connector: int | str) -> Any:
    """The operator's POST of the admin's assignment form; returns the response."""
    from cpo.demo import demo_data_load
    from cpo.models import User
    from stations.models import ChargingStation
    from tariffs.models import Tariff
    from tests.billing.conftest import make_tariff

    demo_data_load()
    if not Tariff.objects.filter(tariff_id=tariff_id).exists():
        make_tariff(energy="0.55", parking="0", tariff_id=tariff_id)
    operator = User.objects.create_user(f"op-{connector}", password="x", is_staff=True)
    from django.contrib.auth.models import Group

    operator.groups.add(Group.objects.get(name="Operators"))
    client = Client()
    client.force_login(operator)
    return client.post(
        "/admin/tariffs/tariffassignment/add/",
        {
            "tariff": Tariff.objects.get(tariff_id=tariff_id).pk,
            "station": ChargingStation.objects.get(identity="DEMO-16").pk,
            "evse_id": evse,
            "connector_id": connector,
            "location": "",
            "account": "",
            "valid_from_0": "",
            "valid_from_1": "",
            "valid_until_0": "",
            "valid_until_1": "",
        },
    )


async def _charge(cp: Any, connector: int, start: Any, wh: int) -> int:
    await cp.cp.call(
        call.StatusNotification(
            connector_id=connector, error_code="NoError", status="Preparing", timestamp=ts(start)
        )
    )
    started = await cp.cp.call(
        call.StartTransaction(
            connector_id=connector, id_tag="DEMO-TAG-OK", meter_start=0, timestamp=ts(start)
        )
    )
    assert started.id_tag_info["status"] == "Accepted"
    await cp.cp.call(
        call.MeterValues(
            connector_id=connector,
            transaction_id=started.transaction_id,
            meter_value=[
                {
                    "timestamp": ts(start + timedelta(minutes=10)),
                    "sampledValue": [{"value": str(wh // 2), "unit": "Wh"}],
                }
            ],
        )
    )
    await cp.cp.call(
        call.StopTransaction(
            transaction_id=started.transaction_id,
            meter_stop=wh,
            timestamp=ts(start + timedelta(minutes=20)),
            reason="EVDisconnected",
        )
    )
    return int(started.transaction_id)


async def test_connector_2_tariff_prices_the_connector_2_session(
    daphne_server, celery_worker, roles
):  # noqa: ARG001
    refused = await _operator_assigns("FAST-CORNER", evse=2, connector=2)
    assert refused.status_code == 200  # the form again, with the error
    assert b"has no connector 2 on EVSE 2" in refused.content
    assert b"EVSE 2 connector 1" in refused.content

    added = await _operator_assigns("FAST-CORNER", evse=2, connector=1)
    assert added.status_code == 302, added.content[-2000:]

    start = timezone.now().replace(microsecond=0) - timedelta(hours=1)
    async with station(daphne_server.ws_url, "DEMO-16", password="DEMO-16-secret-pass") as cp:
        on_two = await _charge(cp, 2, start, 10_000)
        on_one = await _charge(cp, 1, start + timedelta(minutes=30), 10_000)

    @sync_to_async
    def cdrs() -> dict[int | None, Any]:
        from billing.models import Cdr

        return {
            cdr.session.ocpp16_transaction_id: cdr
            for cdr in Cdr.objects.select_related("session").filter(
                session__ocpp16_transaction_id__in=[on_two, on_one]
            )
        }

    rated: dict[int | None, Any] = {}
    for _ in range(160):  # frozen at start and rated after the stop by the worker
        rated = await cdrs()
        if len(rated) == 2:
            break
        await asyncio.sleep(0.25)
    assert len(rated) == 2, "the worker did not rate both sessions"

    @sync_to_async
    def places() -> dict[int | None, tuple[Any, ...]]:
        from sessions.models import ChargingSession, MeterSample

        result = {}
        for session in ChargingSession.objects.filter(ocpp16_transaction_id__in=[on_two, on_one]):
            samples = set(
                MeterSample.objects.filter(session=session).values_list("evse_id", "connector_id")
            )
            result[session.ocpp16_transaction_id] = (
                session.evse_id,
                session.connector_id,
                samples,
                session.tariff.version.ocpi["id"],
            )
        return result

    where = await places()
    # One address for the session, its samples and the connector the status named.
    assert where[on_two] == (2, 1, {(2, 1)}, "FAST-CORNER")
    assert where[on_one] == (1, 1, {(1, 1)}, "DEMO-STANDARD")
    fast = rated[on_two]
    assert fast.tariff_snapshot["id"] == "FAST-CORNER"
    assert (fast.evse_uid, fast.connector_id) == ("DEMO-16-2", 1)
    assert fast.site_snapshot["connector_standard"]
    assert fast.total_energy_kwh == Decimal("10")
    assert fast.total_cost_excl_vat == Decimal("5.50")  # 10 kWh x 0.55
    assert rated[on_one].tariff_snapshot["id"] == "DEMO-STANDARD"
    assert rated[on_one].total_cost_excl_vat == Decimal("3.50")  # 10 x 0.30 + 0.50 per session

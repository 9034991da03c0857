"""ItemsPerMessage (OCPP 2.0.1 B06-B08): a Get/SetVariables batch larger than the station's
DeviceDataCtrlr.ItemsPerMessage goes through the command queue as several calls, and the
answers are joined for the operator. Real daphne, the station as the project's OCPP client,
which reports its limits in a NotifyReport first."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from ocpp.v201 import call as call201

from tests.ocpp_client import station
from tests.stations.conftest import acreate, http, until_final, until_online

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

KEYS = [f"OCPPCommCtrlr.Var{n}" for n in range(1, 6)]


def limit(instance: str, value: str) -> dict:
    return {
        "component": {"name": "DeviceDataCtrlr"},
        "variable": {"name": "ItemsPerMessage", "instance": instance},
        "variable_attribute": [{"type": "Actual", "value": value, "mutability": "ReadOnly"}],
        "variable_characteristics": {"data_type": "integer", "supports_monitoring": False},
    }


async def report_limits(client, **limits: str) -> None:
    await client.cp.call(
        call201.NotifyReport(
            request_id=1,
            generated_at="2026-12-01T10:00:00Z",
            seq_no=0,
            report_data=[limit(instance, value) for instance, value in limits.items()],
        )
    )


async def test_five_variables_go_as_three_get_variables_calls_of_at_most_two(
    daphne_server, make_station, api_token
):
    from stations.commands.models import Command

    cs = await sync_to_async(make_station)("IPM-1", protocol="ocpp2.0.1")
    async with station(daphne_server.ws_url, "IPM-1", protocol="ocpp2.0.1") as client:
        await until_online(cs.pk)
        await report_limits(client, GetVariables="2", SetVariables="3")
        status, answer = await http(
            "POST",
            f"{daphne_server.http_url}/api/v1/stations/IPM-1/commands/",
            token=api_token,
            body={"verb": "get_configuration", "params": {"keys": KEYS}, "wait": 15},
        )
        assert status in (200, 201, 202), answer
        first = answer["id"]
        parts = answer["parts"]
        assert len(parts) == 3
        assert parts[0] == first
        for command_id in parts:
            assert (await until_final(command_id, timeout=15)).status == Command.Status.ACCEPTED
        calls = [p for action, p in client.cp.received_calls if action == "GetVariables"]
        assert [len(p["get_variable_data"]) for p in calls] == [2, 2, 1]
        asked = [
            f"{item['component']['name']}.{item['variable']['name']}"
            for p in calls
            for item in p["get_variable_data"]
        ]
        assert asked == KEYS

        # The operator reads one joined answer.
        status, joined = await http(
            "GET", f"{daphne_server.http_url}/api/v1/commands/{first}/", token=api_token
        )
        assert status == 200, joined
        assert joined["parts"] == parts
        results = joined["batch_response"]["getVariableResult"]
        assert [r["variable"]["name"] for r in results] == [f"Var{n}" for n in range(1, 6)]

        # The panel's command page shows the parts and the joined answer.
        @sync_to_async
        def admin_page() -> str:
            from django.contrib.auth import get_user_model
            from django.test import Client

            admin = get_user_model().objects.create_superuser("ipm-admin", password="x")
            browser = Client()
            browser.force_login(admin)
            response = browser.get(f"/admin/commands/command/{first}/change/")
            assert response.status_code == 200
            return response.content.decode()

        page = await admin_page()
        assert all(f"#{part}" in page for part in parts)
        assert "Var5" in page

        # Within the limit: one call, no batch.
        single = await acreate(cs, verb="get_configuration", params={"keys": KEYS[:2]})
        assert (await until_final(single.pk)).batch_size == 1


async def test_without_a_reported_limit_the_batch_goes_as_one_call(daphne_server, make_station):
    cs = await sync_to_async(make_station)("IPM-2", protocol="ocpp2.0.1")
    async with station(daphne_server.ws_url, "IPM-2", protocol="ocpp2.0.1") as client:
        await until_online(cs.pk)
        command = await acreate(cs, verb="get_configuration", params={"keys": KEYS})
        await until_final(command.pk)
        calls = [p for action, p in client.cp.received_calls if action == "GetVariables"]
        assert [len(p["get_variable_data"]) for p in calls] == [5]


async def test_get_report_parts_get_consecutive_request_ids(daphne_server, make_station):
    from stations.commands.models import Command

    cs = await sync_to_async(make_station)("IPM-3", protocol="ocpp2.0.1")
    async with station(daphne_server.ws_url, "IPM-3", protocol="ocpp2.0.1") as client:
        await until_online(cs.pk)
        await report_limits(client, GetReport="2")
        command = await acreate(
            cs,
            action="GetReport",
            payload={
                "requestId": 40,
                "componentVariable": [{"component": {"name": f"C{n}"}} for n in range(3)],
            },
        )
        parts = await sync_to_async(
            lambda: (
                list(Command.objects.filter(pk=command.pk).values_list("batch_size", flat=True))
                + list(Command.objects.filter(batch=command).values_list("payload", flat=True))
            )
        )()
        assert parts[0] == 2
        assert parts[1]["requestId"] == 41
        assert parts[1]["componentVariable"] == [{"component": {"name": "C2"}}]

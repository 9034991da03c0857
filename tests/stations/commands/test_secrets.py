"""A station's password sent through the command queue: only the frame to the station holds
it. The stored command, the station's answers (echoed in the clear or in hex), the message log,
the device model and every page and API of every role show its mask instead.

A real station over a real websocket (daphne); the pages through Django's test client.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from asgiref.sync import sync_to_async

from tests.ocpp_client import station
from tests.stations.conftest import acreate, until_final, until_online

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

CLEAR = "Wh0-Kn0ws-This-Auth-Key-2026"
HEX = CLEAR.encode().hex()
# Anything that would give the value away, in the forms a page could print it.
LEAKS = (CLEAR, HEX, HEX.upper(), json.dumps(CLEAR)[1:-1])
ROLES = ("superuser", "Operators", "Finance", "Support")


def _leaks(text: str) -> list[str]:
    return [leak for leak in LEAKS if leak in text]


def _stored_text(station_id: int) -> str:
    """Everything stored about the station that a person could be shown, as one text."""
    from stations.commands.models import Command
    from stations.models import DeviceModelVariable, OcppMessage, StationEvent, StationNotification

    parts: list[Any] = []
    for model in (Command, OcppMessage, DeviceModelVariable, StationEvent, StationNotification):
        parts += list(model.objects.filter(station_id=station_id).values())
    return json.dumps(parts, default=str)


def _users() -> dict[str, Any]:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group, Permission

    from cpo.roles import roles_sync

    roles_sync(group_model=Group, permission_model=Permission)
    model = get_user_model()
    users = {"superuser": model.objects.create_superuser("root", "root@example.com", "pw")}
    for role in ROLES[1:]:
        user = model.objects.create_user(role.lower(), password="pw", is_staff=True)
        user.groups.add(Group.objects.get(name=role))
        users[role] = user
    return users


def _pages(station_id: int) -> list[str]:
    from stations.commands.models import Command
    from stations.models import DeviceModelVariable, OcppMessage, StationEvent

    urls = [
        f"/admin/stations/chargingstation/{station_id}/change/",
        f"/admin/stations/chargingstation/{station_id}/commands/",
        "/admin/commands/command/",
        f"/admin/panel/stations/{station_id}/live.json",
        f"/admin/panel/stations/{station_id}/timeline.json",
        f"/api/commands/?station={station_id}",
        "/admin/stations/ocppmessage/",
        "/admin/stations/devicemodelvariable/",
        "/admin/stations/stationevent/",
    ]
    for pk in Command.objects.filter(station_id=station_id).values_list("pk", flat=True):
        urls += [f"/admin/commands/command/{pk}/change/", f"/api/commands/{pk}/"]
    for model, name in (
        (OcppMessage, "ocppmessage"),
        (DeviceModelVariable, "devicemodelvariable"),
        (StationEvent, "stationevent"),
    ):
        for pk in model.objects.filter(station_id=station_id).values_list("pk", flat=True):
            urls.append(f"/admin/stations/{name}/{pk}/change/")
    return urls


def _pages_show_no_secret(station_id: int, mask: str) -> None:
    from django.test import Client

    users = _users()
    shown_to: set[str] = set()
    for role, user in users.items():
        client = Client()
        client.force_login(user)
        for url in _pages(station_id):
            page = client.get(url)
            assert page.status_code in (200, 302, 403), (role, url, page.status_code)
            text = page.content.decode()
            assert not _leaks(text), (role, url, _leaks(text))
            if mask in text:
                shown_to.add(role)
    # The pages did show the commands (masked): the check above looked at real content.
    assert shown_to == set(ROLES)


async def test_authorization_key_1_6(daphne_server, make_station):
    from ocpp.v16 import call_result

    from stations.commands.models import Command
    from stations.secret_keys import mask_value

    cs = await sync_to_async(make_station)("SECRET-16", trace_enabled=True)
    async with station(daphne_server.ws_url, "SECRET-16") as client:
        await until_online(cs.pk)
        command = await acreate(
            cs, verb="set_configuration", params={"key": "AuthorizationKey", "value": CLEAR}
        )
        # What is stored from the start: the mask, and the clear value sealed for the socket.
        assert command.payload == {"key": "AuthorizationKey", "value": mask_value(CLEAR)}
        assert command.sealed
        assert not _leaks(command.sealed)
        done = await until_final(command.pk)
        assert done.status == Command.Status.ACCEPTED
        # Only the frame to the station carried the value.
        assert client.cp.received_calls[-1] == (
            "ChangeConfiguration",
            {"key": "AuthorizationKey", "value": CLEAR},
        )
        assert done.sealed == ""  # final: nothing kept to send

        # The station echoes the key, in hex, in its configuration (and one in the clear).
        client.cp.responses["GetConfiguration"] = call_result.GetConfiguration(
            configuration_key=[
                {"key": "AuthorizationKey", "readonly": False, "value": HEX},
                {"key": "authorizationkey", "readonly": False, "value": CLEAR},
                {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
            ]
        )
        asked = await acreate(cs, verb="get_configuration", params={"keys": ["AuthorizationKey"]})
        answered = await until_final(asked.pk)
        assert answered.response["configurationKey"] == [
            # The same secret, the same mask: the station holds what was set.
            {"key": "AuthorizationKey", "readonly": False, "value": mask_value(CLEAR)},
            {"key": "authorizationkey", "readonly": False, "value": mask_value(CLEAR)},
            {"key": "HeartbeatInterval", "readonly": False, "value": "300"},
        ]

    stored = await sync_to_async(_stored_text)(cs.pk)
    assert not _leaks(stored)
    assert "ChangeConfiguration" in stored  # the traced frames were logged, masked
    await sync_to_async(_pages_show_no_secret)(cs.pk, mask_value(CLEAR))


async def test_basic_auth_password_2_0_1(daphne_server, make_station):
    from ocpp.v201 import call_result

    from stations.commands.models import Command
    from stations.models import DeviceModelVariable
    from stations.secret_keys import mask_value

    cs = await sync_to_async(make_station)("SECRET-201", "ocpp2.0.1", trace_enabled=True)
    variable = {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}}
    async with station(daphne_server.ws_url, "SECRET-201", protocol="ocpp2.0.1") as client:
        await until_online(cs.pk)
        command = await acreate(
            cs,
            verb="set_configuration",
            params={"key": "SecurityCtrlr.BasicAuthPassword", "value": CLEAR},
        )
        assert command.payload["setVariableData"][0]["attributeValue"] == mask_value(CLEAR)
        assert (await until_final(command.pk)).status == Command.Status.ACCEPTED
        action, sent = client.cp.received_calls[-1]
        assert action == "SetVariables"
        assert sent["set_variable_data"][0]["attribute_value"] == CLEAR

        client.cp.responses["GetVariables"] = call_result.GetVariables(
            get_variable_result=[
                {"attribute_status": "Accepted", **variable, "attribute_value": HEX}
            ]
        )
        asked = await acreate(
            cs,
            verb="get_configuration",
            params={"keys": ["SecurityCtrlr.BasicAuthPassword"]},
        )
        answered = await until_final(asked.pk)
        assert answered.response["getVariableResult"][0]["attributeValue"] == mask_value(CLEAR)

        # The station reports its device model, and an event on the variable.
        now = datetime.now(UTC).isoformat()
        report = {
            "requestId": 1,
            "generatedAt": now,
            "seqNo": 0,
            "reportData": [{**variable, "variableAttribute": [{"type": "Actual", "value": CLEAR}]}],
        }
        assert (await client.raw([2, "r1", "NotifyReport", report]))[0] == 3
        event = {
            "generatedAt": now,
            "seqNo": 0,
            "eventData": [
                {
                    "eventId": 1,
                    "timestamp": now,
                    "trigger": "Delta",
                    "actualValue": CLEAR,
                    "eventNotificationType": "HardWiredNotification",
                    **variable,
                }
            ],
        }
        assert (await client.raw([2, "e1", "NotifyEvent", event]))[0] == 3

    values = await sync_to_async(
        lambda: list(DeviceModelVariable.objects.filter(station=cs).values_list("value", flat=True))
    )()
    assert values == [mask_value(CLEAR)]
    stored = await sync_to_async(_stored_text)(cs.pk)
    assert not _leaks(stored)
    await sync_to_async(_pages_show_no_secret)(cs.pk, mask_value(CLEAR))

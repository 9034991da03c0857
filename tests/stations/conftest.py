"""Fixtures for command tests: stations in the shared test database and polling helpers."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async


@pytest.fixture
def make_station(transactional_db):  # noqa: ARG001
    from stations.models import ChargingStation

    def make(identity: str, protocol: str = "ocpp1.6", **fields: Any) -> ChargingStation:
        return ChargingStation.objects.create(identity=identity, protocol=protocol, **fields)

    return make


async def until(predicate: Callable[[], Any], timeout: float = 10.0, step: float = 0.05) -> Any:
    """Poll a synchronous (database) predicate until it returns something truthy."""
    check = sync_to_async(predicate, thread_sensitive=False)
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"condition not met within {timeout}s")
        await asyncio.sleep(step)


async def until_final(command_id: int, timeout: float = 10.0) -> Any:
    from stations.commands.models import Command

    def final() -> Any:
        command = Command.objects.get(pk=command_id)
        return command if command.is_final else None

    return await until(final, timeout)


async def until_online(station_id: int, timeout: float = 10.0) -> None:
    from stations.models import ChargingStation

    await until(
        lambda: ChargingStation.objects.filter(pk=station_id, is_online=True).exists(), timeout
    )


def create(station: Any, **kwargs: Any) -> Any:
    from stations.commands.services import command_create

    return command_create(station=station, **kwargs)


acreate = sync_to_async(create, thread_sensitive=False)


def _http(method: str, url: str, token: str | None, body: Any, headers: dict[str, str]) -> Any:
    import json
    import urllib.error
    import urllib.request

    data = None
    all_headers = dict(headers)
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        all_headers.setdefault("Content-Type", "application/json")
    if token:
        all_headers["Authorization"] = f"Token {token}"
    # Loopback http:// URLs of the test servers only.
    request = urllib.request.Request(url, data=data, method=method, headers=all_headers)  # noqa: S310
    try:
        with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
            raw = response.read()
            status = response.status
    except urllib.error.HTTPError as error:
        raw = error.read()
        status = error.code
    try:
        return status, json.loads(raw) if raw else None
    except ValueError:
        return status, raw.decode(errors="replace")


async def http(
    method: str,
    url: str,
    *,
    token: str | None = None,
    body: Any = None,
    headers: dict[str, str] | None = None,
) -> Any:
    """A real HTTP request to a live server: (status, parsed JSON or text)."""
    return await asyncio.to_thread(_http, method, url, token, body, headers or {})


@pytest.fixture
def api_token(transactional_db):  # noqa: ARG001
    """An API token of a staff user allowed to send commands and run jobs."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Permission
    from rest_framework.authtoken.models import Token

    user = get_user_model().objects.create_user("integrator", password="x", is_staff=True)
    user.user_permissions.set(
        Permission.objects.filter(content_type__app_label="stations", codename="send_command")
        | Permission.objects.filter(
            content_type__app_label="commands",
            codename__in=["view_command", "view_job", "manage_job"],
        )
    )
    return Token.objects.create(user=user).key


def station_with_connectors(identity: str, *, location: Any = None, connectors: int = 1) -> Any:
    """A station with EVSEs 1..n, each with its connector 1 (how 1.6 connectors are stored)."""
    from stations.models import ChargingStation, Connector, Evse

    station = ChargingStation.objects.create(identity=identity, location=location)
    for n in range(1, connectors + 1):
        evse = Evse.objects.create(station=station, evse_id=n, uid=f"{identity}-{n}")
        Connector.objects.create(station=station, evse=evse, connector_id=1)
    return station


def status_report(station: Any, moment: Any, value: str, evse_id: int = 1) -> Any:
    """A status the station reported for EVSE `evse_id` (0: the whole station) at `moment`."""
    from stations.models import ConnectorStatusEvent

    return ConnectorStatusEvent.objects.create(
        station=station,
        evse_id=evse_id,
        connector_id=1 if evse_id else 0,
        status=value,
        timestamp=moment,
    )

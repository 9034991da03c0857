"""Helpers of the monitoring tests: stations, a detector pass and the incidents it leaves."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from ocpp.v16 import call

from stations.monitoring import signals


@sync_to_async
def make_station(identity: str, *, protocol: str = "ocpp1.6", **fields: Any) -> Any:
    from stations.models import ChargingStation

    return ChargingStation.objects.create(identity=identity, protocol=protocol, **fields)


@sync_to_async
def detect() -> dict[str, Any]:
    """One detector pass, as the beat task runs it (in the test process, on the test DB)."""
    from stations.monitoring.detectors import detectors_run

    return detectors_run()


@sync_to_async
def remediate() -> int:
    from stations.monitoring.playbooks import playbooks_run

    return playbooks_run()


@sync_to_async
def incidents(identity: str, type_: str | None = None) -> list[Any]:
    from stations.monitoring.models import Incident

    rows = Incident.objects.filter(station__identity=identity).order_by("pk")
    if type_:
        rows = rows.filter(type=type_)
    return list(rows)


@sync_to_async
def timeline(incident_id: int) -> list[tuple[str, str, str]]:
    from stations.monitoring.models import IncidentEntry

    return list(
        IncidentEntry.objects.filter(incident_id=incident_id)
        .order_by("at", "pk")
        .values_list("kind", "step", "message")
    )


async def boot16(cp: Any) -> None:
    response = await cp.cp.call(
        call.BootNotification(charge_point_vendor="ACME", charge_point_model="Wallbox 22")
    )
    assert response.status == "Accepted"


async def status16(cp: Any, status: str, connector: int = 1, **extra: Any) -> None:
    await cp.cp.call(
        call.StatusNotification(
            connector_id=connector,
            error_code=extra.pop("error_code", "NoError"),
            status=status,
            **extra,
        )
    )


@pytest.fixture
def announced() -> Any:
    """What the incident port announced: (signal name, incident id, type)."""
    heard: list[tuple[str, int, str]] = []

    def opened(sender: Any, incident_id: int, type: str, **kwargs: Any) -> None:  # noqa: A002
        heard.append(("opened", incident_id, type))

    def resolved(sender: Any, incident_id: int, type: str, **kwargs: Any) -> None:  # noqa: A002
        heard.append(("resolved", incident_id, type))

    signals.incident_opened.connect(opened, dispatch_uid="test.opened")
    signals.incident_resolved.connect(resolved, dispatch_uid="test.resolved")
    yield heard
    signals.incident_opened.disconnect(dispatch_uid="test.opened")
    signals.incident_resolved.disconnect(dispatch_uid="test.resolved")

"""Fixtures of the charging tests: staff users in their roles, and a recorder of the
id_token_changed signal (what the local-list sync listens to)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from sessions.signals import id_token_changed


class SignalRecorder:
    def __init__(self) -> None:
        self.calls: list[list[int]] = []

    def __call__(self, sender: Any, token_ids: list[int], **kwargs: Any) -> None:
        self.calls.append(list(token_ids))

    @property
    def token_ids(self) -> set[int]:
        return {token_id for call in self.calls for token_id in call}


@pytest.fixture
def token_changes() -> Iterator[SignalRecorder]:
    recorder = SignalRecorder()
    id_token_changed.connect(recorder, weak=False)
    yield recorder
    id_token_changed.disconnect(recorder)


def staff_user(username: str, role: str | None) -> Any:
    from django.contrib.auth import get_user_model
    from django.contrib.auth.models import Group

    user = get_user_model().objects.create_user(
        username=username, password="correct-horse-battery", is_staff=True
    )
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


@pytest.fixture
def operator(roles: None) -> Any:  # noqa: ARG001
    return staff_user("olivia-operator", "Operators")


@pytest.fixture
def support(roles: None) -> Any:  # noqa: ARG001
    return staff_user("sam-support", "Support")


@pytest.fixture
def account() -> Any:
    from sessions import services

    return services.account_create(
        name="Acme Fleet",
        reference="ACME",
        kind="company",
        legal_name="Acme Fleet B.V.",
        vat_id="NL123456789B01",
        email="billing@acme.invalid",
    )


def charging_session(
    station: Any, *, started_at: Any, energy_wh: int = 0, active: bool = True, **fields: Any
) -> Any:
    """A session on connector 1/1 straight from the ORM: active, or ended an hour later."""
    import datetime as dt
    import uuid
    from decimal import Decimal

    from sessions.models import ChargingSession

    fields.setdefault("evse_id", 1)
    fields.setdefault("connector_id", 1)
    return ChargingSession.objects.create(
        station=station,
        transaction_id=str(uuid.uuid4()),
        id_tag=fields.pop("id_tag", "04AABBCCDD"),
        started_at=started_at,
        status=ChargingSession.Status.ACTIVE if active else ChargingSession.Status.COMPLETED,
        ended_at=None if active else started_at + dt.timedelta(hours=1),
        energy_wh=Decimal(energy_wh),
        meter_start_wh=Decimal(0),
        **fields,
    )

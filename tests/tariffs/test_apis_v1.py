"""/api/v1/ of tariffs: a create or an update publishes a new version through the tariff
services; refused input leaves the tariff and its versions as they were."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from tariffs.models import Tariff, TariffVersion
from tests.apiv1 import bearer, errors, staff, walk

pytestmark = pytest.mark.django_db

ENERGY = {"type": "ENERGY", "price": "0.35", "vat": "21", "step_size": 1}
PARKING = {"type": "PARKING_TIME", "price": "2.00", "vat": "21", "step_size": 60}


@pytest.fixture
def operator(roles: None) -> Any:  # noqa: ARG001
    return bearer(staff("olga", "Operators"))


@pytest.fixture
def support(roles: None) -> Any:  # noqa: ARG001
    return bearer(staff("sam", "Support"))


def create(client: Any, **fields: Any) -> Any:
    body = {"name": "Standard", "currency": "EUR", "elements": [{"price_components": [ENERGY]}]}
    return client.post("/api/v1/tariffs/", {**body, **fields}, format="json")


def test_a_new_tariff_is_published_as_version_1(operator: Any, support: Any) -> None:
    assert create(support).status_code == 403
    made = create(operator, tariff_id="STD-1")
    assert made.status_code == 201, made.json()
    body = made.json()
    assert (body["tariff_id"], body["published_version"]) == ("STD-1", 1)
    assert body["current_version"]["number"] == 1
    version = TariffVersion.objects.get(tariff__tariff_id="STD-1")
    assert version.ocpi["elements"][0]["price_components"][0]["price"] == "0.35"
    assert version.created_by.username == "olga"


def test_an_update_publishes_a_new_version_and_keeps_the_old_one(
    operator: Any, support: Any
) -> None:
    tariff = create(operator).json()["id"]
    url = f"/api/v1/tariffs/{tariff}/"
    assert support.patch(url, {"name": "x"}, format="json").status_code == 403
    dearer = {**ENERGY, "price": "0.45"}
    changed = operator.patch(
        url,
        {"elements": [{"price_components": [dearer, PARKING], "day_of_week": ["MONDAY"]}]},
        format="json",
    )
    assert changed.status_code == 200, changed.json()
    assert changed.json()["published_version"] == 2
    versions = walk(support, f"/api/v1/tariffs/{tariff}/versions/")
    assert [row["number"] for row in versions] == [2, 1]
    assert "0.35 → 0.45" in versions[0]["changes"]
    first = support.get(f"/api/v1/tariffs/{tariff}/versions/1/").json()
    assert first["ocpi"]["elements"][0]["price_components"][0]["price"] == "0.35"
    # The same content again publishes nothing.
    same = operator.patch(url, {"name": "Standard"}, format="json")
    assert same.json()["published_version"] is None
    assert TariffVersion.objects.filter(tariff_id=tariff).count() == 2
    # Scheduled for later.
    later = (timezone.now() + dt.timedelta(days=7)).isoformat()
    scheduled = operator.patch(
        url, {"display_text": "From next week", "effective_from": later}, format="json"
    )
    assert scheduled.json()["published_version"] == 3


def test_refused_tariff_input_names_its_fields_and_changes_nothing(operator: Any) -> None:
    tariff = create(operator).json()["id"]
    url = f"/api/v1/tariffs/{tariff}/"
    huge_step = {**ENERGY, "step_size": 2**40}
    nested = operator.patch(
        url,
        {"elements": [{"price_components": [ENERGY]}, {"price_components": [huge_step]}]},
        format="json",
    )
    assert nested.status_code == 400
    assert errors(nested) == [("elements.1.price_components.0.step_size", "max_value")]
    negative = operator.patch(
        url, {"elements": [{"price_components": [ENERGY], "min_kwh": "-1"}]}, format="json"
    )
    assert [field for field, _code in errors(negative)] == ["elements.0.min_kwh"]
    no_price = operator.patch(url, {"elements": [{"price_components": []}]}, format="json")
    assert errors(no_price) == [("elements.0.price_components", "required")]
    assert [f for f, _c in errors(operator.patch(url, {"currency": "euro"}, format="json"))] == [
        "currency"
    ]
    window = operator.patch(
        url,
        {"elements": [{"price_components": [ENERGY], "min_kwh": "20", "max_kwh": "10"}]},
        format="json",
    )
    assert [field for field, _code in errors(window)] == ["elements.0.max_kwh"]
    past = operator.patch(
        url, {"name": "Backdated", "effective_from": "2020-01-01T00:00:00Z"}, format="json"
    )
    assert errors(past) == [(None, "not_publishable")]
    assert Tariff.objects.get(pk=tariff).name == "Standard"
    assert TariffVersion.objects.filter(tariff_id=tariff).count() == 1
    assert errors(create(operator, elements=[])) == [(None, "not_publishable")]
    assert errors(operator.post("/api/v1/tariffs/", {"name": "x"}, format="json")) == [
        ("elements", "invalid")
    ]


def test_tariffs_are_filtered(support: Any, operator: Any) -> None:
    create(operator, name="Day", tariff_id="DAY")
    create(operator, name="Night", currency="CHF", tariff_id="NIGHT")
    assert [row["tariff_id"] for row in walk(support, "/api/v1/tariffs/", currency="CHF")] == [
        "NIGHT"
    ]
    assert [row["tariff_id"] for row in walk(support, "/api/v1/tariffs/", name="da")] == ["DAY"]
    rows = walk(support, "/api/v1/tariffs/", ordering="-name")
    assert [row["name"] for row in rows] == ["Night", "Day"]

"""The tariffs sender: the version in force of each tariff, in both OCPI versions."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from roaming.models import Partner
from tariffs.models import PriceComponent, Tariff, TariffElement
from tariffs.services import tariff_version_publish
from tests.billing.conftest import make_tariff
from tests.roaming.conftest import auth, envelope_of
from tests.roaming.test_locations import registered

pytestmark = pytest.mark.django_db

TARIFFS = "/ocpi/2.2.1/tariffs"


@pytest.fixture
def token(partner: Partner) -> str:
    return registered(partner)


def test_a_tariff_in_221_with_numbers_and_utc_dates(token: str) -> None:
    tariff = make_tariff(energy="0.35", parking="2.50", tariff_id="AC-STANDARD")
    Tariff.objects.filter(pk=tariff.pk).update(display_text="35 ct/kWh")
    listed = envelope_of(Client().get(TARIFFS, **auth(token)))["data"]
    assert len(listed) == 1
    got = listed[0]
    assert (got["country_code"], got["party_id"], got["id"], got["currency"]) == (
        "NL",
        "CPO",
        "AC-STANDARD",
        "EUR",
    )
    assert got["elements"][0]["price_components"] == [
        {"type": "ENERGY", "price": 0.35, "step_size": 1, "vat": 21},
        {"type": "PARKING_TIME", "price": 2.5, "step_size": 60, "vat": 21},
    ]
    # Published 2000-01-01 (dated back), in force since then: last_updated is the publishing.
    assert got["last_updated"].endswith("Z")


def test_211_has_no_vat_and_drops_elements_it_cannot_restrict(token: str) -> None:
    tariff = make_tariff(tariff_id="WITH-RESERVATION")
    reservation = TariffElement.objects.create(tariff=tariff, position=1, reservation="RESERVATION")
    PriceComponent.objects.create(
        element=reservation, type="TIME", price=Decimal("1.00"), step_size=60
    )
    tariff_version_publish(tariff=tariff)
    newest = envelope_of(Client().get(TARIFFS, **auth(token)))["data"][0]
    assert len(newest["elements"]) == 2
    assert newest["elements"][1]["restrictions"] == {"reservation": "RESERVATION"}
    old = envelope_of(Client().get("/ocpi/2.1.1/tariffs", **auth(token, b64=False)))["data"][0]
    assert "country_code" not in old
    assert len(old["elements"]) == 1
    assert all("vat" not in c for c in old["elements"][0]["price_components"])


def test_a_scheduled_version_is_sent_once_it_is_in_force(token: str) -> None:
    tariff = make_tariff(energy="0.30", tariff_id="SCHEDULED")
    component = PriceComponent.objects.get(element__tariff=tariff, type="ENERGY")
    component.price = Decimal("0.40")
    component.save()
    soon = timezone.now() + dt.timedelta(hours=1)
    tariff_version_publish(tariff=tariff, effective_from=soon)
    listed = envelope_of(Client().get(TARIFFS, **auth(token)))["data"]
    assert [t["elements"][0]["price_components"][0]["price"] for t in listed] == [0.3]
    tariff.versions.filter(number=2).update(effective_from=timezone.now() - dt.timedelta(seconds=1))
    listed = envelope_of(Client().get(TARIFFS, **auth(token)))["data"]
    assert [t["elements"][0]["price_components"][0]["price"] for t in listed] == [0.4]


def test_tariffs_are_paged_and_bad_dates_are_2001(token: str) -> None:
    for number in range(3):
        make_tariff(tariff_id=f"P-{number}")
    client = Client()
    first = client.get(f"{TARIFFS}?limit=2", **auth(token))
    assert len(envelope_of(first)["data"]) == 2
    assert first["X-Total-Count"] == "3"
    assert "offset=2" in first["Link"]
    refused = client.get(f"{TARIFFS}?date_from=soon", **auth(token))
    assert envelope_of(refused)["status_code"] == 2001

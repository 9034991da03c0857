"""The tariff pages of the operator panel: editing with inline elements, assignments, and the
price preview."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group, Permission
from django.core.exceptions import ValidationError
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from stations.models import ChargingStation, Location
from tariffs.models import PriceComponent, Tariff, TariffAssignment, TariffElement

pytestmark = pytest.mark.django_db

D = Decimal
ELEMENT_FIELDS = (
    "id position start_time end_time start_date end_date min_kwh max_kwh min_power max_power "
    "min_current max_current min_duration max_duration reservation energy_price energy_vat "
    "energy_step_size flat_price flat_vat time_price time_vat time_step_size parking_price "
    "parking_vat parking_step_size"
).split()


def element_data(index: int, **values: object) -> dict[str, object]:
    data: dict[str, object] = {f"elements-{index}-{name}": "" for name in ELEMENT_FIELDS}
    data.update({f"elements-{index}-{name}": value for name, value in values.items()})
    return data


def tariff_post(elements: list[dict[str, object]], initial: int = 0, **fields: object) -> dict:
    data: dict[str, object] = {
        "tariff_id": "NL-STD",
        "name": "Standard",
        "currency": "EUR",
        "type": "",
        "display_text": "",
        "min_price_excl_vat": "",
        "min_price_incl_vat": "",
        "max_price_excl_vat": "",
        "max_price_incl_vat": "",
        "start_date_time_0": "",
        "start_date_time_1": "",
        "end_date_time_0": "",
        "end_date_time_1": "",
        "elements-TOTAL_FORMS": str(len(elements)),
        "elements-INITIAL_FORMS": str(initial),
        "elements-MIN_NUM_FORMS": "1",
        "elements-MAX_NUM_FORMS": "1000",
        "assignments-TOTAL_FORMS": "0",
        "assignments-INITIAL_FORMS": "0",
        "assignments-MIN_NUM_FORMS": "0",
        "assignments-MAX_NUM_FORMS": "1000",
    }
    for element in elements:
        data.update(element)
    data.update(fields)
    return data


def test_add_tariff_with_elements_and_prices(admin_client):
    site = Location.objects.create(name="Depot", time_zone="Europe/Berlin")
    data = tariff_post(
        [
            element_data(
                0,
                energy_price="0.30",
                energy_vat="21",
                flat_price="0.50",
                flat_vat="21",
                start_time="07:00",
                end_time="19:00",
                **{"day_of_week": ["MONDAY", "FRIDAY"]},
            ),
            element_data(1, energy_price="0.40", energy_vat="21", energy_step_size="500"),
        ],
        **{  # type: ignore[arg-type]  # mypy matches these keys to `initial`; none is
            "assignments-TOTAL_FORMS": "1",
            "assignments-0-location": str(site.pk),
            "assignments-0-station": "",
            "assignments-0-evse_id": "",
            "assignments-0-connector_id": "",
            "assignments-0-account": "",
            "assignments-0-valid_from_0": "",
            "assignments-0-valid_from_1": "",
            "assignments-0-valid_until_0": "",
            "assignments-0-valid_until_1": "",
        },
    )
    data["elements-0-day_of_week"] = ["MONDAY", "FRIDAY"]

    response = admin_client.post(reverse("admin:tariffs_tariff_add"), data)

    assert response.status_code == 302, response.context["errors"] if response.context else ""
    tariff = Tariff.objects.get(tariff_id="NL-STD")
    ocpi = tariff.to_ocpi()
    assert ocpi["elements"] == [
        {
            "price_components": [
                {"type": "ENERGY", "price": "0.3", "step_size": 1, "vat": "21"},
                {"type": "FLAT", "price": "0.5", "step_size": 1, "vat": "21"},
            ],
            "restrictions": {
                "start_time": "07:00",
                "end_time": "19:00",
                "day_of_week": ["MONDAY", "FRIDAY"],
            },
        },
        {"price_components": [{"type": "ENERGY", "price": "0.4", "step_size": 500, "vat": "21"}]},
    ]
    assert list(tariff.elements.values_list("position", flat=True)) == [0, 1]
    assert TariffAssignment.objects.get(tariff=tariff).location == site

    page = admin_client.get(reverse("admin:tariffs_tariff_change", args=[tariff.pk]))
    html = page.content.decode()
    assert "&quot;step_size&quot;: 500" in html  # the OCPI JSON is shown
    assert reverse("admin:tariffs_tariff_preview", args=[tariff.pk]) in html


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"energy_price": "0.30", "min_kwh": "20", "max_kwh": "10"}, "must be above min_kwh"),
        ({"energy_price": "0.30", "min_kwh": "10", "max_kwh": "10"}, "must be above min_kwh"),
        ({"start_time": "07:00"}, "An element needs at least one price."),
        ({"flat_price": "1", "energy_vat": "21"}, "a VAT rate needs a price"),
        ({"energy_price": "-0.10"}, "greater than or equal to 0"),
        ({"energy_price": "0.30", "energy_step_size": "0"}, "greater than or equal to 1"),
        # Issue 20, finding 15: absurd values the form used to take.
        (
            {"energy_price": "0.30", "energy_step_size": str(2**40)},
            "less than or equal to 100000",
        ),
        ({"time_price": "2", "time_step_size": "86401"}, "less than or equal to 86400"),
        ({"energy_price": "0.30", "min_kwh": "-1"}, "greater than or equal to 0"),
        ({"energy_price": "0.30", "max_kwh": "10001"}, "less than or equal to 10000"),
        ({"energy_price": "0.30", "min_power": "-7.4"}, "greater than or equal to 0"),
        ({"energy_price": "0.30", "max_current": "-16"}, "greater than or equal to 0"),
        ({"energy_price": "0.30", "min_duration": "-60"}, "greater than or equal to 0"),
        ({"energy_price": "0.30", "max_duration": str(32 * 86400)}, "less than or equal to"),
        ({"energy_price": "0.30", "energy_vat": "121"}, "less than or equal to 100"),
        (
            {"energy_price": "0.30", "reservation": "RESERVATION"},
            "may only have FLAT and TIME prices",
        ),
    ],
)
def test_add_refuses_invalid_elements(admin_client, values, message):
    response = admin_client.post(
        reverse("admin:tariffs_tariff_add"), tariff_post([element_data(0, **values)])
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Tariff.objects.exists()


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"min_price_excl_vat": "-1.00"}, "greater than or equal to 0"),
        ({"max_price_incl_vat": "-0.01", "max_price_excl_vat": "1"}, "greater than or equal to 0"),
        ({"min_price_excl_vat": "5", "max_price_excl_vat": "4"}, "must not be below the minimum"),
    ],
)
def test_add_refuses_negative_or_inverted_price_bounds(admin_client, fields, message):
    response = admin_client.post(
        reverse("admin:tariffs_tariff_add"),
        tariff_post([element_data(0, energy_price="0.30")], **fields),
    )
    assert response.status_code == 200
    assert message in response.content.decode()
    assert not Tariff.objects.exists()


def test_the_models_refuse_out_of_range_values_whoever_writes_them():
    """The bounds live on the models: services, imports and any API meet the same ones."""
    tariff = Tariff.objects.create(tariff_id="NL-BOUNDS", name="Bounds")
    element = TariffElement.objects.create(tariff=tariff)
    for values in ({"min_kwh": D("-0.001")}, {"max_power": D("4000.01")}):
        bad = TariffElement(tariff=tariff, **values)
        with pytest.raises(ValidationError) as refused:
            bad.full_clean()
        assert set(refused.value.message_dict) == set(values)
    for type_, step in (("ENERGY", 2**40), ("TIME", 86_401), ("PARKING_TIME", 0)):
        component = PriceComponent(element=element, type=type_, price=D("1"), step_size=step)
        with pytest.raises(ValidationError) as refused:
            component.full_clean()
        assert "step_size" in refused.value.message_dict
    ok = PriceComponent(element=element, type="ENERGY", price=D("0.30"), step_size=100_000)
    ok.full_clean()
    negative = PriceComponent(element=element, type="FLAT", price=D("-0.50"))
    with pytest.raises(ValidationError):
        negative.full_clean()


def test_add_refuses_a_tariff_without_elements_and_bad_bounds(admin_client):
    response = admin_client.post(
        reverse("admin:tariffs_tariff_add"),
        tariff_post([], min_price_incl_vat="5.00", currency="eur"),
    )
    html = response.content.decode()
    assert response.status_code == 200
    assert "Please submit at least 1 form." in html
    assert "an ISO 4217 code" in html
    assert not Tariff.objects.exists()


def test_duplicate_positions_are_refused(admin_client):
    response = admin_client.post(
        reverse("admin:tariffs_tariff_add"),
        tariff_post(
            [
                element_data(0, position="1", energy_price="0.30"),
                element_data(1, position="1", time_price="2"),
            ]
        ),
    )
    assert response.status_code == 200
    assert "another element has this position" in response.content.decode()


def make_demo_tariff() -> Tariff:
    tariff = Tariff.objects.create(tariff_id="DEMO", name="Demo", currency="EUR")
    energy = TariffElement.objects.create(tariff=tariff, position=0)
    PriceComponent.objects.create(element=energy, type="ENERGY", price=D("0.30"), vat=D(21))
    PriceComponent.objects.create(element=energy, type="FLAT", price=D("0.50"), vat=D(21))
    parking = TariffElement.objects.create(tariff=tariff, position=1)
    PriceComponent.objects.create(
        element=parking, type="PARKING_TIME", price=D("2.00"), vat=D(21), step_size=60
    )
    return tariff


def test_change_prices_remove_a_component_and_add_an_element(admin_client):
    tariff = make_demo_tariff()
    energy, parking = tariff.elements.all()
    data = tariff_post(
        [
            element_data(
                0,
                id=energy.pk,
                position="0",
                energy_price="0.35",
                energy_vat="21",
                energy_step_size="1",
            ),
            element_data(
                1,
                id=parking.pk,
                position="1",
                parking_price="2.00",
                parking_vat="21",
                parking_step_size="60",
            ),
            element_data(2, time_price="1.20", time_vat="21", time_step_size="60"),
        ],
        initial=2,
        tariff_id="DEMO",
        name="Demo",
    )
    response = admin_client.post(reverse("admin:tariffs_tariff_change", args=[tariff.pk]), data)
    assert response.status_code == 302
    assert [str(pc) for pc in energy.price_components.all()] == ["ENERGY 0.35/kWh"]
    assert [
        (e.position, [str(pc) for pc in e.price_components.all()]) for e in tariff.elements.all()
    ] == [
        (0, ["ENERGY 0.35/kWh"]),
        (1, ["PARKING_TIME 2/h"]),
        (2, ["TIME 1.2/h"]),
    ]
    tariff.refresh_from_db()
    assert tariff.tariff_id == "DEMO"


def _demo_change(tariff: Tariff, energy_price: str, **fields: object) -> dict:
    energy, parking = tariff.elements.all()[:2]
    return tariff_post(
        [
            element_data(
                0,
                id=energy.pk,
                position="0",
                energy_price=energy_price,
                energy_vat="21",
                energy_step_size="1",
                flat_price="0.50",
                flat_vat="21",
            ),
            element_data(
                1,
                id=parking.pk,
                position="1",
                parking_price="2.00",
                parking_vat="21",
                parking_step_size="60",
            ),
        ],
        initial=2,
        tariff_id="DEMO",
        name="Demo",
        **fields,
    )


def test_each_save_publishes_a_version_with_who_when_and_what(admin_client, admin_user):
    tariff = make_demo_tariff()
    url = reverse("admin:tariffs_tariff_change", args=[tariff.pk])
    assert admin_client.post(url, _demo_change(tariff, "0.30")).status_code == 302
    assert admin_client.post(url, _demo_change(tariff, "0.35")).status_code == 302
    # Saving unchanged prices publishes nothing.
    assert admin_client.post(url, _demo_change(tariff, "0.35")).status_code == 302
    first, second = tariff.versions.order_by("number")
    assert first.changes == "first version"
    assert second.changes == "elements[0].price_components[ENERGY].price: 0.3 → 0.35"
    assert second.created_by == admin_user
    assert second.ocpi["elements"][0]["price_components"][0]["price"] == "0.35"
    page = admin_client.get(url).content.decode()
    assert "v2" in page
    assert "0.3 → 0.35" in page
    assert admin_user.username in page
    # A version is never edited or deleted.
    with pytest.raises(ValidationError):
        second.save()
    with pytest.raises(ValidationError):
        second.delete()


def test_a_scheduled_price_applies_from_its_time_and_the_past_is_refused(admin_client):
    from django.utils import timezone

    from tariffs.selectors import tariff_version_in_force

    tariff = make_demo_tariff()
    url = reverse("admin:tariffs_tariff_change", args=[tariff.pk])
    assert admin_client.post(url, _demo_change(tariff, "0.30")).status_code == 302
    later = timezone.now().replace(microsecond=0) + dt.timedelta(days=7)
    scheduled = {"effective_from_0": f"{later:%Y-%m-%d}", "effective_from_1": f"{later:%H:%M:%S}"}
    assert admin_client.post(url, _demo_change(tariff, "0.45", **scheduled)).status_code == 302
    now = timezone.now()
    in_force_now = tariff_version_in_force(tariff=tariff, at=now)
    in_force_later = tariff_version_in_force(tariff=tariff, at=later)
    assert in_force_now is not None
    assert in_force_now.number == 1
    assert in_force_later is not None
    assert in_force_later.number == 2
    assert "scheduled: v2 from" in admin_client.get(url).content.decode()
    past = {"effective_from_0": "2020-01-01", "effective_from_1": "00:00:00"}
    response = admin_client.post(url, _demo_change(tariff, "0.55", **past))
    assert response.status_code == 200
    assert "cannot take effect in the past" in response.content.decode()
    assert tariff.versions.count() == 2


def staff_user(username: str, *permissions: str):
    user = get_user_model().objects.create_user(username, password="pw", is_staff=True)
    for codename in permissions:
        user.user_permissions.add(Permission.objects.get(codename=codename))
    return user


def preview_url(tariff: Tariff, **params: object) -> str:
    query = "&".join(f"{key}={value}" for key, value in params.items())
    return f"{reverse('admin:tariffs_tariff_preview', args=[tariff.pk])}?{query}"


def cell(html: str, cell_id: str) -> str:
    match = re.search(rf'id="{cell_id}">([^<]*)<', html)
    assert match, f"no {cell_id} in the page"
    return match.group(1).strip()


def test_preview_prices_a_session_for_an_operator(client, roles):
    tariff = make_demo_tariff()
    user = get_user_model().objects.create_user("op", password="pw", is_staff=True)
    user.groups.add(Group.objects.get(name="Operators"))
    client.force_login(user)

    blank = client.get(reverse("admin:tariffs_tariff_preview", args=[tariff.pk]))
    assert blank.status_code == 200
    assert "Price it" in blank.content.decode()

    response = client.get(
        preview_url(
            tariff,
            start="2025-03-12T18:00",
            time_zone="Europe/Berlin",
            duration_min=60,
            energy_kwh=20,
            parking_min=30,
        )
    )
    html = response.content.decode()
    assert response.status_code == 200
    # 0.50 + 20 kWh x 0.30 + 0.5 h x 2.00 = 7.50 excl; x 1.21 = 9.075 -> 9.08 incl.
    assert cell(html, "total-excl-vat") == "7.50"
    assert cell(html, "total-incl-vat") == "9.08"
    assert "Wed 2025-03-12 18:00:00 CET" in html
    assert "Parking time 0:30:00 h" in html
    assert "20.000 kWh" in html
    assert "21 %" in html  # the VAT table


def test_preview_with_a_power_profile_and_bad_input(admin_client):
    tariff = make_demo_tariff()
    response = admin_client.get(
        preview_url(
            tariff,
            start="2025-03-12T10:00",
            time_zone="Europe/Amsterdam",
            duration_min=60,
            energy_kwh=5,
            parking_min=0,
            power_profile="0%2011%0A15%205",
        )
    )
    html = response.content.decode()
    # 11 kW for 15 min = 2.75 kWh, then 5 kW for 27 min = 2.25 kWh: full at 10:42, parked to 11:00.
    assert "Wed 2025-03-12 10:42:00 CET" in html
    # 0.50 + 5 x 0.30 + 18 min x 2.00/h = 0.50 + 1.50 + 0.60 = 2.60
    assert cell(html, "total-excl-vat") == "2.60"

    bad = admin_client.get(
        preview_url(
            tariff,
            start="2025-03-12T10:00",
            time_zone="Mars/Base",
            duration_min=60,
            energy_kwh=5,
            parking_min=0,
            power_profile="soon",
        )
    )
    assert "is not an IANA time zone" in bad.content.decode()
    assert "expected “minute kW”" in bad.content.decode()
    assert 'id="total-excl-vat"' not in bad.content.decode()


def test_preview_needs_tariff_permission(client):
    tariff = make_demo_tariff()
    client.force_login(staff_user("nobody"))
    assert client.get(reverse("admin:tariffs_tariff_preview", args=[tariff.pk])).status_code == 403
    client.force_login(staff_user("viewer", "view_tariff"))
    assert client.get(reverse("admin:tariffs_tariff_preview", args=[tariff.pk])).status_code == 200


def test_assignment_admin_validates_scope(admin_client):
    tariff = make_demo_tariff()
    site = Location.objects.create(name="Depot")
    cp = ChargingStation.objects.create(identity="CP-A", location=site)
    page = admin_client.get(reverse("admin:tariffs_tariffassignment_add"))
    assert "admin-autocomplete" in page.content.decode()
    base = {
        "tariff": tariff.pk,
        "location": "",
        "station": cp.pk,
        "evse_id": "",
        "connector_id": "2",
        "account": "",
        "valid_from_0": "",
        "valid_from_1": "",
        "valid_until_0": "",
        "valid_until_1": "",
    }
    refused = admin_client.post(reverse("admin:tariffs_tariffassignment_add"), base)
    assert "a connector needs its EVSE" in refused.content.decode()
    accepted = admin_client.post(
        reverse("admin:tariffs_tariffassignment_add"), {**base, "evse_id": "2"}
    )
    assert accepted.status_code == 302
    assignment = TariffAssignment.objects.get()
    assert assignment.specificity == 8
    listing = admin_client.get(reverse("admin:tariffs_tariffassignment_changelist"))
    assert "CP-A EVSE 2 connector 2" in listing.content.decode()


def test_tariff_changelist_queries_do_not_grow_with_rows(admin_client):
    make_demo_tariff()
    url = reverse("admin:tariffs_tariff_changelist")
    with CaptureQueriesContext(connection) as few:
        assert admin_client.get(url).status_code == 200
    for number in range(5):
        Tariff.objects.create(tariff_id=f"T{number}", name=f"T{number}")
        TariffElement.objects.create(tariff=Tariff.objects.get(tariff_id=f"T{number}"))
    with CaptureQueriesContext(connection) as many:
        response = admin_client.get(url)
    assert "ENERGY 0.3/kWh" in response.content.decode()
    assert len(many) == len(few)

"""The station pages of the operator panel: creating a station in one save, and its password."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from stations.models import ChargingStation, Connector, Evse
from tests.conftest import ROOT

pytestmark = pytest.mark.django_db

ADD_URL = "/admin/stations/chargingstation/add/"
PASSWORD_16 = "sixteen-chars-ok"


@pytest.fixture
def operator(client: Any, roles: None) -> Any:  # noqa: ARG001
    from django.contrib.auth.models import Group

    from cpo.models import User

    user = User.objects.create_user(username="olga", password="pw-olga-2026", is_staff=True)
    user.groups.add(Group.objects.get(name="Operators"))
    client.force_login(user)
    return client


def add_form(**fields: Any) -> dict[str, Any]:
    data = {
        "identity": "NEW-1",
        "protocol": "ocpp1.6",
        "connector_count": "2",
        "registration_status": "Accepted",
        "new_password": PASSWORD_16,
        "heartbeat_interval": "",
    }
    data.update(fields)
    return data


def test_the_add_page_asks_for_protocol_and_connectors_not_reported_data(operator: Any) -> None:
    page = operator.get(ADD_URL)
    assert page.status_code == 200
    form = page.context["adminform"].form
    assert form.fields["protocol"].choices == [
        ("", "not known yet"),
        ("ocpp1.6", "OCPP 1.6J"),
        ("ocpp2.0.1", "OCPP 2.0.1"),
        ("ocpp2.1", "OCPP 2.1"),
    ]
    assert "connector_count" in form.fields
    html = page.content.decode()
    assert 'name="protocol"' in html
    assert 'name="connector_count"' in html
    assert "Reported by the station" not in html
    # No inline that would need an EVSE saved before its connectors.
    assert "connectors-TOTAL_FORMS" not in html


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
def test_one_save_creates_the_station_with_its_evses_and_connectors(
    operator: Any, protocol: str
) -> None:
    response = operator.post(ADD_URL, add_form(protocol=protocol, connector_count="3"))
    assert response.status_code == 302, response.context["adminform"].form.errors
    station = ChargingStation.objects.get(identity="NEW-1")
    assert station.protocol == protocol
    assert station.check_password(PASSWORD_16)
    # Connector N of a 1.6 station is EVSE N with connector 1.
    assert list(
        Connector.objects.filter(station=station).values_list("evse__evse_id", "connector_id")
    ) == [(1, 1), (2, 1), (3, 1)]
    assert list(Evse.objects.filter(station=station).values_list("uid", flat=True)) == [
        "NEW-1-1",
        "NEW-1-2",
        "NEW-1-3",
    ]

    # Once created, the protocol is the station's to report; EVSEs and connectors are edited
    # inline, and a connector can only be put on an EVSE of its own station.
    other = ChargingStation.objects.create(identity="OTHER-1")
    Evse.objects.create(station=other, evse_id=1, uid="OTHER-1-1")
    page = operator.get(f"/admin/stations/chargingstation/{station.pk}/change/")
    assert page.status_code == 200
    assert "protocol" not in page.context["adminform"].form.fields
    assert "connector_count" not in page.context["adminform"].form.fields
    [connectors] = [f for f in page.context["inline_admin_formsets"] if f.opts.model is Connector]
    choices = connectors.formset.forms[0].fields["evse"].queryset
    assert sorted(e.uid for e in choices) == ["NEW-1-1", "NEW-1-2", "NEW-1-3"]


def test_a_station_may_be_created_without_protocol_or_connectors(operator: Any) -> None:
    response = operator.post(ADD_URL, add_form(protocol="", connector_count="0"))
    assert response.status_code == 302
    station = ChargingStation.objects.get(identity="NEW-1")
    assert station.protocol == ""
    assert not station.evses.exists()


def test_an_eight_character_password_is_refused_by_default_naming_the_setting(
    operator: Any,
) -> None:
    response = operator.post(ADD_URL, add_form(new_password="8-chars!"))
    assert response.status_code == 200
    [message] = response.context["adminform"].form.errors["new_password"]
    assert "has 8 characters" in message
    assert "at least 16" in message
    assert "OCPP_STATION_PASSWORD_MIN_LENGTH" in message
    assert not ChargingStation.objects.exists()


def test_the_minimum_is_a_setting(operator: Any, settings: Any) -> None:
    settings.OCPP_STATION_PASSWORD_MIN_LENGTH = 8
    page = operator.get(ADD_URL)
    assert "8-40 characters" in page.content.decode()
    response = operator.post(ADD_URL, add_form(new_password="8-chars!"))
    assert response.status_code == 302
    assert ChargingStation.objects.get(identity="NEW-1").check_password("8-chars!")
    # The maximum stays OCPP's 40.
    station = ChargingStation.objects.get(identity="NEW-1")
    response = operator.post(
        f"/admin/stations/chargingstation/{station.pk}/change/",
        {
            "identity": "NEW-1",
            "registration_status": "Accepted",
            "new_password": "x" * 41,
            "evses-TOTAL_FORMS": "0",
            "evses-INITIAL_FORMS": "0",
            "connectors-TOTAL_FORMS": "0",
            "connectors-INITIAL_FORMS": "0",
        },
    )
    assert response.status_code == 200
    assert "at most 40" in str(response.context["adminform"].form.errors["new_password"])


@pytest.mark.parametrize("value", ["0", "41"])
def test_a_minimum_outside_ocpp_s_range_stops_the_start(value: str) -> None:
    env = dict(os.environ, OCPP_STATION_PASSWORD_MIN_LENGTH=value)
    result = subprocess.run(
        [sys.executable, "-c", "import cpo.settings_test"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode != 0
    assert "OCPP_STATION_PASSWORD_MIN_LENGTH must be between 1 and 40" in result.stderr

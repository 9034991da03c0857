"""Alert rules in the panel: an Operator adds one with ticked incident types; a bad address is
refused with the field's message and nothing saved; Support reads but cannot add."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from cpo.models import User
from stations.models import Location
from stations.monitoring.models import AlertRule

pytestmark = pytest.mark.django_db

ADD = "/admin/monitoring/alertrule/add/"


def _client(role: str) -> Client:
    user = User.objects.create_user(username=f"alerts-{role.lower()}", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client = Client()
    client.force_login(user)
    return client


def _form(**overrides: object) -> dict[str, object]:
    site = Location.objects.create(name="Depot", time_zone="Europe/Amsterdam")
    form: dict[str, object] = {
        "name": "night shift",
        "is_active": "on",
        "recipients": "oncall@example.com\nlead@example.com",
        "min_severity": "error",
        "location": site.pk,
        "incident_types": ["connector_faulted", "station_offline"],
        "quiet_start": "22:00",
        "quiet_end": "07:00",
        "time_zone": "Europe/Amsterdam",
        "held-TOTAL_FORMS": "0",
        "held-INITIAL_FORMS": "0",
    }
    form.update(overrides)
    return form


def test_an_operator_adds_a_rule(roles) -> None:  # noqa: ARG001
    page = _client("Operators").post(ADD, _form())
    assert page.status_code == 302, page.content.decode()[:2000]
    rule = AlertRule.objects.get()
    assert rule.recipient_list() == ["oncall@example.com", "lead@example.com"]
    assert rule.incident_types == ["connector_faulted", "station_offline"]
    assert rule.location.name == "Depot"
    assert f"{rule.quiet_start:%H:%M}-{rule.quiet_end:%H:%M}" == "22:00-07:00"


def test_a_bad_address_is_refused_and_nothing_saved(roles) -> None:  # noqa: ARG001
    page = _client("Operators").post(ADD, _form(recipients="oncall@example.com, nobody"))
    assert page.status_code == 200
    assert "not an e-mail address: &#x27;nobody&#x27;" in page.content.decode()
    assert not AlertRule.objects.exists()


def test_support_cannot_add_a_rule(roles) -> None:  # noqa: ARG001
    page = _client("Support").post(ADD, _form())
    assert page.status_code == 403
    assert not AlertRule.objects.exists()

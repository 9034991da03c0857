"""The panel's uptime pages and the API's uptime figures, on the hand-computed example of
tests/stations/monitoring/test_uptime.py: CSV content, the exclusions' four eyes through the
panel, and who may do what."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
from django.contrib.auth.models import Group
from django.test import Client
from django.urls import reverse

from cpo import api_tokens
from stations.monitoring import uptime
from stations.monitoring.models import UptimeExclusion
from tests.stations.monitoring.uptime_example import build_example, make_operators

pytestmark = pytest.mark.django_db


@pytest.fixture
def world(roles) -> dict[str, Any]:  # noqa: ARG001
    alice, bob = make_operators()
    operators = Group.objects.get(name="Operators")
    for user in (alice, bob):
        user.groups.add(operators)
    return {"alice": alice, "bob": bob, **build_example(alice, bob)}


def client_for(user: Any) -> Client:
    client = Client()
    client.force_login(user)
    return client


def csv_lines(response: Any) -> list[list[str]]:
    assert response["Content-Type"].startswith("text/csv")
    return list(csv.reader(io.StringIO(response.content.decode())))


def test_panel_sla_csv_is_the_hand_computed_figures(world, settings) -> None:
    settings.PANEL_TIME_ZONE = "UTC"
    response = client_for(world["alice"]).get(
        reverse("panel:report-uptime-figures"),
        {"kind": "sla", "start": "2025-04-01", "end": "2025-04-30", "format": "csv"},
    )
    assert response.status_code == 200
    assert 'filename="uptime-sla-2025-04-01-2025-04-30.csv"' in response["Content-Disposition"]
    header, *rows = csv_lines(response)
    assert header == uptime.SLA_COLUMNS
    by_station = {row[1]: dict(zip(header, row, strict=True)) for row in rows}
    a = by_station["UP-A"]
    assert a["site"] == "Depot"
    assert a["measured_min"] == "43200.0"
    assert a["outage_min"] == "1320.0"
    assert a["excluded_min"] == "360.0"
    assert a["excluded_outage_min"] == "240.0"
    assert a["counted_outage_min"] == "1080.0"
    assert a["uptime_pct"] == "97.479"
    assert a["meets_target"] == "yes"
    assert by_station["UP-B"]["uptime_pct"] == "99.861"


def test_panel_pages_show_nevi_and_uk(world, settings) -> None:
    settings.PANEL_TIME_ZONE = "UTC"
    client = client_for(world["bob"])
    page = client.get(reverse("panel:report-uptime-figures"), {"kind": "nevi", "month": "2025-04"})
    assert page.status_code == 200
    assert "97.5" in page.content.decode()
    nevi = csv_lines(
        client.get(
            reverse("panel:report-uptime-figures"),
            {"kind": "nevi", "month": "2025-04", "format": "csv"},
        )
    )
    assert nevi[0] == uptime.NEVI_COLUMNS
    uk = client.get(reverse("panel:report-uptime-figures"), {"kind": "uk", "year": "2025"})
    assert 'id="uptime-network-pct">99.758<' in uk.content.decode()
    bad = client.get(reverse("panel:report-uptime-figures"), {"kind": "nevi", "month": "April"})
    assert bad.status_code == 200
    assert "errornote" in bad.content.decode()


def test_api_csv_and_json(world) -> None:
    _, secret = api_tokens.api_token_create(user=world["alice"], name="uptime")
    client = Client(HTTP_AUTHORIZATION=f"Bearer {secret}")
    url = reverse("v1:uptime-report")
    data = client.get(url, {"figure": "nevi", "month": "2025-04"}).json()
    a = next(row for row in data["rows"] if row["station"] == "UP-A")
    assert (a["month_outage_min"], a["month_excluded_min"], a["month_uptime_pct"]) == (
        1320.0,
        240.0,
        97.5,
    )
    response = client.get(
        url, {"figure": "sla", "start": "2025-04-01", "end": "2025-04-30", "output": "csv"}
    )
    header, *rows = csv_lines(response)
    assert header == uptime.SLA_COLUMNS
    assert [row[1] for row in rows] == ["UP-A", "UP-B"]
    assert rows[0][header.index("uptime_pct")] == "97.479"
    refused = client.get(url, {"figure": "sla", "start": "2025-04-30", "end": "2025-04-01"})
    assert refused.status_code == 400


def test_panel_exclusion_entered_then_approved_by_another_operator(world) -> None:
    alice, bob = world["alice"], world["bob"]
    url = reverse("panel:uptime-exclusions")
    response = client_for(alice).post(
        url,
        {
            "starts_at": "2025-04-10T08:00",
            "ends_at": "2025-04-10T20:00",
            "reason": "vandalism",
            "note": "Cable cut",
            "evse": world["evse_a"].pk,
        },
    )
    assert response.status_code == 302
    exclusion = UptimeExclusion.objects.get(note="Cable cut")
    assert exclusion.state == "pending"
    assert exclusion.created_by == alice
    decide = reverse("panel:uptime-exclusion-decide", args=[exclusion.pk])
    own = client_for(alice).post(decide, {"decision": "approve"}, follow=True)
    assert "four eyes" in own.content.decode().lower()
    exclusion.refresh_from_db()
    assert exclusion.state == "pending"
    client_for(bob).post(decide, {"decision": "approve"})
    exclusion.refresh_from_db()
    assert (exclusion.state, exclusion.decided_by) == ("approved", bob)


def test_a_bad_exclusion_is_refused_and_changes_nothing(world) -> None:
    before = UptimeExclusion.objects.count()
    response = client_for(world["alice"]).post(
        reverse("panel:uptime-exclusions"),
        {
            "starts_at": "2025-04-10T20:00",
            "ends_at": "2025-04-10T08:00",
            "reason": "vandalism",
            "note": "Backwards",
            "station": world["a"].pk,
            "location": world["site"].pk,
        },
    )
    assert response.status_code == 200
    assert "after the start" in response.content.decode()
    assert UptimeExclusion.objects.count() == before


def test_support_reads_but_neither_enters_nor_decides(world) -> None:
    from tests.cpo.panel.conftest import make_staff

    support = make_staff("uptime-support", "Support")
    client = client_for(support)
    assert client.get(reverse("panel:uptime-exclusions")).status_code == 200
    pending = UptimeExclusion.objects.get(state="pending")
    decide = reverse("panel:uptime-exclusion-decide", args=[pending.pk])
    assert client.post(decide, {"decision": "approve"}).status_code == 403
    pending.refresh_from_db()
    assert pending.state == "pending"


def test_chart_json_of_a_station_and_a_site(world) -> None:
    client = client_for(world["bob"])
    station = client.get(reverse("panel:station-uptime", args=[world["a"].pk])).json()
    assert len(station["days"]) == 30
    assert [s["label"] for s in station["series"]] == ["UP-A EVSE 1"]
    site = client.get(reverse("panel:site-uptime", args=[world["site"].pk])).json()
    assert sorted(s["label"] for s in site["series"]) == ["UP-A EVSE 1", "UP-B EVSE 1"]

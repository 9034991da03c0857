"""The station page's incidents section (an include the station page links): the station's
active incidents, newest first, each linked to its admin page."""

from __future__ import annotations

import pytest
from django.template.loader import render_to_string

from cpo.lib.formatting import panel_tz
from stations.models import ChargingStation
from stations.monitoring import selectors, services
from stations.monitoring.models import Incident, IncidentType

pytestmark = pytest.mark.django_db


def test_the_section_lists_active_incidents_only() -> None:
    station = ChargingStation.objects.create(identity="MON-PAGE-1")
    other = ChargingStation.objects.create(identity="MON-PAGE-2")
    for target, title in ((station, "E-1 on MON-PAGE-1"), (other, "elsewhere")):
        services.incident_open_or_touch(
            type=IncidentType.STATION_FLAPPING,
            fingerprint=f"flap:{target.pk}",
            station_id=target.pk,
            severity=Incident.Severity.WARNING,
            title=title,
        )
    gone, _ = services.incident_open_or_touch(
        type=IncidentType.AUTH_REJECTED_BURST,
        fingerprint=f"auth:{station.pk}",
        station_id=station.pk,
        severity=Incident.Severity.WARNING,
        title="resolved one",
    )
    services.incident_resolve(incident_id=gone.pk)

    incidents = selectors.station_incidents(station_id=station.pk)
    html = render_to_string(
        "monitoring/station_incidents.html", {"incidents": incidents, "tz": panel_tz()}
    )
    assert incidents["count"] == 1
    assert "E-1 on MON-PAGE-1" in html
    assert "elsewhere" not in html
    assert "resolved one" not in html
    assert f"/admin/monitoring/incident/{incidents['items'][0]['id']}/change/" in html
    assert selectors.incident_counts()["open"] == 2


def test_a_station_without_incidents_says_so() -> None:
    station = ChargingStation.objects.create(identity="MON-PAGE-3")
    html = render_to_string(
        "monitoring/station_incidents.html",
        {"incidents": selectors.station_incidents(station_id=station.pk), "tz": panel_tz()},
    )
    assert "No open incidents." in html


def test_the_station_page_data_carries_the_section() -> None:
    from cpo.panel.dashboard import station_live

    station = ChargingStation.objects.create(identity="MON-PAGE-4", protocol="ocpp1.6")
    services.incident_open_or_touch(
        type=IncidentType.STATION_FLAPPING,
        fingerprint=f"flap:{station.pk}",
        station_id=station.pk,
        severity=Incident.Severity.WARNING,
        title="flapping here",
    )
    live = station_live(station=station)
    assert live["incidents"]["count"] == 1
    assert live["incidents"]["items"][0]["title"] == "flapping here"


def test_the_station_page_shows_the_section(admin_client) -> None:
    station = ChargingStation.objects.create(identity="MON-PAGE-5", protocol="ocpp1.6")
    services.incident_open_or_touch(
        type=IncidentType.STATION_FLAPPING,
        fingerprint=f"flap:{station.pk}",
        station_id=station.pk,
        severity=Incident.Severity.WARNING,
        title="flapping on the page",
    )
    page = admin_client.get(f"/admin/stations/chargingstation/{station.pk}/change/")
    html = page.content.decode()
    assert page.status_code == 200
    assert 'id="section-incidents"' in html
    assert "flapping on the page" in html
    assert f"?station__exact={station.pk}" in html
    listed = admin_client.get(f"/admin/monitoring/incident/?station__exact={station.pk}")
    assert listed.status_code == 200
    assert "flapping on the page" in listed.content.decode()

"""The incidents panel in a real browser: an operator sees the open incident on the
dashboard and in the list, acknowledges it with the list's action, and finds the
acknowledgement on its timeline; the database says the same."""

from __future__ import annotations

from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from playwright.async_api import expect

from tests.cpo.panel.conftest import browser_page, login, make_staff  # noqa: F401 - fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live, pytest.mark.browser]


@sync_to_async
def _faulted_incident() -> int:
    from django.conf import settings

    from stations.models import ChargingStation
    from stations.monitoring.detectors import detectors_run
    from stations.monitoring.models import Incident
    from stations.services import connector_status_changed, station_evses_create

    station = ChargingStation.objects.create(identity="MON-UI-1", protocol="ocpp1.6")
    station_evses_create(station=station, count=1)
    connector_status_changed(
        station_id=station.pk,
        evse_id=1,
        connector_id=1,
        status="Faulted",
        timestamp=timezone.now() - timedelta(minutes=settings.MONITORING_FAULTED_MINUTES + 1),
        error_code="GroundFailure",
        vendor_error_code="E-7",
    )
    detectors_run()
    return Incident.objects.get(station=station).pk


@sync_to_async
def _incident(pk: int):
    from stations.monitoring.models import Incident

    return Incident.objects.select_related("acknowledged_by").get(pk=pk)


async def test_an_operator_acknowledges_an_incident(daphne_server, roles, browser_page):  # noqa: F811
    incident_id = await _faulted_incident()
    await sync_to_async(make_staff)("op-mon", "Operators")
    page = browser_page
    await login(page, daphne_server.http_url, "op-mon")
    await expect(page.locator("#incidents-open")).to_have_text("1")

    await page.goto(f"{daphne_server.http_url}/admin/monitoring/incident/?state__exact=open")
    rows = page.locator("#result_list tbody tr")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("GroundFailure, vendor error E-7")
    await page.check(f"input[name=_selected_action][value='{incident_id}']")
    await page.select_option("select[name=action]", "acknowledge_selected")
    await page.click("button[name=index]")
    await expect(page.locator(".messagelist")).to_contain_text("1 incident(s) acknowledged")
    await expect(rows).to_have_count(0)  # no longer open

    await page.goto(f"{daphne_server.http_url}/admin/monitoring/incident/{incident_id}/change/")
    await expect(page.locator("body")).to_contain_text("acknowledged by op-mon")
    await expect(page.locator("body")).to_contain_text("E-7")
    incident = await _incident(incident_id)
    assert incident.state == "acknowledged"
    assert incident.acknowledged_by.username == "op-mon"
    assert page.errors == []


async def test_support_sees_incidents_but_cannot_acknowledge(daphne_server, roles, browser_page):  # noqa: F811
    incident_id = await _faulted_incident()
    await sync_to_async(make_staff)("support-mon", "Support")
    page = browser_page
    await login(page, daphne_server.http_url, "support-mon")
    await page.goto(f"{daphne_server.http_url}/admin/monitoring/incident/")
    await expect(page.locator("#result_list tbody tr")).to_have_count(1)
    assert await page.locator("select[name=action] option[value=acknowledge_selected]").count() == 0
    assert (await _incident(incident_id)).state == "open"

"""Excluded time in a real browser: one operator enters it (the form, its button), the figure
does not move; another operator approves it (the row's button) and the report's figure
changes to the hand-computed one; the uptime charts draw on the station and site pages."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import Group
from playwright.async_api import expect

from tests.cpo.panel.conftest import PASSWORD, browser_page, login  # noqa: F401 - fixture
from tests.stations.monitoring.uptime_example import build_example, make_operators

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live, pytest.mark.browser]

SLA_APRIL = "/admin/panel/reports/uptime-figures/?kind=sla&start=2025-04-01&end=2025-04-30"


@sync_to_async
def _example() -> dict:
    alice, bob = make_operators(password=PASSWORD)
    operators = Group.objects.get(name="Operators")
    for user in (alice, bob):
        user.groups.add(operators)
    return build_example(alice, bob)


@sync_to_async
def _entered(note: str):
    from stations.monitoring.models import UptimeExclusion

    return UptimeExclusion.objects.select_related("created_by", "decided_by", "station").get(
        note=note
    )


async def test_one_operator_enters_excluded_time_and_another_approves_it(
    daphne_server,
    roles,
    browser_page,  # noqa: F811
):
    world = await _example()
    base = daphne_server.http_url
    page = browser_page
    await login(page, base, "alice")
    await page.goto(f"{base}{SLA_APRIL}")
    # The hand-computed network figure: 84,900 / 86,040 = 98.675 %
    await expect(page.locator("#uptime-network-pct")).to_have_text("98.675")

    await page.goto(f"{base}/admin/panel/uptime/exclusions/")
    await page.fill("#id_starts_at", "2025-04-20T00:00")
    await page.fill("#id_ends_at", "2025-04-20T06:00")
    await page.select_option("#id_reason", "utility_outage")
    await page.fill("#id_note", "Grid outage at the depot")
    await page.select_option("#id_station", label="UP-A")
    await page.click("#exclusion-submit")
    await expect(page.locator(".messagelist")).to_contain_text("another operator must approve")
    entered = await _entered("Grid outage at the depot")
    assert entered.state == "pending"
    assert entered.created_by.username == "alice"
    assert entered.station.identity == "UP-A"
    row = page.locator(f"tr[data-exclusion='{entered.pk}']")
    await expect(row).to_contain_text("another operator decides")
    await expect(row.locator("button[data-decide]")).to_have_count(0)
    await page.goto(f"{base}{SLA_APRIL}")
    await expect(page.locator("#uptime-network-pct")).to_have_text("98.675")  # not yet

    await page.context.clear_cookies()
    await login(page, base, "bob")
    await page.goto(f"{base}/admin/panel/uptime/exclusions/")
    row = page.locator(f"tr[data-exclusion='{entered.pk}']")
    await row.locator("button[data-decide=approve]").click()
    await expect(page.locator(".messagelist")).to_contain_text("Decision recorded")
    await expect(row.locator(".exclusion-state")).to_have_text("Approved")
    entered = await _entered("Grid outage at the depot")
    assert entered.state == "approved"
    assert entered.decided_by.username == "bob"

    await page.goto(f"{base}{SLA_APRIL}")
    # X = 360 + 360 = 720 min excluded, counted outage (1,320 - 600) + 60 = 780 min:
    # (86,400 - 720 - 780) / (86,400 - 720) = 84,900 / 85,680 = 99.090 %
    await expect(page.locator("#uptime-network-pct")).to_have_text("99.09")
    up_a = page.locator("#report-table tbody tr", has_text="UP-A")
    # (43,200 - 720 - 720) / (43,200 - 720) = 41,760 / 42,480 = 98.305 %
    await expect(up_a).to_contain_text("98.305")

    await page.goto(f"{base}/admin/stations/chargingstation/{world['a'].pk}/change/")
    await expect(page.locator("#chart-uptime")).to_have_attribute("data-drawn", "1")
    await page.goto(f"{base}/admin/stations/location/{world['site'].pk}/change/")
    await expect(page.locator("#chart-uptime")).to_have_attribute("data-drawn", "2")
    assert page.errors == []


async def test_another_operator_rejects_excluded_time_and_the_figure_stays(
    daphne_server,
    roles,
    browser_page,  # noqa: F811
):
    await _example()
    base = daphne_server.http_url
    page = browser_page
    await login(page, base, "alice")
    await page.goto(f"{base}/admin/panel/uptime/exclusions/")
    await page.fill("#id_starts_at", "2025-04-20T00:00")
    await page.fill("#id_ends_at", "2025-04-20T06:00")
    await page.select_option("#id_reason", "vandalism")
    await page.fill("#id_note", "Cable cut, claimed")
    await page.select_option("#id_station", label="UP-A")
    await page.click("#exclusion-submit")
    entered = await _entered("Cable cut, claimed")

    await page.context.clear_cookies()
    await login(page, base, "bob")
    await page.goto(f"{base}/admin/panel/uptime/exclusions/")
    row = page.locator(f"tr[data-exclusion='{entered.pk}']")
    await row.locator("button[data-decide=reject]").click()
    await expect(page.locator(".messagelist")).to_contain_text("Decision recorded")
    await expect(row.locator(".exclusion-state")).to_have_text("Rejected")
    entered = await _entered("Cable cut, claimed")
    assert entered.state == "rejected"
    assert entered.decided_by.username == "bob"
    await page.goto(f"{base}{SLA_APRIL}")
    # Rejected time never counts: the figure is still the one without it.
    await expect(page.locator("#uptime-network-pct")).to_have_text("98.675")
    assert page.errors == []

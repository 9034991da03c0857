"""The site energy page in a real browser: an operator sees the grid tree with each node's load
per phase against its limit and the chart of the load over time, takes back a station that
refused profiles, and asks for a new allocation; the database says the same. The session
page says why the session is limited."""

from __future__ import annotations

import os
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from playwright.async_api import expect

from tests.conftest import ROOT, start_celery_worker
from tests.cpo.panel.conftest import browser_page, login, make_staff  # noqa: F401 - fixture

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live, pytest.mark.browser]

# Set to write the README's picture of the page (static/cpo/readme/energy-site.png).
README_PICTURE = os.environ.get("ENERGY_README_PICTURE") == "1"


@sync_to_async
def _site() -> dict[str, int]:
    from cpo.tools.bench.data import fleet_stations_create
    from cpo.tools.bench.energy import energy_site_create
    from cpo.tools.simulator import V16, V201, StationSpec
    from sessions.models import ChargingSession
    from stations.energy import services
    from stations.energy.models import AllocationRun, GridNode, StationEnergy
    from stations.models import ChargingStation

    specs = [
        StationSpec(f"UI-EN-{n}", V16 if n % 2 else V201, "pw", connectors=1) for n in range(5)
    ]
    fleet_stations_create(specs=specs)
    layout = energy_site_create(
        identities=[s.identity for s in specs],
        circuits=2,
        circuit_limit_a=Decimal(32),
        connection_limit_a=Decimal(50),
        rotate=True,
    )
    stations = list(ChargingStation.objects.filter(identity__startswith="UI-EN-").order_by("pk"))
    ChargingStation.objects.filter(pk__in=[s.pk for s in stations]).update(is_online=True)
    sessions = []
    for n, station in enumerate(stations[:4]):
        sessions.append(
            ChargingSession.objects.create(
                station=station,
                evse_id=1,
                connector_id=1,
                transaction_id=str(5000 + n),
                ocpp16_transaction_id=5000 + n,
                started_at=timezone.now() - timedelta(minutes=30 - n),
            )
        )
    # A history for the chart: three earlier runs.
    for minutes in (9, 6, 3):
        services.site_allocate(
            site_id=layout.site_id,
            trigger="test",
            now=timezone.now() - timedelta(minutes=minutes),
        )
    refusing = StationEnergy.objects.get(station=stations[4])
    StationEnergy.objects.filter(pk=refusing.pk).update(
        unmanaged=True, unmanaged_since=timezone.now(), rejections=3
    )
    services.site_allocate(site_id=layout.site_id, trigger="test")
    return {
        "site": layout.site_id,
        "refusing": refusing.pk,
        "session": sessions[3].pk,
        "runs": AllocationRun.objects.filter(site_id=layout.site_id).count(),
        "circuit": GridNode.objects.filter(site_id=layout.site_id, name="Circuit 1").get().pk,
    }


@sync_to_async
def _unmanaged(pk: int) -> bool:
    from stations.energy.models import StationEnergy

    return StationEnergy.objects.get(pk=pk).unmanaged


@sync_to_async
def _runs(site_id: int, trigger: str) -> int:
    from stations.energy.models import AllocationRun

    return AllocationRun.objects.filter(site_id=site_id, trigger=trigger).count()


async def test_the_site_energy_page_shows_the_tree_and_its_buttons_work(
    daphne_server,
    roles,
    browser_page,  # noqa: F811 - the fixture
):
    data = await _site()
    await sync_to_async(make_staff)("op-energy", "Operators")
    page = browser_page
    await login(page, daphne_server.http_url, "op-energy")
    await page.goto(f"{daphne_server.http_url}/admin/panel/energy/{data['site']}/")

    tree = page.locator("#energy-tree")
    await expect(tree.locator("tr.energy-node")).to_have_count(3)
    # Circuit 1 (stations 0, 2, 4 with rotations RST, TRS, STR): the refusing station 4 is
    # counted at its worst case (32 A on each phase): nothing is left for the two cars there.
    circuit = tree.locator(f"tr.energy-node[data-node='{data['circuit']}']")
    for phase in ("L1", "L2", "L3"):
        await expect(circuit.locator(f"td[data-phase='{phase}']")).to_contain_text("32.0 / 32.0 A")
    await expect(tree.locator("tr.energy-connector")).to_have_count(5)
    await expect(tree).to_contain_text("paused")
    # The chart has the four runs of the last hour.
    await expect(page.locator("#energy-chart")).to_have_attribute("data-points", "4")
    if README_PICTURE:
        target = Path(ROOT) / "static" / "cpo" / "readme" / "energy-site.png"
        target.parent.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(target), full_page=True)

    # The refusing station is taken back into management.
    unmanaged = page.locator("#energy-unmanaged")
    await expect(unmanaged).to_contain_text("UI-EN-4")
    await unmanaged.get_by_role("button", name="Manage again").click()
    await expect(page.locator(".messagelist")).to_contain_text("UI-EN-4 is energy-managed again")
    await expect(page.locator("#energy-unmanaged")).to_have_count(0)
    assert await _unmanaged(data["refusing"]) is False

    # "Reallocate now" makes a run (on a real worker).
    worker = await sync_to_async(start_celery_worker)("energy-ui")
    try:
        await page.get_by_role("button", name="Reallocate now").click()
        await expect(page.locator(".messagelist")).to_contain_text("allocation of this site")
        for _ in range(100):
            if await _runs(data["site"], "operator"):
                break
            await page.wait_for_timeout(100)
        assert await _runs(data["site"], "operator") == 1
    finally:
        await sync_to_async(worker.stop)()

    # The session page says why the session is limited.
    await page.goto(
        f"{daphne_server.http_url}/admin/charging/chargingsession/{data['session']}/change/"
    )
    why = page.locator("#session-energy-management")
    await expect(why).to_contain_text("Why is it limited?")
    await expect(why).to_contain_text("Binding node")
    assert page.errors == []

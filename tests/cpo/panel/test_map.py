"""The map of sites: each site's state is the worst of its stations', the page lists every site
beside the map (those without coordinates with a note), and it works with no tile server."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.test import Client
from django.urls import reverse
from playwright.async_api import expect

from cpo.settings import _tile_origin
from stations import selectors
from stations.models import ChargingStation, Connector, Evse, Location
from tests.cpo.panel.conftest import login, make_staff


def make_site(name: str, *, position: bool = True) -> Location:
    return Location.objects.create(
        name=name,
        city="Utrecht",
        latitude=Decimal("52.090737") if position else None,
        longitude=Decimal("5.121420") if position else None,
    )


def make_station(
    identity: str, site: Location, *statuses: str, online: bool = True
) -> ChargingStation:
    station = ChargingStation.objects.create(identity=identity, location=site, is_online=online)
    for number, status in enumerate(statuses, start=1):
        evse = Evse.objects.create(station=station, evse_id=number, uid=f"{identity}-{number}")
        Connector.objects.create(station=station, evse=evse, connector_id=1, status=status)
    return station


def network() -> dict[str, Location]:
    """One site per state, with coordinates spread out, and one site without coordinates."""
    sites = {}
    layout: dict[str, list[tuple[str, tuple[str, ...], bool]]] = {
        "All available": [("MAP-A1", ("Available", "Available"), True)],
        "One charging": [
            ("MAP-C1", ("Available",), True),
            ("MAP-C2", ("Charging", "Available"), True),
        ],
        "One faulted": [
            ("MAP-F1", ("Charging",), True),
            ("MAP-F2", ("Faulted", "Available"), True),
        ],
        "One offline": [
            ("MAP-O1", ("Faulted",), True),
            ("MAP-O2", ("Available",), False),
        ],
        "Switched off": [("MAP-U1", ("Unavailable", "Unavailable"), True)],
    }
    for index, (name, stations) in enumerate(layout.items()):
        site = make_site(name)
        Location.objects.filter(pk=site.pk).update(
            latitude=Decimal("52.0") + Decimal(index) / 10, longitude=Decimal("5.0")
        )
        for identity, statuses, online in stations:
            make_station(identity, site, *statuses, online=online)
        sites[name] = site
    sites["Nowhere"] = make_site("Nowhere", position=False)
    make_station("MAP-N1", sites["Nowhere"], "Available")
    sites["Empty"] = make_site("Empty", position=False)
    Location.objects.filter(pk=sites["Empty"].pk).update(latitude=Decimal("51.5"))
    return sites


@pytest.mark.django_db
def test_each_site_shows_the_worst_state_of_its_stations(django_assert_max_num_queries) -> None:
    network()
    with django_assert_max_num_queries(3):
        data = selectors.sites_map()
    by_name = {site["name"]: site for site in data["sites"]}
    assert {name: site["status"] for name, site in by_name.items()} == {
        "All available": "available",
        "One charging": "charging",
        "One faulted": "faulted",
        "One offline": "offline",
        "Switched off": "unavailable",
        "Nowhere": "available",
        "Empty": "empty",
    }
    assert by_name["One faulted"]["counts"]["faulted"] == 1
    assert by_name["One faulted"]["counts"]["charging"] == 1
    offline = {s["identity"]: s for s in by_name["One offline"]["stations"]}
    # A connector of an offline station is not what it last reported.
    assert offline["MAP-O2"]["connectors"] == [{"label": "1/1", "status": "Offline"}]
    assert offline["MAP-O1"]["url"].endswith(
        f"/{ChargingStation.objects.get(identity='MAP-O1').pk}/change/"
    )
    assert by_name["Nowhere"]["has_position"] is False
    # Only a latitude is no position either.
    assert by_name["Empty"]["has_position"] is False
    assert data["on_map"] == 5


def test_the_tile_server_is_the_only_image_origin_the_policy_adds() -> None:
    assert _tile_origin("https://tile.openstreetmap.org/{z}/{x}/{y}.png") == (
        "https://tile.openstreetmap.org"
    )
    assert _tile_origin("https://{s}.tiles.example.com/{z}/{x}/{y}.png") == (
        "https://*.tiles.example.com"
    )
    assert _tile_origin("") == ""


@pytest.mark.django_db
def test_the_page_lists_every_site_and_notes_those_without_coordinates(roles, settings) -> None:
    settings.MAP_TILE_URL = "https://tiles.example.net/{z}/{x}/{y}.png"
    network()
    client = Client()
    client.force_login(make_staff("map-support", "Support"))
    response = client.get(reverse("panel:map"))
    assert response.status_code == 200
    page = response.content.decode()
    assert page.count('class="site-row"') == 7
    assert "Not on the map: this site has no coordinates." in page
    assert "https://tiles.example.net/{z}/{x}/{y}.png" in page
    config = response.context["map_config"]
    assert sorted(site["name"] for site in config["sites"]) == [
        "All available",
        "One charging",
        "One faulted",
        "One offline",
        "Switched off",
    ]


@pytest.mark.django_db
def test_staff_without_the_network_may_not_see_the_map(roles) -> None:
    client = Client()
    client.force_login(make_staff("map-nobody", None))
    assert client.get(reverse("panel:map")).status_code == 403


@pytest.mark.django_db(transaction=True)
@pytest.mark.live
@pytest.mark.browser
async def test_markers_and_popups_with_no_network_for_tiles(
    daphne_server, roles, browser_page
) -> None:
    await sync_to_async(network)()
    await sync_to_async(make_staff)("map-operator", "Operators")
    page: Any = browser_page
    # No network but the back office itself: the tile server is out of reach, as in CI.
    blocked: list[str] = []

    async def only_loopback(route: Any) -> None:
        if route.request.url.startswith(daphne_server.http_url):
            await route.continue_()
        else:
            blocked.append(route.request.url)
            await route.abort()

    await page.route("**/*", only_loopback)
    await login(page, daphne_server.http_url, "map-operator")
    await page.click("#quick-links a:has-text('Map of sites')")
    await page.wait_for_url(f"{daphne_server.http_url}/admin/panel/map/")

    markers = page.locator("path.site-marker")
    await expect(markers).to_have_count(5)
    await expect(page.locator("path.site-marker-faulted")).to_have_count(1)
    await expect(page.locator("path.site-marker-offline")).to_have_count(1)
    await expect(page.locator("#sites-list > li.site-row")).to_have_count(7)
    nowhere = page.locator("#sites-list > li.site-row", has_text="Nowhere")
    await expect(nowhere).to_contain_text("no coordinates")
    assert any("tile.openstreetmap.org" in url for url in blocked), blocked

    faulted = await sync_to_async(Location.objects.get)(name="One faulted")
    await page.locator(f'path.site-marker[data-site="{faulted.pk}"]').click()
    popup = page.locator(".leaflet-popup-content .site-popup")
    await expect(popup).to_be_visible()
    await expect(popup).to_contain_text("One faulted")
    await expect(popup.locator("a.popup-station")).to_have_text(["MAP-F1", "MAP-F2"])
    await popup.locator("a.popup-station", has_text="MAP-F2").click()
    station = await sync_to_async(ChargingStation.objects.get)(identity="MAP-F2")
    await page.wait_for_url(f"**/admin/stations/chargingstation/{station.pk}/change/")
    assert page.errors == []

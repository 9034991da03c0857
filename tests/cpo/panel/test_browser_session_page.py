"""The session page and the station page in a real browser, with a session a real OCPP 1.6
client charged over the websocket of a real daphne: the power and energy curve, the cost
breakdown of its CDR, times in the site's zone, remote stop and credit; and the dashboard,
station page and session page at a phone's width."""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from ocpp.v16 import call
from playwright.async_api import expect

from tests.cpo.panel.conftest import login, make_staff
from tests.cpo.panel.test_browser_station_commands import (
    TAG,
    boot,
    demo,
    frames_received,
    session_of,
    wait_for_frames,
    wait_for_session,
)
from tests.ocpp_client import station

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.live,
    pytest.mark.browser,
]


def at(minutes_ago: float) -> str:
    moment = timezone.now() - dt.timedelta(minutes=minutes_ago)
    return moment.isoformat().replace("+00:00", "Z")


async def charge_with_samples(cp: Any) -> int:
    """A 1.6 transaction that started 40 minutes ago, with power and energy samples since."""
    started = await cp.cp.call(
        call.StartTransaction(connector_id=1, id_tag=TAG, meter_start=1000, timestamp=at(40))
    )
    assert started.id_tag_info["status"] == "Accepted"
    tx = started.transaction_id
    await cp.cp.call(
        call.StatusNotification(
            connector_id=1, error_code="NoError", status="Charging", timestamp=at(40)
        )
    )
    for minutes_ago, wh, watts in ((30, 2200, 7200), (20, 3400, 7300), (10, 4600, 7100)):
        await cp.cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=tx,
                meter_value=[
                    {
                        "timestamp": at(minutes_ago),
                        "sampledValue": [
                            {
                                "value": str(wh),
                                "measurand": "Energy.Active.Import.Register",
                                "unit": "Wh",
                            },
                            {"value": str(watts), "measurand": "Power.Active.Import", "unit": "W"},
                        ],
                    }
                ],
            )
        )
    return tx


async def chart_points(page: Any) -> list[int]:
    """How many points each dataset of the session chart has, once it is drawn."""
    await page.wait_for_function(
        "() => { const c = window.Chart.getChart(document.getElementById('chart-session'));"
        " return !!c && c.data.datasets.every((d) => d.data.length > 0); }",
        timeout=20_000,
    )
    return await page.evaluate(
        "() => window.Chart.getChart(document.getElementById('chart-session'))"
        ".data.datasets.map((d) => d.data.length)"
    )


@sync_to_async
def rate(session_id: int) -> Any:
    from billing import services

    return services.cdr_create_for_session(session_id=session_id)


@sync_to_async
def credits_of(cdr_id: int) -> list[Any]:
    from billing.models import Cdr

    return list(Cdr.objects.filter(credit_of_id=cdr_id))


async def test_session_page_curve_cost_time_zone_stop_and_credit(
    daphne_server, roles, browser_page
) -> None:
    data = await demo()
    spec = data["stations"]["ocpp1.6"]
    identity = spec["identity"]
    await sync_to_async(make_staff)("session-finance", "Finance")
    page = browser_page
    page.on("dialog", lambda dialog: asyncio.ensure_future(dialog.accept()))
    command_posts: list[str] = []
    page.on(
        "request",
        lambda request: (
            command_posts.append(request.url)
            if request.method == "POST" and request.url.endswith("/command")
            else None
        ),
    )
    await login(page, daphne_server.http_url, *data["login"])

    async with station(
        daphne_server.ws_url, identity, protocol="ocpp1.6", password=spec["password"]
    ) as cp:
        await boot(cp, spec["evses"])
        tx = await charge_with_samples(cp)
        # A fault on the other connector, with everything the station said about it.
        await cp.cp.call(
            call.StatusNotification(
                connector_id=2,
                error_code="GroundFailure",
                status="Faulted",
                info="RCD tripped",
                vendor_id="ACME",
                vendor_error_code="E-4711",
                timestamp=at(0),
            )
        )
        running = await wait_for_session(identity, ended=False)

        # The station page: zone named, last seen relative, the fault in full, the live cost.
        await page.goto(
            f"{daphne_server.http_url}/admin/stations/chargingstation/{data['pks'][identity]}/change/"
        )
        await expect(page.locator("#panel-time-zone")).to_contain_text("(Europe/Amsterdam)")
        await expect(page.locator("#station-last-seen time")).to_have_text("just now")
        title = await page.locator("#station-last-seen time").get_attribute("title")
        assert title is not None
        assert title.endswith("(Europe/Amsterdam)"), title
        faulted = page.locator("#station-connectors tbody tr[data-connector='2/1']")
        await expect(faulted).to_contain_text("Faulted")
        await expect(faulted.locator(".fault-code")).to_have_text("GroundFailure")
        await expect(faulted.locator(".fault-info")).to_have_text("RCD tripped")
        await expect(faulted.locator(".fault-vendor")).to_contain_text("E-4711")
        charging = page.locator("#station-connectors tbody tr[data-connector='1/1']")
        await expect(charging.locator(".live-session")).to_contain_text("3.600 kWh")
        await expect(charging.locator(".live-cost")).to_contain_text("EUR")
        await charging.locator(".live-session a").click()

        # The session page of the running session: its curve, its zone, its stop button.
        await page.wait_for_url(f"**/admin/charging/chargingsession/{running.pk}/change/")
        # Power: one point per sample; energy: the start reading (0 kWh) and each sample.
        assert await chart_points(page) == [3, 4]
        await expect(page.locator("#session-time-zone")).to_contain_text("Europe/Amsterdam")
        await expect(page.locator("#session-ended time[data-relative]")).to_have_text("40 min ago")
        await expect(page.locator("#session-cost")).to_contain_text("EUR")
        assert await page.locator("#session-credit-form").count() == 0
        posts_before = len(command_posts)
        await page.click("button[data-command=session-remote-stop]")
        await expect(page.locator("#command-flash")).to_contain_text("RemoteStopTransaction queued")
        await wait_for_frames(cp, "RemoteStopTransaction", 1)
        await asyncio.sleep(1.5)  # time for a second command, were one sent
        assert len(command_posts) - posts_before == 1
        assert frames_received(cp, "RemoteStopTransaction") == [{"transactionId": tx}]

        await cp.cp.call(
            call.StopTransaction(
                transaction_id=tx, meter_stop=4800, timestamp=at(0), reason="Remote"
            )
        )
        ended = await wait_for_session(identity, ended=True)
        assert ended.pk == running.pk

    cdr = await rate(ended.pk)
    assert cdr is not None
    assert cdr.currency == "EUR"
    session_url = f"{daphne_server.http_url}/admin/charging/chargingsession/{ended.pk}/change/"

    # The Operator reads the breakdown, and is offered no credit.
    await page.goto(session_url)
    energy = page.locator("#cost-dimensions tr[data-dimension=ENERGY]")
    await expect(energy).to_contain_text("3.800 kWh")
    await expect(energy).to_contain_text(" EUR")
    await expect(page.locator("#cost-total")).to_have_text(f"{cdr.total_cost_incl_vat:.2f} EUR")
    await expect(page.locator("#session-tariff")).to_contain_text("EUR/kWh")
    assert await page.locator("#session-credit-form").count() == 0
    assert await page.locator("button[data-command=session-remote-stop]").count() == 0

    # Finance credits it from the same page.
    await page.context.clear_cookies()
    await login(page, daphne_server.http_url, "session-finance")
    await page.goto(session_url)
    await expect(page.locator("#cost-dimensions")).to_contain_text("EUR")
    await page.fill("#session-credit-form input[name=reason]", "driver charged twice")
    await page.click("#session-credit-form button[data-action=credit]")
    await expect(page.locator(".messagelist")).to_contain_text(f"CDR {cdr.uid} credited")
    [credit] = await credits_of(cdr.pk)
    assert credit.credit_reason == "driver charged twice"
    await expect(page.locator("#session-cdrs")).to_contain_text("credit")
    assert await page.locator("#session-credit-form").count() == 0
    assert await session_of(identity) is not None
    assert page.errors == []


async def test_dashboard_station_and_session_pages_fit_a_phone(
    daphne_server, roles, browser_page
) -> None:
    """390 px wide: the page body never scrolls sideways; wide tables scroll in their card."""
    from cpo.demo import demo_history_load

    data = await demo()
    await sync_to_async(demo_history_load)()
    identity = data["stations"]["ocpp1.6"]["identity"]

    @sync_to_async
    def rated_session() -> int:
        from billing import services
        from sessions.models import ChargingSession

        session = (
            ChargingSession.objects.filter(station__identity=identity, status="completed")
            .order_by("-started_at")
            .first()
        )
        services.cdr_create_for_session(session_id=session.pk)
        return session.pk

    session_pk = await rated_session()
    page = browser_page
    await page.set_viewport_size({"width": 390, "height": 844})
    await login(page, daphne_server.http_url, *data["login"])
    pages = {
        "dashboard": "/admin/",
        "station": f"/admin/stations/chargingstation/{data['pks'][identity]}/change/",
        "session": f"/admin/charging/chargingsession/{session_pk}/change/",
    }
    widths = {}
    for name, path in pages.items():
        await page.goto(f"{daphne_server.http_url}{path}")
        await page.wait_for_load_state("networkidle")
        # Everything folded open too: an open section must fit as well.
        await page.evaluate(
            "() => document.querySelectorAll('details').forEach((d) => d.open = true)"
        )
        await page.wait_for_timeout(300)
        widths[name] = await page.evaluate("() => document.documentElement.scrollWidth")
    assert all(width <= 390 for width in widths.values()), widths
    # The session page's cost table is there at this width, scrolling in its own box.
    await expect(page.locator("#cost-dimensions")).to_be_visible()
    assert page.errors == []

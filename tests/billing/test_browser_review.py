"""Finance's review queue in a real browser: the decisions are clicked, and their effect is
checked in the database."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from playwright.async_api import expect

from tests.cpo.panel.conftest import browser_page, login, make_staff  # noqa: F401 - fixture

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.live,
    pytest.mark.browser,
]


@sync_to_async
def _queue() -> tuple[int, int, int]:
    """Two ended sessions that no tariff applied to; rated once, so they are in the queue."""
    from billing import services
    from tariffs.models import SessionTariff
    from tests.billing.conftest import (
        make_account,
        make_ended_session,
        make_site,
        make_tariff,
        make_token,
    )

    station = make_site("REVIEW-1")
    token = make_token(make_account("Walk-in"))
    start = timezone.now() - dt.timedelta(days=2)
    ids = []
    for offset in (0, 2):
        session = make_ended_session(
            station, token, make_tariff(), start=start + dt.timedelta(hours=offset)
        )
        SessionTariff.objects.filter(session=session).delete()
        services.cdr_create_for_session(session_id=session.pk)
        ids.append(session.pk)
    found = make_tariff(energy="0.45", tariff_id="FOUND-LATER")
    return ids[0], ids[1], found.pk


async def _choose(page, session_id: int, action: str) -> None:
    await page.check(f"input[name=_selected_action][value='{session_id}']")
    await page.select_option("select[name=action]", action)
    await page.click("button[name=index]")


async def test_finance_assigns_a_tariff_and_writes_off_from_the_queue(
    daphne_server,
    roles,
    browser_page,  # noqa: F811
) -> None:
    to_price, to_drop, tariff_pk = await _queue()
    await sync_to_async(make_staff)("finance-q", "Finance")
    page = browser_page
    await login(page, daphne_server.http_url, "finance-q")
    await page.click("text=Sessions to review")
    rows = page.locator("#result_list tbody tr")
    await expect(rows).to_have_count(2)
    await expect(rows.first).to_contain_text("No tariff")

    await _choose(page, to_price, "assign_tariff_and_rate")
    await page.select_option("select[name=tariff]", value=str(tariff_pk))
    await page.click("input[type=submit][value='Assign a tariff and rate']")
    await expect(page.locator(".messagelist")).to_contain_text(
        "Assign a tariff and rate: 1 session(s)"
    )
    await expect(rows).to_have_count(1)

    await _choose(page, to_drop, "write_off")
    await page.fill("input[name=reason]", "test charge by the installer")
    await page.click("input[type=submit][value='Write off']")
    await expect(page.locator(".messagelist")).to_contain_text("Write off: 1 session(s)")
    await expect(page.locator("#result_list")).to_have_count(0)

    @sync_to_async
    def outcome() -> tuple[object, ...]:
        from billing.models import Cdr
        from sessions.models import ChargingSession

        priced = ChargingSession.objects.get(pk=to_price)
        dropped = ChargingSession.objects.get(pk=to_drop)
        cdr = Cdr.objects.get(session=priced)
        return (
            priced.rating_status,
            cdr.total_cost_excl_vat,
            dropped.rating_status,
            dropped.rating_note,
            Cdr.objects.filter(session=dropped).exists(),
        )

    assert await outcome() == (
        "rated",
        Decimal("4.50"),  # 10 kWh x 0.45 of the tariff finance chose
        "written_off",
        "finance-q: test charge by the installer",
        False,
    )
    assert page.errors == []

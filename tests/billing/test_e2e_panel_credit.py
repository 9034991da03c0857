"""Finance credits one line of an issued invoice in a real browser (headless chromium against
the real daphne server): the Credit… button, the form, the credit note it issues."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from asgiref.sync import sync_to_async
from playwright.async_api import expect

from tests.cpo.panel.conftest import browser_page, login, make_staff  # noqa: F401 - fixture

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.live,
    pytest.mark.browser,
]


@sync_to_async
def issued_invoice() -> tuple[int, int, int]:
    from billing import services
    from billing.models import Invoice
    from tests.billing.conftest import make_account, make_cdr, make_site

    site = make_site("PANEL-CREDIT-1")
    account = make_account("Credit fleet")
    january = dt.datetime(2025, 1, 10, 12, tzinfo=dt.UTC)
    for i, excl in enumerate(("10.00", "20.00")):
        make_cdr(account, site, end=january + dt.timedelta(hours=i), excl=excl)
    after = dt.datetime(2025, 2, 1, 1, tzinfo=dt.UTC)
    services.billing_periods_close_due(now=after)
    invoice = services.invoice_issue(invoice_id=Invoice.objects.get().pk, now=after)
    lines = list(invoice.lines.order_by("position").values_list("pk", flat=True))
    return invoice.pk, lines[0], lines[1]


@sync_to_async
def credit_notes(invoice_id: int) -> list[tuple[str | None, str, Decimal, list[int]]]:
    from billing.models import Invoice

    return [
        (
            note.number,
            note.reason,
            note.total_incl_vat,
            [line.cdr.credit_of.invoice_line.pk for line in note.lines.all()],
        )
        for note in Invoice.objects.filter(credit_of_id=invoice_id)
    ]


async def test_finance_credits_one_line_from_the_invoice_page(
    daphne_server,
    roles,
    browser_page,  # noqa: F811
) -> None:
    page = browser_page
    invoice_id, first_line, second_line = await issued_invoice()
    await sync_to_async(make_staff)("finance-credit", "Finance")
    await login(page, daphne_server.http_url, "finance-credit")
    await page.goto(f"{daphne_server.http_url}/admin/billing/invoice/{invoice_id}/change/")

    await page.click("#credit-invoice")
    await expect(page.locator("#credit-form")).to_be_visible()
    await page.fill("input[name=reason]", "Connector 2 was faulty")
    await page.check("input[name=mode][value=lines]")
    await page.check(f"input[name=lines][value='{second_line}']")
    await page.click("#credit-form input[type=submit]")

    await expect(page.locator("ul.messagelist")).to_contain_text("Credit note CN-")
    await expect(page.locator("ul.messagelist")).to_contain_text("EUR -24.20 incl. VAT")
    await expect(page.locator("#content")).to_contain_text("Connector 2 was faulty")
    [(number, reason, total, credited)] = await credit_notes(invoice_id)
    assert number.startswith("CN-")
    assert (reason, total, credited) == ("Connector 2 was faulty", Decimal("-24.20"), [second_line])
    assert first_line not in credited
    assert page.errors == []

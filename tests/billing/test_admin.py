"""The credit page of an invoice in the panel (Django's test client; the browser test clicks
the same page in test_e2e_panel_credit.py)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from billing import services
from billing.models import Cdr, Invoice
from tests.billing.conftest import make_account, make_cdr, staff

D = Decimal
UTC = dt.UTC
JAN = dt.datetime(2025, 1, 10, 9, 0, tzinfo=UTC)
AFTER_JAN = dt.datetime(2025, 2, 1, 1, 0, tzinfo=UTC)


def _issued(station) -> Invoice:
    account = make_account("Fleet")
    for i, excl in enumerate(("10.00", "20.00")):
        make_cdr(account, station, end=JAN + dt.timedelta(hours=i), excl=excl)
    services.billing_periods_close_due(now=AFTER_JAN)
    return services.invoice_issue(invoice_id=Invoice.objects.get().pk, now=AFTER_JAN)


def test_finance_credits_lines_or_an_amount_from_the_invoice_page(client, station, roles) -> None:
    invoice = _issued(station)
    client.force_login(staff("finance", "Finance"))
    page = client.get(f"/admin/billing/invoice/{invoice.pk}/change/")
    assert b'id="credit-invoice"' in page.content
    url = f"/admin/billing/invoice/{invoice.pk}/credit/"
    form = client.get(url)
    assert form.status_code == 200
    assert b"#1 " in form.content
    assert b"#2 " in form.content

    # A reason is required; lines must be chosen.
    refused = client.post(url, {"mode": "lines"})
    assert refused.status_code == 200
    assert b"This field is required" in refused.content
    second = invoice.lines.get(position=2)
    done = client.post(url, {"mode": "lines", "lines": [second.pk], "reason": "broken cable"})
    note = Invoice.objects.get(credit_of=invoice)
    assert done.status_code == 302
    assert done["Location"] == f"/admin/billing/invoice/{note.pk}/change/"
    assert (note.reason, note.total_incl_vat, note.issued_by.username) == (
        "broken cable",
        D("-24.20"),
        "finance",
    )
    assert Cdr.objects.get(credit_of=second.cdr).credit_reason == "broken cable"
    # The credited line is no longer offered; an amount beyond what is left is refused.
    assert b"#2 " not in client.get(url).content
    too_much = client.post(
        url, {"mode": "amount", "amount_excl_vat": "10.01", "vat_rate": "21", "reason": "x"}
    )
    assert b"has 10.00 left to credit" in too_much.content
    client.post(url, {"mode": "amount", "amount_excl_vat": "4", "vat_rate": "21", "reason": "y"})
    assert invoice.credit_notes.count() == 2
    assert invoice.credit_notes.order_by("pk").last().total_incl_vat == D("-4.84")


def test_only_finance_may_credit(client, station, roles) -> None:
    invoice = _issued(station)
    for role in ("Operators", "Support"):
        client.force_login(staff(role.lower(), role))
        page = client.get(f"/admin/billing/invoice/{invoice.pk}/change/")
        assert b'id="credit-invoice"' not in page.content
        url = f"/admin/billing/invoice/{invoice.pk}/credit/"
        assert client.get(url).status_code == 403
        assert client.post(url, {"mode": "all", "reason": "no"}).status_code == 403
    assert not invoice.credit_notes.exists()

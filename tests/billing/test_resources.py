"""Finance exports through the panel: CSV and XLSX, exact to the cent; permissions per role."""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal
from typing import Any

import openpyxl
import pytest

from billing import services
from billing.models import Invoice
from tests.billing.conftest import make_account, make_cdr, staff

D = Decimal
UTC = dt.UTC
JAN = dt.datetime(2025, 1, 10, 9, 30, tzinfo=UTC)
AFTER_JAN = dt.datetime(2025, 2, 1, 1, 0, tzinfo=UTC)

# Amounts whose VAT rounds up and down, and several rates: summing rounded lines must still
# give the issued totals to the cent.
AMOUNTS = [
    ("10.05", "21"),
    ("0.33", "21"),
    ("7.77", "9"),
    ("1234.56", "21"),
    ("0.01", "21"),
    ("3.30", None),
    ("19.99", "19"),
]


@pytest.fixture
def issued(station, roles) -> list[Invoice]:  # noqa: ARG001
    for n in range(3):
        account = make_account(f"Account {n}")
        for i, (excl, rate) in enumerate(AMOUNTS[n:]):
            make_cdr(account, station, end=JAN + dt.timedelta(hours=i), excl=excl, vat_rate=rate)
    # Another month, not in the export of January.
    make_cdr(
        make_account("February"), station, end=dt.datetime(2025, 2, 3, tzinfo=UTC), excl="99.00"
    )
    services.billing_periods_close_due(now=AFTER_JAN)
    services.billing_periods_close_due(now=dt.datetime(2025, 3, 1, 1, tzinfo=UTC))
    for invoice in Invoice.objects.order_by("pk"):
        services.invoice_issue(invoice_id=invoice.pk, now=AFTER_JAN)
    # January in the accounts' zone (the seller's: Europe/Amsterdam).
    return [i for i in Invoice.objects.order_by("pk") if i.period_local_dates[0].month == 1]


def _export(client, model: str, query: str, fmt: str = "0"):
    return client.post(f"/admin/billing/{model}/export/?{query}", {"format": fmt, "resource": "0"})


def _rows(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.content[:500]
    assert "attachment" in response["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_finance_exports_invoice_lines_that_sum_to_the_issued_totals(client, issued) -> None:
    client.force_login(staff("finance", "Finance"))
    changelist = client.get("/admin/billing/invoiceline/")
    assert b"/admin/billing/invoiceline/export/" in changelist.content

    exported = _rows(_export(client, "invoiceline", "period_month=2025-01"))
    # One row per line, then a totals row (one currency here).
    *rows, totals = exported
    assert {r["row_type"] for r in rows} == {"line"}
    assert (totals["row_type"], totals["currency"], totals["invoice_number"]) == (
        "total",
        "EUR",
        "",
    )
    assert len(rows) == sum(len(AMOUNTS[n:]) for n in range(3))
    for column in ("amount_excl_vat", "vat_amount", "amount_incl_vat"):
        total = sum((D(r[column]) for r in rows), D(0))
        assert D(totals[column]) == total
        field = {
            "amount_excl_vat": "total_excl_vat",
            "vat_amount": "total_vat",
            "amount_incl_vat": "total_incl_vat",
        }[column]
        assert total == sum((getattr(i, field) for i in issued), D(0))
    assert {r["currency"] for r in rows} == {"EUR"}
    first = rows[0]
    # ISO dates, a decimal point, no grouping, two decimals for money.
    assert dt.datetime.fromisoformat(first["session_start"]).utcoffset() == dt.timedelta(0)
    assert dt.date.fromisoformat(first["issue_date"]) == AFTER_JAN.date()
    big = next(r for r in rows if r["amount_excl_vat"] == "1234.56")
    assert big["vat_amount"] == "259.26"
    assert big["amount_incl_vat"] == "1493.82"
    assert all(r["invoice_number"].startswith("INV-2025-") for r in rows)

    invoices = _rows(_export(client, "invoice", "period_month=2025-01&status__exact=issued"))
    assert sorted(r["number"] for r in invoices) == sorted(i.number for i in issued)
    assert sum((D(r["total_incl_vat"]) for r in invoices), D(0)) == sum(
        (i.total_incl_vat for i in issued), D(0)
    )
    assert invoices[0]["account_vat_id"].startswith("NL")

    cdrs = _rows(_export(client, "cdr", "end__month=1&end__year=2025"))
    assert sum((D(r["total_incl_vat"]) for r in cdrs), D(0)) == sum(
        (i.total_incl_vat for i in issued), D(0)
    )
    assert all(r["invoice_number"] for r in cdrs)


def test_xlsx_export_keeps_numbers_numeric(client, issued) -> None:
    client.force_login(staff("finance", "Finance"))
    response = _export(client, "invoice", "period_month=2025-01", fmt="1")
    assert response.status_code == 200
    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
    assert sheet is not None
    header, *rows = list(sheet.values)
    totals: list[Any] = [row[header.index("total_incl_vat")] for row in rows]
    assert all(isinstance(t, int | float) for t in totals)
    assert round(sum(totals), 2) == float(sum((i.total_incl_vat for i in issued), D(0)))
    assert {row[header.index("currency")] for row in rows} == {"EUR"}


@pytest.mark.parametrize("role", ["Operators", "Support"])
def test_operators_and_support_cannot_export_issue_or_credit(client, issued, role) -> None:
    client.force_login(staff("someone", role))
    changelist = client.get("/admin/billing/invoice/")
    assert changelist.status_code == 200  # they read
    assert b"/admin/billing/invoice/export/" not in changelist.content
    assert b"issue_selected" not in changelist.content
    assert b"credit_selected" not in changelist.content
    for model in ("invoice", "invoiceline", "cdr"):
        assert _export(client, model, "").status_code == 403
        assert client.get(f"/admin/billing/{model}/export/").status_code == 403
    invoice = issued[0]
    response = client.post(
        "/admin/billing/invoice/",
        {
            "action": "credit_selected",
            "_selected_action": [invoice.pk],
        },
    )
    assert not Invoice.objects.filter(credit_of=invoice).exists()
    assert response.status_code in (200, 302)


def test_finance_credits_from_the_panel(client, issued) -> None:
    client.force_login(staff("finance", "Finance"))
    invoice = issued[0]
    selected = {"action": "credit_selected", "_selected_action": [invoice.pk]}
    # A credit note needs a reason: the action asks for it first.
    prompt = client.post("/admin/billing/invoice/", selected)
    assert prompt.status_code == 200
    assert b'name="reason"' in prompt.content
    assert not Invoice.objects.filter(credit_of=invoice).exists()
    response = client.post(
        "/admin/billing/invoice/", {**selected, "apply": "1", "reason": "duplicate billing"}
    )
    assert response.status_code == 302
    note = Invoice.objects.get(credit_of=invoice)
    assert note.reason == "duplicate billing"
    assert note.is_issued
    assert note.total_incl_vat == -invoice.total_incl_vat
    assert note.issued_by is not None
    assert note.issued_by.username == "finance"


def test_finance_issues_drafts_from_the_panel(client, station, roles) -> None:  # noqa: ARG001
    make_cdr(make_account("Fleet"), station, end=JAN, excl="5.00")
    services.billing_periods_close_due(now=AFTER_JAN)
    draft = Invoice.objects.get()
    client.force_login(staff("operator", "Operators"))
    client.post(
        "/admin/billing/invoice/", {"action": "issue_selected", "_selected_action": [draft.pk]}
    )
    draft.refresh_from_db()
    assert draft.status == Invoice.Status.DRAFT
    client.force_login(staff("finance", "Finance"))
    response = client.post(
        "/admin/billing/invoice/", {"action": "issue_selected", "_selected_action": [draft.pk]}
    )
    assert response.status_code == 302
    draft.refresh_from_db()
    assert draft.status == Invoice.Status.ISSUED
    assert draft.number is not None


def test_xlsx_has_typed_dates_money_formats_and_named_sheets(client, issued) -> None:
    client.force_login(staff("finance", "Finance"))
    names = {"invoice": "Invoices", "invoiceline": "Invoice lines", "cdr": "CDRs"}
    for model, title in names.items():
        response = _export(client, model, "", fmt="1")
        assert response.status_code == 200
        sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
        assert sheet.title == title

    response = _export(client, "invoiceline", "period_month=2025-01", fmt="1")
    sheet = openpyxl.load_workbook(io.BytesIO(response.content)).active
    header = [c.value for c in sheet[1]]
    first = {h: c for h, c in zip(header, sheet[2], strict=True)}
    # Real date-times and dates, not text.
    assert isinstance(first["session_start"].value, dt.datetime)
    assert first["session_start"].value.date() == JAN.date()  # UTC
    # The local time of the site (Amsterdam, UTC+1 in January), its zone beside it.
    local = first["session_start_local"].value
    assert local - first["session_start"].value == dt.timedelta(hours=1)
    assert first["site_time_zone"].value == "Europe/Amsterdam"
    assert isinstance(first["issue_date"].value, dt.datetime)  # how openpyxl reads a date
    assert first["issue_date"].number_format == "yyyy-mm-dd"
    assert first["issue_date"].value.date() == AFTER_JAN.date()
    assert first["session_start"].number_format == "yyyy-mm-dd hh:mm:ss"
    # Money as numbers with a money format; the totals row sums them.
    for column in ("amount_excl_vat", "vat_amount", "amount_incl_vat"):
        assert isinstance(first[column].value, int | float)
        assert first[column].number_format == "#,##0.00"
    last = {h: c.value for h, c in zip(header, sheet[sheet.max_row], strict=True)}
    assert (last["row_type"], last["currency"]) == ("total", "EUR")
    lines = len([row for row in sheet.iter_rows(min_row=2, values_only=True) if row[0] == "line"])
    assert lines == sum(len(AMOUNTS[n:]) for n in range(3))
    assert round(last["amount_incl_vat"], 2) == float(sum((i.total_incl_vat for i in issued), D(0)))


def test_text_that_looks_like_a_formula_is_escaped(client, station, roles) -> None:
    account = make_account('=HYPERLINK("http://evil.example","click")')
    make_cdr(account, station, end=JAN, excl="2.00")
    services.billing_periods_close_due(now=AFTER_JAN)
    invoice = services.invoice_issue(invoice_id=Invoice.objects.get().pk, now=AFTER_JAN)
    services.invoice_credit(invoice_id=invoice.pk, reason="@SUM(1+1)", now=AFTER_JAN)
    client.force_login(staff("finance", "Finance"))

    rows = _rows(_export(client, "invoice", ""))
    by_kind = {r["kind"]: r for r in rows}
    assert by_kind["invoice"]["account"] == "'" + account.legal_name
    assert by_kind["credit_note"]["reason"] == "'@SUM(1+1)"
    # Numbers stay numbers, negative ones too.
    assert by_kind["credit_note"]["total_incl_vat"] == "-2.42"
    assert by_kind["invoice"]["total_incl_vat"] == "2.42"

    sheet = openpyxl.load_workbook(
        io.BytesIO(_export(client, "invoice", "", fmt="1").content)
    ).active
    header = [c.value for c in sheet[1]]
    cells = [dict(zip(header, row, strict=True)) for row in sheet.iter_rows(min_row=2)]
    account_cell = next(row["account"] for row in cells if row["kind"].value == "invoice")
    assert account_cell.data_type == "s"  # text, not a formula
    assert account_cell.value.startswith("=HYPERLINK")
    total = next(row["total_incl_vat"] for row in cells if row["kind"].value == "credit_note")
    assert total.value == -2.42

"""/api/v1/ of billing: CDRs, invoices and their PDF, read by every role."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from billing import services as billing
from billing.models import Invoice
from tests.apiv1 import bearer, errors, staff, walk
from tests.billing.conftest import make_account, make_cdr, make_site, pdf_text

pytestmark = pytest.mark.django_db

UTC = dt.UTC


@pytest.fixture
def books(roles: None) -> dict[str, Any]:  # noqa: ARG001
    first, second = make_account("Fleet One"), make_account("Fleet Two")
    site = make_site("BILL-API-1")
    cdrs = [
        make_cdr(first, site, end=dt.datetime(2025, 1, 10, tzinfo=UTC), excl="9.00"),
        make_cdr(first, site, end=dt.datetime(2025, 1, 20, tzinfo=UTC), excl="4.50"),
        make_cdr(second, site, end=dt.datetime(2025, 1, 21, tzinfo=UTC), excl="3.00"),
    ]
    after = dt.datetime(2025, 2, 1, 1, tzinfo=UTC)
    billing.billing_periods_close_due(now=after)
    issued = Invoice.objects.get(account=first)
    billing.invoice_issue(invoice_id=issued.pk, now=after)
    issued.refresh_from_db()
    return {"first": first, "second": second, "cdrs": cdrs, "issued": issued}


@pytest.mark.parametrize("role", ["Operators", "Finance", "Support"])
def test_every_role_reads_cdrs_and_invoices(books: dict[str, Any], role: str) -> None:
    client = bearer(staff(f"user-{role}", role))
    cdrs = walk(client, "/api/v1/cdrs/", page_size=2)
    assert [row["id"] for row in cdrs] == [c.pk for c in reversed(books["cdrs"])]
    invoices = walk(client, "/api/v1/invoices/")
    assert {row["account"] for row in invoices} == {books["first"].pk, books["second"].pk}


def test_cdrs_filter_and_detail(books: dict[str, Any]) -> None:
    client = bearer(staff("finn", "Finance"))
    first = walk(client, "/api/v1/cdrs/", account=books["first"].pk)
    assert [row["total_cost_excl_vat"] for row in first] == ["4.5000", "9.0000"]
    late = walk(client, "/api/v1/cdrs/", ended_after="2025-01-15T00:00:00Z", ordering="end")
    assert [row["id"] for row in late] == [books["cdrs"][1].pk, books["cdrs"][2].pk]
    assert walk(client, "/api/v1/cdrs/", station="BILL-API-1", credit="true") == []
    detail = client.get(f"/api/v1/cdrs/{books['cdrs'][0].pk}/").json()
    assert detail["currency"] == "EUR"
    assert "charging_periods" in detail


def test_invoices_with_lines_and_the_pdf(books: dict[str, Any]) -> None:
    client = bearer(staff("sam", "Support"))
    issued = books["issued"]
    found = walk(client, "/api/v1/invoices/", status="issued")
    assert [row["number"] for row in found] == [issued.number]
    detail = client.get(f"/api/v1/invoices/{issued.pk}/").json()
    assert [line["position"] for line in detail["lines"]] == [1, 2]
    assert detail["total_excl_vat"] == "13.5000"
    pdf = client.get(f"/api/v1/invoices/{issued.pk}/pdf/", HTTP_ACCEPT="application/pdf")
    assert pdf.status_code == 200
    assert pdf["Content-Type"] == "application/pdf"
    assert issued.number in pdf_text(pdf.content)
    draft = Invoice.objects.get(account=books["second"])
    missing = client.get(f"/api/v1/invoices/{draft.pk}/pdf/", HTTP_ACCEPT="application/pdf")
    assert missing.status_code == 404
    assert errors(missing) == [(None, "not_found")]
    assert bearer(None).get(f"/api/v1/invoices/{issued.pk}/pdf/").status_code == 401

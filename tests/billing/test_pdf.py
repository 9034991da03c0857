"""What an issued invoice says (model, PDF, panel): parties with their registration numbers,
VAT ids and bank details, terms and due date, the period, and per line the session as the site
saw it."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from billing import services
from billing.models import BillingProfile, Cdr, Invoice
from billing.pdf import invoice_pdf
from tests.billing.conftest import (
    make_account,
    make_cdr,
    make_ended_session,
    make_tariff,
    make_token,
    pdf_text,
    staff,
)

UTC = dt.UTC
# 18:30 in Amsterdam (winter time): 10 kWh in an hour.
START = dt.datetime(2025, 3, 10, 17, 30, tzinfo=UTC)
ISSUED = dt.datetime(2025, 4, 1, 8, tzinfo=UTC)


@pytest.fixture
def invoice(station) -> Invoice:
    account = make_account("Fleet", postal_code="3511 AA")
    BillingProfile.objects.create(
        account=account, registration_number="KvK 87654321", payment_terms_days=30
    )
    tariff = make_tariff()
    session = make_ended_session(station, make_token(account), tariff, start=START)
    assert services.cdr_create_for_session(session_id=session.pk) is not None
    services.billing_periods_close_due(now=ISSUED)
    return services.invoice_issue(invoice_id=Invoice.objects.get().pk, now=ISSUED)


def test_the_issued_invoice_carries_parties_terms_and_lines(invoice: Invoice) -> None:
    assert invoice.seller["registration_number"] == "12345678"
    assert invoice.seller["iban"] == "NL91ABNA0417164300"
    assert invoice.seller["bic"] == "ABNANL2A"
    assert invoice.seller["vat_id"]
    assert invoice.buyer["registration_number"] == "KvK 87654321"
    assert invoice.buyer["vat_id"].startswith("NL")
    assert (invoice.issue_date, invoice.payment_terms_days, invoice.due_date) == (
        dt.date(2025, 4, 1),
        30,
        dt.date(2025, 5, 1),
    )
    line = invoice.lines.get()
    cdr = Cdr.objects.get()
    assert line.site_time_zone == "Europe/Amsterdam"
    assert f"{line.local_start:%Y-%m-%d %H:%M %Z}" == "2025-03-10 18:30 CET"
    assert f"{line.local_end:%H:%M}" == "19:30"
    assert (line.tariff_id, line.tariff_version) == (
        cdr.tariff_snapshot["id"],
        str(cdr.tariff_version.number),
    )
    assert line.tariff_label == f"{cdr.tariff_snapshot['id']} v{cdr.tariff_version.number}"
    assert (line.energy_kwh, line.duration_label) == (Decimal("10.000"), "1:00")


def test_the_pdf_says_it(invoice: Invoice) -> None:
    text = pdf_text(invoice_pdf(invoice))
    tariff_id = invoice.lines.get().tariff_id
    for expected in (
        f"Invoice {invoice.number}",
        "Issue date: 2025-04-01",
        "Due date: 2025-05-01 (payment terms: 30 days)",
        "Period: 2025-03-01 to 2025-03-31 (Europe/Amsterdam)",
        "Reg. no.: 12345678",
        "Reg. no.: KvK 87654321",
        f"VAT ID: {invoice.seller['vat_id']}",
        f"VAT ID: {invoice.buyer['vat_id']}",
        "IBAN: NL91ABNA0417164300",
        "BIC: ABNANL2A",
        "2025-03-10 18:30",
        "2025-03-10 19:30",
        "Europe/Amsterdam",
        "Harbour car park",
        "CP-BILL-1",
        tariff_id,
        "10.000",
        "1:00",
        "21 %",
        "Amount due: EUR 3.63",
        "BIC ABNANL2A",
    ):
        assert expected in text, expected


def test_terms_default_to_the_seller_s(station, settings) -> None:
    settings.BILLING_PAYMENT_TERMS_DAYS = 21
    make_cdr(make_account("No profile"), station, end=START, excl="2.00")
    services.billing_periods_close_due(now=ISSUED)
    invoice = services.invoice_issue(invoice_id=Invoice.objects.get().pk, now=ISSUED)
    assert (invoice.payment_terms_days, invoice.due_date) == (21, dt.date(2025, 4, 22))
    assert invoice.buyer["registration_number"] == ""


def test_the_line_names_the_tariff_version_the_cdr_was_priced_with(station) -> None:
    cdr = make_cdr(make_account("Versions"), station, end=START, excl="2.00")
    cdr.tariff_version = make_tariff().versions.get()
    assert services._tariff_version(cdr) == "1"
    # A CDR made before tariff versions existed names none.
    cdr.tariff_version = None
    assert services._tariff_version(cdr) == ""


def test_the_panel_shows_it(invoice: Invoice, client, roles) -> None:
    client.force_login(staff("support", "Support"))
    page = client.get(f"/admin/billing/invoice/{invoice.pk}/change/").content.decode()
    for expected in (
        "KvK 87654321",
        "12345678",
        "NL91ABNA0417164300",
        "ABNANL2A",
        "May 1, 2025",  # the due date
        "2025-03-01 to 2025-03-31",
        "2025-03-10 18:30",
        "Europe/Amsterdam",
        invoice.lines.get().tariff_id,
    ):
        assert expected in page, expected


def test_a_credit_note_of_an_amount_prints(invoice: Invoice) -> None:
    note = services.invoice_credit_amount(
        invoice_id=invoice.pk,
        amount_excl_vat=Decimal("1.00"),
        vat_rate=Decimal("21"),
        reason="goodwill",
        now=ISSUED,
    )
    text = pdf_text(invoice_pdf(note))
    for expected in (
        f"Credit note {note.number}",
        f"Credits invoice {invoice.number}",
        "Reason: goodwill",
        "Credit: goodwill",
        "-1.21",
        "Amount credited: EUR 1.21",
    ):
        assert expected in text, expected
    assert "Due date" not in text


def test_an_invoice_prints_in_its_buyer_s_language(station) -> None:
    """The billing profile's language is frozen with the buyer at issue: German labels,
    dates and decimal commas, whatever language the request or the worker is in."""
    account = make_account("Flotte", postal_code="10115")
    BillingProfile.objects.create(account=account, language="de", payment_terms_days=30)
    session = make_ended_session(station, make_token(account), make_tariff(), start=START)
    assert services.cdr_create_for_session(session_id=session.pk) is not None
    services.billing_periods_close_due(now=ISSUED)
    invoice = services.invoice_issue(invoice_id=Invoice.objects.get().pk, now=ISSUED)
    assert invoice.buyer["language"] == "de"
    BillingProfile.objects.filter(account=account).update(language="nl")

    text = pdf_text(invoice_pdf(invoice))
    for expected in (
        f"Rechnung {invoice.number}",
        "Rechnungsdatum: 01.04.2025",
        "Fällig am: 01.05.2025 (Zahlungsziel: 30 Tage)",
        "Zeitraum: 01.03.2025 bis 31.03.2025 (Europe/Amsterdam)",
        "Verkäufer",
        "Käufer",
        "USt-IdNr.: ",
        "Bemessungsgrundlage",
        "10,000",
        "10.03.2025 18:30",
        "Zu zahlender Betrag: EUR 3,63",
        "Bitte überweisen Sie EUR 3,63 bis zum 01.05.2025",
    ):
        assert expected in text, expected
    for english in ("Invoice ", "Issue date", "Amount due", "Seller", "3.63"):
        assert english not in text, english


def test_an_invoice_without_a_language_prints_in_the_default_one(invoice: Invoice) -> None:
    assert invoice.buyer["language"] == ""
    text = pdf_text(invoice_pdf(invoice))
    assert "Issue date: 2025-04-01" in text
    assert "Amount due: EUR 3.63" in text

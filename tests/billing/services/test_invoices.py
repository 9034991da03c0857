"""Billing periods, invoices, numbering, credit notes, settlement statements and PDFs."""

from __future__ import annotations

import datetime as dt
import threading
import zoneinfo
from decimal import Decimal

import pytest
from django.db import connection

from billing import services
from billing.models import (
    BillingPeriod,
    Cdr,
    ImmutableError,
    Invoice,
    InvoiceLine,
    InvoiceSeries,
    SettlementStatement,
)
from cpo.lib.api import ApplicationError
from sessions.models import CustomerAccount
from tariffs.services import session_tariff_assign
from tests.billing.conftest import (
    make_account,
    make_cdr,
    make_ended_session,
    make_tariff,
    make_token,
    staff,
)

D = Decimal
UTC = dt.UTC
AMS = zoneinfo.ZoneInfo("Europe/Amsterdam")
JAN = dt.datetime(2025, 1, 15, 12, 0, tzinfo=UTC)
AFTER_JAN = dt.datetime(2025, 2, 1, 0, 5, tzinfo=UTC)


def test_period_bounds() -> None:
    monthly = CustomerAccount.BillingPeriod.MONTHLY
    assert services.period_bounds(monthly, JAN) == (
        dt.datetime(2025, 1, 1, tzinfo=UTC),
        dt.datetime(2025, 2, 1, tzinfo=UTC),
    )
    assert services.period_bounds(monthly, dt.datetime(2024, 2, 29, 23, tzinfo=UTC))[1] == (
        dt.datetime(2024, 3, 1, tzinfo=UTC)
    )
    weekly = services.period_bounds(CustomerAccount.BillingPeriod.WEEKLY, JAN)  # a Wednesday
    assert weekly == (dt.datetime(2025, 1, 13, tzinfo=UTC), dt.datetime(2025, 1, 20, tzinfo=UTC))
    daily = services.period_bounds(CustomerAccount.BillingPeriod.DAILY, JAN)
    assert daily == (dt.datetime(2025, 1, 15, tzinfo=UTC), dt.datetime(2025, 1, 16, tzinfo=UTC))


def test_close_due_periods_bills_each_account_once(station) -> None:
    fleet = make_account("Fleet")
    person = make_account("Person")
    make_account("Idle account")  # nothing to bill: no invoice
    weekly = make_account("Weekly", billing_period=CustomerAccount.BillingPeriod.WEEKLY)
    make_cdr(fleet, station, end=JAN, excl="10.00")
    make_cdr(fleet, station, end=JAN + dt.timedelta(days=3), excl="5.55", vat_rate="9")
    make_cdr(fleet, station, end=JAN, excl="3.00", currency="CHF", vat_rate="8.1")
    make_cdr(person, station, end=JAN, excl="0.99")
    make_cdr(weekly, station, end=dt.datetime(2025, 1, 22, 9, tzinfo=UTC), excl="2.00")
    # Ends after the period: the next period's.
    late = make_cdr(person, station, end=dt.datetime(2025, 2, 1, 0, 1, tzinfo=UTC), excl="1.00")

    made = services.billing_periods_close_due(now=AFTER_JAN)
    assert made == 4  # fleet EUR + CHF, person EUR, weekly EUR
    fleet_eur = Invoice.objects.get(account=fleet, currency="EUR")
    assert fleet_eur.status == Invoice.Status.DRAFT
    assert fleet_eur.number is None
    assert fleet_eur.lines.count() == 2
    assert (fleet_eur.total_excl_vat, fleet_eur.total_vat, fleet_eur.total_incl_vat) == (
        D("15.55"),
        D("2.60"),
        D("18.15"),
    )
    vat = {(v.rate, v.base_excl_vat, v.vat_amount) for v in fleet_eur.vat_lines.all()}
    assert vat == {(D("9"), D("5.55"), D("0.50")), (D("21"), D("10.00"), D("2.10"))}
    assert fleet_eur.buyer["name"] == "Fleet B.V."
    assert fleet_eur.seller["vat_id"]
    line = fleet_eur.lines.first()
    assert line is not None
    assert (line.station_identity, line.token_visual_number, line.energy_kwh) == (
        "CP-BILL-1",
        "NL-CPO-04AA",
        D("7.000"),
    )
    assert Invoice.objects.get(account=fleet, currency="CHF").total_incl_vat == D("3.24")
    assert not Invoice.objects.filter(account__name="Idle account").exists()
    assert not InvoiceLine.objects.filter(cdr=late).exists()

    # Idempotent: running it again (same time or later) bills nothing twice.
    assert services.billing_periods_close_due(now=AFTER_JAN) == 0
    assert services.billing_periods_close_due(now=AFTER_JAN + dt.timedelta(hours=1)) == 0
    assert Invoice.objects.count() == 4
    # Periods run from midnight to midnight in the account's zone (the seller's by default).
    period = BillingPeriod.objects.get(account=fleet, start=dt.datetime(2025, 1, 1, tzinfo=AMS))
    assert services.billing_period_close(period_id=period.pk) == list(
        Invoice.objects.filter(period=period).order_by("pk")
    )
    # The late CDR goes on February's invoice.
    services.billing_periods_close_due(now=dt.datetime(2025, 3, 1, 1, tzinfo=UTC))
    late_period = InvoiceLine.objects.get(cdr=late).invoice.period
    assert late_period is not None
    assert late_period.start == dt.datetime(2025, 2, 1, tzinfo=AMS)
    assert Cdr.objects.filter(invoice_line__isnull=True).count() == 0


def test_a_period_that_has_not_ended_is_not_closed(station) -> None:
    account = make_account("Fleet")
    period, _ = services.billing_period_ensure(account=account, instant=JAN)
    with pytest.raises(ApplicationError, match="not ended"):
        services.billing_period_close(period_id=period.pk, now=JAN)


def _drafts(station, count: int) -> list[int]:
    account = make_account("Numbered")
    ids = []
    for i in range(count):
        cdr = make_cdr(account, station, end=JAN - dt.timedelta(days=40 + i), excl="1.00")
        invoice = Invoice.objects.create(account=account, currency="EUR")
        services._invoice_fill(invoice, [cdr])
        ids.append(invoice.pk)
    return ids


def test_issue_numbers_and_freezes(station) -> None:
    first, second = _drafts(station, 2)
    issued = services.invoice_issue(invoice_id=first, now=JAN)
    assert issued.number == "INV-2025-000001"
    assert issued.issue_date == JAN.date()
    assert services.invoice_issue(invoice_id=first, now=JAN).number == "INV-2025-000001"
    assert services.invoice_issue(invoice_id=second, now=JAN).number == "INV-2025-000002"
    # A new year starts a new series.
    third = _drafts(station, 1)[0]
    assert (
        services.invoice_issue(invoice_id=third, now=dt.datetime(2026, 1, 1, tzinfo=UTC)).number
        == "INV-2026-000001"
    )

    issued.total_incl_vat = D("0")
    with pytest.raises(ImmutableError):
        issued.save()
    with pytest.raises(ImmutableError):
        Invoice.objects.filter(pk=first).update(total_incl_vat=D("0"))
    with pytest.raises(ImmutableError):
        Invoice.objects.get(pk=first).delete()
    line = InvoiceLine.objects.get(invoice_id=first)
    line.amount_incl_vat = D("0")
    with pytest.raises(ImmutableError):
        line.save()
    with pytest.raises(ImmutableError):
        InvoiceLine.objects.filter(invoice_id=first).update(amount_incl_vat=D("0"))
    with pytest.raises(ImmutableError):
        line.delete()
    assert Invoice.objects.get(pk=first).total_incl_vat == D("1.21")


def test_a_failed_issue_leaves_no_gap(station, monkeypatch) -> None:
    first, second = _drafts(station, 2)
    real_audit = services._audit

    def failing_audit(action, obj, **kwargs):
        if action == "invoice_issued":
            raise RuntimeError("disk full")
        return real_audit(action, obj, **kwargs)

    monkeypatch.setattr(services, "_audit", failing_audit)
    with pytest.raises(RuntimeError):
        services.invoice_issue(invoice_id=first, now=JAN)
    monkeypatch.setattr(services, "_audit", real_audit)
    assert Invoice.objects.get(pk=first).number is None
    assert services.invoice_issue(invoice_id=second, now=JAN).number == "INV-2025-000001"
    assert services.invoice_issue(invoice_id=first, now=JAN).number == "INV-2025-000002"


@pytest.mark.django_db(transaction=True)
def test_one_thousand_invoices_issued_by_four_threads_are_gapless(station) -> None:
    ids = _drafts(station, 1000)
    chunks = [ids[i::4] for i in range(4)]
    errors: list[BaseException] = []

    def issue(chunk: list[int]) -> None:
        try:
            for pk in chunk:
                services.invoice_issue(invoice_id=pk, now=JAN)
        except BaseException as exc:  # reported below, in the test's thread
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=issue, args=(chunk,)) for chunk in chunks]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=300)
    assert not errors
    sequences = sorted(Invoice.objects.values_list("sequence", flat=True))  # type: ignore[type-var]  # all issued
    assert sequences == list(range(1, 1001))
    numbers = set(Invoice.objects.values_list("number", flat=True))
    assert len(numbers) == 1000
    assert "INV-2025-001000" in numbers
    assert InvoiceSeries.objects.get(code="INV-2025").next_number == 1001


def test_credit_note_flow_end_to_end(station) -> None:
    """Bill a session, issue, credit in full, re-rate, bill again with the next period."""
    account = make_account("Fleet")
    token = make_token(account)
    tariff = make_tariff(energy="0.50")
    session = make_ended_session(station, token, tariff, start=JAN, energy_wh=20_000)
    cdr = services.cdr_create_for_session(session_id=session.pk)
    assert cdr is not None
    assert cdr.total_cost_incl_vat == D("12.10")
    assert services.billing_periods_close_due(now=AFTER_JAN) == 1
    invoice = services.invoice_issue(invoice_id=Invoice.objects.get().pk, now=AFTER_JAN)
    assert invoice.number == "INV-2025-000001"

    draft = Invoice.objects.create(account=account, currency="EUR")
    with pytest.raises(ApplicationError, match="Only issued invoices"):
        services.invoice_credit(invoice_id=draft.pk, reason="x")
    note = services.invoice_credit(invoice_id=invoice.pk, reason="wrong tariff", now=AFTER_JAN)
    assert note.kind == Invoice.Kind.CREDIT_NOTE
    assert note.credit_of == invoice
    assert note.number == "CN-2025-000001"
    assert note.reason == "wrong tariff"
    assert (note.total_excl_vat, note.total_vat, note.total_incl_vat) == (
        -invoice.total_excl_vat,
        -invoice.total_vat,
        -invoice.total_incl_vat,
    )
    credit_cdr = note.lines.get().cdr
    assert credit_cdr.credit
    assert credit_cdr.credit_of == cdr
    assert [(v.rate, v.vat_amount) for v in note.vat_lines.all()] == [(D("21"), D("-2.10"))]
    with pytest.raises(ApplicationError, match="already credited"):
        services.invoice_credit(invoice_id=invoice.pk, reason="again")
    invoice.refresh_from_db()
    assert invoice.number == "INV-2025-000001"
    assert invoice.total_incl_vat == D("12.10")

    # Correct the tariff, re-rate, and the session is billed again next period.
    session_tariff_assign(
        session=session, tariff=make_tariff(energy="0.40"), assigned_by=None, correction=True
    )
    fresh = services.cdr_rerate(session_id=session.pk, reason="wrong tariff")
    assert fresh.revision == 2
    assert fresh.total_cost_incl_vat == D("9.68")
    services.billing_periods_close_due(now=dt.datetime(2025, 3, 1, 1, tzinfo=UTC))
    rebill = InvoiceLine.objects.get(cdr=fresh).invoice
    assert rebill.total_incl_vat == D("9.68")
    assert rebill.period is not None
    assert rebill.period.local_dates[0].month == 2
    # Every CDR of the session is on exactly one document.
    assert InvoiceLine.objects.filter(cdr__session=session).count() == 3


def test_roaming_partner_gets_a_settlement_statement(station) -> None:
    partner = make_account(
        "eMSP One", kind=CustomerAccount.Kind.ROAMING_PARTNER, country_code="DE", party_id="EMS"
    )
    own = make_account("Fleet")
    make_cdr(partner, station, end=JAN, excl="4.00")
    make_cdr(partner, station, end=JAN + dt.timedelta(days=1), excl="6.00")
    make_cdr(own, station, end=JAN, excl="1.00")
    services.billing_periods_close_due(now=AFTER_JAN)
    statement = SettlementStatement.objects.get()
    assert statement.account == partner
    assert (statement.cdr_count, statement.total_excl_vat, statement.total_incl_vat) == (
        2,
        D("8.00") + D("2.00"),
        D("12.10"),
    )
    assert statement.total_energy_kwh == D("14")
    assert statement.lines.count() == 2


def test_pdf_of_an_issued_invoice_from_the_panel(station, roles, client) -> None:
    pk = _drafts(station, 1)[0]
    support = staff("support", "Support")
    client.force_login(support)
    assert client.get(f"/admin/billing/invoice/{pk}/pdf/").status_code == 404  # a draft
    services.invoice_issue(invoice_id=pk, now=JAN)
    response = client.get(f"/admin/billing/invoice/{pk}/pdf/")
    assert response.status_code == 200
    assert response["Content-Type"] == "application/pdf"
    assert "INV-2025-000001.pdf" in response["Content-Disposition"]
    assert response.content.startswith(b"%PDF")
    page = client.get(f"/admin/billing/invoice/{pk}/change/")
    assert page.status_code == 200
    assert b"Download PDF" in page.content


def test_a_discarded_draft_releases_its_cdrs(station) -> None:
    account = make_account("Fleet")
    cdr = make_cdr(account, station, end=JAN, excl="2.00")
    services.billing_periods_close_due(now=AFTER_JAN)
    draft = Invoice.objects.get()
    assert not Cdr.objects.billable().exists()
    assert services.invoice_draft_discard(invoice_id=draft.pk) == 1
    assert list(Cdr.objects.billable()) == [cdr]
    # The next period picks it up.
    services.billing_periods_close_due(now=dt.datetime(2025, 3, 1, 1, tzinfo=UTC))
    invoice = InvoiceLine.objects.get(cdr=cdr).invoice
    services.invoice_issue(invoice_id=invoice.pk)
    with pytest.raises(ApplicationError, match="never deleted"):
        services.invoice_draft_discard(invoice_id=invoice.pk)

"""Credit notes: a reason always; everything, some lines or an amount; never more than billed;
their own gapless series; issued documents and CDRs refused for editing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from billing import services
from billing.models import Cdr, ImmutableError, Invoice, InvoiceLine, InvoiceVatLine
from cpo.lib.api import ApplicationError
from tests.billing.conftest import make_account, make_cdr, staff

D = Decimal
UTC = dt.UTC
JAN = dt.datetime(2025, 1, 10, 9, 0, tzinfo=UTC)
AFTER_JAN = dt.datetime(2025, 2, 1, 1, 0, tzinfo=UTC)


def _issued(station, amounts: list[str], name: str = "Fleet") -> Invoice:
    account = make_account(name)
    for i, excl in enumerate(amounts):
        make_cdr(account, station, end=JAN + dt.timedelta(hours=i), excl=excl)
    services.billing_periods_close_due(now=AFTER_JAN)
    draft = Invoice.objects.get(account=account, kind=Invoice.Kind.INVOICE)
    return services.invoice_issue(invoice_id=draft.pk, now=AFTER_JAN)


def test_credit_selected_lines(station) -> None:
    invoice = _issued(station, ["10.00", "20.05", "7.77"])
    second = invoice.lines.get(position=2)
    note = services.invoice_credit_lines(
        invoice_id=invoice.pk, line_ids=[second.pk], reason="charger fault", now=AFTER_JAN
    )
    assert (note.kind, note.credit_of, note.reason, note.number) == (
        Invoice.Kind.CREDIT_NOTE,
        invoice,
        "charger fault",
        "CN-2025-000001",
    )
    # 21 % of 20.05 is 4.2105: the credit note's own VAT, per rate, rounded once.
    assert (note.total_excl_vat, note.total_vat, note.total_incl_vat) == (
        D("-20.05"),
        D("-4.21"),
        D("-24.26"),
    )
    [line] = note.lines.all()
    assert line.cdr.credit_of == second.cdr
    assert line.cdr.credit_reason == "charger fault"
    assert note.due_date is None  # nothing for the buyer to pay

    with pytest.raises(ApplicationError, match="already credited: 2"):
        services.invoice_credit_lines(invoice_id=invoice.pk, line_ids=[second.pk], reason="again")
    # "In full" now means what is left: lines 1 and 3.
    rest = services.invoice_credit(invoice_id=invoice.pk, reason="contract ended", now=AFTER_JAN)
    assert rest.number == "CN-2025-000002"
    assert sorted(line.cdr.credit_of.invoice_line.position for line in rest.lines.all()) == [1, 3]
    assert note.total_incl_vat + rest.total_incl_vat == -invoice.total_incl_vat
    with pytest.raises(ApplicationError, match="already credited"):
        services.invoice_credit(invoice_id=invoice.pk, reason="once more")
    invoice.refresh_from_db()
    assert invoice.total_incl_vat == D("45.76")  # the invoice itself never changes


def test_credit_an_amount(station) -> None:
    invoice = _issued(station, ["60.00", "40.00"])
    note = services.invoice_credit_amount(
        invoice_id=invoice.pk,
        amount_excl_vat=D("10"),
        vat_rate=D("21"),
        reason="goodwill: slow charging",
        now=AFTER_JAN,
    )
    assert (note.total_excl_vat, note.total_vat, note.total_incl_vat) == (
        D("-10.00"),
        D("-2.10"),
        D("-12.10"),
    )
    [line] = note.lines.all()
    assert (line.cdr, line.session_start, line.description) == (
        None,
        None,
        "Credit: goodwill: slow charging",
    )
    assert [(v.rate, v.base_excl_vat) for v in note.vat_lines.all()] == [(D("21"), D("-10.00"))]
    # No CDR was credited: the sessions stay billed.
    assert not Cdr.objects.filter(credit=True).exists()

    with pytest.raises(ApplicationError, match="has 90.00 left to credit"):
        services.invoice_credit_amount(
            invoice_id=invoice.pk, amount_excl_vat=D("90.01"), vat_rate=D("21"), reason="too much"
        )
    # Crediting every line would now credit more than was billed.
    with pytest.raises(ApplicationError, match="left to credit"):
        services.invoice_credit(invoice_id=invoice.pk, reason="everything")
    services.invoice_credit_amount(
        invoice_id=invoice.pk, amount_excl_vat=D("90.00"), vat_rate=D("21"), reason="the rest"
    )
    with pytest.raises(ApplicationError, match="has 0.00 left"):
        services.invoice_credit_amount(
            invoice_id=invoice.pk, amount_excl_vat=D("0.01"), vat_rate=D("21"), reason="a cent"
        )
    credited = sum((n.total_incl_vat for n in invoice.credit_notes.all()), D(0))
    assert credited == -invoice.total_incl_vat


def test_bad_credits_are_refused(station) -> None:
    invoice = _issued(station, ["5.00"])
    other = _issued(station, ["6.00"], name="Other")
    line = invoice.lines.get()
    for blank in ("", "   "):
        with pytest.raises(ApplicationError, match="needs a reason"):
            services.invoice_credit(invoice_id=invoice.pk, reason=blank)
        with pytest.raises(ApplicationError, match="needs a reason"):
            services.invoice_credit_lines(invoice_id=invoice.pk, line_ids=[line.pk], reason=blank)
        with pytest.raises(ApplicationError, match="needs a reason"):
            services.invoice_credit_amount(
                invoice_id=invoice.pk, amount_excl_vat=D(1), vat_rate=D(21), reason=blank
            )
        with pytest.raises(ApplicationError, match="needs a reason"):
            services.cdr_credit(cdr_id=line.cdr_id or 0, reason=blank)
    with pytest.raises(ApplicationError, match="Choose lines"):
        services.invoice_credit_lines(
            invoice_id=invoice.pk, line_ids=[other.lines.get().pk], reason="not its line"
        )
    with pytest.raises(ApplicationError, match="no VAT rate 9"):
        services.invoice_credit_amount(
            invoice_id=invoice.pk, amount_excl_vat=D(1), vat_rate=D(9), reason="wrong rate"
        )
    with pytest.raises(ApplicationError, match="more than zero"):
        services.invoice_credit_amount(
            invoice_id=invoice.pk, amount_excl_vat=D(0), vat_rate=D(21), reason="nothing"
        )
    note = services.invoice_credit(invoice_id=invoice.pk, reason="ok", now=AFTER_JAN)
    with pytest.raises(ApplicationError, match="Only issued invoices"):
        services.invoice_credit(invoice_id=note.pk, reason="a credit note of a credit note")
    # Nothing of the refused attempts was left behind, and no number was used.
    assert list(Invoice.objects.filter(kind=Invoice.Kind.CREDIT_NOTE)) == [note]
    assert note.number == "CN-2025-000001"


def test_credit_notes_have_their_own_gapless_series(station) -> None:
    invoices = [_issued(station, ["1.00", "2.00"], name=f"Account {n}") for n in range(3)]
    notes = []
    for invoice in invoices:
        notes.append(
            services.invoice_credit_lines(
                invoice_id=invoice.pk, line_ids=[invoice.lines.first().pk], reason="partial"
            )
        )
        notes.append(
            services.invoice_credit_amount(
                invoice_id=invoice.pk, amount_excl_vat=D("0.50"), vat_rate=D(21), reason="more"
            )
        )
    assert [i.number for i in invoices] == [f"INV-2025-{n:06d}" for n in (1, 2, 3)]
    assert [n.number for n in notes] == [
        f"CN-{n.issue_date.year}-{i:06d}" for i, n in enumerate(notes, 1)
    ]


def test_issued_documents_and_cdrs_are_refused_for_editing(station, client, roles) -> None:
    invoice = _issued(station, ["3.00"])
    note = services.invoice_credit(invoice_id=invoice.pk, reason="wrong account")
    for document in (invoice, note):
        document.reason = "edited"
        with pytest.raises(ImmutableError):
            document.save()
        line = document.lines.get()
        line.amount_excl_vat = D(0)
        with pytest.raises(ImmutableError):
            line.save()
        vat = document.vat_lines.get()
        vat.vat_amount = D(0)
        with pytest.raises(ImmutableError):
            vat.save()
        with pytest.raises(ImmutableError):
            vat.delete()
        with pytest.raises(ImmutableError):
            InvoiceVatLine.objects.filter(invoice=document).update(vat_amount=D(0))
        with pytest.raises(ImmutableError):
            InvoiceLine.objects.filter(invoice=document).delete()
    cdr = invoice.lines.get().cdr
    cdr.total_cost_excl_vat = D(0)
    with pytest.raises(ImmutableError):
        cdr.save()

    # The panel offers no form to change them, even to a superuser, and refuses a forged post.
    admin_user = staff("root", None)
    admin_user.is_superuser = True
    admin_user.save()
    client.force_login(admin_user)
    for url in (
        f"/admin/billing/invoice/{invoice.pk}/change/",
        f"/admin/billing/cdr/{cdr.pk}/change/",
        f"/admin/billing/invoiceline/{invoice.lines.get().pk}/change/",
    ):
        page = client.get(url)
        assert page.status_code == 200
        assert b'name="_save"' not in page.content
        assert client.post(url, {"reason": "edited", "total_cost_excl_vat": "0"}).status_code == 403
    invoice.refresh_from_db()
    assert invoice.reason == ""
    assert Invoice.objects.get(pk=invoice.pk).total_incl_vat == D("3.63")

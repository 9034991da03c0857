"""The reported invoice: three hundred rated sessions at 21 %, VAT on the base, rounded once."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import ROUND_HALF_UP, Decimal

from billing import services
from billing.models import Cdr, Invoice
from sessions.models import ChargingSession
from tests.billing.conftest import make_account, make_ended_session, make_tariff, make_token

D = Decimal
UTC = dt.UTC
MARCH = dt.datetime(2025, 3, 3, 8, 0, tzinfo=UTC)

# Energy per session (Wh) at 0.30 EUR/kWh: 6,750 Wh cost 2.025 -> 2.03 excl., 2.45025 -> 2.45
# incl., so each of those CDRs states 0.42 VAT where 21 % of 2.03 is 0.43.
SESSIONS = [6750] * 26 + [6020] * 272 + [5317, 6955]


def _same_cdr_again(cdr: Cdr) -> Cdr:
    """Another session of the same energy, with the CDR the engine gave the first one."""
    session = ChargingSession.objects.get(pk=cdr.session_id)
    session.pk = None
    session.transaction_id = str(uuid.uuid4())
    session.uid = uuid.uuid4()
    session.save()
    copy = Cdr.objects.get(pk=cdr.pk)
    copy.pk = None
    copy._state.adding = True
    copy.uid = str(uuid.uuid4())
    copy.session = session
    copy.save()
    return copy


def test_three_hundred_lines_at_21_percent(station) -> None:
    account = make_account("Fleet 300")
    token = make_token(account)
    tariff = make_tariff(energy="0.30", parking="0")
    rated: dict[int, Cdr] = {}
    for n, wh in enumerate(SESSIONS):
        if wh in rated:  # the engine's figures are the same for the same energy
            _same_cdr_again(rated[wh])
            continue
        session = make_ended_session(
            station, token, tariff, start=MARCH + dt.timedelta(hours=n), minutes=30, energy_wh=wh
        )
        cdr = services.cdr_create_for_session(session_id=session.pk)
        assert cdr is not None
        rated[wh] = cdr
    assert (rated[6750].total_cost_excl_vat, rated[6750].total_cost_incl_vat) == (
        D("2.03"),
        D("2.45"),
    )
    cdrs = list(Cdr.objects.filter(account=account))
    assert len(cdrs) == 300
    # What the CDRs say, each rounded on its own (the defect: VAT as a difference of totals).
    assert sum((c.total_cost_excl_vat for c in cdrs), D(0)) == D("548.79")
    assert sum((c.total_vat for c in cdrs), D(0)) == D("115.04")

    services.billing_periods_close_due(now=dt.datetime(2025, 5, 1, tzinfo=UTC))
    invoice = services.invoice_issue(invoice_id=Invoice.objects.get(account=account).pk)
    lines = list(invoice.lines.all())
    assert len(lines) == 300

    # The rule: base = sum of the rounded lines, VAT = 21 % of the base rounded once, half up.
    assert invoice.total_excl_vat == D("548.79")
    assert invoice.total_vat == (D("548.79") * D("0.21")).quantize(D("0.01"), ROUND_HALF_UP)
    assert invoice.total_vat == D("115.25")
    assert invoice.total_incl_vat == D("664.04")
    [vat] = invoice.vat_lines.all()
    assert (vat.rate, vat.base_excl_vat, vat.vat_amount, vat.total_incl_vat) == (
        D("21"),
        D("548.79"),
        D("115.25"),
        D("664.04"),
    )
    # The lines add up to the totals to the cent, each line consistent in itself, and no line
    # VAT further than a cent from 21 % of its base.
    assert sum((line.amount_excl_vat for line in lines), D(0)) == invoice.total_excl_vat
    assert sum((line.vat_amount for line in lines), D(0)) == invoice.total_vat
    assert sum((line.amount_incl_vat for line in lines), D(0)) == invoice.total_incl_vat
    for line in lines:
        assert line.amount_incl_vat == line.amount_excl_vat + line.vat_amount
        assert abs(line.vat_amount - line.amount_excl_vat * D("0.21")) < D("0.01")
        [part] = line.vat_breakdown
        assert part["rate"] == "21"
        assert (D(part["base"]), D(part["vat"])) == (line.amount_excl_vat, line.vat_amount)

"""The shared formatting of every app's reads: money to the currency's minor unit, kWh, months."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from zoneinfo import ZoneInfo

from cpo.lib import formatting, money

ROOT = Path(__file__).resolve().parents[3]


def test_money_totals_round_half_up_to_the_iso_4217_minor_unit() -> None:
    assert formatting.money_total(Decimal("12.345"), "EUR") == "12.35"
    assert formatting.money_total(Decimal("123.5"), "JPY") == "124"
    assert formatting.money_total(Decimal("1.2345"), "BHD") == "1.235"
    # The table is the ISO code's, whatever the case it arrives in.
    assert formatting.money_total(Decimal("1.2345"), "kwd") == "1.235"
    assert formatting.money_list({"JPY": Decimal("10.4"), "EUR": Decimal("3.3333")}) == [
        {"currency": "EUR", "amount": "3.33"},
        {"currency": "JPY", "amount": "10"},
    ]
    assert money.sum_by_currency([("EUR", Decimal(1)), ("", Decimal(2)), ("EUR", None)]) == {
        "EUR": Decimal(1),
        "?": Decimal(2),
    }


def test_energy_power_times_and_months() -> None:
    assert formatting.kwh(Decimal(12_345)) == "12.345"
    assert formatting.kwh(None) == "0.000"
    assert formatting.kw(Decimal(7400)) == "7.40"
    assert formatting.kw(None) is None
    moment = dt.datetime(2025, 3, 30, 12, tzinfo=dt.UTC)
    assert formatting.iso(moment) == "2025-03-30T12:00:00+00:00"
    assert formatting.iso(None) is None
    assert formatting.epoch_ms(moment) == 1743336000000
    amsterdam = ZoneInfo("Europe/Amsterdam")
    assert formatting.local_midnight(dt.date(2025, 3, 30), amsterdam).utcoffset() == dt.timedelta(
        hours=1
    )
    assert formatting.add_months(dt.date(2025, 11, 15), 3) == dt.date(2026, 2, 1)
    assert formatting.add_months(dt.date(2025, 1, 31), -1) == dt.date(2024, 12, 1)
    assert formatting.months_between(dt.date(2024, 11, 20), dt.date(2025, 1, 5)) == [
        dt.date(2024, 11, 1),
        dt.date(2024, 12, 1),
        dt.date(2025, 1, 1),
    ]
    assert formatting.admin_url("no_such_view") == ""

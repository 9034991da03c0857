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


def test_times_are_written_one_way_in_a_named_zone() -> None:
    amsterdam = ZoneInfo("Europe/Amsterdam")
    winter = dt.datetime(2026, 12, 1, 13, 3, 9, tzinfo=dt.UTC)
    summer = dt.datetime(2026, 7, 1, 12, 3, tzinfo=dt.UTC)
    assert formatting.local_text(winter, amsterdam) == "2026-12-01 14:03 CET"
    assert formatting.local_text(summer, amsterdam) == "2026-07-01 14:03 CEST"
    assert (
        formatting.local_text(winter, amsterdam, seconds=True, named=True)
        == "2026-12-01 14:03:09 CET (Europe/Amsterdam)"
    )
    assert formatting.local_text(None, amsterdam) == "—"
    assert formatting.zone_label(amsterdam, at=winter) == "CET (Europe/Amsterdam)"
    assert formatting.zone_label(ZoneInfo("UTC"), at=winter) == "UTC"
    # A site's zone, or the panel's when it has none or an unknown one.
    assert formatting.zone_or_panel("Europe/Berlin").key == "Europe/Berlin"
    assert formatting.zone_or_panel("") == formatting.panel_tz()
    assert formatting.zone_or_panel("Mars/Olympus") == formatting.panel_tz()


def test_relative_times_as_people_say_them() -> None:
    now = dt.datetime(2026, 12, 1, 12, 0, tzinfo=dt.UTC)
    ago = lambda **delta: formatting.relative_text(now - dt.timedelta(**delta), now=now)  # noqa: E731
    assert ago(seconds=10) == "just now"
    assert ago(minutes=3) == "3 min ago"
    assert ago(minutes=59) == "59 min ago"
    assert ago(hours=1) == "1 hour ago"
    assert ago(hours=30) == "30 hours ago"
    assert ago(days=3) == "3 days ago"
    assert ago(minutes=-5) == "in 5 min"
    assert formatting.relative_text(None) == "—"


def test_money_and_unit_prices_carry_their_currency_without_noise() -> None:
    assert formatting.money_text(Decimal("0.7000"), "EUR") == "0.70 EUR"
    assert formatting.money_text(Decimal("1.005"), "EUR") == "1.01 EUR"
    assert formatting.money_text(Decimal("150.4"), "JPY") == "150 JPY"
    assert formatting.money_text(None, "EUR") == "—"
    assert formatting.price_text(Decimal("0.3000"), "EUR") == "0.30 EUR"
    assert formatting.price_text(Decimal("0.2875"), "EUR") == "0.2875 EUR"
    assert formatting.price_text(Decimal("2"), "EUR") == "2.00 EUR"

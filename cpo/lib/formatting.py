"""Formatting shared by every app's reads: JSON-ready money, energy, times, admin links and
the calendar helpers of the panel's reports.

Base layer: imports only Django and the standard library (and cpo.lib.money), so the selectors
of every app can use it. Decimals become strings, times ISO 8601.
"""

from __future__ import annotations

import zoneinfo
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.urls import NoReverseMatch, reverse
from django.utils.formats import number_format

from cpo.lib.money import ZERO, round_money

__all__ = [
    "KWH",
    "ZERO",
    "add_months",
    "admin_url",
    "display_money",
    "display_number",
    "epoch_ms",
    "iso",
    "kw",
    "kwh",
    "local_midnight",
    "money_list",
    "money_total",
    "month_start",
    "months_between",
    "panel_tz",
    "url_or_empty",
]

KWH = Decimal(1000)


def panel_tz() -> zoneinfo.ZoneInfo:
    """The time zone of the panel's day and month boundaries (PANEL_TIME_ZONE)."""
    return zoneinfo.ZoneInfo(settings.PANEL_TIME_ZONE)


def money_total(amount: Decimal, currency: str) -> str:
    """A total, rounded to the currency's ISO 4217 minor unit."""
    return str(round_money(amount, currency))


def money_list(totals: dict[str, Decimal]) -> list[dict[str, str]]:
    """Totals per currency as [{"currency", "amount"}], sorted by currency."""
    return [
        {"currency": currency, "amount": money_total(amount, currency)}
        for currency, amount in sorted(totals.items())
    ]


def display_number(value: Decimal | float | int | str | None) -> str:
    """A number as the active language writes it (decimal comma in Dutch and German), with
    the decimals it has: the JSON-ready strings above stay as they are, this is for pages."""
    if value is None or value == "":
        return ""
    try:
        number = Decimal(str(value))
    except ArithmeticError:
        return str(value)
    exponent = number.as_tuple().exponent
    places = -exponent if isinstance(exponent, int) and exponent < 0 else 0
    return number_format(number, decimal_pos=places)


def display_money(totals: list[dict[str, str]] | None) -> str:
    """Totals per currency (money_list's) as the active language writes them: "12,35 EUR"."""
    if not totals:
        return display_number("0.00")
    return " · ".join(f"{display_number(m['amount'])} {m['currency']}" for m in totals)


def kwh(energy_wh: Decimal | None) -> str:
    return str(((energy_wh or ZERO) / KWH).quantize(Decimal("0.001")))


def kw(power_w: Decimal | None) -> str | None:
    return str((power_w / KWH).quantize(Decimal("0.01"))) if power_w is not None else None


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def epoch_ms(moment: datetime) -> int:
    """Milliseconds since the epoch, as charts take them."""
    return int(moment.timestamp() * 1000)


def url_or_empty(name: str, *args: Any) -> str:
    """The URL of a named view, or "" while it is not routed."""
    try:
        return reverse(name, args=args)
    except NoReverseMatch:
        return ""


def admin_url(name: str, *args: Any) -> str:
    """The admin URL, or "" while the model is not registered in the admin."""
    return url_or_empty(f"admin:{name}", *args)


def local_midnight(day: date, tz: zoneinfo.ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz)


def month_start(day: date) -> date:
    return day.replace(day=1)


def add_months(day: date, months: int) -> date:
    """The first day of the month `months` after (or before) the month of `day`."""
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def months_between(first: date, last: date) -> list[date]:
    """First days of the months from `first` to `last`, both included."""
    months: list[date] = []
    cursor = month_start(first)
    while cursor <= last:
        months.append(cursor)
        cursor = add_months(cursor, 1)
    return months

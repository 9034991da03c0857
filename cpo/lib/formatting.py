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
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from cpo.lib.money import ZERO, currency_exponent, round_money

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
    "local_text",
    "money_list",
    "money_text",
    "money_total",
    "month_start",
    "months_between",
    "panel_tz",
    "price_text",
    "relative_text",
    "url_or_empty",
    "zone_label",
    "zone_or_panel",
]

KWH = Decimal(1000)


def panel_tz() -> zoneinfo.ZoneInfo:
    """The time zone of the panel's day and month boundaries (PANEL_TIME_ZONE)."""
    return zoneinfo.ZoneInfo(settings.PANEL_TIME_ZONE)


def zone_or_panel(name: str | None) -> zoneinfo.ZoneInfo:
    """The named IANA zone (a site's or an account's), or the panel's when unnamed or unknown."""
    if name:
        try:
            return zoneinfo.ZoneInfo(name)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            pass
    return panel_tz()


# The one date format of the panel's pages: ISO date, 24-hour time, the zone's abbreviation.
DATE_TIME_FORMAT = "%Y-%m-%d %H:%M"


def local_text(
    moment: datetime | None, tz: zoneinfo.ZoneInfo, *, seconds: bool = False, named: bool = False
) -> str:
    """A moment as the panel writes it, in `tz`: "2026-12-01 14:03 CET", with
    " (Europe/Amsterdam)" when `named`; "—" for none."""
    if moment is None:
        return "—"
    local = moment.astimezone(tz)
    text = local.strftime(DATE_TIME_FORMAT + (":%S" if seconds else "")) + f" {local.tzname()}"
    return f"{text} ({tz.key})" if named else text


def zone_label(tz: zoneinfo.ZoneInfo, *, at: datetime | None = None) -> str:
    """The zone as a page names it: "CET (Europe/Amsterdam)" (the abbreviation of `at`)."""
    abbreviation = (at or timezone.now()).astimezone(tz).tzname()
    return tz.key if abbreviation == tz.key else f"{abbreviation} ({tz.key})"


def relative_text(moment: datetime | None, *, now: datetime | None = None) -> str:
    """How long ago (or in how long) a moment is, as people say it: "3 min ago"."""
    if moment is None:
        return "—"
    seconds = int(((now or timezone.now()) - moment).total_seconds())
    future, seconds = seconds < 0, abs(seconds)
    if seconds < 45:
        return _("just now") if not future else _("in a moment")
    if seconds < 3600:
        n = max(1, round(seconds / 60))
        text = ngettext("%(n)d min", "%(n)d min", n) % {"n": n}
    elif seconds < 48 * 3600:
        n = round(seconds / 3600)
        text = ngettext("%(n)d hour", "%(n)d hours", n) % {"n": n}
    else:
        n = round(seconds / 86400)
        text = ngettext("%(n)d day", "%(n)d days", n) % {"n": n}
    return (_("in %(time)s") if future else _("%(time)s ago")) % {"time": text}


def money_text(amount: Decimal | None, currency: str) -> str:
    """An amount as a page shows it: rounded to the currency's minor unit, with the currency
    ("0.70 EUR"); "—" for none."""
    if amount is None:
        return "—"
    return f"{round_money(amount, currency)} {currency}".strip()


def price_text(price: Decimal | None, currency: str) -> str:
    """A unit price: at least the currency's minor digits, more only when the price has them
    ("0.30 EUR", "0.2875 EUR"), never trailing noise like "0.3000"."""
    if price is None:
        return "—"
    minor = currency_exponent(currency)
    exponent = price.normalize().as_tuple().exponent
    places = max(minor, -exponent if isinstance(exponent, int) else minor)
    return f"{price.quantize(Decimal(1).scaleb(-places))} {currency}".strip()


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

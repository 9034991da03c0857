"""Non-trivial reads of billing: revenue from the CDRs.

Revenue is what the rated CDRs say, excl. VAT; credit CDRs carry negated amounts, so a
credited session no longer counts. A CDR counts at its session's start (charger time).
Results are JSON-ready: totals rounded to the currency's minor unit, as strings.
"""

from __future__ import annotations

import zoneinfo
from collections import defaultdict
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db.models import Count, Q, Sum
from django.db.models.functions import Coalesce, TruncMonth
from django.utils import timezone
from django.utils.translation import gettext, gettext_lazy, gettext_noop, ngettext

from billing.models import Cdr, SessionReview
from cpo.lib.formatting import (
    ZERO,
    add_months,
    admin_url,
    local_midnight,
    local_text,
    money_list,
    money_text,
    money_total,
    month_start,
    panel_tz,
    price_text,
)
from cpo.lib.money import sum_by_currency
from sessions.models import ChargingSession

REVENUE_FROM_CDRS = "cdr"
REVENUE_LABEL = gettext_noop("Rated CDRs, excl. VAT (credits deducted)")

Money = dict[str, dict[str, Decimal]]


def revenue_source() -> dict[str, str]:
    """What the revenue figures are, for the pages that show them."""
    return {"source": REVENUE_FROM_CDRS, "label": gettext(REVENUE_LABEL)}


def _rounded(per_key: dict[Any, dict[str, Decimal]]) -> dict[Any, dict[str, str]]:
    return {
        key: {currency: money_total(amount, currency) for currency, amount in totals.items()}
        for key, totals in per_key.items()
    }


def revenue_by_currency(*, start: datetime, end: datetime) -> list[dict[str, str]]:
    """Revenue of the sessions that started in [start, end), per currency."""
    rows = (
        Cdr.objects.filter(start__gte=start, start__lt=end)
        .values("currency")
        .annotate(total=Sum("total_cost_excl_vat"))
        .order_by()
    )
    return money_list(sum_by_currency((row["currency"], row["total"]) for row in rows))


def revenue_per_month(*, months: int = 12, now: datetime | None = None) -> dict[str, Any]:
    """Revenue per month (panel time zone, by session start) and currency, for a bar chart of
    the last `months` months."""
    now = now or timezone.now()
    tz = panel_tz()
    last = month_start(now.astimezone(tz).date())
    first = add_months(last, -(months - 1))
    labels = [add_months(first, n).strftime("%Y-%m") for n in range(months)]
    per_currency: Money = defaultdict(lambda: defaultdict(lambda: ZERO))
    for row in (
        Cdr.objects.filter(start__gte=local_midnight(first, tz))
        .annotate(month=TruncMonth("start", tzinfo=tz))
        .values("month", "currency")
        .annotate(total=Sum("total_cost_excl_vat"))
        .order_by()
    ):
        per_currency[row["currency"]][row["month"].strftime("%Y-%m")] += row["total"] or ZERO
    return {
        "labels": labels,
        "datasets": [
            {
                "label": currency,
                "data": [float(money_total(values.get(m, ZERO), currency)) for m in labels],
            }
            for currency, values in sorted(per_currency.items())
        ],
    }


def revenue_per_site_month(
    *, zones: dict[str, list[int | None]], first_month: date, last_month: date
) -> dict[tuple[int | None, str], dict[str, str]]:
    """Revenue per (site id, "YYYY-MM") and currency, months in the site's own time zone;
    `zones` maps each time zone to its site ids (None: no site), one query per time zone.

    The CDR's own site snapshot wins; older CDRs without one fall back to the station's.
    """
    first_month, last_month = month_start(first_month), month_start(last_month)
    cells: dict[Any, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    cdrs = Cdr.objects.annotate(site=Coalesce("location_id", "session__station__location_id"))
    for zone, site_ids in zones.items():
        tz = zoneinfo.ZoneInfo(zone)
        start = local_midnight(first_month, tz)
        end = local_midnight(add_months(last_month, 1), tz)
        site_q = Q(site__in=[s for s in site_ids if s is not None])
        if None in site_ids:
            site_q |= Q(site__isnull=True)
        for row in (
            cdrs.filter(site_q, start__gte=start, start__lt=end)
            .annotate(month=TruncMonth("start", tzinfo=tz))
            .values("month", "site", "currency")
            .annotate(total=Sum("total_cost_excl_vat"))
            .order_by()
        ):
            cells[(row["site"], row["month"].strftime("%Y-%m"))][row["currency"]] += (
                row["total"] or ZERO
            )
    return _rounded(cells)


def revenue_per_token(*, start: datetime, end: datetime) -> dict[int | str, dict[str, str]]:
    """Revenue per token and currency of the sessions that started in [start, end).

    Keyed by the CDR's token id, or, for a token the network does not know, by its uid in
    lower case (as `sessions.selectors.sessions_per_token` keys such tags).
    """
    per_token: dict[int | str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    for token_id, token_uid, currency, total in (
        Cdr.objects.filter(start__gte=start, start__lt=end)
        .values("id_token_id", "token_uid", "currency")
        .annotate(total=Sum("total_cost_excl_vat"))
        .order_by()
        .values_list("id_token_id", "token_uid", "currency", "total")
    ):
        per_token[token_id or token_uid.lower()][currency] += total or ZERO
    return _rounded(per_token)


def review_alerts() -> dict[str, Any]:
    """The dashboard's alert for finance's queue: ended sessions no CDR covers until someone
    decides (no tariff, held for review, rating failed), by status."""
    rows = (
        SessionReview.objects.filter(rating_status__in=ChargingSession.RATING_ATTENTION)
        .values("rating_status")
        .annotate(n=Count("pk"))
        .order_by()
    )
    per_status = {row["rating_status"]: row["n"] for row in rows}
    total = sum(per_status.values())
    items = []
    if total:
        labels = dict(ChargingSession.RatingStatus.choices)
        items.append(
            {
                "kind": "sessions_to_review",
                "severity": "warning",
                "title": ngettext(
                    "%(count)s session waits for finance",
                    "%(count)s sessions wait for finance",
                    total,
                )
                % {"count": total},
                "detail": ", ".join(
                    f"{n} {labels[status].lower()}" for status, n in sorted(per_status.items())
                ),
                "since": None,
                "url": admin_url("billing_sessionreview_changelist"),
            }
        )
    return {"items": items, "counts": {"sessions_to_review": total}}


# --- one session: what it became ----------------------------------------------------------------

DIMENSION_LABELS = {
    "FLAT": gettext_lazy("Fixed fee"),
    "ENERGY": gettext_lazy("Energy"),
    "TIME": gettext_lazy("Charging time"),
    "PARKING_TIME": gettext_lazy("Parking time"),
    "RESERVATION_TIME": gettext_lazy("Reservation time"),
    "RESERVATION_FLAT": gettext_lazy("Reservation fee"),
}
DIMENSION_UNITS = {"ENERGY": "kWh", "TIME": "h", "PARKING_TIME": "h", "RESERVATION_TIME": "h"}
# The CDR's rounded total of each dimension (reservation time and fee are one total).
DIMENSION_TOTALS = (
    ("FLAT", "fixed"),
    ("ENERGY", "energy"),
    ("TIME", "time"),
    ("PARKING_TIME", "parking"),
    ("RESERVATION_TIME", "reservation"),
)


def session_cdrs(*, session: ChargingSession) -> list[Cdr]:
    """The session's CDRs (every revision and credit), newest first, with their invoice line
    and invoice."""
    return list(
        Cdr.objects.filter(session=session)
        .select_related("invoice_line__invoice", "credit_of", "tariff_version")
        .order_by("-revision", "-credit", "-pk")
    )


def session_live_cdr(*, cdrs: list[Cdr]) -> Cdr | None:
    """Of a session's CDRs, the one that counts: the latest regular CDR not credited."""
    credited = {c.credit_of_id for c in cdrs if c.credit}
    return next((c for c in cdrs if not c.credit and c.pk not in credited), None)


def _volume_text(dimension: str, volume: Any) -> str:
    unit = DIMENSION_UNITS.get(dimension)
    if unit is None:
        return "1"
    value = Decimal(str(volume))
    return f"{value.quantize(Decimal('0.001'))} {unit}"


def cdr_cost_breakdown(*, cdr: Cdr, tz: zoneinfo.ZoneInfo) -> dict[str, Any]:
    """What a CDR charged, per dimension (the CDR's rounded totals, as invoiced) and per
    charging period and dimension (the rating's cost lines, each rounded for display), with
    the currency on every amount; period starts in `tz`."""
    currency = cdr.currency
    audit = cdr.rating_audit or {}
    lines = audit.get("lines") or []
    volumes: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for line in lines:
        volumes[line["dimension"]] += Decimal(str(line["billed_volume"]))
    dimensions = []
    for dimension, column in DIMENSION_TOTALS:
        excl = getattr(cdr, f"total_{column}_cost_excl_vat")
        incl = getattr(cdr, f"total_{column}_cost_incl_vat")
        if not excl and not incl and dimension not in volumes:
            continue
        dimensions.append(
            {
                "dimension": dimension,
                "label": DIMENSION_LABELS[dimension],
                "volume": _volume_text(dimension, volumes.get(dimension, ZERO)),
                "excl_vat": money_text(excl, currency),
                "incl_vat": money_text(incl, currency),
            }
        )
    starts = [p.get("start_date_time") for p in cdr.charging_periods or []]
    periods = []
    for line in lines:
        index = line.get("period_index")
        start = None
        if index is not None and 0 <= index < len(starts) and starts[index]:
            start = datetime.fromisoformat(starts[index].replace("Z", "+00:00"))
        unit = DIMENSION_UNITS.get(line["dimension"])
        periods.append(
            {
                "period": "—" if index is None else index + 1,
                "start": local_text(start, tz) if start else "—",
                "dimension": DIMENSION_LABELS.get(line["dimension"], line["dimension"]),
                "volume": _volume_text(line["dimension"], line["billed_volume"]),
                "price": price_text(Decimal(str(line["price"])), currency)
                + (f"/{unit}" if unit else ""),
                "vat_rate": line.get("vat"),
                "excl_vat": money_text(Decimal(line["excl_vat"]), currency),
                "incl_vat": money_text(Decimal(line["incl_vat"]), currency),
            }
        )
    clamp = audit.get("clamp_incl_vat") or audit.get("clamp_excl_vat")
    return {
        "currency": currency,
        "dimensions": dimensions,
        "periods": periods,
        "vat": [
            {
                "rate": row.get("rate"),
                "excl_vat": money_text(Decimal(row["excl_vat"]), currency),
                "vat": money_text(Decimal(row["vat"]), currency),
            }
            for row in cdr.vat_breakdown or []
        ],
        "total_excl_vat": money_text(cdr.total_cost_excl_vat, currency),
        "total_vat": money_text(cdr.total_vat, currency),
        "total_incl_vat": money_text(cdr.total_cost_incl_vat, currency),
        "clamp": {
            "MIN": gettext("the tariff's minimum price"),
            "MAX": gettext("the tariff's maximum price"),
        }.get(clamp or "", ""),
    }

"""The panel's reports that join charging and money: energy and revenue per site and month,
sessions per token. Composition only: sessions and kWh from `sessions.selectors`, revenue from
`billing.selectors` (rated CDRs), sites from `stations.selectors`. Rows are JSON- and CSV-ready.

(The uptime report is one app's read: `stations.selectors.uptime_report`.)
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from billing import selectors as billing
from cpo.lib.formatting import ZERO, kwh, money_total, months_between
from sessions import selectors as charging
from stations import selectors as network


def energy_revenue_per_site_month(*, first_month: date, last_month: date) -> dict[str, Any]:
    """Sessions, kWh and revenue per site and calendar month in the site's own time zone,
    by session start. Sites are grouped by time zone so each group is one query per app."""
    sites = network.sites_by_time_zone()
    zones, names = sites["zones"], sites["names"]
    energy = charging.sessions_per_site_month(
        zones=zones, first_month=first_month, last_month=last_month
    )
    revenue = billing.revenue_per_site_month(
        zones=zones, first_month=first_month, last_month=last_month
    )
    currencies = sorted({cur for cell in revenue.values() for cur in cell})
    rows = []
    for site, month in sorted(energy.keys() | revenue.keys(), key=lambda k: (names[k[0]], k[1])):
        charged = energy.get((site, month), {})
        money = revenue.get((site, month), {})
        rows.append(
            {
                "site": names[site],
                "month": month,
                "sessions": charged.get("sessions", 0),
                "energy_kwh": charged.get("energy_kwh", kwh(ZERO)),
                **{f"revenue_{cur}": money.get(cur, money_total(ZERO, cur)) for cur in currencies},
            }
        )
    return {
        "months": [m.strftime("%Y-%m") for m in months_between(first_month, last_month)],
        "currencies": currencies,
        "rows": rows,
        **billing.revenue_source(),
    }


def sessions_per_token(*, start: datetime, end: datetime) -> dict[str, Any]:
    """Sessions, kWh and revenue per token over [start, end), by session start; tags that
    matched no known token are listed as presented."""
    rows = charging.sessions_per_token(start=start, end=end)
    revenue = billing.revenue_per_token(start=start, end=end)
    currencies = sorted({cur for money in revenue.values() for cur in money})
    for row in rows:
        money = revenue.get(row["token_id"] or (row["token"] or "").lower(), {})
        row.update({f"revenue_{cur}": money.get(cur, money_total(ZERO, cur)) for cur in currencies})
    return {"rows": rows, "currencies": currencies, **billing.revenue_source()}

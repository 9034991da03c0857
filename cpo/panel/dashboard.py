"""The operator panel's live pages: the home dashboard, its charts and the station page.

Composition only: the reads are the apps' own selectors (`stations.selectors`,
`stations.commands.selectors`, `sessions.selectors`, `billing.selectors`), and everything is
plain, JSON-ready data (strings for Decimals, ISO 8601 for times) so the same result feeds the
HTML page and the JSON endpoint polled by the browser. Query counts stay constant in the number
of stations: the dashboard is polled every few seconds by every open operator browser.

Revenue is billing's: rated CDRs, excl. VAT, credits deducted. The running cost of the active
sessions is their live cost (incl. VAT), shown as such.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.utils import timezone

from billing import selectors as billing
from cpo.lib.formatting import iso, local_midnight, panel_tz, zone_or_panel
from sessions import selectors as charging
from stations import selectors as network
from stations.commands import selectors as command_queue
from stations.models import ChargingStation


def dashboard_summary(*, now: datetime | None = None, limit: int = 25) -> dict[str, Any]:
    """The network at a glance: what the home page shows and its JSON endpoint refreshes."""
    now = now or timezone.now()
    tz = panel_tz()
    day_start = local_midnight(now.astimezone(tz).date(), tz)
    source = billing.revenue_source()
    alerts_network = network.network_alerts(limit=limit)
    alerts_sessions = charging.session_alerts(now=now, limit=limit)
    alerts_review = billing.review_alerts()
    counts = {**alerts_network["counts"], **alerts_sessions["counts"], **alerts_review["counts"]}
    return {
        "generated_at": iso(now),
        "time_zone": settings.PANEL_TIME_ZONE,
        "stations": network.station_counts(),
        "connectors": network.connectors_by_status(),
        "live_sessions": charging.live_sessions(now=now, limit=limit),
        "today": {
            "since": iso(day_start),
            **charging.session_totals(start=day_start, end=now),
            "revenue": billing.revenue_by_currency(start=day_start, end=now),
            "running_cost": charging.running_cost_by_currency(),
            **{f"revenue_{k}": v for k, v in source.items()},
        },
        "alerts": {
            "items": alerts_network["items"] + alerts_sessions["items"] + alerts_review["items"],
            "counts": counts,
            "total": sum(counts.values()),
        },
    }


def revenue_per_month(*, months: int = 12, now: datetime | None = None) -> dict[str, Any]:
    """The revenue chart: per month (panel time zone) and currency, saying what it counts."""
    return {**billing.revenue_per_month(months=months, now=now), **billing.revenue_source()}


def charts(*, days: int = 30, months: int = 12, now: datetime | None = None) -> dict[str, Any]:
    """The home page's charts: kWh per day and site, revenue per month and currency."""
    return {
        "energy": charging.energy_per_day_and_site(days=days, now=now),
        "revenue": revenue_per_month(months=months, now=now),
    }


def station_live(*, station: ChargingStation, commands: int = 15) -> dict[str, Any]:
    """What the station page refreshes: connection, connectors with their live session,
    and the latest commands."""
    now = timezone.now()
    state = network.station_state(station=station)
    # The station's times are read in its site's zone (the panel's without a site).
    tz = zone_or_panel(station.location.time_zone if station.location else None)
    active = charging.station_active_sessions(station=station, now=now)
    for connector in state["connectors"]:
        address = (connector["evse_id"], connector["connector_id"])
        # A 2.0.1 session that knows only its EVSE has connector 0.
        connector["session"] = active.get(address) or active.get((address[0], 0))
    return {
        "generated_at": iso(now),
        "time_zone": tz.key,
        **state,
        "commands": command_queue.station_recent_commands(station=station, limit=commands),
    }

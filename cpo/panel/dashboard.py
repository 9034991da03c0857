"""Reads of the operator panel: the live dashboard, its charts, the station page and reports.

Everything here returns plain, JSON-ready data (strings for Decimals, ISO 8601 for times) so the
same selector feeds the HTML page, the JSON endpoint polled by the browser and the CSV export.
Query counts stay constant in the number of stations: the dashboard is polled every few
seconds by every open operator browser.

Revenue comes from billing's CDRs (rated, immutable, excl. VAT) when the billing app is
installed; without it, from the sessions' running cost (incl. VAT), and the result says so.
"""

from __future__ import annotations

import zoneinfo
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from django.apps import apps
from django.conf import settings
from django.db import models
from django.db.models import Count, Max, Min, OuterRef, Q, Subquery, Sum
from django.db.models.functions import Coalesce, TruncDate, TruncMonth
from django.urls import NoReverseMatch, reverse
from django.utils import timezone

from sessions.models import ChargingSession, MeterSample
from stations.commands.models import Command
from stations.models import (
    ChargingStation,
    Connector,
    ConnectorStatusEvent,
    Location,
    StationConnection,
)

ZERO = Decimal(0)
KWH = Decimal(1000)
# ISO 4217 minor units where they differ from 2; totals are rounded to these, nothing else is.
MINOR_UNITS = {"BHD": 3, "CLP": 0, "ISK": 0, "JOD": 3, "JPY": 0, "KRW": 0, "KWD": 3, "OMR": 3}

# Connector states in which a driver can use (or is using) the connector.
USABLE_STATUSES = frozenset(
    {
        "Available",
        "Occupied",
        "Preparing",
        "Charging",
        "SuspendedEV",
        "SuspendedEVSE",
        "Finishing",
        "Reserved",
    }
)
UPTIME_CLASSES = ("usable", "faulted", "unavailable", "offline", "unknown")
REVENUE_FROM_CDRS = "cdr"
REVENUE_FROM_LIVE_COST = "live_cost"


# --- small helpers ------------------------------------------------------------------------------


def panel_tz() -> zoneinfo.ZoneInfo:
    return zoneinfo.ZoneInfo(settings.PANEL_TIME_ZONE)


def money_total(amount: Decimal, currency: str) -> str:
    exponent = Decimal(1).scaleb(-MINOR_UNITS.get(currency, 2))
    return str(amount.quantize(exponent, rounding=ROUND_HALF_UP))


def kwh(energy_wh: Decimal | None) -> str:
    return str(((energy_wh or ZERO) / KWH).quantize(Decimal("0.001")))


def iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def admin_url(name: str, *args: Any) -> str:
    """The admin URL, or "" while the model is not registered in the admin."""
    try:
        return reverse(f"admin:{name}", args=args)
    except NoReverseMatch:
        return ""


def local_midnight(day: date, tz: zoneinfo.ZoneInfo) -> datetime:
    return datetime.combine(day, time.min, tzinfo=tz)


def month_start(day: date) -> date:
    return day.replace(day=1)


def add_months(day: date, months: int) -> date:
    index = day.year * 12 + day.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def cdr_model() -> type[models.Model] | None:
    """billing.Cdr when billing is installed; the panel degrades to running costs otherwise."""
    if not apps.is_installed("billing"):
        return None
    try:
        return apps.get_model("billing", "Cdr")
    except LookupError:
        return None


def revenue_source() -> dict[str, str]:
    if cdr_model() is not None:
        return {
            "source": REVENUE_FROM_CDRS,
            "label": "Rated CDRs, excl. VAT (credits deducted)",
        }
    return {
        "source": REVENUE_FROM_LIVE_COST,
        "label": "Estimated from the sessions' running cost, incl. VAT (billing not installed)",
    }


def _session_currency(snapshot: Any) -> str:
    if isinstance(snapshot, dict):
        return str(snapshot.get("currency") or "")
    return ""


def _sum_by_currency(pairs: Iterable[tuple[str, Decimal | None]]) -> dict[str, Decimal]:
    totals: dict[str, Decimal] = defaultdict(lambda: ZERO)
    for currency, amount in pairs:
        if amount is not None:
            totals[currency or "?"] += amount
    return dict(totals)


def _money_list(totals: dict[str, Decimal]) -> list[dict[str, str]]:
    return [
        {"currency": currency, "amount": money_total(amount, currency)}
        for currency, amount in sorted(totals.items())
    ]


def revenue_by_currency(*, start: datetime, end: datetime) -> dict[str, Decimal]:
    """Revenue of sessions that started in [start, end), unrounded, per currency."""
    cdr = cdr_model()
    if cdr is not None:
        rows = (
            cdr.objects.filter(start__gte=start, start__lt=end)
            .values("currency")
            .annotate(total=Sum("total_cost_excl_vat"))
        )
        return _sum_by_currency((row["currency"], row["total"]) for row in rows)
    rows = ChargingSession.objects.filter(
        started_at__gte=start, started_at__lt=end, live_cost__isnull=False
    ).values_list("tariff_snapshot", "live_cost")
    return _sum_by_currency((_session_currency(snap), cost) for snap, cost in rows)


# --- dashboard ----------------------------------------------------------------------------------


def _live_session_row(session: ChargingSession, now: datetime) -> dict[str, Any]:
    power = session.last_power_w
    currency = _session_currency(session.tariff_snapshot)
    return {
        "id": session.pk,
        "station": session.station.identity,
        "station_url": admin_url("stations_chargingstation_change", session.station_id),
        "url": admin_url("charging_chargingsession_change", session.pk),
        "curve_url": reverse("panel:session-curve", args=[session.pk]),
        "site": session.station.location.name if session.station.location else "",
        "connector": f"{session.evse_id}/{session.connector_id}",
        "id_tag": session.id_tag,
        "transaction_id": session.transaction_id,
        "started_at": iso(session.started_at),
        "duration_s": int((now - session.started_at).total_seconds()),
        "energy_kwh": kwh(session.energy_wh),
        "power_kw": str((power / KWH).quantize(Decimal("0.01"))) if power is not None else None,
        "soc": str(session.last_soc) if session.last_soc is not None else None,
        "cost": money_total(session.live_cost, currency) if session.live_cost is not None else None,
        "currency": currency,
    }


def _alerts(now: datetime, limit: int) -> dict[str, Any]:
    items: list[dict[str, Any]] = []
    counts: dict[str, int] = {}

    offline = ChargingStation.objects.filter(
        is_online=False, registration_status=ChargingStation.RegistrationStatus.ACCEPTED
    ).order_by(models.F("last_seen_at").desc(nulls_last=True))
    counts["station_offline"] = offline.count()
    for station in offline[:limit]:
        since = station.last_seen_at
        items.append(
            {
                "kind": "station_offline",
                "severity": "error",
                "title": f"{station.identity} offline",
                "detail": f"last seen {since:%Y-%m-%d %H:%M} UTC" if since else "never seen",
                "since": iso(since),
                "url": admin_url("stations_chargingstation_change", station.pk),
            }
        )

    faulted = (
        Connector.objects.filter(status="Faulted")
        .select_related("station", "evse")
        .order_by("-status_at")
    )
    counts["connector_faulted"] = faulted.count()
    for connector in faulted[:limit]:
        items.append(
            {
                "kind": "connector_faulted",
                "severity": "error",
                "title": f"{connector.station.identity} {connector.evse.evse_id}/"
                f"{connector.connector_id} faulted",
                "detail": connector.error_code or connector.info or "Faulted",
                "since": iso(connector.status_at),
                "url": admin_url("stations_chargingstation_change", connector.station_id),
            }
        )

    active = ChargingSession.objects.filter(status=ChargingSession.Status.ACTIVE).select_related(
        "station"
    )
    long_cutoff = now - timedelta(hours=settings.PANEL_LONG_SESSION_HOURS)
    long_running = active.filter(started_at__lt=long_cutoff).order_by("started_at")
    counts["session_long"] = long_running.count()
    for session in long_running[:limit]:
        hours = (now - session.started_at).total_seconds() / 3600
        items.append(
            {
                "kind": "session_long",
                "severity": "warning",
                "title": f"Session on {session.station.identity} running {hours:.1f} h",
                "detail": f"longer than {settings.PANEL_LONG_SESSION_HOURS} h; "
                f"{kwh(session.energy_wh)} kWh so far",
                "since": iso(session.started_at),
                "url": admin_url("charging_chargingsession_change", session.pk)
                or admin_url("stations_chargingstation_change", session.station_id),
            }
        )

    idle_cutoff = now - timedelta(minutes=settings.PANEL_NO_ENERGY_MINUTES)
    no_energy = active.filter(started_at__lt=idle_cutoff, energy_wh=0).order_by("started_at")
    counts["session_no_energy"] = no_energy.count()
    for session in no_energy[:limit]:
        minutes = int((now - session.started_at).total_seconds() // 60)
        items.append(
            {
                "kind": "session_no_energy",
                "severity": "warning",
                "title": f"No energy on {session.station.identity} "
                f"{session.evse_id}/{session.connector_id}",
                "detail": f"active {minutes} min without delivering energy",
                "since": iso(session.started_at),
                "url": admin_url("charging_chargingsession_change", session.pk)
                or admin_url("stations_chargingstation_change", session.station_id),
            }
        )
    return {"items": items, "counts": counts, "total": sum(counts.values())}


def dashboard_summary(*, now: datetime | None = None, limit: int = 25) -> dict[str, Any]:
    """The network at a glance: what the home page shows and its JSON endpoint refreshes."""
    now = now or timezone.now()
    tz = panel_tz()
    day_start = local_midnight(now.astimezone(tz).date(), tz)

    stations = ChargingStation.objects.aggregate(
        total=Count("id"), online=Count("id", filter=Q(is_online=True))
    )
    faulted_ids = set(
        Connector.objects.filter(status="Faulted").values_list("station_id", flat=True)
    ) | set(ChargingStation.objects.filter(status="Faulted").values_list("pk", flat=True))

    # A connector of an offline station is not usable whatever it last reported.
    connectors: dict[str, int] = defaultdict(int)
    for online, status, count in (
        Connector.objects.values_list("station__is_online", "status")
        .annotate(n=Count("id"))
        .order_by()
    ):
        connectors[(status or "Unknown") if online else "Offline"] += count

    active = (
        ChargingSession.objects.filter(status=ChargingSession.Status.ACTIVE)
        .select_related("station__location")
        .order_by("-started_at")
    )
    live = [_live_session_row(s, now) for s in active[:limit]]
    live_total = active.count()
    live_power = active.aggregate(p=Sum("last_power_w"))["p"] or ZERO

    today = ChargingSession.objects.filter(started_at__gte=day_start, started_at__lte=now)
    today_totals = today.aggregate(energy=Sum("energy_wh"), sessions=Count("id"))
    running_cost = _sum_by_currency(
        (_session_currency(snap), cost)
        for snap, cost in active.filter(live_cost__isnull=False).values_list(
            "tariff_snapshot", "live_cost"
        )
    )
    return {
        "generated_at": iso(now),
        "time_zone": settings.PANEL_TIME_ZONE,
        "stations": {
            "total": stations["total"],
            "online": stations["online"],
            "offline": stations["total"] - stations["online"],
            "faulted": len(faulted_ids),
        },
        "connectors": dict(sorted(connectors.items())),
        "live_sessions": {
            "total": live_total,
            "power_kw": str((live_power / KWH).quantize(Decimal("0.01"))),
            "items": live,
        },
        "today": {
            "since": iso(day_start),
            "sessions": today_totals["sessions"],
            "energy_kwh": kwh(today_totals["energy"]),
            "revenue": _money_list(revenue_by_currency(start=day_start, end=now)),
            "running_cost": _money_list(running_cost),
            **{f"revenue_{k}": v for k, v in revenue_source().items()},
        },
        "alerts": _alerts(now, limit),
    }


# --- charts -------------------------------------------------------------------------------------


def energy_per_day_and_site(*, days: int = 30, now: datetime | None = None) -> dict[str, Any]:
    """kWh per day (panel time zone, by session start) and site, for a stacked bar chart."""
    now = now or timezone.now()
    tz = panel_tz()
    last = now.astimezone(tz).date()
    first = last - timedelta(days=days - 1)
    labels = [(first + timedelta(days=n)).isoformat() for n in range(days)]
    rows = (
        ChargingSession.objects.filter(started_at__gte=local_midnight(first, tz))
        .annotate(day=TruncDate("started_at", tzinfo=tz))
        .values("day", "station__location__name")
        .annotate(energy=Sum("energy_wh"))
        .order_by()
    )
    per_site: dict[str, dict[str, Decimal]] = defaultdict(dict)
    for row in rows:
        site = row["station__location__name"] or "(no site)"
        per_site[site][row["day"].isoformat()] = row["energy"] or ZERO
    return {
        "labels": labels,
        "unit": "kWh",
        "datasets": [
            {"label": site, "data": [float(kwh(values.get(day))) for day in labels]}
            for site, values in sorted(per_site.items())
        ],
    }


def revenue_per_month(*, months: int = 12, now: datetime | None = None) -> dict[str, Any]:
    """Revenue per month (panel time zone, by session start) and currency."""
    now = now or timezone.now()
    tz = panel_tz()
    last = month_start(now.astimezone(tz).date())
    first = add_months(last, -(months - 1))
    labels = [add_months(first, n).strftime("%Y-%m") for n in range(months)]
    start = local_midnight(first, tz)
    per_currency: dict[str, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    cdr = cdr_model()
    if cdr is not None:
        rows = (
            cdr.objects.filter(start__gte=start)
            .annotate(month=TruncMonth("start", tzinfo=tz))
            .values("month", "currency")
            .annotate(total=Sum("total_cost_excl_vat"))
            .order_by()
        )
        for row in rows:
            per_currency[row["currency"]][row["month"].strftime("%Y-%m")] += row["total"] or ZERO
    else:
        sessions = ChargingSession.objects.filter(started_at__gte=start, live_cost__isnull=False)
        for started, snapshot, cost in sessions.values_list(
            "started_at", "tariff_snapshot", "live_cost"
        ):
            month = started.astimezone(tz).strftime("%Y-%m")
            per_currency[_session_currency(snapshot) or "?"][month] += cost
    return {
        "labels": labels,
        **revenue_source(),
        "datasets": [
            {
                "label": currency,
                "data": [float(money_total(values.get(m, ZERO), currency)) for m in labels],
            }
            for currency, values in sorted(per_currency.items())
        ],
    }


def session_curve(*, session: ChargingSession) -> dict[str, Any]:
    """Power (kW) and energy delivered (kWh since start) over time, from the meter samples.

    Energy is the register minus the session's start reading; samples of a phase or of another
    location than the outlet are left out so that each instant has one value per series.
    """
    samples = (
        MeterSample.objects.filter(
            session=session,
            measurand__in=("Power.Active.Import", "Energy.Active.Import.Register"),
            phase="",
            location__in=("", "Outlet"),
            value__isnull=False,
        )
        .order_by("timestamp")
        .values_list("timestamp", "measurand", "unit", "value")
    )
    power: list[dict[str, Any]] = []
    energy: list[dict[str, Any]] = []
    base = session.meter_start_wh
    for moment, measurand, unit, value in samples:
        t = int(moment.timestamp() * 1000)
        if measurand == "Power.Active.Import":
            watts = value * KWH if unit == "kW" else value
            power.append({"x": t, "y": float((watts / KWH).quantize(Decimal("0.001")))})
        else:
            wh = value * KWH if unit == "kWh" else value
            if base is None:
                base = wh
            energy.append({"x": t, "y": float(((wh - base) / KWH).quantize(Decimal("0.001")))})
    return {
        "session": session.pk,
        "station": session.station.identity,
        "connector": f"{session.evse_id}/{session.connector_id}",
        "started_at": iso(session.started_at),
        "ended_at": iso(session.ended_at),
        "status": session.status,
        "energy_kwh": kwh(session.energy_wh),
        "power": power,
        "energy": energy,
    }


# --- station page -------------------------------------------------------------------------------


def _connector_key(evse_id: int, connector_id: int) -> tuple[int, int]:
    return (evse_id, connector_id)


def station_status_timeline(
    *, station: ChargingStation, start: datetime, end: datetime
) -> dict[str, Any]:
    """Status segments per connector (and the station's connection) over [start, end).

    The status at `start` is the last report before it. Segments use the station's clock
    (status timestamps); the connection row uses our own connect/disconnect times.
    """
    end = min(end, timezone.now())
    connectors = list(station.connectors.select_related("evse").order_by("evse__evse_id"))
    rows = ["Connection", "Station"] + [f"{c.evse.evse_id}/{c.connector_id}" for c in connectors]
    keys = {(0, 0): "Station"} | {
        _connector_key(c.evse.evse_id, c.connector_id): f"{c.evse.evse_id}/{c.connector_id}"
        for c in connectors
    }
    changes: dict[str, list[tuple[datetime, str]]] = defaultdict(list)
    before = (
        ConnectorStatusEvent.objects.filter(station=station, timestamp__lt=start)
        .values("evse_id", "connector_id")
        .annotate(last=Max("timestamp"))
        .order_by()
    )
    initial = {(row["evse_id"], row["connector_id"]): row["last"] for row in before}
    if initial:
        q = Q()
        for (evse_id, connector_id), moment in initial.items():
            q |= Q(evse_id=evse_id, connector_id=connector_id, timestamp=moment)
        for event in ConnectorStatusEvent.objects.filter(q, station=station):
            label = keys.get((event.evse_id, event.connector_id))
            if label:
                changes[label].append((start, event.status))
    for event in ConnectorStatusEvent.objects.filter(
        station=station, timestamp__gte=start, timestamp__lt=end
    ).order_by("timestamp", "id"):
        label = keys.get((event.evse_id, event.connector_id))
        if label:
            changes[label].append((event.timestamp, event.status))

    segments: list[dict[str, Any]] = []
    for label, points in changes.items():
        points.sort(key=lambda p: p[0])
        for index, (moment, status) in enumerate(points):
            until = points[index + 1][0] if index + 1 < len(points) else end
            if until > moment:
                segments.append({"row": label, "status": status, "from": moment, "to": until})
    online = _online_intervals([station.pk], start, end).get(station.pk, [])
    for lo, hi in online:
        segments.append({"row": "Connection", "status": "Online", "from": lo, "to": hi})
    for lo, hi in _gaps(online, start, end):
        segments.append({"row": "Connection", "status": "Offline", "from": lo, "to": hi})
    return {
        "rows": rows,
        "start": int(start.timestamp() * 1000),
        "end": int(end.timestamp() * 1000),
        "segments": [
            {
                "row": s["row"],
                "status": s["status"],
                "from": int(s["from"].timestamp() * 1000),
                "to": int(s["to"].timestamp() * 1000),
            }
            for s in sorted(segments, key=lambda s: (rows.index(s["row"]), s["from"]))
        ],
    }


def station_live(*, station: ChargingStation, commands: int = 15) -> dict[str, Any]:
    """What the station page refreshes: connection, connectors, live sessions, commands."""
    station.refresh_from_db()
    now = timezone.now()
    connectors = station.connectors.select_related("evse").order_by("evse__evse_id")
    active = {
        (s.evse_id, s.connector_id): s
        for s in ChargingSession.objects.filter(
            station=station, status=ChargingSession.Status.ACTIVE
        ).select_related("station__location")
    }
    connector_rows = []
    for c in connectors:
        # 1.6 sessions name the connector (evse == connector); 2.0.1 name the EVSE.
        session = active.get((c.evse.evse_id, c.connector_id)) or active.get(
            (c.evse.evse_id, c.evse.evse_id)
        )
        connector_rows.append(
            {
                "label": f"{c.evse.evse_id}/{c.connector_id}",
                "evse_id": c.evse.evse_id,
                "connector_id": c.connector_id,
                "status": (c.status or "Unknown") if station.is_online else "Offline",
                "reported_status": c.status,
                "error_code": c.error_code,
                "status_at": iso(c.status_at),
                "max_power_kw": str(Decimal(c.max_power_w) / KWH),
                "standard": c.get_standard_display(),
                "session": _live_session_row(session, now) if session else None,
            }
        )
    return {
        "generated_at": iso(now),
        "identity": station.identity,
        "is_online": station.is_online,
        "last_seen_at": iso(station.last_seen_at),
        "connected_at": iso(station.connected_at),
        "status": station.status,
        "connectors": connector_rows,
        "commands": [
            {
                "id": cmd.pk,
                "action": cmd.action,
                "verb": cmd.verb,
                "status": cmd.status,
                "status_label": cmd.get_status_display(),
                "final": cmd.is_final,
                "response": cmd.response,
                "error": " ".join(filter(None, [cmd.error_code, cmd.error_description])),
                "origin": cmd.get_origin_display(),
                "requested_by": cmd.requested_by.get_username() if cmd.requested_by else "",
                "created_at": iso(cmd.created_at),
                "completed_at": iso(cmd.completed_at),
            }
            for cmd in Command.objects.filter(station=station)
            .select_related("requested_by")
            .order_by("-id")[:commands]
        ],
    }


def station_recent_sessions(*, station: ChargingStation, limit: int = 15) -> list[dict[str, Any]]:
    now = timezone.now()
    rows = []
    for session in (
        ChargingSession.objects.filter(station=station)
        .select_related("station__location")
        .order_by("-started_at")[:limit]
    ):
        row = _live_session_row(session, session.ended_at or now)
        row["status"] = session.get_status_display()
        row["ended_at"] = iso(session.ended_at)
        row["stop_reason"] = session.stop_reason
        rows.append(row)
    return rows


# --- uptime -------------------------------------------------------------------------------------


def _online_intervals(
    station_ids: list[int], start: datetime, end: datetime
) -> dict[int, list[tuple[datetime, datetime]]]:
    """Per station, the merged intervals within [start, end) in which it held a connection.

    A connection row left open by a process that died counts until the station was last seen,
    unless the station still is online.
    """
    online_now = dict(
        ChargingStation.objects.filter(pk__in=station_ids).values_list("pk", "is_online")
    )
    last_seen = dict(
        ChargingStation.objects.filter(pk__in=station_ids).values_list("pk", "last_seen_at")
    )
    latest_open: dict[int, int] = {}
    rows = list(
        StationConnection.objects.filter(station_id__in=station_ids, connected_at__lt=end)
        .filter(Q(disconnected_at__isnull=True) | Q(disconnected_at__gt=start))
        .order_by("station_id", "connected_at")
        .values_list("pk", "station_id", "connected_at", "disconnected_at")
    )
    for pk, station_id, _, disconnected in rows:
        if disconnected is None:
            latest_open[station_id] = pk
    intervals: dict[int, list[tuple[datetime, datetime]]] = defaultdict(list)
    for pk, station_id, connected, disconnected in rows:
        if disconnected is None:
            if online_now.get(station_id) and latest_open.get(station_id) == pk:
                disconnected = end
            else:
                disconnected = max(connected, last_seen.get(station_id) or connected)
        lo, hi = max(connected, start), min(disconnected, end)
        if hi <= lo:
            continue
        merged = intervals[station_id]
        if merged and lo <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], hi))
        else:
            merged.append((lo, hi))
    return intervals


def _gaps(
    intervals: list[tuple[datetime, datetime]], start: datetime, end: datetime
) -> list[tuple[datetime, datetime]]:
    gaps = []
    cursor = start
    for lo, hi in intervals:
        if lo > cursor:
            gaps.append((cursor, lo))
        cursor = max(cursor, hi)
    if cursor < end:
        gaps.append((cursor, end))
    return gaps


def _classify(online: bool, station_status: str, status: str | None) -> str:
    if not online:
        return "offline"
    if station_status == "Faulted" or status == "Faulted":
        return "faulted"
    if station_status == "Unavailable" or status == "Unavailable":
        return "unavailable"
    if status in USABLE_STATUSES:
        return "usable"
    return "unknown"


@dataclass
class UptimeRow:
    site: str
    station: str
    connector: str  # "" for the station as a whole
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(UPTIME_CLASSES, 0.0))

    def shares(self) -> dict[str, float]:
        total = sum(self.seconds.values())
        return {k: (100.0 * v / total if total else 0.0) for k, v in self.seconds.items()}

    def as_dict(self) -> dict[str, Any]:
        shares = self.shares()
        return {
            "site": self.site,
            "station": self.station,
            "connector": self.connector,
            **{f"{k}_pct": round(shares[k], 2) for k in UPTIME_CLASSES},
            **{f"{k}_h": round(self.seconds[k] / 3600, 3) for k in UPTIME_CLASSES},
        }


def uptime_report(
    *, start: datetime, end: datetime, location: Location | None = None
) -> list[dict[str, Any]]:
    """Share of [start, end) each station and connector was usable, faulted, unavailable or
    offline.

    1. Online intervals come from the connection history; outside them everything is offline.
    2. Each connector's status at `start` is its last report before it; later reports change
       it at their (charger) timestamps. A station-level report (connector 0) of Faulted or
       Unavailable overrides its connectors.
    3. A sweep over all change points of a station classifies every connector per interval;
       the station is usable while any connector is usable, else faulted if any is faulted,
       else unavailable if any is unavailable.
    The query count is constant in the number of stations.
    """
    end = min(end, timezone.now())
    if end <= start:
        return []
    stations_qs = ChargingStation.objects.select_related("location").order_by(
        "location__name", "identity"
    )
    if location is not None:
        stations_qs = stations_qs.filter(location=location)
    stations = list(
        stations_qs.annotate(
            initial_status=Subquery(
                ConnectorStatusEvent.objects.filter(
                    station=OuterRef("pk"), evse_id=0, timestamp__lt=start
                )
                .order_by("-timestamp", "-id")
                .values("status")[:1]
            )
        )
    )
    station_ids = [s.pk for s in stations]
    connectors = list(
        Connector.objects.filter(station_id__in=station_ids)
        .select_related("evse")
        .annotate(
            initial_status=Subquery(
                ConnectorStatusEvent.objects.filter(
                    station=OuterRef("station"),
                    evse_id=OuterRef("evse__evse_id"),
                    connector_id=OuterRef("connector_id"),
                    timestamp__lt=start,
                )
                .order_by("-timestamp", "-id")
                .values("status")[:1]
            )
        )
        .order_by("station_id", "evse__evse_id", "connector_id")
    )
    events: dict[int, list[tuple[datetime, int, int, str]]] = defaultdict(list)
    for station_id, moment, evse_id, connector_id, status in (
        ConnectorStatusEvent.objects.filter(
            station_id__in=station_ids, timestamp__gte=start, timestamp__lt=end
        )
        .order_by("station_id", "timestamp", "id")
        .values_list("station_id", "timestamp", "evse_id", "connector_id", "status")
    ):
        events[station_id].append((moment, evse_id, connector_id, status))
    online = _online_intervals(station_ids, start, end)
    per_station_connectors: dict[int, list[Connector]] = defaultdict(list)
    for c in connectors:
        per_station_connectors[c.station_id].append(c)

    result: list[dict[str, Any]] = []
    for station in stations:
        site = station.location.name if station.location else ""
        mine = per_station_connectors[station.pk]
        status = {_connector_key(c.evse.evse_id, c.connector_id): c.initial_status for c in mine}
        station_status = station.initial_status or ""
        total = UptimeRow(site, station.identity, "")
        rows = {key: UptimeRow(site, station.identity, f"{key[0]}/{key[1]}") for key in status}
        # Change points: (time, kind, payload); kind 0 = connection edge, 1 = status report.
        points: list[tuple[datetime, int, Any]] = []
        for lo, hi in online.get(station.pk, []):
            points.append((lo, 0, True))
            points.append((hi, 0, False))
        for moment, evse_id, connector_id, new in events.get(station.pk, []):
            points.append((moment, 1, (evse_id, connector_id, new)))
        points.sort(key=lambda p: (p[0], p[1]))
        is_online = False
        cursor = start
        for moment, kind, payload in [*points, (end, 2, None)]:
            if moment > cursor:
                span = (moment - cursor).total_seconds()
                classes = [_classify(is_online, station_status, s) for s in status.values()]
                for key, cls in zip(status, classes, strict=True):
                    rows[key].seconds[cls] += span
                for cls in ("usable", "faulted", "unavailable"):
                    if cls in classes:
                        total.seconds[cls] += span
                        break
                else:
                    total.seconds[
                        "offline" if not is_online else _classify(True, station_status, None)
                    ] += span
                cursor = moment
            if kind == 0:
                is_online = payload
            elif kind == 1:
                evse_id, connector_id, new = payload
                if evse_id == 0:
                    station_status = new
                elif (evse_id, connector_id) in status:
                    status[(evse_id, connector_id)] = new
        result.append(total.as_dict())
        result.extend(rows[key].as_dict() for key in rows)
    return result


# --- energy and revenue per site and month -----------------------------------------------------


def energy_revenue_per_site_month(*, first_month: date, last_month: date) -> dict[str, Any]:
    """Sessions, kWh and revenue per site and calendar month in the site's own time zone,
    by session start. Sites are grouped by time zone so each group is one query."""
    first_month, last_month = month_start(first_month), month_start(last_month)
    months: list[date] = []
    cursor = first_month
    while cursor <= last_month:
        months.append(cursor)
        cursor = add_months(cursor, 1)
    zones: dict[str, list[int | None]] = defaultdict(list)
    names: dict[int | None, str] = {None: "(no site)"}
    for pk, name, zone in Location.objects.values_list("pk", "name", "time_zone"):
        zones[zone].append(pk)
        names[pk] = name
    zones[settings.PANEL_TIME_ZONE].append(None)

    cells: dict[tuple[int | None, str], dict[str, Any]] = {}

    def cell(site: int | None, month: str) -> dict[str, Any]:
        return cells.setdefault(
            (site, month), {"sessions": 0, "energy_wh": ZERO, "revenue": defaultdict(lambda: ZERO)}
        )

    cdr = cdr_model()
    for zone, site_ids in zones.items():
        tz = zoneinfo.ZoneInfo(zone)
        start = local_midnight(first_month, tz)
        end = local_midnight(add_months(last_month, 1), tz)
        site_q = Q(station__location_id__in=[s for s in site_ids if s is not None])
        if None in site_ids:
            site_q |= Q(station__location__isnull=True)
        for row in (
            ChargingSession.objects.filter(site_q, started_at__gte=start, started_at__lt=end)
            .annotate(month=TruncMonth("started_at", tzinfo=tz))
            .values("month", "station__location_id")
            .annotate(n=Count("id"), energy=Sum("energy_wh"))
            .order_by()
        ):
            c = cell(row["station__location_id"], row["month"].strftime("%Y-%m"))
            c["sessions"] += row["n"]
            c["energy_wh"] += row["energy"] or ZERO
        if cdr is not None:
            # The CDR's own site snapshot wins; older CDRs without one fall back to the station's.
            cdrs = cdr.objects.annotate(
                site=Coalesce("location_id", "session__station__location_id")
            )
            cdr_q = Q(site__in=[s for s in site_ids if s is not None])
            if None in site_ids:
                cdr_q |= Q(site__isnull=True)
            for row in (
                cdrs.filter(cdr_q, start__gte=start, start__lt=end)
                .annotate(month=TruncMonth("start", tzinfo=tz))
                .values("month", "site", "currency")
                .annotate(total=Sum("total_cost_excl_vat"))
                .order_by()
            ):
                c = cell(row["site"], row["month"].strftime("%Y-%m"))
                c["revenue"][row["currency"]] += row["total"] or ZERO
        else:
            for started, site, snapshot, cost in ChargingSession.objects.filter(
                site_q, started_at__gte=start, started_at__lt=end, live_cost__isnull=False
            ).values_list("started_at", "station__location_id", "tariff_snapshot", "live_cost"):
                c = cell(site, started.astimezone(tz).strftime("%Y-%m"))
                c["revenue"][_session_currency(snapshot) or "?"] += cost
    currencies = sorted({cur for c in cells.values() for cur in c["revenue"]})
    rows = []
    for (site, month), c in sorted(cells.items(), key=lambda kv: (names[kv[0][0]], kv[0][1])):
        rows.append(
            {
                "site": names[site],
                "month": month,
                "sessions": c["sessions"],
                "energy_kwh": kwh(c["energy_wh"]),
                **{
                    f"revenue_{cur}": money_total(c["revenue"].get(cur, ZERO), cur)
                    for cur in currencies
                },
            }
        )
    return {
        "months": [m.strftime("%Y-%m") for m in months],
        "currencies": currencies,
        "rows": rows,
        **revenue_source(),
    }


# --- sessions per token -------------------------------------------------------------------------


def sessions_per_token(*, start: datetime, end: datetime) -> dict[str, Any]:
    """Sessions, kWh and revenue per token over [start, end), by session start; tags that
    matched no known token are listed as presented."""
    base = ChargingSession.objects.filter(started_at__gte=start, started_at__lt=end)
    known = (
        base.filter(id_token__isnull=False)
        .values(
            "id_token_id",
            "id_token__uid",
            "id_token__visual_number",
            "id_token__type",
            "id_token__account__name",
            "id_token__driver__name",
        )
        .annotate(
            n=Count("id"), energy=Sum("energy_wh"), first=Min("started_at"), last=Max("started_at")
        )
        .order_by()
    )
    unknown = (
        base.filter(id_token__isnull=True)
        .values("id_tag")
        .annotate(
            n=Count("id"), energy=Sum("energy_wh"), first=Min("started_at"), last=Max("started_at")
        )
        .order_by()
    )
    revenue: dict[Any, dict[str, Decimal]] = defaultdict(lambda: defaultdict(lambda: ZERO))
    cdr = cdr_model()
    if cdr is not None:
        for token_id, token_uid, currency, total in (
            cdr.objects.filter(start__gte=start, start__lt=end)
            .values("id_token_id", "token_uid", "currency")
            .annotate(total=Sum("total_cost_excl_vat"))
            .order_by()
            .values_list("id_token_id", "token_uid", "currency", "total")
        ):
            revenue[token_id or token_uid.lower()][currency] += total or ZERO
    else:
        for token_id, tag, snapshot, cost in base.filter(live_cost__isnull=False).values_list(
            "id_token_id", "id_tag", "tariff_snapshot", "live_cost"
        ):
            revenue[token_id or tag.lower()][_session_currency(snapshot) or "?"] += cost
    currencies = sorted({cur for per in revenue.values() for cur in per})

    def row(key: Any, **fields: Any) -> dict[str, Any]:
        money = revenue.get(key, {})
        return {
            **fields,
            **{f"revenue_{cur}": money_total(money.get(cur, ZERO), cur) for cur in currencies},
        }

    rows = [
        row(
            r["id_token_id"],
            token=r["id_token__uid"],
            visual_number=r["id_token__visual_number"],
            type=r["id_token__type"],
            account=r["id_token__account__name"] or "",
            driver=r["id_token__driver__name"] or "",
            sessions=r["n"],
            energy_kwh=kwh(r["energy"]),
            first_session=iso(r["first"]),
            last_session=iso(r["last"]),
            token_url=admin_url("charging_idtoken_change", r["id_token_id"]),
        )
        for r in known
    ]
    rows += [
        row(
            (r["id_tag"] or "").lower(),
            token=r["id_tag"],
            visual_number="",
            type="(unknown token)" if r["id_tag"] else "(no token)",
            account="",
            driver="",
            sessions=r["n"],
            energy_kwh=kwh(r["energy"]),
            first_session=iso(r["first"]),
            last_session=iso(r["last"]),
            token_url="",
        )
        for r in unknown
    ]
    rows.sort(key=lambda r: (-r["sessions"], r["token"] or ""))
    return {"rows": rows, "currencies": currencies, **revenue_source()}

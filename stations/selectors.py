"""Non-trivial reads of the network: station and connector counts, alerts, status timelines,
connection intervals and the uptime report.

Plain, JSON-ready results (strings for Decimals, ISO 8601 for times); query counts are constant
in the number of stations.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import models
from django.db.models import Count, Max, OuterRef, Q, Subquery
from django.utils import timezone

from cpo.lib.formatting import KWH, admin_url, epoch_ms, iso
from stations.models import (
    AuthLockout,
    ChargingStation,
    Connector,
    ConnectorStatusEvent,
    Location,
    StationConnection,
)

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
NO_SITE = "(no site)"

Interval = tuple[datetime, datetime]


# --- the network at a glance --------------------------------------------------------------------


def station_counts() -> dict[str, int]:
    """Stations in total, online, offline, and faulted (the station or any connector)."""
    stations = ChargingStation.objects.aggregate(
        total=Count("id"), online=Count("id", filter=Q(is_online=True))
    )
    faulted_ids = set(
        Connector.objects.filter(status="Faulted").values_list("station_id", flat=True)
    ) | set(ChargingStation.objects.filter(status="Faulted").values_list("pk", flat=True))
    return {
        "total": stations["total"],
        "online": stations["online"],
        "offline": stations["total"] - stations["online"],
        "faulted": len(faulted_ids),
    }


def connectors_by_status() -> dict[str, int]:
    """Connectors per last reported status; those of an offline station count as "Offline"
    (a connector of an offline station is not usable whatever it last reported)."""
    connectors: dict[str, int] = defaultdict(int)
    for online, status, count in (
        Connector.objects.values_list("station__is_online", "status")
        .annotate(n=Count("id"))
        .order_by()
    ):
        connectors[(status or "Unknown") if online else "Offline"] += count
    return dict(sorted(connectors.items()))


def network_alerts(*, limit: int = 25) -> dict[str, Any]:
    """Accepted stations that are offline and faulted connectors: the first `limit` of each,
    newest first, and how many there are."""
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

    lockouts = AuthLockout.objects.filter(lifted_at=None, locked_until__gt=timezone.now())
    counts["auth_lockout"] = lockouts.count()
    for lockout in lockouts[:limit]:
        items.append(
            {
                "kind": "auth_lockout",
                "severity": "error",
                "title": f"{lockout.get_kind_display()} {lockout.value} locked out",
                "detail": f"{lockout.failures} failed authentications; refused until "
                f"{lockout.locked_until:%Y-%m-%d %H:%M} UTC",
                "since": iso(lockout.locked_at),
                "url": admin_url("stations_authlockout_changelist"),
            }
        )
    return {"items": items, "counts": counts}


def sites_by_time_zone() -> dict[str, Any]:
    """Site ids grouped by their IANA time zone, and their names; stations without a site
    count as site None in the panel's time zone. Reports per site and month run one query
    per time zone with it."""
    zones: dict[str, list[int | None]] = defaultdict(list)
    names: dict[int | None, str] = {None: NO_SITE}
    for pk, name, zone in Location.objects.values_list("pk", "name", "time_zone"):
        zones[zone].append(pk)
        names[pk] = name
    zones[settings.PANEL_TIME_ZONE].append(None)
    return {"zones": dict(zones), "names": names}


# --- one station --------------------------------------------------------------------------------


def station_state(*, station: ChargingStation) -> dict[str, Any]:
    """A station's connection and its connectors as they are now (re-read from the database).

    Each connector row carries its (evse_id, connector_id) address; its status is "Offline"
    while the station is, whatever the connector last reported.
    """
    station.refresh_from_db()
    connectors = station.connectors.select_related("evse").order_by("evse__evse_id", "connector_id")
    return {
        "identity": station.identity,
        "is_online": station.is_online,
        "last_seen_at": iso(station.last_seen_at),
        "connected_at": iso(station.connected_at),
        "status": station.status,
        "connectors": [
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
            }
            for c in connectors
        ],
    }


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
        (c.evse.evse_id, c.connector_id): f"{c.evse.evse_id}/{c.connector_id}" for c in connectors
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
    online = online_intervals(station_ids=[station.pk], start=start, end=end).get(station.pk, [])
    for lo, hi in online:
        segments.append({"row": "Connection", "status": "Online", "from": lo, "to": hi})
    for lo, hi in offline_gaps(intervals=online, start=start, end=end):
        segments.append({"row": "Connection", "status": "Offline", "from": lo, "to": hi})
    return {
        "rows": rows,
        "start": epoch_ms(start),
        "end": epoch_ms(end),
        "segments": [
            {
                "row": s["row"],
                "status": s["status"],
                "from": epoch_ms(s["from"]),
                "to": epoch_ms(s["to"]),
            }
            for s in sorted(segments, key=lambda s: (rows.index(s["row"]), s["from"]))
        ],
    }


# --- connection history -------------------------------------------------------------------------


def online_intervals(
    *, station_ids: list[int], start: datetime, end: datetime
) -> dict[int, list[Interval]]:
    """Per station, the merged intervals within [start, end) in which it held a connection.

    A connection row left open by a process that died counts until the station was last seen,
    unless the station still is online.
    """
    online_now: dict[int, bool] = {}
    last_seen: dict[int, datetime | None] = {}
    for pk, is_online, seen in ChargingStation.objects.filter(pk__in=station_ids).values_list(
        "pk", "is_online", "last_seen_at"
    ):
        online_now[pk] = is_online
        last_seen[pk] = seen
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
    intervals: dict[int, list[Interval]] = defaultdict(list)
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


def offline_gaps(*, intervals: list[Interval], start: datetime, end: datetime) -> list[Interval]:
    """The parts of [start, end) outside the given (sorted, merged) online intervals."""
    gaps = []
    cursor = start
    for lo, hi in intervals:
        if lo > cursor:
            gaps.append((cursor, lo))
        cursor = max(cursor, hi)
    if cursor < end:
        gaps.append((cursor, end))
    return gaps


# --- uptime -------------------------------------------------------------------------------------


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
class _UptimeRow:
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
    for station_id, moment, evse_id, connector_id, reported in (
        ConnectorStatusEvent.objects.filter(
            station_id__in=station_ids, timestamp__gte=start, timestamp__lt=end
        )
        .order_by("station_id", "timestamp", "id")
        .values_list("station_id", "timestamp", "evse_id", "connector_id", "status")
    ):
        events[station_id].append((moment, evse_id, connector_id, reported))
    online = online_intervals(station_ids=station_ids, start=start, end=end)
    per_station_connectors: dict[int, list[Connector]] = defaultdict(list)
    for c in connectors:
        per_station_connectors[c.station_id].append(c)

    result: list[dict[str, Any]] = []
    for station in stations:
        site = station.location.name if station.location else ""
        mine = per_station_connectors[station.pk]
        status = {(c.evse.evse_id, c.connector_id): c.initial_status for c in mine}  # type: ignore[attr-defined]  # annotated above
        station_status = station.initial_status or ""
        total = _UptimeRow(site, station.identity, "")
        rows = {key: _UptimeRow(site, station.identity, f"{key[0]}/{key[1]}") for key in status}
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

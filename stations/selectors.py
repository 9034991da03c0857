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
from django.utils.translation import gettext, gettext_lazy

from cpo.lib.formatting import KWH, admin_url, epoch_ms, iso, local_text, panel_tz
from stations.models import (
    AuthLockout,
    ChargingStation,
    Connector,
    ConnectorStatusEvent,
    Location,
    OcppMessage,
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
                "title": gettext("%(station)s offline") % {"station": station.identity},
                # The dashboard's zone (PANEL_TIME_ZONE), named as everywhere on the panel.
                "detail": (
                    gettext("last seen %(when)s") % {"when": local_text(since, panel_tz())}
                    if since
                    else gettext("never seen")
                ),
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
                "title": gettext("%(station)s %(connector)s faulted")
                % {
                    "station": connector.station.identity,
                    "connector": f"{connector.evse.evse_id}/{connector.connector_id}",
                },
                "detail": connector.error_code or connector.info or gettext("Faulted"),
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
                f"{local_text(lockout.locked_until, panel_tz())}",
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


# --- the map of sites --------------------------------------------------------------------------

# A station's state on the map, best first: a site shows the worst of its stations'. Offline is
# the worst: nothing at an unreachable station can be used, seen or commanded.
MAP_STATUSES: dict[str, Any] = {
    "available": gettext_lazy("Available"),
    "charging": gettext_lazy("Charging"),
    "unavailable": gettext_lazy("Unavailable"),
    "faulted": gettext_lazy("Faulted"),
    "offline": gettext_lazy("Offline"),
}
# Connector states of a connector in use (a session, or a driver at it).
IN_USE_STATUSES = USABLE_STATUSES - {"Available", "Reserved"}
NO_STATIONS = "empty"


def station_map_status(
    *, is_online: bool, station_status: str, connector_statuses: list[str]
) -> str:
    """One station's state for the map: offline, faulted (the station or a connector),
    unavailable (every connector), charging (a connector in use), else available."""
    if not is_online:
        return "offline"
    if station_status == "Faulted" or "Faulted" in connector_statuses:
        return "faulted"
    if connector_statuses and all(s == "Unavailable" for s in connector_statuses):
        return "unavailable"
    if any(s in IN_USE_STATUSES for s in connector_statuses):
        return "charging"
    return "available"


def sites_map() -> dict[str, Any]:
    """Every site with its stations and their state, the site's state the worst of them.

    Two queries whatever the size of the network. Sites without coordinates are listed too
    (`has_position` false): the panel shows them beside the map, not on it."""
    rank = {status: index for index, status in enumerate(MAP_STATUSES)}
    connectors: dict[int, list[tuple[str, str]]] = defaultdict(list)
    for station_id, evse_id, connector_id, status in (
        Connector.objects.filter(station__location__isnull=False)
        .order_by("evse__evse_id", "connector_id")
        .values_list("station_id", "evse__evse_id", "connector_id", "status")
    ):
        connectors[station_id].append((f"{evse_id}/{connector_id}", status or "Unknown"))
    stations: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for station in ChargingStation.objects.filter(location__isnull=False).only(
        "pk", "identity", "location_id", "is_online", "status"
    ):
        own = connectors[station.pk]
        status = station_map_status(
            is_online=station.is_online,
            station_status=station.status,
            connector_statuses=[s for _label, s in own],
        )
        stations[station.location_id or 0].append(  # filtered: never 0
            {
                "identity": station.identity,
                "status": status,
                "status_label": str(MAP_STATUSES[status]),
                "connectors": [
                    {"label": label, "status": s if station.is_online else "Offline"}
                    for label, s in own
                ],
                "url": admin_url("stations_chargingstation_change", station.pk),
            }
        )
    sites = []
    for site in Location.objects.order_by("name", "pk"):
        own_stations = stations[site.pk]
        worst = max((s["status"] for s in own_stations), key=rank.__getitem__, default=None)
        has_position = site.latitude is not None and site.longitude is not None
        sites.append(
            {
                "id": site.pk,
                "name": site.name,
                "address": ", ".join(filter(None, [site.address, site.postal_code, site.city])),
                "has_position": has_position,
                "lat": float(site.latitude) if has_position else None,  # type: ignore[arg-type]
                "lng": float(site.longitude) if has_position else None,  # type: ignore[arg-type]
                "status": worst or NO_STATIONS,
                "status_label": str(MAP_STATUSES[worst]) if worst else gettext("No stations"),
                "counts": {
                    status: sum(1 for s in own_stations if s["status"] == status)
                    for status in MAP_STATUSES
                },
                "stations": own_stations,
                "url": admin_url("stations_location_change", site.pk),
            }
        )
    return {
        "sites": sites,
        "statuses": {key: str(label) for key, label in MAP_STATUSES.items()},
        "on_map": sum(1 for site in sites if site["has_position"]),
    }


# --- one station --------------------------------------------------------------------------------


def station_state(*, station: ChargingStation) -> dict[str, Any]:
    """A station's connection and its connectors as they are now (re-read from the database).

    Each connector row carries its (evse_id, connector_id) address; its status is "Offline"
    while the station is, whatever the connector last reported.
    """
    station.refresh_from_db()
    # The vendor's error code is only on the report (the connector row keeps code and info):
    # the latest report of each connector, in the same query.
    latest_report = ConnectorStatusEvent.objects.filter(
        station_id=station.pk,
        evse_id=OuterRef("evse__evse_id"),
        connector_id=OuterRef("connector_id"),
    ).order_by("-timestamp", "-pk")
    connectors = (
        station.connectors.select_related("evse")
        .annotate(
            vendor_error_code=Subquery(latest_report.values("vendor_error_code")[:1]),
            vendor_id=Subquery(latest_report.values("vendor_id")[:1]),
        )
        .order_by("evse__evse_id", "connector_id")
    )
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
                "error_code": "" if c.error_code == "NoError" else c.error_code,
                "info": c.info,
                "vendor_error_code": c.vendor_error_code or "",
                "vendor_id": c.vendor_id or "",
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


def station_recent_messages(*, station: ChargingStation, limit: int = 20) -> list[dict[str, Any]]:
    """A station's latest OCPP messages (kind, action, id; never the frame, which may carry
    secrets), newest first."""
    kinds = {2: "CALL", 3: "CALLRESULT", 4: "CALLERROR"}
    return [
        {
            "created_at": iso(m.created_at),
            "direction": m.get_direction_display(),
            "kind": kinds.get(m.message_type or 0, "?"),
            "action": m.action,
            "message_id": m.message_id,
            "is_error": m.is_error,
        }
        for m in OcppMessage.objects.filter(station=station)
        .only("created_at", "direction", "message_type", "action", "message_id", "is_error")
        .order_by("-created_at", "-pk")[:limit]
    ]

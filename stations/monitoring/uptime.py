"""Uptime per EVSE, site and network, computed in SQL from the status and connection history.

The timeline of an EVSE is made of rows the OCPP edge already writes, so the hot path writes
nothing more for uptime:

- its **OCPP status** (source: the station's StatusNotification, `ConnectorStatusEvent`, at
  the station's timestamp): the latest report of any connector of the EVSE holds until the
  next one; a station-level report (connector 0, 1.6) of Faulted or Unavailable takes every
  EVSE of the station down with it;
- its **online flag** (source: our own connection history, `StationConnection`): the station
  is online while it holds a websocket; a connection left open by a process that died counts
  until the station was last seen (as `stations.selectors.online_intervals` reads it);
- **approved** excluded time (`UptimeExclusion`, four eyes) of the EVSE, its station, its site
  or the network.

An EVSE is *measured* from its first status report on (before it, it was not in service) and
*in outage* while offline or while its status (or its station's) is Faulted or Unavailable.

One query does the whole network: every change of the three inputs becomes a +1/-1 step of a
counter (status down, online, excluded), a running SUM() OVER each EVSE's time order gives
the counters of every segment and LEAD() its end; each segment is clipped to the buckets
(days, months) it overlaps (GREATEST/LEAST) and summed per EVSE and bucket. Of the status
history only the reports that put a port down are read one by one (a partial index finds
them; the next report of that port, from an index, ends them), with one look-up per port for
its report before the period and its first one: the cost follows the faults and the ports,
not the traffic. Python sees one row per EVSE and bucket, never an event. The SQL is the same
on PostgreSQL and SQLite (both have window functions); only the epoch conversion and
GREATEST/LEAST are spelled differently.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.db import connection, transaction
from django.db.models import Max
from django.utils import timezone

from cpo.lib.formatting import add_months, local_midnight
from stations.models import (
    ChargingStation,
    Connector,
    ConnectorStatusEvent,
    Evse,
    StationConnection,
)
from stations.monitoring.models import UptimeExclusion

# OCPP statuses (1.6 ChargePointStatus, 2.0.1 ConnectorStatusEnumType) in which a port is down;
# OCPI shows them as INOPERATIVE (Unavailable) and OUTOFORDER (Faulted).
DOWN_STATUSES = ("Faulted", "Unavailable")
# The UK regulations' rapid charge point: 50 kW or more.
RAPID_POWER_W = 50_000
DEFAULT_SLA_TARGET = 97.0
NEVI_TARGET = 97.0
UK_TARGET = 99.0


@dataclass
class Seconds:
    """What one EVSE spent of one bucket, in seconds."""

    measured: float = 0.0  # in service: from the EVSE's first status report on
    outage: float = 0.0  # offline, or status Faulted / Unavailable
    outage_excluded: float = 0.0  # the part of `outage` inside approved excluded time
    excluded: float = 0.0  # all approved excluded time (up or down)
    offline: float = 0.0  # no connection (OCPI: UNKNOWN)
    down_online: float = 0.0  # connected and Faulted / Unavailable (OCPI: OUTOFORDER / INOPERATIVE)

    def add(self, other: Seconds) -> None:
        for name in self.__dataclass_fields__:
            setattr(self, name, getattr(self, name) + getattr(other, name))


@dataclass
class EvseInfo:
    pk: int
    station_id: int
    station: str
    evse_id: int
    uid: str
    site_id: int | None
    site: str
    max_power_w: int
    buckets: list[Seconds] = field(default_factory=list)

    @property
    def label(self) -> str:
        return f"{self.station} EVSE {self.evse_id}"

    def total(self) -> Seconds:
        total = Seconds()
        for bucket in self.buckets:
            total.add(bucket)
        return total


def _epoch(column: str) -> str:
    if connection.vendor == "postgresql":
        return f"EXTRACT(EPOCH FROM {column})::float8"
    # SQLite stores UTC text; julianday reads it (microseconds included).
    return f"((julianday({column}) - 2440587.5) * 86400.0)"


def _num(value: float) -> str:
    # Our own floats (epoch seconds), never user input.
    return f"CAST({float(value)!r} AS DOUBLE PRECISION)"


def _greatest(a: str, b: str) -> str:
    return f"GREATEST({a}, {b})" if connection.vendor == "postgresql" else f"MAX({a}, {b})"


def _least(a: str, b: str) -> str:
    return f"LEAST({a}, {b})" if connection.vendor == "postgresql" else f"MIN({a}, {b})"


def _ts(moment: datetime) -> float:
    return moment.timestamp()


def _sql(*, bounds: list[datetime], scope: str) -> str:
    # Unscoped (the whole network), the history is read without a join to the EVSEs.
    event_scope = "" if scope == "1 = 1" else "AND c.station_id IN (SELECT station FROM stations)"
    start, end = _ts(bounds[0]), _ts(bounds[-1])
    s, e = _num(start), _num(end)
    buckets = ", ".join(
        f"({i}, {_num(_ts(lo))}, {_num(_ts(hi))})"
        for i, (lo, hi) in enumerate(zip(bounds, bounds[1:], strict=False))
    )
    down = ", ".join(f"'{status}'" for status in DOWN_STATUSES)
    evse_t = Evse._meta.db_table
    station_t = ChargingStation._meta.db_table
    event_t = ConnectorStatusEvent._meta.db_table
    conn_t = StationConnection._meta.db_table
    excl_t = UptimeExclusion._meta.db_table
    ep = _epoch
    # A connection's end: its disconnect; a row left open counts until now when it is the
    # station's current connection, else until the station was last seen.
    conn_end = _least(
        f"""CASE
            WHEN c.disconnected_at IS NOT NULL THEN {ep("c.disconnected_at")}
            WHEN st.is_online AND c.id = (
                SELECT MAX(c2.id) FROM {conn_t} c2
                WHERE c2.station_id = c.station_id AND c2.disconnected_at IS NULL
            ) THEN {e}
            ELSE {_greatest(ep("c.connected_at"), f"COALESCE({ep('st.last_seen_at')}, 0)")}
        END""",  # noqa: S608  # table names and our own numbers, never input
        e,
    )
    first_report = (
        f"SELECT c.timestamp FROM {event_t} c WHERE c.station_id = x.station "  # noqa: S608
        "AND c.evse_id = x.no AND c.timestamp < %(end)s ORDER BY c.timestamp LIMIT 1"
    )
    # Interpolated: table names, our own floats and the scope's integers; times are parameters.
    return f"""
WITH buckets(idx, lo, hi) AS (VALUES {buckets}),
evses AS (
    SELECT e.id AS evse, e.station_id AS station, e.evse_id AS no, s.location_id AS site
    FROM {evse_t} e JOIN {station_t} s ON s.id = e.station_id
    WHERE {scope}
),
stations AS (SELECT DISTINCT station FROM evses),
-- Reports that put a port (no > 0) or a whole station (no = 0) down, in the period, and the
-- report before the period when it was one; each is down until that port's next report.
-- Only these rows are read one by one (the partial index on down statuses finds them), so
-- the cost follows the faults, not the traffic.
down_reports AS (
    SELECT c.station_id AS station, c.evse_id AS no, c.timestamp AS ts, c.id AS id
    FROM {event_t} c
    WHERE c.status IN ({down}) AND c.timestamp >= %(start)s AND c.timestamp < %(end)s
        {event_scope}
    UNION ALL
    SELECT b.station, b.no, %(start)s, 0 FROM (
        SELECT k.station, k.no, (
            SELECT c.status FROM {event_t} c
            WHERE c.station_id = k.station AND c.evse_id = k.no AND c.timestamp < %(start)s
            ORDER BY c.timestamp DESC, c.id DESC LIMIT 1
        ) AS status
        FROM (
            SELECT station, no FROM evses UNION ALL SELECT station, 0 FROM stations
        ) k
    ) b WHERE b.status IN ({down})
),
down AS (
    SELECT d.station, d.no, {ep("d.ts")} AS lo, COALESCE((
        SELECT {ep("c.timestamp")} FROM {event_t} c
        WHERE c.station_id = d.station AND c.evse_id = d.no
            AND c.timestamp >= d.ts AND (c.timestamp > d.ts OR c.id > d.id)
            AND c.timestamp < %(end)s
        ORDER BY c.timestamp, c.id LIMIT 1
    ), {e}) AS hi
    FROM down_reports d
),
-- A port is measured from its first report on (the period's start if it came before).
known AS (SELECT x.evse, {ep("(" + first_report + ")")} AS t FROM evses x),
conns AS (
    SELECT c.station_id AS station,
        {_greatest(ep("c.connected_at"), s)} AS lo,
        {conn_end} AS hi
    FROM {conn_t} c
    JOIN stations y ON c.station_id = y.station
    JOIN {station_t} st ON st.id = c.station_id
    WHERE c.connected_at < %(end)s
        AND (c.disconnected_at IS NULL OR c.disconnected_at > %(start)s)
),
excl AS (
    SELECT x.evse,
        {_greatest(ep("u.starts_at"), s)} AS lo, {_least(ep("u.ends_at"), e)} AS hi
    FROM {excl_t} u JOIN evses x ON (
        u.evse_id = x.evse OR u.station_id = x.station OR u.location_id = x.site
        OR (u.evse_id IS NULL AND u.station_id IS NULL AND u.location_id IS NULL)
    )
    WHERE u.state = 'approved' AND u.starts_at < %(end)s AND u.ends_at > %(start)s
),
steps AS (
    SELECT x.evse, d.lo AS t, 1 AS dd, 0 AS don, 0 AS dx, 0 AS dk
    FROM down d JOIN evses x ON x.station = d.station AND (d.no = 0 OR x.no = d.no)
    WHERE d.hi > d.lo
    UNION ALL SELECT x.evse, d.hi, -1, 0, 0, 0
    FROM down d JOIN evses x ON x.station = d.station AND (d.no = 0 OR x.no = d.no)
    WHERE d.hi > d.lo
    UNION ALL SELECT evse, CASE WHEN t < {s} THEN {s} ELSE t END, 0, 0, 0, 1
    FROM known WHERE t IS NOT NULL
    UNION ALL SELECT x.evse, c.lo, 0, 1, 0, 0 FROM conns c JOIN evses x ON x.station = c.station
        WHERE c.hi > c.lo
    UNION ALL SELECT x.evse, c.hi, 0, -1, 0, 0 FROM conns c JOIN evses x ON x.station = c.station
        WHERE c.hi > c.lo
    UNION ALL SELECT evse, lo, 0, 0, 1, 0 FROM excl WHERE hi > lo
    UNION ALL SELECT evse, hi, 0, 0, -1, 0 FROM excl WHERE hi > lo
    UNION ALL SELECT evse, {e}, 0, 0, 0, 0 FROM evses
),
points AS (
    SELECT evse, t, SUM(dd) AS dd, SUM(don) AS don, SUM(dx) AS dx, SUM(dk) AS dk
    FROM steps GROUP BY evse, t
),
run AS (
    SELECT evse, t,
        LEAD(t) OVER (PARTITION BY evse ORDER BY t) AS t2,
        SUM(dd) OVER w AS down, SUM(don) OVER w AS online,
        SUM(dx) OVER w AS excluded, SUM(dk) OVER w AS known
    FROM points
    WINDOW w AS (PARTITION BY evse ORDER BY t ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
),
segments AS (
    SELECT r.evse, b.idx, {_least("r.t2", "b.hi")} - {_greatest("r.t", "b.lo")} AS span,
        CASE WHEN r.down > 0 OR r.online <= 0 THEN 1 ELSE 0 END AS out,
        r.online, r.down, r.excluded
    FROM run r JOIN buckets b ON r.t < b.hi AND r.t2 > b.lo
    WHERE r.t2 IS NOT NULL AND r.known > 0
)
SELECT evse, idx,
    SUM(span),
    SUM(CASE WHEN out = 1 THEN span ELSE 0 END),
    SUM(CASE WHEN out = 1 AND excluded > 0 THEN span ELSE 0 END),
    SUM(CASE WHEN excluded > 0 THEN span ELSE 0 END),
    SUM(CASE WHEN online <= 0 THEN span ELSE 0 END),
    SUM(CASE WHEN online > 0 AND down > 0 THEN span ELSE 0 END)
FROM segments
GROUP BY evse, idx
"""  # noqa: S608


def evse_uptime(
    *,
    bounds: list[datetime],
    location_id: int | None = None,
    station_id: int | None = None,
    evse_ids: list[int] | None = None,
) -> list[EvseInfo]:
    """Per EVSE of the scope, its `Seconds` in each bucket [bounds[i], bounds[i+1]).

    `bounds` are increasing; the last one is cut at now (the future is not measured), and
    buckets after now stay empty. Two queries whatever the network's size: the EVSEs (with
    their site and power), and the aggregation.
    """
    now = timezone.now()
    bounds = [min(b, now) for b in bounds]
    evses = Evse.objects.all()
    conditions = ["1 = 1"]
    if location_id is not None:
        evses = evses.filter(station__location_id=location_id)
        conditions.append(f"s.location_id = {int(location_id)}")
    if station_id is not None:
        evses = evses.filter(station_id=station_id)
        conditions.append(f"e.station_id = {int(station_id)}")
    if evse_ids is not None:
        evses = evses.filter(pk__in=evse_ids)
        conditions.append(f"e.id IN ({', '.join(str(int(i)) for i in evse_ids) or 'NULL'})")
    # Lean reads: plain values, and the power per EVSE in a query of its own (a GROUP BY
    # over the joined rows would group by every column of three tables).
    power = dict(
        Connector.objects.filter(evse__in=evses.values("pk"))
        .values("evse_id")
        .annotate(power=Max("max_power_w"))
        .values_list("evse_id", "power")
    )
    infos: dict[int, EvseInfo] = {}
    for pk, station, identity, number, uid, site_id, site in evses.order_by(
        "station__location__name", "station__identity", "evse_id"
    ).values_list(
        "pk",
        "station_id",
        "station__identity",
        "evse_id",
        "uid",
        "station__location_id",
        "station__location__name",
    ):
        infos[pk] = EvseInfo(
            pk=pk,
            station_id=station,
            station=identity,
            evse_id=number,
            uid=uid,
            site_id=site_id,
            site=site or "",
            max_power_w=power.get(pk) or 0,
            buckets=[Seconds() for _ in bounds[1:]],
        )
    if not infos or bounds[-1] <= bounds[0]:
        return list(infos.values())
    # Buckets that start at or after now are empty; the query needs non-empty ones only.
    live = [b for i, b in enumerate(bounds) if i == 0 or b > bounds[i - 1]]
    sql = _sql(bounds=live, scope=" AND ".join(conditions))
    adapt = connection.ops.adapt_datetimefield_value
    params = {"start": adapt(live[0]), "end": adapt(live[-1])}
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # The sorts of a month of a large network's history fit in memory with this.
            cursor.execute("SET LOCAL work_mem = '64MB'")
        cursor.execute(sql, params)
        for evse_pk, idx, *values in cursor.fetchall():
            info = infos.get(evse_pk)
            if info is not None:
                info.buckets[bounds.index(live[idx])] = Seconds(*(float(v or 0) for v in values))
    return list(infos.values())


# --- the reports -------------------------------------------------------------------------------


def _minutes(seconds: float) -> float:
    return round(seconds / 60.0, 2)


def _pct(numerator: float, denominator: float) -> float | None:
    return round(100.0 * numerator / denominator, 3) if denominator > 0 else None


def sla_uptime(seconds: Seconds) -> float | None:
    """A contract's uptime: excluded time leaves the measurement, on both sides.

    uptime = (M - X - (O - Ox)) / (M - X), with M the measured time, X the approved excluded
    time, O the outage and Ox the outage inside excluded time.
    """
    base = seconds.measured - seconds.excluded
    return _pct(base - (seconds.outage - seconds.outage_excluded), base)


def nevi_uptime(seconds: Seconds) -> float | None:
    """23 CFR 680.116(b)(3): mu = ((T - (T_outage - T_excluded)) / T) x 100, in minutes, with T
    the minutes of the window the port was in service (525,600 for a whole 365-day year)."""
    total = _minutes(seconds.measured)
    outage = _minutes(seconds.outage) - _minutes(seconds.outage_excluded)
    return _pct(total - outage, total)


def uk_reliability(seconds: Seconds) -> float | None:
    """The Public Charge Point Regulations 2023, reg. 7(3)-(4): reliable unless its OCPI EVSE
    status is INOPERATIVE or OUTOFORDER; UNKNOWN (offline) is "ineligible for measurement" and
    counts as reliable. The regulation has no excluded time."""
    return _pct(seconds.measured - seconds.down_online, seconds.measured)


def _evse_columns(info: EvseInfo) -> dict[str, Any]:
    return {
        "site": info.site,
        "station": info.station,
        "evse": info.evse_id,
        "evse_uid": info.uid,
    }


SLA_COLUMNS = [
    "site",
    "station",
    "evse",
    "evse_uid",
    "measured_min",
    "outage_min",
    "excluded_min",
    "excluded_outage_min",
    "counted_outage_min",
    "uptime_pct",
    "meets_target",
]


def _sla_row(seconds: Seconds, target: float) -> dict[str, Any]:
    uptime = sla_uptime(seconds)
    return {
        "measured_min": _minutes(seconds.measured),
        "outage_min": _minutes(seconds.outage),
        "excluded_min": _minutes(seconds.excluded),
        "excluded_outage_min": _minutes(seconds.outage_excluded),
        "counted_outage_min": _minutes(seconds.outage - seconds.outage_excluded),
        "uptime_pct": uptime,
        "meets_target": "" if uptime is None else ("yes" if uptime >= target else "no"),
    }


def sla_report(
    *,
    start: datetime,
    end: datetime,
    target: float = DEFAULT_SLA_TARGET,
    location_id: int | None = None,
    station_id: int | None = None,
) -> dict[str, Any]:
    """A contract SLA over [start, end): per EVSE, per site and for the network."""
    infos = evse_uptime(bounds=[start, end], location_id=location_id, station_id=station_id)
    rows: list[dict[str, Any]] = []
    sites: dict[str, Seconds] = {}
    network = Seconds()
    for info in infos:
        total = info.total()
        rows.append({**_evse_columns(info), **_sla_row(total, target)})
        sites.setdefault(info.site, Seconds()).add(total)
        network.add(total)
    return {
        "report": "sla",
        "start": start.isoformat(),
        "end": end.isoformat(),
        "target_pct": target,
        "rows": rows,
        "sites": [{"site": name, **_sla_row(s, target)} for name, s in sorted(sites.items())],
        "network": _sla_row(network, target),
        "evses_below_target": sum(1 for r in rows if r["meets_target"] == "no"),
    }


NEVI_COLUMNS = [
    "site",
    "station",
    "evse",
    "evse_uid",
    "month",
    "month_min",
    "month_outage_min",
    "month_excluded_min",
    "month_uptime_pct",
    "rolling_min",
    "rolling_outage_min",
    "rolling_excluded_min",
    "rolling_uptime_pct",
    "meets_97",
]


def nevi_report(
    *, month: date, tz: Any, location_id: int | None = None, station_id: int | None = None
) -> dict[str, Any]:
    """23 CFR 680.116(b) for `month` (months in `tz`): per port (EVSE), that month's figure
    and the rolling one over the twelve months ending with it; T_outage and T_excluded in
    minutes, T_excluded being the outage inside approved excluded time."""
    first = add_months(month.replace(day=1), -11)
    bounds = [local_midnight(add_months(first, i), tz) for i in range(13)]
    infos = evse_uptime(bounds=bounds, location_id=location_id, station_id=station_id)
    rows = []
    for info in infos:
        last = info.buckets[-1]
        rolling = info.total()
        rolling_uptime = nevi_uptime(rolling)
        rows.append(
            {
                **_evse_columns(info),
                "month": month.strftime("%Y-%m"),
                "month_min": _minutes(last.measured),
                "month_outage_min": _minutes(last.outage),
                "month_excluded_min": _minutes(last.outage_excluded),
                "month_uptime_pct": nevi_uptime(last),
                "rolling_min": _minutes(rolling.measured),
                "rolling_outage_min": _minutes(rolling.outage),
                "rolling_excluded_min": _minutes(rolling.outage_excluded),
                "rolling_uptime_pct": rolling_uptime,
                "meets_97": ""
                if rolling_uptime is None
                else ("yes" if rolling_uptime > NEVI_TARGET else "no"),
            }
        )
    return {
        "report": "nevi",
        "month": month.strftime("%Y-%m"),
        "window_start": bounds[0].isoformat(),
        "window_end": bounds[-1].isoformat(),
        "rows": rows,
        "ports_below_97": sum(1 for r in rows if r["meets_97"] == "no"),
    }


UK_COLUMNS = [
    "site",
    "station",
    "evse",
    "evse_uid",
    "max_power_kw",
    "measured_min",
    "not_reliable_min",
    "unknown_min",
    "reliability_pct",
]


def uk_report(*, year: int, tz: Any, location_id: int | None = None) -> dict[str, Any]:
    """The Public Charge Point Regulations 2023, reg. 7, for calendar `year` (in `tz`): the
    network of rapid charge points (an EVSE of 50 kW or more) and each of them."""
    bounds = [local_midnight(date(year, 1, 1), tz), local_midnight(date(year + 1, 1, 1), tz)]
    infos = [
        i
        for i in evse_uptime(bounds=bounds, location_id=location_id)
        if i.max_power_w >= RAPID_POWER_W
    ]
    rows = []
    network = Seconds()
    for info in infos:
        total = info.total()
        network.add(total)
        rows.append(
            {
                **_evse_columns(info),
                "max_power_kw": info.max_power_w / 1000,
                "measured_min": _minutes(total.measured),
                "not_reliable_min": _minutes(total.down_online),
                "unknown_min": _minutes(total.offline),
                "reliability_pct": uk_reliability(total),
            }
        )
    reliability = uk_reliability(network)
    return {
        "report": "uk",
        "year": year,
        "rows": rows,
        "rapid_evses": len(rows),
        "network_reliability_pct": reliability,
        "complies": None if reliability is None else reliability >= UK_TARGET,
    }


def daily_uptime(
    *, days: int, location_id: int | None = None, station_id: int | None = None, tz: Any
) -> dict[str, Any]:
    """The charts of the station and site pages: per EVSE and day (in `tz`), the contract
    uptime of the last `days` days, today included."""
    today = timezone.now().astimezone(tz).date()
    first = today - timedelta(days=days - 1)
    bounds = [local_midnight(first + timedelta(days=i), tz) for i in range(days + 1)]
    infos = evse_uptime(bounds=bounds, location_id=location_id, station_id=station_id)
    series: dict[str, list[float | None]] = defaultdict(list)
    for info in infos:
        series[info.label] = [sla_uptime(bucket) for bucket in info.buckets]
    return {
        "days": [(first + timedelta(days=i)).isoformat() for i in range(days)],
        "series": [{"label": label, "uptime_pct": values} for label, values in series.items()],
    }

"""Non-trivial reads of the charging domain: token, driver and account searches, and the
operator panel's charging reads (live sessions, alerts, energy, curves, sessions per token and
per site and month).

The panel's reads return plain, JSON-ready data (strings for Decimals, ISO 8601 for times);
their query counts are constant in the number of stations and sessions shown.
"""

from __future__ import annotations

import zoneinfo
from collections import defaultdict
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.db import connection
from django.db.models import Count, Max, Min, Q, QuerySet, Sum
from django.db.models.functions import TruncDate, TruncMonth
from django.utils import timezone
from django.utils.formats import number_format
from django.utils.translation import gettext

from cpo.lib.formatting import (
    KWH,
    ZERO,
    add_months,
    admin_url,
    epoch_ms,
    iso,
    kw,
    kwh,
    local_midnight,
    money_list,
    money_total,
    month_start,
    panel_tz,
    url_or_empty,
)
from cpo.lib.money import sum_by_currency
from sessions.models import (
    AuthorizationDecision,
    ChargingSession,
    CustomerAccount,
    Driver,
    IdToken,
    MeterSample,
    normalize_uid,
)
from stations.models import ChargingStation

NO_SITE = "(no site)"


def token_search_q(query: str) -> Q:
    """A token by uid (any case, as 2.0.1 and 1.6 compare them) or by its printed number."""
    query = query.strip()
    return Q(uid_normalized__contains=normalize_uid(query)) | Q(visual_number__icontains=query)


def token_list(*, filters: dict[str, Any] | None = None) -> QuerySet[IdToken]:
    """Tokens for the API and exports. Filters: q (uid or visual number), blocked, type,
    account, driver, group."""
    filters = filters or {}
    tokens = IdToken.objects.select_related("account", "driver", "group").order_by("uid")
    if filters.get("q"):
        tokens = tokens.filter(token_search_q(filters["q"]))
    if filters.get("blocked") is not None:
        tokens = tokens.filter(blocked=filters["blocked"])
    if filters.get("type"):
        tokens = tokens.filter(type=filters["type"])
    for relation in ("account", "driver", "group"):
        if filters.get(relation):
            tokens = tokens.filter(**{f"{relation}_id": filters[relation]})
    return tokens


def driver_list(*, filters: dict[str, Any] | None = None) -> QuerySet[Driver]:
    """Drivers. Filters: q (name, reference, e-mail, or a uid / visual number of their
    tokens), account."""
    filters = filters or {}
    drivers = Driver.objects.select_related("account").annotate(token_count=Count("tokens"))
    if filters.get("q"):
        query = filters["q"].strip()
        drivers = drivers.filter(
            Q(name__icontains=query)
            | Q(reference__iexact=query)
            | Q(email__icontains=query)
            | Q(pk__in=IdToken.objects.filter(token_search_q(query)).values("driver_id"))
        )
    if filters.get("account"):
        drivers = drivers.filter(account_id=filters["account"])
    return drivers.order_by("name", "pk")


def account_list(*, filters: dict[str, Any] | None = None) -> QuerySet[CustomerAccount]:
    """Accounts. Filters: q (name, legal name, reference, VAT id), kind, is_active."""
    filters = filters or {}
    accounts = CustomerAccount.objects.all()
    if filters.get("q"):
        query = filters["q"].strip()
        accounts = accounts.filter(
            Q(name__icontains=query)
            | Q(legal_name__icontains=query)
            | Q(reference__iexact=query)
            | Q(vat_id__iexact=query)
        )
    if filters.get("kind"):
        accounts = accounts.filter(kind=filters["kind"])
    if filters.get("is_active") is not None:
        accounts = accounts.filter(is_active=filters["is_active"])
    return accounts.order_by("name", "pk")


def driver_sessions(*, driver: Driver) -> QuerySet[ChargingSession]:
    """A driver's sessions, newest first: those started with any of their tokens."""
    return (
        ChargingSession.objects.filter(id_token__driver=driver)
        .select_related("station", "id_token")
        .order_by("-started_at")
    )


def session_list(*, filters: dict[str, Any] | None = None) -> QuerySet[ChargingSession]:
    """Sessions for the API, newest first, each with its count of samples that arrived after
    the stop. Filters: status, station (identity), needs_review, estimated, flagged (has any
    anomaly)."""
    filters = filters or {}
    sessions = (
        ChargingSession.objects.select_related("station")
        .annotate(samples_after_stop=Count("samples", filter=Q(samples__after_stop=True)))
        .order_by("-started_at", "-pk")
    )
    if filters.get("status"):
        sessions = sessions.filter(status=filters["status"])
    if filters.get("station"):
        sessions = sessions.filter(station__identity=filters["station"])
    if filters.get("needs_review") is not None:
        review = Q(rating_status=ChargingSession.RatingStatus.NEEDS_REVIEW)
        sessions = sessions.filter(review if filters["needs_review"] else ~review)
    if filters.get("estimated") is not None:
        sessions = sessions.filter(is_estimated=filters["estimated"])
    if filters.get("flagged") is True:
        sessions = sessions.exclude(anomalies=[])
    elif filters.get("flagged") is False:
        sessions = sessions.filter(anomalies=[])
    return sessions


def token_decisions(*, token: IdToken, limit: int = 50) -> list[AuthorizationDecision]:
    return list(
        AuthorizationDecision.objects.filter(id_token=token)
        .select_related("station")
        .order_by("-created_at")[:limit]
    )


# --- the operator panel: live sessions ----------------------------------------------------------


def _active() -> QuerySet[ChargingSession]:
    return ChargingSession.objects.filter(status=ChargingSession.Status.ACTIVE)


def session_row(*, session: ChargingSession, now: datetime) -> dict[str, Any]:
    """One session as the panel lists it; `session.station.location` should be selected."""
    currency = session.live_cost_currency
    return {
        "id": session.pk,
        "station": session.station.identity,
        "station_url": admin_url("stations_chargingstation_change", session.station_id),
        "url": admin_url("charging_chargingsession_change", session.pk),
        "curve_url": url_or_empty("panel:session-curve", session.pk),
        "site": session.station.location.name if session.station.location else "",
        "connector": f"{session.evse_id}/{session.connector_id}",
        "id_tag": session.id_tag,
        "transaction_id": session.transaction_id,
        "started_at": iso(session.started_at),
        "duration_s": int((now - session.started_at).total_seconds()),
        "energy_kwh": kwh(session.energy_wh),
        "power_kw": kw(session.last_power_w),
        "soc": str(session.last_soc) if session.last_soc is not None else None,
        "cost": money_total(session.live_cost, currency) if session.live_cost is not None else None,
        "currency": currency,
    }


def live_sessions(*, now: datetime | None = None, limit: int = 25) -> dict[str, Any]:
    """The active sessions, newest first (the first `limit`), how many there are, and the
    power they draw together."""
    now = now or timezone.now()
    active = _active().select_related("station__location").order_by("-started_at")
    power = active.aggregate(p=Sum("last_power_w"))["p"] or ZERO
    return {
        "total": active.count(),
        "power_kw": kw(power),
        "items": [session_row(session=s, now=now) for s in active[:limit]],
    }


def session_totals(*, start: datetime, end: datetime) -> dict[str, Any]:
    """Sessions started in [start, end] and the energy they delivered."""
    totals = ChargingSession.objects.filter(started_at__gte=start, started_at__lte=end).aggregate(
        energy=Sum("energy_wh"), sessions=Count("id")
    )
    return {"sessions": totals["sessions"], "energy_kwh": kwh(totals["energy"])}


def running_cost_by_currency() -> list[dict[str, str]]:
    """What the active sessions cost so far (their live cost, incl. VAT), per currency."""
    return money_list(
        sum_by_currency(
            (currency, cost)
            for currency, cost in _active()
            .filter(live_cost__isnull=False)
            .values_list("live_cost_currency", "live_cost")
        )
    )


def session_alerts(*, now: datetime | None = None, limit: int = 25) -> dict[str, Any]:
    """Active sessions running longer than PANEL_LONG_SESSION_HOURS, and those that have
    delivered no energy for PANEL_NO_ENERGY_MINUTES: the first `limit` of each, oldest first,
    and how many there are."""
    now = now or timezone.now()
    items: list[dict[str, Any]] = []
    counts: dict[str, int] = {}
    active = _active().select_related("station")

    long_cutoff = now - timedelta(hours=settings.PANEL_LONG_SESSION_HOURS)
    long_running = active.filter(started_at__lt=long_cutoff).order_by("started_at")
    counts["session_long"] = long_running.count()
    for session in long_running[:limit]:
        hours = (now - session.started_at).total_seconds() / 3600
        items.append(
            {
                "kind": "session_long",
                "severity": "warning",
                "title": gettext("Session on %(station)s running %(hours)s h")
                % {"station": session.station.identity, "hours": number_format(hours, 1)},
                "detail": gettext("longer than %(limit)s h; %(energy)s kWh so far")
                % {
                    "limit": settings.PANEL_LONG_SESSION_HOURS,
                    "energy": number_format(kwh(session.energy_wh)),
                },
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
                "title": gettext("No energy on %(station)s %(connector)s")
                % {
                    "station": session.station.identity,
                    "connector": f"{session.evse_id}/{session.connector_id}",
                },
                "detail": gettext("active %(minutes)s min without delivering energy")
                % {"minutes": minutes},
                "since": iso(session.started_at),
                "url": admin_url("charging_chargingsession_change", session.pk)
                or admin_url("stations_chargingstation_change", session.station_id),
            }
        )
    return {"items": items, "counts": counts}


# --- the operator panel: one station and one session --------------------------------------------


def station_active_sessions(
    *, station: ChargingStation, now: datetime | None = None
) -> dict[tuple[int, int], dict[str, Any]]:
    """A station's active sessions by their (evse_id, connector_id) address, as session rows.

    Sessions are addressed like connectors: a 1.6 session on connector N is (N, 1); a 2.0.1
    session that knows only its EVSE has connector 0.
    """
    now = now or timezone.now()
    return {
        (s.evse_id, s.connector_id): session_row(session=s, now=now)
        for s in _active().filter(station=station).select_related("station__location")
    }


def station_recent_sessions(*, station: ChargingStation, limit: int = 15) -> list[dict[str, Any]]:
    """A station's latest sessions, newest first, with how each one ended."""
    now = timezone.now()
    rows = []
    for session in (
        ChargingSession.objects.filter(station=station)
        .select_related("station__location")
        .order_by("-started_at")[:limit]
    ):
        row = session_row(session=session, now=session.ended_at or now)
        row["status"] = session.get_status_display()
        row["ended_at"] = iso(session.ended_at)
        row["stop_reason"] = session.stop_reason
        rows.append(row)
    return rows


CURVE_BATCH = 2000


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
    # One query, read in batches: a day-long session at 10 s intervals is ~17,000 rows.
    for moment, measurand, unit, value in samples.iterator(chunk_size=CURVE_BATCH):
        value = cast(Decimal, value)  # value__isnull=False
        t = epoch_ms(moment)
        if measurand == "Power.Active.Import":
            watts = value * KWH if unit == "kW" else value
            power.append({"x": t, "y": float((watts / KWH).quantize(Decimal("0.001")))})
        else:
            wh = value * KWH if unit == "kWh" else value
            if base is None:
                base = wh
            energy.append({"x": t, "y": float(((wh - base) / KWH).quantize(Decimal("0.001")))})
    if (
        energy
        and session.meter_start_wh is not None
        and energy[0]["x"] > epoch_ms(session.started_at)
    ):
        # The start reading is the curve's origin: nothing delivered at the start.
        energy.insert(0, {"x": epoch_ms(session.started_at), "y": 0.0})
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


def session_decisions(
    *, session: ChargingSession, before: timedelta = timedelta(minutes=15), limit: int = 20
) -> list[AuthorizationDecision]:
    """The authorization answers given for the session's token at its station around it: from
    `before` its start (Authorize, remote start) to its end, oldest first."""
    end = session.ended_at or timezone.now()
    return list(
        AuthorizationDecision.objects.filter(
            station_id=session.station_id,
            uid__iexact=session.id_tag,
            created_at__gte=session.started_at - before,
            created_at__lte=end + timedelta(minutes=1),
        ).order_by("created_at", "pk")[:limit]
    )


def session_samples(*, session: ChargingSession, limit: int = 50) -> dict[str, Any]:
    """The session's first `limit` meter samples in time order, and how many it has."""
    samples = MeterSample.objects.filter(session=session)
    return {
        "total": samples.count(),
        "items": list(samples.order_by("timestamp", "pk")[:limit]),
    }


# --- the operator panel: charts and reports -----------------------------------------------------


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
        site = row["station__location__name"] or NO_SITE
        per_site[site][row["day"].isoformat()] = row["energy"] or ZERO
    return {
        "labels": labels,
        "unit": "kWh",
        "datasets": [
            {"label": site, "data": [float(kwh(values.get(day))) for day in labels]}
            for site, values in sorted(per_site.items())
        ],
    }


def sessions_per_site_month(
    *, zones: dict[str, list[int | None]], first_month: date, last_month: date
) -> dict[tuple[int | None, str], dict[str, Any]]:
    """Sessions and kWh per (site id, "YYYY-MM"), months in the site's own time zone, by
    session start; `zones` maps each time zone to its site ids (None: stations without a
    site), one query per time zone. Cells without sessions are left out."""
    first_month, last_month = month_start(first_month), month_start(last_month)
    cells: dict[tuple[int | None, str], dict[str, Any]] = {}
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
            cell = cells.setdefault(
                (row["station__location_id"], row["month"].strftime("%Y-%m")),
                {"sessions": 0, "energy_wh": ZERO},
            )
            cell["sessions"] += row["n"]
            cell["energy_wh"] += row["energy"] or ZERO
    return {
        key: {"sessions": cell["sessions"], "energy_kwh": kwh(cell["energy_wh"])}
        for key, cell in cells.items()
    }


def sessions_per_token(*, start: datetime, end: datetime) -> list[dict[str, Any]]:
    """Sessions and kWh per token over [start, end), by session start, most sessions first.

    Tags that matched no known token are listed as presented (token_id None); a row's
    revenue key is its token_id, or for those its tag in lower case.
    """
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
    rows = [
        {
            "token_id": r["id_token_id"],
            "token": r["id_token__uid"],
            "visual_number": r["id_token__visual_number"],
            "type": r["id_token__type"],
            "account": r["id_token__account__name"] or "",
            "driver": r["id_token__driver__name"] or "",
            "sessions": r["n"],
            "energy_kwh": kwh(r["energy"]),
            "first_session": iso(r["first"]),
            "last_session": iso(r["last"]),
            "token_url": admin_url("charging_idtoken_change", r["id_token_id"]),
        }
        for r in known
    ]
    rows += [
        {
            "token_id": None,
            "token": r["id_tag"],
            "visual_number": "",
            "type": "(unknown token)" if r["id_tag"] else "(no token)",
            "account": "",
            "driver": "",
            "sessions": r["n"],
            "energy_kwh": kwh(r["energy"]),
            "first_session": iso(r["first"]),
            "last_session": iso(r["last"]),
            "token_url": "",
        }
        for r in unknown
    ]
    rows.sort(key=lambda r: (-r["sessions"], r["token"] or ""))
    return rows


# Every status report saying Available and every BootNotification asks this, so it is a static
# statement: the ORM's compilation of the same filter cost eight times the query (a boot storm
# is thousands of them). Served by the (station, evse_id) index.
_OPEN_SESSIONS_SQL = "SELECT id FROM charging_chargingsession WHERE station_id = %s AND status = %s"
_OPEN_SESSIONS_AT_EVSE_SQL = _OPEN_SESSIONS_SQL + " AND evse_id = %s AND started_at <= %s"


def open_session_ids(
    *, station_id: int, evse_id: int | None = None, started_by: datetime | None = None
) -> list[int]:
    """Ids of the station's active sessions; with `evse_id` and `started_by`, those on that
    EVSE that started by then."""
    active = ChargingSession.Status.ACTIVE.value
    params: list[Any]
    if evse_id is None or started_by is None:
        sql, params = _OPEN_SESSIONS_SQL, [station_id, active]
    else:
        when = connection.ops.adapt_datetimefield_value(started_by)
        sql, params = _OPEN_SESSIONS_AT_EVSE_SQL, [station_id, active, evse_id, when]
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return [row[0] for row in cursor.fetchall()]

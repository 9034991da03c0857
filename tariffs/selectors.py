"""Reads of the tariffs domain: which tariff applies where, and what a session used.

The usage of a session is read from what the charger reported (meter samples, 1.6 connector
status history, 2.0.1 chargingState) and turned into the rating engine's `SessionUsage`.
Odd data never raises here: missing samples fall back to the session's meter start/stop and
energy, and a clock that went backwards cannot make the session end before it started.
"""

from __future__ import annotations

import bisect
import datetime as dt
import logging
import zoneinfo
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import connection
from django.db.models import F, Q
from django.utils import timezone
from django.utils.dateparse import parse_datetime
from django.utils.translation import gettext, gettext_lazy

from cpo.lib.formatting import price_text
from sessions.energy import energy_curve, register_readings
from sessions.models import (
    ChargingSession,
    CustomerAccount,
    MeterSample,
    TransactionEventRecord,
)
from stations.models import ChargingStation, ConnectorStatusEvent
from tariffs import rating
from tariffs.models import SessionTariff, Tariff, TariffAssignment, TariffVersion

logger = logging.getLogger(__name__)

ENERGY_REGISTER = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
CURRENT = "Current.Import"

# OCPP 1.6 StatusNotification -> requesting power (TIME) or not (PARKING_TIME). SuspendedEVSE is
# the station withholding energy, which the OCPI 2.2.1 errata say is not parking (the
# PARKING_TIME definition in mod_tariffs, release-2.2.1-bugfixes).
OCPP16_CHARGING = {
    "Charging": True,
    "SuspendedEVSE": True,
    "SuspendedEV": False,
    "Finishing": False,
}
# OCPP 2.0.1 transactionInfo.chargingState, same reading.
OCPP201_CHARGING = {
    "Charging": True,
    "SuspendedEVSE": True,
    "SuspendedEV": False,
    "EVConnected": False,
    "Idle": False,
}
# Phases whose currents (or powers) add up to the session's total; "N" is the neutral conductor
# and line-to-line values would count a phase twice.
_PHASES = frozenset({"L1", "L2", "L3", "L1-N", "L2-N", "L3-N"})
# Where the value was measured: the outlet (or no location given) is what the driver gets.
_LOCATION_RANK = {"": 0, "Outlet": 0, "Cable": 1, "Inlet": 2}
_MICROSECOND = dt.timedelta(microseconds=1)


# --- Which tariff applies ---------------------------------------------------------------------


@dataclass(frozen=True)
class TariffChoice:
    """The tariff version that applies, and the assignment that made it apply."""

    version: TariffVersion
    assignment: TariffAssignment

    @property
    def engine(self) -> rating.Tariff:
        return rating.tariff_from_ocpi(self.version.ocpi)


def tariff_engine(tariff: Tariff) -> rating.Tariff:
    """The rating engine's form of a tariff's working copy (the panel's price preview)."""
    return rating.tariff_from_ocpi(tariff.to_ocpi())


def session_account_id(*, session: ChargingSession) -> int | None:
    """Who pays for the session: its account, else its token's (or the token group's), else the
    roaming partner that issued the token."""
    if session.account_id:
        return session.account_id
    token = session.id_token
    if token is None:
        return None
    if token.account_id:
        return token.account_id
    if token.group_id and token.group is not None and token.group.account_id:
        return token.group.account_id
    if token.issuer_country_code and token.issuer_party_id:
        return (
            CustomerAccount.objects.filter(
                kind=CustomerAccount.Kind.ROAMING_PARTNER,
                country_code__iexact=token.issuer_country_code,
                party_id__iexact=token.issuer_party_id,
                is_active=True,
            )
            .values_list("pk", flat=True)
            .first()
        )
    return None


def _specificity(row: dict[str, Any]) -> int:
    """connector > EVSE > station > site > default; an account's own price beats the same
    place without one (TariffAssignment.specificity, on a values() row)."""
    if row["connector_id"] is not None:
        score = 4
    elif row["evse_id"] is not None:
        score = 3
    elif row["station_id"]:
        score = 2
    elif row["location_id"]:
        score = 1
    else:
        score = 0
    return score * 2 + (1 if row["account_id"] else 0)


def _selection_sql() -> str:
    """The statement of `tariff_version_select`, built once from the models' table names."""
    assignment = TariffAssignment._meta.db_table
    version = TariffVersion._meta.db_table
    station = ChargingStation._meta.db_table
    # Table names from the models, values only as parameters.
    return f"""
        SELECT a.id, a.location_id, a.station_id, a.evse_id, a.connector_id, a.account_id,
               a.valid_from, v.id, v.type, v.start_date_time, v.end_date_time
        FROM {assignment} a
        LEFT JOIN {version} v ON v.id = (
            SELECT w.id FROM {version} w
            WHERE w.tariff_id = a.tariff_id AND w.effective_from <= %s
            ORDER BY w.number DESC LIMIT 1
        )
        WHERE (
            (a.station_id IS NULL AND a.evse_id IS NULL AND a.connector_id IS NULL)
            OR (
                a.station_id = %s
                AND (a.evse_id IS NULL OR a.evse_id = %s)
                AND (a.connector_id IS NULL OR (a.connector_id = %s AND a.evse_id = %s))
            )
        )
        AND (
            a.location_id IS NULL
            OR a.location_id = (SELECT s.location_id FROM {station} s WHERE s.id = %s)
        )
        AND (a.account_id IS NULL OR a.account_id = %s)
        AND (a.valid_from IS NULL OR a.valid_from <= %s)
        AND (a.valid_until IS NULL OR a.valid_until > %s)
    """  # noqa: S608


_SELECTION_SQL: str | None = None
_SELECTION_COLUMNS = (
    "pk",
    "location_id",
    "station_id",
    "evse_id",
    "connector_id",
    "account_id",
    "valid_from",
    "version",
    "version_type",
    "version_start",
    "version_end",
)


def tariff_version_select(
    *,
    station_id: int | None,
    evse_id: int | None = None,
    connector_id: int | None = None,
    account_id: int | None = None,
    at: dt.datetime,
    tariff_type: str = "REGULAR",
) -> tuple[int, int] | None:
    """(version id, assignment id) of the tariff for a charge here, for this payer, at `at`;
    None when nothing applies. It runs in the transaction that starts a session, so it is one
    static statement (the ORM's compilation of the same query cost more than the query) and
    reads no JSON.

    1. Assignments that cover this place, payer and instant, each with the version of its
       tariff in force at `at` (of those in effect by then, the last published).
    2. Most specific first; within one specificity the assignment that became valid last (a
       scheduled price change), then the newest row.
    3. The first whose version fits the session type (a version without type fits every one)
       and whose own start/end_date_time covers `at`; an expired tariff gives way to the next.
    """
    global _SELECTION_SQL
    if _SELECTION_SQL is None:
        _SELECTION_SQL = _selection_sql()
    ops = connection.ops
    when = ops.adapt_datetimefield_value(at)
    params = [when, station_id, evse_id, connector_id, evse_id, station_id, account_id, when, when]
    with connection.cursor() as cursor:
        cursor.execute(_SELECTION_SQL, params)
        fetched = cursor.fetchall()
    rows = []
    for raw in fetched:
        row = dict(zip(_SELECTION_COLUMNS, raw, strict=True))
        for name in ("valid_from", "version_start", "version_end"):
            row[name] = _as_datetime(row[name])
        rows.append(row)
    earliest = dt.datetime.min.replace(tzinfo=dt.UTC)
    rows.sort(key=lambda r: (_specificity(r), r["valid_from"] or earliest, r["pk"]), reverse=True)
    for row in rows:
        if row["version"] is None:
            continue  # the tariff takes effect later
        if row["version_type"] and row["version_type"] != tariff_type:
            continue
        if row["version_start"] is not None and at < row["version_start"]:
            continue
        if row["version_end"] is not None and at >= row["version_end"]:
            continue
        return row["version"], row["pk"]
    return None


def _as_datetime(value: Any) -> dt.datetime | None:
    """A datetime column as the backend returns it to a raw cursor (SQLite: text), aware UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            raise ValueError(f"not a datetime: {value!r}")
        value = parsed
    if timezone.is_naive(value):
        value = timezone.make_aware(value, dt.UTC)
    return value


def tariff_select(
    *,
    station: ChargingStation | None,
    evse_id: int | None = None,
    connector_id: int | None = None,
    account_id: int | None = None,
    at: dt.datetime,
    tariff_type: str = "REGULAR",
) -> TariffChoice | None:
    """The tariff version (with its assignment) for a charge here, for this payer, at `at`."""
    chosen = tariff_version_select(
        station_id=station.pk if station is not None else None,
        evse_id=evse_id,
        connector_id=connector_id,
        account_id=account_id,
        at=at,
        tariff_type=tariff_type,
    )
    if chosen is None:
        return None
    version_id, assignment_id = chosen
    return TariffChoice(
        TariffVersion.objects.get(pk=version_id),
        TariffAssignment.objects.select_related("tariff").get(pk=assignment_id),
    )


def tariff_version_in_force(*, tariff: Tariff, at: dt.datetime) -> TariffVersion | None:
    """The version of `tariff` sessions starting at `at` are priced with."""
    return (
        TariffVersion.objects.filter(tariff=tariff, effective_from__lte=at)
        .order_by("-number")
        .first()
    )


def session_tariff_version(*, session: ChargingSession) -> TariffVersion | None:
    """The version fixed on the session at its start, or None when no tariff applied."""
    link = SessionTariff.objects.select_related("version").filter(session=session).first()
    return link.version if link is not None else None


def session_time_zone(*, session: ChargingSession) -> zoneinfo.ZoneInfo:
    """The site's time zone, in which tariff restrictions are evaluated; UTC when unknown."""
    location = session.station.location if session.station_id else None
    if location is not None:
        try:
            return zoneinfo.ZoneInfo(location.time_zone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            logger.warning("location %s has an unknown time zone", location.pk)
    return zoneinfo.ZoneInfo("UTC")


# --- What a session used ----------------------------------------------------------------------


def _micros(delta: dt.timedelta) -> int:
    return delta // _MICROSECOND


class _Curve:
    """Meter register (Wh) over time, linear between readings and flat outside them."""

    def __init__(self, points: dict[dt.datetime, Decimal]) -> None:
        self.times = sorted(points)
        self.values = [points[t] for t in self.times]

    def at(self, when: dt.datetime) -> Decimal:
        if when <= self.times[0]:
            return self.values[0]
        if when >= self.times[-1]:
            return self.values[-1]
        i = bisect.bisect_right(self.times, when) - 1
        t0, t1 = self.times[i], self.times[i + 1]
        e0, e1 = self.values[i], self.values[i + 1]
        return e0 + (e1 - e0) * _micros(when - t0) / _micros(t1 - t0)


def _best_by_time(
    rows: Iterable[tuple[dt.datetime, str, str, str, Decimal]],
) -> dict[tuple[dt.datetime, str], tuple[int, Decimal]]:
    """Per (timestamp, phase), the value measured closest to the outlet; of several from the
    same place (periodic and clock-aligned at one instant), the highest, as for live energy."""
    best: dict[tuple[dt.datetime, str], tuple[int, Decimal]] = {}
    for timestamp, phase, location, unit, value in rows:
        rank = _LOCATION_RANK.get(location, 3)
        scaled = value * 1000 if unit.lower() in ("kwh", "kw") else value
        key = (timestamp, phase)
        if key not in best or (rank, -scaled) < (best[key][0], -best[key][1]):
            best[key] = (rank, scaled)
    return best


def _totals(best: dict[tuple[dt.datetime, str], tuple[int, Decimal]]) -> dict[dt.datetime, Decimal]:
    """Per timestamp: the value without a phase, else the sum over the phases."""
    total: dict[dt.datetime, Decimal] = {}
    phased: dict[dt.datetime, Decimal] = {}
    for (timestamp, phase), (_, value) in best.items():
        if not phase:
            total[timestamp] = value
        elif phase in _PHASES:
            phased[timestamp] = phased.get(timestamp, Decimal(0)) + value
    for timestamp, value in phased.items():
        total.setdefault(timestamp, value)
    return total


def _session_states(
    session: ChargingSession, start: dt.datetime, end: dt.datetime
) -> list[rating.StateChange]:
    """Charging versus parking over the session: 2.0.1 chargingState when the session has
    TransactionEvents with one, else the 1.6 connector status history.

    1. A 1.6 status report without the station's timestamp is stored at its receive time
       (`timestamp == received_at`, stations.services.connector_status_changed). The stop
       bounds it: it is placed on the station's clock by the stop (the station's stop time
       minus how much earlier we received the report than the stop), so a report received
       just before the StopTransaction lies just before the stop whatever the station's clock
       says, and one received after the stop lies after the end and does not count.
    2. Not-charging (parking) stretches shorter than TARIFFS_PARKING_GRACE_SECONDS are not
       parking: the state before them goes on (`_without_short_parking`).
    """
    events: list[tuple[dt.datetime, str]] = list(
        TransactionEventRecord.objects.filter(session=session, timestamp__lte=end)
        .exclude(charging_state="")
        .order_by("timestamp", "seq_no")
        .values_list("timestamp", "charging_state")
    )
    mapping = OCPP201_CHARGING
    if not events:
        mapping = OCPP16_CHARGING
        offset = dt.timedelta(0)
        if session.ended_at is not None and session.stop_received_at is not None:
            offset = session.ended_at - session.stop_received_at
        reports = ConnectorStatusEvent.objects.filter(
            Q(timestamp__gte=start, timestamp__lte=end)
            | Q(
                timestamp=F("received_at"),
                received_at__gte=start - offset,
                received_at__lte=end - offset,
            ),
            station_id=session.station_id,
            evse_id=session.evse_id,
        ).values_list("timestamp", "received_at", "status", "pk")
        placed = sorted(
            (received + offset if timestamp == received else timestamp, pk, status)
            for timestamp, received, status, pk in reports
        )
        events = [(when, status) for when, _, status in placed if start <= when <= end]
    states: list[rating.StateChange] = []
    for timestamp, state in events:
        charging = mapping.get(state)
        if charging is None:
            continue
        states.append(rating.StateChange(max(timestamp, start), charging))
    grace = dt.timedelta(seconds=settings.TARIFFS_PARKING_GRACE_SECONDS)
    return _without_short_parking(states, end, grace)


def _runs(states: list[rating.StateChange]) -> list[rating.StateChange]:
    """Consecutive changes to the same state are one run, from the first of them."""
    runs: list[rating.StateChange] = []
    for state in states:
        if not runs or runs[-1].charging != state.charging:
            runs.append(state)
    return runs


def _without_short_parking(
    states: list[rating.StateChange], end: dt.datetime, grace: dt.timedelta
) -> list[rating.StateChange]:
    """Drop parking runs shorter than `grace`: a few seconds of Finishing or SuspendedEV (a
    remote stop's Finishing 8 ms before its StopTransaction) are no parking to bill, and a
    60-second step_size would otherwise make a minute of each."""
    runs = _runs(states)
    kept = [
        run
        for i, run in enumerate(runs)
        if run.charging
        or (runs[i + 1].timestamp if i + 1 < len(runs) else end) - run.timestamp >= grace
    ]
    return _runs(kept)


def session_usage(
    *, session: ChargingSession, now: dt.datetime | None = None
) -> rating.SessionUsage:
    """What the session used, in the rating engine's terms.

    1. Start is the session's start; end is its end, or for a live session now (or the last
       reported instant, when the station's clock runs ahead of ours).
    2. Energy: the curve of sessions.energy (the session's own rule): delivered energy from 0
       at the start to meter stop against meter start at the end, every energy sample inside
       the session (Wh or kWh; the outlet's value when several locations report) filling the
       curve, a register reset summed per segment. With fewer than two points, the session's
       energy is spread evenly over it.
    3. Power (W, kW) and current (A, summed over phases) samples become readings whose
       energy is interpolated on the register curve.
    4. Charging state changes from 2.0.1 chargingState or 1.6 StatusNotification.
    """
    start = session.started_at
    live = session.ended_at is None
    rows = list(
        MeterSample.objects.filter(
            session=session,
            measurand__in=(ENERGY_REGISTER, POWER, CURRENT),
            value__isnull=False,
            # Samples that arrived after the stop are kept for audit but never rated.
            after_stop=False,
        ).values_list("timestamp", "measurand", "phase", "location", "unit", "value")
    )
    if live:
        last_reported = max((row[0] for row in rows), default=start)
        end = max(now or timezone.now(), last_reported, start)
    else:
        end = max(session.ended_at or start, start)

    def measured(measurand: str, *, phases: bool = True) -> dict[dt.datetime, Decimal]:
        picked = [
            (ts, phase, location, unit, value)
            for ts, m, phase, location, unit, value in rows
            if m == measurand and value is not None and (phases or not phase)
        ]
        return _totals(_best_by_time(picked))

    # The one rule of sessions.energy: meter stop against meter start, samples fill the curve,
    # a register reset counts per segment. The session's own energy came from the same call.
    registers = register_readings(
        (ts, location, unit, value)
        for ts, m, phase, location, unit, value in rows
        if m == ENERGY_REGISTER and not phase
    )
    delivered = energy_curve(
        readings=registers,
        start=start,
        end=None if live else end,
        meter_start=session.meter_start_wh,
        meter_stop=None if live else session.meter_stop_wh,
        threshold=Decimal(settings.CHARGING_METER_RESET_THRESHOLD_WH),
    )
    base = session.meter_start_wh or Decimal(0)
    points = {ts: base + energy for ts, energy in delivered.points} if delivered else {}
    if len(points) < 2:
        # Nothing to see the energy flow by: spread what the session reports evenly.
        delivered_wh = max(session.energy_wh or Decimal(0), Decimal(0))
        points = {start: Decimal(0)}
        if end > start:
            points[end] = delivered_wh
    curve = _Curve(points)

    power = {ts: v for ts, v in measured(POWER).items() if start <= ts <= end}
    current = {ts: v for ts, v in measured(CURRENT).items() if start <= ts <= end}
    readings = [
        rating.MeterReading(
            timestamp=ts,
            energy_wh=points[ts] if ts in points else curve.at(ts),
            power_w=power.get(ts),
            current_a=current.get(ts),
        )
        for ts in sorted(set(points) | set(power) | set(current))
    ]
    return rating.SessionUsage(
        start=start,
        end=end,
        readings=tuple(readings),
        states=tuple(_session_states(session, start, end)),
    )


# --- Price preview ----------------------------------------------------------------------------


def tariff_preview(
    *,
    tariff: Tariff,
    start: dt.datetime,
    duration_s: int,
    energy_wh: Decimal,
    tz: zoneinfo.ZoneInfo,
    power_profile: Sequence[tuple[int, Decimal]] | None = None,
    parking_s: int = 0,
) -> rating.Rating:
    """The price of a hypothetical session under a stored tariff, as it is now."""
    usage = rating.preview_usage(
        start, duration_s, energy_wh, power_profile or None, parking_s=parking_s
    )
    return rating.rate_session(tariff_engine(tariff), usage, tz)


# --- A tariff version as people read it -----------------------------------------------------

# Unit of each OCPI price component's price, as the panel writes it after the currency.
PRICE_UNITS: dict[str, Any] = {
    rating.ENERGY: "/kWh",
    rating.TIME: gettext_lazy("/h charging"),
    rating.PARKING_TIME: gettext_lazy("/h parking"),
    rating.FLAT: gettext_lazy(" per session"),
}
STEP_UNITS = {rating.ENERGY: "Wh", rating.TIME: "s", rating.PARKING_TIME: "s"}
_DAY_ABBREVIATIONS = {
    "MONDAY": "Mon",
    "TUESDAY": "Tue",
    "WEDNESDAY": "Wed",
    "THURSDAY": "Thu",
    "FRIDAY": "Fri",
    "SATURDAY": "Sat",
    "SUNDAY": "Sun",
}


def _ocpi_restrictions_text(r: dict[str, Any]) -> str:
    parts = []
    if r.get("start_time") or r.get("end_time"):
        parts.append(f"{r.get('start_time') or '00:00'}–{r.get('end_time') or '24:00'}")
    if r.get("start_date"):
        parts.append(f"from {r['start_date']}")
    if r.get("end_date"):
        parts.append(f"before {r['end_date']}")
    if r.get("day_of_week"):
        parts.append(", ".join(_DAY_ABBREVIATIONS.get(d, d) for d in r["day_of_week"]))
    for low, high, unit in (
        ("min_kwh", "max_kwh", "kWh"),
        ("min_power", "max_power", "kW"),
        ("min_current", "max_current", "A"),
    ):
        if r.get(low) is not None:
            parts.append(f"≥ {r[low]} {unit}")
        if r.get(high) is not None:
            parts.append(f"< {r[high]} {unit}")
    if r.get("min_duration") is not None:
        parts.append(f"after {r['min_duration']} s")
    if r.get("max_duration") is not None:
        parts.append(f"first {r['max_duration']} s")
    if r.get("reservation"):
        parts.append(str(r["reservation"]).replace("_", " ").lower())
    return ", ".join(parts)


def tariff_version_text(*, version: TariffVersion) -> dict[str, Any]:
    """A published version in words, from its OCPI JSON: its name, and one line per element
    ("0.30 EUR/kWh, 2.00 EUR/h charging (per 60 s) — 07:00–19:00, Mon, Tue")."""
    data = version.ocpi or {}
    currency = data.get("currency") or version.currency
    elements = []
    for element in data.get("elements") or []:
        prices = []
        for component in element.get("price_components") or []:
            kind = component.get("type", "")
            text = price_text(Decimal(str(component.get("price", 0))), currency)
            text += str(PRICE_UNITS.get(kind, f" ({kind.lower()})"))
            step = component.get("step_size") or 1
            if step > 1 and kind in STEP_UNITS:
                text += gettext(" (per %(step)s %(unit)s)") % {
                    "step": step,
                    "unit": STEP_UNITS[kind],
                }
            if component.get("vat") is not None:
                text += gettext(", VAT %(rate)s %%") % {"rate": component["vat"]}
            prices.append(text)
        elements.append(
            {
                "prices": ", ".join(prices) or gettext("free"),
                "restrictions": _ocpi_restrictions_text(element.get("restrictions") or {}),
            }
        )
    bounds = []
    for key, label in (("min_price", gettext("at least")), ("max_price", gettext("at most"))):
        if data.get(key):
            amount = data[key].get("incl_vat", data[key].get("excl_vat"))
            bounds.append(f"{label} {price_text(Decimal(str(amount)), currency)}")
    return {
        "tariff_id": data.get("id") or version.tariff.tariff_id,
        "number": version.number,
        "currency": currency,
        "effective_from": version.effective_from,
        "elements": elements,
        "bounds": ", ".join(bounds),
    }

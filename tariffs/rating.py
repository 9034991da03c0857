"""OCPI 2.2.1 tariff rating engine: pure functions over ``Decimal``.

No Django, no database. Callers convert models to the frozen dataclasses below, call
:func:`rate_session`, and persist or publish the :class:`Rating`. Rounding to a currency's minor
unit is the project's one table in ``cpo.lib.money`` (plain Python too).

Semantics are OCPI 2.2.1's, module Tariffs (``mod_tariffs.asciidoc`` of the ``ocpi/ocpi``
repository, tag 2.2.1, with the errata of the ``release-2.2.1-bugfixes`` branch, which win where
the two differ):

1. The tariff is frozen at session start; its ``type`` and ``start/end_date_time`` decide
   whether it applies (``select_tariff``).
2. The session is cut wherever a restriction could change: local wall-clock times and local
   midnights in the **site's time zone** (``start/end_time``, ``start/end_date``,
   ``day_of_week``), cumulative kWh thresholds, elapsed-time thresholds, power and current
   readings, charging/not-charging changes, reservation bounds (TariffRestrictions).
3. Per slice and per dimension (ENERGY, TIME, PARKING_TIME, FLAT) the first element whose
   restrictions all match *and* that has a component of that dimension prices it; nothing
   matching means that dimension is free then. Lower bounds are inclusive, upper bounds
   exclusive (``end_time``/``end_date``/``max_*``); ``end_time`` before ``start_time`` wraps
   past midnight; ``max_power``/``max_current`` are instantaneous, not session-wide.
4. TIME is time the vehicle is charging; PARKING_TIME is time it is not *requesting* power
   (errata: the station withholding energy, OCPP ``SuspendedEVSE``, is not parking); FLAT counts
   once per session.
5. ``step_size`` applies once per session (PriceComponent notes, corrected example): the total
   billable energy rounds up with the last ENERGY component's step (Wh); TIME and PARKING_TIME
   share one rounding, on whichever billable dimension comes last, with the last (paid)
   component's step (s); the extra goes to the last period of that dimension.
6. ``cost = volume x price``, ``incl = cost x (1 + vat/100)`` (no ``vat`` means no VAT, not
   0 %), summed per dimension, then ``min_price``/``max_price`` clamp excl. and incl. VAT
   independently. OCPI says nothing about rounding: amounts stay unrounded ``Decimal``; only
   totals are rounded, to the currency's minor unit (``round_money``).
7. A ChargingPeriod per slice carries its volumes and the dimensions that justify the price
   (MAX_POWER, MIN_CURRENT, ...).

Choices made where the spec is silent (each one is also noted where it is implemented):

* Time is kept internally as exact ``Decimal`` seconds since session start. Energy between
  meter readings is interpolated linearly; a kWh threshold is cut at the interpolated instant and
  the cumulative energy at that cut is the threshold itself, exactly.
* Power and current restrictions use the **last known** reading value (a step function, no
  interpolation of crossings). Before the first reading that carries a value the value is
  *unknown*, and an element with a power (current) restriction does not match while it is unknown.
* Every restriction is evaluated at the start instant of a slice; all bounds are "from (inclusive)
  / until (exclusive)", so the start instant is representative of the whole slice.
* Before the first :class:`StateChange` the vehicle is charging (no states = charging throughout).
* For step_size, a dimension is *billable* in a period when its active component has a price
  above zero (a zero-priced component is treated exactly like no component, so both spellings
  of "free" rate the same), and, for ENERGY, when energy actually flowed in that period.
* Reservation time (before session start) is priced by elements whose ``reservation``
  restriction is set; those elements never price the session itself and vice versa. Reservation
  TIME gets its own, separate step_size rounding.
* When min_price/max_price has no ``incl_vat`` bound, the incl-VAT total follows the excl-VAT
  clamp at the session's effective VAT ratio.

Running cost of a live session (:func:`running_cost_start`, :func:`running_cost_advance`,
:func:`running_cost_total`): a :class:`RunningCost` state is extended reading by reading, with
work bounded by the tariff and the new interval, never by the history. Each interval is cut and
priced by the same helpers as rate_session (``_session_cuts``, ``_session_context``,
``_session_picks``, ``_session_flat``, ``_cost``, ``_clamp_total``), so the running cost is
rate_session's on the same readings, at actual volumes: step_size extras and min_price exist
only once the session has ended, max_price applies all along, reservations are left to
rate_session. Note that step_size 1 still bills whole Wh and whole seconds at the end.
"""

from __future__ import annotations

import bisect
import copy
import dataclasses
import datetime as dt
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, localcontext
from typing import Any
from zoneinfo import ZoneInfo

from cpo.lib.money import currency_exponent, round_money

__all__ = [
    "DAYS_OF_WEEK",
    "Amount",
    "ChargingPeriod",
    "CostLine",
    "DimensionTotal",
    "MeterReading",
    "PeriodDimension",
    "PriceComponent",
    "Rating",
    "Restrictions",
    "RunningCost",
    "SessionUsage",
    "StateChange",
    "Tariff",
    "TariffElement",
    "VatLine",
    "currency_exponent",
    "format_ocpi_datetime",
    "preview_usage",
    "rate_session",
    "round_money",
    "running_cost_advance",
    "running_cost_exact",
    "running_cost_start",
    "running_cost_total",
    "select_tariff",
    "tariff_from_ocpi",
    "tariff_to_ocpi",
]

ENERGY = "ENERGY"
FLAT = "FLAT"
TIME = "TIME"
PARKING_TIME = "PARKING_TIME"
RESERVATION_TIME = "RESERVATION_TIME"
RESERVATION_FLAT = "RESERVATION_FLAT"

COMPONENT_TYPES = frozenset({ENERGY, FLAT, TIME, PARKING_TIME})
DAYS_OF_WEEK = ("MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY")
RESERVATION_KINDS = frozenset({"RESERVATION", "RESERVATION_EXPIRES"})

CHARGING = "CHARGING"
PARKING = "PARKING"
RESERVATION = "RESERVATION"

_ZERO = Decimal(0)
_ONE = Decimal(1)
_HUNDRED = Decimal(100)
_WH_PER_KWH = Decimal(1000)
_S_PER_H = Decimal(3600)
_W_PER_KW = Decimal(1000)
# Internal precision: far above anything a meter or a price list can express, so interpolation
# and the non-terminating /3600 divisions never matter before the final rounding.
_PRECISION = 50
# Resolution used before ceiling to a step: it absorbs the last-digit noise of interpolation so
# that an exact 9000 Wh never becomes 9000.000...01 Wh and gets billed one step too many.
_QUANTUM = Decimal("1e-6")
# Totals are snapped to this before clamping and rounding: the /3600 divisions and interpolation
# leave noise in the last of the 50 digits, and 10.22499...9 must not round down where the
# exact value is 10.225. Still "unrounded" for any audit purpose.
_NOISE = Decimal("1e-20")


# --------------------------------------------------------------------------------------------
# Tariff model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PriceComponent:
    """One priced dimension. ``price`` is excl. VAT per unit (kWh, hour, or session for FLAT).

    ``vat`` is a percentage; ``None`` means no VAT applies (different from ``Decimal(0)``).
    ``step_size`` is in Wh for ENERGY, seconds for TIME/PARKING_TIME, ignored for FLAT.
    """

    type: str
    price: Decimal
    vat: Decimal | None = None
    step_size: int = 1

    def __post_init__(self) -> None:
        if self.type not in COMPONENT_TYPES:
            raise ValueError(f"unknown price component type {self.type!r}")


@dataclass(frozen=True)
class Restrictions:
    start_time: dt.time | None = None
    end_time: dt.time | None = None
    start_date: dt.date | None = None
    end_date: dt.date | None = None
    min_kwh: Decimal | None = None
    max_kwh: Decimal | None = None
    min_current: Decimal | None = None
    max_current: Decimal | None = None
    min_power: Decimal | None = None
    max_power: Decimal | None = None
    min_duration: int | None = None
    max_duration: int | None = None
    day_of_week: frozenset[str] = frozenset()
    reservation: str | None = None

    def __post_init__(self) -> None:
        unknown = set(self.day_of_week) - set(DAYS_OF_WEEK)
        if unknown:
            raise ValueError(f"unknown day_of_week values {sorted(unknown)}")
        if self.reservation is not None and self.reservation not in RESERVATION_KINDS:
            raise ValueError(f"unknown reservation restriction {self.reservation!r}")

    @property
    def uses_power(self) -> bool:
        return self.min_power is not None or self.max_power is not None

    @property
    def uses_current(self) -> bool:
        return self.min_current is not None or self.max_current is not None


@dataclass(frozen=True)
class TariffElement:
    price_components: tuple[PriceComponent, ...]
    restrictions: Restrictions | None = None

    def component(self, type_: str) -> PriceComponent | None:
        """The first component of the given type (OCPI allows one per type per element)."""
        for component in self.price_components:
            if component.type == type_:
                return component
        return None

    @property
    def reservation(self) -> str | None:
        return self.restrictions.reservation if self.restrictions else None


@dataclass(frozen=True)
class Tariff:
    id: str
    currency: str
    elements: tuple[TariffElement, ...]
    min_price_excl_vat: Decimal | None = None
    min_price_incl_vat: Decimal | None = None
    max_price_excl_vat: Decimal | None = None
    max_price_incl_vat: Decimal | None = None
    type: str | None = None
    country_code: str | None = None
    party_id: str | None = None
    start_date_time: dt.datetime | None = None
    end_date_time: dt.datetime | None = None
    # Other OCPI fields (tariff_alt_text, tariff_alt_url, energy_mix, last_updated, ...), kept
    # verbatim so that tariff_to_ocpi(tariff_from_ocpi(d)) gives d back.
    extra: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def is_valid_at(self, when: dt.datetime) -> bool:
        if self.start_date_time is not None and when < self.start_date_time:
            return False
        return self.end_date_time is None or when < self.end_date_time


def select_tariff(
    tariffs: Iterable[Tariff], *, at: dt.datetime, tariff_type: str = "REGULAR"
) -> Tariff | None:
    """Step 1 of the algorithm: the first tariff (connector order) that fits type and validity.

    A tariff without ``type`` matches every session. Freeze the result at session start.
    """
    for tariff in tariffs:
        if tariff.type is not None and tariff.type != tariff_type:
            continue
        if tariff.is_valid_at(at):
            return tariff
    return None


# --------------------------------------------------------------------------------------------
# OCPI JSON conversion
# --------------------------------------------------------------------------------------------

_TARIFF_KEYS = frozenset(
    {
        "id",
        "currency",
        "elements",
        "min_price",
        "max_price",
        "type",
        "country_code",
        "party_id",
        "start_date_time",
        "end_date_time",
    }
)


def _dec(value: Any) -> Decimal:
    if isinstance(value, bool):
        raise TypeError("a boolean is not a number")
    if isinstance(value, Decimal):
        return value
    if isinstance(value, int | str):
        return Decimal(value)
    if isinstance(value, float):
        # str() gives the shortest repr, so JSON 0.3 becomes Decimal("0.3"), not 0.299999...
        return Decimal(str(value))
    raise TypeError(f"not a number: {value!r}")


def _opt_dec(value: Any) -> Decimal | None:
    return None if value is None else _dec(value)


def _opt_int(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or int(value) != _dec(value):
        raise ValueError(f"not an integer: {value!r}")
    return int(value)


def _parse_hhmm(value: str | None) -> dt.time | None:
    if value is None:
        return None
    hours, minutes = value.split(":")
    return dt.time(int(hours), int(minutes))


def _parse_datetime(value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        # OCPI timestamps are UTC even when a partner forgets the "Z".
        parsed = parsed.replace(tzinfo=dt.UTC)
    return parsed


def format_ocpi_datetime(value: dt.datetime) -> str:
    """RFC 3339 UTC with a ``Z``; milliseconds only when needed (OCPI DateTime is string(25))."""
    value = value.astimezone(dt.UTC)
    text = value.strftime("%Y-%m-%dT%H:%M:%S")
    if value.microsecond:
        text += f".{value.microsecond // 1000:03d}"
    return text + "Z"


def _restrictions_from_ocpi(data: Mapping[str, Any]) -> Restrictions:
    return Restrictions(
        start_time=_parse_hhmm(data.get("start_time")),
        end_time=_parse_hhmm(data.get("end_time")),
        start_date=dt.date.fromisoformat(data["start_date"]) if data.get("start_date") else None,
        end_date=dt.date.fromisoformat(data["end_date"]) if data.get("end_date") else None,
        min_kwh=_opt_dec(data.get("min_kwh")),
        max_kwh=_opt_dec(data.get("max_kwh")),
        min_current=_opt_dec(data.get("min_current")),
        max_current=_opt_dec(data.get("max_current")),
        min_power=_opt_dec(data.get("min_power")),
        max_power=_opt_dec(data.get("max_power")),
        min_duration=_opt_int(data.get("min_duration")),
        max_duration=_opt_int(data.get("max_duration")),
        day_of_week=frozenset(data.get("day_of_week") or ()),
        reservation=data.get("reservation"),
    )


def _price_from_ocpi(data: Mapping[str, Any] | None) -> tuple[Decimal | None, Decimal | None]:
    if data is None:
        return None, None
    return _dec(data["excl_vat"]), _opt_dec(data.get("incl_vat"))


def tariff_from_ocpi(data: Mapping[str, Any]) -> Tariff:
    """Build a :class:`Tariff` from an OCPI 2.2.1 Tariff object (numbers or numeric strings)."""
    elements = []
    for element in data["elements"]:
        components = tuple(
            PriceComponent(
                type=component["type"],
                price=_dec(component["price"]),
                vat=_opt_dec(component.get("vat")),
                step_size=_opt_int(component.get("step_size", 1)) or 0,
            )
            for component in element["price_components"]
        )
        raw = element.get("restrictions")
        restrictions = None if raw is None else _restrictions_from_ocpi(raw)
        elements.append(TariffElement(price_components=components, restrictions=restrictions))
    min_excl, min_incl = _price_from_ocpi(data.get("min_price"))
    max_excl, max_incl = _price_from_ocpi(data.get("max_price"))
    extra = {key: copy.deepcopy(value) for key, value in data.items() if key not in _TARIFF_KEYS}
    return Tariff(
        id=data["id"],
        currency=data["currency"],
        elements=tuple(elements),
        min_price_excl_vat=min_excl,
        min_price_incl_vat=min_incl,
        max_price_excl_vat=max_excl,
        max_price_incl_vat=max_incl,
        type=data.get("type"),
        country_code=data.get("country_code"),
        party_id=data.get("party_id"),
        start_date_time=_parse_datetime(data.get("start_date_time")),
        end_date_time=_parse_datetime(data.get("end_date_time")),
        extra=types.MappingProxyType(extra),
    )


def _restrictions_to_ocpi(r: Restrictions) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if r.start_time is not None:
        out["start_time"] = r.start_time.strftime("%H:%M")
    if r.end_time is not None:
        out["end_time"] = r.end_time.strftime("%H:%M")
    if r.start_date is not None:
        out["start_date"] = r.start_date.isoformat()
    if r.end_date is not None:
        out["end_date"] = r.end_date.isoformat()
    for name in (
        "min_kwh",
        "max_kwh",
        "min_current",
        "max_current",
        "min_power",
        "max_power",
        "min_duration",
        "max_duration",
    ):
        value = getattr(r, name)
        if value is not None:
            out[name] = value
    if r.day_of_week:
        out["day_of_week"] = [day for day in DAYS_OF_WEEK if day in r.day_of_week]
    if r.reservation is not None:
        out["reservation"] = r.reservation
    return out


def _price_to_ocpi(excl: Decimal | None, incl: Decimal | None) -> dict[str, Decimal] | None:
    if excl is None:
        return None
    out = {"excl_vat": excl}
    if incl is not None:
        out["incl_vat"] = incl
    return out


def tariff_to_ocpi(tariff: Tariff) -> dict[str, Any]:
    """The OCPI 2.2.1 Tariff object. Numbers stay ``Decimal``: the JSON renderer writes them
    (DRF's encoder emits numbers); datetimes become OCPI strings."""
    out: dict[str, Any] = {}
    if tariff.country_code is not None:
        out["country_code"] = tariff.country_code
    if tariff.party_id is not None:
        out["party_id"] = tariff.party_id
    out["id"] = tariff.id
    out["currency"] = tariff.currency
    if tariff.type is not None:
        out["type"] = tariff.type
    for key in ("tariff_alt_text", "tariff_alt_url"):
        if key in tariff.extra:
            out[key] = copy.deepcopy(tariff.extra[key])
    min_price = _price_to_ocpi(tariff.min_price_excl_vat, tariff.min_price_incl_vat)
    if min_price is not None:
        out["min_price"] = min_price
    max_price = _price_to_ocpi(tariff.max_price_excl_vat, tariff.max_price_incl_vat)
    if max_price is not None:
        out["max_price"] = max_price
    elements = []
    for element in tariff.elements:
        element_out: dict[str, Any] = {
            "price_components": [
                {
                    "type": c.type,
                    "price": c.price,
                    **({"vat": c.vat} if c.vat is not None else {}),
                    "step_size": c.step_size,
                }
                for c in element.price_components
            ]
        }
        if element.restrictions is not None:
            element_out["restrictions"] = _restrictions_to_ocpi(element.restrictions)
        elements.append(element_out)
    out["elements"] = elements
    if tariff.start_date_time is not None:
        out["start_date_time"] = format_ocpi_datetime(tariff.start_date_time)
    if tariff.end_date_time is not None:
        out["end_date_time"] = format_ocpi_datetime(tariff.end_date_time)
    for key, value in tariff.extra.items():
        if key not in out:
            out[key] = copy.deepcopy(value)
    return out


# --------------------------------------------------------------------------------------------
# Usage model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MeterReading:
    """A meter sample. ``energy_wh`` is the cumulative register; ``current_a`` sums phases."""

    timestamp: dt.datetime
    energy_wh: Decimal
    power_w: Decimal | None = None
    current_a: Decimal | None = None


@dataclass(frozen=True)
class StateChange:
    """From ``timestamp`` on, the vehicle is requesting power (``charging``) or parking.

    Map OCPP ``SuspendedEVSE`` to charging=True (the EVSE withholds energy: not parking) and
    ``SuspendedEV`` / post-stop ``Finishing`` to charging=False.
    """

    timestamp: dt.datetime
    charging: bool


@dataclass(frozen=True)
class SessionUsage:
    start: dt.datetime
    end: dt.datetime
    readings: tuple[MeterReading, ...] = ()
    states: tuple[StateChange, ...] = ()
    reservation_start: dt.datetime | None = None
    reservation_end: dt.datetime | None = None
    # The reservation ran out without a charging session; no session FLAT is charged then.
    reservation_expired: bool = False

    def __post_init__(self) -> None:
        for name in ("start", "end", "reservation_start", "reservation_end"):
            value = getattr(self, name)
            if value is not None and value.utcoffset() is None:
                raise ValueError(f"{name} must be timezone-aware")
        if self.end < self.start:
            raise ValueError("session end is before its start")


def _as_decimal(value: Decimal | int | str) -> Decimal:
    return _dec(value)


def preview_usage(
    start: dt.datetime,
    duration_s: int,
    energy_wh: Decimal | int | str,
    power_profile: Sequence[tuple[int, Decimal | int | str]] | None = None,
    *,
    parking_s: int = 0,
) -> SessionUsage:
    """A hypothetical session for the panel's price preview.

    * Without ``power_profile``: the EV charges for ``duration_s`` at the constant power that
      delivers ``energy_wh``, then parks for ``parking_s``.
    * With ``power_profile`` ``[(offset_s, power_w), ...]`` (power is constant from each offset
      to the next; 0 before the first): the EV draws that power until ``energy_wh`` is delivered
      or ``duration_s`` has passed. If it gets full early, the rest of ``duration_s`` is parking
      (EV full = ``SuspendedEV``), followed by ``parking_s`` more parking.
    """
    if start.utcoffset() is None:
        raise ValueError("start must be timezone-aware")
    if duration_s < 0 or parking_s < 0:
        raise ValueError("durations must not be negative")
    target = _as_decimal(energy_wh)
    charge_end = start + dt.timedelta(seconds=duration_s)
    end = charge_end + dt.timedelta(seconds=parking_s)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        if power_profile is None:
            power = target * _S_PER_H / duration_s if duration_s else _ZERO
            readings = (
                MeterReading(start, _ZERO, power),
                MeterReading(charge_end, target, _ZERO),
            )
            states: tuple[StateChange, ...] = (StateChange(start, True),)
            if parking_s:
                states += (StateChange(charge_end, False),)
            return SessionUsage(start=start, end=end, readings=readings, states=states)

        steps = sorted((int(offset), _as_decimal(p)) for offset, p in power_profile)
        if any(offset < 0 for offset, _ in steps) or any(p < 0 for _, p in steps):
            raise ValueError("power profile offsets and powers must not be negative")
        breakpoints = sorted({0, duration_s, *(o for o, _ in steps if o < duration_s)})
        readings_list: list[MeterReading] = []
        delivered = _ZERO
        full_at: dt.datetime | None = None

        def power_at(offset: int) -> Decimal:
            index = bisect.bisect_right([o for o, _ in steps], offset) - 1
            return steps[index][1] if index >= 0 else _ZERO

        for left, right in zip(breakpoints, breakpoints[1:], strict=False):
            power = power_at(left)
            readings_list.append(MeterReading(start + dt.timedelta(seconds=left), delivered, power))
            gain = power * (right - left) / _S_PER_H
            if delivered + gain >= target and power > 0:
                seconds = (target - delivered) * _S_PER_H / power
                micro = int((seconds * 1_000_000).to_integral_value(ROUND_CEILING))
                full_at = start + dt.timedelta(seconds=left, microseconds=micro)
                delivered = target
                readings_list.append(MeterReading(full_at, delivered, _ZERO))
                break
            delivered += gain
        else:
            readings_list.append(MeterReading(charge_end, delivered, _ZERO))
        states_list = [StateChange(start, True)]
        parking_from = full_at if full_at is not None and full_at < charge_end else charge_end
        if parking_from < end:
            states_list.append(StateChange(parking_from, False))
        return SessionUsage(
            start=start, end=end, readings=tuple(readings_list), states=tuple(states_list)
        )


# --------------------------------------------------------------------------------------------
# Result model
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Amount:
    excl_vat: Decimal
    incl_vat: Decimal

    def __add__(self, other: Amount) -> Amount:
        return Amount(self.excl_vat + other.excl_vat, self.incl_vat + other.incl_vat)

    def denoised(self) -> Amount:
        return Amount(self.excl_vat.quantize(_NOISE), self.incl_vat.quantize(_NOISE))

    def rounded(self, currency: str) -> Amount:
        return Amount(round_money(self.excl_vat, currency), round_money(self.incl_vat, currency))


_NO_COST = Amount(_ZERO, _ZERO)


@dataclass(frozen=True)
class PeriodDimension:
    """Actual (not step-rounded) volume: kWh for ENERGY, hours for the time dimensions.

    ``element_index`` is the tariff element that priced it, ``None`` when it was free.
    """

    type: str
    volume: Decimal
    element_index: int | None


@dataclass(frozen=True)
class ChargingPeriod:
    start: dt.datetime
    end: dt.datetime
    state: str  # CHARGING, PARKING or RESERVATION
    dimensions: tuple[PeriodDimension, ...]
    min_power_kw: Decimal | None = None
    max_power_kw: Decimal | None = None
    min_current_a: Decimal | None = None
    max_current_a: Decimal | None = None

    def dimension(self, type_: str) -> PeriodDimension | None:
        for dimension in self.dimensions:
            if dimension.type == type_:
                return dimension
        return None


@dataclass(frozen=True)
class CostLine:
    """One priced (period, dimension). FLAT lines have ``period_index`` None.

    ``billed_volume`` includes the step_size extra; ``cost`` is unrounded.
    """

    dimension: str
    period_index: int | None
    element_index: int
    price: Decimal
    vat: Decimal | None
    step_size: int
    volume: Decimal
    billed_volume: Decimal
    cost: Amount


@dataclass(frozen=True)
class DimensionTotal:
    dimension: str
    volume: Decimal  # actual, including free periods
    billed_volume: Decimal  # priced volume including step_size extra
    cost: Amount  # unrounded, before min/max clamping


@dataclass(frozen=True)
class VatLine:
    rate: Decimal | None  # None: no VAT applies
    excl_vat: Decimal
    incl_vat: Decimal

    @property
    def vat_amount(self) -> Decimal:
        return self.incl_vat - self.excl_vat


_DIMENSIONS = (FLAT, ENERGY, TIME, PARKING_TIME, RESERVATION_TIME, RESERVATION_FLAT)


@dataclass(frozen=True)
class Rating:
    tariff_id: str
    currency: str
    start: dt.datetime
    end: dt.datetime
    periods: tuple[ChargingPeriod, ...]
    lines: tuple[CostLine, ...]
    dimension_totals: tuple[DimensionTotal, ...]
    total_energy_kwh: Decimal
    total_time_h: Decimal  # charging + parking (reservation excluded)
    total_parking_time_h: Decimal
    total_reservation_time_h: Decimal
    subtotal: Amount  # sum of lines: unrounded, before min/max clamping
    total_exact: Amount  # after clamping, unrounded (kept for audit)
    total_cost: Amount  # after clamping, rounded to the currency minor unit
    vat_breakdown: tuple[VatLine, ...]  # per rate, unrounded, before clamping
    clamp_excl_vat: str | None = None  # "MIN" or "MAX" when min/max_price applied
    clamp_incl_vat: str | None = None
    uses_power: bool = False
    uses_current: bool = False

    @property
    def total_cost_excl_vat(self) -> Decimal:
        return self.total_cost.excl_vat

    @property
    def total_cost_incl_vat(self) -> Decimal:
        return self.total_cost.incl_vat

    def dimension(self, name: str) -> DimensionTotal:
        for total in self.dimension_totals:
            if total.dimension == name:
                return total
        raise KeyError(name)

    def _rounded(self, *names: str) -> Amount:
        cost = _NO_COST
        for name in names:
            cost = cost + self.dimension(name).cost
        return cost.rounded(self.currency)

    @property
    def total_fixed_cost(self) -> Amount:
        return self._rounded(FLAT)

    @property
    def total_energy_cost(self) -> Amount:
        return self._rounded(ENERGY)

    @property
    def total_time_cost(self) -> Amount:
        return self._rounded(TIME)

    @property
    def total_parking_cost(self) -> Amount:
        return self._rounded(PARKING_TIME)

    @property
    def total_reservation_cost(self) -> Amount:
        return self._rounded(RESERVATION_TIME, RESERVATION_FLAT)

    def to_ocpi_charging_periods(self, places: int | None = 4) -> list[dict[str, Any]]:
        """OCPI ChargingPeriod objects with actual volumes (rounded to ``places`` decimals,
        ``None`` for exact). MIN/MAX_POWER (kW) and MIN/MAX_CURRENT (A) are added when the
        tariff has power or current restrictions, to justify the price."""

        def fmt(value: Decimal) -> Decimal:
            if places is None:
                return value
            return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)

        out = []
        for period in self.periods:
            dims: list[dict[str, Any]] = [
                {"type": d.type, "volume": fmt(d.volume)} for d in period.dimensions
            ]
            extra: list[tuple[str, Decimal | None]] = []
            if self.uses_power:
                extra += [("MIN_POWER", period.min_power_kw), ("MAX_POWER", period.max_power_kw)]
            if self.uses_current:
                extra += [
                    ("MIN_CURRENT", period.min_current_a),
                    ("MAX_CURRENT", period.max_current_a),
                ]
            dims += [{"type": name, "volume": fmt(v)} for name, v in extra if v is not None]
            out.append(
                {
                    "start_date_time": format_ocpi_datetime(period.start),
                    "dimensions": dims,
                    "tariff_id": self.tariff_id,
                }
            )
        return out

    def to_ocpi_cdr_fields(self, places: int | None = 4) -> dict[str, Any]:
        """The CDR fields this rating determines (volumes rounded to ``places`` decimals)."""

        def fmt(value: Decimal) -> Decimal:
            if places is None:
                return value
            return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)

        def price(amount: Amount) -> dict[str, Decimal]:
            return {"excl_vat": amount.excl_vat, "incl_vat": amount.incl_vat}

        return {
            "currency": self.currency,
            "charging_periods": self.to_ocpi_charging_periods(places),
            "total_cost": price(self.total_cost),
            "total_fixed_cost": price(self.total_fixed_cost),
            "total_energy": fmt(self.total_energy_kwh),
            "total_energy_cost": price(self.total_energy_cost),
            "total_time": fmt(self.total_time_h),
            "total_time_cost": price(self.total_time_cost),
            "total_parking_time": fmt(self.total_parking_time_h),
            "total_parking_cost": price(self.total_parking_cost),
            "total_reservation_cost": price(self.total_reservation_cost),
        }


# --------------------------------------------------------------------------------------------
# Engine internals
# --------------------------------------------------------------------------------------------


class _Clock:
    """Exact Decimal seconds relative to the session start, and back."""

    def __init__(self, origin: dt.datetime) -> None:
        self.origin = origin

    def offset(self, when: dt.datetime) -> Decimal:
        delta = when - self.origin
        seconds = Decimal(delta.days * 86400 + delta.seconds)
        return seconds + Decimal(delta.microseconds).scaleb(-6)

    def instant(self, offset: Decimal) -> dt.datetime:
        # Floor: every boundary we compare against is microsecond-exact, so flooring keeps an
        # instant just before a boundary on the correct side of it.
        micro = int((offset * 1_000_000).to_integral_value(ROUND_FLOOR))
        return self.origin + dt.timedelta(microseconds=micro)


class _EnergyCurve:
    """Cumulative session energy (Wh), piecewise linear through the readings."""

    def __init__(
        self, points: list[tuple[Decimal, Decimal]], baseline: Decimal | None = None
    ) -> None:
        """``baseline`` is the register value that counts as no session energy; by default the
        register at session start (offset 0). The running cost passes the register it saw at
        session start, because its curve holds only the latest segment."""
        self.times = [t for t, _ in points]
        self.values = [e for _, e in points]
        self.overrides: dict[Decimal, Decimal] = {}
        self.baseline = _ZERO
        if baseline is not None:
            self.baseline = baseline
        else:
            self.baseline = self.absolute(_ZERO) if points else _ZERO

    @classmethod
    def from_readings(cls, clock: _Clock, readings: Iterable[MeterReading]) -> _EnergyCurve:
        by_time: dict[Decimal, Decimal] = {}
        for reading in sorted(readings, key=lambda r: r.timestamp):
            by_time[clock.offset(reading.timestamp)] = reading.energy_wh
        points: list[tuple[Decimal, Decimal]] = []
        running = None
        for t in sorted(by_time):
            # A register that goes backwards (meter swap, glitch) delivers nothing meanwhile.
            running = by_time[t] if running is None else max(running, by_time[t])
            points.append((t, running))
        return cls(points)

    def absolute(self, t: Decimal) -> Decimal:
        if not self.times:
            return _ZERO
        if t <= self.times[0]:
            return self.values[0]
        if t >= self.times[-1]:
            return self.values[-1]
        i = bisect.bisect_right(self.times, t) - 1
        t0, t1 = self.times[i], self.times[i + 1]
        e0, e1 = self.values[i], self.values[i + 1]
        return e0 + (e1 - e0) * (t - t0) / (t1 - t0)

    def at(self, t: Decimal) -> Decimal:
        """Session energy (Wh) at offset ``t``; exact at a kWh-threshold cut."""
        if t in self.overrides:
            return self.overrides[t]
        return self.absolute(t) - self.baseline

    def crossing(self, wh: Decimal) -> Decimal | None:
        """First offset where session energy reaches ``wh`` (> 0), or None if never."""
        target = self.baseline + wh
        for i in range(len(self.times) - 1):
            e0, e1 = self.values[i], self.values[i + 1]
            if e1 >= target > e0:
                t0, t1 = self.times[i], self.times[i + 1]
                return t0 + (target - e0) * (t1 - t0) / (e1 - e0)
        return None


class _StepSeries:
    """Last-known-value step function (power, current)."""

    def __init__(self, points: list[tuple[Decimal, Decimal]]) -> None:
        self.times = [t for t, _ in points]
        self.values = [v for _, v in points]

    def at(self, t: Decimal) -> Decimal | None:
        i = bisect.bisect_right(self.times, t) - 1
        return self.values[i] if i >= 0 else None

    def range(self, a: Decimal, b: Decimal) -> tuple[Decimal | None, Decimal | None]:
        values = [v for v in (self.at(a),) if v is not None]
        lo = bisect.bisect_right(self.times, a)
        hi = bisect.bisect_left(self.times, b)
        values += self.values[lo:hi]
        if not values:
            return None, None
        return min(values), max(values)


@dataclass(frozen=True)
class _Context:
    local: dt.datetime
    elapsed: Decimal
    energy_kwh: Decimal
    power_kw: Decimal | None
    current_a: Decimal | None
    reservation: str | None


def _time_window_matches(start: dt.time | None, end: dt.time | None, now: dt.time) -> bool:
    if start is None and end is None:
        return True
    begin = start or dt.time(0)
    if end is None or end == dt.time(0):  # 00:00 as end_time means end of day
        return now >= begin
    if begin < end:
        return begin <= now < end
    if begin > end:  # wraps past midnight
        return now >= begin or now < end
    return True  # start == end: a full 24 h window [interp]


def _matches(r: Restrictions | None, ctx: _Context) -> bool:
    if r is None:
        return ctx.reservation is None
    if r.reservation != ctx.reservation:
        return False
    if not _time_window_matches(r.start_time, r.end_time, ctx.local.time()):
        return False
    today = ctx.local.date()
    if r.start_date is not None and today < r.start_date:
        return False
    if r.end_date is not None and today >= r.end_date:
        return False
    if r.day_of_week and DAYS_OF_WEEK[today.weekday()] not in r.day_of_week:
        return False
    if r.min_kwh is not None and ctx.energy_kwh < r.min_kwh:
        return False
    if r.max_kwh is not None and ctx.energy_kwh >= r.max_kwh:
        return False
    if r.min_duration is not None and ctx.elapsed < r.min_duration:
        return False
    if r.max_duration is not None and ctx.elapsed >= r.max_duration:
        return False
    if r.uses_power:
        if ctx.power_kw is None:
            return False  # unknown power cannot prove the restriction
        if r.min_power is not None and ctx.power_kw < r.min_power:
            return False
        if r.max_power is not None and ctx.power_kw >= r.max_power:
            return False
    if r.uses_current:
        if ctx.current_a is None:
            return False
        if r.min_current is not None and ctx.current_a < r.min_current:
            return False
        if r.max_current is not None and ctx.current_a >= r.max_current:
            return False
    return True


def _find_component(
    tariff: Tariff, type_: str, ctx: _Context, kinds: tuple[str | None, ...]
) -> tuple[int, PriceComponent] | None:
    """First element (list order) that matches and has a component of ``type_``."""
    for kind in kinds:
        kind_ctx = ctx if kind == ctx.reservation else _replace_reservation(ctx, kind)
        for index, element in enumerate(tariff.elements):
            component = element.component(type_)
            if component is not None and _matches(element.restrictions, kind_ctx):
                return index, component
    return None


def _replace_reservation(ctx: _Context, kind: str | None) -> _Context:
    return _Context(ctx.local, ctx.elapsed, ctx.energy_kwh, ctx.power_kw, ctx.current_a, kind)


# The steps below are shared by rate_session and the running cost (running_cost_advance), so that
# both cut a session at the same instants and price each slice with the same element choice.


def _session_context(
    clock: _Clock,
    tz: ZoneInfo,
    a: Decimal,
    *,
    energy_wh: Decimal,
    power_kw: Decimal | None,
    current_a: Decimal | None,
) -> _Context:
    """What the restrictions see at offset ``a`` of the session (not of a reservation)."""
    return _Context(
        local=clock.instant(a).astimezone(tz),
        elapsed=a,
        energy_kwh=energy_wh / _WH_PER_KWH,
        power_kw=power_kw,
        current_a=current_a,
        reservation=None,
    )


def _session_picks(
    tariff: Tariff, ctx: _Context, charging: bool
) -> tuple[str, dict[str, tuple[int, PriceComponent] | None]]:
    """Step 3 for one session slice: its state, and per dimension the first matching element
    that has it (ENERGY always; TIME while charging, PARKING_TIME otherwise)."""
    time_dim = TIME if charging else PARKING_TIME
    picks = {
        ENERGY: _find_component(tariff, ENERGY, ctx, (None,)),
        time_dim: _find_component(tariff, time_dim, ctx, (None,)),
    }
    return (CHARGING if charging else PARKING), picks


def _session_flat(tariff: Tariff, ctx: _Context) -> tuple[int, PriceComponent] | None:
    """The session's FLAT: the first matching element with a FLAT, matched at session start."""
    return _find_component(tariff, FLAT, ctx, (None,))


def _session_cuts(
    tariff: Tariff,
    tz: ZoneInfo,
    clock: _Clock,
    first: dt.datetime,
    last: dt.datetime,
    energy: _EnergyCurve,
) -> set[Decimal]:
    """Step 2 for the session's own restrictions: offsets of the local wall-clock boundaries
    and midnights from ``first`` to ``last`` (a superset, callers filter), of the duration
    thresholds (from session start) and of the kWh-threshold crossings of ``energy``, where the
    curve is pinned to the threshold exactly."""
    cuts = {clock.offset(instant) for instant in _wall_clock_cuts(tariff, tz, first, last)}
    for element in tariff.elements:
        r = element.restrictions
        if r is None:
            continue
        for seconds in (r.min_duration, r.max_duration):
            if seconds is not None:
                cuts.add(Decimal(seconds))
        for kwh in (r.min_kwh, r.max_kwh):
            if kwh is not None and kwh > 0:
                at = energy.crossing(kwh * _WH_PER_KWH)
                if at is not None:
                    cuts.add(at)
                    energy.overrides[at] = kwh * _WH_PER_KWH
    return cuts


def _unit(dim: str) -> Decimal:
    """Base units per billed unit: Wh per kWh for ENERGY, seconds per hour for the times."""
    return _WH_PER_KWH if dim == ENERGY else _S_PER_H


def _cost(base: Decimal, dim: str, component: PriceComponent) -> Amount:
    """Price of ``base`` Wh or seconds of ``dim`` at ``component``, excl. and incl. VAT."""
    return _with_vat(base * component.price / _unit(dim), component.vat)


def _clamp_total(
    tariff: Tariff, subtotal: Amount, *, with_min: bool = True
) -> tuple[Amount, str | None, str | None]:
    """Step 5's clamp: min_price/max_price on excl. and incl. VAT independently; an absent
    incl-VAT bound follows the excl-VAT bound at the subtotal's VAT ratio."""
    min_excl = tariff.min_price_excl_vat if with_min else None
    min_incl = tariff.min_price_incl_vat if with_min else None
    excl, clamp_excl = _clamp(subtotal.excl_vat, min_excl, tariff.max_price_excl_vat)
    incl_low, incl_high = min_incl, tariff.max_price_incl_vat
    if min_excl is not None and incl_low is None:
        incl_low = _follow_vat_ratio(min_excl, subtotal)
    if tariff.max_price_excl_vat is not None and incl_high is None:
        incl_high = _follow_vat_ratio(tariff.max_price_excl_vat, subtotal)
    incl, clamp_incl = _clamp(subtotal.incl_vat, incl_low, incl_high)
    return Amount(excl, incl), clamp_excl, clamp_incl


def _wall_clock_cuts(
    tariff: Tariff, tz: ZoneInfo, first: dt.datetime, last: dt.datetime
) -> list[dt.datetime]:
    """UTC instants of local midnights and element start/end times, both folds, plus the
    zone's offset transitions (a wall time inside a DST gap takes effect at the transition)."""
    walls = {dt.time(0)}
    for element in tariff.elements:
        r = element.restrictions
        if r is not None:
            walls.update(w for w in (r.start_time, r.end_time) if w is not None)
    day = first.astimezone(tz).date() - dt.timedelta(days=1)
    stop = last.astimezone(tz).date() + dt.timedelta(days=1)
    cuts: set[dt.datetime] = set()
    while day <= stop:
        for wall in walls:
            for fold in (0, 1):
                local = dt.datetime.combine(day, wall, tzinfo=tz).replace(fold=fold)
                cuts.add(local.astimezone(dt.UTC))
        day += dt.timedelta(days=1)
    ordered = sorted(cuts)
    # Local midnights are in the set, so neighbours are at most ~25 h apart and hold at most
    # one offset transition each.
    for a, b in zip(ordered, ordered[1:], strict=False):
        if a.astimezone(tz).utcoffset() != b.astimezone(tz).utcoffset():
            cuts.add(_find_transition(tz, a, b))
    return sorted(cuts)


def _find_transition(tz: ZoneInfo, a: dt.datetime, b: dt.datetime) -> dt.datetime:
    """First instant in (a, b] whose UTC offset equals b's (microsecond bisection)."""
    target = b.astimezone(tz).utcoffset()
    lo, hi = 0, (b - a) // dt.timedelta(microseconds=1)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if (a + dt.timedelta(microseconds=mid)).astimezone(tz).utcoffset() == target:
            hi = mid
        else:
            lo = mid
    return a + dt.timedelta(microseconds=hi)


@dataclass
class _Slice:
    a: Decimal
    b: Decimal
    state: str
    picks: dict[str, tuple[int, PriceComponent] | None]

    def signature(self) -> tuple[Any, ...]:
        return (
            self.state,
            tuple(sorted((d, p[0] if p else None) for d, p in self.picks.items())),
        )


def _step_extra(total: Decimal, step_size: int) -> Decimal:
    """What to add to ``total`` to reach the next multiple of the step (0 if already there)."""
    step = Decimal(max(step_size, 1))
    rounded_up = (total.quantize(_QUANTUM) / step).to_integral_value(ROUND_CEILING) * step
    return max(rounded_up - total, _ZERO)


def _with_vat(cost: Decimal, vat: Decimal | None) -> Amount:
    if vat is None:
        return Amount(cost, cost)
    return Amount(cost, cost * (_ONE + vat / _HUNDRED))


def _clamp(value: Decimal, low: Decimal | None, high: Decimal | None) -> tuple[Decimal, str | None]:
    if low is not None and value < low:
        return low, "MIN"
    if high is not None and value > high:
        return high, "MAX"
    return value, None


# --------------------------------------------------------------------------------------------
# Rating
# --------------------------------------------------------------------------------------------


def rate_session(tariff: Tariff, usage: SessionUsage, tz: ZoneInfo) -> Rating:
    """Price one session with one (frozen) tariff, following OCPI 2.2.1 (module docstring).

    1. Put the session on an exact timeline (Decimal seconds since start).
    2. Cut it wherever a restriction could change: local wall-clock boundaries and midnights
       (DST-aware), kWh thresholds (interpolated), duration thresholds, power/current readings,
       charging-state changes, reservation bounds.
    3. Per slice and per dimension, pick the first matching element that has that dimension;
       merge neighbouring slices priced identically into one ChargingPeriod.
    4. Measure actual volumes, then apply step_size once per session (ENERGY on its own; TIME and
       PARKING_TIME share one rounding on whichever billable dimension comes last).
    5. Price each line, add VAT, sum, clamp to min/max price (excl and incl independently), and
       round only the totals.
    """
    with localcontext() as decimal_ctx:
        decimal_ctx.prec = _PRECISION
        return _rate(tariff, usage, tz)


def _rate(tariff: Tariff, usage: SessionUsage, tz: ZoneInfo) -> Rating:
    clock = _Clock(usage.start)
    session_end = clock.offset(usage.end)

    # Reservation interval, clipped to end at session start.
    res_a = res_b = None
    if usage.reservation_start is not None:
        res_a = min(clock.offset(usage.reservation_start), _ZERO)
        res_end = usage.reservation_end if usage.reservation_end is not None else usage.start
        res_b = max(min(clock.offset(res_end), _ZERO), res_a)
    timeline_start = res_a if res_a is not None else _ZERO

    energy = _EnergyCurve.from_readings(clock, usage.readings)
    power = _StepSeries(
        [
            (clock.offset(r.timestamp), r.power_w / _W_PER_KW)
            for r in _sorted(usage.readings)
            if r.power_w is not None
        ]
    )
    current = _StepSeries(
        [
            (clock.offset(r.timestamp), r.current_a)
            for r in _sorted(usage.readings)
            if r.current_a is not None
        ]
    )
    states = sorted((clock.offset(s.timestamp), s.charging) for s in usage.states)
    state_times = [t for t, _ in states]

    def charging_at(t: Decimal) -> bool:
        i = bisect.bisect_right(state_times, t) - 1
        return states[i][1] if i >= 0 else True

    restrictions = [e.restrictions for e in tariff.elements if e.restrictions is not None]
    uses_power = any(r.uses_power for r in restrictions)
    uses_current = any(r.uses_current for r in restrictions)

    # ---- 2. cut points
    cuts: set[Decimal] = {timeline_start, _ZERO, session_end}
    if res_a is not None and res_b is not None:
        cuts.update((res_a, res_b))
    first = clock.instant(timeline_start)
    cuts |= _session_cuts(tariff, tz, clock, first, usage.end, energy)
    if res_a is not None:
        for r in restrictions:
            for seconds in (r.min_duration, r.max_duration):
                if seconds is not None:
                    cuts.add(res_a + seconds)
    if uses_power:
        cuts.update(power.times)
    if uses_current:
        cuts.update(current.times)
    cuts.update(state_times)
    ordered = sorted(c for c in cuts if timeline_start <= c <= session_end)

    # ---- 3. slices, element choice per dimension, merge
    def reservation_context(a: Decimal, reservation: str | None, elapsed: Decimal) -> _Context:
        return _Context(
            local=clock.instant(a).astimezone(tz),
            elapsed=elapsed,
            energy_kwh=_ZERO,
            power_kw=power.at(a),
            current_a=current.at(a),
            reservation=reservation,
        )

    reservation_kinds: tuple[str | None, ...] = (
        ("RESERVATION_EXPIRES", "RESERVATION") if usage.reservation_expired else ("RESERVATION",)
    )
    slices: list[_Slice] = []
    for a, b in zip(ordered, ordered[1:], strict=False):
        if b <= _ZERO:
            if res_a is None or res_b is None or not (res_a <= a and b <= res_b):
                continue  # gap between reservation end and session start
            ctx = reservation_context(a, reservation_kinds[0], a - res_a)
            pick = _find_component(tariff, TIME, ctx, reservation_kinds)
            slices.append(_Slice(a, b, RESERVATION, {RESERVATION_TIME: pick}))
            continue
        ctx = _session_context(
            clock, tz, a, energy_wh=energy.at(a), power_kw=power.at(a), current_a=current.at(a)
        )
        state, picks = _session_picks(tariff, ctx, charging_at(a))
        slices.append(_Slice(a, b, state, picks))
    merged: list[_Slice] = []
    for piece in slices:
        if merged and merged[-1].b == piece.a and merged[-1].signature() == piece.signature():
            merged[-1].b = piece.b
        else:
            merged.append(piece)

    # ---- 4. volumes (base units: Wh and seconds) and step_size
    def base_volume(piece: _Slice, dim: str) -> Decimal:
        if dim == ENERGY:
            return energy.at(piece.b) - energy.at(piece.a)
        return piece.b - piece.a

    extras: dict[tuple[int, str], Decimal] = {}

    def billable(i: int, dim: str) -> bool:
        pick = merged[i].picks.get(dim)
        return pick is not None and pick[1].price > 0 and base_volume(merged[i], dim) > 0

    def round_dimension(dim: str, last_index: int) -> None:
        total = sum(
            (base_volume(merged[i], dim) for i in range(len(merged)) if billable(i, dim)), _ZERO
        )
        pick = merged[last_index].picks[dim]
        assert pick is not None
        extra = _step_extra(total, pick[1].step_size)
        if extra:
            extras[(last_index, dim)] = extra

    for dims in ((ENERGY,), (TIME, PARKING_TIME), (RESERVATION_TIME,)):
        last = None
        for i in range(len(merged)):
            for dim in dims:
                if billable(i, dim):
                    last = (i, dim)
        if last is not None:
            round_dimension(last[1], last[0])

    # ---- 5. money
    lines: list[CostLine] = []
    periods: list[ChargingPeriod] = []
    for i, piece in enumerate(merged):
        dims_out = []
        for dim in (ENERGY, TIME, PARKING_TIME, RESERVATION_TIME):
            if dim not in piece.picks:
                continue
            base = base_volume(piece, dim)
            unit = _unit(dim)
            pick = piece.picks[dim]
            dims_out.append(PeriodDimension(dim, base / unit, pick[0] if pick else None))
            if pick is None:
                continue
            index, component = pick
            billed = base + extras.get((i, dim), _ZERO)
            lines.append(
                CostLine(
                    dimension=dim,
                    period_index=i,
                    element_index=index,
                    price=component.price,
                    vat=component.vat,
                    step_size=component.step_size,
                    volume=base / unit,
                    billed_volume=billed / unit,
                    cost=_cost(billed, dim, component),
                )
            )
        min_p, max_p = power.range(piece.a, piece.b)
        min_c, max_c = current.range(piece.a, piece.b)
        periods.append(
            ChargingPeriod(
                start=clock.instant(piece.a),
                end=clock.instant(piece.b),
                state=piece.state,
                dimensions=tuple(dims_out),
                min_power_kw=min_p,
                max_power_kw=max_p,
                min_current_a=min_c,
                max_current_a=max_c,
            )
        )

    # FLAT: once per session, first FLAT matching at session start [interp]; a reservation adds
    # its own FLAT (reservation fee), matched at reservation start.
    if not usage.reservation_expired:
        ctx = _session_context(
            clock,
            tz,
            _ZERO,
            energy_wh=energy.at(_ZERO),
            power_kw=power.at(_ZERO),
            current_a=current.at(_ZERO),
        )
        _add_flat(lines, FLAT, _session_flat(tariff, ctx))
    if res_a is not None and res_b is not None:
        ctx = reservation_context(res_a, reservation_kinds[0], _ZERO)
        _add_flat(lines, RESERVATION_FLAT, _find_component(tariff, FLAT, ctx, reservation_kinds))

    totals = []
    for dim in _DIMENSIONS:
        dim_lines = [line for line in lines if line.dimension == dim]
        if dim in (FLAT, RESERVATION_FLAT):
            volume = Decimal(len(dim_lines))
        else:
            volume = sum((d.volume for p in periods if (d := p.dimension(dim)) is not None), _ZERO)
        cost = _NO_COST
        for line in dim_lines:
            cost = cost + line.cost
        totals.append(
            DimensionTotal(
                dim, volume, sum((x.billed_volume for x in dim_lines), _ZERO), cost.denoised()
            )
        )

    subtotal = _NO_COST
    by_rate: dict[Decimal | None, Amount] = {}
    for line in lines:
        subtotal = subtotal + line.cost
        by_rate[line.vat] = by_rate.get(line.vat, _NO_COST) + line.cost
    subtotal = subtotal.denoised()
    vat_breakdown = tuple(
        VatLine(rate, amount.denoised().excl_vat, amount.denoised().incl_vat)
        for rate, amount in sorted(by_rate.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
    )

    total_exact, clamp_excl, clamp_incl = _clamp_total(tariff, subtotal)

    def hours(dim: str) -> Decimal:
        return next(t.volume for t in totals if t.dimension == dim)

    return Rating(
        tariff_id=tariff.id,
        currency=tariff.currency,
        start=usage.start,
        end=usage.end,
        periods=tuple(periods),
        lines=tuple(lines),
        dimension_totals=tuple(totals),
        total_energy_kwh=hours(ENERGY),
        total_time_h=hours(TIME) + hours(PARKING_TIME),
        total_parking_time_h=hours(PARKING_TIME),
        total_reservation_time_h=hours(RESERVATION_TIME),
        subtotal=subtotal,
        total_exact=total_exact,
        total_cost=total_exact.rounded(tariff.currency),
        vat_breakdown=vat_breakdown,
        clamp_excl_vat=clamp_excl,
        clamp_incl_vat=clamp_incl,
        uses_power=uses_power,
        uses_current=uses_current,
    )


def _sorted(readings: Iterable[MeterReading]) -> list[MeterReading]:
    return sorted(readings, key=lambda r: r.timestamp)


def _follow_vat_ratio(bound_excl: Decimal, subtotal: Amount) -> Decimal:
    """incl-VAT bound implied by an excl-only min/max_price, at the session's VAT ratio."""
    if subtotal.excl_vat == 0:
        return bound_excl
    return bound_excl * subtotal.incl_vat / subtotal.excl_vat


def _add_flat(
    lines: list[CostLine], dimension: str, pick: tuple[int, PriceComponent] | None
) -> None:
    if pick is None:
        return
    index, component = pick
    lines.append(
        CostLine(
            dimension=dimension,
            period_index=None,
            element_index=index,
            price=component.price,
            vat=component.vat,
            step_size=component.step_size,
            volume=_ONE,
            billed_volume=_ONE,
            cost=_flat_cost(component),
        )
    )


def _flat_cost(component: PriceComponent) -> Amount:
    return _with_vat(component.price, component.vat)


# --------------------------------------------------------------------------------------------
# Running cost of a live session
# --------------------------------------------------------------------------------------------

_RUNNING_COST_VERSION = 1


@dataclass(frozen=True)
class RunningCost:
    """The running cost of a live session at the checkpoint ``at``: all that the next meter
    reading needs to extend it (:func:`running_cost_advance`), nothing about the history.

    * ``meter_start_wh`` is the register at session start (the session's zero, as
      :func:`rate_session` takes it from the reading at start); ``meter_wh`` the highest register
      seen up to ``at``; ``energy_wh`` (their difference) the session energy at ``at``, which is
      also the session's ENERGY volume so far. Keeping the registers themselves, not a derived
      value, makes the next kWh-threshold crossing exactly the one rate_session computes.
    * ``charging``, ``power_kw`` and ``current_a`` hold from ``at`` until the next reading (last
      known values; ``None`` while unknown).
    * ``cost`` is unrounded, FLAT included, without step_size extras and without min/max_price;
      see :func:`running_cost_total` for what to show.
    * ``charging_s`` / ``parking_s`` are the TIME / PARKING_TIME volumes so far (exact: every
      increment is a difference of microsecond instants); their sum is ``at - start``.
      Duration restrictions count from ``start``, so they stay exact across increments too.

    Times are kept in UTC. :meth:`to_json` / :meth:`from_json` convert losslessly to and from a
    JSON-able dict (Decimals as strings, datetimes ISO 8601 with offset).
    """

    tariff_id: str
    start: dt.datetime
    at: dt.datetime
    meter_start_wh: Decimal
    meter_wh: Decimal
    charging: bool
    power_kw: Decimal | None
    current_a: Decimal | None
    cost: Amount
    charging_s: Decimal
    parking_s: Decimal

    @property
    def energy_wh(self) -> Decimal:
        """Session energy (Wh) at ``at``: the ENERGY volume so far."""
        with localcontext() as decimal_ctx:
            decimal_ctx.prec = _PRECISION
            return self.meter_wh - self.meter_start_wh

    @property
    def energy_kwh(self) -> Decimal:
        return _exact_quotient(self.energy_wh, _WH_PER_KWH)

    @property
    def time_h(self) -> Decimal:
        """Charging plus parking hours so far (OCPI's total_time)."""
        return _exact_quotient(self.charging_s + self.parking_s, _S_PER_H)

    @property
    def parking_time_h(self) -> Decimal:
        return _exact_quotient(self.parking_s, _S_PER_H)

    def to_json(self) -> dict[str, Any]:
        def opt(value: Decimal | None) -> str | None:
            return None if value is None else str(value)

        return {
            "version": _RUNNING_COST_VERSION,
            "tariff_id": self.tariff_id,
            "start": self.start.isoformat(),
            "at": self.at.isoformat(),
            "meter_start_wh": str(self.meter_start_wh),
            "meter_wh": str(self.meter_wh),
            "charging": self.charging,
            "power_kw": opt(self.power_kw),
            "current_a": opt(self.current_a),
            "cost": {"excl_vat": str(self.cost.excl_vat), "incl_vat": str(self.cost.incl_vat)},
            "charging_s": str(self.charging_s),
            "parking_s": str(self.parking_s),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunningCost:
        if data.get("version") != _RUNNING_COST_VERSION:
            raise ValueError(f"unknown running cost version {data.get('version')!r}")

        def when(key: str) -> dt.datetime:
            value = dt.datetime.fromisoformat(data[key])
            _require_aware(key, value)
            return value.astimezone(dt.UTC)

        def dec(key: str) -> Decimal:
            return Decimal(data[key])

        def opt(key: str) -> Decimal | None:
            return None if data[key] is None else Decimal(data[key])

        charging = data["charging"]
        if not isinstance(charging, bool):
            raise ValueError(f"charging must be a boolean, not {charging!r}")
        return cls(
            tariff_id=data["tariff_id"],
            start=when("start"),
            at=when("at"),
            meter_start_wh=dec("meter_start_wh"),
            meter_wh=dec("meter_wh"),
            charging=charging,
            power_kw=opt("power_kw"),
            current_a=opt("current_a"),
            cost=Amount(Decimal(data["cost"]["excl_vat"]), Decimal(data["cost"]["incl_vat"])),
            charging_s=dec("charging_s"),
            parking_s=dec("parking_s"),
        )


def _exact_quotient(a: Decimal, b: Decimal) -> Decimal:
    """``a / b`` at the engine's precision, as rate_session computes its volumes."""
    with localcontext() as decimal_ctx:
        decimal_ctx.prec = _PRECISION
        return a / b


def _require_aware(name: str, value: dt.datetime) -> None:
    if value.utcoffset() is None:
        raise ValueError(f"{name} must be timezone-aware")


def running_cost_start(
    tariff: Tariff,
    *,
    start: dt.datetime,
    energy_wh: Decimal | int | str = 0,
    charging: bool = True,
    power_kw: Decimal | int | str | None = None,
    current_a: Decimal | int | str | None = None,
    tz: ZoneInfo,
) -> RunningCost:
    """The running cost of a session that starts at ``start``: its FLAT, chosen as
    :func:`rate_session` chooses it (first matching element with a FLAT, matched at start).

    ``energy_wh`` is the meter register at start, the zero of the session's energy; pass 0 (the
    default) when counting session energy, and the raw register otherwise, then the raw register
    to :func:`running_cost_advance` too. ``charging``, ``power_kw`` and ``current_a`` are the
    values at start (charging unless told otherwise, as rate_session assumes before the first
    state change; power and current unknown unless given).

    Reservations are out of scope for the running cost: reservation TIME and the reservation
    FLAT are priced by rate_session once the session has ended; elements restricted to a
    reservation never price the session itself, here as there.
    """
    _require_aware("start", start)
    start = start.astimezone(dt.UTC)
    with localcontext() as decimal_ctx:
        decimal_ctx.prec = _PRECISION
        register = _dec(energy_wh)
        power = _opt_dec(power_kw)
        current = _opt_dec(current_a)
        ctx = _session_context(
            _Clock(start), tz, _ZERO, energy_wh=_ZERO, power_kw=power, current_a=current
        )
        pick = _session_flat(tariff, ctx)
        return RunningCost(
            tariff_id=tariff.id,
            start=start,
            at=start,
            meter_start_wh=register,
            meter_wh=register,
            charging=charging,
            power_kw=power,
            current_a=current,
            cost=_NO_COST if pick is None else _flat_cost(pick[1]),
            charging_s=_ZERO,
            parking_s=_ZERO,
        )


def running_cost_advance(
    tariff: Tariff,
    state: RunningCost,
    *,
    until: dt.datetime,
    energy_wh: Decimal | int | str,
    charging: bool | None = None,
    power_kw: Decimal | int | str | None = None,
    current_a: Decimal | int | str | None = None,
    tz: ZoneInfo,
) -> RunningCost:
    """Extend the running cost from ``state.at`` to the new reading at ``until``.

    ``energy_wh`` is the register at ``until`` (same scale as given to
    :func:`running_cost_start`); between the two readings it rises linearly, as in
    :func:`rate_session`. The interval ``[state.at, until)`` is priced with the state's
    charging/power/current (the values at its start, as rate_session's slices are); the
    ``charging``/``power_kw``/``current_a`` given apply from ``until`` on (``None``: unchanged,
    like a reading without that value).

    The interval is cut where rate_session cuts it, with the same shared code: local wall-clock
    boundaries and midnights in ``tz`` (DST-aware), min/max_duration counted from session start,
    kWh thresholds at the interpolated crossing (the energy there is the threshold, exactly).
    Each slice gets rate_session's element choice per dimension. The work is bounded by the
    tariff and the interval, never by the history: the state carries everything else.

    So the running cost depends only on the readings given: folding this function over a
    session's readings (state changes at reading instants) gives the cost that rate_session
    gives for a SessionUsage of the same readings and state changes, without its step_size
    extras and min/max_price clamp. Readings that lie on the straight line between two others
    change nothing; a restriction boundary between two readings is never skipped. A state
    change between readings needs a reading at its instant (the caller passes the latest
    register it has), which rate_session then sees as a reading too.

    * ``until`` before ``state.at`` (a late reading): the state is returned unchanged.
    * ``until`` equal to ``state.at`` (a duplicate): there is no interval to price and energy
      cannot jump at an instant, so ``energy_wh`` is ignored; a charging/power/current given
      replaces the state's from ``at`` on (a state change reported at the instant of the last
      reading). A plain duplicate returns the state unchanged.
    * A register below the highest one seen (meter reset or glitch) counts as no energy until it
      exceeds that again, as rate_session treats it; a caller that knows of a reset adds the
      old register as an offset.
    """
    _require_aware("until", until)
    if tariff.id != state.tariff_id:
        raise ValueError(f"running cost of tariff {state.tariff_id!r}, not {tariff.id!r}")
    until = until.astimezone(dt.UTC)
    if until < state.at:
        return state
    with localcontext() as decimal_ctx:
        decimal_ctx.prec = _PRECISION
        new_charging = state.charging if charging is None else charging
        new_power = state.power_kw if power_kw is None else _dec(power_kw)
        new_current = state.current_a if current_a is None else _dec(current_a)
        if until == state.at:
            if (new_charging, new_power, new_current) == (
                state.charging,
                state.power_kw,
                state.current_a,
            ):
                return state
            return dataclasses.replace(
                state, charging=new_charging, power_kw=new_power, current_a=new_current
            )

        clock = _Clock(state.start)
        a0, b0 = clock.offset(state.at), clock.offset(until)
        register = max(state.meter_wh, _dec(energy_wh))
        energy = _EnergyCurve([(a0, state.meter_wh), (b0, register)], state.meter_start_wh)
        cuts = _session_cuts(tariff, tz, clock, state.at, until, energy)
        ordered = [a0, *sorted(c for c in cuts if a0 < c < b0), b0]

        cost = state.cost
        for a, b in zip(ordered, ordered[1:], strict=False):
            ctx = _session_context(
                clock,
                tz,
                a,
                energy_wh=energy.at(a),
                power_kw=state.power_kw,
                current_a=state.current_a,
            )
            _, picks = _session_picks(tariff, ctx, state.charging)
            for dim, pick in picks.items():
                if pick is not None:
                    base = energy.at(b) - energy.at(a) if dim == ENERGY else b - a
                    cost = cost + _cost(base, dim, pick[1])

        elapsed = b0 - a0
        return RunningCost(
            tariff_id=state.tariff_id,
            start=state.start,
            at=until,
            meter_start_wh=state.meter_start_wh,
            meter_wh=register,
            charging=new_charging,
            power_kw=new_power,
            current_a=new_current,
            cost=cost,
            charging_s=state.charging_s + elapsed if state.charging else state.charging_s,
            parking_s=state.parking_s if state.charging else state.parking_s + elapsed,
        )


def running_cost_exact(tariff: Tariff, state: RunningCost) -> Amount:
    """The running cost to show, unrounded: ``state.cost`` with max_price applied (excl. and
    incl. VAT independently, as rate_session clamps), and neither min_price nor step_size.

    A session is not charged its minimum before it ends: a live display that jumps to the
    min_price at plug-in and stays there tells the driver nothing, and the minimum is a floor on
    the final price, which rate_session applies. The step_size extras likewise exist only once
    the session's totals are known. Prices are never negative, so the running total only grows,
    and the end only adds to it (step extras, the min_price floor); with an excl-only max_price
    the incl-VAT cap follows the VAT ratio of the cost so far, which the extras may change.
    """
    with localcontext() as decimal_ctx:
        decimal_ctx.prec = _PRECISION
        amount, _, _ = _clamp_total(tariff, state.cost.denoised(), with_min=False)
        return amount


def running_cost_total(
    tariff: Tariff, state: RunningCost, *, currency: str | None = None
) -> Amount:
    """:func:`running_cost_exact` rounded to the minor unit of ``currency`` (by default the
    tariff's) with the engine's :func:`round_money`: the figure for a live display."""
    with localcontext() as decimal_ctx:
        decimal_ctx.prec = _PRECISION
        return running_cost_exact(tariff, state).rounded(currency or tariff.currency)

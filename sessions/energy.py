"""The one rule for a session's energy, shared by the session (sessions.services) and the usage
the rating engine gets (tariffs.selectors.session_usage), so that the session, its rating and
its CDR can never disagree.

Plain Python over Decimal: no database.

1. The session's energy is its meter stop against its meter start. Energy register samples in
   between only fill the curve: they give it its shape, never its total. A sample above the
   meter stop (a rounded meterStop of 74 Wh after a sample of 74.48 Wh) is clamped to the stop.
2. A register reading below the previous one by no more than the reset threshold is jitter
   (rounding, a kWh sample beside an integer Wh stop): the curve holds.
3. A larger drop is a reset (a station rebooted mid-session, a meter swapped). The energy is the
   sum of the segments before and after it, each measured by its own readings. A register that
   fell to at most half of its previous reading restarted from zero (a reboot), so the new
   segment counts from 0; otherwise it was re-based (a swapped or re-based meter) and the new
   segment counts from its first reading: what passed between the two is unknown, and is not
   billed. Either way the session is flagged.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass, field
from decimal import Decimal

ZERO = Decimal(0)
# Where the value was measured: the outlet (or no location given) is what the driver gets.
_LOCATION_RANK = {"": 0, "Outlet": 0, "Cable": 1, "Inlet": 2}


def register_readings(
    rows: Iterable[tuple[dt.datetime, str, str, Decimal | None]],
) -> list[tuple[dt.datetime, Decimal]]:
    """Energy register rows (timestamp, location, unit, value) as one reading in Wh per instant,
    in time order: the value measured closest to the outlet; of several from the same place
    (periodic and clock-aligned at one instant), the highest."""
    best: dict[dt.datetime, tuple[int, Decimal]] = {}
    for timestamp, location, unit, value in rows:
        if value is None:
            continue
        rank = _LOCATION_RANK.get(location, 3)
        wh = value * 1000 if unit.lower() == "kwh" else value
        if timestamp not in best or (rank, -wh) < (best[timestamp][0], -best[timestamp][1]):
            best[timestamp] = (rank, wh)
    return [(timestamp, best[timestamp][1]) for timestamp in sorted(best)]


@dataclass(frozen=True)
class Reset:
    """The register went back from `before_wh` to `after_wh` at `at`."""

    at: dt.datetime
    before_wh: Decimal
    after_wh: Decimal
    restarted: bool

    def describe(self) -> str:
        counted = "from 0" if self.restarted else f"from {_wh(self.after_wh)} Wh"
        return (
            f"meter reset at {self.at.isoformat()}: register went back from "
            f"{_wh(self.before_wh)} to {_wh(self.after_wh)} Wh; energy summed per segment "
            f"(the new one counted {counted})"
        )


def _wh(value: Decimal) -> str:
    return format(value.normalize(), "f") if value == value.to_integral() else format(value, "f")


@dataclass
class RegisterWalk:
    """The energy delivered by a register read in time order (rules 2 and 3 above).

    `last` is the highest reading of the current segment, `delivered` the energy so far: the
    session keeps both (meter_last_wh, energy_wh) and walks on with each new MeterValues.
    """

    threshold: Decimal
    last: Decimal | None = None
    delivered: Decimal = ZERO
    resets: list[Reset] = field(default_factory=list)

    def read(self, at: dt.datetime, value: Decimal) -> None:
        if self.last is None:
            self.last = value
        elif value >= self.last:
            self.delivered += value - self.last
            self.last = value
        elif self.last - value > self.threshold:
            restarted = value <= self.last / 2
            self.resets.append(Reset(at, self.last, value, restarted))
            if restarted:
                self.delivered += value
            self.last = value
        # else: jitter below the segment's high: the curve holds.

    def stop(self, at: dt.datetime, value: Decimal) -> Decimal:
        """The energy at the meter stop: exactly the stop against the segment's base (rule 1),
        also when the stop lies a little below the highest sample."""
        if self.last is None:
            self.last = value
            return self.delivered
        if value >= self.last or self.last - value <= self.threshold:
            return max(ZERO, self.delivered + value - self.last)
        self.read(at, value)
        return self.delivered


@dataclass(frozen=True)
class EnergyCurve:
    """Energy delivered since the start (Wh, non-decreasing) at each known instant, the total,
    and the resets found on the way."""

    points: list[tuple[dt.datetime, Decimal]]
    total: Decimal
    resets: list[Reset]


def energy_curve(
    *,
    readings: Iterable[tuple[dt.datetime, Decimal]],
    start: dt.datetime,
    end: dt.datetime | None,
    meter_start: Decimal | None,
    meter_stop: Decimal | None,
    threshold: Decimal,
) -> EnergyCurve | None:
    """The session's energy curve from its meter start and stop and its register readings
    (`register_readings`), or None when not a single register value is known.

    Readings count from the start to the end (or on, for a live session). Without a meter
    start, the last reading before the start is the base, else the first one inside.
    """
    ordered = sorted(readings)
    base = meter_start
    if base is None:
        before = [value for at, value in ordered if at < start]
        base = before[-1] if before else None
    walk = RegisterWalk(threshold, last=base)
    points: list[tuple[dt.datetime, Decimal]] = [(start, ZERO)] if base is not None else []
    for at, value in ordered:
        if at < start or (end is not None and at > end):
            continue
        walk.read(at, value)
        points.append((at, walk.delivered))
    total = walk.delivered
    if end is not None and meter_stop is not None:
        total = walk.stop(end, meter_stop)
        points.append((end, total))
    if walk.last is None:
        return None
    # Samples fill the curve, the stop ends it: nothing before the end lies above the total.
    clamped = [(at, min(energy, total)) for at, energy in points]
    return EnergyCurve(points=clamped, total=total, resets=list(walk.resets))

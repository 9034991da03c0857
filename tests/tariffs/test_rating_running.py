"""The running cost of a live session (pure, no database): folded over the meter readings, it
gives what rate_session gives for the same readings, without step_size extras and min_price."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from collections.abc import Sequence
from decimal import Decimal, localcontext
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tariffs.rating import (
    Amount,
    MeterReading,
    PriceComponent,
    Rating,
    Restrictions,
    RunningCost,
    SessionUsage,
    StateChange,
    Tariff,
    TariffElement,
    rate_session,
    running_cost_advance,
    running_cost_exact,
    running_cost_start,
    running_cost_total,
)
from tests.tariffs.test_rating import (
    AMSTERDAM,
    BERLIN,
    PRICES,
    PROPERTY_SETTINGS,
    STARTS,
    comp,
    element,
    energy_free_restrictions,
    example_c_tariff,
    general_tariffs,
    local,
    tariff,
)

D = Decimal
UTC = dt.UTC
ZONES = [AMSTERDAM, ZoneInfo("America/New_York"), ZoneInfo("Australia/Lord_Howe"), ZoneInfo("UTC")]


# ------------------------------------------------------------------------------------------
# A live session as its charger reports it: readings, state changes at reading instants
# ------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Read:
    """One report: the register (Wh) at ``at``, and what changed from then on."""

    at: dt.datetime
    wh: Decimal
    power_w: Decimal | None = None
    current_a: Decimal | None = None
    charging: bool | None = None


def as_usage(reads: Sequence[Read]) -> SessionUsage:
    """The same reports for rate_session: the session ends at the last one."""
    return SessionUsage(
        start=reads[0].at,
        end=reads[-1].at,
        readings=tuple(MeterReading(r.at, r.wh, r.power_w, r.current_a) for r in reads),
        states=tuple(StateChange(r.at, r.charging) for r in reads if r.charging is not None),
    )


def kw(power_w: Decimal | None) -> Decimal | None:
    return None if power_w is None else power_w / 1000


def begin(t: Tariff, first: Read, tz: ZoneInfo) -> RunningCost:
    return running_cost_start(
        t,
        start=first.at,
        energy_wh=first.wh,
        charging=True if first.charging is None else first.charging,
        power_kw=kw(first.power_w),
        current_a=first.current_a,
        tz=tz,
    )


def advance(t: Tariff, state: RunningCost, read: Read, tz: ZoneInfo) -> RunningCost:
    return running_cost_advance(
        t,
        state,
        until=read.at,
        energy_wh=read.wh,
        charging=read.charging,
        power_kw=kw(read.power_w),
        current_a=read.current_a,
        tz=tz,
    )


def fold(t: Tariff, reads: Sequence[Read], tz: ZoneInfo) -> list[RunningCost]:
    """The state after each report (the first is the session start)."""
    states = [begin(t, reads[0], tz)]
    for read in reads[1:]:
        states.append(advance(t, states[-1], read, tz))
    return states


def step_extras(rating: Rating) -> Amount:
    """What step_size added to rate_session's subtotal: the extra volume of each line."""
    excl = incl = D(0)
    for line in rating.lines:
        extra = (line.billed_volume - line.volume) * line.price
        excl += extra
        incl += extra if line.vat is None else extra * (1 + line.vat / 100)
    return Amount(excl, incl)


def without_step_extras(rating: Rating) -> Amount:
    """rate_session's subtotal with every line at its actual volume, on rate_session's grid."""
    total = Amount(D(0), D(0))
    with localcontext() as ctx:
        ctx.prec = 50
        for line in rating.lines:
            excl = line.volume * line.price
            total = total + Amount(excl, excl if line.vat is None else excl * (1 + line.vat / 100))
        return total.denoised()


def has_step_extras(rating: Rating) -> bool:
    return any(line.billed_volume != line.volume for line in rating.lines)


def with_steps_of_one(t: Tariff) -> Tariff:
    elements = tuple(
        TariffElement(
            tuple(dataclasses.replace(c, step_size=1) for c in e.price_components), e.restrictions
        )
        for e in t.elements
    )
    return dataclasses.replace(t, elements=elements)


@st.composite
def running_tariffs(draw: st.DrawFn, *, unit_steps: bool = True) -> Tariff:
    """The rating tests' general tariffs (time windows, days, durations, kWh, power), with a
    current-restricted element now and then."""
    t = draw(general_tariffs())
    if draw(st.booleans()):
        amps = st.one_of(st.none(), st.integers(0, 64).map(D))
        restricted = TariffElement(
            (PriceComponent("ENERGY", draw(PRICES), D(19)), PriceComponent("TIME", D(1), None)),
            Restrictions(min_current=draw(amps), max_current=draw(amps)),
        )
        elements = list(t.elements)
        elements.insert(draw(st.integers(0, len(elements))), restricted)
        t = dataclasses.replace(t, elements=tuple(elements))
    return with_steps_of_one(t) if unit_steps else t


# Around the DST changes of the sampled zones (Europe: Mar 30 / Oct 26, New York: Nov 2,
# Lord Howe: Apr 6, half an hour) and the rating tests' week.
DST_CHANGES = (
    dt.datetime(2025, 10, 26, 1, tzinfo=UTC),
    dt.datetime(2025, 11, 2, 6, tzinfo=UTC),
    dt.datetime(2025, 4, 5, 15, tzinfo=UTC),
)
SESSION_STARTS = st.one_of(
    STARTS,
    st.builds(
        lambda change, minutes: change + dt.timedelta(minutes=minutes),
        st.sampled_from(DST_CHANGES),
        st.integers(-48 * 60, 48 * 60),
    ),
)
REPORTS = st.lists(
    st.tuples(
        # microseconds to the next report, up to 4 h
        st.one_of(
            st.integers(1, 4 * 3600).map(lambda s: s * 10**6), st.integers(1, 4 * 3600 * 10**6)
        ),
        # Wh delivered meanwhile; now and then the register goes backwards (reset or glitch)
        st.one_of(
            st.integers(0, 25_000).map(D),
            st.decimals(min_value=0, max_value=25_000, places=3),
            st.integers(-5_000, -1).map(D),
        ),
        st.one_of(st.none(), st.integers(0, 60_000).map(D)),
        st.one_of(st.none(), st.integers(0, 64).map(D)),
        st.one_of(st.none(), st.booleans()),
    ),
    min_size=1,
    max_size=7,
)
FIRST = st.tuples(
    st.one_of(st.just(D(0)), st.decimals(min_value=0, max_value=10**7, places=3)),
    st.one_of(st.none(), st.integers(0, 60_000).map(D)),
    st.one_of(st.none(), st.integers(0, 64).map(D)),
    st.one_of(st.none(), st.booleans()),
)


def build_reads(
    start: dt.datetime,
    first: tuple[Decimal, Decimal | None, Decimal | None, bool | None],
    reports: list[tuple[int, Decimal, Decimal | None, Decimal | None, bool | None]],
) -> list[Read]:
    reads = [Read(start, *first)]
    for micro, wh, power, current, charging in reports:
        previous = reads[-1]
        reads.append(
            Read(
                previous.at + dt.timedelta(microseconds=micro),
                previous.wh + wh,
                power,
                current,
                charging,
            )
        )
    return reads


@st.composite
def whole_unit_tariffs(draw: st.DrawFn) -> Tariff:
    """Steps of 1 and no restriction that can cut inside a second or a Wh when the readings
    are whole seconds apart at a whole number of Wh per second (no kWh thresholds)."""
    elements = []
    for _ in range(draw(st.integers(1, 4))):
        types = draw(
            st.sets(st.sampled_from(["ENERGY", "TIME", "PARKING_TIME", "FLAT"]), min_size=1)
        )
        components = tuple(
            PriceComponent(t, draw(PRICES), draw(st.sampled_from([None, D(0), D(19), D(21)])))
            for t in sorted(types)
        )
        kind = draw(st.sampled_from(["same", "power", "current"]))
        bounds = st.one_of(st.none(), st.integers(0, 64).map(D))
        restrictions = draw(energy_free_restrictions())
        if kind == "power":
            restrictions = Restrictions(min_power=draw(bounds), max_power=draw(bounds))
        elif kind == "current":
            restrictions = Restrictions(min_current=draw(bounds), max_current=draw(bounds))
        elements.append(TariffElement(components, restrictions))
    return Tariff(id="W", currency="EUR", elements=tuple(elements))


WHOLE_REPORTS = st.lists(
    st.tuples(
        st.integers(1, 4 * 3600),  # seconds to the next report
        st.integers(0, 20),  # Wh per second meanwhile (up to 72 kW)
        st.one_of(st.none(), st.integers(0, 60_000).map(D)),
        st.one_of(st.none(), st.integers(0, 64).map(D)),
        st.one_of(st.none(), st.booleans()),
    ),
    min_size=1,
    max_size=7,
)


def build_whole_reads(
    start: dt.datetime,
    register: int,
    reports: list[tuple[int, int, Decimal | None, Decimal | None, bool | None]],
) -> list[Read]:
    return build_reads(
        start,
        (D(register), None, None, None),
        [(s * 10**6, D(s * rate), p, c, ch) for s, rate, p, c, ch in reports],
    )


# ------------------------------------------------------------------------------------------
# (1) Steps of 1, no min/max price: exactly rate_session, after every reading
# ------------------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(
    t=whole_unit_tariffs(),
    start=SESSION_STARTS,
    register=st.one_of(st.just(0), st.integers(0, 10**8)),
    reports=WHOLE_REPORTS,
    tz=st.sampled_from(ZONES),
)
def test_running_total_is_rate_session_total_on_the_readings_so_far(
    t: Tariff,
    start: dt.datetime,
    register: int,
    reports: list[tuple[int, int, Decimal | None, Decimal | None, bool | None]],
    tz: ZoneInfo,
) -> None:
    """Whole seconds and whole Wh: step_size 1 (1 s, 1 Wh) has nothing to round, and the
    running cost is rate_session's total, unrounded and rounded, after every reading."""
    reads = build_whole_reads(start, register, reports)
    for n, state in enumerate(fold(t, reads, tz), start=1):
        rating = rate_session(t, as_usage(reads[:n]), tz)
        assert not has_step_extras(rating)
        assert state.cost.denoised() == rating.subtotal
        assert running_cost_exact(t, state) == rating.total_exact
        assert running_cost_total(t, state, currency="EUR") == rating.total_cost


@PROPERTY_SETTINGS
@given(
    t=running_tariffs(),
    start=SESSION_STARTS,
    first=FIRST,
    reports=REPORTS,
    tz=st.sampled_from(ZONES),
)
def test_running_cost_is_rate_session_at_actual_volumes_so_far(
    t: Tariff,
    start: dt.datetime,
    first: tuple[Decimal, Decimal | None, Decimal | None, bool | None],
    reports: list[tuple[int, Decimal, Decimal | None, Decimal | None, bool | None]],
    tz: ZoneInfo,
) -> None:
    """Any instants, registers (backwards too) and restrictions (kWh thresholds too): step_size
    1 still bills whole Wh and whole seconds, so rate_session may add a fraction of one; the
    running cost is its subtotal at the actual volumes, on rate_session's own 1e-20 grid."""
    reads = build_reads(start, first, reports)
    states = fold(t, reads, tz)
    for n, state in enumerate(states, start=1):
        rating = rate_session(t, as_usage(reads[:n]), tz)
        assert state.cost.denoised() == without_step_extras(rating)
        if not has_step_extras(rating):
            assert state.cost.denoised() == rating.subtotal
            assert running_cost_total(t, state) == rating.total_cost
        assert state.at - state.start == rating.end - rating.start
        assert (state.charging_s + state.parking_s) * 10**6 == (
            (state.at - state.start) // dt.timedelta(microseconds=1)
        )
        assert abs(state.energy_kwh - rating.total_energy_kwh) < D("1e-30")
        assert abs(state.parking_time_h - rating.total_parking_time_h) < D("1e-30")
    for before, after in zip(states, states[1:], strict=False):
        assert after.cost.excl_vat >= before.cost.excl_vat  # prices are never negative
        assert after.cost.incl_vat >= before.cost.incl_vat


# ------------------------------------------------------------------------------------------
# (2) step_size > 1: below rate_session's final total by exactly the step extras
# ------------------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(
    t=running_tariffs(unit_steps=False),
    start=SESSION_STARTS,
    first=FIRST,
    reports=REPORTS,
    tz=st.sampled_from(ZONES),
)
def test_running_cost_lacks_only_the_step_extras(
    t: Tariff,
    start: dt.datetime,
    first: tuple[Decimal, Decimal | None, Decimal | None, bool | None],
    reports: list[tuple[int, Decimal, Decimal | None, Decimal | None, bool | None]],
    tz: ZoneInfo,
) -> None:
    reads = build_reads(start, first, reports)
    rating = rate_session(t, as_usage(reads), tz)
    states = fold(t, reads, tz)
    final = rating.total_cost
    for state in states:
        shown = running_cost_total(t, state)
        assert shown.excl_vat <= final.excl_vat
        assert shown.incl_vat <= final.incl_vat
    running = running_cost_exact(t, states[-1])
    extras = step_extras(rating)
    assert abs(running.excl_vat + extras.excl_vat - rating.total_exact.excl_vat) < D("1e-18")
    assert abs(running.incl_vat + extras.incl_vat - rating.total_exact.incl_vat) < D("1e-18")
    assert fold(with_steps_of_one(t), reads, tz) == states


# ------------------------------------------------------------------------------------------
# (3) max_price clamps the running total; min_price waits for the end
# ------------------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(
    t=whole_unit_tariffs(),
    start=SESSION_STARTS,
    reports=WHOLE_REPORTS,
    max_excl=st.decimals(min_value=0, max_value=20, places=2),
    max_incl=st.one_of(st.none(), st.decimals(min_value=0, max_value=25, places=2)),
    min_excl=st.one_of(st.none(), st.decimals(min_value=0, max_value=20, places=2)),
)
def test_running_total_is_clamped_to_max_price_not_raised_to_min_price(
    t: Tariff,
    start: dt.datetime,
    reports: list[tuple[int, int, Decimal | None, Decimal | None, bool | None]],
    max_excl: Decimal,
    max_incl: Decimal | None,
    min_excl: Decimal | None,
) -> None:
    capped = dataclasses.replace(t, max_price_excl_vat=max_excl, max_price_incl_vat=max_incl)
    floored = dataclasses.replace(capped, min_price_excl_vat=min_excl)
    reads = build_whole_reads(start, 0, reports)
    for n, state in enumerate(fold(floored, reads, BERLIN), start=1):
        rating = rate_session(capped, as_usage(reads[:n]), BERLIN)
        shown = running_cost_total(floored, state)
        assert running_cost_exact(floored, state) == rating.total_exact
        assert shown == rating.total_cost
        assert shown.excl_vat <= max_excl
        if max_incl is not None:
            assert shown.incl_vat <= max_incl
        uncapped = state.cost.denoised().rounded("EUR")
        assert shown.excl_vat == min(uncapped.excl_vat, max_excl)


def test_max_price_example_c2_live() -> None:
    start = dt.datetime(2025, 5, 1, 10, tzinfo=UTC)
    quarter = dt.timedelta(minutes=15)
    reads = [Read(start + i * quarter, D(7500 * i)) for i in range(5)]
    states = fold(example_c_tariff(), reads, BERLIN)
    shown = [running_cost_total(example_c_tariff(), s) for s in states]
    # 7.5 kWh x 0.45; 15 kWh; 20 x 0.45 + 2.5 x 0.35; 12.50 capped at 12.00 / 14.52.
    assert [s.excl_vat for s in shown] == [D("0.00"), D("3.38"), D("6.75"), D("9.88"), D("12.00")]
    assert shown[-1].incl_vat == D("14.52")
    assert states[-1].cost == Amount(D("12.500"), D("15.12500"))
    assert shown[-1] == rate_session(example_c_tariff(), as_usage(reads), BERLIN).total_cost


def test_min_price_is_not_shown_before_the_end() -> None:
    t = tariff(element(comp("ENERGY", "0.40", vat=None)), min_price_excl_vat=D("5.00"))
    start = dt.datetime(2025, 5, 1, 10, tzinfo=UTC)
    reads = [Read(start, D(0)), Read(start + dt.timedelta(hours=1), D(3000))]
    state = fold(t, reads, BERLIN)[-1]
    assert running_cost_total(t, state) == Amount(D("1.20"), D("1.20"))
    assert rate_session(t, as_usage(reads), BERLIN).total_cost == Amount(D("5.00"), D("5.00"))


# ------------------------------------------------------------------------------------------
# (4) It depends only on the readings given (linear in between), as rate_session does
# ------------------------------------------------------------------------------------------


@PROPERTY_SETTINGS
@given(
    t=running_tariffs(),
    start=SESSION_STARTS,
    first=FIRST,
    reports=REPORTS,
    tz=st.sampled_from(ZONES),
    data=st.data(),
)
def test_readings_on_the_straight_line_change_nothing(
    t: Tariff,
    start: dt.datetime,
    first: tuple[Decimal, Decimal | None, Decimal | None, bool | None],
    reports: list[tuple[int, Decimal, Decimal | None, Decimal | None, bool | None]],
    tz: ZoneInfo,
    data: st.DataObject,
) -> None:
    """More, smaller steps on the same lines (no new power, current or state) give the same
    running cost, however many restriction boundaries the larger steps span."""
    # Gaps in hundreds of microseconds, so that a percentage of one is an exact instant.
    coarse = build_reads(start, first, [(max(r[0] // 100, 1) * 100, *r[1:]) for r in reports])
    fine = [coarse[0]]
    high = coarse[0].wh  # the register as priced: a reading below the highest adds nothing
    for previous, read in zip(coarse, coarse[1:], strict=False):
        gap, rise = read.at - previous.at, max(read.wh - high, D(0))
        for percent in sorted(data.draw(st.sets(st.integers(1, 99), max_size=3))):
            fine.append(Read(previous.at + gap * percent / 100, high + rise * percent / 100))
        fine.append(read)
        high = max(high, read.wh)
    coarse_cost = fold(t, coarse, tz)[-1]
    fine_cost = fold(t, fine, tz)[-1]
    assert abs(coarse_cost.cost.excl_vat - fine_cost.cost.excl_vat) < D("1e-30")
    assert abs(coarse_cost.cost.incl_vat - fine_cost.cost.incl_vat) < D("1e-30")
    assert running_cost_total(t, coarse_cost) == running_cost_total(t, fine_cost)
    assert coarse_cost.energy_wh == fine_cost.energy_wh
    assert (coarse_cost.charging_s, coarse_cost.parking_s) == (
        fine_cost.charging_s,
        fine_cost.parking_s,
    )


def test_other_readings_give_another_profile_exactly_as_rate_session() -> None:
    """Fewer readings of a profile that is not linear: another cost, the same rate_session
    gives on those readings. The running cost knows only what it is told."""
    t = tariff(
        element(comp("ENERGY", "0.20", vat=None), end_time=dt.time(8, 30)),
        element(comp("ENERGY", "0.40", vat=None)),
    )
    reads = [
        Read(local(BERLIN, 2025, 6, 2, 8), D(0)),
        Read(local(BERLIN, 2025, 6, 2, 8, 30), D(15_000)),
        Read(local(BERLIN, 2025, 6, 2, 9), D(20_000)),
    ]
    fine = fold(t, reads, BERLIN)[-1]
    coarse = fold(t, [reads[0], reads[2]], BERLIN)[-1]
    assert running_cost_total(t, fine).excl_vat == D("5.00")  # 15 x 0.20 + 5 x 0.40
    assert running_cost_total(t, coarse).excl_vat == D("6.00")  # 10 x 0.20 + 10 x 0.40
    assert running_cost_total(t, fine) == rate_session(t, as_usage(reads), BERLIN).total_cost
    assert (
        running_cost_total(t, coarse)
        == rate_session(t, as_usage([reads[0], reads[2]]), BERLIN).total_cost
    )


# ------------------------------------------------------------------------------------------
# (5) JSON round trip
# ------------------------------------------------------------------------------------------


def _json_types_only(value: object) -> bool:
    if isinstance(value, dict):
        return all(isinstance(k, str) and _json_types_only(v) for k, v in value.items())
    return value is None or isinstance(value, str | bool | int)


@PROPERTY_SETTINGS
@given(t=running_tariffs(), start=SESSION_STARTS, first=FIRST, reports=REPORTS, data=st.data())
def test_state_round_trips_through_json_and_goes_on_the_same(
    t: Tariff,
    start: dt.datetime,
    first: tuple[Decimal, Decimal | None, Decimal | None, bool | None],
    reports: list[tuple[int, Decimal, Decimal | None, Decimal | None, bool | None]],
    data: st.DataObject,
) -> None:
    reads = build_reads(start, first, reports)
    cut = data.draw(st.integers(0, len(reads) - 1))
    states = fold(t, reads, AMSTERDAM)
    for state in states:
        payload = state.to_json()
        assert _json_types_only(payload)
        restored = RunningCost.from_json(json.loads(json.dumps(payload)))
        assert restored == state
        assert restored.to_json() == payload
    resumed = RunningCost.from_json(json.loads(json.dumps(states[cut].to_json())))
    for read in reads[cut + 1 :]:
        resumed = advance(t, resumed, read, AMSTERDAM)
    assert resumed == states[-1]
    assert resumed.to_json() == states[-1].to_json()


def test_json_form() -> None:
    t = tariff(element(comp("ENERGY", "0.30"), comp("FLAT", "1.00")))
    start = local(BERLIN, 2025, 6, 2, 8)
    state = running_cost_start(t, start=start, energy_wh=D("1000.5"), power_kw=D(11), tz=BERLIN)
    state = running_cost_advance(
        t, state, until=start + dt.timedelta(minutes=20), energy_wh=D("4667.5"), tz=BERLIN
    )
    assert state.to_json() == {
        "version": 1,
        "tariff_id": "T1",
        "start": "2025-06-02T06:00:00+00:00",
        "at": "2025-06-02T06:20:00+00:00",
        "meter_start_wh": "1000.5",
        "meter_wh": "4667.5",
        "charging": True,
        "power_kw": "11",
        "current_a": None,
        "cost": {"excl_vat": "2.1001", "incl_vat": "2.499119"},  # 1.00 + 3.667 kWh x 0.30
        "charging_s": "1200.000000",
        "parking_s": "0",
    }
    with pytest.raises(ValueError, match="version"):
        RunningCost.from_json({**state.to_json(), "version": 2})
    with pytest.raises(ValueError, match="timezone-aware"):
        RunningCost.from_json({**state.to_json(), "at": "2025-06-02T06:20:00"})


# ------------------------------------------------------------------------------------------
# (6) Worked examples
# ------------------------------------------------------------------------------------------


def evening_tariff() -> Tariff:
    return tariff(
        element(comp("ENERGY", "0.30"), start_time=dt.time(0), end_time=dt.time(18)),
        element(comp("ENERGY", "0.40")),
    )


def test_time_of_day_crossing_18h_berlin_across_the_dst_change() -> None:
    """1 kW from Saturday 16:00 CET to Sunday 19:00 CEST (2025-03-30: 02:00 CET -> 03:00 CEST);
    18:00 is 17:00 UTC on Saturday and 16:00 UTC on Sunday, both between two readings."""
    utc = [dt.datetime(2025, 3, 29, 15, tzinfo=UTC) + dt.timedelta(hours=h) for h in range(27)]
    wh = [D(1000 * h) for h in range(27)]
    picked = [0, 5, 10, 15, 20, 26]  # 15:00, 20:00, 01:00, 06:00, 11:00, 17:00 UTC
    reads = [Read(utc[i], wh[i]) for i in picked]
    states = fold(evening_tariff(), reads, BERLIN)
    shown = [running_cost_total(evening_tariff(), s) for s in states]
    # 16-18 CET 2 x 0.30 + 18-21 3 x 0.40; 21-24 3 x 0.40 + 00-02 CET 2 x 0.30; 03-08 CEST and
    # 08-13 5 x 0.30 each; 13-18 CEST 5 x 0.30 + 18-19 1 x 0.40.
    assert [s.excl_vat for s in shown] == [
        D(0),
        D("1.80"),
        D("3.60"),
        D("5.10"),
        D("6.60"),
        D("8.50"),
    ]
    assert shown[-1].incl_vat == D("10.12")  # 10.115 half up
    assert states[-1].cost == Amount(D("8.5"), D("10.115"))
    assert shown[-1] == rate_session(evening_tariff(), as_usage(reads), BERLIN).total_cost
    # Hourly readings on the same line: the same cost at the common instants.
    hourly = fold(evening_tariff(), [Read(a, e) for a, e in zip(utc, wh, strict=True)], BERLIN)
    assert [hourly[i].cost for i in picked] == [s.cost for s in states]
    # The instants may come in the site's zone: the same cost (times are kept in UTC).
    in_berlin = [dataclasses.replace(r, at=r.at.astimezone(BERLIN)) for r in reads]
    assert fold(evening_tariff(), in_berlin, BERLIN) == states


def test_kwh_tier_crossing_between_two_readings() -> None:
    t = tariff(
        element(comp("ENERGY", "0.50", vat=None), max_kwh=D(10)),
        element(comp("ENERGY", "0.30", vat=None), min_kwh=D(10)),
    )
    start = dt.datetime(2025, 6, 2, 8, tzinfo=UTC)
    reads = [
        Read(start + dt.timedelta(minutes=m), D(e))
        for m, e in ((0, 0), (10, 5000), (30, 15000), (60, 25000))
    ]
    shown = [running_cost_total(t, s).excl_vat for s in fold(t, reads, BERLIN)]
    # 10 kWh is reached between the 10 and 30 minute readings: 10 x 0.50 + 5 x 0.30.
    assert shown == [D(0), D("2.50"), D("6.50"), D("9.50")]


def test_kwh_tier_example_c1_on_the_raw_register_without_the_step_extra() -> None:
    start = dt.datetime(2025, 5, 1, 10, tzinfo=UTC)
    reads = [Read(start, D(1_000_000)), Read(start + dt.timedelta(hours=1), D(1_023_456))]
    state = fold(example_c_tariff(), reads, BERLIN)[-1]
    assert state.energy_wh == D(23_456)
    # 20 x 0.45 + 3.456 x 0.35; rate_session bills 3.5 kWh for the step of 100 Wh (10.225).
    assert state.cost.excl_vat == D("10.2096")
    assert running_cost_total(example_c_tariff(), state) == Amount(D("10.21"), D("12.35"))
    final = rate_session(example_c_tariff(), as_usage(reads), BERLIN)
    assert final.total_exact.excl_vat == D("10.225")


def test_time_then_parking_time_after_a_state_change() -> None:
    t = tariff(element(comp("TIME", "2.00", vat=None), comp("PARKING_TIME", "3.00", vat=None)))
    start = local(BERLIN, 2025, 6, 2, 9)
    hour = dt.timedelta(hours=1)
    reads = [
        Read(start, D(0), charging=True),
        Read(start + hour, D(11_000), charging=False),
        Read(start + 1.5 * hour, D(11_000)),
        Read(start + 2 * hour, D(11_000)),
    ]
    states = fold(t, reads, BERLIN)
    assert [running_cost_total(t, s).excl_vat for s in states] == [
        D(0),
        D("2.00"),
        D("3.50"),
        D("5.00"),
    ]
    assert (states[-1].charging_s, states[-1].parking_s) == (3600, 3600)
    assert running_cost_total(t, states[-1]) == rate_session(t, as_usage(reads), BERLIN).total_cost
    # The same state change reported on its own, at the instant of the last reading.
    state = advance(t, states[0], dataclasses.replace(reads[1], charging=None), BERLIN)
    state = running_cost_advance(
        t, state, until=start + hour, energy_wh=D(11_000), charging=False, tz=BERLIN
    )
    assert state == states[1]


def test_flat_once_at_start() -> None:
    t = tariff(
        element(comp("FLAT", "2.00"), comp("TIME", "1.00"), start_time=dt.time(18)),
        element(comp("FLAT", "1.00"), comp("TIME", "1.00")),
    )
    start = local(BERLIN, 2025, 6, 2, 17)
    reads = [Read(start + dt.timedelta(minutes=m), D(0)) for m in range(0, 121, 30)]
    states = fold(t, reads, BERLIN)
    assert states[0].cost == Amount(D("1.00"), D("1.1900"))  # the element matching at 17:00
    assert [running_cost_total(t, s).excl_vat for s in states] == [
        D("1.00"),
        D("1.50"),
        D("2.00"),
        D("2.50"),
        D("3.00"),
    ]
    assert running_cost_total(t, states[-1]) == rate_session(t, as_usage(reads), BERLIN).total_cost


# ------------------------------------------------------------------------------------------
# Late, duplicate and backwards readings; misuse
# ------------------------------------------------------------------------------------------


def test_late_and_duplicate_readings_leave_the_state_unchanged() -> None:
    t = tariff(element(comp("ENERGY", "0.30"), comp("TIME", "1.00")))
    start = dt.datetime(2025, 6, 2, 8, tzinfo=UTC)
    state = running_cost_start(t, start=start, tz=BERLIN)
    state = running_cost_advance(
        t, state, until=start + dt.timedelta(minutes=30), energy_wh=5000, power_kw=10, tz=BERLIN
    )
    late = running_cost_advance(
        t, state, until=start + dt.timedelta(minutes=10), energy_wh=1000, charging=False, tz=BERLIN
    )
    duplicate = running_cost_advance(
        t, state, until=state.at, energy_wh=7000, power_kw="10", tz=BERLIN
    )
    assert late is state
    assert duplicate is state


def test_register_going_backwards_delivers_nothing_until_it_passes_its_high() -> None:
    t = tariff(element(comp("ENERGY", "1.00", vat=None)))
    start = dt.datetime(2025, 6, 2, 8, tzinfo=UTC)
    reads = [
        Read(start + dt.timedelta(minutes=10 * i), D(e))
        for i, e in enumerate((0, 10_000, 2_000, 9_000, 12_000))
    ]
    states = fold(t, reads, BERLIN)
    assert [s.energy_wh for s in states] == [0, 10_000, 10_000, 10_000, 12_000]
    assert running_cost_total(t, states[-1]).excl_vat == D("12.00")
    assert running_cost_total(t, states[-1]) == rate_session(t, as_usage(reads), BERLIN).total_cost


def test_misuse_is_refused() -> None:
    t = tariff(element(comp("ENERGY", "0.30")))
    start = dt.datetime(2025, 6, 2, 8, tzinfo=UTC)
    with pytest.raises(ValueError, match="timezone-aware"):
        running_cost_start(t, start=start.replace(tzinfo=None), tz=BERLIN)
    state = running_cost_start(t, start=start, tz=BERLIN)
    with pytest.raises(ValueError, match="timezone-aware"):
        running_cost_advance(t, state, until=dt.datetime(2025, 6, 2, 9), energy_wh=0, tz=BERLIN)
    other = dataclasses.replace(t, id="T2")
    with pytest.raises(ValueError, match="tariff"):
        running_cost_advance(other, state, until=start, energy_wh=0, tz=BERLIN)


def test_the_state_does_not_grow_with_the_history() -> None:
    t = tariff(
        element(comp("ENERGY", "0.25"), max_kwh=D(30)),
        element(comp("ENERGY", "0.35"), comp("TIME", "0.60"), start_time=dt.time(18)),
        element(comp("ENERGY", "0.45")),
    )
    start = local(BERLIN, 2025, 3, 29, 12)
    state = running_cost_start(t, start=start, tz=BERLIN)
    sizes = []
    for i in range(1, 601):  # a reading a minute for 10 h, 7 kW
        state = running_cost_advance(
            t,
            state,
            until=start + dt.timedelta(seconds=60 * i, microseconds=i % 7),
            energy_wh=D(7000) * i / 60,
            power_kw=7,
            tz=BERLIN,
        )
        sizes.append(len(json.dumps(state.to_json())))
    assert max(sizes) < 1000

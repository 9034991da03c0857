"""Tests for the pure OCPI tariff rating engine (no database)."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tariffs.rating import (
    DAYS_OF_WEEK,
    MeterReading,
    PriceComponent,
    Rating,
    Restrictions,
    SessionUsage,
    StateChange,
    Tariff,
    TariffElement,
    preview_usage,
    rate_session,
    tariff_from_ocpi,
    tariff_to_ocpi,
)

D = Decimal
UTC = dt.UTC
BERLIN = ZoneInfo("Europe/Berlin")
AMSTERDAM = ZoneInfo("Europe/Amsterdam")
PROPERTY_SETTINGS = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def local(
    tz: ZoneInfo, year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0
) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, second, tzinfo=tz).astimezone(UTC)


def comp(type_: str, price: str, step: int = 1, vat: str | None = "19") -> PriceComponent:
    return PriceComponent(type_, D(price), None if vat is None else D(vat), step)


def element(*components: PriceComponent, **restrictions: Any) -> TariffElement:
    return TariffElement(
        tuple(components),
        Restrictions(**restrictions) if restrictions else None,
    )


def tariff(*elements: TariffElement, **kwargs: Any) -> Tariff:
    return Tariff(id="T1", currency=kwargs.pop("currency", "EUR"), elements=elements, **kwargs)


def usage(
    points: list[tuple[dt.datetime, int | str]],
    states: tuple[StateChange, ...] = (),
    end: dt.datetime | None = None,
    power_w: list[int | None] | None = None,
) -> SessionUsage:
    readings = tuple(
        MeterReading(t, D(e), None if power_w is None else _opt(power_w[i]))
        for i, (t, e) in enumerate(points)
    )
    return SessionUsage(
        start=points[0][0], end=end or points[-1][0], readings=readings, states=states
    )


def _opt(value: int | None) -> Decimal | None:
    return None if value is None else D(value)


def energy_periods(rating: Rating) -> list[tuple[Decimal, int | None]]:
    out = []
    for period in rating.periods:
        dim = period.dimension("ENERGY")
        assert dim is not None
        out.append((dim.volume, dim.element_index))
    return out


# ------------------------------------------------------------------------------------------
# Worked examples of OCPI 2.2.1 mod_tariffs (step_size, time of day, tiers, max price),
# each recomputed by hand in its test
# ------------------------------------------------------------------------------------------


def example_a_tariff() -> Tariff:
    return tariff(
        element(comp("FLAT", "1.00")),
        element(comp("ENERGY", "0.30", 500), start_time=dt.time(0), end_time=dt.time(18)),
        element(comp("ENERGY", "0.40", 500)),
    )


def test_example_a_step_size_applies_to_session_total() -> None:
    u = usage(
        [
            (local(BERLIN, 2025, 3, 12, 16), 0),
            (local(BERLIN, 2025, 3, 12, 18), 6600),
            (local(BERLIN, 2025, 3, 12, 20), 8900),
        ]
    )
    rating = rate_session(example_a_tariff(), u, BERLIN)

    assert energy_periods(rating) == [(D("6.6"), 1), (D("2.3"), 2)]
    assert rating.total_energy_kwh == D("8.9")
    assert rating.dimension("ENERGY").billed_volume == D("9.0")
    assert rating.total_energy_cost.excl_vat == D("2.94")
    assert rating.total_fixed_cost.excl_vat == D("1.00")
    assert rating.total_exact.excl_vat == D("3.94")
    assert rating.total_cost_excl_vat == D("3.94")
    assert rating.total_exact.incl_vat == D("4.6886")
    assert rating.total_cost_incl_vat == D("4.69")
    cdr_energy = [p["dimensions"][0] for p in rating.to_ocpi_charging_periods()]
    assert cdr_energy == [
        {"type": "ENERGY", "volume": D("6.6000")},
        {"type": "ENERGY", "volume": D("2.3000")},
    ]


def example_b_tariff() -> Tariff:
    return tariff(
        element(comp("FLAT", "1.00")),
        element(
            comp("TIME", "3.00", 60),
            day_of_week=frozenset(DAYS_OF_WEEK[:5]),
            start_time=dt.time(7),
            end_time=dt.time(19),
        ),
        element(comp("TIME", "1.80", 60)),
        element(comp("PARKING_TIME", "9.00", 600), start_time=dt.time(7), end_time=dt.time(22)),
    )


def example_b_usage() -> SessionUsage:
    start = local(BERLIN, 2025, 3, 12, 18, 32)
    stop_charging = local(BERLIN, 2025, 3, 12, 19, 47, 20)
    return SessionUsage(
        start=start,
        end=local(BERLIN, 2025, 3, 12, 20, 5, 40),
        states=(StateChange(start, True), StateChange(stop_charging, False)),
    )


def test_example_b_time_and_parking_in_local_time() -> None:
    rating = rate_session(example_b_tariff(), example_b_usage(), BERLIN)

    time_dims = [
        (p.state, p.dimension("TIME") or p.dimension("PARKING_TIME")) for p in rating.periods
    ]
    assert [(s, d.type, d.element_index) for s, d in time_dims if d] == [
        ("CHARGING", "TIME", 1),
        ("CHARGING", "TIME", 2),
        ("PARKING", "PARKING_TIME", 3),
    ]
    assert rating.periods[1].start == local(BERLIN, 2025, 3, 12, 19)
    assert rating.total_time_cost.excl_vat == D("2.82")
    assert rating.total_parking_cost.excl_vat == D("3.00")
    assert rating.total_fixed_cost.excl_vat == D("1.00")
    assert rating.dimension("TIME").billed_volume == rating.dimension("TIME").volume
    assert rating.total_cost_excl_vat == D("6.82")
    assert rating.total_exact.incl_vat == D("8.1158")
    assert rating.total_cost_incl_vat == D("8.12")
    cdr = rating.to_ocpi_cdr_fields()
    assert cdr["total_time"] == D("1.5611")
    assert cdr["total_parking_time"] == D("0.3056")


def test_example_b_evaluated_in_utc_gives_the_documented_wrong_result() -> None:
    rating = rate_session(example_b_tariff(), example_b_usage(), ZoneInfo("UTC"))
    assert rating.total_time_cost.excl_vat == D("3.77")
    assert rating.total_cost_excl_vat == D("7.77")


def example_c_tariff() -> Tariff:
    return tariff(
        element(comp("ENERGY", "0.45", 100, vat="21"), max_kwh=D(20)),
        element(comp("ENERGY", "0.35", 100, vat="21")),
        max_price_excl_vat=D("12.00"),
        max_price_incl_vat=D("14.52"),
    )


def test_example_c1_kwh_tier_split_under_the_cap() -> None:
    start = dt.datetime(2025, 5, 1, 10, tzinfo=UTC)
    u = usage([(start, 1_000_000), (start + dt.timedelta(hours=1), 1_023_456)])
    rating = rate_session(example_c_tariff(), u, BERLIN)

    assert energy_periods(rating) == [(D("20.000"), 0), (D("3.456"), 1)]
    # Linear 23.456 kWh/h: 20 kWh is reached after 20/23.456 h.
    assert rating.periods[1].start == start + dt.timedelta(
        microseconds=int(D(20) / D("23.456") * 3600 * 1_000_000)
    )
    assert [line.billed_volume for line in rating.lines] == [D("20.000"), D("3.5")]
    assert rating.total_exact.excl_vat == D("10.225")
    assert rating.total_cost_excl_vat == D("10.23")
    assert rating.total_cost_incl_vat == D("12.37")
    assert rating.clamp_excl_vat is None
    assert rating.clamp_incl_vat is None


def test_example_c2_max_price_clamps_excl_and_incl_independently() -> None:
    start = dt.datetime(2025, 5, 1, 10, tzinfo=UTC)
    u = usage([(start, 0), (start + dt.timedelta(hours=1), 30_000)])
    rating = rate_session(example_c_tariff(), u, BERLIN)

    assert rating.subtotal.excl_vat == D("12.50")
    assert rating.subtotal.incl_vat == D("15.125")
    assert rating.total_cost_excl_vat == D("12.00")
    assert rating.total_cost_incl_vat == D("14.52")
    assert (rating.clamp_excl_vat, rating.clamp_incl_vat) == ("MAX", "MAX")


# ------------------------------------------------------------------------------------------
# OCPI 2.2.1 step_size examples (recomputed; the printed free-of-charge table is inconsistent)
# ------------------------------------------------------------------------------------------


def spec_step_tariff() -> Tariff:
    return tariff(
        element(
            comp("TIME", "1.20", 1800, vat=None),
            comp("PARKING_TIME", "1.00", 900, vat=None),
            start_time=dt.time(0),
            end_time=dt.time(17),
        ),
        element(
            comp("TIME", "2.40", 900, vat=None),
            comp("PARKING_TIME", "1.00", 900, vat=None),
            start_time=dt.time(17),
            end_time=dt.time(20),
        ),
        element(comp("TIME", "2.40", 900, vat=None), start_time=dt.time(20), end_time=dt.time(0)),
    )


def plug(tz: ZoneInfo, start: dt.datetime, charge_min: int, park_min: int) -> SessionUsage:
    stop = start + dt.timedelta(minutes=charge_min)
    states = (StateChange(start, True), StateChange(stop, False))
    return SessionUsage(start=start, end=stop + dt.timedelta(minutes=park_min), states=states)


@pytest.mark.parametrize(
    ("hhmm", "charge_min", "park_min", "expected", "time_billed_min", "parking_billed_min"),
    [
        ((16, 55), 10, 2, "0.55", 10, 15),  # only the trailing parking is rounded
        ((16, 35), 35, 0, "1.30", 45, 0),  # 35 min rounded with the LAST TIME step (900 s)
        ((19, 40), 12, 20, "0.73", 12, 15),  # 8 billable parking min -> 15, parking free at 20:00
    ],
)
def test_spec_step_size_examples(
    hhmm: tuple[int, int],
    charge_min: int,
    park_min: int,
    expected: str,
    time_billed_min: int,
    parking_billed_min: int,
) -> None:
    start = local(AMSTERDAM, 2025, 1, 15, *hhmm)
    rating = rate_session(
        spec_step_tariff(), plug(AMSTERDAM, start, charge_min, park_min), AMSTERDAM
    )
    assert rating.total_cost_excl_vat == D(expected)
    assert rating.total_cost_incl_vat == D(expected)  # no VAT applies
    assert rating.dimension("TIME").billed_volume * 60 == time_billed_min
    assert rating.dimension("PARKING_TIME").billed_volume * 60 == parking_billed_min


def test_step_semantics_are_not_monotone_across_prices() -> None:
    """Per OCPI, the step extra goes to the last period at that period's price, so more energy
    can cost less when the earlier price is lower. Characterisation, not a bug to fix."""
    t = tariff(
        element(comp("ENERGY", "0.30", 10_000), start_time=dt.time(0), end_time=dt.time(18)),
        element(comp("ENERGY", "0.40", 10_000)),
    )
    times = [local(BERLIN, 2025, 3, 12, h) for h in (16, 18, 20)]
    less = rate_session(t, usage(list(zip(times, [0, 6600, 8900], strict=True))), BERLIN)
    more = rate_session(t, usage(list(zip(times, [0, 7260, 9790], strict=True))), BERLIN)
    assert less.total_cost_excl_vat == D("3.34")
    assert more.total_cost_excl_vat == D("3.27")


# ------------------------------------------------------------------------------------------
# Time zones, windows, restrictions
# ------------------------------------------------------------------------------------------


def test_dst_spring_forward_amsterdam() -> None:
    # 2025-03-30: 02:00 CET jumps to 03:00 CEST at 01:00 UTC.
    t = tariff(
        element(comp("TIME", "1.00", vat=None), start_time=dt.time(0), end_time=dt.time(4)),
        element(comp("TIME", "2.00", vat=None)),
    )
    start = dt.datetime(2025, 3, 30, 0, tzinfo=UTC)  # 01:00 CET
    u = SessionUsage(start=start, end=start + dt.timedelta(hours=3))  # until 05:00 CEST
    rating = rate_session(t, u, AMSTERDAM)
    # 01:00-04:00 local is only two real hours on this night.
    assert rating.total_cost_excl_vat == D("4.00")
    assert rating.total_time_h == D(3)
    assert [p.start for p in rating.periods] == [start, start + dt.timedelta(hours=2)]


def test_dst_gap_boundary_takes_effect_at_the_transition() -> None:
    # 02:30 does not exist on 2025-03-30 in Amsterdam: the window ends when the clock jumps.
    t = tariff(
        element(comp("TIME", "1.00", vat=None), end_time=dt.time(2, 30)),
        element(comp("TIME", "2.00", vat=None)),
    )
    start = dt.datetime(2025, 3, 30, 0, tzinfo=UTC)
    rating = rate_session(
        t, SessionUsage(start=start, end=start + dt.timedelta(hours=2)), AMSTERDAM
    )
    assert [p.start for p in rating.periods] == [start, start + dt.timedelta(hours=1)]
    assert rating.total_cost_excl_vat == D("3.00")


def test_dst_fall_back_amsterdam_repeated_hour_is_billed_twice() -> None:
    # 2025-10-26: 03:00 CEST falls back to 02:00 CET at 01:00 UTC; 02:00-03:00 happens twice.
    t = tariff(
        element(comp("TIME", "1.00", vat=None), start_time=dt.time(2), end_time=dt.time(3)),
        element(comp("TIME", "0", vat=None)),
    )
    start = dt.datetime(2025, 10, 25, 23, 30, tzinfo=UTC)  # 01:30 CEST
    u = SessionUsage(start=start, end=start + dt.timedelta(hours=3))  # 03:30 CET
    rating = rate_session(t, u, AMSTERDAM)
    assert rating.total_time_cost.excl_vat == D("2.00")
    assert rating.total_time_h == D(3)


def test_time_window_wrapping_midnight() -> None:
    t = tariff(
        element(comp("ENERGY", "0.20"), start_time=dt.time(22), end_time=dt.time(6)),
        element(comp("ENERGY", "0.40")),
    )
    u = preview_usage(local(BERLIN, 2025, 6, 2, 21), 10 * 3600, 10_000)  # 1 kW for 10 h
    rating = rate_session(t, u, BERLIN)
    assert energy_periods(rating) == [(D(1), 1), (D(8), 0), (D(1), 1)]
    assert rating.periods[1].start == local(BERLIN, 2025, 6, 2, 22)
    assert rating.periods[2].start == local(BERLIN, 2025, 6, 3, 6)
    assert rating.total_cost_excl_vat == D("2.40")


def test_end_time_midnight_means_end_of_day_and_dates_are_local() -> None:
    t = tariff(
        element(
            comp("TIME", "5.00", vat=None),
            start_time=dt.time(23),
            end_time=dt.time(0),
            start_date=dt.date(2025, 6, 2),
            end_date=dt.date(2025, 6, 3),
        ),
    )
    u = SessionUsage(start=local(BERLIN, 2025, 6, 2, 22), end=local(BERLIN, 2025, 6, 3, 2))
    rating = rate_session(t, u, BERLIN)
    assert rating.total_cost_excl_vat == D("5.00")  # only 23:00-24:00 on June 2nd


def test_no_matching_element_is_free_for_that_period() -> None:
    t = tariff(element(comp("TIME", "2.00", vat=None), start_time=dt.time(8), end_time=dt.time(10)))
    u = SessionUsage(start=local(BERLIN, 2025, 6, 2, 7), end=local(BERLIN, 2025, 6, 2, 11))
    rating = rate_session(t, u, BERLIN)
    assert [p.dimension("TIME").element_index for p in rating.periods] == [None, 0, None]
    assert [line.period_index for line in rating.lines] == [1]
    assert rating.total_time_h == D(4)
    assert rating.total_cost_excl_vat == D("4.00")


def test_min_price_clamps_excl_and_incl_independently() -> None:
    t = tariff(
        element(comp("FLAT", "2.50")),
        min_price_excl_vat=D("2.00"),
        min_price_incl_vat=D("3.00"),
    )
    u = SessionUsage(start=local(BERLIN, 2025, 6, 2, 7), end=local(BERLIN, 2025, 6, 2, 8))
    rating = rate_session(t, u, BERLIN)
    assert rating.total_cost_excl_vat == D("2.50")  # above the excl floor: untouched
    assert rating.total_cost_incl_vat == D("3.00")  # 2.975 is below the incl floor
    assert (rating.clamp_excl_vat, rating.clamp_incl_vat) == (None, "MIN")


def test_min_price_without_incl_bound_follows_the_vat_ratio() -> None:
    t = tariff(element(comp("FLAT", "1.00")), min_price_excl_vat=D("5.00"))
    u = SessionUsage(start=local(BERLIN, 2025, 6, 2, 7), end=local(BERLIN, 2025, 6, 2, 8))
    rating = rate_session(t, u, BERLIN)
    assert (rating.total_cost_excl_vat, rating.total_cost_incl_vat) == (D("5.00"), D("5.95"))


def test_parking_time_vs_time() -> None:
    start = local(BERLIN, 2025, 6, 2, 9)
    u = plug(BERLIN, start, 60, 60)
    time_only = tariff(element(comp("TIME", "2.00", vat=None)))
    rated = rate_session(time_only, u, BERLIN)
    assert rated.total_cost_excl_vat == D("2.00")  # idle time is not TIME
    assert (rated.total_time_h, rated.total_parking_time_h) == (D(2), D(1))
    with_parking = tariff(
        element(comp("TIME", "2.00", vat=None), comp("PARKING_TIME", "3.00", vat=None))
    )
    rated = rate_session(with_parking, u, BERLIN)
    assert rated.total_cost_excl_vat == D("5.00")
    assert [p.state for p in rated.periods] == ["CHARGING", "PARKING"]


def test_flat_is_charged_once_and_evaluated_at_session_start() -> None:
    t = tariff(
        element(comp("FLAT", "2.00"), comp("TIME", "1.00"), start_time=dt.time(18)),
        element(comp("FLAT", "1.00"), comp("TIME", "1.00")),
    )
    u = SessionUsage(start=local(BERLIN, 2025, 6, 2, 17), end=local(BERLIN, 2025, 6, 2, 19))
    rating = rate_session(t, u, BERLIN)
    flats = [line for line in rating.lines if line.dimension == "FLAT"]
    assert [(f.element_index, f.price) for f in flats] == [(1, D("1.00"))]
    assert len(rating.periods) == 2
    assert rating.total_fixed_cost == rating.dimension("FLAT").cost.rounded("EUR")
    assert rating.total_cost_excl_vat == D("3.00")


def test_kwh_threshold_crossing_between_uneven_readings() -> None:
    t = tariff(
        element(comp("ENERGY", "0.50", vat=None), max_kwh=D(10)),
        element(comp("ENERGY", "0.30", vat=None), min_kwh=D(10)),
    )
    start = dt.datetime(2025, 6, 2, 8, tzinfo=UTC)
    minutes = [0, 10, 30, 60]
    u = usage(
        [
            (start + dt.timedelta(minutes=m), e)
            for m, e in zip(minutes, [0, 5000, 15000, 25000], strict=True)
        ]
    )
    rating = rate_session(t, u, BERLIN)
    # 10 kWh is reached halfway between the 10 and 30 minute readings.
    assert rating.periods[1].start == start + dt.timedelta(minutes=20)
    assert energy_periods(rating) == [(D(10), 0), (D(15), 1)]
    assert rating.total_cost_excl_vat == D("9.50")


def test_duration_restrictions() -> None:
    t = tariff(
        element(comp("TIME", "0", vat=None), max_duration=1800),
        element(comp("TIME", "6.00", vat=None)),
    )
    start = local(BERLIN, 2025, 6, 2, 8)
    rating = rate_session(t, SessionUsage(start=start, end=start + dt.timedelta(hours=1)), BERLIN)
    assert rating.periods[1].start == start + dt.timedelta(minutes=30)
    assert rating.total_cost_excl_vat == D("3.00")


def test_power_restriction_uses_last_known_value_and_is_justified_in_cdr() -> None:
    t = tariff(
        element(comp("ENERGY", "0.60", vat=None), min_power=D(50)),
        element(comp("ENERGY", "0.40", vat=None)),
    )
    start = dt.datetime(2025, 6, 2, 8, tzinfo=UTC)
    half = start + dt.timedelta(minutes=30)
    u = usage(
        [(start, 0), (half, 30_000), (start + dt.timedelta(hours=1), 40_000)],
        power_w=[60_000, 20_000, 0],
    )
    rating = rate_session(t, u, BERLIN)
    assert energy_periods(rating) == [(D(30), 0), (D(10), 1)]
    assert rating.total_cost_excl_vat == D("22.00")
    dims = rating.to_ocpi_charging_periods()[0]["dimensions"]
    assert {"type": "MIN_POWER", "volume": D("60.0000")} in dims
    # Power unknown: the restricted element does not apply.
    unknown = rate_session(t, usage([(start, 0), (half, 30_000)]), BERLIN)
    assert energy_periods(unknown) == [(D(30), 1)]


def test_reservation_time_and_expiry() -> None:
    t = tariff(
        element(
            comp("FLAT", "1.00", vat=None),
            comp("TIME", "2.00", vat=None),
            reservation="RESERVATION",
        ),
        element(comp("TIME", "4.00", vat=None), reservation="RESERVATION_EXPIRES"),
        element(comp("FLAT", "0.50", vat=None), comp("TIME", "3.00", vat=None)),
    )
    start = local(BERLIN, 2025, 6, 2, 8)
    reserved = start - dt.timedelta(minutes=30)
    u = SessionUsage(start=start, end=start + dt.timedelta(hours=1), reservation_start=reserved)
    rating = rate_session(t, u, BERLIN)
    assert rating.total_reservation_cost.excl_vat == D("2.00")  # 1.00 fee + 0.5 h x 2.00
    assert rating.total_fixed_cost.excl_vat == D("0.50")
    assert rating.total_time_cost.excl_vat == D("3.00")
    assert rating.total_time_h == D(1)
    assert rating.total_reservation_time_h == D("0.5")
    assert rating.periods[0].state == "RESERVATION"

    expired = SessionUsage(
        start=start, end=start, reservation_start=reserved, reservation_expired=True
    )
    rating = rate_session(t, expired, BERLIN)
    assert rating.total_cost_excl_vat == D("3.00")  # fee + 0.5 h x 4.00, no session FLAT


def test_currency_minor_units() -> None:
    t = tariff(element(comp("FLAT", "123.5", vat=None)), currency="JPY")
    u = SessionUsage(start=local(BERLIN, 2025, 6, 2, 8), end=local(BERLIN, 2025, 6, 2, 9))
    assert rate_session(t, u, BERLIN).total_cost_excl_vat == D("124")


def test_vat_breakdown_per_rate_and_none_is_not_zero() -> None:
    t = tariff(
        element(comp("FLAT", "1.00", vat=None), comp("TIME", "2.00", vat="0")),
        element(comp("ENERGY", "0.50", vat="21")),
    )
    u = preview_usage(local(BERLIN, 2025, 6, 2, 8), 3600, 10_000)
    rating = rate_session(t, u, BERLIN)
    assert [(v.rate, v.excl_vat, v.incl_vat) for v in rating.vat_breakdown] == [
        (D(0), D("2.00"), D("2.00")),
        (D(21), D("5.00"), D("6.05")),
        (None, D("1.00"), D("1.00")),
    ]


def test_preview_usage_with_profile_parks_when_full() -> None:
    start = dt.datetime(2025, 6, 2, 8, tzinfo=UTC)
    u = preview_usage(start, 3600, 15_000, [(0, 22_000), (1800, 11_000)], parking_s=600)
    # 11 kWh in the first half hour, then 4 kWh at 11 kW = ~21.8 min, then parking.
    full_at = start + dt.timedelta(minutes=30) + dt.timedelta(seconds=4000 * 3600 / 11000)
    assert u.end == start + dt.timedelta(seconds=4200)
    assert u.states[-1] == StateChange(u.states[-1].timestamp, False)
    assert abs(u.states[-1].timestamp - full_at) < dt.timedelta(milliseconds=1)
    t = tariff(element(comp("ENERGY", "1.00", vat=None), comp("PARKING_TIME", "6.00", vat=None)))
    rating = rate_session(t, u, BERLIN)
    assert rating.total_energy_kwh == D(15)
    # 15 kWh + parking from ~3109.09 s to 4200 s at 6.00/h = 1.818...
    assert rating.total_cost_excl_vat == D("16.82")
    expected_parking_s = D(4200 - 1800) - D(4000 * 3600) / 11000
    assert abs(rating.total_parking_time_h * 3600 - expected_parking_s) < D("0.000001")


# ------------------------------------------------------------------------------------------
# OCPI conversion
# ------------------------------------------------------------------------------------------

OCPI_TARIFF = {
    "country_code": "DE",
    "party_id": "ABC",
    "id": "12",
    "currency": "EUR",
    "type": "REGULAR",
    "tariff_alt_text": [{"language": "en", "text": "0.30/kWh"}],
    "min_price": {"excl_vat": 0.5, "incl_vat": 0.6},
    "max_price": {"excl_vat": 50},
    "elements": [
        {"price_components": [{"type": "FLAT", "price": 1, "vat": 19.0, "step_size": 1}]},
        {
            "price_components": [
                {"type": "ENERGY", "price": 0.3, "vat": 19.0, "step_size": 500},
                {"type": "TIME", "price": 1.25, "step_size": 60},
            ],
            "restrictions": {
                "start_time": "22:00",
                "end_time": "06:00",
                "start_date": "2025-01-01",
                "end_date": "2026-01-01",
                "min_kwh": 0.5,
                "max_kwh": 50,
                "min_current": 6,
                "max_current": 32,
                "min_power": 1.5,
                "max_power": 22,
                "min_duration": 60,
                "max_duration": 7200,
                "day_of_week": ["MONDAY", "SATURDAY"],
            },
        },
        {
            "price_components": [{"type": "TIME", "price": 2, "step_size": 1}],
            "restrictions": {"reservation": "RESERVATION"},
        },
    ],
    "start_date_time": "2025-01-01T00:00:00Z",
    "end_date_time": "2026-01-01T00:00:00Z",
    "energy_mix": {"is_green_energy": True},
    "last_updated": "2024-12-01T10:00:00Z",
}


def test_ocpi_round_trip() -> None:
    parsed = tariff_from_ocpi(OCPI_TARIFF)
    assert parsed.elements[1].restrictions is not None
    assert parsed.elements[1].restrictions.start_time == dt.time(22)
    assert parsed.elements[1].price_components[0].price == D("0.3")
    assert parsed.elements[1].price_components[1].vat is None
    assert parsed.max_price_incl_vat is None
    out = tariff_to_ocpi(parsed)
    assert json.loads(json.dumps(out, default=float)) == OCPI_TARIFF
    assert tariff_from_ocpi(out) == parsed


def test_ocpi_accepts_numeric_strings() -> None:
    data = {
        "id": "s",
        "currency": "EUR",
        "elements": [{"price_components": [{"type": "ENERGY", "price": "0.35", "step_size": 1}]}],
    }
    parsed = tariff_from_ocpi(data)
    assert parsed.elements[0].price_components[0].price == D("0.35")
    assert parsed.elements[0].restrictions is None
    assert tariff_to_ocpi(parsed)["elements"][0]["price_components"][0]["price"] == D("0.35")


# ------------------------------------------------------------------------------------------
# Properties
# ------------------------------------------------------------------------------------------

BASE = dt.datetime(2025, 3, 24, 0, tzinfo=UTC)  # a Monday; DST starts in that week
PRICES = st.decimals(min_value=0, max_value=5, places=2)
VATS = st.sampled_from([None, D(0), D(19), D(21)])
STEPS = st.sampled_from([1, 60, 300, 500, 900, 1000, 3600])


@st.composite
def energy_free_restrictions(draw: st.DrawFn) -> Restrictions | None:
    """Restrictions whose truth does not depend on energy, power or current."""
    kind = draw(st.sampled_from(["none", "window", "days", "duration"]))
    if kind == "none":
        return None
    if kind == "window":
        hours = st.one_of(st.none(), st.integers(0, 23).map(lambda h: dt.time(h)))
        return Restrictions(start_time=draw(hours), end_time=draw(hours))
    if kind == "days":
        return Restrictions(day_of_week=frozenset(draw(st.sets(st.sampled_from(DAYS_OF_WEEK)))))
    seconds = st.one_of(st.none(), st.integers(0, 4 * 3600))
    return Restrictions(min_duration=draw(seconds), max_duration=draw(seconds))


@st.composite
def any_restrictions(draw: st.DrawFn) -> Restrictions | None:
    base = draw(energy_free_restrictions())
    kind = draw(st.sampled_from(["same", "kwh", "power"]))
    kwh = st.one_of(st.none(), st.integers(0, 40).map(D))
    if kind == "kwh":
        return Restrictions(min_kwh=draw(kwh), max_kwh=draw(kwh))
    if kind == "power":
        return Restrictions(min_power=draw(kwh), max_power=draw(kwh))
    return base


@st.composite
def general_tariffs(draw: st.DrawFn) -> Tariff:
    elements = []
    for _ in range(draw(st.integers(1, 4))):
        types = draw(
            st.sets(st.sampled_from(["ENERGY", "TIME", "PARKING_TIME", "FLAT"]), min_size=1)
        )
        components = tuple(
            PriceComponent(t, draw(PRICES), draw(VATS), draw(STEPS)) for t in sorted(types)
        )
        elements.append(TariffElement(components, draw(any_restrictions())))
    return Tariff(id="G", currency="EUR", elements=tuple(elements))


@st.composite
def uniform_tariffs(draw: st.DrawFn) -> Tariff:
    """One price, VAT and step per dimension; elements only switch dimensions on and off."""
    spec = {t: (draw(PRICES), draw(VATS), draw(STEPS)) for t in ("ENERGY", "TIME", "FLAT")}
    elements = []
    for _ in range(draw(st.integers(1, 4))):
        types = draw(st.sets(st.sampled_from(["ENERGY", "TIME", "FLAT"]), min_size=1))
        components = tuple(PriceComponent(t, *spec[t]) for t in sorted(types))
        elements.append(TariffElement(components, draw(energy_free_restrictions())))
    return Tariff(id="U", currency="EUR", elements=tuple(elements))


# A session: segments of (seconds, Wh delivered, power W, charging?).
SEGMENTS = st.lists(
    st.tuples(
        st.integers(60, 3 * 3600), st.integers(0, 20_000), st.integers(0, 60_000), st.booleans()
    ),
    min_size=1,
    max_size=5,
)
STARTS = st.integers(0, 7 * 24 * 60).map(lambda m: BASE + dt.timedelta(minutes=m))


def build_usage(
    start: dt.datetime, segments: list[tuple[int, int, int, bool]], splits: list[int] | None = None
) -> SessionUsage:
    """Readings at segment boundaries; ``splits`` adds an interpolated reading inside segment i
    at splits[i] percent of its length (0 = none), on the same straight line."""
    readings, states = [], []
    t, energy = start, D(0)
    for i, (seconds, wh, power, charging) in enumerate(segments):
        readings.append(MeterReading(t, energy, D(power)))
        states.append(StateChange(t, charging))
        if splits and splits[i]:
            offset = seconds * splits[i] // 100
            readings.append(
                MeterReading(
                    t + dt.timedelta(seconds=offset), energy + D(wh) * offset / seconds, D(power)
                )
            )
        t += dt.timedelta(seconds=seconds)
        energy += wh
    readings.append(MeterReading(t, energy, D(0)))
    return SessionUsage(start=start, end=t, readings=tuple(readings), states=tuple(states))


@PROPERTY_SETTINGS
@given(tariff=uniform_tariffs(), start=STARTS, segments=SEGMENTS, more=st.data())
def test_cost_never_decreases_with_more_energy(
    tariff: Tariff,
    start: dt.datetime,
    segments: list[tuple[int, int, int, bool]],
    more: st.DataObject,
) -> None:
    extra = more.draw(
        st.lists(st.integers(0, 10_000), min_size=len(segments), max_size=len(segments))
    )
    bigger = [(s, wh + x, p, c) for (s, wh, p, c), x in zip(segments, extra, strict=True)]
    before = rate_session(tariff, build_usage(start, segments), AMSTERDAM)
    after = rate_session(tariff, build_usage(start, bigger), AMSTERDAM)
    assert after.total_exact.excl_vat >= before.total_exact.excl_vat
    assert after.total_exact.incl_vat >= before.total_exact.incl_vat
    assert after.total_cost_excl_vat >= before.total_cost_excl_vat


@PROPERTY_SETTINGS
@given(
    tariff=uniform_tariffs(),
    start=STARTS,
    segments=SEGMENTS,
    extra_s=st.integers(1, 6 * 3600),
    extra_wh=st.integers(0, 10_000),
    parking=st.one_of(st.none(), st.tuples(PRICES.filter(bool), VATS, STEPS)),
)
def test_cost_never_decreases_with_more_time(
    tariff: Tariff,
    start: dt.datetime,
    segments: list[tuple[int, int, int, bool]],
    extra_s: int,
    extra_wh: int,
    parking: tuple[Decimal, Decimal | None, int] | None,
) -> None:
    # Extend the last phase. A session that ends parking gets an always-billable parking price:
    # OCPI moves the shared TIME/PARKING rounding to whichever billable dimension comes last, so
    # a *newly* billable parking tail may legitimately drop the rounding of charging time.
    segments = [(s, wh, p, parking is None or c) for s, wh, p, c in segments]
    if parking is not None:
        segments.append((60, 0, 0, False))
        tariff = Tariff(
            id=tariff.id,
            currency=tariff.currency,
            elements=(*tariff.elements, TariffElement((PriceComponent("PARKING_TIME", *parking),))),
        )
    # Append time in the final state; the profile before the old end stays identical.
    charging = segments[-1][3]
    longer = [*segments, (extra_s, extra_wh if charging else 0, segments[-1][2], charging)]
    before = rate_session(tariff, build_usage(start, segments), AMSTERDAM)
    after = rate_session(tariff, build_usage(start, longer), AMSTERDAM)
    assert after.total_time_h > before.total_time_h
    assert after.total_exact.excl_vat >= before.total_exact.excl_vat
    assert after.total_exact.incl_vat >= before.total_exact.incl_vat


@PROPERTY_SETTINGS
@given(tariff=general_tariffs(), start=STARTS, segments=SEGMENTS)
def test_step_size_bills_at_least_delivered_and_at_most_one_step_more(
    tariff: Tariff, start: dt.datetime, segments: list[tuple[int, int, int, bool]]
) -> None:
    rating = rate_session(tariff, build_usage(start, segments), AMSTERDAM)
    rounded = set()
    for dim, unit in (("ENERGY", 1000), ("TIME", 3600), ("PARKING_TIME", 3600)):
        lines = [line for line in rating.lines if line.dimension == dim]
        for line in lines:
            assert line.billed_volume >= line.volume
        padded = [line for line in lines if line.billed_volume != line.volume]
        assert len(padded) <= 1
        if padded:
            rounded.add(dim)
            line = padded[0]
            assert (line.billed_volume - line.volume) * unit < max(line.step_size, 1)
            billable = sum((x.volume for x in lines if x.price > 0 and x.volume > 0), D(0)) + (
                line.billed_volume - line.volume
            )
            steps = billable * unit / max(line.step_size, 1)
            assert abs(steps - steps.to_integral_value()) < D("1e-6")
    assert not {"TIME", "PARKING_TIME"} <= rounded  # one shared time rounding per session


@PROPERTY_SETTINGS
@given(tariff=general_tariffs(), start=STARTS, segments=SEGMENTS, more=st.data())
def test_result_does_not_depend_on_reading_chunking(
    tariff: Tariff,
    start: dt.datetime,
    segments: list[tuple[int, int, int, bool]],
    more: st.DataObject,
) -> None:
    splits = more.draw(st.lists(st.integers(0, 99), min_size=len(segments), max_size=len(segments)))
    coarse = rate_session(tariff, build_usage(start, segments), AMSTERDAM)
    fine = rate_session(tariff, build_usage(start, segments, splits), AMSTERDAM)
    tolerance = D("1e-9")
    assert abs(coarse.total_exact.excl_vat - fine.total_exact.excl_vat) <= tolerance
    assert abs(coarse.total_exact.incl_vat - fine.total_exact.incl_vat) <= tolerance
    assert abs(coarse.total_energy_kwh - fine.total_energy_kwh) <= tolerance
    assert len(coarse.periods) == len(fine.periods)


@PROPERTY_SETTINGS
@given(tariff=general_tariffs(), start=STARTS, segments=SEGMENTS)
def test_periods_tile_the_session_and_volumes_add_up(
    tariff: Tariff, start: dt.datetime, segments: list[tuple[int, int, int, bool]]
) -> None:
    u = build_usage(start, segments)
    rating = rate_session(tariff, u, AMSTERDAM)
    assert rating.periods[0].start == u.start
    assert rating.periods[-1].end == u.end
    for left, right in zip(rating.periods, rating.periods[1:], strict=False):
        assert left.end == right.start
    assert rating.total_energy_kwh == u.readings[-1].energy_wh / 1000
    assert rating.total_time_h * 3600 == D((u.end - u.start).total_seconds())
    assert rating.subtotal.excl_vat >= 0
    assert tariff_from_ocpi(tariff_to_ocpi(tariff)) == tariff

"""The one rule for session energy (sessions.energy): plain Python, no database."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from sessions.energy import RegisterWalk, energy_curve, register_readings

D = Decimal
T0 = dt.datetime(2026, 10, 1, 10, 0, tzinfo=dt.UTC)
THRESHOLD = D(100)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


ZERO = D(0)


def curve(readings, meter_start=ZERO, meter_stop=None, end=60):
    return energy_curve(
        readings=[(at(m), D(v)) for m, v in readings],
        start=T0,
        end=None if end is None else at(end),
        meter_start=meter_start,
        meter_stop=meter_stop,
        threshold=THRESHOLD,
    )


def test_meter_stop_against_meter_start_whatever_the_samples_say() -> None:
    # The session: a sample of 74.48 Wh, meterStop 74 Wh.
    result = curve([(30, "74.48")], meter_stop=D(74))
    assert result.total == D(74)
    assert not result.resets
    # Samples fill the curve but never lie above the stop.
    assert result.points == [(T0, D(0)), (at(30), D(74)), (at(60), D(74))]


def test_samples_shape_the_curve_between_start_and_stop() -> None:
    result = curve([(20, "1500"), (40, "4000")], meter_start=D(1000), meter_stop=D(6000))
    assert result.total == D(5000)
    assert [energy for _, energy in result.points] == [D(0), D(500), D(3000), D(5000)]


def test_jitter_below_the_threshold_holds_the_curve() -> None:
    result = curve([(10, "2000"), (20, "1950"), (30, "2500")], meter_start=D(1000))
    assert not result.resets
    assert [energy for _, energy in result.points] == [D(0), D(1000), D(1000), D(1500)]


def test_a_register_restarted_at_zero_is_summed_per_segment() -> None:
    # 61 Wh on the old register, reboot, the new one counts from 0 to 40 Wh.
    result = curve(
        [(10, "12030"), (20, "12061"), (30, "20"), (40, "35")],
        meter_start=D(12000),
        meter_stop=D(40),
    )
    assert result.total == D(61 + 40)
    assert len(result.resets) == 1
    reset = result.resets[0]
    assert (reset.at, reset.before_wh, reset.after_wh, reset.restarted) == (
        at(30),
        D(12061),
        D(20),
        True,
    )
    assert "12061 to 20 Wh" in reset.describe()
    assert [energy for _, energy in result.points] == [D(0), D(30), D(61), D(81), D(96), D(101)]


def test_a_reset_seen_only_at_the_stop_counts_the_new_segment_from_zero() -> None:
    result = curve([(10, "12061")], meter_start=D(12000), meter_stop=D(40))
    assert result.total == D(101)
    assert len(result.resets) == 1


def test_a_re_based_register_counts_from_its_first_reading() -> None:
    # A drop to a value far from zero: not a restart; what passed between is unknown.
    result = curve(
        [(10, "1000500"), (20, "999000"), (30, "999300")],
        meter_start=D(1000000),
        meter_stop=D(999400),
    )
    assert result.total == D(500 + 400)
    assert result.resets[0].restarted is False


def test_no_meter_start_takes_the_last_reading_before_the_start_or_the_first_inside() -> None:
    before = energy_curve(
        readings=[(at(-5), D(900)), (at(30), D(1400))],
        start=T0,
        end=at(60),
        meter_start=None,
        meter_stop=D(1900),
        threshold=THRESHOLD,
    )
    assert before.total == D(1000)
    inside = curve([(10, "500"), (30, "800")], meter_start=None, meter_stop=D(900))
    assert inside.total == D(400)
    assert curve([], meter_start=None, meter_stop=None) is None


def test_live_curve_ends_at_the_last_reading() -> None:
    result = curve([(10, "1500"), (20, "1800")], meter_start=D(1000), end=None)
    assert result.total == D(800)
    assert result.points[-1] == (at(20), D(800))


def test_the_walk_continues_from_the_state_a_session_keeps() -> None:
    walk = RegisterWalk(THRESHOLD, last=D(5000), delivered=D(4000))
    walk.read(at(1), D(5200))
    walk.read(at(2), D(10))
    assert (walk.last, walk.delivered, len(walk.resets)) == (D(10), D(4210), 1)


def test_register_readings_prefer_the_outlet_and_convert_kwh() -> None:
    rows = [
        (at(1), "Inlet", "Wh", D(1010)),
        (at(1), "Outlet", "kWh", D("1.0")),
        (at(2), "", "Wh", D(1100)),
        (at(2), "", "Wh", None),
    ]
    assert register_readings(rows) == [(at(1), D("1000.0")), (at(2), D(1100))]

"""Meter feedback (no database): capping a vehicle at its draw, probing it up, its phases."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from stations.energy.allocator import Connector, Node, Problem, Session, allocate
from stations.energy.feedback import (
    DEFAULT_CONFIG,
    FeedbackConfig,
    FeedbackState,
    MeterSample,
    capped_max_da,
    detect_phases,
    drawn_da,
    observe,
)

NOW = dt.datetime(2026, 3, 1, 18, 0, tzinfo=dt.UTC)


def drawing(*currents: int | None) -> MeterSample:
    l1, l2, l3 = (*currents, None, None, None)[:3]
    return MeterSample(current_da=(l1, l2, l3))


def feed(
    state: FeedbackState,
    sample: MeterSample,
    times: int,
    *,
    allocated_da: int,
    vehicle_max_da: int = 320,
) -> FeedbackState:
    for _ in range(times):
        state = observe(state, sample, allocated_da=allocated_da, vehicle_max_da=vehicle_max_da)
    return state


def test_a_car_drawing_under_its_share_for_three_samples_is_capped_at_draw_plus_buffer() -> None:
    sample = drawing(50, 50, 50)  # 5 A of a 16 A share

    two = feed(FeedbackState(), sample, 2, allocated_da=160)
    assert two == FeedbackState(cap_da=None, low_samples=2, phases=3)
    three = feed(two, sample, 1, allocated_da=160)
    assert three == FeedbackState(cap_da=70, low_samples=0, phases=3)
    assert capped_max_da(three, min_da=60, max_da=320) == 70


def test_one_sample_at_the_share_restarts_the_count() -> None:
    state = feed(FeedbackState(), drawing(50), 2, allocated_da=160)
    state = feed(state, drawing(150), 1, allocated_da=160)  # within the 2 A buffer of 16 A
    assert state.low_samples == 0
    assert feed(state, drawing(50), 2, allocated_da=160).cap_da is None


def test_a_capped_vehicle_that_reaches_its_cap_is_probed_upward_until_the_cap_is_dropped() -> None:
    state = FeedbackState(cap_da=70, phases=1)

    state = feed(state, drawing(65), 1, allocated_da=70)  # within 1 A of its cap
    assert state.cap_da == 110
    state = feed(state, drawing(108), 1, allocated_da=110)
    assert state.cap_da == 150
    state = feed(state, drawing(145), 1, allocated_da=150, vehicle_max_da=160)
    assert state.cap_da is None  # 19 A would pass the vehicle's 16 A: no cap any more
    assert capped_max_da(state, min_da=60, max_da=160) == 160


def test_a_cap_never_lowers_the_maximum_under_the_minimum() -> None:
    state = feed(FeedbackState(), drawing(0, 0, 0), 3, allocated_da=160)  # SuspendedEV

    assert state.cap_da == 20
    assert state.phases is None
    assert capped_max_da(state, min_da=60, max_da=320) == 60


def test_a_paused_session_or_a_sample_without_values_changes_no_cap() -> None:
    state = FeedbackState(cap_da=None, low_samples=2, phases=3)

    assert observe(state, drawing(0, 0, 0), allocated_da=0, vehicle_max_da=320) == FeedbackState(
        None, 0, 3
    )
    assert observe(state, MeterSample(), allocated_da=160, vehicle_max_da=320) == FeedbackState(
        None, 0, 3
    )


def test_the_phases_in_use_are_those_carrying_more_than_one_ampere() -> None:
    assert detect_phases(drawing(160, 5, 0)) == 1
    assert detect_phases(drawing(160, 158, None)) == 2
    assert detect_phases(drawing(160, 158, 161)) == 3
    assert detect_phases(drawing(3, 2, 0)) is None
    assert detect_phases(MeterSample(power_w=7_000)) is None
    # A vehicle that stops drawing keeps the phases detected before.
    state = observe(FeedbackState(phases=1), drawing(0, 0, 0), allocated_da=160, vehicle_max_da=320)
    assert state.phases == 1


def test_the_draw_is_the_highest_phase_or_the_power_over_the_phases() -> None:
    assert drawn_da(drawing(100, 120, 90), None) == 120
    assert drawn_da(MeterSample(power_w=11_040), 3) == 160  # 11.04 kW / (230 V x 3) = 16 A
    assert drawn_da(MeterSample(power_w=3_680), None) == 160  # unknown phases: as one phase
    assert drawn_da(MeterSample(), 3) is None


def test_the_config_sets_samples_buffer_and_probe_step() -> None:
    config = FeedbackConfig(samples_to_cap=1, buffer_da=10, probe_step_da=20)
    state = observe(
        FeedbackState(), drawing(50), allocated_da=160, vehicle_max_da=320, config=config
    )
    assert state.cap_da == 60
    state = observe(state, drawing(55), allocated_da=60, vehicle_max_da=320, config=config)
    assert state.cap_da == 80


def test_the_spare_of_a_capped_vehicle_goes_to_the_others() -> None:
    node = Node("circuit", phase_limits_da=(320, 320, 320))
    connectors = [Connector("c0", "circuit", "RST"), Connector("c1", "circuit", "RST")]

    def sessions(state: FeedbackState) -> list[Session]:
        slow_max = capped_max_da(state, min_da=60, max_da=320)
        return [
            Session("slow", "c0", NOW, phases=state.phases, max_da=slow_max),
            Session("fast", "c1", NOW, phases=3),
        ]

    state = FeedbackState()
    first = allocate(Problem([node], connectors, sessions(state), NOW))
    assert [row.current_da for row in first.sessions] == [160, 160]

    slow_share = first.for_session("slow").current_da
    state = feed(state, drawing(60, 60, 60), 3, allocated_da=slow_share)  # it takes 6 A only
    second = allocate(Problem([node], connectors, sessions(state), NOW))
    assert [row.current_da for row in second.sessions] == [80, 240]


currents = st.one_of(st.none(), st.integers(0, 400))
samples = st.builds(
    MeterSample,
    current_da=st.tuples(currents, currents, currents),
    power_w=st.one_of(st.none(), st.integers(0, 25_000)),
)


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(st.tuples(samples, st.integers(0, 320)), max_size=30),
    minimum=st.sampled_from([0, 60, 100]),
    maximum=st.integers(100, 320),
)
def test_the_capped_maximum_stays_between_the_vehicle_minimum_and_maximum(
    steps: list[tuple[MeterSample, int]], minimum: int, maximum: int
) -> None:
    state = FeedbackState()
    for sample, allocated in steps:
        before = state
        state = observe(state, sample, allocated_da=allocated, vehicle_max_da=maximum)
        assert minimum <= capped_max_da(state, min_da=minimum, max_da=maximum) <= maximum
        draw = drawn_da(sample, state.phases)
        if state.cap_da is not None and state.cap_da != before.cap_da and draw is not None:
            assert state.cap_da >= draw + DEFAULT_CONFIG.buffer_da  # never capped under its draw
        assert state.phases in (None, 1, 2, 3)


def test_a_vehicle_drawing_past_its_cap_is_raised_to_its_draw_plus_the_buffer() -> None:
    state = observe(FeedbackState(cap_da=20), drawing(90), allocated_da=60, vehicle_max_da=320)
    assert state.cap_da == 110  # not 20 + 4 A = 6 A

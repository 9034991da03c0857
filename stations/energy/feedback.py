"""Meter feedback: cap a vehicle at what it draws, probe it upward, detect its phases. Pure Python.

No Django, no database. Units are the allocator's (deci-amps, watts). For every meter sample of a
session the caller passes the session's :class:`FeedbackState`, the sample and the current the
session was last allocated, and keeps the new state; before the next allocation it sets the
session's maximum to :func:`capped_max_da` and its phases to ``state.phases`` (when known).

* A vehicle that draws less than its allocation by more than the buffer for
  ``samples_to_cap`` samples in a row is capped at what it draws plus the buffer: the allocator
  then gives the spare to the others.
* A capped vehicle that draws up to its cap (within ``at_cap_margin_da``) is probed upward: its
  cap rises by ``probe_step_da`` at once (to its draw plus the buffer if that is higher); a cap
  at or above the vehicle's maximum is dropped.
* The phases a vehicle uses are those carrying more than ``phase_threshold_da``; a sample with
  no phase above it (the vehicle is not drawing) keeps what was detected before.
* The draw is the highest per-phase current; without per-phase currents it is estimated from the
  active power over the detected phases (over one phase when none is known: the estimate is then
  high, so the vehicle is never capped below what it draws).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

CurrentTriple = tuple[int | None, int | None, int | None]


@dataclass(frozen=True)
class FeedbackConfig:
    samples_to_cap: int = 3
    buffer_da: int = 20  # 2 A above the draw
    probe_step_da: int = 40  # 4 A up when the vehicle draws at its cap
    at_cap_margin_da: int = 10  # "at its cap": within 1 A of it
    phase_threshold_da: int = 10  # a phase carrying more than 1 A is in use
    voltage_v: int = 230


DEFAULT_CONFIG = FeedbackConfig()


@dataclass(frozen=True)
class MeterSample:
    """One meter reading of a connector: current per phase (its own L1..L3) and active power."""

    current_da: CurrentTriple = (None, None, None)
    power_w: int | None = None


@dataclass(frozen=True)
class FeedbackState:
    cap_da: int | None = None  # None: not capped
    low_samples: int = 0  # consecutive samples drawing below the allocation minus the buffer
    phases: int | None = None  # phases detected in use, 1..3


def detect_phases(sample: MeterSample, config: FeedbackConfig = DEFAULT_CONFIG) -> int | None:
    """How many phases carry current in ``sample``; None when none does (or none is measured)."""
    in_use = sum(
        1
        for current in sample.current_da
        if current is not None and current > config.phase_threshold_da
    )
    return in_use or None


def drawn_da(
    sample: MeterSample, phases: int | None, config: FeedbackConfig = DEFAULT_CONFIG
) -> int | None:
    """The current the vehicle draws per phase (the highest phase), None when not measured."""
    measured = [current for current in sample.current_da if current is not None]
    if measured:
        return max(measured)
    if sample.power_w is None:
        return None
    return max(0, sample.power_w) * 10 // (config.voltage_v * (phases or 1))


def observe(
    state: FeedbackState,
    sample: MeterSample,
    *,
    allocated_da: int,
    vehicle_max_da: int,
    config: FeedbackConfig = DEFAULT_CONFIG,
) -> FeedbackState:
    """The state after ``sample``, for a session that was allocated ``allocated_da``."""
    phases = detect_phases(sample, config) or state.phases
    draw = drawn_da(sample, phases, config)
    if draw is None or allocated_da <= 0:
        return replace(state, phases=phases, low_samples=0)
    if state.cap_da is not None and draw + config.at_cap_margin_da >= state.cap_da:
        return FeedbackState(_raised_cap(state.cap_da, draw, vehicle_max_da, config), 0, phases)
    if draw + config.buffer_da >= allocated_da:
        return FeedbackState(state.cap_da, 0, phases)
    low_samples = state.low_samples + 1
    if low_samples < config.samples_to_cap:
        return FeedbackState(state.cap_da, low_samples, phases)
    return FeedbackState(draw + config.buffer_da, 0, phases)


def _raised_cap(
    cap_da: int, draw_da: int, vehicle_max_da: int, config: FeedbackConfig
) -> int | None:
    # A vehicle that draws past its cap (a cap not yet obeyed) is never held under its draw.
    raised = max(cap_da + config.probe_step_da, draw_da + config.buffer_da)
    return None if raised >= vehicle_max_da else raised


def capped_max_da(state: FeedbackState, *, min_da: int, max_da: int) -> int:
    """The session's maximum for the allocator: the vehicle's, lowered to the cap, never below
    the minimum (a vehicle that tapers under its minimum still keeps the minimum)."""
    if state.cap_da is None:
        return max_da
    return max(min_da, min(max_da, state.cap_da))

"""The load allocator: which current each charging session may draw, per phase. Pure Python.

No Django, no database. Callers convert the site's grid tree, its connectors and its active
sessions into the frozen dataclasses below, call :func:`allocate`, and dispatch the
:class:`Allocation` (one current per connector and a number of phases, as OCPP charging profiles
carry them) with the explanation of each session's limit.

**Units.** Every current is an ``int`` in *deci-amps* (tenths of an ampere: 16 A is ``160``).
Integers make every invariant exact: the sum of the currents on a phase is compared with the
limit without rounding error, so "no node exceeds its limit" is proven by the property tests with
``<=`` on integers, not with a tolerance. A tenth of an ampere is far below what a charger obeys
(OCPP 1.6 profiles are commonly honoured to 0.1 A, IEC 61851 PWM steps are coarser). Power limits
are ``int`` watts with the node's nominal phase-to-neutral voltage; they become a cap on the sum of
the node's phase currents (``floor(W x 10 / V)`` deci-amps summed over L1, L2, L3). The safety
margin is a ``Decimal`` percentage taken off every limit of the node, rounded down once.

**Phases.** The site's conductors are L1, L2, L3 (``1``, ``2``, ``3``) throughout the tree; a node
feeds a subset of them (a single-phase circuit on L2 feeds ``{2}``). A connector's phase rotation
(OCPP 1.6 ConnectorPhaseRotation: ``RST``, ``RTS``, ``SRT``, ``STR``, ``TRS``, ``TSR``) maps its
phases 1..3 onto L1..L3; a vehicle that uses *n* phases draws on the connector's first *n*. A
session is *counted* on the site phases it loads: through the rotation when it is known, on every
phase of its node when it is not (``Unknown``, ``NotApplicable``: the worst case), and a vehicle
whose number of phases is unknown is counted as three-phase.

**Algorithm.** One pass per call, deterministic for the same input:

1. Validate the input (:func:`validate`): unknown or duplicate ids, a cycle, a child feeding a
   phase its parent does not, a minimum above a maximum... raise :class:`InvalidInput`.
2. Each node's limits, after the safety margin, become *constraints* (one per limited phase and
   one for the power limit). The unmanaged load of a node and of its descendants, and every
   *fixed* session (an offline station counted at its last allocation, an unmanaged station at
   its worst case) are subtracted first. A constraint already below zero is an
   :class:`Overload` (reported, and nothing managed behind it may run: the fail-safe).
3. *Admission.* Sessions are ranked: higher tier first; then sessions in the middle of their
   turn (running for less than the fairness window); then by how long they have waited (a paused
   session since it was paused, a running one whose turn is over since its turn ended, a new one
   since its arrival); then by id. In that order each session is admitted at its minimum if the
   minimum fits on every constraint it loads, otherwise it is *paused* (0 A). So when capacity is
   short the lowest-priority, latest sessions pause instead of everyone getting less than the
   minimum, and a paused session gets its turn once a running one has had a fairness window.
4. *Filling* above the minimums, by strategy:

   * ``EQUAL_SHARE``: water-filling over every admitted session: the lowest currents rise
     together until a vehicle reaches its maximum or a constraint is full; those freeze and the
     others go on. The last tenths of an ampere of a full constraint go to the best ranked.
   * ``PRIORITY``: tier by tier, highest first, each tier admitted then water-filled before the
     next tier is admitted with what is left.
   * ``FIRST_COME``: everyone who fits is admitted at the minimum, then each session in arrival
     order is raised as far as it goes.
   * ``DEPARTURE``: everyone who fits is admitted at the minimum; in order of least slack (time
     left before departure minus the time the energy wanted takes at the vehicle's maximum), each
     is raised to the current that delivers its energy by its departure; then water-filling
     shares what is left. Sessions without a departure or an energy wanted come last.

5. Every session gets its explanation (:class:`Rule`, the binding node and phase) and its new
   running/paused state with the time it started, to pass back as ``previous`` next time.

:func:`safe_shares` gives each connector's current when all connectors draw at once (the value
a station falls back to by itself). Measured speed: ``manage.py energy_bench``
(``stations/energy/bench.py``).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_FLOOR, Decimal
from enum import StrEnum
from typing import TypeVar

Id = int | str
PhaseTriple = tuple[int, int, int]
SITE_PHASES = (1, 2, 3)
ALL_PHASES = frozenset(SITE_PHASES)
DEFAULT_MIN_DA = 60  # 6 A, IEC 61851's lowest current
DEFAULT_VOLTAGE_V = 230

ROTATIONS: dict[str, tuple[int, int, int]] = {
    "RST": (1, 2, 3),
    "RTS": (1, 3, 2),
    "SRT": (2, 1, 3),
    "STR": (2, 3, 1),
    "TRS": (3, 1, 2),
    "TSR": (3, 2, 1),
}
UNKNOWN_ROTATIONS = frozenset({"Unknown", "NotApplicable"})


class Strategy(StrEnum):
    EQUAL_SHARE = "equal_share"
    PRIORITY = "priority"
    FIRST_COME = "first_come"
    DEPARTURE = "departure"


class Rule(StrEnum):
    """Why a session has the current it has ("why am I limited")."""

    VEHICLE_MAX = "vehicle_max"  # it has its own maximum (vehicle, station or feedback cap)
    PHASE_LIMIT = "phase_limit"  # a node's per-phase limit is full (node_id, phase)
    POWER_LIMIT = "power_limit"  # a node's power limit is full (node_id)
    FIXED = "fixed"  # counted at a fixed current (offline or unmanaged station), not allocated


class InvalidInput(ValueError):
    """The input cannot be allocated: the message says what is wrong."""


class TopologyError(InvalidInput):
    """The grid tree is malformed: a cycle, an unknown parent, a phase its parent lacks."""


def to_deci_amps(amps: Decimal | int | str) -> int:
    """Amperes to deci-amps, rounded down (a limit is never rounded up)."""
    return int((Decimal(amps) * 10).to_integral_value(rounding=ROUND_FLOOR))


def to_amps(deci_amps: int) -> Decimal:
    return Decimal(deci_amps) / 10


@dataclass(frozen=True)
class Node:
    """A grid node: the site connection, a panel, a circuit."""

    id: Id
    parent_id: Id | None = None
    phase_limits_da: tuple[int | None, int | None, int | None] = (None, None, None)
    power_limit_w: int | None = None
    nominal_voltage_v: int = DEFAULT_VOLTAGE_V
    safety_margin_pct: Decimal = Decimal(0)
    phases: frozenset[int] = ALL_PHASES
    unmanaged_da: PhaseTriple = (0, 0, 0)


@dataclass(frozen=True)
class Connector:
    id: Id
    node_id: Id
    rotation: str = "Unknown"


@dataclass(frozen=True)
class Session:
    """An active charging session on a connector, with what its vehicle can take."""

    id: Id
    connector_id: Id
    arrival: dt.datetime
    tier: int = 0  # higher tiers are served first (fleet, VIP)
    min_da: int = DEFAULT_MIN_DA
    max_da: int = 320
    phases: int | None = None  # phases the vehicle uses, 1..3; None: unknown, counted as 3
    departure: dt.datetime | None = None
    energy_wanted_wh: int | None = None
    # Not allocated: counted at this current on its phases (an offline station at its last
    # allocation, a station that refuses profiles at its worst case).
    fixed_da: int | None = None
    # Measured current per connector phase; a fixed session is counted at no less than it.
    measured_da: PhaseTriple | None = None


@dataclass(frozen=True)
class SessionState:
    """Whether a session was running or paused, and since when (for the fairness rotation)."""

    running: bool
    since: dt.datetime


@dataclass(frozen=True)
class Problem:
    nodes: Sequence[Node]
    connectors: Sequence[Connector]
    sessions: Sequence[Session]
    now: dt.datetime
    strategy: Strategy = Strategy.EQUAL_SHARE
    fairness_window: dt.timedelta = dt.timedelta(minutes=15)
    previous: Mapping[Id, SessionState] = field(default_factory=dict)


@dataclass(frozen=True)
class SessionAllocation:
    session_id: Id
    connector_id: Id
    current_da: int  # per phase; 0 when paused
    number_phases: int  # phases to put in the charging profile
    counted_phases: frozenset[int]  # site phases this session is counted on
    paused: bool
    rule: Rule
    node_id: Id | None  # the binding node for PHASE_LIMIT / POWER_LIMIT
    phase: int | None  # the binding phase for PHASE_LIMIT
    state: SessionState

    @property
    def current_a(self) -> Decimal:
        return to_amps(self.current_da)

    @property
    def explanation(self) -> str:
        amps = f"{self.current_a} A"
        if self.rule is Rule.FIXED:
            return f"counted at {amps}: not managed (offline or refusing profiles)"
        if self.rule is Rule.VEHICLE_MAX:
            return f"{amps}: the vehicle's own maximum"
        where = f"node {self.node_id}" + (f" L{self.phase}" if self.phase else " power")
        if self.paused:
            return f"paused: no room for the minimum on {where}"
        return f"{amps}: {where} is full"


@dataclass(frozen=True)
class NodeLoad:
    """A node's counted load and its limits after the margin (the panel's tree view)."""

    node_id: Id
    phase_load_da: PhaseTriple
    phase_limit_da: tuple[int | None, int | None, int | None]
    power_load_w: int  # sum of phase currents x nominal voltage, rounded down
    power_limit_w: int | None


@dataclass(frozen=True)
class Overload:
    """A node that fixed and unmanaged loads alone already put over a limit."""

    node_id: Id
    phase: int | None  # None: the power limit
    over_da: int  # by how much (for power: deci-amps summed over the phases)


@dataclass(frozen=True)
class Allocation:
    sessions: tuple[SessionAllocation, ...]
    nodes: tuple[NodeLoad, ...]
    overloads: tuple[Overload, ...]

    def for_session(self, session_id: Id) -> SessionAllocation:
        for allocation in self.sessions:
            if allocation.session_id == session_id:
                return allocation
        raise KeyError(session_id)

    def for_node(self, node_id: Id) -> NodeLoad:
        for load in self.nodes:
            if load.node_id == node_id:
                return load
        raise KeyError(node_id)


_Item = TypeVar("_Item", Node, Connector, Session)


# -- validation ---------------------------------------------------------------------------------


def validate(problem: Problem) -> None:
    """Raise :class:`InvalidInput` (or :class:`TopologyError`) for input that cannot be run."""
    nodes = _unique(problem.nodes, "node")
    _validate_tree(nodes)
    connectors = _unique(problem.connectors, "connector")
    for connector in connectors.values():
        if connector.node_id not in nodes:
            raise TopologyError(f"connector {connector.id}: unknown node {connector.node_id}")
        if connector.rotation not in ROTATIONS and connector.rotation not in UNKNOWN_ROTATIONS:
            raise InvalidInput(f"connector {connector.id}: unknown rotation {connector.rotation}")
    sessions = _unique(problem.sessions, "session")
    busy: set[Id] = set()
    for session in sessions.values():
        _validate_session(session, connectors)
        if session.connector_id in busy:
            raise InvalidInput(f"connector {session.connector_id}: two sessions at once")
        busy.add(session.connector_id)
    if problem.fairness_window <= dt.timedelta(0):
        raise InvalidInput("the fairness window must be positive")


def _unique(items: Iterable[_Item], kind: str) -> dict[Id, _Item]:
    by_id: dict[Id, _Item] = {}
    for item in items:
        if item.id in by_id:
            raise InvalidInput(f"{kind} {item.id}: duplicate id")
        by_id[item.id] = item
    return by_id


def _validate_tree(nodes: Mapping[Id, Node]) -> None:
    for node in nodes.values():
        _validate_node(node)
        if node.parent_id is not None and node.parent_id not in nodes:
            raise TopologyError(f"node {node.id}: unknown parent {node.parent_id}")
    for node in nodes.values():
        seen = {node.id}
        parent_id = node.parent_id
        while parent_id is not None:
            if parent_id in seen:
                raise TopologyError(f"node {node.id}: its parents form a cycle")
            seen.add(parent_id)
            parent = nodes[parent_id]
            if not node.phases <= parent.phases:
                raise TopologyError(f"node {node.id}: feeds a phase its parent {parent.id} lacks")
            parent_id = parent.parent_id


def _validate_node(node: Node) -> None:
    if not node.phases or not node.phases <= ALL_PHASES:
        raise TopologyError(f"node {node.id}: phases must be a non-empty subset of 1, 2, 3")
    if any(limit is not None and limit < 0 for limit in node.phase_limits_da):
        raise InvalidInput(f"node {node.id}: a negative phase limit")
    if node.power_limit_w is not None and node.power_limit_w < 0:
        raise InvalidInput(f"node {node.id}: a negative power limit")
    if node.nominal_voltage_v <= 0:
        raise InvalidInput(f"node {node.id}: the nominal voltage must be positive")
    if not Decimal(0) <= node.safety_margin_pct < Decimal(100):
        raise InvalidInput(f"node {node.id}: the safety margin must be from 0 to under 100 %")
    if any(load < 0 for load in node.unmanaged_da):
        raise InvalidInput(f"node {node.id}: a negative unmanaged load")


def _validate_session(session: Session, connectors: Mapping[Id, Connector]) -> None:
    if session.connector_id not in connectors:
        raise InvalidInput(f"session {session.id}: unknown connector {session.connector_id}")
    if session.min_da < 0 or session.max_da < session.min_da:
        raise InvalidInput(f"session {session.id}: needs 0 <= minimum <= maximum")
    if session.phases is not None and session.phases not in SITE_PHASES:
        raise InvalidInput(f"session {session.id}: a vehicle uses 1, 2 or 3 phases")
    if session.fixed_da is not None and session.fixed_da < 0:
        raise InvalidInput(f"session {session.id}: a negative fixed current")
    if session.measured_da is not None and any(value < 0 for value in session.measured_da):
        raise InvalidInput(f"session {session.id}: a negative measured current")
    if session.energy_wanted_wh is not None and session.energy_wanted_wh < 0:
        raise InvalidInput(f"session {session.id}: a negative energy wanted")


# -- the constraints ----------------------------------------------------------------------------


@dataclass
class _Constraint:
    node_id: Id
    phase: int | None  # None: the power limit
    capacity: int  # deci-amps (for power: summed over the phases), after the margin
    residual: int = 0


@dataclass
class _Load:
    """A session being allocated: its place in the constraints and its current so far."""

    session: Session
    node_id: Id
    counted: frozenset[int]
    number_phases: int
    voltage_v: int
    terms: list[tuple[int, int]]  # (constraint index, weight: phases counted on it)
    current: int = 0
    admitted: bool = False
    rule: Rule = Rule.VEHICLE_MAX
    binding: int | None = None  # constraint index


def _paths(nodes: Mapping[Id, Node]) -> dict[Id, list[Id]]:
    """Each node's path to its root, itself first."""
    paths: dict[Id, list[Id]] = {}
    for node_id in nodes:
        path = [node_id]
        parent_id = nodes[node_id].parent_id
        while parent_id is not None:
            path.append(parent_id)
            parent_id = nodes[parent_id].parent_id
        paths[node_id] = path
    return paths


def _after_margin(value: int, margin_pct: Decimal) -> Decimal:
    return Decimal(value) * (Decimal(100) - margin_pct) / Decimal(100)


def _floor(value: Decimal) -> int:
    return int(value.to_integral_value(rounding=ROUND_FLOOR))


def _constraints(
    nodes: Mapping[Id, Node],
) -> tuple[list[_Constraint], dict[tuple[Id, int | None], int]]:
    constraints: list[_Constraint] = []
    index: dict[tuple[Id, int | None], int] = {}
    for node in nodes.values():
        for phase, limit in zip(SITE_PHASES, node.phase_limits_da, strict=True):
            if limit is not None and phase in node.phases:
                index[(node.id, phase)] = len(constraints)
                capacity = _floor(_after_margin(limit, node.safety_margin_pct))
                constraints.append(_Constraint(node.id, phase, capacity))
        if node.power_limit_w is not None:
            index[(node.id, None)] = len(constraints)
            watts = _after_margin(node.power_limit_w, node.safety_margin_pct)
            capacity = _floor(watts * 10 / node.nominal_voltage_v)
            constraints.append(_Constraint(node.id, None, capacity))
    for constraint in constraints:
        constraint.residual = constraint.capacity
    return constraints, index


def _counted_phases(
    session: Session, connector: Connector, node: Node
) -> tuple[frozenset[int], int]:
    """The site phases a session is counted on, and the number of phases for its profile."""
    vehicle_phases = session.phases or 3
    worst_case = (node.phases, min(vehicle_phases, len(node.phases)))
    rotation = ROTATIONS.get(connector.rotation)
    if rotation is None:
        return worst_case
    live = frozenset(rotation[:vehicle_phases]) & node.phases
    if not live:
        return worst_case
    return live, len(live)


def _terms(
    counted: frozenset[int], path: Sequence[Id], index: Mapping[tuple[Id, int | None], int]
) -> list[tuple[int, int]]:
    terms: list[tuple[int, int]] = []
    for node_id in path:
        for phase in sorted(counted):
            position = index.get((node_id, phase))
            if position is not None:
                terms.append((position, 1))
        position = index.get((node_id, None))
        if position is not None:
            terms.append((position, len(counted)))
    return terms


def _subtract_unmanaged(
    nodes: Mapping[Id, Node],
    paths: Mapping[Id, list[Id]],
    constraints: list[_Constraint],
    index: Mapping[tuple[Id, int | None], int],
) -> None:
    for node in nodes.values():
        for node_id in paths[node.id]:
            for phase, load in zip(SITE_PHASES, node.unmanaged_da, strict=True):
                position = index.get((node_id, phase))
                if position is not None:
                    constraints[position].residual -= load
            power = index.get((node_id, None))
            if power is not None:
                constraints[power].residual -= sum(node.unmanaged_da)


def _fixed_current(session: Session) -> int:
    assert session.fixed_da is not None
    return max(session.fixed_da, *(session.measured_da or (0,)))


# -- ranking ------------------------------------------------------------------------------------


def _id_key(value: Id) -> tuple[int, int, str]:
    return (0, value, "") if isinstance(value, int) else (1, 0, value)


def _rank_key(session: Session, problem: Problem) -> tuple[object, ...]:
    """Admission order: tier, a turn in progress, then the longest wait first."""
    state = problem.previous.get(session.id)
    window = problem.fairness_window
    if state is None:
        in_turn, waiting_since = False, session.arrival
    elif state.running and problem.now - state.since < window:
        in_turn, waiting_since = True, state.since
    elif state.running:
        in_turn, waiting_since = False, state.since + window
    else:
        in_turn, waiting_since = False, state.since
    return (-session.tier, not in_turn, waiting_since, session.arrival, _id_key(session.id))


def _slack_key(load: _Load, now: dt.datetime) -> tuple[object, ...]:
    """Least slack first: time left minus the time the energy wanted takes at full current
    (integer milliseconds, the time needed rounded up)."""
    session = load.session
    if session.departure is None or session.energy_wanted_wh is None or session.max_da == 0:
        return (1, 0, session.arrival, _id_key(session.id))
    ms_left = (session.departure - now) // dt.timedelta(milliseconds=1)
    full_power_dw = session.max_da * load.voltage_v * load.number_phases  # deci-watts
    ms_needed = -(-session.energy_wanted_wh * 3600 * 10 * 1000 // full_power_dw)
    return (0, ms_left - ms_needed, session.arrival, _id_key(session.id))


def _needed_da(load: _Load, now: dt.datetime) -> int:
    """The current that delivers the energy wanted by the departure, within min and max."""
    session = load.session
    if session.departure is None or session.energy_wanted_wh is None:
        return session.min_da
    seconds_left = int((session.departure - now).total_seconds())
    if seconds_left <= 0:
        return session.max_da
    watts_da = session.energy_wanted_wh * 3600 * 10
    divisor = seconds_left * load.voltage_v * load.number_phases
    needed = -(-watts_da // divisor)  # ceiling
    return min(max(needed, session.min_da), session.max_da)


# -- admission and filling ----------------------------------------------------------------------


def _admit(loads: Iterable[_Load], constraints: list[_Constraint]) -> None:
    for load in loads:
        short = next(
            (c for c, w in load.terms if constraints[c].residual < w * load.session.min_da), None
        )
        if short is not None:
            load.binding = short
            continue
        load.admitted = True
        load.current = load.session.min_da
        for c, w in load.terms:
            constraints[c].residual -= w * load.current


def _fill(loads: Sequence[_Load], caps: Mapping[int, int], constraints: list[_Constraint]) -> None:
    """Water-filling: raise the lowest admitted currents together up to caps and constraints.

    ``caps`` maps a position in ``loads`` to its ceiling; ``loads`` is in rank order, which
    decides who gets the last tenths of an ampere of a full constraint.
    """
    active = [i for i, load in enumerate(loads) if load.admitted and load.current < caps[i]]
    while active:
        level = min(loads[i].current for i in active)
        at_level = [i for i in active if loads[i].current == level]
        above = [loads[i].current for i in active if loads[i].current > level]
        demand: dict[int, int] = {}
        for i in at_level:
            for c, w in loads[i].terms:
                demand[c] = demand.get(c, 0) + w
        step = min(caps[i] - loads[i].current for i in at_level)
        if above:
            step = min(step, min(above) - level)
        for c, total in demand.items():
            step = min(step, constraints[c].residual // total)
        if step > 0:
            for i in at_level:
                _raise(loads[i], step, constraints)
        frozen = _freeze_full(loads, at_level, demand, constraints)
        for i in at_level:
            if loads[i].current >= caps[i]:
                loads[i].rule, loads[i].binding = Rule.VEHICLE_MAX, None
                frozen.add(i)
        active = [i for i in active if i not in frozen]


def _raise(load: _Load, step: int, constraints: list[_Constraint]) -> None:
    load.current += step
    for c, w in load.terms:
        constraints[c].residual -= w * step


def _freeze_full(
    loads: Sequence[_Load],
    at_level: list[int],
    demand: Mapping[int, int],
    constraints: list[_Constraint],
) -> set[int]:
    """Freeze the sessions on constraints that cannot give all of them one more deci-amp.

    What is left on such a constraint (less than one deci-amp each) goes, a deci-amp at a time,
    to the best ranked of them where every other constraint allows it.
    """
    frozen: set[int] = set()
    for c in sorted(demand):
        if constraints[c].residual >= demand[c]:
            continue
        on_it = [i for i in at_level if i not in frozen and any(t == c for t, _ in loads[i].terms)]
        for i in on_it:
            if all(constraints[t].residual >= w for t, w in loads[i].terms):
                _raise(loads[i], 1, constraints)
        for i in on_it:
            loads[i].binding = c
            frozen.add(i)
    return frozen


# -- the allocation -----------------------------------------------------------------------------


def allocate(problem: Problem) -> Allocation:
    """The currents for every session of ``problem`` (see the module docstring)."""
    validate(problem)
    nodes = {node.id: node for node in problem.nodes}
    connectors = {connector.id: connector for connector in problem.connectors}
    paths = _paths(nodes)
    constraints, index = _constraints(nodes)
    _subtract_unmanaged(nodes, paths, constraints, index)

    loads: list[_Load] = []
    for session in problem.sessions:
        connector = connectors[session.connector_id]
        node = nodes[connector.node_id]
        counted, number_phases = _counted_phases(session, connector, node)
        terms = _terms(counted, paths[node.id], index)
        loads.append(_Load(session, node.id, counted, number_phases, node.nominal_voltage_v, terms))

    fixed = [load for load in loads if load.session.fixed_da is not None]
    for load in fixed:
        load.current = _fixed_current(load.session)
        load.rule = Rule.FIXED
        for c, w in load.terms:
            constraints[c].residual -= w * load.current
    overloads = tuple(
        Overload(constraint.node_id, constraint.phase, -constraint.residual)
        for constraint in constraints
        if constraint.residual < 0
    )

    managed = sorted(
        (load for load in loads if load.session.fixed_da is None),
        key=lambda load: _rank_key(load.session, problem),
    )
    _run_strategy(problem, managed, constraints)

    by_id = {load.session.id: load for load in loads}
    sessions = tuple(
        _session_allocation(by_id[session.id], constraints, problem) for session in problem.sessions
    )
    return Allocation(sessions, _node_loads(nodes, paths, loads), overloads)


def _run_strategy(problem: Problem, ranked: list[_Load], constraints: list[_Constraint]) -> None:
    at_max = {i: load.session.max_da for i, load in enumerate(ranked)}
    if problem.strategy is Strategy.PRIORITY:
        for tier in sorted({load.session.tier for load in ranked}, reverse=True):
            group = [load for load in ranked if load.session.tier == tier]
            _admit(group, constraints)
            _fill(group, {i: load.session.max_da for i, load in enumerate(group)}, constraints)
        return
    _admit(ranked, constraints)
    if problem.strategy is Strategy.EQUAL_SHARE:
        _fill(ranked, at_max, constraints)
    elif problem.strategy is Strategy.FIRST_COME:
        for load in sorted(
            ranked, key=lambda load: (load.session.arrival, _id_key(load.session.id))
        ):
            _fill([load], {0: load.session.max_da}, constraints)
    else:
        for load in sorted(ranked, key=lambda load: _slack_key(load, problem.now)):
            _fill([load], {0: _needed_da(load, problem.now)}, constraints)
        _fill(ranked, at_max, constraints)


def _session_allocation(
    load: _Load, constraints: list[_Constraint], problem: Problem
) -> SessionAllocation:
    session = load.session
    fixed = session.fixed_da is not None
    paused = not fixed and not load.admitted
    rule, node_id, phase = load.rule, None, None
    if load.binding is not None:
        constraint = constraints[load.binding]
        rule = Rule.POWER_LIMIT if constraint.phase is None else Rule.PHASE_LIMIT
        node_id, phase = constraint.node_id, constraint.phase
    return SessionAllocation(
        session_id=session.id,
        connector_id=session.connector_id,
        current_da=load.current,
        number_phases=load.number_phases,
        counted_phases=load.counted,
        paused=paused,
        rule=rule,
        node_id=node_id,
        phase=phase,
        state=_next_state(session, running=not paused, problem=problem),
    )


def _next_state(session: Session, *, running: bool, problem: Problem) -> SessionState:
    state = problem.previous.get(session.id)
    if state is not None and state.running == running:
        return state
    return SessionState(running=running, since=problem.now)


def _node_loads(
    nodes: Mapping[Id, Node], paths: Mapping[Id, list[Id]], loads: Sequence[_Load]
) -> tuple[NodeLoad, ...]:
    """Each node's counted load per phase (sessions and unmanaged loads behind it), its limits."""
    phase_load = {node_id: [0, 0, 0] for node_id in nodes}
    for node in nodes.values():
        for node_id in paths[node.id]:
            for position, unmanaged in enumerate(node.unmanaged_da):
                phase_load[node_id][position] += unmanaged
    for load in loads:
        for ancestor in paths[load.node_id]:
            for phase in load.counted:
                phase_load[ancestor][phase - 1] += load.current
    return tuple(_node_load(node, phase_load[node.id]) for node in nodes.values())


def _node_load(node: Node, phase_load: list[int]) -> NodeLoad:
    limits = tuple(
        None
        if limit is None or phase not in node.phases
        else _floor(_after_margin(limit, node.safety_margin_pct))
        for phase, limit in zip(SITE_PHASES, node.phase_limits_da, strict=True)
    )
    power_limit = None
    if node.power_limit_w is not None:
        power_limit = _floor(_after_margin(node.power_limit_w, node.safety_margin_pct))
    return NodeLoad(
        node_id=node.id,
        phase_load_da=(phase_load[0], phase_load[1], phase_load[2]),
        phase_limit_da=(limits[0], limits[1], limits[2]),
        power_load_w=sum(phase_load) * node.nominal_voltage_v // 10,
        power_limit_w=power_limit,
    )


def safe_shares(
    nodes: Sequence[Node], connectors: Sequence[Connector], *, max_da: int = 320
) -> dict[Id, int]:
    """Each connector's current when every connector draws at once, as a three-phase vehicle
    (the fallback a station applies by itself when it loses the back office). Unmanaged loads
    are counted; a share under a vehicle's minimum means the vehicle will not charge on it."""
    epoch = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)
    everyone = [
        Session(connector.id, connector.id, epoch, min_da=0, max_da=max_da, phases=3)
        for connector in connectors
    ]
    allocation = allocate(Problem(nodes, connectors, everyone, epoch))
    return {row.connector_id: row.current_da for row in allocation.sessions}

"""Properties of the load allocator, over random grid trees, wirings and sessions (no database).

The limits are checked against an independent count: each vehicle's *physical* phases come from
its true wiring (for a connector whose rotation the allocator is told is unknown, and a vehicle
whose phase count it is not told, the test draws the truth and keeps it hidden), and the limits
after the margin are compared exactly (integers and Decimal, no tolerance).
"""

from __future__ import annotations

import datetime as dt
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from decimal import Decimal

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stations.energy.allocator import (
    ROTATIONS,
    Allocation,
    Connector,
    Id,
    Node,
    Problem,
    Session,
    SessionState,
    Strategy,
    allocate,
)

NOW = dt.datetime(2026, 3, 1, 18, 0, tzinfo=dt.UTC)
PROPERTY_SETTINGS = settings(
    max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
MARGINS = [Decimal(0), Decimal(0), Decimal("2.5"), Decimal(10)]


@dataclass(frozen=True)
class Site:
    """A problem and the truth the allocator is not told (true rotations and vehicle phases)."""

    problem: Problem
    true_rotation: Mapping[Id, str]
    true_phases: Mapping[Id, int]


phase_sets = st.sets(st.sampled_from([1, 2, 3]), min_size=1).map(frozenset)


@st.composite
def nodes(draw: st.DrawFn) -> list[Node]:
    count = draw(st.integers(1, 6))
    result: list[Node] = []
    for number in range(count):
        parent = None if number == 0 else draw(st.sampled_from(result))
        phases = (
            draw(phase_sets)
            if parent is None
            else frozenset(draw(st.sets(st.sampled_from(sorted(parent.phases)), min_size=1)))
        )
        limits = tuple(draw(st.one_of(st.none(), st.integers(0, 800))) for _ in range(3))
        unmanaged = tuple(
            draw(st.integers(0, 100)) if phase in phases and draw(st.booleans()) else 0
            for phase in (1, 2, 3)
        )
        result.append(
            Node(
                id=f"n{number}",
                parent_id=None if parent is None else parent.id,
                phase_limits_da=limits,  # type: ignore[arg-type]
                power_limit_w=draw(st.one_of(st.none(), st.integers(0, 60_000))),
                nominal_voltage_v=draw(st.sampled_from([230, 230, 240, 120])),
                safety_margin_pct=draw(st.sampled_from(MARGINS)),
                phases=phases,
                unmanaged_da=unmanaged,  # type: ignore[arg-type]
            )
        )
    return result


@st.composite
def sites(draw: st.DrawFn, strategy: Strategy | None = None, fixed: bool = True) -> Site:
    tree = draw(nodes())
    connectors: list[Connector] = []
    sessions: list[Session] = []
    true_rotation: dict[Id, str] = {}
    true_phases: dict[Id, int] = {}
    for number in range(draw(st.integers(0, 12))):
        rotation = draw(st.sampled_from([*ROTATIONS, "Unknown", "NotApplicable"]))
        connector = Connector(f"c{number}", draw(st.sampled_from(tree)).id, rotation)
        connectors.append(connector)
        true_rotation[connector.id] = (
            rotation if rotation in ROTATIONS else draw(st.sampled_from(sorted(ROTATIONS)))
        )
        if not draw(st.integers(0, 4)):
            continue  # a connector without a session
        minimum = draw(st.sampled_from([0, 60, 60, 60, 100]))
        phases = draw(st.sampled_from([None, 1, 1, 2, 3, 3]))
        departs = draw(st.booleans())
        session = Session(
            id=f"s{number}",
            connector_id=connector.id,
            arrival=NOW - dt.timedelta(minutes=draw(st.integers(0, 300))),
            tier=draw(st.integers(0, 2)),
            min_da=minimum,
            max_da=draw(st.integers(minimum, 320)),
            phases=phases,
            departure=NOW + dt.timedelta(minutes=draw(st.integers(-10, 600))) if departs else None,
            energy_wanted_wh=draw(st.integers(0, 60_000)) if departs else None,
            fixed_da=draw(st.integers(0, 200)) if fixed and not draw(st.integers(0, 9)) else None,
        )
        sessions.append(session)
        true_phases[session.id] = phases or draw(st.integers(1, 3))
    chosen = strategy or draw(st.sampled_from(list(Strategy)))
    problem = Problem(tree, connectors, sessions, NOW, chosen)
    return Site(problem, true_rotation, true_phases)


def paths(problem: Problem) -> dict[Id, list[Node]]:
    by_id = {node.id: node for node in problem.nodes}
    result: dict[Id, list[Node]] = {}
    for node in problem.nodes:
        path, current = [], node
        while True:
            path.append(current)
            if current.parent_id is None:
                break
            current = by_id[current.parent_id]
        result[node.id] = path
    return result


def physical_phases(site: Site, session: Session) -> frozenset[int]:
    """The phases the vehicle really draws on: its true wiring, within what its node feeds."""
    connector = next(c for c in site.problem.connectors if c.id == session.connector_id)
    node = next(n for n in site.problem.nodes if n.id == connector.node_id)
    wired = ROTATIONS[site.true_rotation[connector.id]][: site.true_phases[session.id]]
    return frozenset(wired) & node.phases


def node_loads(
    problem: Problem, drawn: Iterable[tuple[Session, frozenset[int], int]]
) -> dict[Id, list[int]]:
    """Load per node and phase: unmanaged loads behind it plus ``drawn`` (session, phases, da)."""
    by_path = paths(problem)
    loads = {node.id: [0, 0, 0] for node in problem.nodes}
    for node in problem.nodes:
        for ancestor in by_path[node.id]:
            for index in range(3):
                loads[ancestor.id][index] += node.unmanaged_da[index]
    connector_node = {c.id: c.node_id for c in problem.connectors}
    for session, phases, current in drawn:
        for ancestor in by_path[connector_node[session.connector_id]]:
            for phase in phases:
                loads[ancestor.id][phase - 1] += current
    return loads


def over_limits(node: Node, load: list[int]) -> list[int | None]:
    """The limits of ``node`` that ``load`` exceeds (phase numbers, None for power)."""
    keep = (Decimal(100) - node.safety_margin_pct) / Decimal(100)
    over: list[int | None] = []
    for phase, limit in zip((1, 2, 3), node.phase_limits_da, strict=True):
        if limit is not None and phase in node.phases and Decimal(load[phase - 1]) > limit * keep:
            over.append(phase)
    if node.power_limit_w is not None:
        watts = Decimal(sum(load)) * node.nominal_voltage_v / 10
        if watts > node.power_limit_w * keep:
            over.append(None)
    return over


def overloaded(allocation: Allocation) -> set[Id]:
    return {overload.node_id for overload in allocation.overloads}


def behind(problem: Problem, session: Session) -> set[Id]:
    connector = next(c for c in problem.connectors if c.id == session.connector_id)
    return {node.id for node in paths(problem)[connector.node_id]}


@PROPERTY_SETTINGS
@given(site=sites())
def test_no_node_exceeds_a_limit_with_the_true_wiring(site: Site) -> None:
    problem = site.problem
    allocation = allocate(problem)
    drawn = []
    for session in problem.sessions:
        row = allocation.for_session(session.id)
        physical = physical_phases(site, session)
        assert physical <= row.counted_phases, "a vehicle is counted on every phase it can draw on"
        drawn.append((session, physical, row.current_da))
    loads = node_loads(problem, drawn)
    for node in problem.nodes:
        if node.id not in overloaded(allocation):
            assert over_limits(node, loads[node.id]) == [], (node, loads[node.id])


@PROPERTY_SETTINGS
@given(site=sites())
def test_nothing_managed_runs_behind_a_node_that_fixed_loads_overload(site: Site) -> None:
    problem = site.problem
    allocation = allocate(problem)
    for overload in allocation.overloads:
        for session in problem.sessions:
            row = allocation.for_session(session.id)
            on_it = overload.phase is None or overload.phase in row.counted_phases
            if session.fixed_da is None and overload.node_id in behind(problem, session) and on_it:
                assert row.paused
                assert row.current_da == 0


@PROPERTY_SETTINGS
@given(site=sites())
def test_every_current_is_zero_or_between_the_vehicle_minimum_and_maximum(site: Site) -> None:
    allocation = allocate(site.problem)
    for session in site.problem.sessions:
        row = allocation.for_session(session.id)
        if session.fixed_da is not None:
            assert not row.paused
        elif row.paused:
            assert row.current_da == 0
        else:
            assert session.min_da <= row.current_da <= session.max_da


def rank(session: Session) -> tuple[object, ...]:
    return (-session.tier, session.arrival, session.id)


@PROPERTY_SETTINGS
@given(
    site=sites(strategy=Strategy.EQUAL_SHARE),
    other=st.sampled_from([Strategy.FIRST_COME, Strategy.DEPARTURE, Strategy.EQUAL_SHARE]),
)
def test_a_session_pauses_only_when_its_minimum_does_not_fit_beside_those_ranked_before_it(
    site: Site, other: Strategy
) -> None:
    problem = replace(site.problem, strategy=other)
    allocation = allocate(problem)
    rows = {row.session_id: row for row in allocation.sessions}
    fixed = [
        (s, rows[s.id].counted_phases, rows[s.id].current_da)
        for s in problem.sessions
        if s.fixed_da is not None
    ]
    by_id = {node.id: node for node in problem.nodes}
    for session in problem.sessions:
        if not rows[session.id].paused:
            continue
        before = [
            (s, rows[s.id].counted_phases, s.min_da)
            for s in problem.sessions
            if s.fixed_da is None and not rows[s.id].paused and rank(s) < rank(session)
        ]
        loads = node_loads(
            problem, [*fixed, *before, (session, rows[session.id].counted_phases, session.min_da)]
        )
        assert any(
            over_limits(by_id[node_id], loads[node_id]) for node_id in behind(problem, session)
        ), session


@PROPERTY_SETTINGS
@given(site=sites())
def test_no_running_session_could_take_one_more_tenth_of_an_ampere(site: Site) -> None:
    problem = site.problem
    allocation = allocate(problem)
    if allocation.overloads:
        return
    rows = {row.session_id: row for row in allocation.sessions}
    by_id = {node.id: node for node in problem.nodes}
    for session in problem.sessions:
        row = rows[session.id]
        if session.fixed_da is not None or row.paused or row.current_da == session.max_da:
            continue
        drawn = [
            (s, rows[s.id].counted_phases, rows[s.id].current_da + (s.id == session.id))
            for s in problem.sessions
        ]
        loads = node_loads(problem, drawn)
        assert any(
            over_limits(by_id[node_id], loads[node_id]) for node_id in behind(problem, session)
        ), session


@PROPERTY_SETTINGS
@given(site=sites(), seed=st.integers(0, 2**32))
def test_the_same_input_in_any_order_gives_the_same_allocation(site: Site, seed: int) -> None:
    problem = site.problem
    shuffler = random.Random(seed)
    shuffled = replace(
        problem,
        nodes=shuffler.sample(list(problem.nodes), len(problem.nodes)),
        connectors=shuffler.sample(list(problem.connectors), len(problem.connectors)),
        sessions=shuffler.sample(list(problem.sessions), len(problem.sessions)),
    )
    first, again, other_order = allocate(problem), allocate(problem), allocate(shuffled)
    assert first == again
    assert sorted(first.sessions, key=lambda r: str(r.session_id)) == sorted(
        other_order.sessions, key=lambda r: str(r.session_id)
    )


@settings(max_examples=60, deadline=None)
@given(
    count=st.integers(2, 8),
    limit_da=st.integers(60, 400),
    window_minutes=st.integers(1, 60),
    step_minutes=st.integers(1, 30),
)
def test_pauses_rotate_so_every_session_gets_a_turn(
    count: int, limit_da: int, window_minutes: int, step_minutes: int
) -> None:
    node = Node("circuit", phase_limits_da=(limit_da, limit_da, limit_da))
    connectors = [Connector(f"c{n}", "circuit", "RST") for n in range(count)]
    sessions = [
        Session(f"s{n}", f"c{n}", NOW - dt.timedelta(minutes=count - n), phases=3)
        for n in range(count)
    ]
    window = dt.timedelta(minutes=window_minutes)
    step = dt.timedelta(minutes=step_minutes)
    running_at_once = min(count, limit_da // 60)
    previous: dict[Id, SessionState] = {}
    had_a_turn: set[Id] = set()
    now = NOW
    # Enough passes for every group of sessions to have had a window (and a step) of turn.
    passes = (count // running_at_once + 1) * (window // step + 2)
    for _ in range(passes):
        allocation = allocate(
            Problem([node], connectors, sessions, now, fairness_window=window, previous=previous)
        )
        running = {row.session_id for row in allocation.sessions if not row.paused}
        assert len(running) == running_at_once
        had_a_turn |= running
        previous = {row.session_id: row.state for row in allocation.sessions}
        now += step
    assert had_a_turn == {session.id for session in sessions}


@PROPERTY_SETTINGS
@given(site=sites(strategy=Strategy.PRIORITY))
def test_with_priority_a_session_pauses_only_when_higher_tiers_and_its_betters_leave_no_room(
    site: Site,
) -> None:
    problem = site.problem
    allocation = allocate(problem)
    rows = {row.session_id: row for row in allocation.sessions}
    by_id = {node.id: node for node in problem.nodes}
    for session in problem.sessions:
        if not rows[session.id].paused:
            continue
        drawn = [
            (other, rows[other.id].counted_phases, rows[other.id].current_da)
            for other in problem.sessions
            if other.fixed_da is not None or other.tier > session.tier
        ]
        drawn += [
            (other, rows[other.id].counted_phases, other.min_da)
            for other in problem.sessions
            if other.fixed_da is None
            and other.tier == session.tier
            and not rows[other.id].paused
            and rank(other) < rank(session)
        ]
        drawn.append((session, rows[session.id].counted_phases, session.min_da))
        loads = node_loads(problem, drawn)
        assert any(
            over_limits(by_id[node_id], loads[node_id]) for node_id in behind(problem, session)
        ), session

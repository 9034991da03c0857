"""Worked examples of the pure load allocator (no database). Currents are deci-amps: 160 = 16 A."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from stations.energy.allocator import (
    Allocation,
    Connector,
    Id,
    InvalidInput,
    Node,
    Overload,
    Problem,
    Rule,
    Session,
    SessionState,
    Strategy,
    TopologyError,
    allocate,
    safe_shares,
    to_amps,
    to_deci_amps,
)

NOW = dt.datetime(2026, 3, 1, 18, 0, tzinfo=dt.UTC)
WINDOW = dt.timedelta(minutes=15)


def circuit(limit_da: int = 320, **fields: object) -> Node:
    return Node("circuit", phase_limits_da=(limit_da, limit_da, limit_da), **fields)  # type: ignore[arg-type]


def arrived(minutes_ago: int) -> dt.datetime:
    return NOW - dt.timedelta(minutes=minutes_ago)


def cars(
    count: int, *, rotation: str = "RST", node: str = "circuit", **fields: object
) -> tuple[list[Connector], list[Session]]:
    """``count`` connectors on ``node``, each with a session; session 0 arrived first."""
    connectors = [Connector(f"c{n}", node, rotation) for n in range(count)]
    sessions = [
        Session(f"s{n}", f"c{n}", arrived(60 - n), **fields)  # type: ignore[arg-type]
        for n in range(count)
    ]
    return connectors, sessions


def currents(allocation: Allocation) -> dict[Id, int]:
    return {row.session_id: row.current_da for row in allocation.sessions}


def run(
    nodes: list[Node], connectors: list[Connector], sessions: list[Session], **fields: object
) -> Allocation:
    return allocate(Problem(nodes, connectors, sessions, NOW, **fields))  # type: ignore[arg-type]


# -- equal share --------------------------------------------------------------------------------


def test_three_cars_share_a_32_amp_circuit_to_the_tenth_of_an_ampere() -> None:
    connectors, sessions = cars(3, phases=3)
    allocation = run([circuit(320)], connectors, sessions)

    # 32 A / 3 = 10.66 A: 10.6 A each, the two tenths left go to the earliest arrivals.
    assert currents(allocation) == {"s0": 107, "s1": 107, "s2": 106}
    assert allocation.for_node("circuit").phase_load_da == (320, 320, 320)
    row = allocation.for_session("s2")
    assert (row.rule, row.node_id, row.phase, row.paused) == (Rule.PHASE_LIMIT, "circuit", 1, False)
    assert row.number_phases == 3
    assert row.current_a == Decimal("10.6")
    assert row.explanation == "10.6 A: node circuit L1 is full"


def test_a_car_at_its_own_maximum_leaves_the_rest_to_the_others() -> None:
    connectors, sessions = cars(3, phases=3)
    sessions[0] = Session("s0", "c0", arrived(60), phases=3, max_da=80)
    allocation = run([circuit(320)], connectors, sessions)

    assert currents(allocation) == {"s0": 80, "s1": 120, "s2": 120}
    assert allocation.for_session("s0").rule is Rule.VEHICLE_MAX
    assert allocation.for_session("s0").explanation == "8 A: the vehicle's own maximum"


def test_a_short_circuit_pauses_the_latest_car_instead_of_giving_everyone_5_amps() -> None:
    connectors, sessions = cars(3, phases=3)
    allocation = run([circuit(160)], connectors, sessions)

    # 16 A for three cars would be 5.3 A each, under the 6 A minimum: the latest pauses.
    assert currents(allocation) == {"s0": 80, "s1": 80, "s2": 0}
    paused = allocation.for_session("s2")
    assert paused.paused
    assert (paused.rule, paused.node_id, paused.phase) == (Rule.PHASE_LIMIT, "circuit", 1)
    assert paused.explanation == "paused: no room for the minimum on node circuit L1"
    assert paused.state == SessionState(running=False, since=NOW)


def test_the_lowest_tier_pauses_first_even_when_it_arrived_first() -> None:
    connectors, sessions = cars(3, phases=3)
    sessions = [
        Session("s0", "c0", arrived(60), tier=0, phases=3),
        Session("s1", "c1", arrived(50), tier=1, phases=3),
        Session("s2", "c2", arrived(40), tier=1, phases=3),
    ]
    allocation = run([circuit(160)], connectors, sessions)

    assert currents(allocation) == {"s0": 0, "s1": 80, "s2": 80}


# -- phases and rotation ------------------------------------------------------------------------


def test_single_phase_cars_are_counted_on_the_phase_their_rotation_wires_them_to() -> None:
    connectors = [
        Connector("c0", "circuit", "RST"),  # connector L1 -> L1
        Connector("c1", "circuit", "STR"),  # connector L1 -> L2
        Connector("c2", "circuit", "TRS"),  # connector L1 -> L3
    ]
    sessions = [Session(f"s{n}", f"c{n}", arrived(60 - n), phases=1) for n in range(3)]
    allocation = run([circuit(160)], connectors, sessions)

    # Each on its own phase: all three get the full 16 A.
    assert currents(allocation) == {"s0": 160, "s1": 160, "s2": 160}
    assert [row.counted_phases for row in allocation.sessions] == [
        frozenset({1}),
        frozenset({2}),
        frozenset({3}),
    ]
    assert allocation.for_node("circuit").phase_load_da == (160, 160, 160)


def test_two_single_phase_cars_on_the_same_phase_share_it() -> None:
    connectors = [Connector("c0", "circuit", "RST"), Connector("c1", "circuit", "RTS")]
    sessions = [Session(f"s{n}", f"c{n}", arrived(60 - n), phases=1) for n in range(2)]
    allocation = run([circuit(160)], connectors, sessions)

    assert currents(allocation) == {"s0": 80, "s1": 80}
    assert allocation.for_node("circuit").phase_load_da == (160, 0, 0)


def test_an_unknown_rotation_or_phase_count_is_counted_on_all_three_phases() -> None:
    connectors = [Connector("c0", "circuit", "Unknown"), Connector("c1", "circuit", "STR")]
    sessions = [
        Session("s0", "c0", arrived(60), phases=1),  # wired to L1, L2 or L3: we do not know
        Session("s1", "c1", arrived(50), phases=None),  # may be three-phase
    ]
    allocation = run([circuit(160)], connectors, sessions)

    assert allocation.for_session("s0").counted_phases == frozenset({1, 2, 3})
    assert allocation.for_session("s0").number_phases == 1
    assert allocation.for_session("s1").counted_phases == frozenset({1, 2, 3})
    assert allocation.for_session("s1").number_phases == 3
    assert currents(allocation) == {"s0": 80, "s1": 80}


def test_a_single_phase_circuit_counts_a_three_phase_car_on_its_one_phase() -> None:
    site = Node("site", phase_limits_da=(320, 320, 320))
    l2_circuit = Node("l2", "site", phase_limits_da=(None, 200, None), phases=frozenset({2}))
    connectors = [Connector("c0", "l2", "SRT")]  # connector L1 -> L2
    sessions = [Session("s0", "c0", arrived(10), phases=3)]
    allocation = run([site, l2_circuit], connectors, sessions)

    row = allocation.for_session("s0")
    assert (row.current_da, row.number_phases, row.counted_phases) == (200, 1, frozenset({2}))
    assert allocation.for_node("site").phase_load_da == (0, 200, 0)


# -- limits -------------------------------------------------------------------------------------


def test_a_power_limit_caps_the_sum_of_the_phase_currents() -> None:
    # 11 kW at 230 V: 47.8 A over the three phases, so 15.9 A per phase for one car.
    node = Node("circuit", power_limit_w=11_000)
    connectors, sessions = cars(1, phases=3)
    allocation = run([node], connectors, sessions)

    row = allocation.for_session("s0")
    assert (row.current_da, row.rule, row.node_id, row.phase) == (
        159,
        Rule.POWER_LIMIT,
        "circuit",
        None,
    )
    assert allocation.for_node("circuit").power_load_w == 10_971
    assert row.explanation == "15.9 A: node circuit power is full"


def test_the_safety_margin_comes_off_every_limit() -> None:
    connectors, sessions = cars(1, phases=3)
    allocation = run([circuit(320, safety_margin_pct=Decimal("10"))], connectors, sessions)

    assert currents(allocation) == {"s0": 288}
    assert allocation.for_node("circuit").phase_limit_da == (288, 288, 288)


def test_unmanaged_load_behind_a_node_is_counted_on_its_phases() -> None:
    site = Node("site", phase_limits_da=(400, 400, 400))
    kitchen = Node("kitchen", "site", unmanaged_da=(150, 0, 0))
    chargers = Node("chargers", "site")
    connectors = [Connector("c0", "chargers", "RST")]
    sessions = [Session("s0", "c0", arrived(10), phases=3, max_da=320)]
    allocation = run([site, kitchen, chargers], connectors, sessions)

    # 40 A - 15 A of kitchen on L1 leaves 25 A: the three-phase car is bound by L1.
    row = allocation.for_session("s0")
    assert (row.current_da, row.node_id, row.phase) == (250, "site", 1)
    assert allocation.for_node("site").phase_load_da == (400, 250, 250)


def test_a_circuit_and_its_parent_each_bind_their_own_cars() -> None:
    site = Node("site", phase_limits_da=(400, 400, 400))
    small = Node("small", "site", phase_limits_da=(100, 100, 100))
    big = Node("big", "site", phase_limits_da=(400, 400, 400))
    connectors = [
        Connector("c0", "small", "RST"),
        Connector("c1", "big", "RST"),
        Connector("c2", "big", "RST"),
    ]
    sessions = [Session(f"s{n}", f"c{n}", arrived(60 - n), phases=3) for n in range(3)]
    allocation = run([site, small, big], connectors, sessions)

    # small holds s0 at 10 A; the 30 A left at the site go to s1 and s2.
    assert currents(allocation) == {"s0": 100, "s1": 150, "s2": 150}
    assert allocation.for_session("s0").node_id == "small"
    assert allocation.for_session("s1").node_id == "site"


# -- strategies ---------------------------------------------------------------------------------


def test_priority_serves_the_higher_tier_to_its_maximum_first() -> None:
    connectors, _ = cars(3)
    sessions = [
        Session("fleet", "c0", arrived(10), tier=2, phases=3, max_da=200),
        Session("guest1", "c1", arrived(60), tier=0, phases=3),
        Session("guest2", "c2", arrived(50), tier=0, phases=3),
    ]
    allocation = run([circuit(400)], connectors, sessions, strategy=Strategy.PRIORITY)

    assert currents(allocation) == {"fleet": 200, "guest1": 100, "guest2": 100}


def test_first_come_first_served_fills_the_earliest_car_first() -> None:
    connectors, sessions = cars(3, phases=3, max_da=160)
    allocation = run([circuit(320)], connectors, sessions, strategy=Strategy.FIRST_COME)

    # Everyone who fits gets the minimum; then s0 goes to its 16 A, s1 takes what remains.
    assert currents(allocation) == {"s0": 160, "s1": 100, "s2": 60}


def test_departure_aware_gives_the_car_with_least_slack_what_it_needs() -> None:
    connectors, _ = cars(2)
    sessions = [
        # 11 kWh in 1 h on three phases at 230 V: 15.95 A, so 16 A.
        Session(
            "leaves",
            "c0",
            arrived(5),
            phases=3,
            departure=NOW + dt.timedelta(hours=1),
            energy_wanted_wh=11_000,
        ),
        Session(
            "stays",
            "c1",
            arrived(60),
            phases=3,
            departure=NOW + dt.timedelta(hours=10),
            energy_wanted_wh=11_000,
        ),
    ]
    allocation = run([circuit(220)], connectors, sessions, strategy=Strategy.DEPARTURE)

    assert currents(allocation) == {"leaves": 160, "stays": 60}
    equal = run([circuit(220)], connectors, sessions)
    assert currents(equal) == {"leaves": 110, "stays": 110}


# -- the fairness rotation ----------------------------------------------------------------------


def test_a_paused_car_gets_its_turn_after_the_fairness_window() -> None:
    connectors, sessions = cars(3, phases=3)
    first = run([circuit(160)], connectors, sessions, fairness_window=WINDOW)
    assert currents(first) == {"s0": 80, "s1": 80, "s2": 0}
    previous = {row.session_id: row.state for row in first.sessions}

    # Within the window nothing changes.
    within = allocate(
        Problem(
            [circuit(160)],
            connectors,
            sessions,
            NOW + WINDOW / 2,
            fairness_window=WINDOW,
            previous=previous,
        )
    )
    assert currents(within) == {"s0": 80, "s1": 80, "s2": 0}

    # After it, s2 (waiting since NOW) goes before s0 and s1, whose turns ended at NOW + WINDOW;
    # s0 keeps its place over s1 by arrival.
    later = NOW + WINDOW
    after = allocate(
        Problem(
            [circuit(160)], connectors, sessions, later, fairness_window=WINDOW, previous=previous
        )
    )
    assert currents(after) == {"s0": 80, "s1": 0, "s2": 80}
    assert after.for_session("s2").state == SessionState(running=True, since=later)
    assert after.for_session("s1").state == SessionState(running=False, since=later)
    assert after.for_session("s0").state == previous["s0"]


# -- fixed loads and the fail-safe --------------------------------------------------------------


def test_an_offline_station_is_counted_at_its_last_allocation() -> None:
    connectors, sessions = cars(2, phases=3)
    sessions[0] = Session("s0", "c0", arrived(60), phases=3, fixed_da=200)
    allocation = run([circuit(320)], connectors, sessions)

    assert currents(allocation) == {"s0": 200, "s1": 120}
    row = allocation.for_session("s0")
    assert (row.rule, row.paused) == (Rule.FIXED, False)


def test_a_fixed_station_is_counted_at_no_less_than_it_measures() -> None:
    connectors, sessions = cars(2, phases=3)
    sessions[0] = Session("s0", "c0", arrived(60), phases=3, fixed_da=100, measured_da=(50, 210, 0))
    allocation = run([circuit(320)], connectors, sessions)

    assert currents(allocation) == {"s0": 210, "s1": 110}


def test_fixed_loads_over_a_limit_are_reported_and_nothing_managed_runs_behind_it() -> None:
    site = Node("site", phase_limits_da=(1000, 1000, 1000))
    full = Node("full", "site", phase_limits_da=(160, 160, 160), unmanaged_da=(100, 0, 0))
    free = Node("free", "site")
    connectors = [
        Connector("c0", "full", "RST"),
        Connector("c1", "full", "RST"),
        Connector("c2", "free", "RST"),
    ]
    sessions = [
        Session("offline", "c0", arrived(60), phases=3, fixed_da=100),
        Session("waiting", "c1", arrived(50), phases=3),
        Session("elsewhere", "c2", arrived(40), phases=3),
    ]
    allocation = run([site, full, free], connectors, sessions)

    assert allocation.overloads == (Overload("full", 1, 40),)
    assert currents(allocation) == {"offline": 100, "waiting": 0, "elsewhere": 320}
    assert allocation.for_session("waiting").paused


# -- bad input ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("nodes", "message"),
    [
        ([Node("a", "b"), Node("b", "a")], "node a: its parents form a cycle"),
        ([Node("a", "a")], "node a: its parents form a cycle"),
        ([Node("a", "nowhere")], "node a: unknown parent nowhere"),
        (
            [Node("a", phases=frozenset({2})), Node("b", "a", phases=frozenset({1, 2}))],
            "node b: feeds a phase its parent a lacks",
        ),
        ([Node("a", phases=frozenset())], "node a: phases must be a non-empty subset of 1, 2, 3"),
    ],
)
def test_a_malformed_tree_is_refused(nodes: list[Node], message: str) -> None:
    with pytest.raises(TopologyError, match=message):
        allocate(Problem(nodes, [], [], NOW))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"min_da": 100, "max_da": 60}, "session s0: needs 0 <= minimum <= maximum"),
        ({"phases": 4}, "session s0: a vehicle uses 1, 2 or 3 phases"),
        ({"connector_id": "nowhere"}, "session s0: unknown connector nowhere"),
        ({"fixed_da": -1}, "session s0: a negative fixed current"),
    ],
)
def test_a_session_that_cannot_be_allocated_is_refused(
    change: dict[str, object], message: str
) -> None:
    fields: dict[str, object] = {"id": "s0", "connector_id": "c0", "arrival": NOW, **change}
    session = Session(**fields)  # type: ignore[arg-type]
    with pytest.raises(InvalidInput, match=message):
        allocate(Problem([circuit()], [Connector("c0", "circuit")], [session], NOW))


def test_two_sessions_on_one_connector_and_duplicate_ids_are_refused() -> None:
    connectors = [Connector("c0", "circuit")]
    twice = [Session("s0", "c0", NOW), Session("s1", "c0", NOW)]
    with pytest.raises(InvalidInput, match="connector c0: two sessions at once"):
        allocate(Problem([circuit()], connectors, twice, NOW))
    with pytest.raises(InvalidInput, match="node circuit: duplicate id"):
        allocate(Problem([circuit(), circuit()], [], [], NOW))
    with pytest.raises(InvalidInput, match="connector c0: unknown rotation XYZ"):
        allocate(Problem([circuit()], [Connector("c0", "circuit", "XYZ")], [], NOW))


def test_deci_amps_round_limits_down() -> None:
    assert to_deci_amps("15.99") == 159
    assert to_deci_amps(16) == 160
    assert to_amps(159) == Decimal("15.9")


def test_the_safe_share_is_what_every_connector_may_draw_at_once() -> None:
    site = Node("site", phase_limits_da=(630, 630, 630), unmanaged_da=(30, 30, 30))
    small = Node("small", "site", phase_limits_da=(100, 100, 100))
    connectors = [
        Connector("c0", "small", "RST"),
        Connector("c1", "site", "Unknown"),
        Connector("c2", "site", "STR"),
        Connector("c3", "site", "RST"),
    ]

    # small caps c0 at 10 A; the site's 60 A after 3 A unmanaged leave 50 A for three others.
    assert safe_shares([site, small], connectors) == {"c0": 100, "c1": 167, "c2": 167, "c3": 166}
    assert safe_shares([site, small], connectors, max_da=60) == {
        "c0": 60,
        "c1": 60,
        "c2": 60,
        "c3": 60,
    }

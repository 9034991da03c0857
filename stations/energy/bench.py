"""The allocator's speed: full reallocations of one large site, timed. Pure Python.

:func:`bench_site` builds the issue's figure (one site, 500 connectors behind 5 circuits, a
session on every connector: a mix of one- and three-phase vehicles, rotations, tiers, some with
a departure) and :func:`time_reallocations` times ``runs`` full calls of
:func:`~stations.energy.allocator.allocate` on it.
"""

from __future__ import annotations

import datetime as dt
import statistics
import time
from dataclasses import dataclass
from decimal import Decimal

from stations.energy.allocator import (
    ROTATIONS,
    Connector,
    Node,
    Problem,
    Session,
    Strategy,
    allocate,
)

NOW = dt.datetime(2026, 1, 1, 12, tzinfo=dt.UTC)


@dataclass(frozen=True)
class BenchResult:
    connectors: int
    circuits: int
    runs: int
    p50_ms: float  # wall clock
    max_ms: float
    cpu_p50_ms: float  # this process's CPU time: what the machine's other load does not inflate
    cpu_max_ms: float
    paused: int  # sessions paused in the allocation (the site is deliberately short)


def bench_site(
    connectors: int = 500, circuits: int = 5, strategy: Strategy = Strategy.EQUAL_SHARE
) -> Problem:
    """A site whose connection cannot feed every connector at full current."""
    per_circuit = max(1, connectors // circuits)
    nodes = [Node("site", phase_limits_da=(per_circuit * circuits * 25,) * 3)]
    for number in range(circuits):
        nodes.append(
            Node(
                f"circuit-{number}",
                "site",
                phase_limits_da=(per_circuit * 110,) * 3,
                power_limit_w=per_circuit * 230 * 20,
                safety_margin_pct=Decimal((number % 3) * 2),
                unmanaged_da=(number * 10, 0, number * 5),
            )
        )
    rotations = [*ROTATIONS, "Unknown"]
    connector_rows: list[Connector] = []
    sessions: list[Session] = []
    for number in range(connectors):
        connector_id = f"connector-{number}"
        circuit = f"circuit-{number % circuits}"
        connector_rows.append(Connector(connector_id, circuit, rotations[number % len(rotations)]))
        departs = number % 4 == 0
        sessions.append(
            Session(
                id=f"session-{number}",
                connector_id=connector_id,
                arrival=NOW - dt.timedelta(seconds=number * 7),
                tier=number % 3,
                min_da=60,
                max_da=(160, 320, 130)[number % 3],
                phases=(1, 3, None)[number % 3],
                departure=NOW + dt.timedelta(hours=1 + number % 5) if departs else None,
                energy_wanted_wh=5000 + number * 10 if departs else None,
            )
        )
    return Problem(nodes, connector_rows, sessions, NOW, strategy)


def time_reallocations(
    connectors: int = 500,
    circuits: int = 5,
    runs: int = 20,
    strategy: Strategy = Strategy.EQUAL_SHARE,
) -> BenchResult:
    problem = bench_site(connectors, circuits, strategy)
    durations: list[float] = []
    cpu_durations: list[float] = []
    paused = 0
    for _ in range(runs):
        started, cpu_started = time.perf_counter(), time.process_time()
        allocation = allocate(problem)
        durations.append((time.perf_counter() - started) * 1000)
        cpu_durations.append((time.process_time() - cpu_started) * 1000)
        paused = sum(1 for session in allocation.sessions if session.paused)
    return BenchResult(
        connectors=connectors,
        circuits=circuits,
        runs=runs,
        p50_ms=statistics.median(durations),
        max_ms=max(durations),
        cpu_p50_ms=statistics.median(cpu_durations),
        cpu_max_ms=max(cpu_durations),
        paused=paused,
    )

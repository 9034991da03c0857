"""The allocator benchmark at a tiny size (the full figure: `manage.py energy_bench`)."""

from __future__ import annotations

from stations.energy.allocator import allocate
from stations.energy.bench import bench_site, time_reallocations


def test_the_bench_site_puts_connectors_behind_circuits_and_is_short_of_capacity() -> None:
    problem = bench_site(connectors=20, circuits=2)

    assert len(problem.connectors) == len(problem.sessions) == 20
    assert {node.parent_id for node in problem.nodes} == {None, "site"}
    allocation = allocate(problem)
    assert any(row.paused for row in allocation.sessions)
    for load in allocation.nodes:
        for current, limit in zip(load.phase_load_da, load.phase_limit_da, strict=True):
            assert limit is None or current <= limit


def test_time_reallocations_reports_the_runs() -> None:
    result = time_reallocations(connectors=20, circuits=2, runs=3)

    assert (result.connectors, result.circuits, result.runs) == (20, 2, 3)
    assert 0 < result.p50_ms <= result.max_ms
    assert 0 < result.cpu_p50_ms <= result.cpu_max_ms
    assert result.paused > 0

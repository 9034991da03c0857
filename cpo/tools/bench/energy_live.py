"""Energy management measured live: the back office as `python -m cpo.run` starts it (daphne,
a Celery worker with beat), simulated 1.6 and 2.0.1 stations that obey their profiles, and
sessions arriving and leaving on a site whose circuits cannot feed every car at once.

Two figures (README "Energy management"):
1. From a session start to every profile that the start changed answered by its station, per
   arrival (the arriving car's TxProfile and the decreases sent before it).
2. The highest load seen on any node, per phase, as a share of its limit, sampled every 50 ms
   (every "sampled second" has twenty samples), from what the simulated vehicles draw and from
   what their profiles allow.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from cpo.tools.bench.data import BENCH_TAG, fleet_stations_create
from cpo.tools.bench.energy import ROTATIONS, energy_site_create, node_sample, profile_calls
from cpo.tools.bench.runner import BackOffice, BenchConfig, percentile
from cpo.tools.simulator import ENERGY, V16, V201, Behaviour, SimulatedStation, StationSpec, Stats


@dataclass(frozen=True)
class LiveResult:
    stations: int
    connectors: int
    circuits: int
    duration_s: float
    arrivals: int
    departures: int
    latency_p50_s: float | None
    latency_max_s: float | None
    missing: int  # arrivals whose own profile never came
    samples: int
    worst_drawn_pct: float  # of any node's limit, any phase
    worst_limited_pct: float


async def _drive(
    url: str,
    specs: list[StationSpec],
    circuit_of: dict[str, int],
    limits: dict[int, float],
    connection_limit: float,
    duration: float,
    gap: float,
) -> dict[str, Any]:
    behaviour = Behaviour(
        heartbeats=False,
        session_gap=None,
        meter_interval=10.0,
        reconnect_min=0.5,
        response_timeout=30,
        id_tag=BENCH_TAG,
        vehicle_phases=(1, 3, 3),
        vehicle_max_a=32.0,
        measurands=(ENERGY, "Power.Active.Import", "Current.Import"),
    )
    stats = Stats()
    stations = [SimulatedStation(s, url, behaviour, stats, bind=False) for s in specs]
    rotation = {s.identity: ROTATIONS[n % 3] for n, s in enumerate(specs)}
    for station in stations:
        station.calls_log = []
    tasks = [asyncio.create_task(station.run()) for station in stations]
    deadline = time.monotonic() + 60
    while not all(s.booted.is_set() for s in stations):
        if time.monotonic() > deadline:
            raise RuntimeError("the stations did not boot in 60 s")
        await asyncio.sleep(0.1)
    await asyncio.sleep(3.0)  # their default profiles
    worst = {"drawn": 0.0, "limited": 0.0}
    count = 0
    running = True

    async def sample() -> None:
        nonlocal count
        by_circuit: dict[int, list[SimulatedStation]] = {}
        for station in stations:
            by_circuit.setdefault(circuit_of[station.spec.identity], []).append(station)
        while running:
            total = node_sample(stations, rotation)
            for key in ("drawn", "limited"):
                worst[key] = max(worst[key], max(getattr(total, key)) / connection_limit)
            for circuit, members in by_circuit.items():
                part = node_sample(members, rotation)
                for key in ("drawn", "limited"):
                    worst[key] = max(worst[key], max(getattr(part, key)) / limits[circuit])
            count += 1
            await asyncio.sleep(0.05)

    sampler = asyncio.create_task(sample())
    arrivals: list[tuple[float, SimulatedStation, Any]] = []
    departures = 0
    rng = random.Random(7)
    end = time.monotonic() + duration
    while time.monotonic() < end:
        free = [
            (s, c)
            for s in stations
            for c in s.connectors
            if c.session is None and s.online.is_set()
        ]
        busy = [(s, c) for s in stations for c in s.connectors if c.session is not None]
        if busy and (not free or rng.random() < len(busy) / (len(busy) + len(free)) * 0.6):
            station, connector = rng.choice(busy)
            await station.stop_session(connector, with_status=True)
            departures += 1
        elif free:
            station, connector = rng.choice(free)
            started = time.monotonic()
            if await station.start_session(connector, with_status=True):
                arrivals.append((started, station, connector))
        await asyncio.sleep(gap)
    await asyncio.sleep(3.0)
    running = False
    await sampler
    # Latency per arrival: until the last profile received between it and the next event
    # was answered; it must include the arriving connector's own TxProfile.
    calls = [
        (p["received"], p["answered"], s, p)
        for s in stations
        for p in profile_calls(s)
        if p["purpose"] == "TxProfile"
    ]
    latencies: list[float] = []
    missing = 0
    for index, (started, station, _) in enumerate(arrivals):
        until = arrivals[index + 1][0] if index + 1 < len(arrivals) else started + 10
        window = [c for c in calls if started <= c[0] < until]
        own = [c for c in window if c[2] is station]
        if not own:
            missing += 1
            continue
        latencies.append(max(c[1] for c in window) - started)
    for station in stations:
        await station.stop()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    latencies.sort()
    return {
        "arrivals": len(arrivals),
        "departures": departures,
        "latencies": latencies,
        "missing": missing,
        "samples": count,
        "worst": worst,
    }


def energy_live_bench(
    *,
    stations: int = 12,
    circuits: int = 2,
    circuit_limit_a: int = 40,
    connection_limit_a: int = 63,
    duration: float = 120.0,
    gap: float = 2.0,
    work_dir: Path | None = None,
    log: Any = print,
) -> LiveResult:
    config = BenchConfig()
    if work_dir is not None:
        config.work_dir = work_dir
    office = BackOffice(config)
    office.prepare()
    specs = [
        StationSpec(f"EBENCH-{n:03d}", V16 if n % 2 else V201, f"pw-ebench-{n}", connectors=2)
        for n in range(stations)
    ]
    fleet_stations_create(specs=specs)
    layout = energy_site_create(
        identities=[s.identity for s in specs],
        circuits=circuits,
        circuit_limit_a=Decimal(circuit_limit_a),
        connection_limit_a=Decimal(connection_limit_a),
        rotate=True,
        phases=3,
    )
    limits = dict.fromkeys(layout.circuit_ids, float(circuit_limit_a))
    log(
        f"{stations} stations ({stations * 2} connectors) on {circuits} circuits of "
        f"{circuit_limit_a} A under a {connection_limit_a} A connection, {duration:.0f} s"
    )
    try:
        with office.running() as server:
            data = asyncio.run(
                _drive(
                    server.url,
                    specs,
                    layout.circuit_of,
                    limits,
                    float(connection_limit_a),
                    duration,
                    gap,
                )
            )
    finally:
        office.close()
    latencies = data["latencies"]
    return LiveResult(
        stations=stations,
        connectors=stations * 2,
        circuits=circuits,
        duration_s=duration,
        arrivals=data["arrivals"],
        departures=data["departures"],
        latency_p50_s=percentile(latencies, 0.5),
        latency_max_s=latencies[-1] if latencies else None,
        missing=data["missing"],
        samples=data["samples"],
        worst_drawn_pct=round(100 * data["worst"]["drawn"], 1),
        worst_limited_pct=round(100 * data["worst"]["limited"], 1),
    )

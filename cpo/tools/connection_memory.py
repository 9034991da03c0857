"""Measure the memory one idle OCPP connection costs daphne.

    .venv/bin/python -m cpo.tools.connection_memory --stations 1000 [--trace]

Starts daphne as `python -m cpo.run` does (`cpo.run.daphne_options`) on a free loopback port,
against the database and Redis of the environment (DATABASE_URL / REDIS_URL, else the embedded
defaults of the data directory), creates the stations it needs (`MEM-<n>`, with passwords, as
the benchmark does), boots one of them first so that lazy imports and caches do not count, then
connects `--stations` simulated stations (`cpo.tools.simulator`, 1.6 and 2.0.1 in turn), each
booting and reporting its connectors, then idling. It prints daphne's resident set size (RSS)
before and after, and the growth per connection.

With `--trace`, daphne runs with tracemalloc on (CPO_TRACEMALLOC, see cpo/asgi.py): a
snapshot is taken before and after the fleet connects, and the allocations that grew most,
per source line, are printed per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

SEED = "connection-memory"


@dataclass
class Measured:
    stations: int
    online: int
    rss_before_kib: float
    rss_after_kib: float
    # What `probe` returned before and after the fleet connected (e.g. Redis client counts).
    probed: tuple[Any, Any] = (None, None)

    @property
    def kib_per_connection(self) -> float:
        return (self.rss_after_kib - self.rss_before_kib) / max(1, self.online)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stations": self.stations,
            "online": self.online,
            "rss_before_mib": round(self.rss_before_kib / 1024, 1),
            "rss_after_mib": round(self.rss_after_kib / 1024, 1),
            "kib_per_connection": round(self.kib_per_connection, 1),
        }


def rss_kib(pid: int) -> float:
    return psutil.Process(pid).memory_info().rss / 1024


async def _connect_all(url: str, specs: list[Any], timeout: float) -> list[Any]:
    from cpo.tools.simulator import Behaviour, SimulatedStation, Stats

    behaviour = Behaviour(heartbeats=False, session_gap=None, meter_interval=None, open_timeout=60)
    stats = Stats()
    stations = [SimulatedStation(spec, url, behaviour, stats) for spec in specs]
    for station in stations:
        station._tasks.append(asyncio.create_task(station.run()))
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(
            asyncio.gather(*(station.booted.wait() for station in stations)), timeout
        )
    return stations


async def _close_all(stations: list[Any]) -> None:
    await asyncio.gather(*(station.stop() for station in stations), return_exceptions=True)


def _snapshot(process: subprocess.Popen[bytes], path: Path) -> tracemalloc.Snapshot:
    path.unlink(missing_ok=True)
    process.send_signal(signal.SIGUSR2)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if path.exists() and path.with_suffix(".done").exists():
            path.with_suffix(".done").unlink()
            return tracemalloc.Snapshot.load(str(path))
        time.sleep(0.2)
    raise RuntimeError("daphne wrote no tracemalloc snapshot (is CPO_TRACEMALLOC set?)")


def measure(
    *,
    stations: int,
    env: dict[str, str],
    work_dir: Path,
    trace: bool = False,
    top: int = 25,
    settle: float = 3.0,
    extra_args: list[str] | None = None,
    timeout: float = 300.0,
    probe: Callable[[], Any] | None = None,
) -> tuple[Measured, list[str]]:
    """Start daphne, connect `stations` idle stations, and return the RSS growth (and with
    `trace`, the top allocation lines per connection). The stations must exist already."""
    from cpo.run import daphne_options
    from cpo.tools.bench.runner import free_port, wait_for_port
    from cpo.tools.simulator import V16, V201, fleet_specs

    specs = fleet_specs(
        prefix="MEM-", count=stations + 1, protocols=[V16, V201], connectors=2, seed=SEED
    )
    port = free_port()
    child_env = env | {"CPO_NODE_NAME": f"memory-{port}", "PYTHONUNBUFFERED": "1"}
    snapshot_path = work_dir / f"tracemalloc-{port}.snap"
    if trace:
        child_env |= {"CPO_TRACEMALLOC": str(snapshot_path)}
    log = work_dir / f"daphne-memory-{port}.log"
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                str(Path(sys.executable).parent / "daphne"),
                *daphne_options(host="127.0.0.1", port=port),
                *(extra_args or []),
                "cpo.asgi:application",
            ],
            env=child_env,
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            cwd=Path(__file__).resolve().parents[2],
        )
    lines: list[str] = []
    try:
        wait_for_port(port, process)
        url = f"ws://127.0.0.1:{port}/ocpp"

        async def run() -> Measured:
            warm = await _connect_all(url, specs[:1], 60)
            await _close_all(warm)
            await asyncio.sleep(settle)
            before_snap = _snapshot(process, snapshot_path) if trace else None
            before = rss_kib(process.pid)
            probed_before = probe() if probe else None
            fleet = await _connect_all(url, specs[1:], timeout)
            online = sum(1 for s in fleet if s.booted.is_set() and s.online.is_set())
            await asyncio.sleep(settle)
            after = rss_kib(process.pid)
            probed_after = probe() if probe else None
            if before_snap is not None:
                after_snap = _snapshot(process, snapshot_path)
                stats = after_snap.compare_to(before_snap, "lineno")
                for stat in stats[:top]:
                    frame = stat.traceback[0]
                    lines.append(
                        f"{stat.size_diff / max(1, online):9.0f} B/conn "
                        f"{stat.count_diff / max(1, online):6.1f} blocks/conn  "
                        f"{frame.filename}:{frame.lineno}"
                    )
                total = sum(stat.size_diff for stat in stats)
                lines.append(f"{total / max(1, online):9.0f} B/conn traced in all")
                if env.get("CPO_TRACEMALLOC_FRAMES"):
                    for stat in after_snap.compare_to(before_snap, "traceback")[:12]:
                        lines.append(f"--- {stat.size_diff / max(1, online):.0f} B/conn")
                        lines.extend(stat.traceback.format()[-16:])
            await _close_all(fleet)
            return Measured(stations, online, before, after, (probed_before, probed_after))

        measured = asyncio.run(run())
    finally:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(20)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        snapshot_path.unlink(missing_ok=True)
    return measured, lines


def stations_prepare(count: int) -> None:
    from cpo.tools.bench.data import fleet_stations_create
    from cpo.tools.simulator import V16, V201, fleet_specs

    fleet_stations_create(
        specs=fleet_specs(
            prefix="MEM-", count=count + 1, protocols=[V16, V201], connectors=2, seed=SEED
        )
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stations", type=int, default=1000)
    parser.add_argument("--trace", action="store_true", help="tracemalloc diff inside daphne")
    parser.add_argument("--top", type=int, default=25)
    parser.add_argument("daphne_args", nargs="*", help="extra daphne arguments (after --)")
    args = parser.parse_args()

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpo.settings")
    import django

    django.setup()
    from django.conf import settings
    from django.db import connection

    from cpo.tools.simulator import raise_open_files_limit

    raise_open_files_limit()
    stations_prepare(args.stations)
    connection.close()
    work_dir = Path(settings.DATA_DIR)
    measured, lines = measure(
        stations=args.stations,
        env=dict(os.environ),
        work_dir=work_dir,
        trace=args.trace,
        top=args.top,
        extra_args=args.daphne_args,
    )
    print(json.dumps(measured.to_dict()))
    for line in lines:
        print(line)
    return 0


if __name__ == "__main__":
    sys.exit(main())

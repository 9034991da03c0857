"""The load benchmark: the back office in its production shape against the Python ceiling.

One run measures, with the same simulated fleet:
1. a boot storm against the back office: N stations connect, boot and report every connector
   at once; time until all are accepted, failed handshakes, Boot latency, memory per
   connection, and the rows stored;
2. a steady state of mixed traffic (about 60% heartbeat/status, 30% meter values, 10%
   transaction messages) at a target rate: achieved messages/s, latency from when each
   message was due on the schedule to its CALLRESULT (waiting behind the station's previous
   CALL counts), CPU per 1,000 messages of daphne, of the Celery worker, of PostgreSQL and
   Redis, of the back office in all and of the load generator, and every acknowledged
   transaction and meter value looked up in the database one by one;
3. the same storm and steady state against the ceiling (`cpo.tools.bench.ceiling`);
4. the table (cpo.tools.bench.report) and a JSON file with every figure.

The back office runs as `python -m cpo.run` runs it: daphne with a listen backlog of 4096 and
one Celery worker, on PostgreSQL and Redis when DATABASE_URL / REDIS_URL are set, otherwise on
the embedded defaults (a private Redis and a fresh SQLite file in the bench data directory).
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import math
import os
import platform
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import psutil
from django.conf import settings
from django.db import connection

from cpo.run import (
    Node,
    daphne_command,
    daphne_options,
    haproxy_binary,
    haproxy_config,
    haproxy_maxconn,
)
from cpo.tools.bench.data import BENCH_TAG as BENCH_ID_TAG
from cpo.tools.bench.data import (
    fleet_acknowledged_missing,
    fleet_rows_count,
    fleet_stations_create,
)
from cpo.tools.simulator import (
    V16,
    V201,
    Behaviour,
    Fleet,
    Mix,
    SimulatedStation,
    StationSpec,
    Stats,
    fleet_specs,
    percentile,
    raise_open_files_limit,
)

# Servers whose CPU is reported beside the back office's own (database, Redis).
DB_NAMES = ("postgres", "postgresql", "redis-server")
FULL = {"stations": 10_000, "rate": 1000.0, "duration": 600.0}
TARGETS = {
    "stations": 10_000,
    "kib_per_connection": 40,
    "storm_seconds": 30,
    "storm_failures": 0,
    "rate": 1000,
    "p99_ms": 50,
    "cpu_ratio": 2.0,
}


def _env_number(name: str, default: float) -> float:
    raw = os.environ.get(name, "").strip()
    return float(raw) if raw else default


@dataclass
class BenchConfig:
    # Defaults: about five minutes in all on a 2-core machine.
    stations: int = 2000
    rate: float = 300.0
    duration: float = 60.0
    ceiling_duration: float | None = None
    processes: int = 0
    protocols: list[str] = field(default_factory=lambda: [V16, V201])
    connectors: int = 2
    storm_timeout: float = 180.0
    prime_share: float = 0.2
    ceiling: bool = True
    full: bool = False
    # BENCH_NODES: daphne nodes behind HAProxy, as `NODES=N make run` starts them.
    nodes: int = 1
    work_dir: Path = field(default_factory=lambda: Path(settings.DATA_DIR) / "bench")
    out_dir: Path = field(default_factory=lambda: Path(settings.BASE_DIR) / "bench-results")

    @classmethod
    def from_env(cls) -> BenchConfig:
        """BENCH_FULL=1 selects the targets of the issue; BENCH_STATIONS, BENCH_RATE,
        BENCH_DURATION, BENCH_CEILING_DURATION, BENCH_PROCESSES and BENCH_NODES override
        single values."""
        config = cls()
        if os.environ.get("BENCH_FULL", "").strip() in ("1", "true", "yes"):
            config.full = True
            config.stations = int(FULL["stations"])
            config.rate = FULL["rate"]
            config.duration = FULL["duration"]
        config.stations = int(_env_number("BENCH_STATIONS", config.stations))
        config.rate = _env_number("BENCH_RATE", config.rate)
        config.duration = _env_number("BENCH_DURATION", config.duration)
        ceiling = os.environ.get("BENCH_CEILING_DURATION", "").strip()
        config.ceiling_duration = float(ceiling) if ceiling else None
        config.processes = int(_env_number("BENCH_PROCESSES", config.processes))
        config.nodes = max(1, int(_env_number("BENCH_NODES", config.nodes)))
        return config

    @property
    def worker_processes(self) -> int:
        # One client process per 2,500 stations (file descriptors, one event loop each), at
        # least two so that the client side is not the one bottleneck of a storm.
        return self.processes or max(2, math.ceil(self.stations / 2500))


# --- child processes ------------------------------------------------------------------------


def server_command(port: int, *, behind_proxy: bool = False) -> list[str]:
    """The ASGI server as `python -m cpo.run` starts it; BENCH_SERVER=uvicorn measures the
    alternative (README "OCPP": why daphne), with `pip install uvicorn` in the virtualenv."""
    if os.environ.get("BENCH_SERVER", "daphne") == "uvicorn":
        return [
            sys.executable,
            "-m",
            "uvicorn",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--backlog",
            "4096",
            "--ws",
            "websockets",
            "--lifespan",
            "off",
            "--no-access-log",
            "--timeout-graceful-shutdown",
            "15",
        ]
    return [
        *daphne_command(),
        # Exactly as `python -m cpo.run` serves the back office.
        *daphne_options(host="127.0.0.1", port=port, behind_proxy=behind_proxy),
        # BENCH_DAPHNE_ARGS measures a change to these arguments before it is made.
        *os.environ.get("BENCH_DAPHNE_ARGS", "").split(),
    ]


PR_SET_PDEATHSIG = 1


def _child_setup() -> None:
    """In each server process: the hard open-files limit, and death with the benchmark."""
    raise_open_files_limit()
    with contextlib.suppress(OSError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def _spawn(argv: list[str], env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(
            argv,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            cwd=settings.BASE_DIR,
            preexec_fn=_child_setup,  # noqa: PLW1509 - set before any thread exists
        )


def _stop(process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with code {process.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout:.0f}s")


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]
    helpers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    # With BENCH_NODES > 1: the other daphne nodes (their CPU and memory count as the server's).
    more_nodes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def pids(self) -> list[int]:
        return [self.process.pid] + [node.pid for node in self.more_nodes]


class BackOffice:
    """The back office as `python -m cpo.run` starts it, on its own data directory."""

    def __init__(self, config: BenchConfig):
        self.config = config
        self.work_dir = config.work_dir
        self.redis: subprocess.Popen[bytes] | None = None
        self.env: dict[str, str] = {}
        self.database = ""

    def prepare(self) -> None:
        """Point this process and the children at the bench database, then migrate it."""
        self.work_dir.mkdir(parents=True, exist_ok=True)
        env = dict(os.environ)
        env["DJANGO_SETTINGS_MODULE"] = "cpo.settings"
        env["CPO_DATA_DIR"] = str(self.work_dir)
        env["PYTHONUNBUFFERED"] = "1"
        env.setdefault("LOG_LEVEL", "WARNING")
        if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3"):
            path = self.work_dir / "bench.sqlite3"
            for suffix in ("", "-wal", "-shm"):
                Path(f"{path}{suffix}").unlink(missing_ok=True)
            env["CPO_SQLITE_PATH"] = str(path)
            connection.close()
            # The runner counts rows in the same fresh file the server writes.
            connection.settings_dict["NAME"] = str(path)
            self.database = f"sqlite3 {path}"
        else:
            db = settings.DATABASES["default"]
            self.database = f"postgresql {db['NAME']}@{db.get('HOST') or 'localhost'}"
        if settings.EMBEDDED_REDIS:
            from cpo.lib import embedded_redis

            self.redis = embedded_redis.start(self.work_dir)
            self.redis_url = f"embedded {self.work_dir / 'redis.sock'}"
        else:
            self.redis_url = settings.REDIS_URL
        self.env = env
        subprocess.run(
            [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
            env=env,
            cwd=settings.BASE_DIR,
            check=True,
        )

    def _daphne(self, port: int, *, behind_proxy: bool) -> subprocess.Popen[bytes]:
        return _spawn(
            [
                *server_command(port, behind_proxy=behind_proxy),
                os.environ.get("BENCH_ASGI_APP", "cpo.asgi:application"),
            ],
            self.env | {"CPO_NODE_NAME": f"bench-{port}"},
            self.work_dir / f"server-{port}.log",
        )

    @contextlib.contextmanager
    def running(self) -> Iterator[Server]:
        """One daphne, or with BENCH_NODES=N as `NODES=N make run` starts them: N daphne
        nodes behind HAProxy."""
        port = free_port()
        bin_dir = Path(sys.executable).parent
        nodes = self.config.nodes
        node_ports = [port] if nodes == 1 else [free_port() for _ in range(nodes)]
        daphnes = [self._daphne(p, behind_proxy=nodes > 1) for p in node_ports]
        daphne = daphnes[0]
        balancer: dict[str, subprocess.Popen[bytes]] = {}
        if nodes > 1:
            haproxy = haproxy_binary()
            if haproxy is None:
                raise RuntimeError("BENCH_NODES > 1 needs HAProxy: apt-get install haproxy")
            config = self.work_dir / "haproxy.cfg"
            config.write_text(
                haproxy_config(
                    host="127.0.0.1",
                    port=port,
                    nodes=[Node(f"bench-{p}", "127.0.0.1", p) for p in node_ports],
                    maxconn=haproxy_maxconn(),
                )
            )
            balancer["haproxy"] = _spawn(
                [haproxy, "-db", "-f", str(config)], self.env, self.work_dir / "haproxy.log"
            )
        worker = _spawn(
            [
                str(bin_dir / "celery"),
                "-A",
                "cpo",
                "worker",
                "--beat",
                "--loglevel",
                "WARNING",
                "--concurrency",
                self.env.get("CELERY_CONCURRENCY", "2"),
                "--schedule",
                str(self.work_dir / "celerybeat-schedule"),
                "--hostname",
                f"bench@{os.uname().nodename}-{port}",
            ],
            self.env,
            self.work_dir / "celery.log",
        )
        try:
            for node_port, node in zip(node_ports, daphnes, strict=True):
                wait_for_port(node_port, node)
            if nodes > 1:
                wait_for_port(port, balancer["haproxy"])
                time.sleep(3)  # HAProxy's checks see every node up (rise 2, inter 1 s)
            yield Server(
                "back office" if nodes == 1 else f"back office, {nodes} nodes",
                f"ws://127.0.0.1:{port}/ocpp",
                daphne,
                {"celery": worker, **balancer},
                more_nodes=daphnes[1:],
            )
        finally:
            for process in (*balancer.values(), *daphnes):
                _stop(process)
            _stop(worker, 30)

    def close(self) -> None:
        if self.redis is not None:
            from cpo.lib import embedded_redis

            embedded_redis.stop(self.redis)


@contextlib.contextmanager
def ceiling_running(work_dir: Path) -> Iterator[Server]:
    port = free_port()
    env = dict(os.environ) | {"PYTHONUNBUFFERED": "1"}
    process = _spawn(
        [sys.executable, "-m", "cpo.tools.bench.ceiling", "--port", str(port)],
        env,
        work_dir / "ceiling.log",
    )
    try:
        wait_for_port(port, process)
        yield Server("ceiling", f"ws://127.0.0.1:{port}/ocpp", process)
    finally:
        _stop(process)


# --- measuring ------------------------------------------------------------------------------


def _cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        with contextlib.suppress(psutil.Error):
            times = psutil.Process(pid).cpu_times()
            total += times.user + times.system
    return total


def _tree(pid: int) -> list[int]:
    with contextlib.suppress(psutil.Error):
        return [pid] + [p.pid for p in psutil.Process(pid).children(recursive=True)]
    return [pid]


def _named_cpu(names: tuple[str, ...]) -> dict[int, float]:
    """CPU seconds per process with one of these names (database and Redis servers)."""
    found = {}
    for process in psutil.process_iter(["name", "cpu_times"]):
        if process.info["name"] in names and process.info["cpu_times"] is not None:
            found[process.pid] = process.info["cpu_times"].user + process.info["cpu_times"].system
    return found


def _named_cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    # Backends that ended in between are lost either way; new ones count from zero.
    return sum(cpu - before.get(pid, 0.0) for pid, cpu in after.items())


def _rss(pid: int) -> int:
    return psutil.Process(pid).memory_info().rss


def _ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 2)


def _latency_summary(stats: Stats) -> dict[str, Any]:
    everything = stats.all_latencies()
    per_action = {}
    for action, values in sorted(stats.latencies.items()):
        ordered = sorted(values)
        per_action[action] = {
            "count": len(ordered),
            "p50_ms": _ms(percentile(ordered, 0.5)),
            "p99_ms": _ms(percentile(ordered, 0.99)),
        }
    return {
        "count": len(everything),
        "p50_ms": _ms(percentile(everything, 0.5)),
        "p95_ms": _ms(percentile(everything, 0.95)),
        "p99_ms": _ms(percentile(everything, 0.99)),
        "max_ms": _ms(everything[-1] if everything else None),
        "per_action": per_action,
    }


async def _warm_up(url: str, spec: StationSpec) -> None:
    """One connection before measuring, so lazy imports do not count as per-connection memory."""
    station = SimulatedStation(spec, url, Behaviour(heartbeats=False, session_gap=None), Stats())
    task = asyncio.create_task(station.run())
    try:
        await asyncio.wait_for(station.booted.wait(), 60)
    finally:
        await station.stop()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task


def _profile(server: Server, work_dir: Path, duration: float) -> tuple[Any, Path] | None:
    """With BENCH_PROFILE=1 and py-spy installed: sample the server during the steady state."""
    py_spy = shutil.which("py-spy", path=str(Path(sys.executable).parent)) or shutil.which("py-spy")
    if not os.environ.get("BENCH_PROFILE") or py_spy is None:
        return None
    out = work_dir / f"profile-{server.name.replace(' ', '-')}.txt"
    process = subprocess.Popen(
        [
            py_spy,
            "record",
            "--pid",
            str(server.pid),
            "--format",
            "raw",
            "--rate",
            "50",
            # Only the thread holding the GIL is sampled: where Python spends CPU.
            "--gil",
            "--duration",
            str(int(duration)),
            "--nonblocking",
            "--output",
            str(out),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return process, out


def _profile_summary(profiler: tuple[Any, Path], top: int = 25) -> dict[str, Any]:
    """Inclusive share of samples per function (file:function) from py-spy's raw stacks."""
    process, out = profiler
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(60)
    if not out.exists():
        return {"file": str(out), "error": "py-spy wrote nothing"}
    inclusive: Counter[str] = Counter()
    total = 0
    for line in out.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        samples = int(count)
        total += samples
        frames = {
            frame.rsplit(" (", 1)[0] + " " + frame.rsplit("(", 1)[-1].split(":")[0]
            for frame in stack.split(";")
        }
        for frame in frames:
            inclusive[frame] += samples
    return {
        "file": str(out),
        "samples": total,
        "inclusive_share": {k: round(v / max(1, total), 3) for k, v in inclusive.most_common(top)},
    }


def measure(
    server: Server,
    specs: list[StationSpec],
    warm_spec: StationSpec,
    config: BenchConfig,
    *,
    duration: float,
    rows: Callable[[], dict[str, int]] | None,
    log: Callable[[str], None],
    check_acknowledged: Callable[[list[str], list[str]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Boot storm, then the steady state, against one server; returns every figure."""
    result: dict[str, Any] = {"server": server.name}
    server_pids = server.pids
    helper_pids = [pid for p in server.helpers.values() for pid in _tree(p.pid)]
    asyncio.run(_warm_up(server.url, warm_spec))
    behaviour = Behaviour(
        heartbeats=False,
        session_gap=None,
        meter_interval=None,
        id_tag=BENCH_ID_TAG,
        open_timeout=60,
        response_timeout=60,
    )
    fleet = Fleet(specs, server.url, behaviour, processes=config.worker_processes)
    fleet.start()
    try:
        fleet.stats()  # every worker is up before the clock starts
        time.sleep(1)
        rss_before = sum(_rss(pid) for pid in server.pids)

        log(f"{server.name}: boot storm of {len(specs)} stations")
        cpu0 = _cpu(server_pids)
        started = time.time()
        storm = fleet.command("connect", deadline=started + config.storm_timeout)
        elapsed = time.time() - started
        cpu1 = _cpu(server_pids)
        stats, counters = fleet.stats(reset=True)
        accepted = sorted(t - started for r in storm for t in r["accepted_at"])
        ready = sorted(t - started for r in storm for t in r["ready_at"])
        boots = sorted(x for r in storm for x in r["boot_latency"])
        all_ready = len(ready) == len(specs)
        time.sleep(2)
        rss_after = sum(_rss(pid) for pid in server.pids)
        result["storm"] = {
            "stations": len(specs),
            "accepted": len(accepted),
            "ready": len(ready),
            "all_accepted_s": round(accepted[-1], 2) if len(accepted) == len(specs) else None,
            "all_ready_s": round(ready[-1], 2) if all_ready else None,
            "waited_s": round(elapsed, 2),
            "failed_handshakes": stats.handshake_failures,
            "failure_reasons": dict(stats.failure_reasons),
            "call_errors": dict(stats.call_errors),
            "timeouts": dict(stats.timeouts),
            "boot_p50_ms": _ms(percentile(boots, 0.5)),
            "boot_p99_ms": _ms(percentile(boots, 0.99)),
            "server_cpu_s": round(cpu1 - cpu0, 2),
            "online": counters["online"],
        }
        result["memory"] = {
            "rss_before_mib": round(rss_before / 2**20, 1),
            "rss_connected_mib": round(rss_after / 2**20, 1),
            "kib_per_connection": round(
                (rss_after - rss_before) / 1024 / max(1, counters["online"]), 1
            ),
        }
        if rows is not None:
            result["storm"]["persisted"] = rows()
        log(f"{server.name}: storm done in {elapsed:.1f}s, {len(ready)}/{len(specs)} ready")

        fleet.command("prime", fraction=config.prime_share)
        fleet.command("settle", within=60)
        before, _ = fleet.stats(reset=True)
        log(f"{server.name}: steady state, {config.rate:g} msg/s for {duration:g}s")
        cpu_a, helpers_a, db_a = _cpu(server_pids), _cpu(helper_pids), _named_cpu(DB_NAMES)
        sim_a, machine_a = _cpu(fleet.pids), psutil.cpu_times()
        runner_a = _cpu([os.getpid()])
        profiler = _profile(server, config.work_dir, duration)
        started = time.monotonic()
        drive = fleet.command(
            "drive", rate=config.rate / fleet.processes, duration=duration, mix=Mix()
        )
        window = time.monotonic() - started
        if profiler is not None:
            result["profile"] = _profile_summary(profiler)
        cpu_b, helpers_b, db_b = _cpu(server_pids), _cpu(helper_pids), _named_cpu(DB_NAMES)
        sim_b, machine_b = _cpu(fleet.pids), psutil.cpu_times()
        rss_steady = sum(_rss(pid) for pid in server.pids)
        after, counters = fleet.stats(reset=True)
        answered = sum(after.answered.values()) - sum(before.answered.values())
        sent = sum(after.sent.values()) - sum(before.sent.values())
        mix = {a: after.answered[a] - before.answered[a] for a in after.answered}
        busy = (sum(machine_b) - machine_b.idle) - (sum(machine_a) - machine_a.idle)
        result["steady"] = {
            "target_rate": config.rate,
            "duration_s": duration,
            "window_s": round(window, 2),
            "issued": sum(d["issued"] for d in drive),
            "sent": sent,
            "answered": answered,
            "achieved_rate": round(answered / window, 1),
            "call_errors": {a: n - before.call_errors[a] for a, n in after.call_errors.items()},
            "timeouts": {a: n - before.timeouts[a] for a, n in after.timeouts.items()},
            "disconnects": after.disconnects - before.disconnects,
            "latency": _latency_summary(after),
            "mix": dict(sorted(mix.items())),
            "server_cpu_s": round(cpu_b - cpu_a, 2),
            "server_cpu_s_per_1000": round((cpu_b - cpu_a) / max(1, answered) * 1000, 4),
            "server_cpu_share": round((cpu_b - cpu_a) / window, 3),
            "worker_cpu_s": round(helpers_b - helpers_a, 2),
            "database_redis_cpu_s": round(_named_cpu_delta(db_a, db_b), 2),
            "simulator_cpu_s": round(sim_b - sim_a, 2),
            # Every process of the back office: daphne, the Celery worker, PostgreSQL, Redis
            # (the ceiling uses neither database nor Redis: its own process only).
            "back_office_cpu_s_per_1000": round(
                (
                    (cpu_b - cpu_a)
                    + (helpers_b - helpers_a)
                    + (_named_cpu_delta(db_a, db_b) if server.helpers else 0.0)
                )
                / max(1, answered)
                * 1000,
                4,
            ),
            "simulator_cpu_s_per_1000": round((sim_b - sim_a) / max(1, answered) * 1000, 4),
            "machine_busy_share": round(busy / window / (psutil.cpu_count() or 1), 3),
            # CPU the machine spent on anything but this benchmark (other work on the box).
            "other_cpu_s": round(
                busy
                - (cpu_b - cpu_a)
                - (helpers_b - helpers_a)
                - _named_cpu_delta(db_a, db_b)
                - (sim_b - sim_a)
                - (_cpu([os.getpid()]) - runner_a),
                2,
            ),
            "rss_mib": round(rss_steady / 2**20, 1),
            "online_after": counters["online"],
        }
        result["memory"]["kib_per_connection_steady"] = round(
            (rss_steady - rss_before) / 1024 / max(1, counters["online"]), 1
        )
        log(
            f"{server.name}: {answered} answered, {answered / window:.0f} msg/s, "
            f"p99 {result['steady']['latency']['p99_ms']} ms"
        )
        fleet.command("settle", within=120)
        totals, counters = fleet.stats()
        result["acknowledged"] = {
            "status_events": totals.status_events,
            "sessions": totals.sessions,
            "samples": totals.samples,
            "queued_unsent": counters["queued_now"],
        }
        result["schema_violations"] = totals.schema_violations[:20]
        if check_acknowledged is not None:
            result["acknowledged_missing"] = check_acknowledged(
                totals.acked_transactions, totals.acked_samples
            )
        if rows is not None:
            persisted = rows()
            result["persisted"] = persisted
            result["rows_equal"] = all(
                persisted[k] == totals_value
                for k, totals_value in result["acknowledged"].items()
                if k in persisted
            )
    finally:
        fleet.close()
    return result


def run(config: BenchConfig, *, log: Callable[[str], None] = print) -> dict[str, Any]:
    """Run the whole benchmark and return its results (see the module docstring)."""
    raise_open_files_limit()
    run_id = datetime.now(UTC).strftime("%y%m%d%H%M%S")
    seed = secrets.token_hex(16)
    specs = fleet_specs(
        prefix=f"B{run_id}-",
        count=config.stations,
        protocols=config.protocols,
        connectors=config.connectors,
        seed=seed,
    )
    warm = fleet_specs(
        prefix=f"B{run_id}-W",
        count=1,
        protocols=[V16],
        connectors=1,
        seed=seed,
        start=config.stations,
    )[0]
    results: dict[str, Any] = {
        "run": run_id,
        "started_at": datetime.now(UTC).isoformat(),
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in asdict(config).items()},
        "simulator_processes": config.worker_processes,
        "machine": {
            "cpus": psutil.cpu_count(),
            "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
            "python": platform.python_version(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        },
        "targets": TARGETS,
    }
    office = BackOffice(config)
    try:
        log("preparing the back office (migrate, stations)")
        office.prepare()
        results["database"] = office.database
        results["redis"] = office.redis_url
        started = time.monotonic()
        fleet_rows = fleet_stations_create(specs=specs, id_tag=BENCH_ID_TAG)
        fleet_stations_create(specs=[warm], id_tag=BENCH_ID_TAG)
        results["create_stations_s"] = round(time.monotonic() - started, 2)

        def rows() -> dict[str, int]:
            return fleet_rows_count(first_id=fleet_rows.first_id, last_id=fleet_rows.last_id)

        def check_acknowledged(transactions: list[str], samples: list[str]) -> dict[str, Any]:
            return fleet_acknowledged_missing(
                first_id=fleet_rows.first_id,
                last_id=fleet_rows.last_id,
                transactions=transactions,
                samples=samples,
            )

        with office.running() as server:
            results["ours"] = measure(
                server,
                specs,
                warm,
                config,
                duration=config.duration,
                rows=rows,
                log=log,
                check_acknowledged=check_acknowledged,
            )
    finally:
        office.close()
    if config.ceiling:
        with ceiling_running(config.work_dir) as ceiling:
            results["ceiling"] = measure(
                ceiling,
                specs,
                warm,
                config,
                duration=config.ceiling_duration or config.duration,
                rows=None,
                log=log,
            )
    results["finished_at"] = datetime.now(UTC).isoformat()
    return results

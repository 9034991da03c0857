"""The run command: the whole back office in one terminal.

    python -m cpo.run        (what `make run` calls, after installing and migrating)

Starts, as children of this process, and supervises them:
1. the embedded Redis server (only when REDIS_URL is unset), on a unix socket in the data dir;
2. daphne: HTTP (admin, API, /healthz) and the OCPP websockets on 0.0.0.0:$PORT (8000);
3. one Celery worker with beat.

A child that exits while the back office is running is logged and started again, after 1 s,
then 2, 4, ... up to 30 s while it keeps dying young (a child that ran for a minute starts the
count again). When daphne is gone, the stations whose sockets it held are marked offline at
once, before its successor starts; so are those left online by a previous run of this node
that was killed outright.

Ctrl-C (SIGINT) or SIGTERM stops daphne and Celery first, then Redis, and waits for each, so no
process is left behind. Every child also gets SIGTERM from the kernel if this process dies.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import django

PR_SET_PDEATHSIG = 1
# Restart back-off: the first delay, the longest, and how long a child must run for its next
# death to count as a first one again.
RESTART_DELAY_FIRST = 1.0
RESTART_DELAY_MAX = 30.0
RESTART_STABLE_AFTER = 60.0

logger = logging.getLogger("cpo.run")


def _die_with_parent() -> None:
    # Linux only: if the run command is killed outright, its children are not orphaned.
    try:
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except OSError:
        pass


def _spawn(argv: list[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        argv,
        env=env,
        stdin=subprocess.DEVNULL,
        start_new_session=True,
        preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads exist yet in this process
    )


def _stop(process: subprocess.Popen[bytes], name: str, timeout: float) -> None:
    if process.poll() is not None:
        return
    try:
        os.killpg(process.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        print(f"  {name} did not stop in {timeout:.0f}s; killing it", flush=True)
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def daphne_command() -> list[str]:
    """The program that serves the back office: daphne with the ASGI WebSocket Denial
    Response extension (cpo.lib.daphne_server: a refused charger gets HTTP 401, not 403).
    Every process that serves it (this command, the benchmark, the test fixtures) starts it so.
    """
    return [sys.executable, "-m", "cpo.lib.daphne_server"]


def daphne_options(*, host: str, port: int) -> list[str]:
    """How daphne serves the back office; the benchmark starts it with the same options."""
    return [
        # A listen backlog of 4096: a boot storm of thousands of chargers must not see refused
        # connections (the default of 100 drops them).
        "-e",
        f"tcp:port={port}:interface={host}:backlog=4096",
        # Chargers stay connected for months: no idle timeout.
        "--websocket_timeout",
        "-1",
        # Admission reads the database; under a boot storm daphne's default of 5 s closes
        # handshakes still waiting for it, and the chargers' retries feed the storm.
        "--websocket_connect_timeout",
        "60",
        "--application-close-timeout",
        "15",
    ]


def _signal_group(pgid: int, signum: int) -> None:
    # Each child leads a process group of its own (start_new_session).
    try:
        os.killpg(pgid, signum)
    except (ProcessLookupError, PermissionError):
        pass


def restart_delay(failures: int) -> float:
    """Seconds to wait before the next start of a child that died `failures` times in a row."""
    return min(RESTART_DELAY_MAX, RESTART_DELAY_FIRST * 2 ** max(0, failures - 1))


@dataclass
class Child:
    """One supervised child process: how to start it, and its record of deaths."""

    name: str
    start: Callable[[], subprocess.Popen[bytes]]
    stop: Callable[[subprocess.Popen[bytes]], None]
    # Called with the exit code when the child is found dead (daphne: its stations go offline).
    on_exit: Callable[[int], object] | None = None
    process: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    failures: int = 0
    restart_at: float = 0.0
    restarts: int = 0
    pids: list[int] = field(default_factory=list)

    def launch(self) -> None:
        if self.pids:
            # What the dead one left of its process group (Celery's beat and pool processes)
            # had its SIGTERM and its back-off: it must not run beside the new one.
            _signal_group(self.pids[-1], signal.SIGKILL)
        self.process = self.start()
        self.started_at = time.monotonic()
        self.pids.append(self.process.pid)

    def check(self, now: float) -> None:
        """Notice a death and schedule the restart; start it again when its delay is over."""
        if self.process is not None:
            code = self.process.poll()
            if code is None:
                return
            pid = self.process.pid
            self.process = None
            _signal_group(pid, signal.SIGTERM)
            lived = now - self.started_at
            self.failures = 1 if lived >= RESTART_STABLE_AFTER else self.failures + 1
            delay = restart_delay(self.failures)
            self.restart_at = now + delay
            logger.error(
                "%s (pid %s) exited with code %s after %.0f s; restarting it in %.0f s",
                self.name,
                pid,
                code,
                lived,
                delay,
            )
            if self.on_exit is not None:
                self.on_exit(code)
        elif now >= self.restart_at:
            try:
                self.launch()
            except Exception:  # e.g. the embedded Redis did not answer in time: try later
                self.failures += 1
                self.restart_at = now + restart_delay(self.failures)
                logger.exception("%s did not start; trying again", self.name)
                return
            self.restarts += 1
            assert self.process is not None
            logger.warning(
                "%s restarted (pid %s, restart %s)", self.name, self.process.pid, self.restarts
            )


def node_stations_offline(node: str, reason: str) -> int:
    """Mark the stations held by `node` offline; the supervisor lives on if the database is down
    (the heartbeat sweep catches them then)."""
    from django.db import connection

    from stations.services import stations_node_down

    try:
        count = stations_node_down(node=node, reason=reason)
    except Exception:
        logger.exception("could not mark the stations of node %s offline", node)
        return 0
    finally:
        # The supervisor holds no connection between its rare writes.
        connection.close()
    if count:
        logger.warning("%s station(s) of node %s marked offline: %s", count, node, reason)
    return count


def _python_command() -> str:
    """How the banner names this interpreter: `.venv/bin/python` under `make run`."""
    from django.conf import settings

    try:
        return str(Path(sys.executable).relative_to(settings.BASE_DIR))
    except ValueError:
        return "python"


def banner(port: int, redis_url: str, database: str) -> str:
    """What the run command prints once everything is started. Never a password: the demo
    command shows those once, when it creates them."""
    from cpo.demo import DEMO_LOGINS, DEMO_STATIONS
    from cpo.models import User
    from stations.models import ChargingStation

    python = _python_command()
    lines = [
        "",
        "CPO back office is running",
        f"  Operator panel : http://127.0.0.1:{port}/admin/",
        f"  Health         : http://127.0.0.1:{port}/healthz",
        f"  REST API docs  : http://127.0.0.1:{port}/api/docs/",
        f"  OCPP endpoint  : ws://127.0.0.1:{port}/ocpp/<identity>  (ocpp1.6, ocpp2.0.1, ocpp2.1)",
        f"  Database       : {database}",
        f"  Redis          : {redis_url}",
    ]
    has_superuser = User.objects.filter(is_superuser=True, is_active=True).exists()
    demo_users = list(
        User.objects.filter(username__in=[login[1] for login in DEMO_LOGINS])
        .order_by("username")
        .values_list("username", flat=True)
    )
    demo_stations = list(
        ChargingStation.objects.filter(identity__in=[s["identity"] for s in DEMO_STATIONS])
        .order_by("identity")
        .values_list("identity", flat=True)
    )
    if not has_superuser:
        lines += [
            "  No superuser yet: create the first login with",
            f"    {python} manage.py createsuperuser",
        ]
    if demo_users or demo_stations:
        lines += [
            f"  Demo logins    : {', '.join(demo_users) or 'none'}",
            f"  Demo stations  : {', '.join(demo_stations) or 'none'}",
            "  Passwords      : README.md, Demo data (unless changed since); change one with",
            f"                   {python} manage.py changepassword <login>"
            " (a station's: on its page in the panel)",
        ]
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpo.settings")
    django.setup()
    from django.conf import settings
    from django.db import connection

    from cpo.lib import embedded_redis

    port = int(os.environ.get("PORT", "8000"))
    host = os.environ.get("HOST", "0.0.0.0")  # noqa: S104 - chargers connect from the network
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    data_dir = Path(settings.DATA_DIR)
    # The name daphne's consumers write on the stations they hold: stable across restarts of
    # the child, and distinct per host and port when several share one database.
    node = env.get("CPO_NODE_NAME") or f"{os.uname().nodename}:{port}"

    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    # No daphne of this node runs yet: any station still online on it was left so by a run
    # that was killed outright.
    node_stations_offline(node, "node restarted (the previous run ended abruptly)")

    bin_dir = Path(sys.executable).parent
    redis = None
    if settings.EMBEDDED_REDIS:
        redis = Child("redis", lambda: embedded_redis.start(data_dir), embedded_redis.stop)
    servers = [
        Child(
            "daphne",
            lambda: _spawn(
                [
                    *daphne_command(),
                    *daphne_options(host=host, port=port),
                    "cpo.asgi:application",
                ],
                env | {"CPO_NODE_NAME": node},
            ),
            lambda process: _stop(process, "daphne", 15),
            on_exit=lambda code: node_stations_offline(
                node, f"node died (daphne exited with code {code})"
            ),
        ),
        Child(
            "celery",
            lambda: _spawn(
                [
                    str(bin_dir / "celery"),
                    "-A",
                    "cpo",
                    "worker",
                    "--beat",
                    "--loglevel",
                    "INFO",
                    "--concurrency",
                    env.get("CELERY_CONCURRENCY", "2"),
                    "--schedule",
                    str(data_dir / "celerybeat-schedule"),
                    "--hostname",
                    f"worker@{os.uname().nodename}-{port}",
                ],
                env,
            ),
            lambda process: _stop(process, "celery", 30),
        ),
    ]
    children = ([redis] if redis else []) + servers
    for child in children:
        child.launch()
    db = settings.DATABASES["default"]
    database = f"{db['ENGINE'].rsplit('.', 1)[-1]} {db['NAME']}"
    print(banner(port, settings.REDIS_URL, database), flush=True)
    # The supervisor holds no database connection between its rare writes.
    connection.close()

    while not stopping:
        now = time.monotonic()
        for child in children:
            child.check(now)
        time.sleep(0.2)

    print("\nStopping...", flush=True)
    # daphne and Celery first, then the Redis they use.
    for child in servers:
        if child.process is not None:
            child.stop(child.process)
    node_stations_offline(node, "node stopped")
    if redis is not None and redis.process is not None:
        redis.stop(redis.process)
    print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The run command: the whole back office in one terminal.

    python -m cpo.run        (what `make run` calls, after installing and migrating)

Starts, as children of this process, and supervises them:
1. the embedded Redis server (only when REDIS_URL is unset), on a unix socket in the data dir;
2. daphne: HTTP (admin, API, /healthz) and the OCPP websockets on 0.0.0.0:$PORT (8000);
   with NODES=N (N > 1), N daphne nodes on 127.0.0.1:$PORT+1 .. $PORT+N behind HAProxy on
   $HOST:$PORT, which hands each connection to the node with the fewest and passes the
   charger's own address on with the PROXY protocol;
3. one Celery worker with beat (CELERY_BEAT=0: without, on every machine but one).

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
import resource
import shutil
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


def daphne_options(*, host: str, port: int, behind_proxy: bool = False) -> list[str]:
    """How daphne serves the back office; the benchmark starts it with the same options.
    `behind_proxy`: connections come from HAProxy with a PROXY protocol header first, which
    twisted's `haproxy:` endpoint reads, so the consumers see the charger's address (the
    brute-force limits count per address) and not the balancer's."""
    endpoint = f"tcp:port={port}:interface={host}:backlog=4096"
    return [
        # A listen backlog of 4096: a boot storm of thousands of chargers must not see refused
        # connections (the default of 100 drops them).
        "-e",
        f"haproxy:{endpoint}" if behind_proxy else endpoint,
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


@dataclass(frozen=True)
class Node:
    """One daphne process behind the balancer: its name (what its stations carry) and address."""

    name: str
    host: str
    port: int


def haproxy_maxconn() -> int:
    """As many connections as the file limit allows: each one costs HAProxy two descriptors
    (charger side and node side), and it refuses to start above the hard limit."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    return max(100, (hard - 200) // 2)


def haproxy_config(*, host: str, port: int, nodes: list[Node], maxconn: int) -> str:
    """HAProxy in front of the daphne nodes, in TCP mode: a websocket is a long-lived TCP
    connection, so no HTTP parsing beyond daphne's own, and TLS can pass through unchanged.

    - leastconn: chargers stay for months; the node with the fewest connections gets the next.
    - A node that refuses connections is retried and the connection redispatched to another
      one at once (a charger reconnecting after its node died lands on a survivor), and it is
      out of the pool after two failed checks one second apart.
    - `timeout tunnel 1h` is the idle limit of an open websocket; daphne pings every 20 s, so an
      idle charger is never cut by the balancer.
    - send-proxy-v2: the node learns the charger's address (daphne_options(behind_proxy=True)).
    `manage.py haproxy_config` prints the same file for nodes on other machines.
    """
    servers = "\n".join(
        f"    server {node.name.replace(':', '_')} {node.host}:{node.port}"
        " send-proxy-v2 check check-send-proxy inter 1s fall 2 rise 2"
        for node in nodes
    )
    return f"""# Written by the CPO back office's run command; edits are overwritten.
global
    maxconn {maxconn}

defaults
    mode tcp
    timeout connect 5s
    timeout client 90s
    timeout server 90s
    timeout tunnel 1h
    timeout client-fin 30s
    timeout server-fin 30s
    retries 3
    option redispatch 1

frontend chargers_and_staff
    bind {host}:{port}
    maxconn {maxconn}
    default_backend daphne_nodes

backend daphne_nodes
    balance leastconn
{servers}
"""


def haproxy_binary() -> str | None:
    """Debian's haproxy (`apt-get install haproxy`; `make run` installs it when NODES > 1)."""
    return shutil.which("haproxy") or next(
        (path for path in ("/usr/sbin/haproxy",) if os.access(path, os.X_OK)), None
    )


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


def banner(port: int, redis_url: str, database: str, nodes: list[Node] | None = None) -> str:
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
    if nodes:
        addresses = ", ".join(f"{node.host}:{node.port}" for node in nodes)
        lines.append(f"  Nodes          : {len(nodes)} daphne ({addresses}) behind HAProxy")
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


def _daphne_child(node: Node, env: dict[str, str], *, behind_proxy: bool, several: bool) -> Child:
    # With several nodes the log says which one died.
    name = f"daphne {node.name}" if several else "daphne"
    return Child(
        name,
        lambda: _spawn(
            [
                *daphne_command(),
                *daphne_options(host=node.host, port=node.port, behind_proxy=behind_proxy),
                "cpo.asgi:application",
            ],
            env | {"CPO_NODE_NAME": node.name},
        ),
        lambda process: _stop(process, name, 15),
        on_exit=lambda code: node_stations_offline(
            node.name, f"node died (daphne exited with code {code})"
        ),
    )


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
    count = int(env.get("NODES", "1") or "1")
    if count < 1:
        print(f"NODES={count}: at least one node is needed", file=sys.stderr)
        return 2
    haproxy = haproxy_binary() if count > 1 else None
    if count > 1 and haproxy is None:
        print(
            "NODES > 1 needs HAProxy in front of the nodes: apt-get install haproxy",
            file=sys.stderr,
        )
        return 2
    node_host = env.get("NODE_HOST", "127.0.0.1")
    # The name daphne's consumers write on the stations they hold: stable across restarts of
    # the child, and distinct per host and port when several share one database.
    if count == 1:
        nodes = [Node(env.get("CPO_NODE_NAME") or f"{os.uname().nodename}:{port}", host, port)]
    else:
        base = f"{env['CPO_NODE_NAME']}-" if env.get("CPO_NODE_NAME") else f"{os.uname().nodename}:"
        nodes = [Node(f"{base}{port + i}", node_host, port + i) for i in range(1, count + 1)]

    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    # No daphne of this node runs yet: any station still online on it was left so by a run
    # that was killed outright.
    for node in nodes:
        node_stations_offline(node.name, "node restarted (the previous run ended abruptly)")

    bin_dir = Path(sys.executable).parent
    redis = None
    if settings.EMBEDDED_REDIS:
        redis = Child("redis", lambda: embedded_redis.start(data_dir), embedded_redis.stop)
    # A node on a machine of its own behind a shared HAProxy reads the PROXY header too.
    behind_proxy = count > 1 or env.get("CPO_PROXY_PROTOCOL") == "1"
    servers = [
        _daphne_child(node, env, behind_proxy=behind_proxy, several=count > 1) for node in nodes
    ]
    if haproxy is not None:
        config = data_dir / "haproxy.cfg"
        config.write_text(
            haproxy_config(host=host, port=port, nodes=nodes, maxconn=haproxy_maxconn())
        )
        servers.append(
            Child(
                "haproxy",
                # -db: in the foreground, logging to stderr; -W would fork a master.
                lambda: _spawn([haproxy, "-db", "-f", str(config)], env),
                lambda process: _stop(process, "haproxy", 5),
            )
        )
    servers += [
        Child(
            "celery",
            lambda: _spawn(
                [
                    str(bin_dir / "celery"),
                    "-A",
                    "cpo",
                    "worker",
                    # One beat in the whole installation: machines after the first say
                    # CELERY_BEAT=0 (README "Several nodes").
                    *(["--beat"] if env.get("CELERY_BEAT", "1") != "0" else []),
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
    print(banner(port, settings.REDIS_URL, database, nodes if count > 1 else None), flush=True)
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
    for node in nodes:
        node_stations_offline(node.name, "node stopped")
    if redis is not None and redis.process is not None:
        redis.stop(redis.process)
    print("Stopped.", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The run command: the whole back office in one terminal.

    python -m cpo.run        (what `make run` calls, after installing and migrating)

Starts, as children of this process:
1. the embedded Redis server (only when REDIS_URL is unset), on a unix socket in the data dir;
2. daphne: HTTP (admin, API, /healthz) and the OCPP websockets on 0.0.0.0:$PORT (8000);
3. one Celery worker with beat.

Ctrl-C (SIGINT) or SIGTERM stops daphne and Celery first, then Redis, and waits for each, so no
process is left behind. Every child also gets SIGTERM from the kernel if this process dies.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import django

PR_SET_PDEATHSIG = 1


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


def banner(port: int, redis_url: str, database: str) -> str:
    from cpo.demo import DEMO_LOGINS, DEMO_STATIONS

    lines = [
        "",
        "CPO back office is running",
        f"  Operator panel : http://127.0.0.1:{port}/admin/",
        f"  Health         : http://127.0.0.1:{port}/healthz",
        f"  REST API docs  : http://127.0.0.1:{port}/api/docs/",
        f"  OCPP endpoint  : ws://127.0.0.1:{port}/ocpp/<identity>  (ocpp1.6, ocpp2.0.1)",
        f"  Database       : {database}",
        f"  Redis          : {redis_url}",
        "  Demo logins    :",
    ]
    lines += [f"    {role:<9} {user} / {password}" for role, user, password in DEMO_LOGINS]
    lines.append("  Demo stations (HTTP Basic: identity / password):")
    lines += [
        f"    {s['identity']:<9} {s['protocol']:<10} password {s['password']}"
        for s in DEMO_STATIONS
    ]
    lines.append("Press Ctrl-C to stop.")
    return "\n".join(lines)


def main() -> int:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpo.settings")
    django.setup()
    from django.conf import settings

    from cpo.lib import embedded_redis

    port = int(os.environ.get("PORT", "8000"))
    host = os.environ.get("HOST", "0.0.0.0")  # noqa: S104 - chargers connect from the network
    env = dict(os.environ)
    env.setdefault("PYTHONUNBUFFERED", "1")
    data_dir = Path(settings.DATA_DIR)

    stopping = False

    def request_stop(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)

    redis_process = None
    if settings.EMBEDDED_REDIS:
        redis_process = embedded_redis.start(data_dir)

    bin_dir = Path(sys.executable).parent
    daphne = _spawn(
        [str(bin_dir / "daphne"), *daphne_options(host=host, port=port), "cpo.asgi:application"],
        env | {"CPO_NODE_NAME": env.get("CPO_NODE_NAME") or f"daphne-{port}"},
    )
    worker = _spawn(
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
    )
    db = settings.DATABASES["default"]
    database = f"{db['ENGINE'].rsplit('.', 1)[-1]} {db['NAME']}"
    print(banner(port, settings.REDIS_URL, database), flush=True)

    children = {"daphne": daphne, "celery": worker}
    exit_code = 0
    while not stopping:
        for name, process in children.items():
            if process.poll() is not None:
                print(f"{name} exited with code {process.returncode}; stopping", flush=True)
                exit_code = 1
                stopping = True
        time.sleep(0.2)

    print("\nStopping...", flush=True)
    _stop(daphne, "daphne", 15)
    _stop(worker, "celery", 30)
    if redis_process is not None:
        embedded_redis.stop(redis_process)
    print("Stopped.", flush=True)
    return exit_code


if __name__ == "__main__":
    sys.exit(main())

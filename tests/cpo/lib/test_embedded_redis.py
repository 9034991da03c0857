"""The embedded Redis keeps an append-only file in the data dir: queued Celery tasks survive a
crash and a restart of it (`pytest -m fault` runs this with the other fault tests)."""

from __future__ import annotations

import time
from pathlib import Path
from typing import cast

import pytest
import redis
from celery import Celery

from cpo.lib import embedded_redis

pytestmark = pytest.mark.fault


def _queued(socket_path: Path) -> list[bytes]:
    client = redis.Redis(unix_socket_path=str(socket_path), socket_timeout=2)
    try:
        return cast("list[bytes]", client.lrange("celery", 0, -1))
    finally:
        client.close()


def test_tasks_queued_before_a_crash_are_there_after_the_restart(tmp_path):
    socket_path = tmp_path / "redis.sock"
    server = embedded_redis.start(tmp_path)
    try:
        app = Celery("crash-test", broker=f"redis+socket://{socket_path}")
        result = app.send_task("billing.tasks.cdr_create_for_session", args=[42])
        app.close()
        aof = tmp_path / embedded_redis.AOF_NAME
        # appendfsync everysec: the write is on disk within a second or so.
        deadline = time.monotonic() + 10
        while result.id.encode() not in (aof.read_bytes() if aof.exists() else b""):
            assert time.monotonic() < deadline, "the task never reached the append-only file"
            time.sleep(0.1)
        server.kill()  # a crash: no shutdown, no final save
        server.wait(10)

        server = embedded_redis.start(tmp_path)
        queued = _queued(socket_path)
        assert len(queued) == 1
        assert result.id.encode() in queued[0]
    finally:
        embedded_redis.stop(server)

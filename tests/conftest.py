"""Shared fixtures: real server processes on loopback (daphne, Celery) and demo-like data."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
# Debian's chromium, which the browser tests drive through Playwright.
CHROMIUM = Path("/usr/bin/chromium")


def pytest_collection_modifyitems(config: Any, items: list[pytest.Item]) -> None:  # noqa: ARG001
    """Without chromium every test marked `browser` is skipped, saying how to install it. Here,
    not beside the browser fixtures: a browser test elsewhere (billing) run on its own must be
    skipped too, not fail to launch."""
    if CHROMIUM.exists():
        return
    skip = pytest.mark.skip(reason=f"{CHROMIUM} is missing: apt-get install chromium")
    for item in items:
        if item.get_closest_marker("browser"):
            item.add_marker(skip)


@pytest.fixture(autouse=True, scope="session")
def _flush_retries_on_lock_conflicts():
    """Live servers (daphne, workers) may still be finishing a write of the previous test when
    the transactional flush TRUNCATEs the tables; PostgreSQL then reports a deadlock between
    the two. That race belongs to the test harness, so the flush is simply tried again."""
    from django.core.management.base import CommandError
    from django.db import OperationalError
    from django.test import TransactionTestCase

    original = TransactionTestCase._fixture_teardown  # type: ignore[attr-defined]  # private

    def fixture_teardown(self):
        for attempt in range(6):
            try:
                return original(self)
            except (CommandError, OperationalError):
                if attempt == 5:
                    raise
                time.sleep(0.5 * (attempt + 1))
        return None

    TransactionTestCase._fixture_teardown = fixture_teardown  # type: ignore[attr-defined]
    yield
    TransactionTestCase._fixture_teardown = original  # type: ignore[attr-defined]


@pytest.fixture(autouse=True)
def _fresh_throttles() -> Iterator[None]:
    """The API's throttle counters (process memory in tests) start empty in every test: user
    ids come again after a rollback, and one test's failed logins are not the next one's."""
    from django.core.cache import caches

    caches["throttle"].clear()
    yield
    caches["throttle"].clear()


@pytest.fixture(autouse=True)
def _fresh_tariff_engines() -> Iterator[None]:
    """Tests roll their rows back, so a version id can come again with another tariff; in
    production versions are immutable and ids never come back, which the per-process cache of
    their engine form relies on."""
    from tariffs.services import _ENGINES

    _ENGINES.clear()
    yield
    _ENGINES.clear()


@pytest.fixture(autouse=True)
def _fresh_webhook_subscriptions() -> Iterator[None]:
    """Tests roll their endpoints back, and a rollback runs no after-commit hook: the cached
    subscriptions (shared through Redis) would outlive them. In production every committed
    change to an endpoint moves the cache to a new generation."""
    from cpo.outbox.webhooks import subscriptions_changed_now

    subscriptions_changed_now()
    yield
    subscriptions_changed_now()


@pytest.fixture(autouse=True)
def _fresh_push_targets() -> Iterator[None]:
    """The partners that receive OCPI pushes are cached (Redis); tests roll partners back
    without the after-commit hook that forgets them."""
    from roaming.push import push_targets_changed

    push_targets_changed()
    yield
    push_targets_changed()


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(**extra: str) -> dict[str, str]:
    """Environment for a child process that must see the test database and the test Redis."""
    from django.db import connection

    env = dict(os.environ)
    env["DJANGO_SETTINGS_MODULE"] = "cpo.settings_test"
    env["CPO_DATA_DIR"] = str(settings.DATA_DIR)
    env["PYTHONUNBUFFERED"] = "1"
    db = connection.settings_dict
    if db["ENGINE"].endswith("sqlite3"):
        env["CPO_SQLITE_PATH"] = str(db["NAME"])
    else:
        user = db.get("USER") or ""
        password = f":{db['PASSWORD']}" if db.get("PASSWORD") else ""
        auth = f"{user}{password}@" if user else ""
        host = f"{db.get('HOST') or '127.0.0.1'}:{db.get('PORT') or 5432}"
        env["DATABASE_URL"] = f"postgres://{auth}{host}/{db['NAME']}"
    env.update(extra)
    return env


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited early with code {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing listens on port {port} after {timeout}s")


class DaphneServer:
    def __init__(self, port: int, process: subprocess.Popen[bytes], log: Path):
        self.port = port
        self.process = process
        self.log = log
        self.http_url = f"http://127.0.0.1:{port}"
        self.ws_url = f"ws://127.0.0.1:{port}/ocpp"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def start_daphne(name: str = "node-a", **extra_env: str) -> DaphneServer:
    """daphne as `make run` starts it (cpo.run.daphne_command: with the denial extension)."""
    from cpo.run import daphne_command

    port = free_port()
    log = Path(settings.DATA_DIR) / f"daphne-{name}-{port}.log"
    process = subprocess.Popen(
        [*daphne_command(), "-b", "127.0.0.1", "-p", str(port), "cpo.asgi:application"],
        cwd=ROOT,
        env=server_env(CPO_NODE_NAME=name, **extra_env),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_for_port(port, process)
    return DaphneServer(port, process, log)


@pytest.fixture(scope="session")
def daphne_server(django_db_setup, django_db_blocker) -> Iterator[DaphneServer]:  # noqa: ARG001
    """A real daphne process on loopback serving the test database, for the whole run."""
    server = start_daphne()
    yield server
    server.stop()


class CeleryWorker:
    def __init__(self, process: subprocess.Popen[bytes], log: Path):
        self.process = process
        self.log = log

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def celery_worker_popen(
    name: str = "w1", **extra_env: str
) -> tuple[subprocess.Popen[bytes], Path, str]:
    """A real Celery worker process on the test broker and database, returned at once (not
    after its first ping), with its log and hostname."""
    log = Path(settings.DATA_DIR) / f"celery-{name}.log"
    hostname = f"{name}@test-{os.getpid()}"
    process = subprocess.Popen(
        [
            str(BIN / "celery"),
            "-A",
            "cpo",
            "worker",
            "--pool",
            "solo",
            "--loglevel",
            "INFO",
            "--hostname",
            hostname,
            "--without-gossip",
            "--without-mingle",
        ],
        cwd=ROOT,
        env=server_env(**extra_env),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    return process, log, hostname


def start_celery_worker(name: str = "w1", **extra_env: str) -> CeleryWorker:
    from cpo.celery import app

    process, log, hostname = celery_worker_popen(name, **extra_env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"celery worker exited early: {log.read_text()[-2000:]}")
        replies = app.control.ping(destination=[hostname], timeout=0.5)
        if replies:
            return CeleryWorker(process, log)
    process.kill()
    raise RuntimeError(f"celery worker did not answer: {log.read_text()[-2000:]}")


@pytest.fixture
def celery_worker(transactional_db) -> Iterator[CeleryWorker]:  # noqa: ARG001
    """A real Celery worker process (not eager mode) on the test broker and database."""
    from cpo.celery import app

    app.control.purge()
    worker = start_celery_worker()
    yield worker
    worker.stop()


@pytest.fixture
def roles(db):  # noqa: ARG001
    """The staff role groups (a transactional test's flush removes the migration's rows)."""
    from django.contrib.auth.models import Group, Permission

    from cpo.roles import roles_sync

    roles_sync(group_model=Group, permission_model=Permission)

"""Fixtures of the energy tests: a daphne and a Celery worker that see topology changes at
once (the per-process map of managed stations is trusted for half a second), and stations
simulated in the test's own loop so that what they draw can be sampled."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.conftest import CeleryWorker, DaphneServer, start_celery_worker, start_daphne

FAST = {"ENERGY_MANAGED_CACHE_SECONDS": "0.5", "ENERGY_DEBOUNCE_SECONDS": "0.1"}


@pytest.fixture
def energy_servers(transactional_db) -> Iterator[tuple[DaphneServer, CeleryWorker]]:  # noqa: ARG001
    from django.core.cache import cache

    from cpo.celery import app

    app.control.purge()
    # A run scheduled by an earlier test and purged here would hold its debounce key.
    cache.clear()
    server = start_daphne("energy", **FAST)
    worker = start_celery_worker("energy", **FAST)
    yield server, worker
    worker.stop()
    server.stop()


async def wait_for(condition: Callable[[], Any], timeout: float = 20.0, what: str = "") -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {timeout}s: {what}")
        await asyncio.sleep(0.02)

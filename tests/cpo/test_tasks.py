"""A real Celery worker runs the project's probe task over Redis."""

from __future__ import annotations

import os

import pytest


@pytest.mark.live
def test_a_real_worker_runs_a_task_over_redis(celery_worker):
    from cpo.celery import app
    from cpo.tasks import worker_probe

    assert not app.conf.task_always_eager
    result = worker_probe.delay()
    payload = result.get(timeout=30)
    assert payload["pid"] == celery_worker.process.pid
    assert payload["pid"] != os.getpid()

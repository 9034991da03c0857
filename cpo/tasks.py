"""Project-level Celery tasks."""

from __future__ import annotations

import os
import socket

from celery import shared_task
from django.db import connection


@shared_task(name="cpo.tasks.worker_probe")
def worker_probe() -> dict[str, object]:
    """Round trip through broker, worker and database; used by operators and the test suite to
    prove that a real worker (not eager mode) is consuming the queue."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"database": connection.vendor, "hostname": socket.gethostname(), "pid": os.getpid()}

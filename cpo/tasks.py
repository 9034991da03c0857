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


@shared_task(name="cpo.tasks.partitions_maintain")
def partitions_maintain() -> dict[str, dict[str, list[str]]]:
    """Daily on PostgreSQL: the coming months' partitions of the big tables, and the months
    past their retention dropped whole (cpo.lib.partitions). Nothing on SQLite."""
    from django.conf import settings

    from cpo.lib.partitions import partitions_maintain as maintain

    return maintain(
        connection,
        retention_days={
            "charging_metersample": settings.METER_SAMPLE_RETENTION_DAYS,
            "stations_ocppmessage": settings.OCPP_MESSAGE_LOG_RETENTION_DAYS,
        },
    )

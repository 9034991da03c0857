"""Receivers of the command queue's own facts, connected in CommandsConfig.ready().

They hold no logic: they enqueue Celery work after the announcing transaction commits.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction

from stations.commands import tasks


def job_targets_changed_receiver(sender: Any, job_id: int, **kwargs: Any) -> None:
    transaction.on_commit(lambda: tasks.job_advance.delay(job_id))


def local_list_refused_receiver(sender: Any, station_id: int, **kwargs: Any) -> None:
    transaction.on_commit(lambda: tasks.local_list_sync.delay(station_id, True))

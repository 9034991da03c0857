"""Celery tasks of the network: thin wrappers that call services."""

from __future__ import annotations

from celery import shared_task


@shared_task
def stations_mark_offline() -> int:
    from stations.services import stations_mark_offline as mark_offline

    return mark_offline()


@shared_task
def message_log_prune() -> int:
    from stations.services import message_log_prune as prune

    return prune()

"""Celery tasks of the stations app: thin wrappers that load ids and call services."""

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


@shared_task
def commands_expire() -> int:
    """Beat: expire commands whose station stayed offline too long, and time out job
    attempts that got no result."""
    from stations.command_services import commands_expire as expire
    from stations.command_services import jobs_check_timeouts

    return expire() + jobs_check_timeouts()


@shared_task
def command_send(
    station_id: int,
    verb: str = "",
    params: dict | None = None,
    action: str = "",
    payload: dict | None = None,
) -> int:
    """Queue a command from any process (the worker need not hold the station's socket)."""
    from stations.command_services import command_create
    from stations.models import ChargingStation, Command

    station = ChargingStation.objects.get(pk=station_id)
    return command_create(
        station=station,
        verb=verb,
        params=params,
        action=action,
        payload=payload,
        origin=Command.Origin.SYSTEM,
    ).pk


@shared_task
def job_advance(job_id: int) -> int:
    from stations.command_services import job_advance as advance

    return advance(job_id=job_id)


@shared_task
def local_list_sync(station_id: int, full: bool = False) -> int | None:
    from stations.local_lists import local_list_sync as sync

    return sync(station_id=station_id, full=full)


@shared_task
def local_lists_update(token_ids: list[int]) -> list[int]:
    from stations.local_lists import local_lists_update as update

    return update(token_ids=token_ids)

"""Celery tasks of the command queue: thin wrappers that load ids and call services."""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task
def commands_expire() -> int:
    """Beat: expire commands whose station stayed offline too long, and time out job
    attempts that got no result."""
    from stations.commands.jobs import jobs_check_timeouts
    from stations.commands.results import commands_expire as expire

    return expire() + jobs_check_timeouts()


@shared_task
def command_send(
    station_id: int,
    verb: str = "",
    params: dict[str, Any] | None = None,
    action: str = "",
    payload: dict[str, Any] | None = None,
) -> int:
    """Queue a command from any process (the worker need not hold the station's socket)."""
    from stations.commands.models import Command
    from stations.commands.services import command_create
    from stations.models import ChargingStation

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
    from stations.commands.jobs import job_advance as advance

    return advance(job_id=job_id)


@shared_task
def local_list_sync(station_id: int, full: bool = False) -> int | None:
    from stations.commands.local_lists import local_list_sync as sync

    return sync(station_id=station_id, full=full)


@shared_task
def local_lists_update(token_ids: list[int] | None = None) -> list[int]:
    """Tokens changed (`token_ids`, kept for the log): update the lists they touch."""
    from stations.commands.local_lists import local_lists_update as update

    return update()


@shared_task
def certificates_renew() -> int:
    """Beat: ask stations whose certificate of our CA ends soon for a new CSR."""
    from stations.commands.security import certificates_renew as renew

    return renew()

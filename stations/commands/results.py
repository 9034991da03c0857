"""Writes of what becomes of a sent command: the station's answer, a CALLERROR, a timeout, a
lost connection or expiry, and what follows from it for jobs and local lists."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.db import transaction
from django.utils import timezone

from stations import secret_keys
from stations.commands import jobs, local_lists, security
from stations.commands.models import Command
from stations.commands.signals import command_finished


@transaction.atomic
def command_result_record(
    *,
    command_id: int,
    status: str,
    result: str = "",
    response: dict[str, Any] | None = None,
    error_code: str = "",
    error_description: str = "",
) -> Command | None:
    """Store the outcome of a sent command: the answer with its status and one-word result
    (read by the OCPP edge), a CALLERROR (failed), a timeout or a lost connection.

    Returns None if the command was already final.
    """
    command = Command.objects.select_for_update().filter(pk=command_id).first()
    if command is None or command.is_final:
        return None
    command.status = status
    command.result = result[:40]
    # A station may echo a secret it was given (some do, in hex): stored masked.
    command.response = secret_keys.mask(response)
    command.error_code = error_code[:50]
    command.error_description = error_description[:255]
    command.completed_at = timezone.now()
    command.sealed = ""  # final: the clear payload is never needed again
    command.save(
        update_fields=[
            "status",
            "result",
            "response",
            "error_code",
            "error_description",
            "completed_at",
            "sealed",
        ]
    )
    # Follow-ups of a final command: its job's progress and its local list's version.
    jobs.job_command_finished(command=command)
    if command.origin == Command.Origin.LOCAL_LIST:
        local_lists.local_list_result_record(command=command)
    elif command.origin == Command.Origin.SECURITY:
        security.security_change_result(command=command)
    command_finished.send(
        sender=Command,
        command=command,
        command_id=command.pk,
        station_id=command.station_id,
        verb=command.verb,
        status=command.status,
        result=command.result,
        error_code=command.error_code,
    )
    return command


def commands_fail_unanswered(*, station_id: int) -> int:
    """On (re)connect: commands sent on an earlier connection will never be answered.

    They are failed, not re-sent: the station may have acted on them (a remote start twice
    would start two sessions).
    """
    ids = list(
        Command.objects.filter(station_id=station_id, status=Command.Status.SENT).values_list(
            "pk", flat=True
        )
    )
    for command_id in ids:
        command_result_record(
            command_id=command_id,
            status=Command.Status.FAILED,
            error_code="ConnectionLost",
            error_description="the connection closed before the station answered",
        )
    return len(ids)


def commands_expire(*, now: datetime | None = None) -> int:
    """Expire queued commands past their expiry (their station stayed offline too long)."""
    now = now or timezone.now()
    ids = list(
        Command.objects.filter(status=Command.Status.QUEUED, expires_at__lte=now).values_list(
            "pk", flat=True
        )[:1000]
    )
    count = 0
    for command_id in ids:
        if (
            command_result_record(
                command_id=command_id,
                status=Command.Status.EXPIRED,
                error_description="expired before the station could receive it",
            )
            is not None
        ):
            count += 1
    return count

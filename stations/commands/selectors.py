"""Non-trivial reads of the command queue."""

from __future__ import annotations

from typing import Any

from cpo.lib.formatting import iso
from stations.commands.models import Command
from stations.models import ChargingStation


def station_recent_commands(*, station: ChargingStation, limit: int = 15) -> list[dict[str, Any]]:
    """A station's latest commands, newest first, with their outcome so far."""
    return [
        {
            "id": cmd.pk,
            "action": cmd.action,
            "verb": cmd.verb,
            "status": cmd.status,
            "status_label": cmd.get_status_display(),
            "final": cmd.is_final,
            "response": cmd.response,
            "error": " ".join(filter(None, [cmd.error_code, cmd.error_description])),
            "origin": cmd.get_origin_display(),
            "requested_by": cmd.requested_by.get_username() if cmd.requested_by else "",
            "created_at": iso(cmd.created_at),
            "completed_at": iso(cmd.completed_at),
        }
        for cmd in Command.objects.filter(station=station)
        .select_related("requested_by")
        .order_by("-id")[:limit]
    ]


def stations_with_queued_commands() -> dict[int, str]:
    """Station id -> the channel of its current connection, for the stations that have a
    command waiting to be sent (read through the partial index of queued rows: they are few,
    whatever the size of the history)."""
    return dict(
        Command.objects.filter(status=Command.Status.QUEUED)
        .order_by()
        .values_list("station_id", "station__channel_name")
        .distinct()
    )

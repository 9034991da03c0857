"""Writes of the command queue: create, claim and release commands to stations.

How a command travels (design.md §4):
1. `command_create` has the OCPP edge encode the verb for the station's protocol (or check a
   raw payload) against the official schema, and stores a queued row: secret values masked
   in its payload, the clear payload sealed beside it (`stations.secret_keys`).
2. On commit, a wake-up goes to the channel-layer group of the station (`dispatch`); whichever
   process holds the station's socket (any daphne node) receives it.
3. That consumer claims queued rows oldest first (`command_claim_next`, which opens the sealed
   payload), sends one CALL at a time and stores the answer (masked), CALLERROR or timeout
   (`results.command_result_record`, which drops the sealed copy).
4. A station that is offline gets its queue on (re)connect; rows past their expiry are never
   sent and are marked expired (`results.commands_expire`, also run by Celery beat).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.db import transaction
from django.utils import timezone

from cpo.lib import sealing
from stations import secret_keys
from stations.commands import dispatch, verbs
from stations.commands.codec import codec
from stations.commands.models import Command
from stations.commands.verbs import CommandError
from stations.models import ChargingStation


@transaction.atomic
def command_create(
    *,
    station: ChargingStation,
    verb: str = "",
    params: dict[str, Any] | None = None,
    action: str = "",
    payload: dict[str, Any] | None = None,
    origin: str = Command.Origin.SYSTEM,
    requested_by: Any = None,
    expires_in: timedelta | None = None,
) -> Command:
    """Queue a command: a version-neutral `verb` with `params`, or a raw `action` + `payload`.

    Raises CommandError (nothing stored, nothing sent) when the verb does not exist for the
    station's protocol or the payload is not schema-valid.
    """
    version = station.protocol
    if not version:
        raise CommandError("the station has not connected yet: its protocol is unknown")
    if verb:
        action, payload = codec().encode(version, verb, verbs.params_clean(verb, params or {}))
        expiry = verbs.expiry_for(verb)
    else:
        if not action:
            raise CommandError("an action or a verb is required", field="action")
        payload = payload if payload is not None else {}
        codec().check_raw(version, action, payload)
        expiry = verbs.expiry_for(codec().verb_of(version, action))
    now = timezone.now()
    # The row shows the secret values masked; the clear payload waits sealed for the socket.
    masked = secret_keys.mask(payload)
    command = Command.objects.create(
        station=station,
        protocol=version,
        verb=verb,
        action=action,
        payload=masked,
        sealed=sealing.seal(payload) if masked is not payload else "",
        origin=origin,
        requested_by=requested_by if getattr(requested_by, "pk", None) else None,
        created_at=now,
        expires_at=now + (expires_in or expiry),
    )
    station_id = station.pk
    transaction.on_commit(lambda: dispatch.station_wake(station_id))
    return command


@dataclass(frozen=True)
class ClaimedCommand:
    id: int
    action: str
    payload: dict[str, Any]
    message_id: str


def command_claim_next(*, station_id: int, node: str) -> ClaimedCommand | None:
    """Claim the oldest queued, unexpired command of a station for sending, or None.

    The claim is an UPDATE guarded by the old status, so two connections of one station (the
    moment a newer one replaces the older) never send the same command twice.
    """
    now = timezone.now()
    while True:
        row = (
            Command.objects.filter(station_id=station_id, status=Command.Status.QUEUED)
            .order_by("id")
            .values("id", "action", "payload", "sealed", "expires_at")
            .first()
        )
        if row is None:
            return None
        if row["expires_at"] <= now:
            Command.objects.filter(pk=row["id"], status=Command.Status.QUEUED).update(
                status=Command.Status.EXPIRED,
                completed_at=now,
                error_description="expired before the station could receive it",
                sealed="",
            )
            continue
        payload = row["payload"]
        if row["sealed"]:
            try:
                payload = sealing.unseal(row["sealed"])
            except sealing.SealBroken:
                Command.objects.filter(pk=row["id"], status=Command.Status.QUEUED).update(
                    status=Command.Status.FAILED,
                    completed_at=now,
                    error_code="SealBroken",
                    error_description="its secret value cannot be read (SECRET_KEY changed?)",
                    sealed="",
                )
                continue
        message_id = str(uuid.uuid4())
        claimed = Command.objects.filter(pk=row["id"], status=Command.Status.QUEUED).update(
            status=Command.Status.SENT, sent_at=now, node=node[:100], message_id=message_id
        )
        if claimed == 1:
            return ClaimedCommand(row["id"], row["action"], payload, message_id)


def command_release(*, command_id: int) -> None:
    """Put back a claimed command whose connection closed before it went out."""
    Command.objects.filter(pk=command_id, status=Command.Status.SENT).update(
        status=Command.Status.QUEUED, sent_at=None, node="", message_id=""
    )

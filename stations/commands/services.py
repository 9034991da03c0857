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
from stations.models import ChargingStation, DeviceModelVariable


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
    first: Command | None = None
    parts = _parts(station, version, action, payload)
    for part in parts:
        # The row shows the secret values masked; the clear payload waits sealed for the socket.
        masked = secret_keys.mask(part)
        command = Command.objects.create(
            station=station,
            protocol=version,
            verb=verb,
            action=action,
            payload=masked,
            sealed=sealing.seal(part) if masked is not part else "",
            origin=origin,
            requested_by=requested_by if getattr(requested_by, "pk", None) else None,
            batch=first,
            created_at=now,
            expires_at=now + (expires_in or expiry),
        )
        first = first or command
    assert first is not None
    command = first
    if len(parts) > 1:
        command.batch_size = len(parts)
        command.save(update_fields=["batch_size"])
    station_id = station.pk
    transaction.on_commit(lambda: dispatch.station_wake(station_id))
    return command


ITEMS_LIMIT_COMPONENT = "DeviceDataCtrlr"
ITEMS_LIMIT_VARIABLE = "ItemsPerMessage"


def items_per_message(station: ChargingStation, instance: str) -> int | None:
    """The station's reported DeviceDataCtrlr.ItemsPerMessage[instance], or None."""
    value = (
        DeviceModelVariable.objects.filter(
            station=station,
            component=ITEMS_LIMIT_COMPONENT,
            variable=ITEMS_LIMIT_VARIABLE,
            variable_instance=instance,
            attribute_type="Actual",
        )
        .values_list("value", flat=True)
        .first()
    )
    try:
        limit = int(value) if value is not None else None
    except ValueError:
        return None
    return limit if limit and limit > 0 else None


def _parts(
    station: ChargingStation, version: str, action: str, payload: dict[str, Any]
) -> list[dict[str, Any]]:
    """The calls a command goes out as: one, or as many as the station's ItemsPerMessage
    limit of that call asks for (OCPP 2.0.1 B06-B08: more items per call are refused)."""
    instance = codec().items_limit_instance(version, action)
    if not instance:
        return [payload]
    limit = items_per_message(station, instance)
    if limit is None:
        return [payload]
    return codec().items_split(version, action, payload, limit)


def command_parts(command: Command) -> list[Command]:
    """A command and the later parts of its batch, in the order they are sent."""
    if command.batch_id:
        command = command.batch  # type: ignore[assignment]  # loaded on access
    return [command, *command.parts.order_by("id")]


def command_batch_response(command: Command) -> dict[str, Any] | None:
    """The answers of a split batch joined into one (the lists of every part, in order),
    or None while a part has no answer."""
    parts = command_parts(command)
    if any(not isinstance(part.response, dict) for part in parts):
        return None
    joined: dict[str, Any] = {}
    for part in parts:
        for key, value in part.response.items():  # type: ignore[union-attr]
            if isinstance(value, list):
                joined.setdefault(key, []).extend(value)
            else:
                joined.setdefault(key, value)
    return joined


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

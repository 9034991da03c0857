"""Local authorization lists: what each station holds, sent as differential updates.

Which tokens belong on a station's list is the charging domain's knowledge: it registers the
function that computes the lists (`local_list_source_register`, from `sessions.apps`), so the
queue asks for lists without importing the app above it. This module sends a list as a
differential update against what the station last confirmed, or in full, remembers versions,
and applies the station's answer; a refused differential update is followed by a full one.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from django.core.exceptions import ImproperlyConfigured
from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from stations.commands.models import Command, LocalAuthList
from stations.commands.services import command_create
from stations.commands.signals import local_list_refused
from stations.models import ChargingStation

# Entries of a list: uid -> {status, type, expiry?, group?}, version-neutral.
Entries = dict[str, dict[str, Any]]
# The lists the given stations should hold now, by station id.
LocalListSource = Callable[[Sequence[ChargingStation]], dict[int, Entries]]

_source: LocalListSource | None = None


def local_list_source_register(source: LocalListSource) -> None:
    global _source
    _source = source


def _lists_for(stations: Sequence[ChargingStation]) -> dict[int, Entries]:
    if _source is None:
        raise ImproperlyConfigured(
            "No local list source is registered: 'sessions' must be installed"
        )
    return _source(stations)


def local_list_sync(*, station_id: int, full: bool = False) -> int | None:
    """Bring one station's list up to date; returns the command id, or None if in sync."""
    station = ChargingStation.objects.get(pk=station_id)
    if not station.protocol:
        return None
    command = local_list_send(station=station, entries=_lists_for([station])[station.pk], full=full)
    return command.pk if command else None


def local_lists_update() -> list[int]:
    """Send differential updates to the online stations whose list changed.

    The diff against each station's confirmed entries is empty for stations the change does
    not touch, and nothing is sent to them. Stations that never received a list are left alone
    until an operator syncs them.
    """
    stations = list(
        ChargingStation.objects.filter(is_online=True)
        .exclude(protocol="")
        .filter(Q(local_list__isnull=False) & Q(local_list__version__gt=0))
        .select_related("local_list")
    )
    if not stations:
        return []
    lists = _lists_for(stations)
    commands = []
    for station in stations:
        command = local_list_send(station=station, entries=lists[station.pk], full=False)
        if command is not None:
            commands.append(command.pk)
    return commands


@transaction.atomic
def local_list_send(
    *,
    station: ChargingStation,
    entries: dict[str, dict[str, Any]],
    full: bool,
) -> Command | None:
    """Send the station the list `entries` (uid -> entry), as a differential update against
    what it last confirmed, or in full. Returns None when there is nothing to send.

    The new version and entries are remembered as pending until the station accepts them.
    """
    state, _ = LocalAuthList.objects.select_for_update().get_or_create(station=station)
    if state.status == LocalAuthList.Status.UNSUPPORTED and not full:
        return None
    full = full or state.version == 0
    if full:
        changes = [{"id_token": uid, **entry} for uid, entry in sorted(entries.items())]
    else:
        changes = [
            {"id_token": uid, **entry}
            for uid, entry in sorted(entries.items())
            if state.entries.get(uid) != entry
        ] + [{"id_token": uid} for uid in sorted(set(state.entries) - set(entries))]
        if not changes:
            return None
    version = max(state.version, state.pending_version or 0) + 1
    command = command_create(
        station=station,
        verb="send_local_list",
        origin=Command.Origin.LOCAL_LIST,
        params={
            "version": version,
            "update_type": "Full" if full else "Differential",
            "entries": changes,
        },
    )
    state.pending_command = command
    state.pending_version = version
    state.pending_entries = entries
    state.pending_full = full
    state.status = LocalAuthList.Status.PENDING
    state.save()
    return command


def local_list_result_record(*, command: Command) -> None:
    """Apply a station's answer to a SendLocalList. Failed or VersionMismatch after a
    differential update asks for a full resync."""
    state = LocalAuthList.objects.select_for_update().filter(station_id=command.station_id).first()
    if state is None or state.pending_command_id != command.pk:
        return
    answer = command.result
    resync = False
    if command.status == Command.Status.ACCEPTED:
        state.version = state.pending_version or state.version
        state.entries = state.pending_entries or {}
        state.status = LocalAuthList.Status.IN_SYNC
        state.synced_at = timezone.now()
    elif answer == "NotSupported":
        state.status = LocalAuthList.Status.UNSUPPORTED
    else:
        state.status = LocalAuthList.Status.FAILED
        resync = answer in ("VersionMismatch", "Failed") and not state.pending_full
    # pending_version stays: versions sent only ever grow, even past a refused update.
    state.pending_command = None
    state.pending_entries = None
    state.save()
    if resync:
        # A Celery worker sends the whole list (stations.commands.receivers).
        local_list_refused.send(sender=LocalAuthList, station_id=command.station_id)

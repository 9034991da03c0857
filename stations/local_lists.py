"""Local authorization lists: what each station may hold offline, computed from the tokens.

An edge between the charging domain (tokens live in `sessions`, app label `charging`) and the
stations domain (list versions and commands): `stations` must not import `sessions` at module
level, so the token queries are imported inside the functions.

Which tokens a station holds: tokens marked `in_local_list`, except those restricted to other
sites or stations; 1.6 stations only hold uids of at most 20 characters. Blocked and expired
tokens stay on the list with that status, so an offline station refuses them rather than
falling back to its cache or to accepting unknown ids.
"""

from __future__ import annotations

from typing import Any

from django.db.models import Q
from django.utils import timezone

from stations.models import ChargingStation

# OCPI token types of roaming tokens have no 2.0.1 IdTokenEnumType; the nearest ones.
_TYPE_201 = {
    "RFID": "ISO14443",
    "APP_USER": "Central",
    "AD_HOC_USER": "Central",
    "OTHER": "Central",
}


def _tokens() -> list[Any]:
    from sessions.models import IdToken

    return list(
        IdToken.objects.filter(in_local_list=True)
        .select_related("group", "account", "driver")
        .prefetch_related("allowed_locations", "allowed_stations")
    )


def _owner_inactive(token: Any) -> bool:
    return any(
        owner is not None and not getattr(owner, "is_active", True)
        for owner in (token.account, token.driver)
    )


def _status(token: Any, protocol: str, now: Any) -> str:
    """The authorization status an offline station should apply; a member inherits its
    group's block (as the authorization service decides online)."""
    group = token.group
    if token.blocked or (group is not None and group.blocked) or _owner_inactive(token):
        return "Blocked"
    if token.valid_until is not None and token.valid_until <= now:
        return "Expired"
    if token.valid_from is not None and token.valid_from > now:
        return "Invalid" if protocol == ChargingStation.Protocol.OCPP16 else "NotAtThisTime"
    return "Accepted"


def _entry(token: Any, protocol: str, now: Any) -> dict[str, Any]:
    status = _status(token, protocol, now)
    entry: dict[str, Any] = {"status": status}
    if protocol != ChargingStation.Protocol.OCPP16:
        entry["type"] = _TYPE_201.get(token.type, token.type)
    if token.valid_until is not None and status == "Accepted":
        entry["expiry"] = token.valid_until.isoformat()
    if token.group is not None and (
        protocol != ChargingStation.Protocol.OCPP16 or len(token.group.uid) <= 20
    ):
        entry["group"] = token.group.uid
    return entry


def _allowed(token: Any, station: ChargingStation) -> bool:
    locations = {location.pk for location in token.allowed_locations.all()}
    stations = {allowed.pk for allowed in token.allowed_stations.all()}
    if not locations and not stations:
        return True
    return station.pk in stations or (station.location_id in locations)


def local_list_entries(
    *, station: ChargingStation, tokens: list[Any] | None = None
) -> dict[str, dict[str, Any]]:
    """The list `station` should hold now: uid -> {status, expiry?, group?, type?}."""
    now = timezone.now()
    entries = {}
    for token in _tokens() if tokens is None else tokens:
        if station.protocol == ChargingStation.Protocol.OCPP16 and len(token.uid) > 20:
            continue
        if _allowed(token, station):
            entries[token.uid] = _entry(token, station.protocol, now)
    return entries


def local_list_sync(*, station_id: int, full: bool = False) -> int | None:
    """Bring one station's list up to date; returns the command id, or None if in sync."""
    from stations.command_services import local_list_send

    station = ChargingStation.objects.get(pk=station_id)
    if not station.protocol:
        return None
    command = local_list_send(
        station=station, entries=local_list_entries(station=station), full=full
    )
    return command.pk if command else None


def local_lists_update(*, token_ids: list[int]) -> list[int]:
    """Send differential updates to the online stations whose list the changed tokens touch.

    A station is affected when a changed token is (or was) on its list: the diff against
    the station's confirmed entries is empty for the others, and nothing is sent to them.
    Stations that never received a list are left alone until an operator syncs them.
    """
    from stations.command_services import local_list_send

    tokens = _tokens()
    commands = []
    stations = (
        ChargingStation.objects.filter(is_online=True)
        .exclude(protocol="")
        .filter(Q(local_list__isnull=False) & Q(local_list__version__gt=0))
        .select_related("local_list")
    )
    for station in stations:
        command = local_list_send(
            station=station,
            entries=local_list_entries(station=station, tokens=tokens),
            full=False,
        )
        if command is not None:
            commands.append(command.pk)
    return commands

"""Local authorization lists: which tokens each station may hold offline, and with what status.

Which tokens a station holds: tokens marked `in_local_list`, except those restricted to other
sites or stations, and those whose uid is longer than the station's protocol can carry (1.6
idTags hold 20 characters). Blocked and expired tokens stay on the list with that status, so an
offline station refuses them rather than falling back to its cache or to accepting unknown ids.

Entries are version-neutral ({status, type, expiry?, group?}, statuses as the authorization
service names them); the OCPP edge writes them in the station's protocol. Sending and version
bookkeeping belong to the command queue (`stations.commands.local_lists`), which asks this
module for the lists.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from django.utils import timezone

from sessions.models import IdToken
from sessions.services import AuthStatus
from stations.commands.codec import codec
from stations.models import ChargingStation


def _tokens() -> list[IdToken]:
    return list(
        IdToken.objects.filter(in_local_list=True)
        .select_related("group", "account", "driver")
        .prefetch_related("allowed_locations", "allowed_stations")
    )


def _owner_inactive(token: IdToken) -> bool:
    return any(owner is not None and not owner.is_active for owner in (token.account, token.driver))


def _status(token: IdToken, now: datetime) -> str:
    """The authorization status an offline station should apply; a member inherits its
    group's block (as the authorization service decides online)."""
    group = token.group
    if token.blocked or (group is not None and group.blocked) or _owner_inactive(token):
        return AuthStatus.BLOCKED
    if token.valid_until is not None and token.valid_until <= now:
        return AuthStatus.EXPIRED
    if token.valid_from is not None and token.valid_from > now:
        return AuthStatus.NOT_AT_THIS_TIME
    return AuthStatus.ACCEPTED


def _entry(token: IdToken, now: datetime) -> dict[str, Any]:
    status = _status(token, now)
    entry: dict[str, Any] = {"status": str(status), "type": token.type}
    if token.valid_until is not None and status == AuthStatus.ACCEPTED:
        entry["expiry"] = token.valid_until.isoformat()
    if token.group is not None:
        entry["group"] = token.group.uid
    return entry


def _allowed(token: IdToken, station: ChargingStation) -> bool:
    locations = {location.pk for location in token.allowed_locations.all()}
    stations = {allowed.pk for allowed in token.allowed_stations.all()}
    if not locations and not stations:
        return True
    return station.pk in stations or (station.location_id in locations)


def local_list_entries(stations: Sequence[ChargingStation]) -> dict[int, dict[str, dict[str, Any]]]:
    """The lists the stations should hold now, by station id: uid -> {status, type, expiry?,
    group?}. Registered with the command queue as its local list source (SessionsConfig)."""
    now = timezone.now()
    tokens = _tokens()
    lists: dict[int, dict[str, dict[str, Any]]] = {}
    for station in stations:
        longest = codec().id_token_max_length(station.protocol)
        lists[station.pk] = {
            token.uid: _entry(token, now)
            for token in tokens
            if len(token.uid) <= longest and _allowed(token, station)
        }
    return lists

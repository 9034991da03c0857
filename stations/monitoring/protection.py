"""Reconnect-flood protection at the OCPP handshake.

A station that connected more than MONITORING_RECONNECTS_PER_HOUR times within the last hour
is refused for MONITORING_RECONNECT_COOLDOWN_MINUTES: the consumer closes the handshake
before accepting it, which daphne answers with HTTP 403 (it cannot send a 429 there), and
logs one line per cool-down. The cool-down is a row (`ReconnectCooldown`), so every daphne
node refuses alike, with Redis away too; while one lasts, the `reconnect_refused` detector
keeps an incident open. Connections are counted from the start of the last cool-down, so a
station is not refused again at once for the connections that started the one before.

The frame rate of an accepted connection is the OCPP edge's own limit, not this one:
a token bucket per connection (`stations.ocpp.limits.RateLimiter`, OCPP_RATE_LIMIT_PER_SECOND
and _BURST) that refuses frames with a CALLERROR and closes the socket with 4008.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db import transaction
from django.db.models import Exists, F, Max, OuterRef
from django.utils import timezone

from stations.models import ChargingStation, StationConnection
from stations.monitoring import services
from stations.monitoring.models import IncidentEntry, IncidentType, ReconnectCooldown
from stations.monitoring.thresholds import limits

logger = logging.getLogger(__name__)


def reconnect_gate(*, station_id: int, now: datetime | None = None) -> datetime | None:
    """Before a station's connection is recorded: None to let it in, or the end of the
    cool-down it is refused until. A station let in costs three small indexed statements
    (its cool-down's refused count, the threshold row, its connections of the hour)."""
    now = now or timezone.now()
    active = ReconnectCooldown.objects.filter(station_id=station_id, until__gt=now)
    if active.update(refused=F("refused") + 1):
        return active.aggregate(at=Max("until"))["at"]
    limit = limits.MONITORING_RECONNECTS_PER_HOUR
    # Connections during a cool-down are refused, not recorded: the connections of the hour
    # that started no cool-down yet (none began after them) are the ones that count.
    later_cooldown = ReconnectCooldown.objects.filter(
        station_id=station_id, started_at__gt=OuterRef("connected_at")
    )
    connects = (
        StationConnection.objects.filter(
            station_id=station_id, connected_at__gte=now - timedelta(hours=1)
        )
        .filter(~Exists(later_cooldown))
        .count()
    )
    if connects < limit:
        return None
    return _cooldown_start(station_id=station_id, connects=connects, limit=limit, now=now)


@transaction.atomic
def _cooldown_start(*, station_id: int, connects: int, limit: int, now: datetime) -> datetime:
    minutes = limits.MONITORING_RECONNECT_COOLDOWN_MINUTES
    cooldown = ReconnectCooldown.objects.create(
        station_id=station_id,
        started_at=now,
        until=now + timedelta(minutes=minutes),
        connects=connects,
        refused=1,
    )
    identity = ChargingStation.objects.filter(pk=station_id).values_list("identity", flat=True)[0]
    logger.warning(
        "refusing %s for %d minutes: %d connections within the hour (limit %d)",
        identity,
        minutes,
        connects,
        limit,
    )
    title = (
        f"{identity} connected {connects} times in an hour: refused until "
        f"{cooldown.until:%H:%M} UTC"
    )
    incident, _ = services.incident_open_or_touch(
        type=IncidentType.RECONNECT_REFUSED,
        fingerprint=f"{IncidentType.RECONNECT_REFUSED}:{station_id}",
        station_id=station_id,
        severity="error",
        title=title,
        details={
            "connects": connects,
            "refused_handshakes": 1,
            "since": now.isoformat(),
            "until": cooldown.until.isoformat(),
        },
        now=now,
    )
    services.incident_entry_add(
        incident=incident,
        kind=IncidentEntry.Kind.REFUSED,
        message=f"handshakes refused for {minutes} min (HTTP 403): {connects} connections "
        f"within the hour, the limit is {limit}",
        at=now,
    )
    return cooldown.until

"""Which stations are energy-managed, known without a query on the OCPP hot path, and the one
debounced entry that schedules an allocation run of a site.

1. Each process keeps the map station id -> site id of managed stations and reads it again
   after ENERGY_MANAGED_CACHE_SECONDS: a status or meter message of a station on a site without
   energy management costs a dictionary lookup, no query.
2. `site_allocate_soon` lets the first trigger of a burst schedule the run (a Redis key with
   `cache.add`, atomic); the run clears the key when it starts, so a trigger that arrives during
   a run schedules the next one. One run per site at a time is the run's row lock.
"""

from __future__ import annotations

import logging
import threading
import time

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

_lock = threading.Lock()
_managed: dict[int, int] = {}
_loaded_at = -1e9


def _load() -> dict[int, int]:
    from stations.energy.models import ConnectorEnergy

    rows = ConnectorEnergy.objects.filter(node__site__enabled=True).values_list(
        "connector__station_id", "node__site_id"
    )
    return dict(rows)


def managed_sites(*, refresh: bool = False) -> dict[int, int]:
    """station id -> site id of every energy-managed station (cached per process)."""
    global _managed, _loaded_at
    now = time.monotonic()
    if refresh or now - _loaded_at > settings.ENERGY_MANAGED_CACHE_SECONDS:
        with _lock:
            if refresh or now - _loaded_at > settings.ENERGY_MANAGED_CACHE_SECONDS:
                _managed = _load()
                _loaded_at = time.monotonic()
    return _managed


def managed_cache_fresh() -> bool:
    """Whether a lookup now needs no query (the async edge asks before it looks up)."""
    return time.monotonic() - _loaded_at <= settings.ENERGY_MANAGED_CACHE_SECONDS


def forget() -> None:
    """Drop this process's cached map (the topology changed here)."""
    global _loaded_at
    _loaded_at = -1e9


# Meter values come steadily and change little: they wait longer than a session or a status,
# under their own key, so a session start never waits behind them.
SLOW_REASONS = frozenset({"meter", "periodic"})
SITE_ALLOCATE_TASK = "stations.energy.tasks.site_allocate"


def _pending_key(site_id: int, lane: str) -> str:
    return f"energy:pending:{site_id}:{lane}"


def _site_allocate_send(site_id: int, reason: str, countdown: float) -> None:
    """Queue one run of the site (stations.energy.tasks.site_allocate) by the task's name: the
    tasks module calls this one, so importing it here would be an import cycle."""
    from cpo.celery import app

    app.send_task(SITE_ALLOCATE_TASK, args=(site_id, reason), countdown=countdown)


def site_allocate_soon(site_id: int, reason: str, countdown: float | None = None) -> bool:
    """Schedule one allocation run of the site unless one is already scheduled."""
    slow = reason in SLOW_REASONS
    if countdown is None:
        countdown = (
            settings.ENERGY_METER_DEBOUNCE_SECONDS if slow else settings.ENERGY_DEBOUNCE_SECONDS
        )
    delay = max(countdown, 0.0)
    lane = "slow" if slow else "fast"
    try:
        # Short-lived: a scheduled run that is lost (a worker killed with its queue) holds
        # the next trigger back for seconds, not longer.
        if not cache.add(_pending_key(site_id, lane), reason, timeout=int(delay) + 5):
            return False
    except Exception:  # Redis away: run anyway, the row lock keeps it one at a time
        logger.warning("energy debounce unavailable for site %s", site_id)
    _site_allocate_send(site_id, reason, delay)
    return True


def site_timer(site_id: int, countdown: float) -> bool:
    """A run at a known time (a profile's refresh, an offline station's dead-man, a deferred
    increase), unless an earlier one is already set."""
    due = time.time() + max(countdown, 0.0)
    key = f"energy:timer:{site_id}"
    try:
        current = cache.get(key)
        if current is not None and time.time() < current <= due + 1:
            return False
        cache.set(key, due, timeout=int(countdown) + 60)
    except Exception:
        logger.warning("energy timer unavailable for site %s", site_id)
    _site_allocate_send(site_id, "timer", max(countdown, 0.0))
    return True


def site_allocate_started(site_id: int) -> None:
    """The run begins: a trigger from now on schedules another run."""
    try:
        cache.delete_many([_pending_key(site_id, "fast"), _pending_key(site_id, "slow")])
    except Exception:
        logger.warning("energy debounce unavailable for site %s", site_id)


def station_event(station_id: int, reason: str) -> bool:
    """A managed station reported something that may change the allocation (sync)."""
    site_id = managed_sites().get(station_id)
    if site_id is None:
        return False
    site_allocate_soon(site_id, reason)
    return True

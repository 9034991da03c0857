"""How loaded this node's OCPP edge is, and the BootNotification answer that spreads a storm.

Saturation is measured where a boot storm hurts: the charger database calls of this process
that are waiting or running (`stations.ocpp.db.db` counts them; a counter, no I/O). When more
than OCPP_BOOT_PENDING_BACKLOG are in flight, a BootNotification is answered Pending at once,
without touching the database, with an interval drawn at random from 5 s up to a bound that
grows with the load (10 s at the threshold, 60 s at six times it): the charger boots again
then (OCPP 1.6 and 2.0.1: a Pending station sends BootNotification again after the interval,
and nothing else but heartbeats meanwhile). The station's record is not changed; its next boot
is answered as usual. Each deferred boot is counted (`/healthz`, "ocpp").
"""

from __future__ import annotations

import random

from django.conf import settings

from cpo.lib.load import LOAD

PENDING_INTERVAL_MIN = 5
PENDING_INTERVAL_MAX = 60


def call_started() -> None:
    LOAD.in_flight += 1


def call_ended() -> None:
    LOAD.in_flight -= 1


def boot_deferral() -> int | None:
    """The Pending interval (seconds) for a BootNotification arriving now, or None when the
    node has room for it."""
    threshold = settings.OCPP_BOOT_PENDING_BACKLOG
    if threshold < 0 or LOAD.in_flight < threshold:
        return None
    load = (LOAD.in_flight + 1) / max(1, threshold)
    bound = min(PENDING_INTERVAL_MAX, max(2 * PENDING_INTERVAL_MIN, round(10 * load)))
    LOAD.boots_deferred += 1
    return random.randint(PENDING_INTERVAL_MIN, bound)  # noqa: S311 - jitter, not a secret

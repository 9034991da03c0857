"""Facts the network domain announces to higher apps (roaming pushes them to partners).

Unlike the on-commit signals of sessions, these are sent INSIDE the transaction of the
change, so that a receiver can write its outbox rows with it (both commit or neither).
Receivers must therefore be quick, must not call out, and must cost nothing when they have
nothing to do (the OCPP path sends them).
"""

from __future__ import annotations

from django.dispatch import Signal

# evse_status_changed(sender=Evse, station_id=int, evse_id=int): a connector's live status
# moved (a StatusNotification that was not older than the stored one).
evse_status_changed = Signal()
# station_state_changed(sender=ChargingStation, station_ids=list[int]): every EVSE of these
# stations may show another status (connected, disconnected, connector 0's status).
station_state_changed = Signal()
# network_changed(sender=Location, location_ids=list[int], station_ids=list[int]): sites, or
# the sites of these stations, were edited (structure, not status: the site, a station, a new
# EVSE or connector): partners get the whole site again.
network_changed = Signal()

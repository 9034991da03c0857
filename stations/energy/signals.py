"""Facts energy management announces to itself and to others.

`energy_changed` is sent inside the transaction of the change (a node, a limit, a connector,
a station taken back) or after a run that deferred an increase; its receiver schedules one
debounced allocation run of the site after the commit.
"""

from __future__ import annotations

from django.dispatch import Signal

# energy_changed(sender=EnergySite, site_id=int, reason=str, countdown=float | None)
energy_changed = Signal()

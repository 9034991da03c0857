"""The port other rooms subscribe to. (Monitoring's own alert e-mails and webhook events are
written by the services in the same transaction, `alerts.py`; these are for the rest.)

Both are sent inside the transaction that opens or resolves the incident, so a receiver that
writes a durable row (an outbox message) writes it in that same transaction: the alert exists
exactly when the incident change does. A receiver must not do slow I/O itself.
"""

from __future__ import annotations

from django.dispatch import Signal

# incident_opened(sender=Incident, incident_id=int, type=str, severity=str, station_id=int)
incident_opened = Signal()
# incident_resolved(sender=Incident, incident_id=int, type=str, severity=str, station_id=int)
incident_resolved = Signal()

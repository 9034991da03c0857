"""Reads of monitoring for the panel: open-incident counts and a station's active incidents."""

from __future__ import annotations

from typing import Any

from django.db.models import Count

from cpo.lib.formatting import admin_url, iso
from stations.monitoring.models import Incident


def incident_counts() -> dict[str, int]:
    """Active incidents (open and acknowledged) by state, and open ones by severity."""
    rows = (
        Incident.objects.filter(state__in=Incident.ACTIVE_STATES)
        .order_by()
        .values("state", "severity")
        .annotate(n=Count("pk"))
    )
    counts = {"open": 0, "acknowledged": 0, "critical": 0, "error": 0, "warning": 0}
    for row in rows:
        counts[row["state"]] += row["n"]
        if row["state"] == Incident.State.OPEN:
            counts[row["severity"]] += row["n"]
    return counts


def station_incidents(*, station_id: int, limit: int = 20) -> dict[str, Any]:
    """A station's active incidents, newest first, for the station page's section."""
    active = Incident.objects.filter(station_id=station_id, state__in=Incident.ACTIVE_STATES)
    return {
        "count": active.count(),
        "list_url": admin_url("monitoring_incident_changelist"),
        "items": [
            {
                "id": incident.pk,
                "type": incident.get_type_display(),
                "severity": incident.severity,
                "state": incident.get_state_display(),
                "title": incident.title,
                "first_seen_at": iso(incident.first_seen_at),
                "last_seen_at": iso(incident.last_seen_at),
                "url": admin_url("monitoring_incident_change", incident.pk),
            }
            for incident in active.order_by("-last_seen_at")[:limit]
        ],
    }

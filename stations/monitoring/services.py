"""Writes of monitoring: open or touch, acknowledge and resolve incidents, and their timelines."""

from __future__ import annotations

import functools
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import IntegrityError, transaction
from django.utils import timezone

from cpo.outbox import webhooks
from stations.monitoring import alerts, signals
from stations.monitoring.models import Incident, IncidentEntry, UptimeExclusion


class IncidentError(Exception):
    """A change an incident cannot take; `message` is safe to show."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _announce(signal: Any, incidents: list[Incident], *, now: datetime) -> None:
    opened = signal is signals.incident_opened
    event = "incident.opened" if opened else "incident.resolved"
    for incident in incidents:
        signal.send(
            sender=Incident,
            incident_id=incident.pk,
            type=incident.type,
            severity=incident.severity,
            station_id=incident.station_id,
        )
        # Integrators' webhooks, in this transaction: the event exists exactly when the change
        # does.
        webhooks.event_publish(
            type=event,
            payload=functools.partial(_incident_payload, incident),
            subject=f"incident:{incident.pk}",
            dedupe_key=f"{event}:{incident.pk}",
        )
    # The alert rules' e-mails, in the same transaction, through the same outbox.
    alerts.alerts_write(
        event=alerts.OPENED if opened else alerts.RESOLVED, incidents=incidents, now=now
    )


def _incident_payload(incident: Incident) -> dict[str, Any]:
    station = incident.station
    return {
        "id": incident.pk,
        "type": incident.type,
        "severity": incident.severity,
        "state": incident.state,
        "title": incident.title,
        "station": station.identity if station is not None else None,
        "evse_id": incident.evse.evse_id if incident.evse is not None else None,
        "connector_id": incident.connector.connector_id if incident.connector is not None else None,
        "first_seen_at": webhooks.iso(incident.first_seen_at),
        "last_seen_at": webhooks.iso(incident.last_seen_at),
        "resolved_at": webhooks.iso(incident.resolved_at),
    }


@transaction.atomic
def incident_entry_add(
    *,
    incident: Incident,
    kind: str,
    message: str = "",
    step: str = "",
    command: Any = None,
    user: Any = None,
    at: datetime | None = None,
) -> IncidentEntry:
    return IncidentEntry.objects.create(
        incident=incident,
        kind=kind,
        message=message[:500],
        step=step,
        command=command,
        user=user if getattr(user, "pk", None) else None,
        at=at or timezone.now(),
    )


def incident_open_or_touch(
    *,
    type: str,  # noqa: A002 - the incident's own field name
    fingerprint: str,
    station_id: int,
    severity: str,
    title: str,
    details: dict[str, Any] | None = None,
    evse_id: int | None = None,
    connector_id: int | None = None,
    session_id: int | None = None,
    now: datetime | None = None,
) -> tuple[Incident, bool]:
    """The active incident of `fingerprint`, its last_seen moved to `now`, or a new one with a
    "detected" entry (and `incident_opened` sent). Returns (incident, opened)."""
    now = now or timezone.now()
    for attempt in range(2):
        try:
            return _open_or_touch(
                type=type,
                fingerprint=fingerprint,
                station_id=station_id,
                severity=severity,
                title=title,
                details=details or {},
                evse_id=evse_id,
                connector_id=connector_id,
                session_id=session_id,
                now=now,
            )
        except IntegrityError:
            # Another pass opened the same fingerprint between our read and our insert: the
            # partial unique constraint refused the second one; touch that one instead.
            if attempt:
                raise
    raise AssertionError("unreachable")


@transaction.atomic
def _open_or_touch(
    *,
    type: str,  # noqa: A002
    fingerprint: str,
    station_id: int,
    severity: str,
    title: str,
    details: dict[str, Any],
    evse_id: int | None,
    connector_id: int | None,
    session_id: int | None,
    now: datetime,
) -> tuple[Incident, bool]:
    incident = (
        Incident.objects.select_for_update()
        .filter(fingerprint=fingerprint, state__in=Incident.ACTIVE_STATES)
        .first()
    )
    if incident is not None:
        incident.last_seen_at = now
        incident.details = details or incident.details
        fields = ["last_seen_at", "details"]
        every = settings.MONITORING_STILL_PRESENT_NOTE_MINUTES * 60
        if (now - incident.noted_at).total_seconds() >= every:
            incident.noted_at = now
            fields.append("noted_at")
            incident_entry_add(
                incident=incident, kind=IncidentEntry.Kind.STILL_PRESENT, message=title, at=now
            )
        incident.save(update_fields=fields)
        return incident, False
    with transaction.atomic():  # a savepoint: a lost race leaves the outer transaction usable
        incident = Incident.objects.create(
            type=type,
            fingerprint=fingerprint[:200],
            station_id=station_id,
            evse_id=evse_id,
            connector_id=connector_id,
            session_id=session_id,
            severity=severity,
            title=title[:255],
            details=details,
            first_seen_at=now,
            last_seen_at=now,
            noted_at=now,
        )
    incident_entry_add(incident=incident, kind=IncidentEntry.Kind.DETECTED, message=title, at=now)
    _announce(signals.incident_opened, [incident], now=now)
    return incident, True


@transaction.atomic
def incidents_open(
    *,
    type: str,  # noqa: A002
    findings: list[dict[str, Any]],
    now: datetime | None = None,
) -> list[Incident]:
    """Open many new incidents of one type at once (a detector pass after a mass event: a
    site's power cut), each with its "detected" entry and its `incident_opened`: a few
    statements for all instead of a transaction each. `findings` are the keyword arguments of
    `incident_open_or_touch` but `type` and `now`, for fingerprints with no active incident.

    Two passes opening the same fingerprint at once: the partial unique constraint refuses
    the later, whose transaction rolls back whole; its next pass finds them open.
    """
    now = now or timezone.now()
    incidents = Incident.objects.bulk_create(
        Incident(
            type=type,
            fingerprint=f["fingerprint"][:200],
            station_id=f["station_id"],
            evse_id=f.get("evse_id"),
            connector_id=f.get("connector_id"),
            session_id=f.get("session_id"),
            severity=f["severity"],
            title=f["title"][:255],
            details=f.get("details") or {},
            first_seen_at=now,
            last_seen_at=now,
            noted_at=now,
        )
        for f in findings
    )
    if incidents and incidents[0].pk is None:  # a backend that returns no ids (not ours)
        fingerprints = [i.fingerprint for i in incidents]
        incidents = list(
            Incident.objects.filter(
                fingerprint__in=fingerprints, state__in=Incident.ACTIVE_STATES
            ).order_by("pk")
        )
    IncidentEntry.objects.bulk_create(
        IncidentEntry(incident=i, kind=IncidentEntry.Kind.DETECTED, message=i.title, at=now)
        for i in incidents
    )
    _announce(signals.incident_opened, incidents, now=now)
    return incidents


@transaction.atomic
def incident_resolve(
    *, incident_id: int, reason: str = "the condition cleared", now: datetime | None = None
) -> Incident | None:
    """Resolve an active incident (its condition cleared); None if it was not active."""
    now = now or timezone.now()
    incident = (
        Incident.objects.select_for_update()
        .filter(pk=incident_id, state__in=Incident.ACTIVE_STATES)
        .first()
    )
    if incident is None:
        return None
    incident.state = Incident.State.RESOLVED
    incident.resolved_at = now
    incident.playbook_next_at = None
    if incident.playbook_state == Incident.PlaybookState.RUNNING:
        incident.playbook_state = Incident.PlaybookState.DONE
    incident.save(update_fields=["state", "resolved_at", "playbook_next_at", "playbook_state"])
    incident_entry_add(incident=incident, kind=IncidentEntry.Kind.RESOLVED, message=reason, at=now)
    _announce(signals.incident_resolved, [incident], now=now)
    return incident


@transaction.atomic
def incidents_resolve(
    *, incident_ids: list[int], reason: str = "the condition cleared", now: datetime | None = None
) -> list[Incident]:
    """Resolve many active incidents at once (the faults of a site cleared together): what
    `incident_resolve` does for one, in a few statements for all. Returns the ones resolved."""
    now = now or timezone.now()
    incidents = list(
        Incident.objects.select_for_update()
        .filter(pk__in=incident_ids, state__in=Incident.ACTIVE_STATES)
        .order_by("pk")
    )
    ids = [incident.pk for incident in incidents]
    Incident.objects.filter(pk__in=ids, playbook_state=Incident.PlaybookState.RUNNING).update(
        playbook_state=Incident.PlaybookState.DONE
    )
    Incident.objects.filter(pk__in=ids).update(
        state=Incident.State.RESOLVED, resolved_at=now, playbook_next_at=None
    )
    IncidentEntry.objects.bulk_create(
        IncidentEntry(incident_id=pk, kind=IncidentEntry.Kind.RESOLVED, message=reason, at=now)
        for pk in ids
    )
    for incident in incidents:
        incident.state = Incident.State.RESOLVED
        incident.resolved_at = now
    _announce(signals.incident_resolved, incidents, now=now)
    return incidents


@transaction.atomic
def incident_acknowledge(*, incident_id: int, user: Any, note: str = "") -> Incident:
    """An operator takes an open incident on. Its playbook keeps running (a human looking at
    it does not fix it); it still resolves by itself when the condition clears."""
    incident = Incident.objects.select_for_update().filter(pk=incident_id).first()
    if incident is None:
        raise IncidentError(f"no incident {incident_id}")
    if incident.state != Incident.State.OPEN:
        raise IncidentError(f"incident #{incident_id} is {incident.get_state_display().lower()}")
    incident.state = Incident.State.ACKNOWLEDGED
    incident.acknowledged_at = timezone.now()
    incident.acknowledged_by = user
    incident.save(update_fields=["state", "acknowledged_at", "acknowledged_by"])
    who = user.get_username() if user is not None else "someone"
    incident_entry_add(
        incident=incident,
        kind=IncidentEntry.Kind.ACKNOWLEDGED,
        message=f"acknowledged by {who}" + (f": {note}" if note else ""),
        user=user,
        at=incident.acknowledged_at,
    )
    return incident


# --- excluded time of the uptime figures -------------------------------------------------------


class ExclusionError(Exception):
    """A change an uptime exclusion cannot take; `message` is safe to show."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


@transaction.atomic
def uptime_exclusion_create(
    *,
    user: Any,
    starts_at: datetime,
    ends_at: datetime,
    reason: str,
    note: str,
    location_id: int | None = None,
    station_id: int | None = None,
    evse_id: int | None = None,
) -> UptimeExclusion:
    """Enter excluded time; it waits for another operator's approval before it counts."""
    if reason not in UptimeExclusion.Reason.values:
        raise ExclusionError(f"unknown reason {reason!r}")
    exclusion = UptimeExclusion(
        starts_at=starts_at,
        ends_at=ends_at,
        reason=reason,
        note=(note or "").strip()[:500],
        location_id=location_id,
        station_id=station_id,
        evse_id=evse_id,
        created_by=user,
        created_at=timezone.now(),
    )
    try:
        exclusion.full_clean(exclude=["created_by", "location", "station", "evse"])
    except ValidationError as exc:
        raise ExclusionError(
            "; ".join(f"{k}: {' '.join(v)}" for k, v in exc.message_dict.items())
        ) from exc
    exclusion.save()
    return exclusion


def _decide(*, exclusion_id: int, user: Any, state: str) -> UptimeExclusion:
    exclusion = UptimeExclusion.objects.select_for_update().filter(pk=exclusion_id).first()
    if exclusion is None:
        raise ExclusionError("no such exclusion")
    if exclusion.state != UptimeExclusion.State.PENDING:
        raise ExclusionError(f"already {exclusion.get_state_display().lower()}")
    if exclusion.created_by_id == user.pk:
        raise ExclusionError("four eyes: another operator must decide on an exclusion you entered")
    exclusion.state = state
    exclusion.decided_by = user
    exclusion.decided_at = timezone.now()
    exclusion.save(update_fields=["state", "decided_by", "decided_at"])
    return exclusion


@transaction.atomic
def uptime_exclusion_approve(*, exclusion_id: int, user: Any) -> UptimeExclusion:
    """Approve a pending exclusion entered by someone else: from now on it counts."""
    return _decide(exclusion_id=exclusion_id, user=user, state=UptimeExclusion.State.APPROVED)


@transaction.atomic
def uptime_exclusion_reject(*, exclusion_id: int, user: Any) -> UptimeExclusion:
    """Reject a pending exclusion entered by someone else: it never counts."""
    return _decide(exclusion_id=exclusion_id, user=user, state=UptimeExclusion.State.REJECTED)

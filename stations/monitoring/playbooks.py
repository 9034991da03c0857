"""Remediation: the playbook of an incident's type, one step per pass, within hard limits.

Limits, checked before every step (and, for the playbook itself, when it is saved):
- stations marked "manual only" get no step at all;
- at most one automatic reset per station per the playbook's reset period, whatever incident
  asked for it (counted from the timelines of all the station's incidents);
- never a reset while a session runs on the station, unless that session is the incident's;
- no unlock while a session runs on the connector;
- exponential back-off: step n waits backoff_seconds x 2^n after the step before;
- at most `site_concurrency` stations of one site worked on at once (the others wait).

Every command goes through the durable queue (`command_create`) and every step, skip and
answer is an entry on the incident's timeline.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from sessions.models import ChargingSession
from sessions.services import Forgotten, sessions_forgotten_close
from stations.commands.models import Command
from stations.commands.services import command_create
from stations.commands.verbs import CommandError
from stations.models import ChargingStation, Connector
from stations.monitoring.models import (
    AFTER_RESOLVED,
    RESET_STEPS,
    Incident,
    IncidentEntry,
    Playbook,
)
from stations.monitoring.services import incident_entry_add

logger = logging.getLogger(__name__)

FORGOTTEN_STUCK = Forgotten(
    "EstimatedStuck", "monitoring found the transaction stuck and the station did not end it"
)

Kind = IncidentEntry.Kind

# How long after an offline station came back its reconciliation may still start.
RECONCILE_WITHIN = timedelta(hours=1)


class Skip(Exception):
    """A step that must not run now; its message goes on the timeline."""


def playbooks_run(*, now: datetime | None = None) -> int:
    """Advance every incident whose playbook step is due; returns the steps taken. Most
    playbooks work on active incidents; those of AFTER_RESOLVED types (a station offline)
    run once the incident resolved, within RECONCILE_WITHIN of its resolution."""
    now = now or timezone.now()
    playbooks = {p.incident_type: p for p in Playbook.objects.filter(enabled=True)}
    if not playbooks:
        return 0
    while_active = [t for t in playbooks if t not in AFTER_RESOLVED]
    after = [t for t in playbooks if t in AFTER_RESOLVED]
    due = (
        Incident.objects.filter(
            Q(state__in=Incident.ACTIVE_STATES, type__in=while_active)
            | Q(
                state=Incident.State.RESOLVED,
                type__in=after,
                resolved_at__gte=now - RECONCILE_WITHIN,
            ),
            station__manual_only=False,
        )
        .exclude(playbook_state__in=[Incident.PlaybookState.DONE, Incident.PlaybookState.ESCALATED])
        .filter(Q(playbook_next_at__isnull=True) | Q(playbook_next_at__lte=now))
        .order_by("first_seen_at", "pk")
        .values_list("pk", "type")
    )
    taken = 0
    for incident_id, type_ in list(due):
        try:
            taken += int(
                playbook_advance(incident_id=incident_id, playbook=playbooks[type_], now=now)
            )
        except Exception:  # one incident's failure never stops the others
            logger.exception("playbook step of incident %s failed", incident_id)
    return taken


@transaction.atomic
def playbook_advance(*, incident_id: int, playbook: Playbook, now: datetime) -> bool:
    """Take the next step of `playbook` on the incident if it is due; True if one was taken."""
    incident = (
        # Only the incident's row is locked (PostgreSQL locks no nullable side of a join).
        Incident.objects.select_for_update(of=("self",))
        .select_related("station", "connector__evse", "session", "playbook_command")
        .filter(pk=incident_id)
        .first()
    )
    if incident is None or incident.station is None or incident.station.manual_only:
        return False
    after = incident.type in AFTER_RESOLVED
    if after != (incident.state == Incident.State.RESOLVED):
        return False  # an active incident of these waits for the station; others are done
    if incident.playbook_next_at and incident.playbook_next_at > now:
        return False
    command = incident.playbook_command
    if command is not None:
        if not command.is_final:
            return False  # its answer first
        answer = command.result or command.get_status_display()
        detail = command.error_description or command.error_code
        incident_entry_add(
            incident=incident,
            kind=Kind.ACTION_RESULT,
            message=f"{command.action}: {answer}" + (f" ({detail})" if detail else ""),
            command=command,
            at=now,
        )
        incident.playbook_command = None
    if incident.playbook_step >= len(playbook.steps) and after:
        # Reconciled: the steps were questions; their answers did the rest.
        incident.playbook_state = Incident.PlaybookState.DONE
        incident.playbook_next_at = None
        incident.save(update_fields=["playbook_state", "playbook_next_at", "playbook_command"])
        return False
    if incident.playbook_step >= len(playbook.steps):
        incident.playbook_state = Incident.PlaybookState.ESCALATED
        incident.playbook_next_at = None
        incident.save(update_fields=["playbook_state", "playbook_next_at", "playbook_command"])
        incident_entry_add(
            incident=incident,
            kind=Kind.ESCALATED,
            message=f"the playbook's {len(playbook.steps)} steps did not clear it: an operator "
            "is needed",
            at=now,
        )
        return False
    if incident.playbook_state != Incident.PlaybookState.RUNNING and _site_busy(incident, playbook):
        return False  # waits for a slot of its site; nothing to log every minute
    step = playbook.steps[incident.playbook_step]
    try:
        commands = STEP_RUNNERS[step](incident, playbook, now)
    except Skip as skip:
        incident_entry_add(
            incident=incident, kind=Kind.ACTION_SKIPPED, message=str(skip), step=step, at=now
        )
        commands = []
    except CommandError as error:
        incident_entry_add(
            incident=incident, kind=Kind.ACTION_SKIPPED, message=error.message, step=step, at=now
        )
        commands = []
    for sent in commands:
        incident_entry_add(
            incident=incident,
            kind=Kind.ACTION_TAKEN,
            message=f"{sent.action} {sent.payload}",
            step=step,
            command=sent,
            at=now,
        )
    incident.playbook_command = commands[-1] if commands else None
    incident.playbook_state = Incident.PlaybookState.RUNNING
    incident.playbook_next_at = now + playbook.backoff_after(incident.playbook_step)
    incident.playbook_step += 1
    incident.save(
        update_fields=["playbook_command", "playbook_state", "playbook_next_at", "playbook_step"]
    )
    return bool(commands)


def _station(incident: Incident) -> ChargingStation:
    station = incident.station
    assert station is not None  # playbook_advance runs none without one
    return station


def _site_busy(incident: Incident, playbook: Playbook) -> bool:
    site = _station(incident).location_id
    if site is None:
        return False
    working = (
        Incident.objects.filter(
            station__location_id=site,
            state__in=Incident.ACTIVE_STATES,
            playbook_state=Incident.PlaybookState.RUNNING,
        )
        .exclude(station_id=incident.station_id)
        .values("station_id")
        .distinct()
        .count()
    )
    return working >= playbook.site_concurrency


# --- the steps ---------------------------------------------------------------------------------


def _send(incident: Incident, verb: str, **params: Any) -> Command:
    return command_create(
        station=_station(incident), verb=verb, params=params, origin=Command.Origin.SYSTEM
    )


def _evse_no(incident: Incident) -> int:
    if incident.connector is None:
        raise Skip("the incident names no connector")
    return incident.connector.evse.evse_id


def _station_sessions(incident: Incident) -> Any:
    return ChargingSession.objects.filter(
        station_id=incident.station_id, status=ChargingSession.Status.ACTIVE
    )


def step_status(incident: Incident, playbook: Playbook, now: datetime) -> list[Command]:
    return [
        _send(incident, "trigger_message", message="StatusNotification", evse_id=_evse_no(incident))
    ]


def step_availability_cycle(incident: Incident, playbook: Playbook, now: datetime) -> list[Command]:
    evse = _evse_no(incident)
    if _station_sessions(incident).filter(evse_id=evse).exists():
        raise Skip("a session runs on this EVSE: no availability change under it")
    # One after the other on the queue, which sends a station's commands in order.
    return [
        _send(incident, "change_availability", operative=False, evse_id=evse),
        _send(incident, "change_availability", operative=True, evse_id=evse),
    ]


def step_unlock(incident: Incident, playbook: Playbook, now: datetime) -> list[Command]:
    evse = _evse_no(incident)
    if _station_sessions(incident).filter(evse_id=evse).exists():
        raise Skip("a session runs on this connector: it is not unlocked under the driver")
    connector = incident.connector
    assert connector is not None
    return [_send(incident, "unlock_connector", evse_id=evse, connector_id=connector.connector_id)]


def _reset(kind: str) -> Any:
    def step(incident: Incident, playbook: Playbook, now: datetime) -> list[Command]:
        period = timedelta(minutes=playbook.reset_period_minutes)
        last = (
            IncidentEntry.objects.filter(
                incident__station_id=incident.station_id,
                kind=Kind.ACTION_TAKEN,
                step__in=RESET_STEPS,
                at__gt=now - period,
            )
            .order_by("-at")
            .first()
        )
        if last is not None:
            raise Skip(
                f"the station was reset automatically at {last.at:%Y-%m-%d %H:%M} UTC: at most "
                f"one automatic reset per {playbook.reset_period_minutes} min"
            )
        running = _station_sessions(incident)
        if incident.session_id is not None:
            running = running.exclude(pk=incident.session_id)
        if running.exists():
            raise Skip("a session runs on the station: no reset during a session")
        return [_send(incident, "reset", type=kind)]

    return step


def _session(incident: Incident) -> ChargingSession:
    session = incident.session
    if session is None or session.status != ChargingSession.Status.ACTIVE:
        raise Skip("the session is no longer active")
    return session


def step_transaction_status(incident: Incident, playbook: Playbook, now: datetime) -> list[Command]:
    session = _session(incident)
    if _station(incident).protocol in ("ocpp2.0.1", "ocpp2.1"):
        return [_send(incident, "get_transaction_status", transaction_id=session.transaction_id)]
    return [_send(incident, "trigger_message", message="MeterValues", evse_id=session.evse_id)]


def step_remote_stop(incident: Incident, playbook: Playbook, now: datetime) -> list[Command]:
    return [_send(incident, "remote_stop", transaction_id=_session(incident).transaction_id)]


def step_close_estimated(incident: Incident, playbook: Playbook, now: datetime) -> list[Command]:
    session = _session(incident)
    closed = sessions_forgotten_close(
        station_id=_station(incident).pk, session_ids=[session.pk], forgotten=FORGOTTEN_STUCK
    )
    incident_entry_add(
        incident=incident,
        kind=Kind.ACTION_TAKEN,
        step="close_estimated",
        message="closed on its last meter value, flagged estimated"
        if closed
        else "asked the station for the transaction (GetTransactionStatus); its answer closes it",
        at=now,
    )
    return []


def step_reconnect_status(incident: Incident, playbook: Playbook, now: datetime) -> list[Command]:
    """The station is back: every connector's status. One that answers Available closes the
    sessions open there that the station forgot (the charging services, on its report)."""
    station = incident.station
    assert station is not None
    connectors = Connector.objects.filter(station_id=station.pk).select_related("evse")
    commands = []
    for connector in connectors.order_by("evse__evse_id", "connector_id"):
        params: dict[str, Any] = {
            "message": "StatusNotification",
            "evse_id": connector.evse.evse_id,
        }
        if station.protocol == "ocpp2.0.1":
            params["connector_id"] = connector.connector_id
        commands.append(_send(incident, "trigger_message", **params))
    if not commands:
        raise Skip("the station has no connectors on record")
    return commands


def step_reconnect_sessions(incident: Incident, playbook: Playbook, now: datetime) -> list[Command]:
    """The station is back: each session still open on it is asked for (GetTransactionStatus
    on 2.0.1, whose answer of not ongoing closes it on its last meter value, flagged
    estimated; TriggerMessage MeterValues on 1.6, where the connector's Available status
    does the closing)."""
    sessions = list(_station_sessions(incident).order_by("pk"))
    if not sessions:
        raise Skip("no session open on the station: nothing to reconcile")
    commands = []
    for session in sessions:
        if incident.station is not None and incident.station.protocol == "ocpp2.0.1":
            commands.append(
                _send(incident, "get_transaction_status", transaction_id=session.transaction_id)
            )
        else:
            commands.append(
                _send(incident, "trigger_message", message="MeterValues", evse_id=session.evse_id)
            )
    return commands


STEP_RUNNERS = {
    "reconnect_status": step_reconnect_status,
    "reconnect_sessions": step_reconnect_sessions,
    "status": step_status,
    "availability_cycle": step_availability_cycle,
    "unlock": step_unlock,
    "soft_reset": _reset("soft"),
    "hard_reset": _reset("hard"),
    "transaction_status": step_transaction_status,
    "remote_stop": step_remote_stop,
    "close_estimated": step_close_estimated,
}

"""The detectors: set-based queries that say which malfunctions are present now.

Each detector is one or two queries over the whole fleet (no per-station Python loop over
healthy stations) returning the findings it sees; `monitoring_pass` reconciles them with the
active incidents of the detector's type: new fingerprints open incidents, present ones are
touched in one UPDATE, and the ones no longer found are resolved. The thresholds are the
MONITORING_* settings (README "Monitoring and incidents").
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import Count, Exists, F, Max, OuterRef, Q, Subquery
from django.db.models.functions import Coalesce
from django.utils import timezone

from cpo.outbox.email import KIND as EMAIL_KIND
from cpo.outbox.models import OutboxMessage
from sessions.models import AuthorizationDecision, ChargingSession
from stations.commands.models import Command
from stations.commands.services import command_create
from stations.commands.verbs import CommandError
from stations.models import (
    CertificateSigningRequest,
    ChargingStation,
    Connector,
    ConnectorStatusEvent,
    DeviceModelVariable,
    Evse,
    StationBoot,
    StationCertificate,
    StationConnection,
    StationEvent,
)
from stations.monitoring import services
from stations.monitoring.models import (
    FirmwareTarget,
    Incident,
    IncidentEntry,
    IncidentType,
    ReconnectCooldown,
    StationProbe,
)
from stations.monitoring.thresholds import limits, pass_thresholds

logger = logging.getLogger(__name__)

Severity = Incident.Severity


@dataclass(frozen=True)
class Finding:
    fingerprint: str
    station_id: int | None
    severity: str
    title: str
    details: dict[str, Any] = field(default_factory=dict)
    evse_id: int | None = None  # the Evse row
    connector_id: int | None = None  # the Connector row
    session_id: int | None = None


# --- connectors --------------------------------------------------------------------------------


def _connectors_in(status: str, minutes: int, now: datetime) -> Any:
    return (
        Connector.objects.filter(status=status, status_at__lte=now - timedelta(minutes=minutes))
        .filter(station__registration_status=ChargingStation.RegistrationStatus.ACCEPTED)
        .order_by()
    )


def _where(row: dict[str, Any]) -> str:
    return f"{row['station__identity']} {row['evse__evse_id']}/{row['connector_id']}"


def connector_faulted(now: datetime) -> list[Finding]:
    """Connectors Faulted for MONITORING_FAULTED_MINUTES, with the error code, info and the
    vendor's error code of the report that faulted them (the status history keeps those)."""
    latest = ConnectorStatusEvent.objects.filter(
        station_id=OuterRef("station_id"),
        evse_id=OuterRef("evse__evse_id"),
        status="Faulted",
    ).order_by("-timestamp", "-pk")
    rows = (
        _connectors_in("Faulted", limits.MONITORING_FAULTED_MINUTES, now)
        .annotate(
            vendor_error_code=Subquery(latest.values("vendor_error_code")[:1]),
            vendor_id=Subquery(latest.values("vendor_id")[:1]),
        )
        .values(
            "pk",
            "station_id",
            "evse_id",
            "station__identity",
            "evse__evse_id",
            "connector_id",
            "error_code",
            "info",
            "vendor_error_code",
            "vendor_id",
            "status_at",
        )
    )
    findings = []
    for row in rows:
        code = row["error_code"] or "no error code"
        vendor = f", vendor error {row['vendor_error_code']}" if row["vendor_error_code"] else ""
        findings.append(
            Finding(
                fingerprint=f"{IncidentType.CONNECTOR_FAULTED}:{row['pk']}",
                station_id=row["station_id"],
                severity=Severity.ERROR,
                title=f"{_where(row)} faulted: {code}{vendor}",
                details={
                    "error_code": row["error_code"],
                    "info": row["info"],
                    "vendor_id": row["vendor_id"] or "",
                    "vendor_error_code": row["vendor_error_code"] or "",
                    "since": row["status_at"].isoformat(),
                },
                evse_id=row["evse_id"],
                connector_id=row["pk"],
            )
        )
    return findings


def _stuck(kind: str, status: str, minutes: int, now: datetime) -> list[Finding]:
    rows = _connectors_in(status, minutes, now).values(
        "pk", "station_id", "evse_id", "station__identity", "evse__evse_id", "connector_id",
        "status_at",
    )  # fmt: skip
    return [
        Finding(
            fingerprint=f"{kind}:{row['pk']}",
            station_id=row["station_id"],
            severity=Severity.WARNING,
            title=f"{_where(row)} in {status} for more than {minutes} min",
            details={"since": row["status_at"].isoformat()},
            evse_id=row["evse_id"],
            connector_id=row["pk"],
        )
        for row in rows
    ]


def stuck_preparing(now: datetime) -> list[Finding]:
    return _stuck(
        IncidentType.STUCK_PREPARING, "Preparing", limits.MONITORING_PREPARING_MINUTES, now
    )


def stuck_finishing(now: datetime) -> list[Finding]:
    return _stuck(
        IncidentType.STUCK_FINISHING, "Finishing", limits.MONITORING_FINISHING_MINUTES, now
    )


# --- sessions ----------------------------------------------------------------------------------


def _active_sessions() -> Any:
    return ChargingSession.objects.filter(status=ChargingSession.Status.ACTIVE).order_by()


def _session_connector(status: str) -> Any:
    return Connector.objects.filter(
        station_id=OuterRef("station_id"), evse__evse_id=OuterRef("evse_id"), status=status
    )


_SESSION_FIELDS = ("pk", "station_id", "station__identity", "evse_id", "transaction_id")


def stuck_transaction(now: datetime) -> list[Finding]:
    """Active sessions with no meter value and no event for MONITORING_STUCK_TRANSACTION_MINUTES,
    or running longer than MONITORING_MAX_SESSION_HOURS."""
    quiet = now - timedelta(minutes=limits.MONITORING_STUCK_TRANSACTION_MINUTES)
    too_old = now - timedelta(hours=limits.MONITORING_MAX_SESSION_HOURS)
    rows = (
        _active_sessions()
        .annotate(last_meter=Coalesce("meter_last_at", "started_at"))
        .filter(Q(last_meter__lte=quiet, updated_at__lte=quiet) | Q(started_at__lte=too_old))
        .values(*_SESSION_FIELDS, "last_meter", "started_at")
    )
    findings = []
    for row in rows:
        if row["started_at"] <= too_old:
            why = f"running for more than {limits.MONITORING_MAX_SESSION_HOURS} h"
        else:
            why = f"no meter values for {limits.MONITORING_STUCK_TRANSACTION_MINUTES} min"
        findings.append(
            Finding(
                fingerprint=f"{IncidentType.STUCK_TRANSACTION}:{row['pk']}",
                station_id=row["station_id"],
                severity=Severity.WARNING,
                title=f"Transaction {row['transaction_id']} on {row['station__identity']} "
                f"{row['evse_id']}: {why}",
                details={
                    "transaction_id": row["transaction_id"],
                    "last_meter_at": row["last_meter"].isoformat(),
                },
                session_id=row["pk"],
            )
        )
    return findings


def no_energy(now: datetime) -> list[Finding]:
    """Active sessions whose connector has been Charging for MONITORING_NO_ENERGY_MINUTES while
    the session delivered less than MONITORING_NO_ENERGY_WH."""
    since = now - timedelta(minutes=limits.MONITORING_NO_ENERGY_MINUTES)
    charging = _session_connector("Charging").filter(status_at__lte=since)
    rows = (
        _active_sessions()
        .filter(started_at__lte=since, energy_wh__lt=limits.MONITORING_NO_ENERGY_WH)
        .filter(Exists(charging))
        .values(*_SESSION_FIELDS, "energy_wh")
    )
    return [
        Finding(
            fingerprint=f"{IncidentType.NO_ENERGY}:{row['pk']}",
            station_id=row["station_id"],
            severity=Severity.WARNING,
            title=f"{row['station__identity']} {row['evse_id']} charging for "
            f"{limits.MONITORING_NO_ENERGY_MINUTES} min with {row['energy_wh']} Wh",
            details={"transaction_id": row["transaction_id"], "energy_wh": str(row["energy_wh"])},
            session_id=row["pk"],
        )
        for row in rows
    ]


def ghost_session(now: datetime) -> list[Finding]:
    """Sessions open on a connector that says Available, both for more than
    MONITORING_GHOST_SESSION_MINUTES: the station charges nothing there (it forgot the session,
    or never reported the start's status), yet the session runs on."""
    grace = now - timedelta(minutes=limits.MONITORING_GHOST_SESSION_MINUTES)
    available = _session_connector("Available").filter(status_at__lte=grace)
    rows = (
        _active_sessions()
        .filter(started_at__lte=grace)
        .filter(Exists(available))
        .values(*_SESSION_FIELDS)
    )
    return [
        Finding(
            fingerprint=f"{IncidentType.GHOST_SESSION}:{row['pk']}",
            station_id=row["station_id"],
            severity=Severity.WARNING,
            title=f"Session {row['transaction_id']} open on {row['station__identity']} "
            f"{row['evse_id']}, which is Available",
            details={"transaction_id": row["transaction_id"]},
            session_id=row["pk"],
        )
        for row in rows
    ]


def auth_rejected_burst(now: datetime) -> list[Finding]:
    """Stations that refused more than MONITORING_AUTH_REJECTED_COUNT authorizations within
    the last MONITORING_AUTH_REJECTED_WINDOW_MINUTES (a broken reader, a token being tried)."""
    window = limits.MONITORING_AUTH_REJECTED_WINDOW_MINUTES
    rows = (
        AuthorizationDecision.objects.filter(
            created_at__gte=now - timedelta(minutes=window), station__isnull=False
        )
        .exclude(status="Accepted")
        .order_by()
        .values("station_id", "station__identity")
        .annotate(refused=Count("pk"))
        .filter(refused__gt=limits.MONITORING_AUTH_REJECTED_COUNT)
    )
    return [
        Finding(
            fingerprint=f"{IncidentType.AUTH_REJECTED_BURST}:{row['station_id']}",
            station_id=row["station_id"],
            severity=Severity.WARNING,
            title=f"{row['station__identity']}: {row['refused']} authorizations refused in "
            f"{window} min",
            details={"refused": row["refused"], "window_minutes": window},
        )
        for row in rows
    ]


# --- connectivity ------------------------------------------------------------------------------


def station_flapping(now: datetime) -> list[Finding]:
    """Stations that connected more than MONITORING_FLAPPING_CONNECTS_PER_HOUR times in the
    last hour (the connection history)."""
    limit = limits.MONITORING_FLAPPING_CONNECTS_PER_HOUR
    rows = (
        StationConnection.objects.filter(connected_at__gte=now - timedelta(hours=1))
        .order_by()
        .values("station_id", "station__identity")
        .annotate(connects=Count("pk"))
        .filter(connects__gt=limit)
    )
    return [
        Finding(
            fingerprint=f"{IncidentType.STATION_FLAPPING}:{row['station_id']}",
            station_id=row["station_id"],
            severity=Severity.WARNING,
            title=f"{row['station__identity']} connected {row['connects']} times in an hour",
            details={"connects": row["connects"], "limit": limit},
        )
        for row in rows
    ]


def reboot_loop(now: datetime) -> list[Finding]:
    """Stations that booted more than MONITORING_REBOOTS_PER_DAY times in 24 hours, not
    counting the boots that followed one of our accepted Resets within
    MONITORING_REBOOT_AFTER_RESET_MINUTES (the boot history)."""
    limit = limits.MONITORING_REBOOTS_PER_DAY
    after = timedelta(minutes=limits.MONITORING_REBOOT_AFTER_RESET_MINUTES)
    ours = Command.objects.filter(
        station_id=OuterRef("station_id"),
        action="Reset",
        status=Command.Status.ACCEPTED,
        completed_at__lte=OuterRef("booted_at"),
        completed_at__gte=OuterRef("booted_at") - after,
    )
    rows = (
        StationBoot.objects.filter(booted_at__gte=now - timedelta(days=1))
        .filter(~Exists(ours))
        .order_by()
        .values("station_id", "station__identity")
        .annotate(boots=Count("pk"))
        .filter(boots__gt=limit)
    )
    return [
        Finding(
            fingerprint=f"{IncidentType.REBOOT_LOOP}:{row['station_id']}",
            station_id=row["station_id"],
            severity=Severity.ERROR,
            title=f"{row['station__identity']} booted {row['boots']} times in 24 h "
            "(not after our resets)",
            details={"boots": row["boots"], "limit": limit},
        )
        for row in rows
    ]


def heartbeat_gap(now: datetime) -> list[Finding]:
    """Stations whose socket is open but that sent no frame for their heartbeat interval plus
    OCPP_LAST_SEEN_WRITE_INTERVAL (how stale last_seen_at may be) plus
    MONITORING_HEARTBEAT_GAP_SECONDS: alive on the wire, silent in the protocol. The
    candidates are read by the partial index of online stations by last_seen_at."""
    slack = settings.OCPP_LAST_SEEN_WRITE_INTERVAL + limits.MONITORING_HEARTBEAT_GAP_SECONDS
    shortest = min(settings.OCPP_HEARTBEAT_INTERVAL, 10)
    rows = (
        ChargingStation.objects.filter(
            is_online=True, last_seen_at__lte=now - timedelta(seconds=shortest + slack)
        )
        .order_by()
        .values("pk", "identity", "heartbeat_interval", "last_seen_at")
    )
    findings = []
    for row in rows:
        interval = row["heartbeat_interval"] or settings.OCPP_HEARTBEAT_INTERVAL
        last_seen = row["last_seen_at"]
        assert last_seen is not None  # filtered on it
        silent = (now - last_seen).total_seconds()
        if silent <= interval + slack:
            continue
        findings.append(
            Finding(
                fingerprint=f"{IncidentType.HEARTBEAT_GAP}:{row['pk']}",
                station_id=row["pk"],
                severity=Severity.WARNING,
                title=f"{row['identity']} connected but silent for {int(silent)} s "
                f"(heartbeat interval {interval} s)",
                details={
                    "last_seen_at": last_seen.isoformat(),
                    "heartbeat_interval": interval,
                },
            )
        )
    return findings


def reconnect_refused(now: datetime) -> list[Finding]:
    """Stations in a reconnect cool-down (refused at the handshake, `protection.py`): the
    incident lasts as long as the cool-down."""
    rows = (
        ReconnectCooldown.objects.filter(until__gt=now)
        .order_by("station_id", "-until")
        .values("station_id", "station__identity", "until", "connects", "refused", "started_at")
    )
    found: dict[int, Finding] = {}
    for row in rows:
        if row["station_id"] in found:
            continue
        found[row["station_id"]] = Finding(
            fingerprint=f"{IncidentType.RECONNECT_REFUSED}:{row['station_id']}",
            station_id=row["station_id"],
            severity=Severity.ERROR,
            title=f"{row['station__identity']} connected {row['connects']} times in an hour: "
            f"refused until {row['until']:%H:%M} UTC",
            details={
                "connects": row["connects"],
                "refused_handshakes": row["refused"],
                "since": row["started_at"].isoformat(),
                "until": row["until"].isoformat(),
            },
        )
    return list(found.values())


# --- NotifyEvent (2.0.1) -----------------------------------------------------------------------

PROBLEM_TRIGGERS = ("Alerting", "Delta")


def device_problem(now: datetime) -> list[Finding]:
    """2.0.1 NotifyEvent: a component's problem the station reports (trigger Alerting, or a
    Delta of its Problem variable to true) and has not cleared since. The newest event of each
    component and variable decides: a cleared one (or Problem back to false) resolves it.
    Events older than MONITORING_DEVICE_EVENT_DAYS are history."""
    since = now - timedelta(days=limits.MONITORING_DEVICE_EVENT_DAYS)
    newer = StationEvent.objects.filter(
        station_id=OuterRef("station_id"),
        component=OuterRef("component"),
        component_instance=OuterRef("component_instance"),
        evse_id=OuterRef("evse_id"),
        connector_id=OuterRef("connector_id"),
        variable=OuterRef("variable"),
        variable_instance=OuterRef("variable_instance"),
    ).filter(
        Q(timestamp__gt=OuterRef("timestamp"))
        | Q(timestamp=OuterRef("timestamp"), pk__gt=OuterRef("pk"))
    )
    rows = (
        StationEvent.objects.filter(
            timestamp__gte=since, trigger__in=PROBLEM_TRIGGERS, cleared=False
        )
        .filter(~Exists(newer))
        .order_by()
        .values(
            "pk",
            "station_id",
            "station__identity",
            "trigger",
            "component",
            "component_instance",
            "evse_id",
            "connector_id",
            "variable",
            "variable_instance",
            "actual_value",
            "tech_code",
            "tech_info",
            "timestamp",
        )
    )
    findings = []
    for row in rows:
        value = str(row["actual_value"])
        if row["variable"] == "Problem" and value.lower() != "true":
            continue  # Problem reported false: the component is fine
        if row["trigger"] == "Delta" and row["variable"] != "Problem":
            continue  # a value changed, no problem said
        where = row["component"] + (
            f"[{row['component_instance']}]" if row["component_instance"] else ""
        )
        if row["evse_id"]:
            where += f" EVSE {row['evse_id']}" + (
                f"/{row['connector_id']}" if row["connector_id"] else ""
            )
        fields: dict[str, Any] = dict(row)
        key = ":".join(
            str(fields[k] or "")
            for k in (
                "component",
                "component_instance",
                "evse_id",
                "connector_id",
                "variable",
                "variable_instance",
            )
        )
        code = f" ({row['tech_code']})" if row["tech_code"] else ""
        findings.append(
            Finding(
                fingerprint=f"{IncidentType.DEVICE_PROBLEM}:{row['station_id']}:{key}"[:200],
                station_id=row["station_id"],
                severity=Severity.ERROR,
                title=f"{row['station__identity']} {where}: {row['variable']} = {value[:60]}{code}",
                details={
                    "trigger": row["trigger"],
                    "component": row["component"],
                    "variable": row["variable"],
                    "actual_value": value[:200],
                    "tech_code": row["tech_code"],
                    "tech_info": row["tech_info"],
                    "reported_at": row["timestamp"].isoformat(),
                },
                evse_id=_evse_row(row["station_id"], row["evse_id"]),
            )
        )
    return findings


def _evse_row(station_id: int, evse_no: int | None) -> int | None:
    if not evse_no:
        return None
    return (
        Evse.objects.filter(station_id=station_id, evse_id=evse_no)
        .values_list("pk", flat=True)
        .first()
    )


# --- fleet -------------------------------------------------------------------------------------


def firmware_mismatch(now: datetime) -> list[Finding]:
    """Stations whose reported firmware differs from the target of their vendor and model
    (`FirmwareTarget`, edited in the panel). Stations of a model without a target, or that
    never reported a version, are not judged."""
    target = FirmwareTarget.objects.filter(vendor=OuterRef("vendor"), model=OuterRef("model"))
    rows = (
        ChargingStation.objects.exclude(firmware_version="")
        .annotate(target=Subquery(target.values("version")[:1]))
        .filter(target__isnull=False)
        .exclude(firmware_version=F("target"))
        .order_by()
        .values("pk", "identity", "vendor", "model", "firmware_version", "target")
    )
    return [
        Finding(
            fingerprint=f"{IncidentType.FIRMWARE_MISMATCH}:{row['pk']}",
            station_id=row["pk"],
            severity=Severity.WARNING,
            title=f"{row['identity']} ({row['vendor']} {row['model']}) runs firmware "
            f"{row['firmware_version']}, the target is {row['target']}",
            details={
                "vendor": row["vendor"],
                "model": row["model"],
                "firmware_version": row["firmware_version"],
                "target": row["target"],
            },
        )
        for row in rows
    ]


SET_ACTIONS = ("ChangeConfiguration", "SetVariables")
REPORT_ACTIONS = ("GetConfiguration", "GetVariables")


def _ref(component: Any, variable: Any) -> str:
    """A 2.0.1 variable as the verbs name it: Component[instance].Variable[instance]."""

    def named(ref: Any) -> str:
        ref = ref or {}
        instance = ref.get("instance")
        return str(ref.get("name", "")) + (f"[{instance}]" if instance else "")

    return f"{named(component)}.{named(variable)}"


def _set_values(command: dict[str, Any]) -> dict[str, str]:
    payload = command["payload"] or {}
    if command["action"] == "ChangeConfiguration":
        return {str(payload.get("key", "")): str(payload.get("value", ""))}
    response = (command["response"] or {}).get("setVariableResult") or []
    accepted = {
        _ref(item.get("component"), item.get("variable"))
        for item in response
        if item.get("attributeStatus") in ("Accepted", "RebootRequired")
    }
    values = {}
    for item in payload.get("setVariableData") or []:
        key = _ref(item.get("component"), item.get("variable"))
        if key in accepted:
            values[key] = str(item.get("attributeValue", ""))
    return values


def _reported_values(command: dict[str, Any]) -> dict[str, str]:
    response = command["response"] or {}
    if command["action"] == "GetConfiguration":
        return {
            str(item.get("key", "")): str(item.get("value", ""))
            for item in response.get("configurationKey") or []
            if "value" in item
        }
    return {
        _ref(item.get("component"), item.get("variable")): str(item.get("attributeValue", ""))
        for item in response.get("getVariableResult") or []
        if item.get("attributeStatus") == "Accepted" and "attributeValue" in item
    }


def configuration_drift(now: datetime) -> list[Finding]:
    """A value we set (ChangeConfiguration / SetVariables the station accepted, within
    MONITORING_DRIFT_DAYS) that the station reported differently afterwards: in the answer to
    a later GetConfiguration / GetVariables, or in a NotifyReport (the device model). Only
    stations with such a set are read; the newest set of a key and the newest report after it
    decide. Secret values are compared in their stored, masked form (the same value masks
    the same way)."""
    since = now - timedelta(days=limits.MONITORING_DRIFT_DAYS)
    fields = (
        "pk",
        "station_id",
        "station__identity",
        "action",
        "payload",
        "response",
        "completed_at",
    )
    sets = (
        Command.objects.filter(
            action__in=SET_ACTIONS, status=Command.Status.ACCEPTED, completed_at__gte=since
        )
        .order_by("station_id", "completed_at", "pk")
        .values(*fields)
    )
    wanted: dict[int, dict[str, tuple[str, datetime]]] = {}
    identities: dict[int, str] = {}
    for command in sets:
        identities[command["station_id"]] = command["station__identity"]
        for key, value in _set_values(command).items():
            if key:
                wanted.setdefault(command["station_id"], {})[key] = (value, command["completed_at"])
    if not wanted:
        return []
    reported: dict[int, dict[str, tuple[str, datetime, str]]] = {}
    reports = (
        Command.objects.filter(
            station_id__in=list(wanted),
            action__in=REPORT_ACTIONS,
            status=Command.Status.ACCEPTED,
            completed_at__gte=since,
        )
        .order_by("completed_at", "pk")
        .values(*fields)
    )
    for command in reports:
        for key, value in _reported_values(command).items():
            reported.setdefault(command["station_id"], {})[key] = (
                value,
                command["completed_at"],
                command["action"],
            )
    variables = DeviceModelVariable.objects.filter(
        station_id__in=list(wanted), attribute_type="Actual", updated_at__gte=since
    ).values(
        "station_id",
        "component",
        "component_instance",
        "variable",
        "variable_instance",
        "value",
        "updated_at",
    )
    for row in variables:
        key = _ref(
            {"name": row["component"], "instance": row["component_instance"]},
            {"name": row["variable"], "instance": row["variable_instance"]},
        )
        if row["component"] == "OCPP16":
            key = row["variable"]
        seen = reported.setdefault(row["station_id"], {}).get(key)
        if seen is None or seen[1] < row["updated_at"]:
            reported[row["station_id"]][key] = (row["value"], row["updated_at"], "NotifyReport")
    findings = []
    for station_id, keys in wanted.items():
        for key, (value, set_at) in keys.items():
            seen = reported.get(station_id, {}).get(key)
            if seen is None or seen[1] <= set_at or seen[0] == value:
                continue
            findings.append(
                Finding(
                    fingerprint=f"{IncidentType.CONFIGURATION_DRIFT}:{station_id}:{key}"[:200],
                    station_id=station_id,
                    severity=Severity.WARNING,
                    title=f"{identities[station_id]} {key}: we set {value[:40]!r}, the station "
                    f"reports {seen[0][:40]!r}",
                    details={
                        "key": key,
                        "set_value": value,
                        "set_at": set_at.isoformat(),
                        "reported_value": seen[0],
                        "reported_at": seen[1].isoformat(),
                        "reported_by": seen[2],
                    },
                )
            )
    return findings


def _not_after(pem: str) -> datetime | None:
    try:
        from cryptography import x509

        certificate = x509.load_pem_x509_certificate(pem.strip().encode("ascii", "replace"))
    except Exception:  # not a certificate we can read: nothing to say about its expiry
        return None
    return certificate.not_valid_after_utc


def certificate_expiry(now: datetime) -> list[Finding]:
    """Station certificates that expire within MONITORING_CERTIFICATE_EXPIRY_DAYS (or have
    expired): the newest valid certificate our CA signed for each station and type
    (`stations.StationCertificate`), else the signed certificate kept on its newest signing
    request (`stations.CertificateSigningRequest.certificate`). Two queries."""
    horizon = now + timedelta(days=limits.MONITORING_CERTIFICATE_EXPIRY_DAYS)
    # What our CA signed (stations.pki): the newest valid certificate of each station and type,
    # its expiry a column.
    expiring: dict[tuple[int, str], tuple[datetime, str]] = {}
    for cert in (
        StationCertificate.objects.filter(status=StationCertificate.Status.VALID)
        .order_by("station_id", "certificate_type", "-not_after")
        .values("station_id", "station__identity", "certificate_type", "not_after")
    ):
        key = (cert["station_id"], cert["certificate_type"])
        if key not in expiring:
            expiring[key] = (cert["not_after"], cert["station__identity"])
    rows = (
        CertificateSigningRequest.objects.exclude(certificate="")
        .order_by("station_id", "certificate_type", "-received_at", "-pk")
        .values("pk", "station_id", "station__identity", "certificate_type", "certificate")
    )
    # A certificate kept on a signing request counts where our CA recorded none.
    for row in rows:
        key = (row["station_id"], row["certificate_type"])
        if key in expiring:
            continue
        not_after = _not_after(row["certificate"])
        if not_after is not None:
            expiring[key] = (not_after, row["station__identity"])
    findings = []
    for (station_id, certificate_type), (not_after, identity) in expiring.items():
        if not_after > horizon:
            continue
        kind = certificate_type or "station"
        expired = not_after <= now
        findings.append(
            Finding(
                fingerprint=f"{IncidentType.CERTIFICATE_EXPIRY}:{station_id}:{kind}",
                station_id=station_id,
                severity=Severity.ERROR if expired else Severity.WARNING,
                title=f"{identity}: {kind} certificate "
                + ("expired" if expired else "expires")
                + f" {not_after:%Y-%m-%d %H:%M} UTC",
                details={"certificate_type": kind, "not_after": not_after.isoformat()},
            )
        )
    return findings


def dead_letters(now: datetime) -> list[Finding]:
    """Outbox messages that became dead letters within MONITORING_DEAD_LETTER_HOURS, per
    destination (webhook endpoints, roaming partners; not alert e-mail, which would mail about
    itself): pushes nobody received, CDRs (topic cdr...) counted apart. Redelivering them, or
    time, clears it."""
    since = now - timedelta(hours=limits.MONITORING_DEAD_LETTER_HOURS)
    rows = (
        OutboxMessage.objects.filter(status=OutboxMessage.Status.DEAD, dead_at__gte=since)
        .exclude(destination_kind=EMAIL_KIND)
        .order_by()
        .values("destination_kind", "destination_ref")
        .annotate(
            dead=Count("pk"),
            cdrs=Count("pk", filter=Q(topic__startswith="cdr")),
            last=Max("dead_at"),
        )
    )
    return [
        Finding(
            fingerprint=f"{IncidentType.DEAD_LETTERS}:{row['destination_kind']}:{row['destination_ref']}",
            station_id=None,
            severity=Severity.ERROR,
            title=f"{row['dead']} undelivered {row['destination_kind']} message"
            f"{'s' if row['dead'] != 1 else ''} to {row['destination_kind']} "
            f"{row['destination_ref']}"
            + (f", {row['cdrs']} of them CDRs" if row["cdrs"] else "")
            + f" in {limits.MONITORING_DEAD_LETTER_HOURS} h",
            details={
                "destination_kind": row["destination_kind"],
                "destination_ref": row["destination_ref"],
                "dead_letters": row["dead"],
                "cdrs": row["cdrs"],
                "last_dead_at": row["last"].isoformat(),
            },
        )
        for row in rows
    ]


PROBE_FAILED = (Command.Status.FAILED, Command.Status.TIMED_OUT, Command.Status.EXPIRED)


def _silence_limit(heartbeat_interval: int | None) -> timedelta:
    interval = heartbeat_interval or settings.OCPP_HEARTBEAT_INTERVAL
    return timedelta(seconds=max(2 * interval, limits.MONITORING_OFFLINE_MIN_SECONDS))


def station_offline(now: datetime) -> list[Finding]:
    """Accepted stations silent for max(2 x heartbeat interval, MONITORING_OFFLINE_MIN_SECONDS)
    whose probe failed: a TriggerMessage Heartbeat through the command queue that timed out,
    failed or expired unsent (no socket to send it on). A silent station without a recent
    probe gets one now; one that answered its probe is not offline.

    Only silent stations are read (the candidates of the minimum silence, by last_seen_at);
    healthy ones are never loaded.
    """
    minimum = now - timedelta(seconds=limits.MONITORING_OFFLINE_MIN_SECONDS)
    probe = StationProbe.objects.filter(station_id=OuterRef("pk"))
    flagged = Incident.objects.filter(
        station_id=OuterRef("pk"),
        type=IncidentType.STATION_OFFLINE,
        state__in=Incident.ACTIVE_STATES,
    )
    candidates = (
        ChargingStation.objects.filter(
            registration_status=ChargingStation.RegistrationStatus.ACCEPTED,
            last_seen_at__lte=minimum,
        )
        .exclude(protocol="")
        .annotate(
            probe_sent_at=Subquery(probe.values("sent_at")[:1]),
            probe_status=Subquery(probe.values("command__status")[:1]),
            flagged=Exists(flagged),
        )
        .order_by()
        .values(
            "pk",
            "identity",
            "protocol",
            "heartbeat_interval",
            "last_seen_at",
            "is_online",
            "probe_sent_at",
            "probe_status",
            "flagged",
        )
    )
    findings = []
    repeat = timedelta(seconds=limits.MONITORING_PROBE_REPEAT_SECONDS)
    for row in candidates:
        silent_since = row["last_seen_at"]
        if now - silent_since <= _silence_limit(row["heartbeat_interval"]):
            continue
        sent = row["probe_sent_at"]
        fresh_probe = sent is not None and sent > silent_since and now - sent < repeat
        status = row["probe_status"]
        if not fresh_probe:
            sent = _probe(row["pk"], now)
            status = Command.Status.QUEUED if sent else status
        waiting = status in (Command.Status.QUEUED, Command.Status.SENT)
        # Offline: the probe failed; or the station is flagged already and its new probe has
        # no answer yet (a probe again is no reason to resolve). An answer means alive.
        if sent is None or not (status in PROBE_FAILED or (row["flagged"] and waiting)):
            continue
        minutes = int((now - silent_since).total_seconds() // 60)
        findings.append(
            Finding(
                fingerprint=f"{IncidentType.STATION_OFFLINE}:{row['pk']}",
                station_id=row["pk"],
                severity=Severity.CRITICAL,
                title=f"{row['identity']} offline: silent for {minutes} min, probe "
                f"{str(row['probe_status']).replace('_', ' ')}",
                details={
                    "last_seen_at": silent_since.isoformat(),
                    "probe_sent_at": sent.isoformat(),
                    "probe": row["probe_status"],
                    "socket_open": row["is_online"],
                },
            )
        )
    return findings


def _probe(station_id: int, now: datetime) -> datetime | None:
    """Queue a probe; when it was queued, or None if the station's protocol has no trigger."""
    station = ChargingStation.objects.get(pk=station_id)
    try:
        command = command_create(
            station=station,
            verb="trigger_message",
            params={"message": "Heartbeat"},
            origin=Command.Origin.SYSTEM,
            expires_in=timedelta(seconds=limits.MONITORING_PROBE_EXPIRY_SECONDS),
        )
    except CommandError as error:  # a protocol without the trigger: nothing to probe with
        logger.warning("cannot probe %s: %s", station.identity, error.message)
        return None
    StationProbe.objects.update_or_create(
        station_id=station_id, defaults={"command": command, "sent_at": now}
    )
    active = Incident.objects.filter(
        station_id=station_id,
        type=IncidentType.STATION_OFFLINE,
        state__in=Incident.ACTIVE_STATES,
    ).first()
    if active is not None:
        services.incident_entry_add(
            incident=active,
            kind=IncidentEntry.Kind.PROBE_SENT,
            message="TriggerMessage Heartbeat sent again",
            command=command,
            at=now,
        )
    return now


# --- the pass ----------------------------------------------------------------------------------

DETECTORS: dict[str, Callable[[datetime], list[Finding]]] = {
    IncidentType.STATION_OFFLINE: station_offline,
    IncidentType.STATION_FLAPPING: station_flapping,
    IncidentType.REBOOT_LOOP: reboot_loop,
    IncidentType.CONNECTOR_FAULTED: connector_faulted,
    IncidentType.STUCK_PREPARING: stuck_preparing,
    IncidentType.STUCK_FINISHING: stuck_finishing,
    IncidentType.STUCK_TRANSACTION: stuck_transaction,
    IncidentType.NO_ENERGY: no_energy,
    IncidentType.GHOST_SESSION: ghost_session,
    IncidentType.AUTH_REJECTED_BURST: auth_rejected_burst,
    IncidentType.HEARTBEAT_GAP: heartbeat_gap,
    IncidentType.RECONNECT_REFUSED: reconnect_refused,
    IncidentType.DEVICE_PROBLEM: device_problem,
    IncidentType.FIRMWARE_MISMATCH: firmware_mismatch,
    IncidentType.CONFIGURATION_DRIFT: configuration_drift,
    IncidentType.CERTIFICATE_EXPIRY: certificate_expiry,
    IncidentType.DEAD_LETTERS: dead_letters,
}


def reconcile(*, type: str, findings: list[Finding], now: datetime) -> dict[str, int]:  # noqa: A002
    """Open, touch and resolve the incidents of one type so that they match `findings`."""
    active = dict(
        Incident.objects.filter(type=type, state__in=Incident.ACTIVE_STATES).values_list(
            "fingerprint", "pk"
        )
    )
    found = {finding.fingerprint: finding for finding in findings}
    new = [finding for fingerprint, finding in found.items() if fingerprint not in active]
    services.incidents_open(
        type=type,
        findings=[
            {
                "fingerprint": f.fingerprint,
                "station_id": f.station_id,
                "severity": f.severity,
                "title": f.title,
                "details": f.details,
                "evse_id": f.evse_id,
                "connector_id": f.connector_id,
                "session_id": f.session_id,
            }
            for f in new
        ],
        now=now,
    )
    opened = len(new)
    still = [pk for fingerprint, pk in active.items() if fingerprint in found]
    # Still present: one UPDATE for all, and a timeline note for those not noted lately.
    Incident.objects.filter(pk__in=still).update(last_seen_at=now)
    due = now - timedelta(minutes=limits.MONITORING_STILL_PRESENT_NOTE_MINUTES)
    to_note = list(
        Incident.objects.filter(pk__in=still, noted_at__lte=due).values_list("pk", flat=True)
    )
    if to_note:
        IncidentEntry.objects.bulk_create(
            IncidentEntry(incident_id=pk, kind=IncidentEntry.Kind.STILL_PRESENT, at=now)
            for pk in to_note
        )
        Incident.objects.filter(pk__in=to_note).update(noted_at=now)
    gone = [pk for fingerprint, pk in active.items() if fingerprint not in found]
    resolved = len(services.incidents_resolve(incident_ids=gone, now=now)) if gone else 0
    return {"opened": opened, "present": len(still), "resolved": resolved}


def detectors_run(*, now: datetime | None = None) -> dict[str, dict[str, int]]:
    """One pass of every detector. A detector that fails is logged and skipped (its incidents
    are left as they were): one broken query never stops the others."""
    now = now or timezone.now()
    report: dict[str, dict[str, int]] = {}
    with pass_thresholds():  # the operators' thresholds, read once for the whole pass
        for type_, detector in DETECTORS.items():
            try:
                # One transaction per detector: a mass event (a site's power cut) opens its
                # hundreds of incidents in one commit, and a failure leaves that type untouched.
                with transaction.atomic():
                    report[type_] = reconcile(type=type_, findings=detector(now), now=now)
            except Exception:
                logger.exception("monitoring detector %s failed", type_)
    return report

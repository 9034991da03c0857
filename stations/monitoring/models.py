"""Incidents, their timelines, probes of silent stations, remediation playbooks and the alert
rules that say who gets e-mail for which incidents.

An incident is one malfunction, found by a detector (`detectors.py`) and identified by its
fingerprint (type and what it is about): while it is open or acknowledged, the same finding
touches it instead of opening another; once the condition clears, it is resolved, and a later
finding opens a new one.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import models
from django.utils import timezone

from stations.commands.models import Command
from stations.models import ChargingStation, Connector, Evse, validate_time_zone


class IncidentType(models.TextChoices):
    STATION_OFFLINE = "station_offline", "Station offline"
    STATION_FLAPPING = "station_flapping", "Station reconnecting repeatedly"
    REBOOT_LOOP = "reboot_loop", "Station rebooting repeatedly"
    CONNECTOR_FAULTED = "connector_faulted", "Connector faulted"
    STUCK_PREPARING = "stuck_preparing", "Connector stuck in Preparing"
    STUCK_FINISHING = "stuck_finishing", "Connector stuck in Finishing"
    STUCK_TRANSACTION = "stuck_transaction", "Transaction stuck"
    NO_ENERGY = "no_energy", "Charging without energy"
    GHOST_SESSION = "ghost_session", "Session open on an Available connector"
    AUTH_REJECTED_BURST = "auth_rejected_burst", "Burst of refused authorizations"
    # Opened by energy management (stations.energy), not by a detector.
    ENERGY_UNMANAGED = "energy_unmanaged", "Station refuses charging profiles"
    HEARTBEAT_GAP = "heartbeat_gap", "Heartbeat gap while connected"
    RECONNECT_REFUSED = "reconnect_refused", "Reconnect flood: refused for a cool-down"
    DEVICE_PROBLEM = "device_problem", "Problem reported by the station (NotifyEvent)"
    FIRMWARE_MISMATCH = "firmware_mismatch", "Firmware differs from the model's target"
    CONFIGURATION_DRIFT = "configuration_drift", "Configuration differs from what we set"
    CERTIFICATE_EXPIRY = "certificate_expiry", "Certificate close to expiry"
    DEAD_LETTERS = "dead_letters", "Undelivered outbox messages (dead letters)"


class Incident(models.Model):
    class Severity(models.TextChoices):
        CRITICAL = "critical", "Critical"
        ERROR = "error", "Error"
        WARNING = "warning", "Warning"

    class State(models.TextChoices):
        OPEN = "open", "Open"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"

    class PlaybookState(models.TextChoices):
        NONE = "", "No playbook"
        RUNNING = "running", "Running"
        DONE = "done", "Steps done"
        ESCALATED = "escalated", "Escalated to an operator"

    ACTIVE_STATES = (State.OPEN, State.ACKNOWLEDGED)

    type = models.CharField(max_length=32, choices=IncidentType.choices)
    fingerprint = models.CharField(max_length=200)
    severity = models.CharField(max_length=10, choices=Severity.choices)
    state = models.CharField(max_length=12, choices=State.choices, default=State.OPEN)
    # Empty only for what concerns no station (undelivered outbox messages of a destination).
    station = models.ForeignKey(
        ChargingStation,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="incidents",
    )
    evse = models.ForeignKey(
        Evse, on_delete=models.SET_NULL, null=True, blank=True, related_name="incidents"
    )
    connector = models.ForeignKey(
        Connector, on_delete=models.SET_NULL, null=True, blank=True, related_name="incidents"
    )
    session = models.ForeignKey(
        "charging.ChargingSession",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="incidents",
    )
    title = models.CharField(max_length=255)
    # What the detector saw, e.g. the connector's errorCode, info and vendorErrorCode.
    details = models.JSONField(default=dict, blank=True)
    first_seen_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)
    # When the timeline last said "still present" (MONITORING_STILL_PRESENT_NOTE_MINUTES).
    noted_at = models.DateTimeField(default=timezone.now, editable=False)
    acknowledged_at = models.DateTimeField(null=True, blank=True)
    acknowledged_by = models.ForeignKey(
        "cpo.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    resolved_at = models.DateTimeField(null=True, blank=True)
    # The playbook's progress on this incident: the next step, when it may run, the command
    # of the step in flight.
    playbook_state = models.CharField(
        max_length=10, choices=PlaybookState.choices, default=PlaybookState.NONE, blank=True
    )
    playbook_step = models.PositiveSmallIntegerField(default=0)
    playbook_next_at = models.DateTimeField(null=True, blank=True)
    playbook_command = models.ForeignKey(
        Command, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["-last_seen_at"]
        constraints = [
            # Deduplication: one open (or acknowledged) incident per fingerprint.
            models.UniqueConstraint(
                fields=["fingerprint"],
                condition=models.Q(state__in=["open", "acknowledged"]),
                name="incident_one_active_per_fingerprint",
            ),
            models.CheckConstraint(
                condition=~models.Q(state="resolved") | models.Q(resolved_at__isnull=False),
                name="incident_resolved_has_time",
            ),
        ]
        indexes = [
            models.Index(fields=["type", "state"], name="incident_type_state_idx"),
            models.Index(fields=["station", "state"], name="incident_station_state_idx"),
        ]
        permissions = [("acknowledge_incident", "Can acknowledge incidents")]

    def __str__(self) -> str:
        return f"#{self.pk} {self.title}"

    @property
    def is_active(self) -> bool:
        return self.state in self.ACTIVE_STATES


class IncidentEntry(models.Model):
    """One line of an incident's timeline."""

    class Kind(models.TextChoices):
        DETECTED = "detected", "Detected"
        STILL_PRESENT = "still_present", "Still present"
        PROBE_SENT = "probe_sent", "Probe sent"
        PROBE_FAILED = "probe_failed", "Probe failed"
        ACTION_TAKEN = "action_taken", "Action taken"
        ACTION_SKIPPED = "action_skipped", "Action skipped"
        ACTION_RESULT = "action_result", "Action result"
        ESCALATED = "escalated", "Escalated"
        REFUSED = "refused", "Connection refused"
        ACKNOWLEDGED = "acknowledged", "Acknowledged"
        RESOLVED = "resolved", "Resolved"

    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="entries")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    at = models.DateTimeField(default=timezone.now)
    message = models.CharField(max_length=500, blank=True)
    # The playbook step of an action (soft_reset, ...); resets are counted by it.
    step = models.CharField(max_length=32, blank=True)
    command = models.ForeignKey(
        Command, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    user = models.ForeignKey(
        "cpo.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["at", "pk"]
        verbose_name_plural = "incident entries"
        indexes = [models.Index(fields=["step", "at"], name="incident_entry_step_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.message}"


class StationProbe(models.Model):
    """The latest probe of a silent station: a TriggerMessage Heartbeat through the queue."""

    station = models.OneToOneField(ChargingStation, on_delete=models.CASCADE, related_name="+")
    command = models.ForeignKey(Command, on_delete=models.SET_NULL, null=True, related_name="+")
    sent_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"probe of {self.station_id} at {self.sent_at:%Y-%m-%d %H:%M:%S}"


# The steps a playbook may list, per incident type, in the order an operator would try them.
STEPS: dict[str, dict[str, str]] = {
    IncidentType.CONNECTOR_FAULTED: {
        "status": "Ask for the connector's status (TriggerMessage StatusNotification)",
        "availability_cycle": "Availability cycle: Inoperative, then Operative",
        "unlock": "Unlock the connector (only with no session on it)",
        "soft_reset": "Soft reset (only when the station is idle)",
        "hard_reset": "Hard reset (only when the station is idle)",
    },
    IncidentType.STUCK_TRANSACTION: {
        "transaction_status": "GetTransactionStatus (2.0.1) / TriggerMessage MeterValues (1.6)",
        "remote_stop": "Remote stop",
        "close_estimated": "Close the session on its last meter value, flagged estimated",
    },
    IncidentType.STUCK_PREPARING: {
        "status": "Ask for the connector's status (TriggerMessage StatusNotification)",
        "availability_cycle": "Availability cycle: Inoperative, then Operative",
    },
    IncidentType.STUCK_FINISHING: {
        "status": "Ask for the connector's status (TriggerMessage StatusNotification)",
        "unlock": "Unlock the connector (only with no session on it)",
    },
    # Run once the station is back (the incident resolved by its reconnection), not before.
    IncidentType.STATION_OFFLINE: {
        "reconnect_status": "Ask every connector for its status (TriggerMessage "
        "StatusNotification); one that says Available closes the sessions it forgot",
        "reconnect_sessions": "Ask for every open session: GetTransactionStatus (2.0.1), "
        "TriggerMessage MeterValues (1.6); one the station no longer has is closed on its last "
        "meter value, flagged estimated",
    },
}
# Incident types whose playbook runs after the incident resolved (the station came back).
AFTER_RESOLVED = frozenset({IncidentType.STATION_OFFLINE})
RESET_STEPS = frozenset({"soft_reset", "hard_reset"})


class Playbook(models.Model):
    """What monitoring tries, step by step, to clear an incident of one type.

    Steps run one per pass of the detectors, each after the back-off of the one before
    (`backoff_seconds` x 2^step); after the last one the incident is escalated to an operator.
    Saved only within the hard limits of the settings (MONITORING_RESET_PERIOD_MIN_MINUTES,
    MONITORING_BACKOFF_MIN_SECONDS, MONITORING_SITE_CONCURRENCY_MAX).
    """

    incident_type = models.CharField(
        max_length=32,
        unique=True,
        choices=[(t, label) for t, label in IncidentType.choices if t in STEPS],
    )
    enabled = models.BooleanField(default=False)
    steps = models.JSONField(
        default=list, help_text='Step names in order, e.g. ["status", "availability_cycle"].'
    )
    backoff_seconds = models.PositiveIntegerField(
        default=120, help_text="Wait after the first step; doubled after each further one."
    )
    reset_period_minutes = models.PositiveIntegerField(
        default=24 * 60, help_text="At most one automatic reset per station in this period."
    )
    site_concurrency = models.PositiveSmallIntegerField(
        default=2, help_text="At most this many stations of one site worked on at once."
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["incident_type"]

    def __str__(self) -> str:
        return f"Playbook for {self.get_incident_type_display()}"

    def save(self, *args: object, **kwargs: object) -> None:
        # The limits hold whoever writes the row: the admin, a shell, a data migration.
        self.full_clean()
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def backoff_after(self, step_index: int) -> timedelta:
        return timedelta(seconds=self.backoff_seconds * 2**step_index)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        allowed = STEPS.get(self.incident_type, {})
        steps = self.steps
        if not isinstance(steps, list) or not all(isinstance(s, str) for s in steps):
            raise ValidationError({"steps": "a list of step names"})
        unknown = [s for s in steps if s not in allowed]
        if unknown:
            errors["steps"] = (
                f"unknown step {unknown[0]!r} for this incident type (it has: {', '.join(allowed)})"
            )
        elif len(set(steps)) != len(steps):
            errors["steps"] = "each step at most once"
        if self.backoff_seconds < settings.MONITORING_BACKOFF_MIN_SECONDS:
            errors["backoff_seconds"] = (
                f"at least {settings.MONITORING_BACKOFF_MIN_SECONDS} s "
                "(MONITORING_BACKOFF_MIN_SECONDS)"
            )
        floor = settings.MONITORING_RESET_PERIOD_MIN_MINUTES
        if self.reset_period_minutes < floor:
            errors["reset_period_minutes"] = (
                f"at least {floor} minutes (MONITORING_RESET_PERIOD_MIN_MINUTES)"
            )
        if not 1 <= self.site_concurrency <= settings.MONITORING_SITE_CONCURRENCY_MAX:
            errors["site_concurrency"] = (
                f"1 to {settings.MONITORING_SITE_CONCURRENCY_MAX} (MONITORING_SITE_CONCURRENCY_MAX)"
            )
        if "steps" not in errors and "reset_period_minutes" not in errors:
            # Two resets of one incident must lie a whole reset period apart, or the playbook
            # would reset more often than its own limit allows.
            resets = [i for i, s in enumerate(steps) if s in RESET_STEPS]
            period = timedelta(minutes=self.reset_period_minutes)
            for first, second in zip(resets, resets[1:], strict=False):
                wait = sum((self.backoff_after(i) for i in range(first, second)), timedelta())
                if wait < period:
                    errors["steps"] = (
                        f"{steps[first]} and {steps[second]} would reset within "
                        f"{int(wait.total_seconds() // 60)} minutes, less than the reset period "
                        f"of {self.reset_period_minutes}: one automatic reset per period"
                    )
                    break
        if errors:
            raise ValidationError(errors)


SEVERITY_RANK: dict[str, int] = {
    Incident.Severity.WARNING: 1,
    Incident.Severity.ERROR: 2,
    Incident.Severity.CRITICAL: 3,
}


def _addresses(text: str) -> list[str]:
    return [a for a in (part.strip() for part in text.replace(",", "\n").splitlines()) if a]


class AlertRule(models.Model):
    """Who gets an e-mail for which incidents (`stations.monitoring.alerts`).

    An incident matches when its severity is at least `min_severity`, its station stands at
    `location` (any site when empty) and its type is one of `incident_types` (any when empty).
    Inside the quiet hours, read in `time_zone`, only critical incidents are mailed; the rest
    is held and sent as one summary once the window ends.
    """

    name = models.CharField(max_length=100)
    recipients = models.TextField(help_text="E-mail addresses, one per line or comma-separated.")
    min_severity = models.CharField(
        max_length=10, choices=Incident.Severity.choices, default=Incident.Severity.ERROR
    )
    location = models.ForeignKey(
        "stations.Location",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="alert_rules",
        help_text="Only incidents of this site's stations; empty: every site.",
    )
    incident_types = models.JSONField(
        default=list,
        blank=True,
        help_text='Incident types, e.g. ["connector_faulted"]; empty: every type.',
    )
    quiet_start = models.TimeField(null=True, blank=True, help_text="e.g. 22:00; empty: none.")
    quiet_end = models.TimeField(null=True, blank=True, help_text="e.g. 07:00")
    time_zone = models.CharField(
        max_length=64,
        default="UTC",
        validators=[validate_time_zone],
        help_text="Of the quiet hours.",
    )
    daily_digest = models.BooleanField(
        default=False,
        help_text="Also one e-mail a day (MONITORING_DIGEST_HOUR in the rule's time zone): "
        "the open incidents and those resolved in the last 24 hours.",
    )
    is_active = models.BooleanField(default=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name", "id"]

    def __str__(self) -> str:
        return self.name

    def save(self, *args: object, **kwargs: object) -> None:
        # Addresses and types are checked whoever writes the row.
        self.full_clean()
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def recipient_list(self) -> list[str]:
        return _addresses(self.recipients)

    def clean(self) -> None:
        errors: dict[str, str] = {}
        addresses = _addresses(self.recipients or "")
        if not addresses:
            errors["recipients"] = "at least one e-mail address"
        for address in addresses:
            try:
                validate_email(address)
            except ValidationError:
                errors["recipients"] = f"not an e-mail address: {address!r}"
                break
        types = self.incident_types
        if not isinstance(types, list) or not all(isinstance(t, str) for t in types):
            errors["incident_types"] = "a list of incident types"
        else:
            unknown = [t for t in types if t not in IncidentType.values]
            if unknown:
                known = ", ".join(IncidentType.values)
                errors["incident_types"] = f"unknown incident type {unknown[0]!r} (known: {known})"
        if (self.quiet_start is None) != (self.quiet_end is None):
            errors["quiet_end"] = "quiet hours need both a start and an end"
        elif self.quiet_start is not None and self.quiet_start == self.quiet_end:
            errors["quiet_end"] = "the end must differ from the start"
        if errors:
            raise ValidationError(errors)

    def matches(self, *, severity: str, type: str, location_id: int | None) -> bool:  # noqa: A002
        if not self.is_active:
            return False
        if SEVERITY_RANK.get(severity, 0) < SEVERITY_RANK[self.min_severity]:
            return False
        if self.location_id is not None and self.location_id != location_id:
            return False
        return not self.incident_types or type in self.incident_types

    def incidents(self) -> models.QuerySet[Incident]:
        """The incidents this rule matches, as a query (`matches` for many)."""
        rank = SEVERITY_RANK[self.min_severity]
        rows = Incident.objects.filter(
            severity__in=[s for s, r in SEVERITY_RANK.items() if r >= rank]
        )
        if self.location_id is not None:
            rows = rows.filter(station__location_id=self.location_id)
        if self.incident_types:
            rows = rows.filter(type__in=self.incident_types)
        return rows

    def is_quiet(self, at: datetime) -> bool:
        """Whether `at` lies in the quiet hours (a window may run over midnight)."""
        if self.quiet_start is None or self.quiet_end is None:
            return False
        local = at.astimezone(ZoneInfo(self.time_zone)).time()
        if self.quiet_start < self.quiet_end:
            return self.quiet_start <= local < self.quiet_end
        return local >= self.quiet_start or local < self.quiet_end


class HeldAlert(models.Model):
    """An alert of a rule's quiet hours, waiting for the summary sent when they end."""

    class Event(models.TextChoices):
        OPENED = "opened", "Opened"
        RESOLVED = "resolved", "Resolved"

    rule = models.ForeignKey(AlertRule, on_delete=models.CASCADE, related_name="held")
    incident = models.ForeignKey(Incident, on_delete=models.CASCADE, related_name="+")
    event = models.CharField(max_length=10, choices=Event.choices)
    at = models.DateTimeField(default=timezone.now)
    # Set when the summary that carried it was written to the outbox.
    summarised_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["at", "pk"]
        indexes = [
            models.Index(
                fields=["rule", "at"],
                name="heldalert_waiting_idx",
                condition=models.Q(summarised_at__isnull=True),
            )
        ]

    def __str__(self) -> str:
        return f"{self.event} #{self.incident_id} held for {self.rule_id}"


class UptimeExclusion(models.Model):
    """Time an operator asks to leave out of the uptime figures, with a reason; it counts only
    once another operator approved it (four eyes: nobody approves their own).

    It applies to one EVSE, one station, one site, or (none of them set) the whole network.
    Excluded time only ever excuses outage: an EVSE that was up stays up
    (`stations.monitoring.uptime`).
    """

    class Reason(models.TextChoices):
        # The causes 23 CFR 680.116(b) lets a NEVI operator exclude, and a contract's own.
        UTILITY_OUTAGE = "utility_outage", "Electric utility service interruption (grid outage)"
        VANDALISM = "vandalism", "Vandalism"
        PLANNED_MAINTENANCE = "planned_maintenance", "Planned (scheduled) maintenance"
        NATURAL_DISASTER = "natural_disaster", "Natural disaster"
        VEHICLE_FAULT = "vehicle_fault", "Failure caused by the vehicle"
        OUTSIDE_HOURS = "outside_hours", "Outside the site's hours of operation"
        OTHER = "other", "Other cause outside the operator's control"

    class State(models.TextChoices):
        PENDING = "pending", "Waiting for approval"
        APPROVED = "approved", "Approved"
        REJECTED = "rejected", "Rejected"

    location = models.ForeignKey(
        "stations.Location",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="uptime_exclusions",
    )
    station = models.ForeignKey(
        ChargingStation,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="uptime_exclusions",
    )
    evse = models.ForeignKey(
        Evse, on_delete=models.CASCADE, null=True, blank=True, related_name="uptime_exclusions"
    )
    starts_at = models.DateTimeField()
    ends_at = models.DateTimeField()
    reason = models.CharField(max_length=24, choices=Reason.choices)
    note = models.CharField(max_length=500, help_text="What happened, for the approver.")
    state = models.CharField(max_length=10, choices=State.choices, default=State.PENDING)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    decided_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    decided_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-starts_at", "-pk"]
        permissions = [("approve_uptimeexclusion", "Can approve or reject uptime exclusions")]
        indexes = [
            models.Index(
                fields=["starts_at", "ends_at"],
                name="uptimeexcl_approved_idx",
                condition=models.Q(state="approved"),
            )
        ]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(ends_at__gt=models.F("starts_at")),
                name="uptimeexcl_ends_after_start",
            ),
            # Four eyes, in the database too: the decider is never the author.
            models.CheckConstraint(
                condition=models.Q(decided_by__isnull=True)
                | ~models.Q(decided_by=models.F("created_by")),
                name="uptimeexcl_four_eyes",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.get_reason_display()} {self.starts_at:%Y-%m-%d %H:%M} ({self.state})"

    @property
    def scope_label(self) -> str:
        if self.evse_id is not None:
            return str(self.evse)
        if self.station_id is not None:
            return str(self.station)
        if self.location_id is not None:
            return str(self.location)
        return "whole network"

    def clean(self) -> None:
        errors: dict[str, str] = {}
        if self.starts_at and self.ends_at and self.ends_at <= self.starts_at:
            errors["ends_at"] = "the end must be after the start"
        if sum(x is not None for x in (self.location_id, self.station_id, self.evse_id)) > 1:
            errors["evse"] = "one scope at most: an EVSE, a station or a site (none: the network)"
        if not (self.note or "").strip():
            errors["note"] = "say what happened"
        if errors:
            raise ValidationError(errors)


class FirmwareTarget(models.Model):
    """The firmware version the network wants on every station of one vendor and model
    (`firmware_mismatch`: a station of that model reporting another version)."""

    vendor = models.CharField(max_length=50, help_text="As the station reports it at boot.")
    model = models.CharField(max_length=50, help_text="As the station reports it at boot.")
    version = models.CharField(max_length=50, help_text="The target firmware version.")
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["vendor", "model"]
        constraints = [
            models.UniqueConstraint(
                fields=["vendor", "model"], name="firmware_target_one_per_model"
            )
        ]

    def __str__(self) -> str:
        return f"{self.vendor} {self.model}: {self.version}"

    def save(self, *args: object, **kwargs: object) -> None:
        self.full_clean()
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def clean(self) -> None:
        errors = {
            name: "must not be empty or only spaces"
            for name in ("vendor", "model", "version")
            if not str(getattr(self, name) or "").strip()
        }
        if errors:
            raise ValidationError(errors)


class ReconnectCooldown(models.Model):
    """A station that connected too often in an hour, refused at the handshake until `until`
    (`stations.monitoring.protection`)."""

    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="+")
    started_at = models.DateTimeField(default=timezone.now)
    until = models.DateTimeField()
    connects = models.PositiveIntegerField(help_text="Connections in the hour before it began.")
    refused = models.PositiveIntegerField(default=0, help_text="Handshakes refused during it.")

    class Meta:
        ordering = ["-started_at"]
        indexes = [models.Index(fields=["station", "until"], name="cooldown_station_until_idx")]

    def __str__(self) -> str:
        return f"{self.station_id} refused until {self.until:%Y-%m-%d %H:%M:%S}"


# The thresholds an operator may change in the panel: the MONITORING_<NAME> setting each one
# overrides (its default), and the smallest value that makes sense.
THRESHOLDS: dict[str, tuple[str, int]] = {
    "offline_min_seconds": ("Offline: minimum silence (s)", 60),
    "heartbeat_gap_seconds": ("Heartbeat gap: grace past the interval (s)", 0),
    "flapping_connects_per_hour": ("Flapping: connections per hour", 1),
    "reboots_per_day": ("Reboot loop: boots per day", 1),
    "faulted_minutes": ("Faulted for (min)", 0),
    "preparing_minutes": ("Stuck in Preparing for (min)", 0),
    "finishing_minutes": ("Stuck in Finishing for (min)", 0),
    "stuck_transaction_minutes": ("Stuck transaction: no meter values for (min)", 1),
    "max_session_hours": ("Stuck transaction: longer than (h)", 1),
    "no_energy_minutes": ("No energy: Charging for (min)", 1),
    "no_energy_wh": ("No energy: less than (Wh)", 0),
    "ghost_session_minutes": ("Ghost session: Available for (min)", 0),
    "auth_rejected_count": ("Refused authorizations: more than", 1),
    "auth_rejected_window_minutes": ("Refused authorizations: within (min)", 1),
    "reconnects_per_hour": ("Reconnect flood: connections per hour before refusing", 1),
    "reconnect_cooldown_minutes": ("Reconnect flood: cool-down (min)", 1),
    "certificate_expiry_days": ("Certificate expiry: warn this many days before", 1),
    "dead_letter_hours": ("Dead letters: of the last (h)", 1),
}


def _threshold_field(label: str) -> models.PositiveIntegerField:
    return models.PositiveIntegerField(
        label, null=True, blank=True, help_text="Empty: the default from the settings."
    )


class MonitoringThresholds(models.Model):
    """The detectors' thresholds as the operators set them, one row for the network (the
    deployment); an empty field means the MONITORING_<NAME> setting. Read once per
    monitoring pass (`stations.monitoring.thresholds`)."""

    offline_min_seconds = _threshold_field(THRESHOLDS["offline_min_seconds"][0])
    heartbeat_gap_seconds = _threshold_field(THRESHOLDS["heartbeat_gap_seconds"][0])
    flapping_connects_per_hour = _threshold_field(THRESHOLDS["flapping_connects_per_hour"][0])
    reboots_per_day = _threshold_field(THRESHOLDS["reboots_per_day"][0])
    faulted_minutes = _threshold_field(THRESHOLDS["faulted_minutes"][0])
    preparing_minutes = _threshold_field(THRESHOLDS["preparing_minutes"][0])
    finishing_minutes = _threshold_field(THRESHOLDS["finishing_minutes"][0])
    stuck_transaction_minutes = _threshold_field(THRESHOLDS["stuck_transaction_minutes"][0])
    max_session_hours = _threshold_field(THRESHOLDS["max_session_hours"][0])
    no_energy_minutes = _threshold_field(THRESHOLDS["no_energy_minutes"][0])
    no_energy_wh = _threshold_field(THRESHOLDS["no_energy_wh"][0])
    ghost_session_minutes = _threshold_field(THRESHOLDS["ghost_session_minutes"][0])
    auth_rejected_count = _threshold_field(THRESHOLDS["auth_rejected_count"][0])
    auth_rejected_window_minutes = _threshold_field(THRESHOLDS["auth_rejected_window_minutes"][0])
    reconnects_per_hour = _threshold_field(THRESHOLDS["reconnects_per_hour"][0])
    reconnect_cooldown_minutes = _threshold_field(THRESHOLDS["reconnect_cooldown_minutes"][0])
    certificate_expiry_days = _threshold_field(THRESHOLDS["certificate_expiry_days"][0])
    dead_letter_hours = _threshold_field(THRESHOLDS["dead_letter_hours"][0])
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        verbose_name = "detector thresholds"
        verbose_name_plural = "detector thresholds"

    def __str__(self) -> str:
        return "Detector thresholds"

    def save(self, *args: object, **kwargs: object) -> None:
        self.full_clean()
        super().save(*args, **kwargs)  # type: ignore[arg-type]

    def clean(self) -> None:
        errors = {}
        for name, (_, minimum) in THRESHOLDS.items():
            value = getattr(self, name)
            if value is not None and value < minimum:
                errors[name] = f"at least {minimum}"
        if errors:
            raise ValidationError(errors)

    def overrides(self) -> dict[str, int]:
        """MONITORING_<NAME> -> value, for the fields that are set."""
        return {
            f"MONITORING_{name.upper()}": getattr(self, name)
            for name in THRESHOLDS
            if getattr(self, name) is not None
        }

"""The command queue: every CSMS-initiated call to a station as a durable row, jobs over many
stations, one-time diagnostics upload URLs and the stations' local authorization lists.

Version-neutral: a command names a verb with neutral parameters; the OCPP edge turns it into the
station's protocol (`stations.commands.codec`) and stores that wire form on the row too, so the
history shows exactly what was sent.
"""

from __future__ import annotations

from django.db import models
from django.utils import timezone

from stations.models import ChargingStation, Location


class Command(models.Model):
    """One CSMS-initiated OCPP call to a station: durable, ordered and auditable.

    Created by `stations.commands.services.command_create`; the consumer holding the station's
    socket claims queued rows in id order and sends them one at a time.
    """

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        SENT = "sent", "Sent"
        ACCEPTED = "accepted", "Accepted"
        REJECTED = "rejected", "Rejected"
        FAILED = "failed", "Failed"
        TIMED_OUT = "timed_out", "Timed out"
        EXPIRED = "expired", "Expired"

    class Origin(models.TextChoices):
        ADMIN = "admin", "Operator panel"
        API = "api", "REST API"
        JOB = "job", "Job"
        LOCAL_LIST = "local_list", "Local list sync"
        ROAMING = "roaming", "Roaming partner"
        SECURITY = "security", "Security change"
        SYSTEM = "system", "System"

    FINAL = (
        Status.ACCEPTED,
        Status.REJECTED,
        Status.FAILED,
        Status.TIMED_OUT,
        Status.EXPIRED,
    )

    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="commands")
    protocol = models.CharField(max_length=16)
    verb = models.CharField(max_length=40, blank=True, help_text="Empty for a raw action.")
    action = models.CharField(max_length=50)
    # The wire form, with the values of secret keys masked (stations.secret_keys).
    payload = models.JSONField(default=dict)
    # The clear payload, sealed (cpo.lib.sealing), while a command with a secret value waits
    # to be sent; emptied once the command is final. Never shown.
    sealed = models.TextField(blank=True, default="", editable=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    response = models.JSONField(null=True, blank=True)
    # The station's answer in one version-neutral word (Accepted, Rejected, Unlocked,
    # VersionMismatch, NotSupported, ...), read from the response by the OCPP edge.
    result = models.CharField(max_length=40, blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    error_description = models.CharField(max_length=255, blank=True)
    origin = models.CharField(max_length=12, choices=Origin.choices, default=Origin.SYSTEM)
    requested_by = models.ForeignKey(
        "cpo.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    message_id = models.CharField(max_length=36, blank=True)
    node = models.CharField(max_length=100, blank=True, help_text="Process that sent it.")
    # A batch larger than the station takes in one message (DeviceDataCtrlr.ItemsPerMessage)
    # goes as several commands: the later parts point to the first, which joins the results.
    batch = models.ForeignKey(
        "self",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="parts",
        help_text="The first command of the batch this command is a later part of.",
    )
    batch_size = models.PositiveSmallIntegerField(
        default=1, help_text="On the first command of a batch: how many commands it went as."
    )
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(help_text="Not sent after this time.")
    sent_at = models.DateTimeField(null=True, blank=True)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [
            # The consumer's claim: the oldest queued command of one station.
            models.Index(
                fields=["station", "id"],
                name="command_queued_idx",
                condition=models.Q(status="queued"),
            ),
            # commands_expire scans queued rows by expiry.
            models.Index(
                fields=["expires_at"],
                name="command_expiry_idx",
                condition=models.Q(status="queued"),
            ),
            models.Index(fields=["station", "created_at"], name="command_station_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action} → {self.station_id} ({self.status})"

    @property
    def is_final(self) -> bool:
        return self.status in self.FINAL


class Job(models.Model):
    """A diagnostics / log collection or a firmware rollout over many stations."""

    class Kind(models.TextChoices):
        DIAGNOSTICS = "diagnostics", "Diagnostics / log collection"
        FIRMWARE = "firmware", "Firmware update"

    class Status(models.TextChoices):
        RUNNING = "running", "Running"
        COMPLETED = "completed", "Completed"
        CANCELLED = "cancelled", "Cancelled"

    kind = models.CharField(max_length=12, choices=Kind.choices)
    name = models.CharField(max_length=200, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.RUNNING)
    parameters = models.JSONField(default=dict, blank=True)
    # How the stations were chosen, kept for the record.
    location = models.ForeignKey(
        Location, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    station_model = models.CharField(max_length=50, blank=True)
    station_filter = models.CharField(
        max_length=100, blank=True, help_text="Identity prefix, if any."
    )
    concurrency = models.PositiveIntegerField(default=10)
    max_attempts = models.PositiveIntegerField(default=3)
    target_timeout = models.PositiveIntegerField(
        default=3600, help_text="Seconds a station may take before its attempt fails."
    )
    created_by = models.ForeignKey(
        "cpo.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    finished_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]
        permissions = [("manage_job", "Can create and cancel jobs")]

    def __str__(self) -> str:
        return self.name or f"{self.get_kind_display()} #{self.pk}"


class JobTarget(models.Model):
    """One station of a job, with its progress."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        RUNNING = "running", "Running"
        SUCCEEDED = "succeeded", "Succeeded"
        FAILED = "failed", "Failed"
        CANCELLED = "cancelled", "Cancelled"

    FINAL = (Status.SUCCEEDED, Status.FAILED, Status.CANCELLED)

    job = models.ForeignKey(Job, on_delete=models.CASCADE, related_name="targets")
    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="+")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    request_id = models.IntegerField(null=True, blank=True)
    command = models.ForeignKey(
        Command, on_delete=models.SET_NULL, null=True, blank=True, related_name="job_targets"
    )
    progress = models.CharField(
        max_length=50, blank=True, help_text="The station's last reported status."
    )
    detail = models.CharField(max_length=255, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["job", "station__identity"]
        constraints = [models.UniqueConstraint(fields=["job", "station"], name="job_target_unique")]
        indexes = [
            # Progress notifications look up the running target of a station.
            models.Index(
                fields=["station", "request_id"],
                name="job_target_running_idx",
                condition=models.Q(status="running"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.job} / {self.station_id}"


class DiagnosticsUpload(models.Model):
    """A one-time upload URL given to a station for a diagnostics or log file."""

    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="+")
    job_target = models.ForeignKey(
        JobTarget, on_delete=models.SET_NULL, null=True, blank=True, related_name="uploads"
    )
    token = models.CharField(max_length=64, unique=True, editable=False)
    max_bytes = models.PositiveBigIntegerField()
    expires_at = models.DateTimeField()
    file = models.FileField(upload_to="diagnostics/%Y/%m/", blank=True)
    filename = models.CharField(max_length=255, blank=True)
    size = models.PositiveBigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now)
    uploaded_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return self.filename or f"upload {self.pk}"


class LocalAuthList(models.Model):
    """What the station's local authorization list holds, as last confirmed by the station.

    `entries` maps id token -> entry (status, expiry, group, type) as sent; a differential
    update is the difference between the list computed now and these entries.
    """

    class Status(models.TextChoices):
        IN_SYNC = "in_sync", "In sync"
        PENDING = "pending", "Update sent"
        FAILED = "failed", "Failed"
        UNSUPPORTED = "unsupported", "Not supported"

    station = models.OneToOneField(
        ChargingStation, on_delete=models.CASCADE, related_name="local_list"
    )
    version = models.IntegerField(default=0)
    entries = models.JSONField(default=dict, blank=True)
    status = models.CharField(max_length=12, choices=Status.choices, default=Status.IN_SYNC)
    pending_command = models.ForeignKey(
        Command, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    pending_version = models.IntegerField(null=True, blank=True)
    pending_entries = models.JSONField(null=True, blank=True)
    pending_full = models.BooleanField(default=False)
    synced_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"local list of {self.station_id} v{self.version}"


class SecurityChange(models.Model):
    """A change of a station's credentials that takes effect only when the station accepts
    it (stations.commands.security): a new password (its hash waits here; the old password
    keeps working until then) or a higher security profile."""

    class Kind(models.TextChoices):
        PASSWORD = "password", "Password rotation"
        PROFILE = "profile", "Security profile upgrade"

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        APPLIED = "applied", "Applied"
        REFUSED = "refused", "Refused"

    station = models.ForeignKey(
        ChargingStation, on_delete=models.CASCADE, related_name="security_changes"
    )
    kind = models.CharField(max_length=10, choices=Kind.choices)
    # The command whose acceptance applies the change (the last of an upgrade's commands).
    command = models.OneToOneField(Command, on_delete=models.CASCADE, related_name="security")
    password_hash = models.CharField(max_length=200, blank=True, editable=False)
    profile = models.PositiveSmallIntegerField(null=True, blank=True)
    # Ids of the commands that must have been accepted too (an upgrade's root, network profile).
    prerequisites = models.JSONField(default=list, blank=True)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    requested_by = models.ForeignKey(
        "cpo.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-id"]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} of station {self.station_id}: {self.status}"

"""The network: sites, charging stations, EVSEs, connectors and what stations report.

Version-neutral: OCPP 1.6J connectors become one EVSE each (OCPI's advice), OCPP 2.0.1's
Station -> EVSE -> Connector maps one to one. Charger-owned data is written only by services
called from the OCPP edge.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import zoneinfo

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from cpo.lib.countries import validate_country_alpha3


def validate_time_zone(value: str) -> None:
    try:
        zoneinfo.ZoneInfo(value)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError) as exc:
        raise ValidationError(f"{value!r} is not an IANA time zone") from exc


class Location(models.Model):
    """A site: where stations stand. Tariff time windows use its time zone."""

    name = models.CharField(max_length=255)
    address = models.CharField(max_length=255, blank=True)
    postal_code = models.CharField(max_length=10, blank=True)
    city = models.CharField(max_length=45, blank=True)
    # ISO 3166-1 alpha-3, as OCPI wants it.
    country = models.CharField(
        max_length=3,
        default="NLD",
        validators=[validate_country_alpha3],
        help_text="ISO 3166-1 alpha-3, e.g. NLD",
    )
    latitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    longitude = models.DecimalField(max_digits=9, decimal_places=6, null=True, blank=True)
    time_zone = models.CharField(
        max_length=64, default="Europe/Amsterdam", validators=[validate_time_zone]
    )
    publish = models.BooleanField(default=True, help_text="Published to roaming partners.")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def tz(self) -> zoneinfo.ZoneInfo:
        return zoneinfo.ZoneInfo(self.time_zone)


# Station passwords are random (16-40 characters, OCPP's BasicAuthPassword) and checked on every
# connection: a boot storm of 10,000 stations cannot afford Django's 1M-iteration user-password
# hash. A salted PBKDF2 with a modest count keeps leaked hashes useless for high-entropy keys.
STATION_PASSWORD_ITERATIONS = 1000


def station_password_hash(password: str, *, salt: str | None = None) -> str:
    salt = salt or secrets.token_hex(8)
    digest = hashlib.pbkdf2_hmac(
        "sha256", password.encode(), salt.encode(), STATION_PASSWORD_ITERATIONS
    )
    return f"pbkdf2_sha256${STATION_PASSWORD_ITERATIONS}${salt}${digest.hex()}"


def station_password_matches(password: str, encoded: str) -> bool:
    try:
        algorithm, iterations, salt, expected = encoded.split("$", 3)
    except ValueError:
        return False
    if algorithm != "pbkdf2_sha256":
        return False
    digest = hashlib.pbkdf2_hmac("sha256", password.encode(), salt.encode(), int(iterations))
    return hmac.compare_digest(digest.hex(), expected)


class ChargingStation(models.Model):
    class Protocol(models.TextChoices):
        OCPP16 = "ocpp1.6", "OCPP 1.6J"
        OCPP201 = "ocpp2.0.1", "OCPP 2.0.1"
        OCPP21 = "ocpp2.1", "OCPP 2.1"

    class RegistrationStatus(models.TextChoices):
        ACCEPTED = "Accepted"
        PENDING = "Pending"
        REJECTED = "Rejected"

    identity = models.CharField(
        max_length=48, unique=True, help_text="The charge point identity in the OCPP URL."
    )
    location = models.ForeignKey(
        Location, on_delete=models.PROTECT, null=True, blank=True, related_name="stations"
    )
    protocol = models.CharField(
        max_length=16,
        choices=Protocol.choices,
        blank=True,
        help_text="Negotiated on the last connection.",
    )
    password_hash = models.CharField(max_length=200, blank=True, editable=False)
    # The lowest security profile this station may connect with (0: none required, as before
    # profiles were stored). Raised only by the upgrade flow (stations.commands.security), never
    # lowered: a downgrade is refused.
    security_profile = models.PositiveSmallIntegerField(
        default=0,
        # In the database too: rows written by code that predates the column (an older node
        # during a rolling upgrade, the data migrations' historical models) get profile 0.
        db_default=0,
        editable=False,
        choices=[(0, "none"), (1, "1"), (2, "2"), (3, "3")],
        help_text="Lowest OCPP security profile accepted at the handshake.",
    )
    registration_status = models.CharField(
        max_length=16, choices=RegistrationStatus.choices, default=RegistrationStatus.ACCEPTED
    )
    auto_registered = models.BooleanField(default=False, editable=False)
    heartbeat_interval = models.PositiveIntegerField(
        null=True, blank=True, help_text="Seconds; empty uses the network default."
    )
    cost_display_enabled = models.BooleanField(
        default=False, help_text="Send the running cost to the station (OCPP 2.0.1)."
    )
    trace_enabled = models.BooleanField(
        default=False, help_text="Keep every OCPP frame of this station in the message log."
    )
    manual_only = models.BooleanField(
        default=False,
        # In the database too: rows written by older code (and historical models in data
        # migrations) that do not know the column get False.
        db_default=False,
        help_text="No automatic remediation: monitoring opens incidents for this station but "
        "never sends it a playbook's commands.",
    )
    # Boot data, as last reported by the station.
    vendor = models.CharField(max_length=50, blank=True)
    model = models.CharField(max_length=50, blank=True)
    serial_number = models.CharField(max_length=50, blank=True)
    firmware_version = models.CharField(max_length=50, blank=True)
    iccid = models.CharField(max_length=20, blank=True)
    imsi = models.CharField(max_length=20, blank=True)
    meter_type = models.CharField(max_length=25, blank=True)
    meter_serial_number = models.CharField(max_length=25, blank=True)
    boot_reason = models.CharField(max_length=32, blank=True)
    last_boot_at = models.DateTimeField(null=True, blank=True)
    # Connection state.
    is_online = models.BooleanField(default=False)
    last_seen_at = models.DateTimeField(null=True, blank=True)
    connected_at = models.DateTimeField(null=True, blank=True)
    node = models.CharField(max_length=100, blank=True, help_text="Process holding the socket.")
    channel_name = models.CharField(max_length=200, blank=True, editable=False)
    # Connector 0 / the station as a whole (1.6 StatusNotification on connector 0).
    status = models.CharField(max_length=32, blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["identity"]
        indexes = [
            # stations_mark_offline scans online stations by last_seen_at.
            models.Index(
                fields=["last_seen_at"],
                name="station_online_seen_idx",
                condition=models.Q(is_online=True),
            ),
        ]
        # stations.commands.permissions says which command needs which of these.
        permissions = [
            ("send_command", "Can send any command to stations"),
            ("trigger_status", "Can ask a station for its status"),
            ("unlock_connector", "Can unlock a connector"),
            ("remote_stop", "Can remote-stop a session"),
        ]

    def __str__(self) -> str:
        return self.identity

    def set_password(self, password: str) -> None:
        self.password_hash = station_password_hash(password) if password else ""

    def check_password(self, password: str) -> bool:
        return bool(self.password_hash) and station_password_matches(password, self.password_hash)


class Evse(models.Model):
    """An EVSE: one point that charges one vehicle at a time (1.6: one per connector)."""

    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="evses")
    evse_id = models.PositiveIntegerField(help_text="OCPP EVSE number, 1-based.")
    uid = models.CharField(max_length=36, unique=True, help_text="OCPI EVSE uid, never reused.")
    emi3_id = models.CharField(max_length=48, blank=True, help_text="e.g. NL*CPO*E12345*1")
    status = models.CharField(max_length=32, blank=True)
    status_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["station", "evse_id"]
        constraints = [
            models.UniqueConstraint(fields=["station", "evse_id"], name="evse_unique_per_station")
        ]

    def __str__(self) -> str:
        return f"{self.station.identity} EVSE {self.evse_id}"


class Connector(models.Model):
    class Standard(models.TextChoices):
        TYPE2 = "IEC_62196_T2", "Type 2"
        CCS2 = "IEC_62196_T2_COMBO", "CCS 2"
        CHADEMO = "CHADEMO", "CHAdeMO"
        TYPE1 = "IEC_62196_T1", "Type 1"
        CCS1 = "IEC_62196_T1_COMBO", "CCS 1"
        DOMESTIC_F = "DOMESTIC_F", "Schuko"

    class PowerType(models.TextChoices):
        AC_1_PHASE = "AC_1_PHASE"
        AC_3_PHASE = "AC_3_PHASE"
        DC = "DC"

    station = models.ForeignKey(
        ChargingStation, on_delete=models.CASCADE, related_name="connectors"
    )
    evse = models.ForeignKey(Evse, on_delete=models.CASCADE, related_name="connectors")
    connector_id = models.PositiveIntegerField(
        help_text="1.6: the station's connector number; 2.0.1: the connector within its EVSE."
    )
    standard = models.CharField(max_length=32, choices=Standard.choices, default=Standard.TYPE2)
    format = models.CharField(max_length=8, default="SOCKET")
    power_type = models.CharField(
        max_length=16, choices=PowerType.choices, default=PowerType.AC_3_PHASE
    )
    max_power_w = models.PositiveIntegerField(default=22000)
    # Live status: 1.6 status names (Available, Charging, ...) or 2.0.1 connectorStatus.
    status = models.CharField(max_length=32, blank=True)
    error_code = models.CharField(max_length=50, blank=True)
    info = models.CharField(max_length=255, blank=True)
    status_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["station", "evse__evse_id", "connector_id"]
        constraints = [
            models.UniqueConstraint(
                fields=["evse", "connector_id"], name="connector_unique_per_evse"
            )
        ]

    def __str__(self) -> str:
        return f"{self.station.identity} {self.evse.evse_id}/{self.connector_id}"


class ConnectorStatusEvent(models.Model):
    """The status history of connectors (and of the station itself, connector 0)."""

    station = models.ForeignKey(
        ChargingStation, on_delete=models.CASCADE, related_name="status_events"
    )
    evse_id = models.PositiveIntegerField(default=0)
    connector_id = models.PositiveIntegerField(default=0)
    status = models.CharField(max_length=32)
    error_code = models.CharField(max_length=50, blank=True)
    info = models.CharField(max_length=255, blank=True)
    vendor_id = models.CharField(max_length=255, blank=True)
    vendor_error_code = models.CharField(max_length=50, blank=True)
    timestamp = models.DateTimeField(help_text="The station's clock.")
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-timestamp"]
        indexes = [
            models.Index(fields=["station", "timestamp"], name="status_event_station_idx"),
            # The uptime reports (stations.monitoring.uptime): the reports that put a port
            # down (rare: partial, the usual reports cost it nothing), and per port the
            # report before / after a moment, read from the indexes alone (PostgreSQL).
            models.Index(
                fields=["timestamp"],
                include=["station", "evse_id", "id"],
                name="status_event_down_idx",
                condition=models.Q(status__in=["Faulted", "Unavailable"]),
            ),
            models.Index(
                fields=["station", "evse_id", "timestamp", "id"],
                include=["status"],
                name="status_event_port_idx",
            ),
        ]

    def __str__(self) -> str:
        where = f"{self.station_id} {self.evse_id}/{self.connector_id}"
        return f"{where} {self.status} at {self.timestamp:%Y-%m-%d %H:%M:%S}"


class StationConnection(models.Model):
    """One websocket connection of a station: the connection history."""

    station = models.ForeignKey(
        ChargingStation, on_delete=models.CASCADE, related_name="connections"
    )
    protocol = models.CharField(max_length=16)
    remote_addr = models.CharField(max_length=64, blank=True)
    node = models.CharField(max_length=100, blank=True)
    security_profile = models.PositiveSmallIntegerField(default=0)
    connected_at = models.DateTimeField(default=timezone.now)
    disconnected_at = models.DateTimeField(null=True, blank=True)
    close_reason = models.CharField(max_length=100, blank=True)

    class Meta:
        ordering = ["-connected_at"]
        indexes = [models.Index(fields=["station", "connected_at"], name="connection_station_idx")]

    def __str__(self) -> str:
        return f"{self.station_id} connected {self.connected_at:%Y-%m-%d %H:%M:%S}"


class StationBoot(models.Model):
    """One accepted-or-not BootNotification of a station: the boot history (reboot loops)."""

    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="boots")
    booted_at = models.DateTimeField(default=timezone.now)
    reason = models.CharField(max_length=32, blank=True, help_text="2.0.1 boot reason.")

    class Meta:
        ordering = ["-booted_at"]
        indexes = [models.Index(fields=["booted_at", "station"], name="station_boot_time_idx")]

    def __str__(self) -> str:
        return f"{self.station_id} booted {self.booted_at:%Y-%m-%d %H:%M:%S}"


class StationEvent(models.Model):
    """OCPP 2.0.1 NotifyEvent data: faults, alerts and monitored values."""

    station = models.ForeignKey(
        ChargingStation, on_delete=models.CASCADE, related_name="device_events"
    )
    event_id = models.IntegerField()
    timestamp = models.DateTimeField()
    trigger = models.CharField(max_length=20)
    event_notification_type = models.CharField(max_length=40)
    component = models.CharField(max_length=50)
    component_instance = models.CharField(max_length=50, blank=True)
    evse_id = models.PositiveIntegerField(null=True, blank=True)
    connector_id = models.PositiveIntegerField(null=True, blank=True)
    variable = models.CharField(max_length=50)
    variable_instance = models.CharField(max_length=50, blank=True)
    actual_value = models.CharField(max_length=2500)
    cause = models.IntegerField(null=True, blank=True)
    tech_code = models.CharField(max_length=50, blank=True)
    tech_info = models.CharField(max_length=500, blank=True)
    cleared = models.BooleanField(default=False)
    transaction_id = models.CharField(max_length=36, blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-timestamp"]
        indexes = [models.Index(fields=["station", "timestamp"], name="device_event_station_idx")]

    def __str__(self) -> str:
        return f"{self.component}.{self.variable} = {self.actual_value}"


class SecurityEvent(models.Model):
    station = models.ForeignKey(
        ChargingStation, on_delete=models.CASCADE, related_name="security_events"
    )
    type = models.CharField(max_length=50)
    timestamp = models.DateTimeField()
    tech_info = models.CharField(max_length=255, blank=True)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-timestamp"]

    def __str__(self) -> str:
        return f"{self.type} at {self.timestamp:%Y-%m-%d %H:%M:%S}"


class DeviceModelVariable(models.Model):
    """A configuration value of a station: a 2.0.1 device-model variable or a 1.6 key.

    1.6 configuration keys are stored with component "OCPP16".
    """

    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="variables")
    component = models.CharField(max_length=50)
    component_instance = models.CharField(max_length=50, blank=True)
    evse_id = models.PositiveIntegerField(default=0)
    connector_id = models.PositiveIntegerField(default=0)
    variable = models.CharField(max_length=50)
    variable_instance = models.CharField(max_length=50, blank=True)
    attribute_type = models.CharField(max_length=10, default="Actual")
    value = models.CharField(max_length=2500, blank=True)
    mutability = models.CharField(max_length=10, blank=True)
    persistent = models.BooleanField(null=True)
    constant = models.BooleanField(null=True)
    characteristics = models.JSONField(default=dict, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["station", "component", "variable"]
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "station",
                    "component",
                    "component_instance",
                    "evse_id",
                    "connector_id",
                    "variable",
                    "variable_instance",
                    "attribute_type",
                ],
                name="device_variable_unique",
            )
        ]

    def __str__(self) -> str:
        return f"{self.component}.{self.variable} = {self.value}"


class StationNotification(models.Model):
    """What a station reports outside transactions, kept as sent, with its status pulled out.

    Firmware / diagnostics / log status, reservation updates, charging limits and profiles,
    EV charging needs, customer information, display messages, monitoring reports, data
    transfers, certificate signing requests.
    """

    station = models.ForeignKey(
        ChargingStation, on_delete=models.CASCADE, related_name="notifications"
    )
    action = models.CharField(max_length=50)
    status = models.CharField(max_length=50, blank=True)
    request_id = models.IntegerField(null=True, blank=True)
    payload = models.JSONField(default=dict)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-received_at"]
        indexes = [
            models.Index(fields=["station", "action", "received_at"], name="notif_station_idx"),
            models.Index(fields=["request_id"], name="notif_request_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.status}".strip()


class CertificateSigningRequest(models.Model):
    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="csrs")
    csr = models.TextField()
    certificate_type = models.CharField(max_length=40, blank=True)
    received_at = models.DateTimeField(default=timezone.now)
    certificate = models.TextField(blank=True)
    signed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-received_at"]

    def __str__(self) -> str:
        return f"CSR {self.certificate_type or ''} of station {self.station_id}".replace("  ", " ")


class StationCertificate(models.Model):
    """A certificate our CA (stations.pki) signed for a station: its client certificate for
    security profile 3 (or its V2G certificate). Revoked ones are refused at the handshake."""

    class Status(models.TextChoices):
        VALID = "valid", "Valid"
        REVOKED = "revoked", "Revoked"

    station = models.ForeignKey(
        ChargingStation, on_delete=models.CASCADE, related_name="certificates"
    )
    certificate_type = models.CharField(max_length=40, default="ChargingStationCertificate")
    serial = models.CharField(max_length=40, unique=True, help_text="Hex, lower case.")
    subject = models.CharField(max_length=255)
    not_before = models.DateTimeField()
    not_after = models.DateTimeField()
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.VALID)
    pem = models.TextField(editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    revoked_at = models.DateTimeField(null=True, blank=True)
    revoked_by = models.CharField(max_length=150, blank=True)
    renewal_requested_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-not_after"]

    def __str__(self) -> str:
        return f"{self.subject} ({self.serial})"


class TrustedRoot(models.Model):
    """A root certificate stations may be given (InstallCertificate): our own CSMS root
    (stored on first use of the CA) and the manufacturer and V2G roots an operator uploads."""

    class Kind(models.TextChoices):
        CSMS_ROOT = "csms_root", "CSMS root"
        MANUFACTURER_ROOT = "manufacturer_root", "Manufacturer root"
        V2G_ROOT = "v2g_root", "V2G root"
        MO_ROOT = "mo_root", "MO root"

    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=20, choices=Kind.choices)
    pem = models.TextField()
    serial = models.CharField(max_length=40)
    subject = models.CharField(max_length=255, editable=False)
    not_after = models.DateTimeField(editable=False)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["kind", "name"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "serial"], name="trustedroot_kind_serial")
        ]

    def __str__(self) -> str:
        return f"{self.get_kind_display()}: {self.name}"


class OcppMessage(models.Model):
    """A raw OCPP frame: every frame of a traced station, and every frame that caused an error."""

    class Direction(models.TextChoices):
        IN = "in", "station → CSMS"
        OUT = "out", "CSMS → station"

    station = models.ForeignKey(
        ChargingStation, on_delete=models.CASCADE, related_name="messages", null=True
    )
    identity = models.CharField(max_length=48)
    direction = models.CharField(max_length=3, choices=Direction.choices)
    message_type = models.PositiveSmallIntegerField(null=True)
    message_id = models.CharField(max_length=64, blank=True)
    action = models.CharField(max_length=50, blank=True)
    frame = models.TextField()
    is_error = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]
        indexes = [models.Index(fields=["station", "created_at"], name="ocppmsg_station_idx")]

    def __str__(self) -> str:
        return f"{self.direction} {self.action or self.message_type} {self.message_id}"


class AuthLockout(models.Model):
    """An identity or a source address refused at the handshake after too many failed HTTP
    Basic attempts (stations.admission). The refusal itself is a Redis key that expires at
    `locked_until`; this row is what an operator sees and lifts."""

    class Kind(models.TextChoices):
        IDENTITY = "identity", "station identity"
        ADDRESS = "address", "source address"

    kind = models.CharField(max_length=8, choices=Kind.choices)
    value = models.CharField(max_length=100)
    failures = models.PositiveIntegerField()
    locked_at = models.DateTimeField(default=timezone.now)
    locked_until = models.DateTimeField()
    lifted_at = models.DateTimeField(null=True, blank=True)
    lifted_by = models.CharField(max_length=150, blank=True)

    class Meta:
        ordering = ["-locked_at"]
        permissions = [("lift_authlockout", "Can lift an authentication lockout")]
        indexes = [models.Index(fields=["locked_until"], name="authlockout_until_idx")]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} {self.value}"

    @property
    def is_active(self) -> bool:
        return self.lifted_at is None and self.locked_until > timezone.now()

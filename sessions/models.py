"""Charging: customer accounts, drivers, id tokens, authorization and charging sessions.

Accounts and drivers live here rather than in `billing` because tokens and tariffs (both left of
billing in the import order) must point at the account that pays.
"""

from __future__ import annotations

import uuid
from decimal import Decimal

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from stations.models import ChargingStation, Location


class CustomerAccount(models.Model):
    """Who pays: a person, a company or fleet, or a roaming partner (eMSP)."""

    class Kind(models.TextChoices):
        PERSON = "person", "Person"
        COMPANY = "company", "Company / fleet"
        ROAMING_PARTNER = "roaming", "Roaming partner"

    class BillingPeriod(models.TextChoices):
        MONTHLY = "monthly", "Monthly"
        WEEKLY = "weekly", "Weekly"
        DAILY = "daily", "Daily"

    name = models.CharField(max_length=255)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.PERSON)
    legal_name = models.CharField(max_length=255, blank=True)
    address = models.CharField(max_length=255, blank=True)
    postal_code = models.CharField(max_length=16, blank=True)
    city = models.CharField(max_length=64, blank=True)
    country = models.CharField(max_length=2, default="NL", help_text="ISO 3166-1 alpha-2")
    vat_id = models.CharField(max_length=32, blank=True)
    email = models.EmailField(blank=True)
    currency = models.CharField(max_length=3, default="EUR")
    billing_period = models.CharField(
        max_length=10, choices=BillingPeriod.choices, default=BillingPeriod.MONTHLY
    )
    # Roaming partner accounts: the eMSP's OCPI party.
    country_code = models.CharField(max_length=2, blank=True)
    party_id = models.CharField(max_length=3, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Driver(models.Model):
    account = models.ForeignKey(CustomerAccount, on_delete=models.PROTECT, related_name="drivers")
    name = models.CharField(max_length=255)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=32, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class IdToken(models.Model):
    """An RFID card or other token that starts charging."""

    class Type(models.TextChoices):
        ISO14443 = "ISO14443"
        ISO15693 = "ISO15693"
        EMAID = "eMAID"
        KEY_CODE = "KeyCode"
        CENTRAL = "Central"
        LOCAL = "Local"
        MAC_ADDRESS = "MacAddress"
        NO_AUTHORIZATION = "NoAuthorization"
        # OCPI token types of roaming partners' tokens.
        RFID = "RFID"
        APP_USER = "APP_USER"
        AD_HOC_USER = "AD_HOC_USER"
        OTHER = "OTHER"

    class BudgetPeriod(models.TextChoices):
        DAY = "day"
        WEEK = "week"
        MONTH = "month"

    uid = models.CharField(max_length=36)
    # Lower-cased uid: 2.0.1 compares ISO14443/ISO15693 uids case-insensitively, and a card read
    # as "04A1B2" by one reader and "04a1b2" by another is one card.
    uid_normalized = models.CharField(max_length=36, editable=False, db_index=True)
    type = models.CharField(max_length=16, choices=Type.choices, default=Type.ISO14443)
    visual_number = models.CharField(max_length=64, blank=True, db_index=True)
    driver = models.ForeignKey(
        Driver, on_delete=models.SET_NULL, null=True, blank=True, related_name="tokens"
    )
    account = models.ForeignKey(
        CustomerAccount, on_delete=models.PROTECT, null=True, blank=True, related_name="tokens"
    )
    group = models.ForeignKey(
        "self", on_delete=models.SET_NULL, null=True, blank=True, related_name="members",
        help_text="1.6 parentIdTag / 2.0.1 groupIdToken.",
    )
    valid_from = models.DateTimeField(null=True, blank=True)
    valid_until = models.DateTimeField(null=True, blank=True)
    blocked = models.BooleanField(default=False)
    max_concurrent_sessions = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Empty: no limit."
    )
    allowed_locations = models.ManyToManyField(Location, blank=True, related_name="+")
    allowed_stations = models.ManyToManyField(ChargingStation, blank=True, related_name="+")
    budget_energy_wh = models.DecimalField(
        max_digits=14, decimal_places=3, null=True, blank=True
    )
    budget_cost = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    budget_period = models.CharField(
        max_length=8, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH
    )
    # Roaming tokens: the issuing eMSP.
    issuer_country_code = models.CharField(max_length=2, blank=True)
    issuer_party_id = models.CharField(max_length=3, blank=True)
    contract_id = models.CharField(max_length=36, blank=True)
    in_local_list = models.BooleanField(
        default=True, help_text="Sent to stations' local authorization lists."
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["uid"]
        constraints = [
            models.UniqueConstraint(
                fields=["uid_normalized", "type", "issuer_country_code", "issuer_party_id"],
                name="idtoken_unique_uid",
            )
        ]

    def __str__(self) -> str:
        return self.uid

    def save(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        # A derived column, not business logic: kept in step with uid wherever it is written.
        self.uid_normalized = self.uid.lower()
        super().save(*args, **kwargs)

    def clean(self) -> None:
        if self.valid_from and self.valid_until and self.valid_from >= self.valid_until:
            raise ValidationError({"valid_until": "must be after valid from"})
        if self.group_id and self.group_id == self.pk:
            raise ValidationError({"group": "a token cannot be its own group"})


class AuthorizationDecision(models.Model):
    """Every authorization answer given, with the reason, for support and disputes."""

    class Context(models.TextChoices):
        AUTHORIZE = "Authorize"
        START = "StartTransaction"
        TRANSACTION_EVENT = "TransactionEvent"
        REMOTE_START = "RemoteStart"

    station = models.ForeignKey(
        ChargingStation, on_delete=models.SET_NULL, null=True, related_name="+"
    )
    id_token = models.ForeignKey(
        IdToken, on_delete=models.SET_NULL, null=True, blank=True, related_name="decisions"
    )
    uid = models.CharField(max_length=36)
    context = models.CharField(max_length=20, choices=Context.choices)
    status = models.CharField(max_length=20)
    reason = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at"]


class ChargingSession(models.Model):
    """One charging transaction, as the charger reported it (timestamps are the charger's)."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        COMPLETED = "completed", "Completed"

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    station = models.ForeignKey(ChargingStation, on_delete=models.PROTECT, related_name="sessions")
    evse_id = models.PositiveIntegerField(default=0)
    connector_id = models.PositiveIntegerField(default=0)
    # 2.0.1: the station's string id; 1.6: our integer, as a string. Unique per station.
    transaction_id = models.CharField(max_length=36)
    # 1.6 transactionIds are issued by us and unique across the whole system.
    ocpp16_transaction_id = models.BigIntegerField(null=True, blank=True, unique=True)
    id_token = models.ForeignKey(
        IdToken, on_delete=models.SET_NULL, null=True, blank=True, related_name="sessions"
    )
    id_tag = models.CharField(max_length=36, blank=True, help_text="The token as presented.")
    id_token_type = models.CharField(max_length=20, blank=True)
    account = models.ForeignKey(
        CustomerAccount, on_delete=models.SET_NULL, null=True, blank=True, related_name="sessions"
    )
    auth_status = models.CharField(max_length=20, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    meter_start_wh = models.DecimalField(max_digits=16, decimal_places=3, null=True, blank=True)
    meter_stop_wh = models.DecimalField(max_digits=16, decimal_places=3, null=True, blank=True)
    # Highest energy register seen while running: live energy without scanning samples.
    meter_last_wh = models.DecimalField(max_digits=16, decimal_places=3, null=True, blank=True)
    energy_wh = models.DecimalField(max_digits=16, decimal_places=3, default=Decimal(0))
    stop_reason = models.CharField(max_length=32, blank=True)
    charging_state = models.CharField(max_length=20, blank=True)
    last_power_w = models.DecimalField(max_digits=12, decimal_places=3, null=True, blank=True)
    last_soc = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True)
    remote_start_id = models.IntegerField(null=True, blank=True)
    reservation_id = models.IntegerField(null=True, blank=True)
    # 2.0.1 TransactionEvent sequence numbers: the last one and whether any were missing.
    last_seq_no = models.IntegerField(null=True, blank=True)
    seq_no_gap = models.BooleanField(default=False)
    # A stop (or an Updated/Ended event) arrived for a transaction we never saw start.
    is_orphan = models.BooleanField(default=False)
    anomalies = models.JSONField(default=list, blank=True)
    # Tariff frozen at start (OCPI JSON shape), written by the tariffs app.
    tariff_ref = models.CharField(max_length=36, blank=True)
    tariff_snapshot = models.JSONField(null=True, blank=True)
    live_cost = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["station", "transaction_id"], name="session_unique_transaction"
            ),
            models.CheckConstraint(
                condition=models.Q(energy_wh__gte=0), name="session_energy_not_negative"
            ),
        ]
        indexes = [
            # Live sessions per station/connector: the dashboard and concurrency checks.
            models.Index(
                fields=["station", "evse_id"], name="session_active_idx",
                condition=models.Q(status="active"),
            ),
            models.Index(fields=["id_token", "status"], name="session_token_idx"),
        ]

    def __str__(self) -> str:
        return f"{self.station.identity} tx {self.transaction_id}"

    @property
    def duration(self):  # type: ignore[no-untyped-def]
        end = self.ended_at or timezone.now()
        return end - self.started_at

    @property
    def energy_kwh(self) -> Decimal:
        return (self.energy_wh / Decimal(1000)).quantize(Decimal("0.001"))


class MeterSample(models.Model):
    """One sampled value: every measurand, phase, location and context, as the charger sent it.

    Signed values (OCMF and others) are kept raw and untouched in `signed_data`.
    The unique key makes a retried MeterValues harmless (bulk_create ignores the duplicate).
    """

    session = models.ForeignKey(
        ChargingSession, on_delete=models.CASCADE, null=True, blank=True, related_name="samples"
    )
    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="+")
    evse_id = models.PositiveIntegerField(default=0)
    connector_id = models.PositiveIntegerField(default=0)
    timestamp = models.DateTimeField()
    measurand = models.CharField(max_length=50, default="Energy.Active.Import.Register")
    phase = models.CharField(max_length=8, blank=True)
    location = models.CharField(max_length=8, blank=True)
    context = models.CharField(max_length=32, blank=True)
    unit = models.CharField(max_length=16, blank=True)
    value = models.DecimalField(max_digits=20, decimal_places=6, null=True, blank=True)
    raw_value = models.CharField(max_length=64, blank=True)
    format = models.CharField(max_length=16, blank=True)
    signed_data = models.TextField(blank=True)
    signing_method = models.CharField(max_length=50, blank=True)
    encoding_method = models.CharField(max_length=50, blank=True)
    public_key = models.TextField(blank=True)

    class Meta:
        ordering = ["timestamp"]
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "station", "evse_id", "connector_id", "timestamp", "measurand", "phase",
                    "location", "context",
                ],
                name="sample_unique",
            )
        ]
        indexes = [models.Index(fields=["session", "timestamp"], name="sample_session_time_idx")]


class TransactionEventRecord(models.Model):
    """An OCPP 2.0.1 TransactionEvent, kept as received; (station, transaction, seqNo) is unique,
    which makes a retried event a no-op."""

    session = models.ForeignKey(
        ChargingSession, on_delete=models.CASCADE, related_name="transaction_events"
    )
    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="+")
    transaction_id = models.CharField(max_length=36)
    seq_no = models.IntegerField()
    event_type = models.CharField(max_length=10)
    trigger_reason = models.CharField(max_length=40)
    timestamp = models.DateTimeField()
    charging_state = models.CharField(max_length=20, blank=True)
    offline = models.BooleanField(default=False)
    payload = models.JSONField(default=dict)
    received_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["timestamp", "seq_no"]
        constraints = [
            models.UniqueConstraint(
                fields=["station", "transaction_id", "seq_no"], name="txevent_unique_seq"
            )
        ]


class Ocpp16TransactionIdSequence(models.Model):
    """Issues 1.6 transactionIds: an auto-increment row per id keeps them unique system-wide on
    every database, including across several daphne nodes."""

    created_at = models.DateTimeField(default=timezone.now)

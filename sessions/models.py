"""Charging: customer accounts, drivers, id tokens, authorization and charging sessions.

Accounts and drivers live here rather than in `billing` because tokens and tariffs (both left of
billing in the import order) must point at the account that pays.
"""

from __future__ import annotations

import re
import uuid
from datetime import timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from cpo.lib.countries import validate_country_alpha2
from stations.models import ChargingStation, Location, validate_time_zone


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
    # The operator's customer number: how imports and exports refer to the account.
    reference = models.CharField(max_length=32, blank=True)
    kind = models.CharField(max_length=10, choices=Kind.choices, default=Kind.PERSON)
    legal_name = models.CharField(max_length=255, blank=True)
    address = models.CharField(max_length=255, blank=True)
    postal_code = models.CharField(max_length=16, blank=True)
    city = models.CharField(max_length=64, blank=True)
    country = models.CharField(
        max_length=2,
        default="NL",
        help_text="ISO 3166-1 alpha-2",
        validators=[validate_country_alpha2],
    )
    vat_id = models.CharField(max_length=32, blank=True)
    email = models.EmailField(blank=True)
    currency = models.CharField(max_length=3, default="EUR")
    billing_period = models.CharField(
        max_length=10, choices=BillingPeriod.choices, default=BillingPeriod.MONTHLY
    )
    # Billing periods and invoice dates are in this zone; empty: the seller's (BILLING_TIME_ZONE).
    time_zone = models.CharField(max_length=64, blank=True, validators=[validate_time_zone])
    # Roaming partner accounts: the eMSP's OCPI party.
    country_code = models.CharField(
        max_length=2,
        blank=True,
        validators=[validate_country_alpha2],
        help_text="ISO 3166-1 alpha-2",
    )
    party_id = models.CharField(max_length=3, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["reference"],
                condition=~models.Q(reference=""),
                name="account_unique_reference",
                violation_error_message="An account with this reference already exists.",
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def clean(self) -> None:
        errors = {}
        if not re.fullmatch(r"[A-Z]{3}", self.currency or ""):
            errors["currency"] = "an ISO 4217 code, e.g. EUR"
        if self.kind == self.Kind.ROAMING_PARTNER and not (self.country_code and self.party_id):
            errors["party_id"] = "a roaming partner account needs its country code and party id"
        if errors:
            raise ValidationError(errors)


class Driver(models.Model):
    account = models.ForeignKey(CustomerAccount, on_delete=models.PROTECT, related_name="drivers")
    name = models.CharField(max_length=255)
    # The operator's own driver number, unique when given; imports refer to drivers by it.
    reference = models.CharField(max_length=32, blank=True)
    email = models.EmailField(blank=True)
    phone = models.CharField(max_length=32, blank=True)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["reference"],
                condition=~models.Q(reference=""),
                name="driver_unique_reference",
                violation_error_message="A driver with this reference already exists.",
            ),
        ]

    def __str__(self) -> str:
        return self.name


OCPP16_ID_TAG_LENGTH = 20
HEX_UID = re.compile(r"[0-9A-Fa-f]+")
# ISO 14443 UIDs are 4, 7 or 10 bytes; ISO 15693 UIDs are 8 bytes (OCPP 2.0.1 IdTokenEnumType).
# Readers differ in how they print a UID, so any whole number of bytes in that range is taken.
HEX_UID_LENGTHS = {"ISO14443": (8, 10, 12, 14, 16, 18, 20), "ISO15693": (16,)}


def normalize_uid(uid: str) -> str:
    """OCPP compares idTags case-insensitively (1.6 CiString20, 2.0.1 IdToken): one card read as
    "04A1B2C3" by one reader and "04a1b2c3" by another is one card."""
    return uid.strip().lower()


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
    # normalize_uid(uid): every lookup and the uniqueness rule use it.
    uid_normalized = models.CharField(max_length=36, editable=False, db_index=True)
    type = models.CharField(max_length=16, choices=Type.choices, default=Type.ISO14443)
    visual_number = models.CharField(max_length=64, blank=True)
    driver = models.ForeignKey(
        Driver, on_delete=models.SET_NULL, null=True, blank=True, related_name="tokens"
    )
    account = models.ForeignKey(
        CustomerAccount, on_delete=models.PROTECT, null=True, blank=True, related_name="tokens"
    )
    group = models.ForeignKey(
        "self",
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="members",
        help_text="1.6 parentIdTag / 2.0.1 groupIdToken.",
    )
    valid_from = models.DateTimeField(null=True, blank=True)
    valid_until = models.DateTimeField(null=True, blank=True)
    blocked = models.BooleanField(default=False)
    blocked_reason = models.CharField(max_length=255, blank=True)
    max_concurrent_sessions = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Empty: no limit."
    )
    allowed_locations = models.ManyToManyField(Location, blank=True, related_name="+")
    allowed_stations = models.ManyToManyField(ChargingStation, blank=True, related_name="+")
    budget_energy_wh = models.DecimalField(max_digits=14, decimal_places=3, null=True, blank=True)
    budget_cost = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    budget_period = models.CharField(
        max_length=8, choices=BudgetPeriod.choices, default=BudgetPeriod.MONTH
    )
    # Roaming tokens: the issuing eMSP.
    issuer_country_code = models.CharField(
        max_length=2,
        blank=True,
        validators=[validate_country_alpha2],
        help_text="ISO 3166-1 alpha-2",
    )
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
                violation_error_message="A token with this uid and type already exists.",
            ),
            models.CheckConstraint(
                condition=models.Q(valid_from__isnull=True)
                | models.Q(valid_until__isnull=True)
                | models.Q(valid_from__lt=models.F("valid_until")),
                name="idtoken_validity_ordered",
                violation_error_message="Valid until must be after valid from.",
            ),
            # 0 would be a token that can never charge: that is what "blocked" is for.
            models.CheckConstraint(
                condition=models.Q(max_concurrent_sessions__isnull=True)
                | models.Q(max_concurrent_sessions__gte=1),
                name="idtoken_max_concurrent_positive",
                violation_error_message="Maximum concurrent sessions must be at least 1.",
            ),
            models.CheckConstraint(
                condition=(
                    models.Q(budget_energy_wh__isnull=True) | models.Q(budget_energy_wh__gte=0)
                )
                & (models.Q(budget_cost__isnull=True) | models.Q(budget_cost__gte=0)),
                name="idtoken_budget_not_negative",
                violation_error_message="Budgets cannot be negative.",
            ),
        ]
        indexes = [
            # Support searches by the number printed on the card.
            models.Index(fields=["visual_number"], name="idtoken_visual_number_idx"),
        ]
        permissions = [("block_idtoken", "Can block and unblock tokens")]

    def __str__(self) -> str:
        return self.uid

    def save(self, *args: Any, **kwargs: Any) -> None:
        # A derived column, not business logic: kept in step with uid wherever it is written.
        self.uid_normalized = normalize_uid(self.uid)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        self.uid = (self.uid or "").strip()
        # Set before full_clean's constraint checks, which read it to find duplicates.
        self.uid_normalized = normalize_uid(self.uid)
        errors: dict[str, str] = {}
        # An empty uid is reported by the field's own validation.
        if (
            self.uid
            and self.type in HEX_UID_LENGTHS
            and not (HEX_UID.fullmatch(self.uid) and len(self.uid) in HEX_UID_LENGTHS[self.type])
        ):
            lengths = HEX_UID_LENGTHS[self.type]
            sizes = f"{lengths[0] // 2}" + (f" to {lengths[-1] // 2}" if len(lengths) > 1 else "")
            errors["uid"] = f"an {self.type} uid is the card's {sizes}-byte UID in hex"
        if self.valid_from and self.valid_until and self.valid_from >= self.valid_until:
            errors["valid_until"] = "must be after valid from"
        if self.group_id:
            if self.group_id == self.pk:
                errors["group"] = "a token cannot be its own group"
            elif self.group is not None and self.group.group_id:
                # OCPP has one level: parentIdTag / groupIdToken is never itself grouped.
                errors["group"] = "the group token belongs to a group itself"
            elif self.pk and self.members.exists():
                errors["group"] = "this token is the group of other tokens"
            elif (
                self.group is not None
                and not self.issuer_party_id
                and len(self.group.uid) > OCPP16_ID_TAG_LENGTH
            ):
                # A local token reaches 1.6 chargers, whose parentIdTag holds 20 characters; a
                # cut uid would name another group.
                errors["group"] = (
                    f"a group uid longer than {OCPP16_ID_TAG_LENGTH} characters cannot be sent "
                    "to OCPP 1.6 chargers as parentIdTag"
                )
        if self.account_id and self.driver and self.driver.account_id != self.account_id:
            errors["driver"] = "the driver belongs to another account"
        # The check constraints' rules, named per field (and checked without a query each,
        # which a file of 50,000 cards would otherwise cost).
        if self.max_concurrent_sessions is not None and self.max_concurrent_sessions < 1:
            errors["max_concurrent_sessions"] = "must be at least 1 (a token that may never "
            errors["max_concurrent_sessions"] += "charge is blocked instead)"
        for name in ("budget_energy_wh", "budget_cost"):
            value = getattr(self, name)
            if value is not None and value < 0:
                errors[name] = "cannot be negative"
        if errors:
            raise ValidationError(errors)


class AuthorizationDecision(models.Model):
    """Every authorization answer given, with the reason, for support and disputes."""

    class Context(models.TextChoices):
        AUTHORIZE = "Authorize"
        START = "StartTransaction"
        STOP = "StopTransaction"
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

    def __str__(self) -> str:
        return f"{self.uid} {self.status} ({self.reason})"


class ChargingSession(models.Model):
    """One charging transaction, as the charger reported it (timestamps are the charger's)."""

    class Status(models.TextChoices):
        ACTIVE = "active", "Active"
        COMPLETED = "completed", "Completed"
        # Ended, but its start is not known yet (a 2.0.1 Ended before its Started): not rated
        # until the Started arrives.
        INCOMPLETE = "incomplete", "Ended, start not yet received"

    class RatingStatus(models.TextChoices):
        """Where the session is on its way to a CDR; written by billing."""

        PENDING = "pending", "Pending"
        RATED = "rated", "Rated"
        NO_TARIFF = "no_tariff", "No tariff"
        NEEDS_REVIEW = "needs_review", "Needs review"
        FAILED = "failed", "Rating failed"
        WRITTEN_OFF = "written_off", "Written off"

    # Statuses finance must act on: the review queue of the panel.
    RATING_ATTENTION = (RatingStatus.NO_TARIFF, RatingStatus.NEEDS_REVIEW, RatingStatus.FAILED)

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
    # A roaming eMSP's reference for the authorization of this session (OCPI), echoed in the
    # session and CDR sent to it.
    authorization_reference = models.CharField(max_length=36, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    meter_start_wh = models.DecimalField(max_digits=16, decimal_places=3, null=True, blank=True)
    meter_stop_wh = models.DecimalField(max_digits=16, decimal_places=3, null=True, blank=True)
    # Highest reading of the current register segment (sessions.energy): live energy walks on
    # from it without scanning samples.
    meter_last_wh = models.DecimalField(max_digits=16, decimal_places=3, null=True, blank=True)
    # The (charger) time of the last reading walked: older ones (retries, late batches) are
    # stored but do not move the live energy.
    meter_last_at = models.DateTimeField(null=True, blank=True)
    energy_wh = models.DecimalField(max_digits=16, decimal_places=3, default=Decimal(0))
    stop_reason = models.CharField(max_length=32, blank=True)
    # When the station's stop reached us (our clock): it places status reports without a
    # timestamp of their own on the station's clock (tariffs.selectors, charging states).
    stop_received_at = models.DateTimeField(null=True, blank=True)
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
    # The tariff version is fixed at start by the tariffs app (tariffs.SessionTariff); the
    # running cost so far, incl. VAT, is written by it too.
    # Closed on an estimate (last known meter reading and time): the station no longer knew
    # the transaction (it rebooted, its connector became Available, a new one started there).
    is_estimated = models.BooleanField(default=False)
    # Re-sent meter samples whose value differed from the one stored under their key (the
    # first stays; each is flagged in `anomalies` and logged).
    sample_conflicts = models.PositiveIntegerField(default=0)
    # OCPI: the reference an eMSP gave when it authorized the charge (real-time authorization
    # or a START_SESSION command), echoed in the session and the CDR sent to it.
    authorization_reference = models.CharField(max_length=36, blank=True)
    live_cost = models.DecimalField(max_digits=12, decimal_places=4, null=True, blank=True)
    live_cost_currency = models.CharField(max_length=3, blank=True)
    # The running cost's own state (tariffs.rating.RunningCost, with the version it prices
    # with): each meter value extends it instead of re-rating the session's history.
    live_cost_state = models.JSONField(null=True, blank=True, editable=False)
    rating_status = models.CharField(
        max_length=12, choices=RatingStatus.choices, default=RatingStatus.PENDING
    )
    rating_note = models.CharField(max_length=255, blank=True, help_text="Why, and who decided.")
    rating_attempts = models.PositiveSmallIntegerField(default=0)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-started_at"]
        constraints = [
            models.UniqueConstraint(
                fields=["station", "transaction_id"], name="session_unique_transaction"
            ),
            # What makes two 1.6 StartTransactions the same start: the backstop of the retry
            # check in session_start, which concurrent retries would otherwise both pass.
            models.UniqueConstraint(
                fields=["station", "evse_id", "connector_id", "started_at", "id_tag"],
                condition=models.Q(ocpp16_transaction_id__isnull=False),
                name="session_unique_ocpp16_start",
            ),
            models.CheckConstraint(
                condition=models.Q(energy_wh__gte=0), name="session_energy_not_negative"
            ),
        ]
        indexes = [
            # Live sessions per station/connector: the dashboard and concurrency checks.
            models.Index(
                fields=["station", "evse_id"],
                name="session_active_idx",
                condition=models.Q(status="active"),
            ),
            models.Index(fields=["id_token", "status"], name="session_token_idx"),
            # The rating sweep and finance's queue: ended sessions that have no CDR yet.
            models.Index(
                fields=["rating_status", "ended_at"],
                name="session_rating_idx",
                condition=~models.Q(rating_status="rated"),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.station.identity} tx {self.transaction_id}"

    @property
    def duration(self) -> timedelta:
        end = self.ended_at or timezone.now()
        return end - self.started_at

    @property
    def needs_review(self) -> bool:
        """Held for review: billing puts the session on no invoice until finance decides (a
        start we refused that the station charged anyway, ...)."""
        return self.rating_status == self.RatingStatus.NEEDS_REVIEW

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
    # Arrived when its session was already closed: kept for audit, never counted (the session's
    # energy and live values, its rating and its CDR ignore it).
    after_stop = models.BooleanField(default=False)

    class Meta:
        ordering = ["timestamp"]
        constraints = [
            models.UniqueConstraint(
                fields=[
                    "station",
                    "evse_id",
                    "connector_id",
                    "timestamp",
                    "measurand",
                    "phase",
                    "location",
                    "context",
                ],
                name="sample_unique",
            )
        ]
        indexes = [models.Index(fields=["session", "timestamp"], name="sample_session_time_idx")]

    def __str__(self) -> str:
        return f"{self.measurand} {self.raw_value or self.value} {self.unit} @ {self.timestamp}"


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

    def __str__(self) -> str:
        return f"tx {self.transaction_id} #{self.seq_no} {self.event_type}"


class Ocpp16TransactionIdSequence(models.Model):
    """Issues 1.6 transactionIds: an auto-increment row per id keeps them unique system-wide on
    every database, including across several daphne nodes."""

    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return str(self.pk)


class TokenImport(models.Model):
    """A token file uploaded in the panel and imported by a Celery task
    (`sessions.token_import`): validated whole without a write transaction, then written in
    short chunks so that chargers' writes interleave.

    `rows_written` is committed in the same transaction as each chunk it counts: it is where a
    crashed or stopped import resumes, and no row is written twice."""

    class Status(models.TextChoices):
        QUEUED = "queued", "Queued"
        VALIDATING = "validating", "Validating"
        INVALID = "invalid", "Refused (invalid rows)"
        WRITING = "writing", "Writing"
        DONE = "done", "Done"
        FAILED = "failed", "Stopped (resumable)"

    class Format(models.TextChoices):
        CSV = "csv", "CSV"
        XLSX = "xlsx", "XLSX"

    # The file itself, in the row: any worker of any node can read it, and it is kept with
    # the import's record of what was done with it.
    content = models.BinaryField()
    file_name = models.CharField(max_length=255)
    file_format = models.CharField(max_length=4, choices=Format.choices)
    created_by = models.ForeignKey(
        "cpo.User", on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.QUEUED)
    rows_total = models.PositiveIntegerField(null=True, blank=True)
    rows_validated = models.PositiveIntegerField(default=0)
    rows_written = models.PositiveIntegerField(default=0)
    created_count = models.PositiveIntegerField(default=0)
    updated_count = models.PositiveIntegerField(default=0)
    error_count = models.PositiveIntegerField(default=0)
    # The first ERRORS_KEPT row errors: {"row": n, "field": name, "message": text}.
    errors = models.JSONField(default=list, blank=True)
    # Why a running import stopped (a crash, a row that changed since validation).
    failure = models.TextField(blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    ERRORS_KEPT = 1000

    class Meta:
        ordering = ["-created_at", "-pk"]

    def __str__(self) -> str:
        return f"{self.file_name} ({self.get_status_display()})"

    @property
    def is_finished(self) -> bool:
        return self.status in (self.Status.INVALID, self.Status.DONE)

    @property
    def progress_percent(self) -> int:
        """Validation is the first half of the work, writing the second."""
        total = self.rows_total
        if self.status == self.Status.DONE:
            return 100
        if not total:
            return 0
        if self.status in (self.Status.QUEUED, self.Status.VALIDATING, self.Status.INVALID):
            return min(50, 50 * self.rows_validated // total)
        return 50 + min(50, 50 * self.rows_written // total)

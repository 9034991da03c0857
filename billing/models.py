"""Billing: CDRs (the immutable priced record of a session), billing periods, invoices and
credit notes, roaming settlement statements, and the audit trail of money changes.

Immutability is guarded here, on the rows themselves: a CDR never changes once written, an
issued invoice (or credit note) and its lines never change. Corrections are new rows: credit
CDRs and credit notes that reference the original.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.utils import timezone

from cpo.lib.i18n import validate_language
from sessions.models import ChargingSession, CustomerAccount, IdToken
from stations.models import Location

MONEY: dict[str, Any] = {"max_digits": 14, "decimal_places": 4}
ZERO = Decimal(0)


def local_dates(start: dt.datetime, end: dt.datetime, zone: str) -> tuple[dt.date, dt.date]:
    """First and last day (inclusive) of [start, end) in `zone` (UTC when empty)."""
    tz = zoneinfo.ZoneInfo(zone) if zone else dt.UTC
    return start.astimezone(tz).date(), (end - dt.timedelta(microseconds=1)).astimezone(tz).date()


def _in_zone(moment: dt.datetime | None, zone: str) -> dt.datetime | None:
    if moment is None:
        return None
    return moment.astimezone(zoneinfo.ZoneInfo(zone) if zone else dt.UTC)


class ImmutableError(ValidationError):
    """A write to a row that must never change after it was written or issued."""


class CdrQuerySet(models.QuerySet["Cdr"]):
    def update(self, **kwargs: Any) -> int:
        raise ImmutableError("CDRs never change; credit them instead.")

    def delete(self) -> tuple[int, dict[str, int]]:
        raise ImmutableError("CDRs are never deleted; credit them instead.")

    def billable(self) -> CdrQuerySet:
        """CDRs still waiting for an invoice.

        A regular CDR is billable until it is invoiced or credited; a credit CDR is billable
        when its original was invoiced (otherwise the pair cancels out before any invoice).
        """
        regular = models.Q(credit=False, credit_cdr__isnull=True)
        credit = models.Q(credit=True, credit_of__invoice_line__isnull=False)
        return self.filter(invoice_line__isnull=True).filter(regular | credit)


class Cdr(models.Model):
    """Charge Detail Record: a session, rated once, frozen.

    Everything a bill, a dispute or a roaming partner needs is copied in (site, token, tariff,
    charging periods, signed meter data) so that later edits of those never change a CDR.
    Money columns are rounded totals; the unrounded values are kept in `rating_audit`.
    """

    uid = models.CharField(max_length=39, unique=True, help_text="OCPI CDR id.")
    session = models.ForeignKey(ChargingSession, on_delete=models.PROTECT, related_name="cdrs")
    # Re-rating an uninvoiced session makes revision 2, 3, ... after crediting the previous one.
    revision = models.PositiveIntegerField(default=1)
    account = models.ForeignKey(
        CustomerAccount, on_delete=models.PROTECT, null=True, blank=True, related_name="cdrs"
    )
    # PROTECT, not SET_NULL: a deleted token or site must not rewrite a CDR.
    id_token = models.ForeignKey(
        IdToken, on_delete=models.PROTECT, null=True, blank=True, related_name="cdrs"
    )
    location = models.ForeignKey(
        Location, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    credit = models.BooleanField(default=False)
    credit_of = models.OneToOneField(
        "self",
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="credit_cdr",
    )
    credit_reason = models.CharField(max_length=255, blank=True)

    start = models.DateTimeField(help_text="Charger time, UTC.")
    end = models.DateTimeField(help_text="Charger time, UTC.")
    # Denormalised for lists and exports; the full snapshots are below.
    site_name = models.CharField(max_length=255, blank=True)
    station_identity = models.CharField(max_length=48)
    evse_uid = models.CharField(max_length=48, blank=True)
    connector_id = models.PositiveIntegerField(default=0)
    token_uid = models.CharField(max_length=36, blank=True)
    token_visual_number = models.CharField(max_length=64, blank=True)
    site_snapshot = models.JSONField(default=dict, blank=True)
    token_snapshot = models.JSONField(default=dict, blank=True)
    tariff_snapshot = models.JSONField(null=True, blank=True)
    # The tariff version the session was priced with; its OCPI JSON is tariff_snapshot.
    tariff_version = models.ForeignKey(
        "tariffs.TariffVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    charging_periods = models.JSONField(default=list, blank=True)
    signed_data = models.JSONField(null=True, blank=True)

    currency = models.CharField(max_length=3)
    total_energy_kwh = models.DecimalField(max_digits=14, decimal_places=6, default=ZERO)
    total_time_h = models.DecimalField(max_digits=12, decimal_places=6, default=ZERO)
    total_parking_time_h = models.DecimalField(max_digits=12, decimal_places=6, default=ZERO)
    total_fixed_cost_excl_vat = models.DecimalField(**MONEY, default=ZERO)
    total_fixed_cost_incl_vat = models.DecimalField(**MONEY, default=ZERO)
    total_energy_cost_excl_vat = models.DecimalField(**MONEY, default=ZERO)
    total_energy_cost_incl_vat = models.DecimalField(**MONEY, default=ZERO)
    total_time_cost_excl_vat = models.DecimalField(**MONEY, default=ZERO)
    total_time_cost_incl_vat = models.DecimalField(**MONEY, default=ZERO)
    total_parking_cost_excl_vat = models.DecimalField(**MONEY, default=ZERO)
    total_parking_cost_incl_vat = models.DecimalField(**MONEY, default=ZERO)
    total_reservation_cost_excl_vat = models.DecimalField(**MONEY, default=ZERO)
    total_reservation_cost_incl_vat = models.DecimalField(**MONEY, default=ZERO)
    total_cost_excl_vat = models.DecimalField(**MONEY)
    total_vat = models.DecimalField(**MONEY)
    total_cost_incl_vat = models.DecimalField(**MONEY)
    # [{"rate": "19" | null, "excl_vat": "1.23", "vat": "0.23"}], rounded, summing to the totals.
    vat_breakdown = models.JSONField(default=list, blank=True)
    # Unrounded engine output (subtotal, exact totals, cost lines, clamps) for audits.
    rating_audit = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    objects = CdrQuerySet.as_manager()

    class Meta:
        verbose_name = "CDR"
        ordering = ["-end", "-id"]
        permissions = [
            ("credit_cdr", "Can credit and re-rate CDRs"),
            ("export_cdr", "Can export CDRs"),
        ]
        constraints = [
            # One live rating per (session, revision); credit CDRs reuse their original's revision.
            models.UniqueConstraint(
                fields=["session", "revision"],
                condition=models.Q(credit=False),
                name="cdr_unique_session_revision",
            ),
            models.CheckConstraint(
                condition=models.Q(credit=False, credit_of__isnull=True)
                | models.Q(credit=True, credit_of__isnull=False),
                name="cdr_credit_has_reference",
            ),
        ]
        indexes = [
            # Period close: the account's CDRs by session start.
            models.Index(fields=["account", "start"], name="cdr_account_start_idx"),
        ]

    def __str__(self) -> str:
        return self.uid

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise ImmutableError("CDRs never change; credit them instead.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        raise ImmutableError("CDRs are never deleted; credit them instead.")

    @property
    def duration(self) -> dt.timedelta:
        return self.end - self.start


class BillingPeriod(models.Model):
    """One billing period of one account, [start, end) stored in UTC, computed from midnights in
    the account's time zone."""

    class Status(models.TextChoices):
        OPEN = "open", "Open"
        CLOSED = "closed", "Closed"

    account = models.ForeignKey(
        CustomerAccount, on_delete=models.PROTECT, related_name="billing_periods"
    )
    kind = models.CharField(max_length=10, choices=CustomerAccount.BillingPeriod.choices)
    start = models.DateTimeField()
    end = models.DateTimeField()
    # The zone whose midnights bound the period (the account's when it was opened).
    time_zone = models.CharField(max_length=64, blank=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.OPEN)
    closed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-start", "account"]
        permissions = [("close_billingperiod", "Can close billing periods")]
        constraints = [
            models.UniqueConstraint(fields=["account", "start"], name="period_unique_start"),
            models.CheckConstraint(
                condition=models.Q(end__gt=models.F("start")), name="period_end_after_start"
            ),
        ]
        indexes = [
            # billing_periods_close_due: open periods whose end has passed.
            models.Index(
                fields=["end"], name="period_open_end_idx", condition=models.Q(status="open")
            ),
        ]

    def __str__(self) -> str:
        first, last = self.local_dates
        return f"{self.account} {first:%Y-%m-%d}..{last:%Y-%m-%d}"

    @property
    def local_dates(self) -> tuple[dt.date, dt.date]:
        """First and last day (inclusive) in the period's zone."""
        return local_dates(self.start, self.end, self.time_zone)


class BillingProfile(models.Model):
    """What invoices need of an account beyond what the charging app keeps: the buyer's
    company registration number and, when it differs from the seller's default
    (BILLING_PAYMENT_TERMS_DAYS), its payment terms. Read when an invoice is issued."""

    account = models.OneToOneField(
        CustomerAccount, on_delete=models.CASCADE, related_name="billing_profile"
    )
    registration_number = models.CharField(
        max_length=64, blank=True, help_text="Company register number, e.g. KvK 12345678."
    )
    payment_terms_days = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text="Days to pay; empty: BILLING_PAYMENT_TERMS_DAYS."
    )
    # A validator, not choices: adding a language to LANGUAGES needs no migration.
    language = models.CharField(
        max_length=8,
        blank=True,
        validators=[validate_language],
        help_text="The invoices' language (en, nl, de); empty: LANGUAGE_CODE.",
    )

    class Meta:
        ordering = ["account"]

    def __str__(self) -> str:
        return f"Billing profile of {self.account}"


class InvoiceSeries(models.Model):
    """A gapless number series (e.g. INV-2025). `next_number` is read and advanced only under
    a row lock in the transaction that issues the invoice, so a rolled-back issue leaves no gap
    and two workers never get the same number."""

    code = models.CharField(max_length=32, unique=True)
    next_number = models.PositiveIntegerField(default=1)

    class Meta:
        verbose_name_plural = "invoice series"
        ordering = ["code"]

    def __str__(self) -> str:
        return self.code


class InvoiceQuerySet(models.QuerySet["Invoice"]):
    def update(self, **kwargs: Any) -> int:
        if self.filter(status=Invoice.Status.ISSUED).exists():
            raise ImmutableError("Issued invoices never change; credit them instead.")
        return super().update(**kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        if self.filter(status=Invoice.Status.ISSUED).exists():
            raise ImmutableError("Issued invoices are never deleted; credit them instead.")
        return super().delete()


class Invoice(models.Model):
    """An invoice or a credit note of one account in one currency."""

    class Kind(models.TextChoices):
        INVOICE = "invoice", "Invoice"
        CREDIT_NOTE = "credit_note", "Credit note"

    class Status(models.TextChoices):
        DRAFT = "draft", "Draft"
        ISSUED = "issued", "Issued"

    account = models.ForeignKey(CustomerAccount, on_delete=models.PROTECT, related_name="invoices")
    period = models.ForeignKey(
        BillingPeriod, on_delete=models.PROTECT, null=True, blank=True, related_name="invoices"
    )
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.INVOICE)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.DRAFT)
    currency = models.CharField(max_length=3)
    period_start = models.DateTimeField(null=True, blank=True)
    period_end = models.DateTimeField(null=True, blank=True)
    # The zone of the period's bounds and of the issue and due dates, named on the invoice.
    time_zone = models.CharField(max_length=64, blank=True)
    series = models.ForeignKey(
        InvoiceSeries, on_delete=models.PROTECT, null=True, blank=True, related_name="invoices"
    )
    sequence = models.PositiveIntegerField(null=True, blank=True)
    number = models.CharField(max_length=48, null=True, blank=True, unique=True)
    issued_at = models.DateTimeField(null=True, blank=True)
    issue_date = models.DateField(null=True, blank=True)
    # Invoices only (a credit note is not paid by the buyer): issue date + terms.
    payment_terms_days = models.PositiveSmallIntegerField(null=True, blank=True)
    due_date = models.DateField(null=True, blank=True)
    # Credit notes: the invoice they credit (in full, some lines, or an amount; several
    # partial credit notes may credit one invoice, never beyond what it billed).
    credit_of = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="credit_notes"
    )
    reason = models.CharField(max_length=255, blank=True)
    seller = models.JSONField(default=dict, blank=True)
    buyer = models.JSONField(default=dict, blank=True)
    total_excl_vat = models.DecimalField(**MONEY, default=ZERO)
    total_vat = models.DecimalField(**MONEY, default=ZERO)
    total_incl_vat = models.DecimalField(**MONEY, default=ZERO)
    created_at = models.DateTimeField(default=timezone.now)
    issued_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )

    objects = InvoiceQuerySet.as_manager()

    class Meta:
        ordering = ["-created_at", "-id"]
        permissions = [
            ("issue_invoice", "Can issue invoices"),
            ("credit_invoice", "Can credit invoices"),
            ("export_invoice", "Can export invoices"),
        ]
        constraints = [
            models.UniqueConstraint(fields=["series", "sequence"], name="invoice_unique_sequence"),
            # Idempotent period close: one invoice per period and currency.
            models.UniqueConstraint(
                fields=["period", "currency"],
                condition=models.Q(kind="invoice"),
                name="invoice_unique_period_currency",
            ),
            models.CheckConstraint(
                condition=models.Q(status="draft", number__isnull=True, sequence__isnull=True)
                | models.Q(
                    status="issued",
                    number__isnull=False,
                    sequence__isnull=False,
                    issued_at__isnull=False,
                ),
                name="invoice_number_iff_issued",
            ),
            models.CheckConstraint(
                condition=models.Q(kind="invoice", credit_of__isnull=True)
                | models.Q(kind="credit_note", credit_of__isnull=False),
                name="invoice_credit_note_has_reference",
            ),
        ]
        indexes = [models.Index(fields=["account", "status"], name="invoice_account_idx")]

    def __str__(self) -> str:
        return self.number or f"draft {self.kind.replace('_', ' ')} #{self.pk}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self._stored_issued():
            raise ImmutableError("Issued invoices never change; credit them instead.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        if self._stored_issued():
            raise ImmutableError("Issued invoices are never deleted; credit them instead.")
        return super().delete(*args, **kwargs)

    @property
    def period_local_dates(self) -> tuple[dt.date, dt.date] | None:
        """The period's first and last day (inclusive) in the invoice's zone."""
        if self.period_start is None or self.period_end is None:
            return None
        return local_dates(self.period_start, self.period_end, self.time_zone)

    @property
    def is_issued(self) -> bool:
        return self.status == self.Status.ISSUED

    def _stored_issued(self) -> bool:
        if self._state.adding or self.pk is None:
            return False
        return type(self)._base_manager.filter(pk=self.pk, status=self.Status.ISSUED).exists()


class InvoiceLineQuerySet(models.QuerySet["InvoiceLine"]):
    def update(self, **kwargs: Any) -> int:
        if self.filter(invoice__status=Invoice.Status.ISSUED).exists():
            raise ImmutableError("Lines of issued invoices never change.")
        return super().update(**kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        if self.filter(invoice__status=Invoice.Status.ISSUED).exists():
            raise ImmutableError("Lines of issued invoices are never deleted.")
        return super().delete()


class InvoiceLine(models.Model):
    """One CDR on one invoice (the unique `cdr` is what keeps a CDR off a second invoice), or,
    on a credit note, an amount credited at one VAT rate (no CDR, no session)."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="lines")
    cdr = models.OneToOneField(
        Cdr, on_delete=models.PROTECT, null=True, blank=True, related_name="invoice_line"
    )
    position = models.PositiveIntegerField()
    currency = models.CharField(max_length=3)
    session_start = models.DateTimeField(null=True, blank=True)
    session_end = models.DateTimeField(null=True, blank=True)
    site_name = models.CharField(max_length=255, blank=True)
    # The site's zone: the line shows its start and stop in it, named.
    site_time_zone = models.CharField(max_length=64, blank=True)
    station_identity = models.CharField(max_length=48, blank=True)
    evse_uid = models.CharField(max_length=48, blank=True)
    token_visual_number = models.CharField(max_length=64, blank=True)
    # The tariff the CDR was priced with (its snapshot's id) and, when recorded, its version.
    tariff_id = models.CharField(max_length=64, blank=True)
    tariff_version = models.CharField(max_length=32, blank=True)
    energy_kwh = models.DecimalField(max_digits=14, decimal_places=3, default=ZERO)
    duration_minutes = models.DecimalField(max_digits=12, decimal_places=2, default=ZERO)
    description = models.CharField(max_length=255, blank=True)
    # None when the CDR mixes VAT rates; the invoice's VAT table splits them.
    vat_rate = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True)
    # Base: the CDR's rounded amount excl. VAT. VAT: the line's share of its rate's VAT, which
    # is computed once per rate on the invoice (billing.vat); incl. = base + VAT.
    amount_excl_vat = models.DecimalField(**MONEY)
    vat_amount = models.DecimalField(**MONEY)
    amount_incl_vat = models.DecimalField(**MONEY)
    # Per rate: [{"rate": "21" | null, "base": "1.23", "vat": "0.26"}], summing to the above.
    vat_breakdown = models.JSONField(default=list, blank=True)

    objects = InvoiceLineQuerySet.as_manager()

    class Meta:
        ordering = ["invoice", "position"]
        permissions = [("export_invoiceline", "Can export invoice lines")]
        constraints = [
            models.UniqueConstraint(fields=["invoice", "position"], name="line_unique_position"),
        ]

    def __str__(self) -> str:
        return f"{self.invoice} #{self.position}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self._invoice_issued():
            raise ImmutableError("Lines of issued invoices never change.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        if self._invoice_issued():
            raise ImmutableError("Lines of issued invoices are never deleted.")
        return super().delete(*args, **kwargs)

    def _invoice_issued(self) -> bool:
        return Invoice._base_manager.filter(
            pk=self.invoice_id, status=Invoice.Status.ISSUED
        ).exists()

    @property
    def local_start(self) -> dt.datetime | None:
        return _in_zone(self.session_start, self.site_time_zone)

    @property
    def local_end(self) -> dt.datetime | None:
        return _in_zone(self.session_end, self.site_time_zone)

    @property
    def tariff_label(self) -> str:
        if self.tariff_version:
            return f"{self.tariff_id} v{self.tariff_version}"
        return self.tariff_id

    @property
    def duration_label(self) -> str:
        """h:mm of the session."""
        minutes = int(self.duration_minutes.to_integral_value())
        sign = "-" if minutes < 0 else ""
        return f"{sign}{abs(minutes) // 60}:{abs(minutes) % 60:02d}"


class InvoiceVatLineQuerySet(models.QuerySet["InvoiceVatLine"]):
    def update(self, **kwargs: Any) -> int:
        if self.filter(invoice__status=Invoice.Status.ISSUED).exists():
            raise ImmutableError("The VAT table of an issued invoice never changes.")
        return super().update(**kwargs)

    def delete(self) -> tuple[int, dict[str, int]]:
        if self.filter(invoice__status=Invoice.Status.ISSUED).exists():
            raise ImmutableError("The VAT table of an issued invoice never changes.")
        return super().delete()


class InvoiceVatLine(models.Model):
    """The VAT table of an invoice: one row per rate (None: no VAT applies)."""

    invoice = models.ForeignKey(Invoice, on_delete=models.CASCADE, related_name="vat_lines")
    rate = models.DecimalField(max_digits=5, decimal_places=2, null=True, blank=True)
    base_excl_vat = models.DecimalField(**MONEY)
    vat_amount = models.DecimalField(**MONEY)
    total_incl_vat = models.DecimalField(**MONEY)

    objects = InvoiceVatLineQuerySet.as_manager()

    class Meta:
        ordering = ["invoice", "rate"]
        verbose_name = "VAT line"

    def __str__(self) -> str:
        return f"{self.invoice} VAT {self.rate}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if self._invoice_issued():
            raise ImmutableError("The VAT table of an issued invoice never changes.")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> tuple[int, dict[str, int]]:
        if self._invoice_issued():
            raise ImmutableError("The VAT table of an issued invoice never changes.")
        return super().delete(*args, **kwargs)

    def _invoice_issued(self) -> bool:
        return Invoice._base_manager.filter(
            pk=self.invoice_id, status=Invoice.Status.ISSUED
        ).exists()


class SettlementStatement(models.Model):
    """A roaming partner's statement: the CDRs of its tokens in one billing period."""

    account = models.ForeignKey(
        CustomerAccount, on_delete=models.PROTECT, related_name="settlement_statements"
    )
    period = models.ForeignKey(
        BillingPeriod, on_delete=models.PROTECT, related_name="settlement_statements"
    )
    currency = models.CharField(max_length=3)
    cdr_count = models.PositiveIntegerField(default=0)
    total_energy_kwh = models.DecimalField(max_digits=16, decimal_places=6, default=ZERO)
    total_excl_vat = models.DecimalField(**MONEY, default=ZERO)
    total_vat = models.DecimalField(**MONEY, default=ZERO)
    total_incl_vat = models.DecimalField(**MONEY, default=ZERO)
    cdrs: models.ManyToManyField[Cdr, SettlementLine] = models.ManyToManyField(
        Cdr, through="SettlementLine", related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-created_at"]
        permissions = [("export_settlementstatement", "Can export settlement statements")]
        constraints = [
            models.UniqueConstraint(
                fields=["period", "currency"], name="statement_unique_period_currency"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.account} {self.currency} {self.period.start:%Y-%m-%d}"


class SettlementLine(models.Model):
    statement = models.ForeignKey(
        SettlementStatement, on_delete=models.CASCADE, related_name="lines"
    )
    # A CDR is settled with its partner once.
    cdr = models.OneToOneField(Cdr, on_delete=models.PROTECT, related_name="settlement_line")

    class Meta:
        ordering = ["statement", "cdr__end"]

    def __str__(self) -> str:
        return f"{self.statement}: {self.cdr_id}"


class BillingAuditEntry(models.Model):
    """Every money change (CDR written or credited, invoice drafted, issued, credited, period
    closed), written in the same transaction as the change."""

    action = models.CharField(max_length=32)
    object_type = models.CharField(max_length=32)
    object_id = models.BigIntegerField()
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.SET_NULL,
        null=True,
        blank=True,
        related_name="+",
    )
    data = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "billing audit entries"

    def __str__(self) -> str:
        return f"{self.action} {self.object_type} {self.object_id}"


class SessionReviewManager(models.Manager["SessionReview"]):
    def get_queryset(self) -> models.QuerySet[SessionReview]:
        """Ended sessions finance must decide on, and rated ones with a flag to check (a meter
        reset, an orphan stop, an estimate): billed, but worth a look and perhaps a credit."""
        flagged = ~models.Q(anomalies=[]) | models.Q(is_orphan=True) | models.Q(is_estimated=True)
        return (
            super()
            .get_queryset()
            .filter(status=ChargingSession.Status.COMPLETED)
            .filter(models.Q(rating_status__in=ChargingSession.RATING_ATTENTION) | flagged)
        )


class SessionReview(ChargingSession):
    """The charging sessions finance must act on before they can be billed (no tariff, held for
    review, rating failed), and the billed ones with a flag to check: the review queue of the
    panel. A proxy: the rows are the sessions, and `objects` holds only those in the queue."""

    objects = SessionReviewManager()  # type: ignore[misc]  # narrows the sessions' manager

    class Meta:
        proxy = True
        verbose_name = "session to review"
        verbose_name_plural = "sessions to review"
        permissions = [("review_session", "Can assign a tariff, write off or bill a session")]


class AdHocPayment(models.Model):
    """A payment a station's own terminal settled for a session (OCPP 2.1 NotifySettlement,
    ad hoc payment with a card or QR code): recorded as reported, linked to the session and,
    once there is one, its CDR. Money is the station's Decimal in the session's currency."""

    class Status(models.TextChoices):
        SETTLED = "Settled"
        CANCELED = "Canceled"
        REJECTED = "Rejected"
        FAILED = "Failed"

    station = models.ForeignKey(
        "stations.ChargingStation", on_delete=models.PROTECT, related_name="adhoc_payments"
    )
    session = models.ForeignKey(
        ChargingSession,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="adhoc_payments",
    )
    cdr = models.ForeignKey(
        Cdr, on_delete=models.PROTECT, null=True, blank=True, related_name="adhoc_payments"
    )
    transaction_id = models.CharField(max_length=36, blank=True)
    psp_ref = models.CharField(max_length=255, help_text="The payment service provider's id.")
    status = models.CharField(max_length=10, choices=Status.choices)
    amount = models.DecimalField(max_digits=12, decimal_places=4)
    currency = models.CharField(max_length=3, blank=True)
    settled_at = models.DateTimeField()
    receipt_id = models.CharField(max_length=50, blank=True)
    receipt_url = models.CharField(max_length=2000, blank=True)
    payload = models.JSONField(default=dict, help_text="The NotifySettlement as sent.")
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["-settled_at"]
        constraints = [
            # A station re-sending its notification records the payment once.
            models.UniqueConstraint(
                fields=["station", "psp_ref", "status"], name="adhoc_payment_unique"
            )
        ]

    def __str__(self) -> str:
        return f"{self.psp_ref} {self.status} {self.amount} {self.currency}"

"""Tariffs in the OCPI 2.2.1 shape, their immutable versions, and where each applies.

Tariff -> ordered elements -> price components + restrictions is the operator's working copy,
edited in the panel. Every edit publishes a `TariffVersion`: the OCPI JSON (`Tariff.to_ocpi()`)
as it was, who published it, what changed and from when it applies. Pricing only ever reads
versions: a session points to the version that applied at its start (`SessionTariff`), so no
later edit can change what a started session costs.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any, cast

from django.conf import settings
from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone

from sessions.models import ChargingSession, CustomerAccount
from stations.models import ChargingStation, Location

DAYS = ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY", "SUNDAY"]

# The bounds of what a tariff may say: a value beyond them is a typo, not a price. Checked by
# the models (so by the panel's forms, the services and any API alike).
MAX_ENERGY_STEP_WH = 100_000  # 100 kWh
MAX_TIME_STEP_S = 86_400  # a day
MAX_STEP = max(MAX_ENERGY_STEP_WH, MAX_TIME_STEP_S)
MAX_KWH = Decimal(10_000)  # a session's energy, megawatt charging of trucks included
MAX_POWER_KW = Decimal(4_000)
MAX_CURRENT_A = Decimal(4_000)
MAX_DURATION_S = 31 * 86_400  # a month
MAX_VAT_PERCENT = Decimal(100)
ZERO = Decimal(0)


def _bounded(high: Decimal | int | None = None) -> list[Any]:
    """Validators of a quantity: never negative, and at most `high` when given."""
    low: Decimal | int = ZERO if isinstance(high, Decimal) or high is None else 0
    validators: list[Any] = [MinValueValidator(low)]
    if high is not None:
        validators.append(MaxValueValidator(high))
    return validators


def _num(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


class Tariff(models.Model):
    class Type(models.TextChoices):
        AD_HOC_PAYMENT = "AD_HOC_PAYMENT"
        PROFILE_CHEAP = "PROFILE_CHEAP"
        PROFILE_FAST = "PROFILE_FAST"
        PROFILE_GREEN = "PROFILE_GREEN"
        REGULAR = "REGULAR"

    tariff_id = models.CharField(max_length=36, unique=True, help_text="OCPI tariff id.")
    name = models.CharField(max_length=255)
    currency = models.CharField(max_length=3, default="EUR")
    type = models.CharField(max_length=16, choices=Type.choices, blank=True)
    display_text = models.CharField(max_length=512, blank=True)
    min_price_excl_vat = models.DecimalField(
        max_digits=12, decimal_places=4, null=True, blank=True, validators=_bounded()
    )
    min_price_incl_vat = models.DecimalField(
        max_digits=12, decimal_places=4, null=True, blank=True, validators=_bounded()
    )
    max_price_excl_vat = models.DecimalField(
        max_digits=12, decimal_places=4, null=True, blank=True, validators=_bounded()
    )
    max_price_incl_vat = models.DecimalField(
        max_digits=12, decimal_places=4, null=True, blank=True, validators=_bounded()
    )
    start_date_time = models.DateTimeField(null=True, blank=True)
    end_date_time = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return f"{self.name} ({self.currency})"

    def clean(self) -> None:
        if not re.fullmatch(r"[A-Z]{3}", self.currency or ""):
            raise ValidationError({"currency": "an ISO 4217 code, e.g. EUR"})
        if (
            self.start_date_time
            and self.end_date_time
            and self.start_date_time >= self.end_date_time
        ):
            raise ValidationError({"end_date_time": "must be after the start"})
        for low, high in (
            ("min_price_excl_vat", "max_price_excl_vat"),
            ("min_price_incl_vat", "max_price_incl_vat"),
        ):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo > hi:
                raise ValidationError({high: "must not be below the minimum price"})
        # OCPI's Price has a mandatory excl_vat: an incl-only bound could not be published.
        for excl, incl in (
            ("min_price_excl_vat", "min_price_incl_vat"),
            ("max_price_excl_vat", "max_price_incl_vat"),
        ):
            if getattr(self, incl) is not None and getattr(self, excl) is None:
                raise ValidationError({excl: "needed when the price incl. VAT is set"})

    def to_ocpi(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "id": self.tariff_id,
            "currency": self.currency,
            "elements": [element.to_ocpi() for element in self.elements.all()],
        }
        if self.type:
            data["type"] = self.type
        if self.display_text:
            data["tariff_alt_text"] = [{"language": "en", "text": self.display_text}]
        if self.min_price_excl_vat is not None:
            data["min_price"] = {"excl_vat": _num(self.min_price_excl_vat)}
            if self.min_price_incl_vat is not None:
                data["min_price"]["incl_vat"] = _num(self.min_price_incl_vat)
        if self.max_price_excl_vat is not None:
            data["max_price"] = {"excl_vat": _num(self.max_price_excl_vat)}
            if self.max_price_incl_vat is not None:
                data["max_price"]["incl_vat"] = _num(self.max_price_incl_vat)
        if self.start_date_time:
            data["start_date_time"] = self.start_date_time.isoformat()
        if self.end_date_time:
            data["end_date_time"] = self.end_date_time.isoformat()
        data["last_updated"] = self.updated_at.isoformat() if self.updated_at else None
        return data


class TariffElement(models.Model):
    """One element: its price components apply while all its restrictions hold."""

    tariff = models.ForeignKey(Tariff, on_delete=models.CASCADE, related_name="elements")
    position = models.PositiveSmallIntegerField(default=0)
    start_time = models.TimeField(null=True, blank=True, help_text="Local time, inclusive.")
    end_time = models.TimeField(
        null=True, blank=True, help_text="Local time, exclusive; before start wraps midnight."
    )
    start_date = models.DateField(null=True, blank=True)
    end_date = models.DateField(null=True, blank=True)
    min_kwh = models.DecimalField(
        max_digits=12, decimal_places=3, null=True, blank=True, validators=_bounded(MAX_KWH)
    )
    max_kwh = models.DecimalField(
        max_digits=12, decimal_places=3, null=True, blank=True, validators=_bounded(MAX_KWH)
    )
    min_current = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, validators=_bounded(MAX_CURRENT_A)
    )
    max_current = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, validators=_bounded(MAX_CURRENT_A)
    )
    min_power = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, validators=_bounded(MAX_POWER_KW)
    )
    max_power = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True, validators=_bounded(MAX_POWER_KW)
    )
    min_duration = models.PositiveIntegerField(
        null=True, blank=True, help_text="Seconds.", validators=_bounded(MAX_DURATION_S)
    )
    max_duration = models.PositiveIntegerField(
        null=True, blank=True, help_text="Seconds.", validators=_bounded(MAX_DURATION_S)
    )
    day_of_week = models.JSONField(default=list, blank=True, help_text='e.g. ["MONDAY"]')
    reservation = models.CharField(
        max_length=20,
        blank=True,
        choices=[("RESERVATION", "RESERVATION"), ("RESERVATION_EXPIRES", "RESERVATION_EXPIRES")],
    )

    class Meta:
        ordering = ["tariff", "position", "id"]

    def __str__(self) -> str:
        prices = ", ".join(str(pc) for pc in self.price_components.all()) if self.pk else ""
        text = f"#{self.position}: {prices or 'no prices'}"
        restrictions = self.restrictions_summary()
        return f"{text} ({restrictions})" if restrictions else text

    def restrictions_summary(self) -> str:
        """The restrictions as an operator reads them, e.g. "07:00–19:00, Mon, Fri, < 20 kWh"."""
        parts = []
        if self.start_time is not None or self.end_time is not None:
            start = self.start_time.strftime("%H:%M") if self.start_time else "00:00"
            end = self.end_time.strftime("%H:%M") if self.end_time else "24:00"
            parts.append(f"{start}–{'24:00' if end == '00:00' else end}")
        if self.start_date is not None:
            parts.append(f"from {self.start_date.isoformat()}")
        if self.end_date is not None:
            parts.append(f"before {self.end_date.isoformat()}")
        if self.day_of_week:
            parts.append(", ".join(day[:3].title() for day in DAYS if day in self.day_of_week))
        for low, high, unit in (
            ("min_kwh", "max_kwh", "kWh"),
            ("min_power", "max_power", "kW"),
            ("min_current", "max_current", "A"),
        ):
            if getattr(self, low) is not None:
                parts.append(f"≥ {_num(getattr(self, low))} {unit}")
            if getattr(self, high) is not None:
                parts.append(f"< {_num(getattr(self, high))} {unit}")
        if self.min_duration is not None:
            parts.append(f"after {self.min_duration} s")
        if self.max_duration is not None:
            parts.append(f"first {self.max_duration} s")
        if self.reservation:
            parts.append(self.reservation.replace("_", " ").lower())
        return ", ".join(parts)

    def clean(self) -> None:
        unknown = [day for day in self.day_of_week or [] if day not in DAYS]
        if unknown:
            raise ValidationError({"day_of_week": f"unknown day(s): {', '.join(unknown)}"})
        for low, high in (
            ("min_kwh", "max_kwh"),
            ("min_current", "max_current"),
            ("min_power", "max_power"),
            ("min_duration", "max_duration"),
            ("start_date", "end_date"),
        ):
            lo, hi = getattr(self, low), getattr(self, high)
            if lo is not None and hi is not None and lo >= hi:
                raise ValidationError({high: f"must be above {low}"})

    def restrictions_ocpi(self) -> dict[str, Any]:
        r: dict[str, Any] = {}
        if self.start_time is not None:
            r["start_time"] = self.start_time.strftime("%H:%M")
        if self.end_time is not None:
            r["end_time"] = self.end_time.strftime("%H:%M")
        if self.start_date is not None:
            r["start_date"] = self.start_date.isoformat()
        if self.end_date is not None:
            r["end_date"] = self.end_date.isoformat()
        for name in ("min_kwh", "max_kwh", "min_current", "max_current", "min_power", "max_power"):
            value = getattr(self, name)
            if value is not None:
                r[name] = _num(value)
        for name in ("min_duration", "max_duration"):
            value = getattr(self, name)
            if value is not None:
                r[name] = value
        if self.day_of_week:
            r["day_of_week"] = list(self.day_of_week)
        if self.reservation:
            r["reservation"] = self.reservation
        return r

    def to_ocpi(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "price_components": [pc.to_ocpi() for pc in self.price_components.all()]
        }
        restrictions = self.restrictions_ocpi()
        if restrictions:
            data["restrictions"] = restrictions
        return data


class PriceComponent(models.Model):
    class Type(models.TextChoices):
        ENERGY = "ENERGY", "Energy (per kWh)"
        FLAT = "FLAT", "Flat (per session)"
        TIME = "TIME", "Charging time (per hour)"
        PARKING_TIME = "PARKING_TIME", "Parking time (per hour)"

    element = models.ForeignKey(
        TariffElement, on_delete=models.CASCADE, related_name="price_components"
    )
    type = models.CharField(max_length=16, choices=Type.choices)
    price = models.DecimalField(
        max_digits=12, decimal_places=6, help_text="Excl. VAT, per unit.", validators=_bounded()
    )
    vat = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        null=True,
        blank=True,
        help_text="Percent. Empty: no VAT applies (not the same as 0).",
        validators=_bounded(MAX_VAT_PERCENT),
    )
    step_size = models.PositiveIntegerField(
        default=1,
        help_text=(
            f"ENERGY: Wh (at most {MAX_ENERGY_STEP_WH}); TIME and PARKING_TIME: seconds "
            f"(at most {MAX_TIME_STEP_S}); FLAT: ignored."
        ),
        validators=[MinValueValidator(1), MaxValueValidator(MAX_STEP)],
    )

    class Meta:
        ordering = ["element", "id"]

    def __str__(self) -> str:
        unit = {"ENERGY": "/kWh", "TIME": "/h", "PARKING_TIME": "/h"}.get(self.type, "")
        return f"{self.type} {_num(self.price)}{unit}"

    def clean(self) -> None:
        if (
            self.type in (self.Type.TIME, self.Type.PARKING_TIME)
            and self.step_size is not None
            and self.step_size > MAX_TIME_STEP_S
        ):
            raise ValidationError(
                {"step_size": f"a time step is at most {MAX_TIME_STEP_S} s (a day)"}
            )

    def to_ocpi(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "type": self.type,
            "price": _num(self.price),
            "step_size": self.step_size,
        }
        if self.vat is not None:
            data["vat"] = _num(self.vat)
        return data


class TariffAssignment(models.Model):
    """Where a tariff applies. The most specific matching assignment wins:
    connector > EVSE > station > site > default, and an account-specific assignment beats the
    same scope without an account."""

    tariff = models.ForeignKey(Tariff, on_delete=models.CASCADE, related_name="assignments")
    location = models.ForeignKey(
        Location, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    station = models.ForeignKey(
        ChargingStation, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    evse_id = models.PositiveIntegerField(null=True, blank=True)
    connector_id = models.PositiveIntegerField(null=True, blank=True)
    account = models.ForeignKey(
        CustomerAccount,
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
        help_text="A customer, fleet or roaming partner with its own price.",
    )
    valid_from = models.DateTimeField(null=True, blank=True)
    valid_until = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["tariff"]

    def __str__(self) -> str:
        name = self.tariff.tariff_id if self.tariff_id else "(no tariff)"
        return f"{name} at {self.scope_label}"

    @property
    def scope_label(self) -> str:
        if self.connector_id is not None:
            scope = f"{self.station} EVSE {self.evse_id} connector {self.connector_id}"
        elif self.evse_id is not None:
            scope = f"{self.station} EVSE {self.evse_id}"
        elif self.station_id:
            scope = str(self.station)
        elif self.location_id:
            scope = f"site {self.location}"
        else:
            scope = "everywhere (default)"
        return f"{scope}, account {self.account}" if self.account_id else scope

    def clean(self) -> None:
        if (self.evse_id is not None or self.connector_id is not None) and not self.station_id:
            raise ValidationError({"station": "an EVSE or connector needs its station"})
        # Connectors are numbered within their EVSE (a 1.6 connector N is EVSE N, connector 1).
        if self.connector_id is not None and self.evse_id is None:
            raise ValidationError({"evse_id": "a connector needs its EVSE"})
        if self.station_id and self.evse_id is not None:
            self._clean_place()
        if self.location_id and self.station and self.station.location_id != self.location_id:
            raise ValidationError({"location": "the station stands at another site"})
        if self.valid_from and self.valid_until and self.valid_from >= self.valid_until:
            raise ValidationError({"valid_until": "must be after valid from"})

    def _clean_place(self) -> None:
        """The EVSE (and connector) must be one of the station's, once it has reported any:
        an assignment to a place that does not exist would silently price nothing."""
        station = cast(ChargingStation, self.station)  # clean() calls this only with a station
        places = sorted(station.connectors.values_list("evse__evse_id", "connector_id"))
        if not places:
            return
        known = ", ".join(f"EVSE {evse} connector {connector}" for evse, connector in places)
        if self.connector_id is None:
            if self.evse_id not in {evse for evse, _ in places}:
                raise ValidationError(
                    {"evse_id": f"{self.station} has no EVSE {self.evse_id}; it has {known}"}
                )
        elif (self.evse_id, self.connector_id) not in places:
            raise ValidationError(
                {
                    "connector_id": f"{self.station} has no connector {self.connector_id} on "
                    f"EVSE {self.evse_id}; it has {known}"
                }
            )

    @property
    def specificity(self) -> int:
        score = 0
        if self.connector_id is not None:
            score = 4
        elif self.evse_id is not None:
            score = 3
        elif self.station_id:
            score = 2
        elif self.location_id:
            score = 1
        return score * 2 + (1 if self.account_id else 0)


class TariffVersion(models.Model):
    """One published state of a tariff: immutable once written.

    The version in force at an instant is, of those whose `effective_from` is not after it, the
    last published: a later publication supersedes a version still scheduled. The columns
    beside `ocpi` repeat what selection needs, so choosing a session's tariff is an indexed
    query, with no JSON read on the charger's path.
    """

    tariff = models.ForeignKey(Tariff, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    ocpi = models.JSONField(help_text="The tariff as published (OCPI 2.2.1).")
    effective_from = models.DateTimeField(help_text="Applies to sessions that start from then.")
    currency = models.CharField(max_length=3)
    type = models.CharField(max_length=16, blank=True)
    start_date_time = models.DateTimeField(null=True, blank=True)
    end_date_time = models.DateTimeField(null=True, blank=True)
    changes = models.TextField(blank=True, help_text="What changed against the version before.")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        ordering = ["tariff", "-number"]
        constraints = [
            models.UniqueConstraint(fields=["tariff", "number"], name="tariff_version_unique")
        ]
        indexes = [
            # Selection: the latest version of a tariff in force at an instant.
            models.Index(fields=["tariff", "effective_from"], name="tariff_version_effective_idx")
        ]

    def __str__(self) -> str:
        return f"{self.ocpi.get('id', self.tariff_id)} v{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        # A version that sessions and CDRs point to never changes: edits publish a new one.
        if self.pk is not None:
            raise ValidationError("a tariff version is immutable; publish a new version")
        super().save(*args, **kwargs)

    def delete(self, *args: Any, **kwargs: Any) -> Any:
        raise ValidationError("a tariff version is never deleted")


class SessionTariff(models.Model):
    """The tariff version a session is priced with: chosen inside the transaction that starts
    the session, from the assignments and versions in force at its start."""

    session = models.OneToOneField(
        ChargingSession, on_delete=models.CASCADE, primary_key=True, related_name="tariff"
    )
    version = models.ForeignKey(TariffVersion, on_delete=models.PROTECT, related_name="+")
    chosen_at = models.DateTimeField(default=timezone.now)
    # Set when finance assigned the tariff of a session that had none, not the selection.
    assigned_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    def __str__(self) -> str:
        return f"session {self.session_id}: {self.version}"

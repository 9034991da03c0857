"""Forms of the operator panel: a tariff element with its price components, and the price
preview of a hypothetical session."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal
from typing import Any, cast

from django import forms
from django.core.exceptions import ValidationError

from stations.models import validate_time_zone
from tariffs.models import (
    DAYS,
    MAX_ENERGY_STEP_WH,
    MAX_TIME_STEP_S,
    MAX_VAT_PERCENT,
    PriceComponent,
    TariffElement,
)
from tariffs.services import ComponentInput

# One slot per OCPI component type (OCPI allows one component of each type per element), so an
# element and all its prices are edited in one row of the tariff page.
COMPONENT_SLOTS = (
    ("energy", PriceComponent.Type.ENERGY, "per kWh", "Wh"),
    ("flat", PriceComponent.Type.FLAT, "per session", None),
    ("time", PriceComponent.Type.TIME, "per hour charging", "s"),
    ("parking", PriceComponent.Type.PARKING_TIME, "per hour parking", "s"),
)
RESERVATION_TYPES = {PriceComponent.Type.FLAT, PriceComponent.Type.TIME}


def _price(label: str) -> forms.DecimalField:
    return forms.DecimalField(
        label=label, required=False, min_value=Decimal(0), max_digits=12, decimal_places=6
    )


def _vat(label: str) -> forms.DecimalField:
    return forms.DecimalField(
        label=f"{label} VAT %",
        required=False,
        min_value=Decimal(0),
        max_value=MAX_VAT_PERCENT,
        max_digits=5,
        decimal_places=2,
    )


def _step(label: str, unit: str) -> forms.IntegerField:
    # The model's bounds (PriceComponent.clean): 100 kWh of energy, a day of time.
    high = MAX_ENERGY_STEP_WH if unit == "Wh" else MAX_TIME_STEP_S
    return forms.IntegerField(
        label=f"{label} step ({unit})", required=False, min_value=1, max_value=high
    )


def _plain(value: Decimal | None) -> str | None:
    return None if value is None else format(value.normalize(), "f")


class TariffElementForm(forms.ModelForm):
    day_of_week = forms.MultipleChoiceField(
        choices=[(day, day.title()) for day in DAYS],
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every day.",
    )
    energy_price = _price("Energy per kWh")
    energy_vat = _vat("Energy")
    energy_step_size = _step("Energy", "Wh")
    flat_price = _price("Flat per session")
    flat_vat = _vat("Flat")
    time_price = _price("Charging time per hour")
    time_vat = _vat("Charging time")
    time_step_size = _step("Charging time", "s")
    parking_price = _price("Parking time per hour")
    parking_vat = _vat("Parking time")
    parking_step_size = _step("Parking time", "s")

    class Meta:
        model = TariffElement
        fields = [
            "position",
            "start_time",
            "end_time",
            "start_date",
            "end_date",
            "day_of_week",
            "min_kwh",
            "max_kwh",
            "min_power",
            "max_power",
            "min_current",
            "max_current",
            "min_duration",
            "max_duration",
            "reservation",
        ]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if "position" in self.fields:
            self.fields["position"].required = False
            self.fields[
                "position"
            ].help_text = "Per dimension the first matching element wins. Empty: after the others."
            if self.instance.pk is None:
                self.fields["position"].initial = None
        if self.instance.pk is None:
            return
        for pc in self.instance.price_components.all():
            prefix = next(p for p, t, _u, _s in COMPONENT_SLOTS if t == pc.type)
            self.initial[f"{prefix}_price"] = _plain(pc.price)
            self.initial[f"{prefix}_vat"] = _plain(pc.vat)
            if f"{prefix}_step_size" in self.fields:
                self.initial[f"{prefix}_step_size"] = pc.step_size

    def clean(self) -> dict[str, Any]:
        data = cast("dict[str, Any]", super().clean())  # a ModelForm's is its cleaned_data
        components = []
        for prefix, type_, _unit, _step in COMPONENT_SLOTS:
            price = data.get(f"{prefix}_price")
            if price is None:
                if data.get(f"{prefix}_vat") is not None:
                    self.add_error(f"{prefix}_price", "a VAT rate needs a price")
                continue
            components.append(
                ComponentInput(
                    type=type_,
                    price=price,
                    vat=data.get(f"{prefix}_vat"),
                    step_size=data.get(f"{prefix}_step_size") or 1,
                )
            )
        if not components and not self.errors:
            raise ValidationError("An element needs at least one price.")
        if data.get("reservation"):
            wrong = [c.type for c in components if c.type not in RESERVATION_TYPES]
            if wrong:
                raise ValidationError(
                    "A reservation element may only have FLAT and TIME prices, not "
                    + ", ".join(wrong)
                    + "."
                )
        self.components = components
        return data


class TariffElementFormSet(forms.BaseInlineFormSet):
    """Element order is the tariff's meaning: positions are unique, and a blank position puts
    the element after the others."""

    def clean(self) -> None:
        super().clean()
        kept = [
            form
            for form in self.forms
            if form.is_valid()
            and not self._should_delete_form(form)  # type: ignore[attr-defined]  # not in the stubs
            and (form.instance.pk or form.has_changed())
        ]
        taken: set[int] = set()
        for form in kept:
            position = form.cleaned_data.get("position")
            if position is None:
                continue
            if position in taken:
                form.add_error("position", "another element has this position")
            taken.add(position)
        following = max(taken, default=-1) + 1
        for form in kept:
            if form.cleaned_data.get("position") is None:
                form.cleaned_data["position"] = following
                form.instance.position = following
                following += 1


class TariffPreviewForm(forms.Form):
    start = forms.DateTimeField(
        label="Start (local time)",
        widget=forms.DateTimeInput(attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"),
        input_formats=["%Y-%m-%dT%H:%M", "%Y-%m-%dT%H:%M:%S", "%Y-%m-%d %H:%M"],
    )
    time_zone = forms.CharField(validators=[validate_time_zone], initial="Europe/Amsterdam")
    duration_min = forms.IntegerField(
        label="Charging for (minutes)", min_value=0, max_value=14 * 24 * 60, initial=60
    )
    energy_kwh = forms.DecimalField(
        label="Energy (kWh)", min_value=Decimal(0), max_digits=10, decimal_places=3, initial=20
    )
    parking_min = forms.IntegerField(
        label="Then parked for (minutes)", min_value=0, max_value=14 * 24 * 60, initial=0
    )
    power_profile = forms.CharField(
        label="Power profile (optional)",
        required=False,
        widget=forms.Textarea(attrs={"rows": 4, "cols": 30, "placeholder": "0 11\n45 7.4"}),
        help_text=(
            "One line per step: minute from the start and power in kW, e.g. “0 11” then "
            "“45 7.4”. The EV draws it until the energy is delivered; the rest is parking."
        ),
    )

    def clean_power_profile(self) -> list[tuple[int, Decimal]]:
        profile = []
        for number, line in enumerate(self.cleaned_data["power_profile"].splitlines(), start=1):
            if not line.strip():
                continue
            try:
                minute, kw = line.replace(",", " ").split()
                step = (int(minute) * 60, Decimal(kw) * 1000)
            except (ValueError, ArithmeticError) as exc:
                raise ValidationError(f"line {number}: expected “minute kW”") from exc
            if step[0] < 0 or step[1] < 0 or not step[1].is_finite():
                raise ValidationError(f"line {number}: minute and power must not be negative")
            profile.append(step)
        return profile

    def start_local(self) -> dt.datetime:
        tz = zoneinfo.ZoneInfo(self.cleaned_data["time_zone"])
        return self.cleaned_data["start"].replace(tzinfo=None).replace(tzinfo=tz)

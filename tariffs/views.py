"""The panel's price preview: what a hypothetical session costs under a tariff, period by
period, as the rating engine prices real sessions."""

from __future__ import annotations

import datetime as dt
import json
import zoneinfo
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.template.response import TemplateResponse
from django.utils import timezone

from tariffs import rating, selectors
from tariffs.forms import TariffPreviewForm
from tariffs.models import Tariff, TariffAssignment

if TYPE_CHECKING:
    from django.contrib.admin import ModelAdmin

DIMENSION_LABELS = {
    "FLAT": "Flat (per session)",
    "ENERGY": "Energy",
    "TIME": "Charging time",
    "PARKING_TIME": "Parking time",
    "RESERVATION_TIME": "Reservation time",
    "RESERVATION_FLAT": "Reservation fee",
}
_KWH = Decimal("0.001")
_MONEY = Decimal("0.0001")


def _q(value: Decimal, quantum: Decimal) -> Decimal:
    return value.quantize(quantum, rounding=ROUND_HALF_UP)


def _hms(hours: Decimal) -> str:
    seconds = int(_q(hours * 3600, Decimal(1)))
    return f"{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def _volume(dimension: str, value: Decimal) -> str:
    if dimension == "ENERGY":
        return f"{_q(value, _KWH)} kWh"
    if dimension in ("FLAT", "RESERVATION_FLAT"):
        return str(_q(value, Decimal(1)))
    return f"{_hms(value)} h"


def _power(low: Decimal | None, high: Decimal | None) -> str:
    if low is None or high is None:
        return ""
    if low == high:
        return f"{_q(low, _KWH)} kW"
    return f"{_q(low, _KWH)}–{_q(high, _KWH)} kW"


def _local(moment: dt.datetime, tz: zoneinfo.ZoneInfo) -> str:
    # Formatted here: the template engine would show aware datetimes in UTC, not the site's zone.
    return moment.astimezone(tz).strftime("%a %Y-%m-%d %H:%M:%S %Z")


def _price_unit(dimension: str) -> str:
    return {"ENERGY": "/kWh", "TIME": "/h", "PARKING_TIME": "/h", "RESERVATION_TIME": "/h"}.get(
        dimension, ""
    )


@dataclass(frozen=True)
class PreviewResult:
    rating: rating.Rating
    periods: list[dict[str, Any]]
    lines: list[dict[str, Any]]
    dimensions: list[dict[str, Any]]
    vat: list[dict[str, Any]]
    cdr_json: str


def _present(result: rating.Rating, tz: zoneinfo.ZoneInfo) -> PreviewResult:
    period_cost: dict[int, rating.Amount] = {}
    for line in result.lines:
        if line.period_index is not None:
            before = period_cost.get(line.period_index, rating.Amount(Decimal(0), Decimal(0)))
            period_cost[line.period_index] = before + line.cost
    periods = []
    for index, period in enumerate(result.periods):
        cost = period_cost.get(index, rating.Amount(Decimal(0), Decimal(0)))
        periods.append(
            {
                "number": index + 1,
                "start": _local(period.start, tz),
                "end": _local(period.end, tz),
                "state": period.state.title(),
                "dimensions": [
                    {
                        "label": DIMENSION_LABELS.get(d.type, d.type),
                        "volume": _volume(d.type, d.volume),
                        "element": None if d.element_index is None else d.element_index + 1,
                    }
                    for d in period.dimensions
                ],
                "power": _power(period.min_power_kw, period.max_power_kw),
                "excl_vat": _q(cost.excl_vat, _MONEY),
                "incl_vat": _q(cost.incl_vat, _MONEY),
            }
        )
    lines = [
        {
            "label": DIMENSION_LABELS.get(line.dimension, line.dimension),
            "period": None if line.period_index is None else line.period_index + 1,
            "element": line.element_index + 1,
            "price": f"{line.price.normalize():f}{_price_unit(line.dimension)}",
            "vat": "none" if line.vat is None else f"{line.vat.normalize():f} %",
            "step": line.step_size if line.dimension not in ("FLAT", "RESERVATION_FLAT") else "",
            "volume": _volume(line.dimension, line.volume),
            "billed": _volume(line.dimension, line.billed_volume),
            "excl_vat": _q(line.cost.excl_vat, _MONEY),
            "incl_vat": _q(line.cost.incl_vat, _MONEY),
        }
        for line in result.lines
    ]
    dimensions = [
        {
            "label": DIMENSION_LABELS.get(total.dimension, total.dimension),
            "volume": _volume(total.dimension, total.volume),
            "billed": _volume(total.dimension, total.billed_volume),
            "excl_vat": _q(total.cost.excl_vat, _MONEY),
            "incl_vat": _q(total.cost.incl_vat, _MONEY),
        }
        for total in result.dimension_totals
        if total.volume or total.cost.excl_vat or total.cost.incl_vat
    ]
    vat = [
        {
            "rate": "no VAT" if line.rate is None else f"{line.rate.normalize():f} %",
            "excl_vat": _q(line.excl_vat, _MONEY),
            "vat": _q(line.vat_amount, _MONEY),
            "incl_vat": _q(line.incl_vat, _MONEY),
        }
        for line in result.vat_breakdown
    ]
    cdr_json = json.dumps(result.to_ocpi_cdr_fields(), indent=2, default=str)
    return PreviewResult(result, periods, lines, dimensions, vat, cdr_json)


def _default_time_zone(tariff: Tariff) -> str:
    """The time zone of a site the tariff applies at, so the preview matches real sessions."""
    assignment = (
        TariffAssignment.objects.filter(tariff=tariff)
        .filter(location__isnull=False)
        .select_related("location")
        .first()
    ) or (
        TariffAssignment.objects.filter(tariff=tariff, station__location__isnull=False)
        .select_related("station__location")
        .first()
    )
    if assignment is None:
        return "Europe/Amsterdam"
    # Both queries pick an assignment with a site, its own or its station's.
    location = assignment.location or assignment.station.location  # type: ignore[union-attr]
    return location.time_zone  # type: ignore[union-attr]


def tariff_preview(
    request: HttpRequest, *, model_admin: ModelAdmin[Tariff], object_id: str
) -> HttpResponse:
    """Admin view: GET form (start, duration, energy, parking, power profile) and, when valid,
    the rating: periods, priced lines, totals per dimension, VAT and the session total."""
    tariff = model_admin.get_object(request, unquote(object_id))
    if tariff is None:
        raise Http404("no such tariff")
    if not model_admin.has_view_or_change_permission(request, tariff):
        raise PermissionDenied
    time_zone = _default_time_zone(tariff)
    tomorrow = timezone.now().astimezone(zoneinfo.ZoneInfo(time_zone)) + dt.timedelta(days=1)
    initial = {
        "time_zone": time_zone,
        "start": tomorrow.replace(hour=18, minute=0, second=0, microsecond=0, tzinfo=None),
    }
    form = TariffPreviewForm(request.GET if "start" in request.GET else None, initial=initial)
    result = None
    warning = ""
    if form.is_valid():
        tz = zoneinfo.ZoneInfo(form.cleaned_data["time_zone"])
        start = form.start_local()
        result = _present(
            selectors.tariff_preview(
                tariff=tariff,
                start=start,
                duration_s=form.cleaned_data["duration_min"] * 60,
                energy_wh=form.cleaned_data["energy_kwh"] * 1000,
                tz=tz,
                power_profile=form.cleaned_data["power_profile"],
                parking_s=form.cleaned_data["parking_min"] * 60,
            ),
            tz,
        )
        engine = selectors.tariff_engine(tariff)
        if not engine.is_valid_at(start):
            warning = "The tariff is not valid at this start: real sessions would not get it."
    context = {
        **model_admin.admin_site.each_context(request),
        "opts": model_admin.opts,
        "original": tariff,
        "title": f"Price preview: {tariff.name}",
        "form": form,
        "result": result,
        "warning": warning,
        "elements": [str(element) for element in tariff.elements.all()],
    }
    return TemplateResponse(request, "admin/tariffs/tariff/preview.html", context)

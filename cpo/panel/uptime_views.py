"""The panel's uptime pages: the regulatory and contract figures (with CSV), the excluded
time (entered by one operator, approved or rejected by another) and the JSON of the station
and site pages' uptime charts. Thin edges over `stations.monitoring.uptime` (reads) and
`stations.monitoring.services` (the exclusions' writes)."""

from __future__ import annotations

import csv
from datetime import date, timedelta
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.utils import timezone
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from cpo.lib.formatting import local_midnight, month_start, panel_tz
from cpo.lib.spreadsheets import csv_rows
from cpo.panel.report_links import REPORTS
from stations.models import ChargingStation, Evse, Location
from stations.monitoring import services, uptime
from stations.monitoring.models import UptimeExclusion


def _need(request: HttpRequest, *perms: str) -> None:
    if not request.user.has_perms(perms):
        raise PermissionDenied


def csv_response(filename: str, columns: list[str], rows: list[dict[str, Any]]) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(columns)
    writer.writerows(csv_rows([row.get(column, "") for column in columns] for row in rows))
    return response


KINDS = {
    "sla": _("Contract SLA"),
    "nevi": _("US NEVI (23 CFR 680.116)"),
    "uk": _("UK Public Charge Point Regulations 2023"),
}


class FiguresForm(forms.Form):
    kind = forms.ChoiceField(label=_("Figure"), choices=list(KINDS.items()))
    start = forms.DateField(
        label=_("Start (SLA)"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    end = forms.DateField(
        label=_("End (SLA, inclusive)"),
        required=False,
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
    )
    target = forms.DecimalField(
        label=_("Target % (SLA)"), required=False, min_value=0, max_value=100, decimal_places=3
    )
    month = forms.DateField(
        label=_("Month (NEVI)"),
        required=False,
        input_formats=["%Y-%m"],
        widget=forms.DateInput(attrs={"type": "month"}, format="%Y-%m"),
    )
    year = forms.IntegerField(label=_("Year (UK)"), required=False, min_value=2000, max_value=2100)
    location = forms.ModelChoiceField(
        queryset=Location.objects.all(), required=False, empty_label=_("All sites"), label=_("Site")
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        kind = data.get("kind")
        if kind == "sla":
            if not data.get("start") or not data.get("end"):
                raise forms.ValidationError(_("The SLA needs a start and an end."))
            if data["end"] < data["start"]:
                raise forms.ValidationError(_("The end is before the start."))
        if kind == "nevi" and not data.get("month"):
            raise forms.ValidationError(_("NEVI needs a month."))
        if kind == "uk" and not data.get("year"):
            raise forms.ValidationError(_("The UK figure needs a calendar year."))
        return data


def _figures(form: FiguresForm) -> tuple[dict[str, Any], list[str], str]:
    data = form.cleaned_data
    site = data.get("location")
    site_id = site.pk if site else None
    tz = panel_tz()
    if data["kind"] == "sla":
        start = local_midnight(data["start"], tz)
        end = local_midnight(data["end"] + timedelta(days=1), tz)
        target = float(data.get("target") or uptime.DEFAULT_SLA_TARGET)
        report = uptime.sla_report(start=start, end=end, target=target, location_id=site_id)
        return report, uptime.SLA_COLUMNS, f"uptime-sla-{data['start']}-{data['end']}.csv"
    if data["kind"] == "nevi":
        month: date = data["month"]
        report = uptime.nevi_report(month=month, tz=tz, location_id=site_id)
        return report, uptime.NEVI_COLUMNS, f"uptime-nevi-{month:%Y-%m}.csv"
    report = uptime.uk_report(year=data["year"], tz=tz, location_id=site_id)
    return report, uptime.UK_COLUMNS, f"uptime-uk-{data['year']}.csv"


@require_GET
def report_uptime_figures(request: HttpRequest) -> HttpResponse:
    _need(request, "stations.view_chargingstation")
    today = timezone.now().astimezone(panel_tz()).date()
    defaults = {
        "kind": "sla",
        "start": (today - timedelta(days=29)).isoformat(),
        "end": today.isoformat(),
        "target": str(uptime.DEFAULT_SLA_TARGET),
        "month": month_start(today).strftime("%Y-%m"),
        "year": str(today.year),
    }
    data = {**defaults, **{k: v for k, v in request.GET.items() if v}}
    form = FiguresForm(data)
    report: dict[str, Any] = {"rows": []}
    columns: list[str] = []
    filename = "uptime.csv"
    if form.is_valid():
        report, columns, filename = _figures(form)
        if request.GET.get("format") == "csv":
            return csv_response(filename, columns, report["rows"])
    query = request.GET.copy()
    query["format"] = "csv"

    context = {
        **admin.site.each_context(request),
        "title": _("Uptime figures: contract SLA, NEVI, UK"),
        "form": form,
        "columns": columns,
        "rows": report["rows"],
        "report": report,
        "kind": form.cleaned_data.get("kind") if form.is_valid() else "",
        "csv_url": f"{request.path}?{query.urlencode()}",
        "reports": REPORTS,
    }
    return TemplateResponse(request, "cpo/panel/report_uptime_figures.html", context)


# --- excluded time -----------------------------------------------------------------------------


class ExclusionForm(forms.Form):
    starts_at = forms.DateTimeField(
        label=_("From"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    ends_at = forms.DateTimeField(
        label=_("Until"), widget=forms.DateTimeInput(attrs={"type": "datetime-local"})
    )
    reason = forms.ChoiceField(label=_("Reason"), choices=UptimeExclusion.Reason.choices)
    note = forms.CharField(label=_("What happened"), max_length=500)
    location = forms.ModelChoiceField(
        queryset=Location.objects.all(), required=False, label=_("Site")
    )
    station = forms.ModelChoiceField(
        queryset=ChargingStation.objects.all(), required=False, label=_("Station")
    )
    evse = forms.ModelChoiceField(
        queryset=Evse.objects.select_related("station"), required=False, label=_("EVSE")
    )


def _exclusions_page(request: HttpRequest, form: ExclusionForm) -> HttpResponse:
    rows = UptimeExclusion.objects.select_related(
        "location", "station", "evse__station", "created_by", "decided_by"
    )[:200]
    context = {
        **admin.site.each_context(request),
        "title": _("Excluded time (uptime)"),
        "form": form,
        "exclusions": rows,
        "can_add": request.user.has_perm("monitoring.add_uptimeexclusion"),
        "can_decide": request.user.has_perm("monitoring.approve_uptimeexclusion"),
        "tz": panel_tz(),
    }
    return TemplateResponse(request, "cpo/panel/uptime_exclusions.html", context)


@require_http_methods(["GET", "POST"])
def uptime_exclusions(request: HttpRequest) -> HttpResponse:
    """The excluded time: the list (pending first), and the form that enters one."""
    _need(request, "monitoring.view_uptimeexclusion")
    if request.method != "POST":
        return _exclusions_page(request, ExclusionForm())
    _need(request, "monitoring.add_uptimeexclusion")
    form = ExclusionForm(request.POST)
    if form.is_valid():
        data = form.cleaned_data
        try:
            services.uptime_exclusion_create(
                user=request.user,
                starts_at=data["starts_at"],
                ends_at=data["ends_at"],
                reason=data["reason"],
                note=data["note"],
                location_id=data["location"].pk if data["location"] else None,
                station_id=data["station"].pk if data["station"] else None,
                evse_id=data["evse"].pk if data["evse"] else None,
            )
        except services.ExclusionError as exc:
            form.add_error(None, exc.message)
        else:
            messages.success(request, _("Excluded time entered; another operator must approve it."))
            return redirect("panel:uptime-exclusions")
    return _exclusions_page(request, form)


@require_POST
def uptime_exclusion_decide(request: HttpRequest, pk: int) -> HttpResponse:
    _need(request, "monitoring.view_uptimeexclusion", "monitoring.approve_uptimeexclusion")
    get_object_or_404(UptimeExclusion, pk=pk)
    decide = {
        "approve": services.uptime_exclusion_approve,
        "reject": services.uptime_exclusion_reject,
    }.get(request.POST.get("decision", ""))
    if decide is None:
        messages.error(request, _("Approve or reject?"))
    else:
        try:
            decide(exclusion_id=pk, user=request.user)
        except services.ExclusionError as exc:
            messages.error(request, exc.message)
        else:
            messages.success(request, _("Decision recorded."))
    return redirect("panel:uptime-exclusions")


# --- the charts of the station and site pages ---------------------------------------------------


def _days(request: HttpRequest) -> int:
    try:
        return max(1, min(int(request.GET.get("days", 30)), 92))
    except ValueError:
        return 30


@require_GET
def station_uptime_json(request: HttpRequest, pk: int) -> JsonResponse:
    _need(request, "stations.view_chargingstation")
    station = get_object_or_404(ChargingStation, pk=pk)
    return JsonResponse(
        uptime.daily_uptime(days=_days(request), station_id=station.pk, tz=panel_tz())
    )


@require_GET
def site_uptime_json(request: HttpRequest, pk: int) -> JsonResponse:
    _need(request, "stations.view_location", "stations.view_chargingstation")
    site = get_object_or_404(Location, pk=pk)
    return JsonResponse(
        uptime.daily_uptime(days=_days(request), location_id=site.pk, tz=panel_tz())
    )


# (route, view, name) under the panel's namespace; cpo.panel.views routes them as staff pages.
ROUTES: list[tuple[str, Any, str]] = [
    ("reports/uptime-figures/", report_uptime_figures, "report-uptime-figures"),
    ("uptime/exclusions/", uptime_exclusions, "uptime-exclusions"),
    ("uptime/exclusions/<int:pk>/decide", uptime_exclusion_decide, "uptime-exclusion-decide"),
    ("stations/<int:pk>/uptime.json", station_uptime_json, "station-uptime"),
    ("sites/<int:pk>/uptime.json", site_uptime_json, "site-uptime"),
]

"""Operator panel pages and the JSON endpoints their pages poll; staff only, under /admin/panel/.

Thin edges: each view checks a permission, calls an app's selector or the panel's composition of
them (cpo.panel.dashboard, cpo.panel.reports), or the command service, and renders HTML, JSON or
CSV.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterable
from datetime import date, datetime, timedelta
from typing import Any, cast

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseBadRequest, JsonResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils import timezone
from django.utils.functional import Promise
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext_lazy as _
from django.views.decorators.http import require_GET, require_POST

from billing import selectors as billing_selectors
from billing import services as billing_services
from billing.selectors import revenue_source
from cpo import api_tokens
from cpo.lib.api import ApplicationError
from cpo.lib.formatting import add_months, local_midnight, month_start, panel_tz
from cpo.lib.spreadsheets import csv_rows
from cpo.models import ApiToken, User
from cpo.panel import dashboard, report_links, reports, uptime_views
from cpo.services import user_language_set
from sessions import selectors as charging
from sessions.models import ChargingSession
from stations import selectors as network
from stations.commands import permissions as command_permissions
from stations.commands import services as command_services
from stations.commands.models import Command
from stations.commands.verbs import CommandError
from stations.energy import selectors as energy_selectors
from stations.energy import services as energy_services
from stations.energy import triggers as energy_triggers
from stations.energy.models import EnergySite, StationEnergy
from stations.models import ChargingStation, Location

View = Callable[..., HttpResponse]


def _need(request: HttpRequest, *perms: str) -> None:
    if not request.user.has_perms(perms):
        raise PermissionDenied


def _wants_json(request: HttpRequest) -> bool:
    return "application/json" in request.headers.get("Accept", "")


# --- JSON endpoints polled by the pages ---------------------------------------------------------


@require_GET
def dashboard_json(request: HttpRequest) -> JsonResponse:
    _need(request, "stations.view_chargingstation")
    return JsonResponse(dashboard.dashboard_summary())


@require_GET
def charts_json(request: HttpRequest) -> JsonResponse:
    _need(request, "charging.view_chargingsession")
    return JsonResponse(dashboard.charts(days=30, months=12))


@require_GET
def station_live_json(request: HttpRequest, pk: int) -> JsonResponse:
    _need(request, "stations.view_chargingstation")
    station = get_object_or_404(ChargingStation, pk=pk)
    return JsonResponse(dashboard.station_live(station=station))


@require_GET
def station_timeline_json(request: HttpRequest, pk: int) -> JsonResponse:
    _need(request, "stations.view_chargingstation")
    station = get_object_or_404(ChargingStation, pk=pk)
    try:
        hours = max(1, min(int(request.GET.get("hours", 24)), 24 * 31))
    except ValueError:
        hours = 24
    end = timezone.now()
    return JsonResponse(
        network.station_status_timeline(
            station=station, start=end - timedelta(hours=hours), end=end
        )
    )


@require_GET
def session_curve_json(request: HttpRequest, pk: int) -> JsonResponse:
    _need(request, "charging.view_chargingsession")
    session = get_object_or_404(ChargingSession.objects.select_related("station"), pk=pk)
    return JsonResponse(charging.session_curve(session=session))


# --- commands from the station page -------------------------------------------------------------

# The station page's buttons: verb -> the parameters a button may carry.
QUICK_COMMANDS: dict[str, tuple[str, ...]] = {
    "reset": ("type",),
    "remote_start": ("evse_id", "id_token"),
    "remote_stop": ("transaction_id",),
    "unlock_connector": ("evse_id", "connector_id"),
    "change_availability": ("evse_id", "connector_id", "operative"),
    "trigger_message": ("message", "evse_id"),
    "clear_cache": (),
}


@require_POST
def station_command(request: HttpRequest, pk: int) -> HttpResponse:
    """Queue one of the common commands; the page then follows its status live.

    Which command needs which permission is stations.commands.permissions' rule: Support may
    ask for status, unlock and remote-stop, Operators send everything."""
    if not command_permissions.can_send_some(request.user):
        raise PermissionDenied
    station = get_object_or_404(ChargingStation, pk=pk)
    verb = request.POST.get("verb", "")
    if verb not in QUICK_COMMANDS:
        return _command_answer(request, station, error=f"unknown command {verb!r}")
    params = {
        name: request.POST[name]
        for name in QUICK_COMMANDS[verb]
        if request.POST.get(name, "") != ""
    }
    if not command_permissions.can_send(request.user, verb, params):
        raise PermissionDenied
    try:
        command = command_services.command_create(
            station=station,
            verb=verb,
            params=params,
            origin=Command.Origin.ADMIN,
            requested_by=request.user,
        )
    except CommandError as exc:
        return _command_answer(request, station, error=exc.message)
    return _command_answer(request, station, command=command)


def _command_answer(
    request: HttpRequest,
    station: ChargingStation,
    *,
    command: Command | None = None,
    error: str = "",
) -> HttpResponse:
    if _wants_json(request):
        if command is None:
            return JsonResponse({"error": error}, status=400)
        return JsonResponse(
            {"id": command.pk, "action": command.action, "status": command.status}, status=201
        )
    if command is None:
        messages.error(request, _("Command not sent: %(error)s") % {"error": error})
    else:
        messages.success(
            request,
            _("%(action)s queued for %(station)s.")
            % {"action": command.action, "station": station.identity},
        )
    return redirect("admin:stations_chargingstation_change", station.pk)


# --- the session page's credit --------------------------------------------------------------------


@require_POST
def session_credit(request: HttpRequest, pk: int) -> HttpResponse:
    """Credit the CDR a session became (billing's cdr_credit, with the reason typed on the
    session page): Finance only. An invoiced CDR's credit is billed with the next period."""
    _need(request, "billing.credit_cdr")
    session = get_object_or_404(ChargingSession, pk=pk)
    cdr = billing_selectors.session_live_cdr(cdrs=billing_selectors.session_cdrs(session=session))
    if cdr is None:
        messages.error(request, _("This session has no CDR to credit."))
    else:
        try:
            credit = billing_services.cdr_credit(
                cdr_id=cdr.pk,
                reason=request.POST.get("reason", ""),
                user=cast(User, request.user),  # an admin view: logged in
            )
        except ApplicationError as exc:
            messages.error(request, _("Not credited: %(error)s") % {"error": exc.message})
        else:
            messages.success(
                request, _("CDR %(cdr)s credited by %(credit)s.") % {"cdr": cdr, "credit": credit}
            )
    return redirect("admin:charging_chargingsession_change", session.pk)


# --- reports ------------------------------------------------------------------------------------


class PeriodForm(forms.Form):
    # type="date" inputs take ISO dates whatever the language (the widget's own format is the
    # language's, which a date input shows as empty).
    start = forms.DateField(
        label=_("Start"), widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d")
    )
    end = forms.DateField(
        label=_("End"),
        widget=forms.DateInput(attrs={"type": "date"}, format="%Y-%m-%d"),
        help_text=_("inclusive"),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("start") and data.get("end") and data["end"] < data["start"]:
            raise forms.ValidationError(_("The end is before the start."))
        return data

    def bounds(self) -> tuple[datetime, datetime]:
        tz = panel_tz()
        start, end = self.cleaned_data["start"], self.cleaned_data["end"]
        return local_midnight(start, tz), local_midnight(end + timedelta(days=1), tz)


class UptimeForm(PeriodForm):
    location = forms.ModelChoiceField(
        queryset=Location.objects.all(),
        required=False,
        empty_label=_("All sites"),
        label=_("Site"),
    )


class MonthsForm(forms.Form):
    first = forms.DateField(
        label=_("First month"),
        input_formats=["%Y-%m"],
        widget=forms.DateInput(attrs={"type": "month"}, format="%Y-%m"),
    )
    last = forms.DateField(
        label=_("Last month"),
        input_formats=["%Y-%m"],
        widget=forms.DateInput(attrs={"type": "month"}, format="%Y-%m"),
    )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("first") and data.get("last"):
            if data["last"] < data["first"]:
                raise forms.ValidationError(_("The last month is before the first."))
            if (data["last"].year - data["first"].year) * 12 > 120:
                raise forms.ValidationError(_("At most ten years at a time."))
        return data


def _period_defaults(days: int) -> dict[str, str]:
    today = timezone.now().astimezone(panel_tz()).date()
    return {"start": (today - timedelta(days=days - 1)).isoformat(), "end": today.isoformat()}


def _bound_form(form_class: type[forms.Form], request: HttpRequest, defaults: dict[str, str]):
    data = {**defaults, **{k: v for k, v in request.GET.items() if v and k in defaults}}
    if "location" in request.GET:
        data["location"] = request.GET["location"]
    return form_class(data)


def csv_response(filename: str, columns: list[str], rows: Iterable[dict[str, Any]]) -> HttpResponse:
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    writer = csv.writer(response)
    writer.writerow(columns)
    writer.writerows(csv_rows([row.get(column, "") for column in columns] for row in rows))
    return response


def _report(
    request: HttpRequest,
    *,
    title: str | Promise,
    template: str,
    form: forms.Form,
    columns: list[str],
    rows: list[dict[str, Any]],
    filename: str,
    **extra: Any,
) -> HttpResponse:
    if request.GET.get("format") == "csv" and form.is_valid():
        return csv_response(filename, columns, rows)
    query = request.GET.copy()
    query["format"] = "csv"
    context = {
        **admin.site.each_context(request),
        "title": title,
        "form": form,
        "columns": columns,
        "rows": rows,
        "csv_url": f"{request.path}?{query.urlencode()}",
        "reports": REPORTS,
        **extra,
    }
    return TemplateResponse(request, template, context)


UPTIME_COLUMNS = [
    "site",
    "station",
    "connector",
    *[f"{c}_pct" for c in network.UPTIME_CLASSES],
    *[f"{c}_h" for c in network.UPTIME_CLASSES],
]


@require_GET
def report_uptime(request: HttpRequest) -> HttpResponse:
    _need(request, "stations.view_chargingstation")
    form = _bound_form(UptimeForm, request, _period_defaults(30))
    rows: list[dict[str, Any]] = []
    if form.is_valid():
        start, end = form.bounds()
        rows = network.uptime_report(
            start=start, end=end, location=form.cleaned_data.get("location")
        )
    name = "uptime"
    if form.is_valid():
        name = f"uptime-{form.cleaned_data['start']}-{form.cleaned_data['end']}"
    return _report(
        request,
        title=_("Uptime per station and connector"),
        template="cpo/panel/report_uptime.html",
        form=form,
        columns=UPTIME_COLUMNS,
        rows=rows,
        filename=f"{name}.csv",
        classes=network.UPTIME_CLASSES,
    )


@require_GET
def report_energy_revenue(request: HttpRequest) -> HttpResponse:
    _need(request, "charging.view_chargingsession")
    this_month = month_start(timezone.now().astimezone(panel_tz()).date())
    defaults = {
        "first": add_months(this_month, -11).strftime("%Y-%m"),
        "last": this_month.strftime("%Y-%m"),
    }
    form = _bound_form(MonthsForm, request, defaults)
    data: dict[str, Any] = {"rows": [], "currencies": [], **revenue_source()}
    name = "energy-revenue"
    if form.is_valid():
        first: date = form.cleaned_data["first"]
        last: date = form.cleaned_data["last"]
        data = reports.energy_revenue_per_site_month(first_month=first, last_month=last)
        name = f"energy-revenue-{first:%Y-%m}-{last:%Y-%m}"
    columns = [
        "site",
        "month",
        "sessions",
        "energy_kwh",
        *[f"revenue_{c}" for c in data["currencies"]],
    ]
    return _report(
        request,
        title=_("Energy and revenue per site and month"),
        template="cpo/panel/report_table.html",
        form=form,
        columns=columns,
        rows=data["rows"],
        filename=f"{name}.csv",
        revenue_label=data["label"],
    )


@require_GET
def report_sessions_per_token(request: HttpRequest) -> HttpResponse:
    _need(request, "charging.view_chargingsession", "charging.view_idtoken")
    form = _bound_form(PeriodForm, request, _period_defaults(30))
    data: dict[str, Any] = {"rows": [], "currencies": [], **revenue_source()}
    name = "sessions-per-token"
    if form.is_valid():
        start, end = form.bounds()
        data = reports.sessions_per_token(start=start, end=end)
        name = f"sessions-per-token-{form.cleaned_data['start']}-{form.cleaned_data['end']}"
    columns = [
        "token",
        "visual_number",
        "type",
        "account",
        "driver",
        "sessions",
        "energy_kwh",
        *[f"revenue_{c}" for c in data["currencies"]],
        "first_session",
        "last_session",
    ]
    return _report(
        request,
        title=_("Sessions per token"),
        template="cpo/panel/report_table.html",
        form=form,
        columns=columns,
        rows=data["rows"],
        filename=f"{name}.csv",
        revenue_label=data["label"],
        link_column="token",
        link_key="token_url",
    )


REPORTS = report_links.REPORTS


@require_GET
def reports_index(request: HttpRequest) -> HttpResponse:
    # Every report reads stations or sessions: the index is for those who may read one.
    if not (
        request.user.has_perm("stations.view_chargingstation")
        or request.user.has_perm("charging.view_chargingsession")
    ):
        raise PermissionDenied
    context = {
        **admin.site.each_context(request),
        "title": _("Reports"),
        "report_links": [(label, reverse(name)) for label, name in REPORTS],
    }
    return TemplateResponse(request, "cpo/panel/reports.html", context)


# --- the panel's language ------------------------------------------------------------------------


@require_POST
def language_set(request: HttpRequest) -> HttpResponse:
    """The header's language switcher: remembered for the user (every browser they sign in
    with) and in the language cookie (the login page), then back to the page it came from."""
    language = request.POST.get("language", "")
    next_url = request.POST.get("next", "")
    if not url_has_allowed_host_and_scheme(
        next_url, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    ):
        next_url = reverse("admin:index")
    try:
        user_language_set(user=request.user, language=language)  # type: ignore[arg-type]
    except ValidationError as exc:
        # Plain text: the message repeats what was posted.
        return HttpResponseBadRequest(
            " ".join(exc.messages), content_type="text/plain; charset=utf-8"
        )
    response = redirect(next_url)
    if language:
        response.set_cookie(
            settings.LANGUAGE_COOKIE_NAME,
            language,
            max_age=settings.LANGUAGE_COOKIE_AGE,
            path=settings.LANGUAGE_COOKIE_PATH,
            domain=settings.LANGUAGE_COOKIE_DOMAIN,
            secure=settings.LANGUAGE_COOKIE_SECURE,
            httponly=settings.LANGUAGE_COOKIE_HTTPONLY,
            samesite=settings.LANGUAGE_COOKIE_SAMESITE,
        )
    else:
        response.delete_cookie(settings.LANGUAGE_COOKIE_NAME)
    return response


# --- the map of sites ----------------------------------------------------------------------------


@require_GET
def sites_map(request: HttpRequest) -> HttpResponse:
    """Sites on a map, coloured by their worst station, with the same list beside it: the page
    is whole without tiles (no network, MAP_TILE_URL empty)."""
    _need(request, "stations.view_location", "stations.view_chargingstation")
    data = network.sites_map()
    context = {
        **admin.site.each_context(request),
        "title": _("Map of sites"),
        "map": data,
        "map_config": {
            "tile_url": settings.MAP_TILE_URL,
            "attribution": settings.MAP_TILE_ATTRIBUTION,
            "statuses": data["statuses"],
            "sites": [site for site in data["sites"] if site["has_position"]],
        },
    }
    return TemplateResponse(request, "cpo/panel/map.html", context)


# --- The user's own API tokens -------------------------------------------------------------------


class ApiTokenForm(forms.Form):
    name = forms.CharField(max_length=100, help_text="What the token is for, e.g. 'exports'.")
    expires_in_days = forms.IntegerField(
        label="Expires in (days)",
        min_value=1,
        max_value=api_tokens.MAX_LIFETIME.days,
        initial=api_tokens.DEFAULT_LIFETIME.days,
    )


NEW_TOKEN_KEY = "cpo.new_api_token"  # noqa: S105 - a session key, not a secret


def _api_tokens_page(request: HttpRequest, form: ApiTokenForm, **extra: Any) -> HttpResponse:
    context = {
        **admin.site.each_context(request),
        "title": "Your API tokens",
        "form": form,
        "tokens": ApiToken.objects.filter(user_id=request.user.pk or 0),
        "now": timezone.now(),
        **extra,
    }
    return TemplateResponse(request, "cpo/panel/api_tokens.html", context)


def api_tokens_page(request: HttpRequest) -> HttpResponse:
    """Any user's own API tokens: make one (its secret is shown on this answer only), see
    when each was last used, revoke one. A token acts with exactly its user's permissions."""
    if request.method == "POST":
        form = ApiTokenForm(request.POST)
        if form.is_valid():
            token, secret = api_tokens.api_token_create(
                user=request.user,
                name=form.cleaned_data["name"],
                expires_at=timezone.now() + timedelta(days=form.cleaned_data["expires_in_days"]),
            )
            # Shown on the next page only (a reload must not make another token): the session
            # holds the secret until that page pops it.
            request.session[NEW_TOKEN_KEY] = [token.pk, secret]
            return redirect("panel:api-tokens")
        return _api_tokens_page(request, form)
    new_id, new_secret = request.session.pop(NEW_TOKEN_KEY, [None, None])
    new_token = ApiToken.objects.filter(pk=new_id or 0, user_id=request.user.pk or 0).first()
    return _api_tokens_page(
        request, ApiTokenForm(), new_token=new_token, new_secret=new_secret if new_token else None
    )


@require_POST
def api_token_revoke(request: HttpRequest, pk: int) -> HttpResponse:
    token = get_object_or_404(ApiToken, pk=pk, user_id=request.user.pk or 0)
    api_tokens.api_token_revoke(token=token)
    messages.success(request, f"Token {token.name} ({token.prefix}) is revoked.")
    return redirect("panel:api-tokens")


# --- Energy management: a site's tree, its load over time ----------------------------------------


def energy_site(request: HttpRequest, pk: int) -> HttpResponse:
    """A site's grid tree: each node's counted load per phase against its limits, the
    connectors on it with what they were given, the load over time, stations that refuse
    profiles (with the button that takes one back)."""
    _need(request, "energy.view_energysite")
    site = get_object_or_404(EnergySite.objects.select_related("location"), pk=pk)
    data = energy_selectors.site_energy(site=site)
    nodes = data["nodes"]
    context = {
        **admin.site.each_context(request),
        "title": _("Energy of %(site)s") % {"site": site.location.name},
        "energy": data,
        "can_manage": request.user.has_perm("energy.change_stationenergy"),
        "chart_config": {
            "url": reverse("panel:energy-site-chart", args=[site.pk]),
            "nodes": [{"id": n["id"], "name": n["name"]} for n in nodes],
            "labels": {"limit": str(_("Limit"))},
        },
    }
    return TemplateResponse(request, "cpo/panel/energy_site.html", context)


@require_GET
def energy_site_chart(request: HttpRequest, pk: int) -> JsonResponse:
    _need(request, "energy.view_energysite")
    site = get_object_or_404(EnergySite, pk=pk)
    try:
        node_id = int(request.GET.get("node", "0"))
    except ValueError:
        return JsonResponse({"error": "node must be a number"}, status=400)
    if not site.nodes.filter(pk=node_id).exists():
        return JsonResponse({"error": "no such node on this site"}, status=404)
    return JsonResponse(energy_selectors.node_load_series(node_id=node_id))


@require_POST
def energy_station_manage(request: HttpRequest, pk: int) -> HttpResponse:
    """Take a station that refused profiles back into energy management, and reallocate."""
    _need(request, "energy.view_energysite", "energy.change_stationenergy")
    row = get_object_or_404(StationEnergy.objects.select_related("station"), pk=pk)
    energy_services.station_energy_manage(station=row.station)
    site = get_object_or_404(EnergySite, location_id=row.station.location_id)
    messages.success(
        request, _("%(station)s is energy-managed again.") % {"station": row.station.identity}
    )
    return redirect("panel:energy-site", pk=site.pk)


@require_POST
def energy_site_reallocate(request: HttpRequest, pk: int) -> HttpResponse:
    _need(request, "energy.view_energysite", "energy.change_energysite")
    site = get_object_or_404(EnergySite, pk=pk)
    energy_triggers.site_allocate_soon(site.pk, "operator")
    messages.success(request, _("A new allocation of this site is on its way."))
    return redirect("panel:energy-site", pk=site.pk)


def _staff(view: View) -> View:
    return admin.site.admin_view(view)


urlpatterns = [
    path("dashboard.json", _staff(dashboard_json), name="dashboard"),
    path("charts.json", _staff(charts_json), name="charts"),
    path("stations/<int:pk>/live.json", _staff(station_live_json), name="station-live"),
    path("stations/<int:pk>/timeline.json", _staff(station_timeline_json), name="station-timeline"),
    path("stations/<int:pk>/command", _staff(station_command), name="station-command"),
    path("sessions/<int:pk>/curve.json", _staff(session_curve_json), name="session-curve"),
    path("language", _staff(language_set), name="language"),
    path("map/", _staff(sites_map), name="map"),
    path("energy/<int:pk>/", _staff(energy_site), name="energy-site"),
    path("energy/<int:pk>/chart.json", _staff(energy_site_chart), name="energy-site-chart"),
    path("energy/<int:pk>/reallocate", _staff(energy_site_reallocate), name="energy-reallocate"),
    path(
        "energy/stations/<int:pk>/manage",
        _staff(energy_station_manage),
        name="energy-station-manage",
    ),
    path("sessions/<int:pk>/credit", _staff(session_credit), name="session-credit"),
    path("reports/", _staff(reports_index), name="reports"),
    path("api-tokens/", _staff(api_tokens_page), name="api-tokens"),
    path("api-tokens/<int:pk>/revoke", _staff(api_token_revoke), name="api-token-revoke"),
    path("reports/uptime/", _staff(report_uptime), name="report-uptime"),
    path("reports/energy-revenue/", _staff(report_energy_revenue), name="report-energy-revenue"),
    path(
        "reports/sessions-per-token/",
        _staff(report_sessions_per_token),
        name="report-sessions-per-token",
    ),
    # Uptime figures, excluded time and the uptime charts (cpo.panel.uptime_views).
    *[path(route, _staff(view), name=name) for route, view, name in uptime_views.ROUTES],
]

"""Operator panel for remote operations: a form per verb, command history, jobs and uploads.

The station admin (`stations.admin`) gains the command page through
`StationCommandsAdminMixin`; station, connector and session admins attach the action functions
below. Every write goes through the queue's services (`stations.commands.services`, `jobs`,
`local_lists`).
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from cpo.lib.formatting import zone_label, zone_or_panel
from stations import pki
from stations.commands import jobs, local_lists, security, services
from stations.commands import permissions as command_permissions
from stations.commands.codec import codec
from stations.commands.models import (
    Command,
    DiagnosticsUpload,
    Job,
    JobTarget,
    LocalAuthList,
    SecurityChange,
)
from stations.commands.verbs import VERBS, CommandError, Param
from stations.models import ChargingStation, Connector, StationCertificate, TrustedRoot

COMMAND_STATUS_COLOURS = {
    "queued": "#757575",
    "sent": "#1565c0",
    "accepted": "#2e7d32",
    "rejected": "#ef6c00",
    "failed": "#c62828",
    "timed_out": "#c62828",
    "expired": "#9e9e9e",
}


def command_badge(status: str, label: str) -> str:
    return format_html(
        '<span style="background:{};color:#fff;padding:1px 6px;border-radius:8px;'
        'font-size:11px">{}</span>',
        COMMAND_STATUS_COLOURS.get(status, "#9e9e9e"),
        label,
    )


def _can_send(request: HttpRequest, verb: str = "", params: dict[str, Any] | None = None) -> bool:
    """Any command (no verb given), or this verb with these parameters."""
    if not verb:
        return request.user.has_perm(command_permissions.SEND_ANY)
    return command_permissions.can_send(request.user, verb, params)


# --- Per-verb forms --------------------------------------------------------------------------


def _field(param: Param) -> forms.Field:
    common: dict[str, Any] = {
        "required": param.required and param.kind != "bool",
        "help_text": param.help,
        "label": param.name.replace("_", " "),
    }
    if param.default is not None:
        common["initial"] = param.default
    if param.kind == "int":
        return forms.IntegerField(**common)
    if param.kind == "bool":
        return forms.BooleanField(**common)
    if param.kind == "datetime":
        return forms.DateTimeField(**common)
    if param.kind == "choice":
        choices = [("", "—")] if not param.required else []
        return forms.ChoiceField(choices=choices + [(c, c) for c in param.choices], **common)
    if param.kind == "json":
        return forms.JSONField(**common)
    if param.kind == "list":
        common["help_text"] = f"{param.help} (comma separated)".strip()
        return forms.CharField(**common)
    return forms.CharField(**common)


def verb_form_class(verb: str) -> type[forms.Form]:
    """A Django form for one verb, built from its parameter spec."""
    fields = {param.name: _field(param) for param in VERBS[verb].params}
    return type(f"{verb.title().replace('_', '')}Form", (forms.Form,), fields)


class RawCommandForm(forms.Form):
    action = forms.CharField(max_length=50, help_text="An action of the station's protocol")
    payload = forms.JSONField(initial=dict, help_text="Validated against the official schema")


def form_params(form: forms.Form, verb: str) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for param in VERBS[verb].params:
        value: Any = form.cleaned_data.get(param.name)
        if value in (None, "") and param.kind != "bool":
            continue
        if param.kind == "list":
            value = [item.strip() for item in str(value).split(",") if item.strip()]
        elif param.kind == "datetime":
            value = value.isoformat()
        params[param.name] = value
    return params


class StationCommandsAdminMixin:
    """Adds `<station>/commands/` to a ChargingStation admin: history and a form per verb.

    Its ignores are for the ModelAdmin attributes it uses, which mypy does not see on a mixin."""

    def get_urls(self) -> list[Any]:
        urls = super().get_urls()  # type: ignore[misc]
        own = [
            path(
                "<path:object_id>/commands/",
                self.admin_site.admin_view(self.commands_view),  # type: ignore[attr-defined]
                name="stations_chargingstation_commands",
            ),
        ]
        return own + urls

    def commands_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        station = get_object_or_404(ChargingStation, pk=object_id)
        if not self.has_view_permission(request, station):  # type: ignore[attr-defined]
            raise PermissionDenied
        verb = request.GET.get("verb", "")
        available = [
            v
            for v in VERBS.values()
            if not station.protocol or codec().supports(station.protocol, v.name)
        ]
        # The verbs this user may send at all; their parameters are checked again on POST.
        available = [v for v in available if _can_send(request, v.name, _help_params(v.name))]
        form: forms.Form | None = None
        if verb == "raw" and _can_send(request):
            form_class: type[forms.Form] | None = RawCommandForm
        elif verb in VERBS and verb in {v.name for v in available}:
            form_class = verb_form_class(verb)
        else:
            form_class = None
        if request.method == "POST" and form_class is None:
            # No verb, or one this user may not send (Finance: none; Support: the driver-help
            # commands only).
            raise PermissionDenied
        if form_class is not None:
            form = form_class(request.POST or None)
            if request.method == "POST":
                if (
                    verb != "raw"
                    and form.is_valid()
                    and not _can_send(request, verb, form_params(form, verb))
                ):
                    raise PermissionDenied
                if form.is_valid():
                    try:
                        if verb == "raw":
                            command = services.command_create(
                                station=station,
                                action=form.cleaned_data["action"],
                                payload=form.cleaned_data["payload"],
                                origin=Command.Origin.ADMIN,
                                requested_by=request.user,
                            )
                        else:
                            command = services.command_create(
                                station=station,
                                verb=verb,
                                params=form_params(form, verb),
                                origin=Command.Origin.ADMIN,
                                requested_by=request.user,
                            )
                    except CommandError as error:
                        form.add_error(None, error.message)
                    else:
                        self.message_user(  # type: ignore[attr-defined]
                            request,
                            f"{command.action} queued for {station.identity} "
                            f"({'online' if station.is_online else 'offline: sent on connect'}).",
                            messages.SUCCESS,
                        )
                        return HttpResponseRedirect(request.path)
        history = Command.objects.filter(station=station).select_related("requested_by")[:100]
        tz = zone_or_panel(station.location.time_zone if station.location else None)
        context = {
            **self.admin_site.each_context(request),  # type: ignore[attr-defined]
            "opts": ChargingStation._meta,
            "title": f"Commands · {station.identity}",
            "station": station,
            # The history's times in the site's zone, as on the station page.
            "tz": tz,
            "zone_label": zone_label(tz),
            "verbs": available,
            "verb": verb,
            "verb_label": VERBS[verb].label if verb in VERBS else "Raw action",
            "form": form,
            "history": history,
            "can_send": _can_send(request) or bool(available),
            "can_send_raw": _can_send(request),
            "local_list": LocalAuthList.objects.filter(station=station).first(),
        }
        return TemplateResponse(request, "commands/station_commands.html", context)


class StationSecurityAdminMixin:
    """Adds `<station>/security/` to a ChargingStation admin: its security profile, the
    certificates our CA signed for it (revoke), the stored roots (install, delete), password
    rotation and profile upgrades. Every button goes through `stations.commands.security`."""

    def get_urls(self) -> list[Any]:
        urls = super().get_urls()  # type: ignore[misc]
        own = [
            path(
                "<path:object_id>/security/",
                self.admin_site.admin_view(self.security_view),  # type: ignore[attr-defined]
                name="stations_chargingstation_security",
            ),
        ]
        return own + urls

    def _security_post(self, request: HttpRequest, station: ChargingStation) -> str:
        """Run the button that was pressed; returns what to tell the operator."""
        op = request.POST.get("op", "")
        user = request.user
        if op == "revoke":
            if not user.has_perm("stations.change_stationcertificate"):
                raise PermissionDenied
            certificate = get_object_or_404(
                StationCertificate, pk=request.POST.get("certificate"), station=station
            )
            if security.certificate_revoke(certificate=certificate, by=user.get_username()):
                return f"Certificate {certificate.serial} revoked."
            return f"Certificate {certificate.serial} was revoked already."
        if not _can_send(request):
            raise PermissionDenied
        if op == "rotate":
            change = security.password_rotate(station=station, requested_by=user)
            return (
                f"A new password was sent (command {change.command_id}); it is used once "
                "the station accepts it."
            )
        if op == "upgrade":
            raw = request.POST.get("profile") or ""
            profile = int(raw) if raw.isdigit() else 0
            change = security.security_profile_upgrade(
                station=station, profile=profile, requested_by=user
            )
            return f"Upgrade to security profile {profile} queued (command {change.command_id})."
        if op in ("install", "delete"):
            root = get_object_or_404(TrustedRoot, pk=request.POST.get("root"))
            send = security.root_install if op == "install" else security.root_delete
            command = send(station=station, root=root, requested_by=user)
            return f"{command.action} of {root} queued (command {command.pk})."
        raise CommandError("no such button on this page")

    def security_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        station = get_object_or_404(ChargingStation, pk=object_id)
        if not self.has_view_permission(request, station):  # type: ignore[attr-defined]
            raise PermissionDenied
        if request.method == "POST":
            try:
                text = self._security_post(request, station)
            except CommandError as error:
                self.message_user(request, error.message, messages.ERROR)  # type: ignore[attr-defined]
            else:
                self.message_user(request, text, messages.SUCCESS)  # type: ignore[attr-defined]
            return HttpResponseRedirect(request.path)
        security.csms_root()
        context = {
            **self.admin_site.each_context(request),  # type: ignore[attr-defined]
            "opts": ChargingStation._meta,
            "title": f"Security · {station.identity}",
            "station": station,
            "certificates": StationCertificate.objects.filter(station=station),
            "roots": TrustedRoot.objects.all(),
            "changes": SecurityChange.objects.filter(station=station).select_related("command")[
                :20
            ],
            "upgrades": [p for p in (1, 2, 3) if p > station.security_profile],
            "can_send": _can_send(request),
            "can_revoke": request.user.has_perm("stations.change_stationcertificate"),
        }
        return TemplateResponse(request, "commands/station_security.html", context)


@admin.register(StationCertificate)
class StationCertificateAdmin(admin.ModelAdmin):
    """The certificates our CA signed; read-only, revoked by the action (or the station's
    security page)."""

    list_display = ("serial", "station", "subject", "not_after", "status", "revoked_at")
    list_filter = ("status", "certificate_type")
    list_select_related = ("station",)
    search_fields = ("station__identity", "serial", "subject")
    readonly_fields = (
        "station",
        "certificate_type",
        "serial",
        "subject",
        "not_before",
        "not_after",
        "status",
        "revoked_at",
        "revoked_by",
        "renewal_requested_at",
        "pem",
    )
    actions = ["revoke_certificates"]

    @admin.action(description="Revoke selected certificates", permissions=["revoke"])
    def revoke_certificates(self, request: HttpRequest, queryset: QuerySet) -> None:
        revoked = sum(
            security.certificate_revoke(certificate=c, by=request.user.get_username())
            for c in queryset
        )
        self.message_user(request, f"{revoked} certificate(s) revoked.", messages.SUCCESS)

    def has_revoke_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("stations.change_stationcertificate")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False  # signed by our CA from a station's CSR, never made up here

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False  # a revoked certificate must stay known to be refused


class TrustedRootForm(forms.ModelForm):
    class Meta:
        model = TrustedRoot
        fields = ("name", "kind", "pem")

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if data.get("pem"):
            try:
                self.instance = security.trusted_root_build(
                    name=data.get("name", ""), kind=data.get("kind", ""), pem=data["pem"]
                )
            except pki.PkiError as error:
                raise forms.ValidationError({"pem": error.message}) from None
        return data


@admin.register(TrustedRoot)
class TrustedRootAdmin(admin.ModelAdmin):
    """Roots stations may be given (the station's security page installs them): ours, stored
    on first use of the CA, and the manufacturer and V2G roots an operator adds."""

    form = TrustedRootForm
    list_display = ("name", "kind", "subject", "serial", "not_after")
    list_filter = ("kind",)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SecurityChange)
class SecurityChangeAdmin(admin.ModelAdmin):
    list_display = ("station", "kind", "profile", "status", "created_at", "completed_at")
    list_filter = ("kind", "status")
    list_select_related = ("station",)
    search_fields = ("station__identity",)
    exclude = ("password_hash",)
    readonly_fields = (
        "station",
        "kind",
        "command",
        "profile",
        "prerequisites",
        "status",
        "requested_by",
        "created_at",
        "completed_at",
    )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


# --- Actions for the station, connector and session admins ------------------------------------


def _help_params(verb: str) -> dict[str, Any]:
    """The parameters under which `verb` is a driver-help command (see permissions)."""
    return {"message": "StatusNotification"} if verb == "trigger_message" else {}


def _queue(
    modeladmin: Any, request: HttpRequest, pairs: list[tuple[ChargingStation, str, dict[str, Any]]]
) -> None:
    if not all(_can_send(request, verb, params) for _station, verb, params in pairs):
        raise PermissionDenied
    queued, refused = 0, []
    for station, verb, params in pairs:
        try:
            services.command_create(
                station=station,
                verb=verb,
                params=params,
                origin=Command.Origin.ADMIN,
                requested_by=request.user,
            )
            queued += 1
        except CommandError as error:
            refused.append(f"{station.identity}: {error.message}")
    if queued:
        modeladmin.message_user(request, f"{queued} command(s) queued.", messages.SUCCESS)
    if refused:
        modeladmin.message_user(request, "; ".join(refused)[:500], messages.ERROR)


@admin.action(description="Reset (soft) selected stations", permissions=["send_command"])
def reset_soft(modeladmin: Any, request: HttpRequest, queryset: QuerySet) -> None:
    _queue(modeladmin, request, [(s, "reset", {"type": "soft"}) for s in queryset])


@admin.action(description="Reset (hard) selected stations", permissions=["send_command"])
def reset_hard(modeladmin: Any, request: HttpRequest, queryset: QuerySet) -> None:
    _queue(modeladmin, request, [(s, "reset", {"type": "hard"}) for s in queryset])


@admin.action(description="Clear authorization cache", permissions=["send_command"])
def clear_cache(modeladmin: Any, request: HttpRequest, queryset: QuerySet) -> None:
    _queue(modeladmin, request, [(s, "clear_cache", {}) for s in queryset])


@admin.action(description="Send local authorization list (full)", permissions=["send_command"])
def local_list_full_sync(modeladmin: Any, request: HttpRequest, queryset: QuerySet) -> None:
    if not _can_send(request):
        raise PermissionDenied
    sent = sum(1 for s in queryset if local_lists.local_list_sync(station_id=s.pk, full=True))
    modeladmin.message_user(request, f"Local list sent to {sent} station(s).", messages.SUCCESS)


@admin.action(
    description="Ask selected stations for their status (StatusNotification)",
    permissions=["trigger_status"],
)
def trigger_status(modeladmin: Any, request: HttpRequest, queryset: QuerySet) -> None:
    _queue(
        modeladmin,
        request,
        [(s, "trigger_message", {"message": "StatusNotification"}) for s in queryset],
    )


@admin.action(description="Unlock selected connectors", permissions=["unlock_connector"])
def unlock_connectors(modeladmin: Any, request: HttpRequest, queryset: QuerySet) -> None:
    _queue(
        modeladmin,
        request,
        [
            (c.station, "unlock_connector", _connector_params(c))
            for c in queryset.select_related("station", "evse")
        ],
    )


@admin.action(description="Make selected connectors inoperative", permissions=["send_command"])
def connectors_inoperative(modeladmin: Any, request: HttpRequest, queryset: QuerySet) -> None:
    _queue(
        modeladmin,
        request,
        [
            (c.station, "change_availability", {**_connector_params(c), "operative": False})
            for c in queryset.select_related("station", "evse")
        ],
    )


@admin.action(description="Make selected connectors operative", permissions=["send_command"])
def connectors_operative(modeladmin: Any, request: HttpRequest, queryset: QuerySet) -> None:
    _queue(
        modeladmin,
        request,
        [
            (c.station, "change_availability", {**_connector_params(c), "operative": True})
            for c in queryset.select_related("station", "evse")
        ],
    )


def _connector_params(connector: Connector) -> dict[str, Any]:
    return {"evse_id": connector.evse.evse_id, "connector_id": connector.connector_id}


@admin.action(description="Remote stop selected sessions", permissions=["remote_stop"])
def remote_stop_sessions(modeladmin: Any, request: HttpRequest, queryset: QuerySet) -> None:
    """For the charging session admin: stop each running session at its station."""
    _queue(
        modeladmin,
        request,
        [
            (session.station, "remote_stop", {"transaction_id": session.transaction_id})
            for session in queryset.select_related("station")
        ],
    )


class SendCommandPermissionMixin:
    """Gives a ModelAdmin the action permissions used by the actions above: `send_command`
    (any command) and the driver-help commands' own (stations.commands.permissions)."""

    def has_send_command_permission(self, request: HttpRequest) -> bool:
        return _can_send(request)

    def has_trigger_status_permission(self, request: HttpRequest) -> bool:
        return _can_send(request, "trigger_message", {"message": "StatusNotification"})

    def has_unlock_connector_permission(self, request: HttpRequest) -> bool:
        return _can_send(request, "unlock_connector")

    def has_remote_stop_permission(self, request: HttpRequest) -> bool:
        return _can_send(request, "remote_stop")


STATION_ACTIONS = [trigger_status, reset_soft, reset_hard, clear_cache, local_list_full_sync]
CONNECTOR_ACTIONS = [unlock_connectors, connectors_operative, connectors_inoperative]
SESSION_ACTIONS = [remote_stop_sessions]


# --- Command history ---------------------------------------------------------------------------


class StatusFilter(admin.SimpleListFilter):
    title = "outcome"
    parameter_name = "outcome"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("pending", "Pending"), ("ok", "Accepted"), ("problem", "Not accepted")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "pending":
            return queryset.filter(status__in=[Command.Status.QUEUED, Command.Status.SENT])
        if self.value() == "ok":
            return queryset.filter(status=Command.Status.ACCEPTED)
        if self.value() == "problem":
            return queryset.exclude(
                status__in=[Command.Status.QUEUED, Command.Status.SENT, Command.Status.ACCEPTED]
            )
        return queryset


@admin.register(Command)
class CommandAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "station",
        "action",
        "verb",
        "status_badge",
        "origin",
        "requested_by",
        "created_at",
        "completed_at",
    )
    list_filter = (StatusFilter, "status", "origin", "action", "protocol")
    list_select_related = ("station", "requested_by")
    search_fields = ("station__identity", "action", "message_id")
    date_hierarchy = "created_at"
    readonly_fields = (
        "station",
        "protocol",
        "verb",
        "action",
        "pretty_payload",
        "status",
        "pretty_response",
        "batch_parts",
        "batch_joined_response",
        "error_code",
        "error_description",
        "origin",
        "requested_by",
        "message_id",
        "node",
        "created_at",
        "expires_at",
        "sent_at",
        "completed_at",
    )
    exclude = ("payload", "response")
    show_full_result_count = False

    @admin.display(description="Status", ordering="status")
    def status_badge(self, obj: Command) -> str:
        return command_badge(obj.status, obj.get_status_display())

    @admin.display(description="Payload")
    def pretty_payload(self, obj: Command) -> str:
        return format_html("<pre>{}</pre>", json.dumps(obj.payload, indent=2))

    @admin.display(description="Response")
    def pretty_response(self, obj: Command) -> str:
        if obj.response is None:
            return "—"
        return format_html("<pre>{}</pre>", json.dumps(obj.response, indent=2))

    @admin.display(description="Batch (ItemsPerMessage)")
    def batch_parts(self, obj: Command) -> str:
        if obj.batch_size <= 1 and obj.batch_id is None:
            return "—"
        parts = services.command_parts(obj)
        return format_html_join(
            ", ",
            '<a href="{}">#{}</a> ({})',
            (
                (
                    reverse("admin:commands_command_change", args=[part.pk]),
                    part.pk,
                    part.get_status_display(),
                )
                for part in parts
            ),
        )

    @admin.display(description="Joined response of the batch")
    def batch_joined_response(self, obj: Command) -> str:
        if obj.batch_size <= 1:
            return "—"
        joined = services.command_batch_response(obj)
        if joined is None:
            return "waiting for every part's answer"
        return format_html("<pre>{}</pre>", json.dumps(joined, indent=2))

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The command history is the record of what was sent to whom: never deleted here.
        return False


# --- Jobs ------------------------------------------------------------------------------------


class JobCreateForm(forms.ModelForm):
    """The add form: targeting and limits are model fields, the rest become parameters."""

    stations = forms.ModelMultipleChoiceField(
        queryset=ChargingStation.objects.exclude(protocol=""),
        required=False,
        help_text="Leave empty to target by site, model and identity prefix.",
    )
    firmware_location = forms.URLField(
        required=False, assume_scheme="https", help_text="Firmware: download URL"
    )
    retrieve_at = forms.DateTimeField(required=False, help_text="Firmware: download from")
    install_at = forms.DateTimeField(required=False)
    signing_certificate = forms.CharField(
        widget=forms.Textarea, required=False, help_text="Signed firmware: PEM certificate"
    )
    signature = forms.CharField(required=False, help_text="Signed firmware: base64 signature")
    log_type = forms.ChoiceField(
        choices=[("DiagnosticsLog", "DiagnosticsLog"), ("SecurityLog", "SecurityLog")],
        required=False,
    )
    start_time = forms.DateTimeField(required=False, help_text="Diagnostics: oldest entries")
    stop_time = forms.DateTimeField(required=False, help_text="Diagnostics: newest entries")

    class Meta:
        model = Job
        fields = (
            "kind",
            "name",
            "location",
            "station_model",
            "station_filter",
            "concurrency",
            "max_attempts",
            "target_timeout",
        )

    def parameters(self, request: HttpRequest) -> dict[str, Any]:
        data = self.cleaned_data
        if data["kind"] == Job.Kind.FIRMWARE:
            params = {
                "location": data.get("firmware_location"),
                "retrieve_at": data.get("retrieve_at") and data["retrieve_at"].isoformat(),
                "install_at": data.get("install_at") and data["install_at"].isoformat(),
                "signing_certificate": data.get("signing_certificate"),
                "signature": data.get("signature"),
            }
        else:
            params = {
                "log_type": data.get("log_type") or "DiagnosticsLog",
                "start_time": data.get("start_time") and data["start_time"].isoformat(),
                "stop_time": data.get("stop_time") and data["stop_time"].isoformat(),
                "upload_base_url": request.build_absolute_uri("/").rstrip("/"),
            }
        return {k: v for k, v in params.items() if v}


class JobTargetInline(admin.TabularInline):
    model = JobTarget
    extra = 0
    can_delete = False
    fields = (
        "station",
        "status_badge",
        "progress",
        "attempts",
        "command_link",
        "upload_link",
        "detail",
        "started_at",
        "finished_at",
    )
    readonly_fields = fields

    @admin.display(description="Status")
    def status_badge(self, obj: JobTarget) -> str:
        colours = {
            "pending": "queued",
            "running": "sent",
            "succeeded": "accepted",
            "failed": "failed",
            "cancelled": "expired",
        }
        return command_badge(colours.get(obj.status, ""), obj.get_status_display())

    @admin.display(description="Command")
    def command_link(self, obj: JobTarget) -> str:
        if obj.command is None:
            return "—"
        url = reverse("admin:commands_command_change", args=[obj.command_id])
        return format_html('<a href="{}">{}</a>', url, obj.command.get_status_display())

    @admin.display(description="File")
    def upload_link(self, obj: JobTarget) -> str:
        upload = next((u for u in obj.uploads.all() if u.uploaded_at), None)
        if upload is None:
            return "—"
        url = reverse("admin:commands_diagnosticsupload_change", args=[upload.pk])
        return format_html('<a href="{}">{} ({} bytes)</a>', url, upload.filename, upload.size)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .select_related("station", "command")
            .prefetch_related("uploads")
        )


@admin.register(Job)
class JobAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "kind",
        "status",
        "progress_bar",
        "created_by",
        "created_at",
        "finished_at",
    )
    list_filter = ("kind", "status")
    inlines = [JobTargetInline]
    actions = ["cancel_jobs"]
    readonly_fields = (
        "kind",
        "name",
        "status",
        "progress_bar",
        "parameters",
        "location",
        "station_model",
        "station_filter",
        "concurrency",
        "max_attempts",
        "target_timeout",
        "created_by",
        "created_at",
        "finished_at",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        counts = {
            f"n_{s}": Count("targets", filter=Q(targets__status=s)) for s in JobTarget.Status.values
        }
        return (
            super()
            .get_queryset(request)
            .select_related("created_by")
            .annotate(n_total=Count("targets"), **counts)
        )

    @admin.display(description="Progress")
    def progress_bar(self, obj: Job) -> str:
        counts = {s: 0 for s in JobTarget.Status.values}
        if hasattr(obj, "n_total"):
            counts = {s: getattr(obj, f"n_{s}") for s in counts}
        else:
            for status in obj.targets.values_list("status", flat=True):
                counts[status] += 1
        total = sum(counts.values())
        done, failed, running = counts["succeeded"], counts["failed"], counts["running"]
        width = int(100 * (done + failed) / total) if total else 0
        return format_html(
            '<div style="width:160px;background:#eee;border-radius:4px">'
            '<div style="width:{}%;background:#2e7d32;height:8px;border-radius:4px"></div>'
            "</div><small>{} ok · {} failed · {} running · {} total</small>",
            width,
            done,
            failed,
            running,
            total,
        )

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        if obj is None:
            kwargs["form"] = JobCreateForm
        return super().get_form(request, obj, change, **kwargs)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        if obj is None:
            return [
                *JobCreateForm.Meta.fields,
                "stations",
                "firmware_location",
                "retrieve_at",
                "install_at",
                "signing_certificate",
                "signature",
                "log_type",
                "start_time",
                "stop_time",
            ]
        return self.readonly_fields

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.readonly_fields if obj is not None else ()

    def get_inlines(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.inlines if obj is not None else []

    def has_add_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("commands.manage_job") and _can_send(request)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The job page is read-only (view permission); jobs change only through services.
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # A job is the record of a rollout: cancelled, never deleted.
        return False

    def save_model(self, request: HttpRequest, obj: Job, form: Any, change: bool) -> None:
        """Jobs are created by the service, never by saving the form's instance."""
        data = form.cleaned_data
        stations = list(data.get("stations") or [])
        try:
            job = jobs.job_create(
                kind=data["kind"],
                name=data.get("name", ""),
                parameters=form.parameters(request),
                location=data.get("location"),
                station_model=data.get("station_model", ""),
                station_filter=data.get("station_filter", ""),
                station_ids=[s.pk for s in stations] if stations else None,
                concurrency=data["concurrency"],
                max_attempts=data["max_attempts"],
                target_timeout=data["target_timeout"],
                created_by=request.user,
            )
        except CommandError as error:
            raise PermissionDenied(error.message) from None
        obj.pk = job.pk
        obj.refresh_from_db()

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        return None

    @admin.action(description="Cancel selected jobs", permissions=["manage_job"])
    def cancel_jobs(self, request: HttpRequest, queryset: QuerySet) -> None:
        for job in queryset.filter(status=Job.Status.RUNNING):
            jobs.job_cancel(job=job)
        self.message_user(request, "Jobs cancelled.", messages.SUCCESS)

    def has_manage_job_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("commands.manage_job")


@admin.register(DiagnosticsUpload)
class DiagnosticsUploadAdmin(admin.ModelAdmin):
    list_display = ("__str__", "station", "job_target", "size", "uploaded_at", "expires_at")
    list_select_related = ("station", "job_target__job")
    list_filter = (("uploaded_at", admin.EmptyFieldListFilter),)
    search_fields = ("station__identity", "filename")
    readonly_fields = (
        "station",
        "job_target",
        "file",
        "filename",
        "size",
        "max_bytes",
        "created_at",
        "expires_at",
        "uploaded_at",
    )
    exclude = ("token",)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(LocalAuthList)
class LocalAuthListAdmin(admin.ModelAdmin):
    list_display = ("station", "version", "status", "entry_count", "synced_at")
    list_filter = ("status",)
    list_select_related = ("station",)
    search_fields = ("station__identity",)
    readonly_fields = (
        "station",
        "version",
        "status",
        "entries",
        "pending_command",
        "pending_version",
        "pending_full",
        "synced_at",
    )
    exclude = ("pending_entries",)
    actions = ["resync"]

    @admin.display(description="Entries")
    def entry_count(self, obj: LocalAuthList) -> int:
        return len(obj.entries)

    @admin.action(description="Send the full list again", permissions=["send_command"])
    def resync(self, request: HttpRequest, queryset: QuerySet) -> None:
        local_list_full_sync(
            self, request, ChargingStation.objects.filter(pk__in=queryset.values("station_id"))
        )

    def has_send_command_permission(self, request: HttpRequest) -> bool:
        return _can_send(request)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # The list the station holds: deleting the row would break the differential sync.
        return False

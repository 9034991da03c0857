"""Operator panel: sites, stations with live state, connectors, what stations reported.

Charger-owned data (boot data, status, events, message log) is read-only here: only the OCPP
edge writes it, through services.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.db.models import Count, Q, QuerySet
from django.forms import ModelForm
from django.http import HttpRequest, HttpResponse, HttpResponseNotAllowed, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import path, reverse
from django.utils.functional import cached_property
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _

from cpo.lib.admin_times import LocalTimesMixin
from cpo.lib.formatting import local_text, zone_or_panel
from stations import admission, services
from stations.commands.admin import (
    CONNECTOR_ACTIONS,
    STATION_ACTIONS,
    SendCommandPermissionMixin,
    StationCommandsAdminMixin,
    StationSecurityAdminMixin,
)
from stations.models import (
    AuthLockout,
    CertificateSigningRequest,
    ChargingStation,
    Connector,
    ConnectorStatusEvent,
    DeviceModelVariable,
    Evse,
    Location,
    OcppMessage,
    SecurityEvent,
    StationConnection,
    StationEvent,
    StationNotification,
)

STATUS_COLOURS = {
    "Available": "#2e7d32",
    "Charging": "#1565c0",
    "Occupied": "#1565c0",
    "Preparing": "#6a1b9a",
    "SuspendedEV": "#6a1b9a",
    "SuspendedEVSE": "#6a1b9a",
    "Finishing": "#6a1b9a",
    "Reserved": "#ef6c00",
    "Unavailable": "#757575",
    "Faulted": "#c62828",
}


def status_badge(status: str, error: str = "") -> str:
    colour = STATUS_COLOURS.get(status, "#9e9e9e")
    label = f"{status or 'unknown'}{' · ' + error if error else ''}"
    return format_html(
        '<span style="background:{};color:#fff;padding:1px 6px;border-radius:8px;'
        'font-size:11px;white-space:nowrap">{}</span>',
        colour,
        label,
    )


class FixedCountPaginator(Paginator):
    """Skips COUNT(*) on the big append-only tables (samples, message log, events)."""

    @cached_property
    def count(self) -> int:
        return 10_000


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


@admin.register(Location)
class LocationAdmin(admin.ModelAdmin):
    list_display = ("name", "city", "country", "time_zone", "station_count", "publish")
    search_fields = ("name", "city", "address", "postal_code")
    list_filter = ("country", "publish")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Location]:
        return super().get_queryset(request).annotate(_stations=Count("stations"))

    @admin.display(description="Stations", ordering="_stations")
    def station_count(self, obj: Location) -> int:
        return obj._stations  # type: ignore[attr-defined]  # annotated by get_queryset


class ConnectorInline(admin.TabularInline):
    model = Connector
    extra = 0
    classes = ("collapse",)
    fields = (
        "evse",
        "connector_id",
        "standard",
        "format",
        "power_type",
        "max_power_w",
        "live_status",
        "status_at",
    )
    readonly_fields = ("live_status", "status_at")

    @admin.display(description="Status")
    def live_status(self, obj: Connector) -> str:
        return status_badge(obj.status, obj.error_code)

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        formset = super().get_formset(request, obj, **kwargs)
        # A connector belongs to an EVSE of its own station, never to another station's (the
        # form class is made per request, so its field is this page's alone).
        evses = Evse.objects.filter(station=obj) if obj is not None else Evse.objects.none()
        formset.form.base_fields["evse"].queryset = evses  # type: ignore[attr-defined]
        return formset


class EvseInline(admin.TabularInline):
    model = Evse
    extra = 0
    classes = ("collapse",)
    fields = ("evse_id", "uid", "emi3_id", "status", "status_at")
    readonly_fields = ("status", "status_at")


class OnlineFilter(admin.SimpleListFilter):
    title = "connection"
    parameter_name = "online"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Online"), ("no", "Offline"), ("faulted", "Has a faulted connector")]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[ChargingStation]
    ) -> QuerySet[ChargingStation]:
        if self.value() == "yes":
            return queryset.filter(is_online=True)
        if self.value() == "no":
            return queryset.filter(is_online=False)
        if self.value() == "faulted":
            return queryset.filter(Q(connectors__status="Faulted") | Q(status="Faulted")).distinct()
        return queryset


# Enough for any real station, small enough that a typo does not create thousands of rows.
MAX_NEW_CONNECTORS = 64


def station_password_field(*, adding: bool) -> forms.CharField:
    """The station page's password field; its minimum is OCPP_STATION_PASSWORD_MIN_LENGTH."""
    minimum = settings.OCPP_STATION_PASSWORD_MIN_LENGTH
    empty = (
        "leave empty for a station that connects without one (or with a client certificate)"
        if adding
        else "leave empty to keep the current one"
    )
    return forms.CharField(
        required=False,
        min_length=minimum,
        max_length=40,
        strip=False,
        widget=forms.PasswordInput(render_value=False),
        error_messages={
            "min_length": "The password has %(show_value)d characters; stations need at least "
            "%(limit_value)d here. The minimum is the setting OCPP_STATION_PASSWORD_MIN_LENGTH "
            "(16 by default, as OCPP 2.0.1 and the 1.6 security extension require); lower it "
            "for legacy OCPP 1.6 chargers that ship with a shorter password.",
        },
        help_text=f"HTTP Basic password of the station ({minimum}-40 characters; the minimum "
        f"is OCPP_STATION_PASSWORD_MIN_LENGTH). Stored only as a salted hash; {empty}.",
    )


@admin.register(ChargingStation)
class ChargingStationAdmin(
    LocalTimesMixin,
    StationCommandsAdminMixin,
    StationSecurityAdminMixin,
    SendCommandPermissionMixin,
    admin.ModelAdmin,
):
    list_display = (
        "identity",
        "location",
        "online",
        "protocol",
        "registration_status",
        "vendor",
        "model",
        "firmware_version",
        "last_seen_at",
        "connector_states",
    )
    list_filter = (OnlineFilter, "protocol", "registration_status", "location", "vendor")
    search_fields = ("identity", "serial_number", "vendor", "model")
    list_select_related = ("location",)
    inlines = [EvseInline, ConnectorInline]
    actions = ["accept_stations", "trace_on", "trace_off", *STATION_ACTIONS]
    reported_fields = (
        "protocol",
        "vendor",
        "model",
        "serial_number",
        "firmware_version",
        "iccid",
        "imsi",
        "meter_type",
        "meter_serial_number",
        "boot_reason",
        "last_boot_at",
        "status",
        "error_code",
        "auto_registered",
    )
    connection_fields = ("is_online", "last_seen_at", "connected_at", "node", "recent_connections")
    # What the station reports and its connection state are the charger's, never edited here.
    readonly_fields = reported_fields + connection_fields
    fieldsets = (
        (None, {"fields": ("identity", "location", "registration_status", "new_password")}),
        (
            "Behaviour",
            {
                "fields": (
                    "heartbeat_interval",
                    "cost_display_enabled",
                    "trace_enabled",
                    "manual_only",
                )
            },
        ),
        # Shown above, in words and in the site's time zone: the raw fields stay folded.
        ("Reported by the station", {"fields": reported_fields, "classes": ("collapse",)}),
        ("Connection", {"fields": connection_fields, "classes": ("collapse",)}),
    )
    # A new station: the operator names its protocol and its connectors (nothing is reported
    # yet); once it connects, the protocol is the one it negotiated.
    add_fieldsets = (
        (
            None,
            {
                "fields": (
                    "identity",
                    "location",
                    "protocol",
                    "connector_count",
                    "registration_status",
                    "new_password",
                )
            },
        ),
        (
            "Behaviour",
            {
                "fields": (
                    "heartbeat_interval",
                    "cost_display_enabled",
                    "trace_enabled",
                    "manual_only",
                )
            },
        ),
    )

    def get_fieldsets(self, request: HttpRequest, obj: ChargingStation | None = None) -> Any:
        if obj is None:
            return self.add_fieldsets
        return self._local_fieldsets(self.fieldsets, set(self.readonly_fields))

    def get_readonly_fields(self, request: HttpRequest, obj: ChargingStation | None = None) -> Any:
        return () if obj is None else self.local_readonly(request, obj, self.readonly_fields)

    def object_time_zone(self, obj: ChargingStation) -> Any:
        # The station's times are its site's, as on the page above the fields.
        return zone_or_panel(obj.location.time_zone if obj.location else None)

    def get_inlines(self, request: HttpRequest, obj: ChargingStation | None = None) -> Any:
        # Connectors need their EVSE saved first: a new station gets both from connector_count.
        return [] if obj is None else self.inlines

    def get_form(
        self,
        request: HttpRequest,
        obj: ChargingStation | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> type[ModelForm[ChargingStation]]:
        # The extra fields must be on the form handed to modelform_factory: a field declared
        # only on a subclass of its result is refused as unknown by the fieldsets check.
        class StationForm(self.form):  # type: ignore[name-defined]  # a base known at run time
            new_password = station_password_field(adding=obj is None)
            if obj is None:
                protocol = forms.ChoiceField(
                    choices=[("", "not known yet"), *ChargingStation.Protocol.choices],
                    required=False,
                    help_text="The OCPP version the charger speaks: commands can be queued "
                    "before it first connects. Each connection then records the version it "
                    "negotiated.",
                )
                connector_count = forms.IntegerField(
                    label="Connectors",
                    min_value=0,
                    max_value=MAX_NEW_CONNECTORS,
                    initial=2,
                    help_text="Creates EVSE 1..N with connector 1 each, as an OCPP 1.6 station "
                    "numbers them (connector N is EVSE N). Standard and power, and more "
                    "connectors per EVSE, are edited on the station page after saving.",
                )

        kwargs["form"] = StationForm
        return super().get_form(request, obj, change, **kwargs)

    def save_model(
        self,
        request: HttpRequest,
        obj: ChargingStation,
        form: ModelForm[ChargingStation],
        change: bool,
    ) -> None:
        password = form.cleaned_data.get("new_password")
        if password:
            obj.set_password(password)
        super().save_model(request, obj, form, change)
        if not change and form.cleaned_data.get("connector_count"):
            services.station_evses_create(station=obj, count=form.cleaned_data["connector_count"])

    @admin.display(description="Online", boolean=True, ordering="is_online")
    def online(self, obj: ChargingStation) -> bool:
        return obj.is_online

    @admin.display(description="Connectors")
    def connector_states(self, obj: ChargingStation) -> str:
        return format_html_join(
            " ", "{}", ((status_badge(c.status, c.error_code),) for c in obj.connectors.all())
        )

    @admin.display(description="Recent connections")
    def recent_connections(self, obj: ChargingStation) -> str:
        rows = obj.connections.all()[:10]
        tz = self.object_time_zone(obj)
        return format_html(
            "<table><tr><th>Connected</th><th>Disconnected</th><th>Protocol</th><th>From</th>"
            "<th>Node</th><th>Reason</th></tr>{}</table>",
            format_html_join(
                "",
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                (
                    (
                        local_text(c.connected_at, tz),
                        local_text(c.disconnected_at, tz),
                        c.protocol,
                        c.remote_addr,
                        c.node,
                        c.close_reason,
                    )
                    for c in rows
                ),
            ),
        )

    def get_queryset(self, request: HttpRequest) -> QuerySet[ChargingStation]:
        return super().get_queryset(request).prefetch_related("connectors")

    def get_urls(self) -> list[Any]:
        own = [
            path(
                "<path:object_id>/registration/pending/",
                self.admin_site.admin_view(self.set_pending_view),
                name="stations_chargingstation_set_pending",
            ),
        ]
        return own + super().get_urls()

    def set_pending_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The station page's "Set back to Pending" button (B02): its next BootNotification
        is answered Pending, until an operator accepts it again."""
        station = get_object_or_404(ChargingStation, pk=object_id)
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        if not self.has_change_permission(request, station):
            raise PermissionDenied
        services.station_registration_set(
            station=station, status=ChargingStation.RegistrationStatus.PENDING
        )
        self.message_user(
            request,
            _("%(identity)s is Pending: its next BootNotification is answered Pending.")
            % {"identity": station.identity},
            messages.SUCCESS,
        )
        return HttpResponseRedirect(
            reverse("admin:stations_chargingstation_change", args=[station.pk])
        )

    # Accepting and tracing change the station: the change permission (Operators), never
    # merely seeing the station list (Support, Finance).
    @admin.action(description="Accept selected Pending stations", permissions=["change"])
    def accept_stations(self, request: HttpRequest, queryset: QuerySet[ChargingStation]) -> None:
        count = 0
        for station in queryset.exclude(registration_status="Accepted"):
            services.station_accept(station=station)
            count += 1
        self.message_user(
            request,
            f"{count} station(s) accepted; they are Accepted at their next BootNotification.",
            messages.SUCCESS,
        )

    @admin.action(description="Trace OCPP frames: on", permissions=["change"])
    def trace_on(self, request: HttpRequest, queryset: QuerySet[ChargingStation]) -> None:
        count = queryset.update(trace_enabled=True)
        self.message_user(
            request,
            f"Tracing on for {count} station(s) from their next connection.",
            messages.SUCCESS,
        )

    @admin.action(description="Trace OCPP frames: off", permissions=["change"])
    def trace_off(self, request: HttpRequest, queryset: QuerySet[ChargingStation]) -> None:
        count = queryset.update(trace_enabled=False)
        self.message_user(request, f"Tracing off for {count} station(s).", messages.SUCCESS)


@admin.register(Connector)
class ConnectorAdmin(SendCommandPermissionMixin, admin.ModelAdmin):
    actions = [*CONNECTOR_ACTIONS]
    list_display = ("__str__", "standard", "power_type", "max_power_w", "live_status", "status_at")
    list_filter = ("status", "standard", "station__location")
    search_fields = ("station__identity",)
    list_select_related = ("station", "evse")
    readonly_fields = ("status", "error_code", "info", "status_at")

    @admin.display(description="Status")
    def live_status(self, obj: Connector) -> str:
        return status_badge(obj.status, obj.error_code)


@admin.register(ConnectorStatusEvent)
class ConnectorStatusEventAdmin(ReadOnlyAdmin):
    list_display = (
        "timestamp",
        "station",
        "evse_id",
        "connector_id",
        "badge",
        "info",
        "vendor_error_code",
        "received_at",
    )
    list_filter = ("status", "error_code")
    search_fields = ("station__identity",)
    list_select_related = ("station",)
    paginator = FixedCountPaginator
    show_full_result_count = False
    date_hierarchy = "timestamp"

    @admin.display(description="Status")
    def badge(self, obj: ConnectorStatusEvent) -> str:
        return status_badge(obj.status, obj.error_code)


@admin.register(StationConnection)
class StationConnectionAdmin(ReadOnlyAdmin):
    list_display = (
        "station",
        "connected_at",
        "disconnected_at",
        "protocol",
        "remote_addr",
        "node",
        "security_profile",
        "close_reason",
    )
    list_filter = ("protocol", "security_profile")
    search_fields = ("station__identity", "remote_addr")
    list_select_related = ("station",)


@admin.register(StationEvent)
class StationEventAdmin(ReadOnlyAdmin):
    list_display = (
        "timestamp",
        "station",
        "component",
        "variable",
        "actual_value",
        "trigger",
        "tech_code",
        "cleared",
    )
    list_filter = ("trigger", "cleared", "event_notification_type")
    search_fields = ("station__identity", "component", "variable", "tech_code")
    list_select_related = ("station",)
    paginator = FixedCountPaginator
    show_full_result_count = False


@admin.register(SecurityEvent)
class SecurityEventAdmin(ReadOnlyAdmin):
    list_display = ("timestamp", "station", "type", "tech_info", "received_at")
    list_filter = ("type",)
    search_fields = ("station__identity", "type")
    list_select_related = ("station",)


@admin.register(DeviceModelVariable)
class DeviceModelVariableAdmin(ReadOnlyAdmin):
    list_display = (
        "station",
        "component",
        "component_instance",
        "evse_id",
        "variable",
        "variable_instance",
        "attribute_type",
        "value",
        "mutability",
        "updated_at",
    )
    list_filter = ("component", "attribute_type", "mutability")
    search_fields = ("station__identity", "component", "variable")
    list_select_related = ("station",)


@admin.register(StationNotification)
class StationNotificationAdmin(ReadOnlyAdmin):
    list_display = ("received_at", "station", "action", "status", "request_id")
    list_filter = ("action", "status")
    search_fields = ("station__identity", "action", "status")
    list_select_related = ("station",)
    paginator = FixedCountPaginator
    show_full_result_count = False


@admin.register(CertificateSigningRequest)
class CertificateSigningRequestAdmin(admin.ModelAdmin):
    list_display = ("station", "certificate_type", "received_at", "signed_at")
    list_select_related = ("station",)
    readonly_fields = ("station", "csr", "certificate_type", "received_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Stations send their signing requests; none is made up in the panel.
        return False


@admin.register(OcppMessage)
class OcppMessageAdmin(ReadOnlyAdmin):
    list_display = (
        "created_at",
        "identity",
        "direction",
        "message_type",
        "action",
        "message_id",
        "is_error",
        "short_frame",
    )
    list_filter = ("direction", "is_error", "message_type", "action")
    search_fields = ("identity", "message_id", "action")
    paginator = FixedCountPaginator
    show_full_result_count = False

    @admin.display(description="Frame")
    def short_frame(self, obj: OcppMessage) -> str:
        return obj.frame if len(obj.frame) <= 160 else obj.frame[:157] + "..."


@admin.register(AuthLockout)
class AuthLockoutAdmin(ReadOnlyAdmin):
    """Identities and source addresses refused after failed authentications
    (stations.admission); an operator lifts a lockout here once the cause is known."""

    list_display = ("locked_at", "kind", "value", "failures", "locked_until", "state")
    list_filter = ("kind",)
    search_fields = ("value",)
    actions = ["lift_lockouts"]

    @admin.display(description="State")
    def state(self, obj: AuthLockout) -> str:
        if obj.lifted_at is not None:
            return f"lifted by {obj.lifted_by} at {obj.lifted_at:%Y-%m-%d %H:%M} UTC"
        return "active" if obj.is_active else "expired"

    def has_lift_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("stations.lift_authlockout")

    @admin.action(description="Lift the selected lockouts", permissions=["lift"])
    def lift_lockouts(self, request: HttpRequest, queryset: QuerySet[AuthLockout]) -> None:
        by = request.user.get_username()
        lifted = sum(admission.lockout_lift(lockout=lockout, by=by) for lockout in queryset)
        self.message_user(
            request,
            f"{lifted} lockout(s) lifted: the identity or address may authenticate again.",
            messages.SUCCESS,
        )

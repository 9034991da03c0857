"""The panel's incidents: a list with filters, a detail page with the timeline, the
acknowledge action; the playbooks operators edit (checked against the limits at save); and
the alert rules that say who gets e-mail for which incidents."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html, format_html_join

from stations.monitoring import services
from stations.monitoring.models import (
    STEPS,
    THRESHOLDS,
    AlertRule,
    FirmwareTarget,
    HeldAlert,
    Incident,
    IncidentEntry,
    IncidentType,
    MonitoringThresholds,
    Playbook,
)

SEVERITY_COLOURS = {"critical": "#b71c1c", "error": "#c62828", "warning": "#ef6c00"}


class IncidentEntryInline(admin.TabularInline):
    model = IncidentEntry
    fields = ("at", "kind", "message", "step", "command", "user")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "Timeline"

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Incident)
class IncidentAdmin(admin.ModelAdmin):
    list_display = (
        "id",
        "severity_badge",
        "type",
        "state",
        "station",
        "site",
        "title",
        "first_seen_at",
        "last_seen_at",
        "playbook_state",
    )
    list_display_links = ("id", "title")
    list_filter = ("state", "type", "severity", "station__location", "playbook_state")
    search_fields = ("station__identity", "title", "fingerprint")
    list_select_related = ("station__location",)
    date_hierarchy = "first_seen_at"
    inlines = [IncidentEntryInline]
    actions = ["acknowledge_selected"]
    fields = (
        "title",
        "type",
        "severity",
        "state",
        "station",
        "evse",
        "connector",
        "session",
        "details_table",
        "first_seen_at",
        "last_seen_at",
        "acknowledged_at",
        "acknowledged_by",
        "resolved_at",
        "playbook_state",
        "playbook_step",
        "playbook_next_at",
        "playbook_command",
        "fingerprint",
    )
    readonly_fields = fields

    # Incidents are written by the detectors and the services only.
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_acknowledge_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("monitoring.acknowledge_incident")

    @admin.display(description="Severity", ordering="severity")
    def severity_badge(self, obj: Incident) -> str:
        return format_html(
            '<span class="incident-severity" style="background:{};color:#fff;padding:1px 6px;'
            'border-radius:8px;font-size:11px">{}</span>',
            SEVERITY_COLOURS.get(obj.severity, "#757575"),
            obj.get_severity_display(),
        )

    @admin.display(description="Site", ordering="station__location__name")
    def site(self, obj: Incident) -> str:
        return str(obj.station.location or "") if obj.station is not None else ""

    @admin.display(description="Details")
    def details_table(self, obj: Incident) -> str:
        if not obj.details:
            return "—"
        return format_html(
            "<table>{}</table>",
            format_html_join("", "<tr><th>{}</th><td>{}</td></tr>", sorted(obj.details.items())),
        )

    @admin.action(description="Acknowledge the selected incidents", permissions=["acknowledge"])
    def acknowledge_selected(self, request: HttpRequest, queryset: QuerySet[Incident]) -> None:
        done = 0
        for incident in queryset.filter(state=Incident.State.OPEN).order_by("pk"):
            try:
                services.incident_acknowledge(incident_id=incident.pk, user=request.user)
            except services.IncidentError as error:
                self.message_user(request, error.message, messages.WARNING)
                continue
            done += 1
        skipped = queryset.count() - done
        note = f"; {skipped} not open (acknowledged or resolved already)" if skipped else ""
        self.message_user(request, f"{done} incident(s) acknowledged{note}.", messages.SUCCESS)


class PlaybookForm(forms.ModelForm):
    class Meta:
        model = Playbook
        fields = (
            "incident_type",
            "enabled",
            "steps",
            "backoff_seconds",
            "reset_period_minutes",
            "site_concurrency",
        )


@admin.register(Playbook)
class PlaybookAdmin(admin.ModelAdmin):
    form = PlaybookForm
    list_display = (
        "incident_type",
        "enabled",
        "step_list",
        "backoff_seconds",
        "reset_period_minutes",
        "site_concurrency",
        "updated_at",
    )
    readonly_fields = ("available_steps",)

    def get_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return (*PlaybookForm.Meta.fields, "available_steps")

    @admin.display(description="Steps")
    def step_list(self, obj: Playbook) -> str:
        return " → ".join(obj.steps) or "—"

    @admin.display(description="Steps each incident type may use")
    def available_steps(self, obj: Playbook | None) -> str:
        return format_html(
            "<dl>{}</dl>",
            format_html_join(
                "",
                "<dt>{}</dt><dd>{}</dd>",
                (
                    (kind, "; ".join(f"{name}: {label}" for name, label in steps.items()))
                    for kind, steps in STEPS.items()
                ),
            ),
        )


class AlertRuleForm(forms.ModelForm):
    incident_types = forms.MultipleChoiceField(
        choices=IncidentType.choices,
        required=False,
        widget=forms.CheckboxSelectMultiple,
        help_text="None ticked: every type.",
    )

    class Meta:
        model = AlertRule
        fields = (
            "name",
            "is_active",
            "recipients",
            "min_severity",
            "location",
            "incident_types",
            "quiet_start",
            "quiet_end",
            "time_zone",
            "daily_digest",
        )


class HeldAlertInline(admin.TabularInline):
    model = HeldAlert
    fields = ("at", "event", "incident")
    readonly_fields = fields
    extra = 0
    can_delete = False
    verbose_name_plural = "Held in quiet hours, for the next summary"

    def get_queryset(self, request: HttpRequest) -> QuerySet[HeldAlert]:
        return super().get_queryset(request).filter(summarised_at__isnull=True)

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(AlertRule)
class AlertRuleAdmin(admin.ModelAdmin):
    form = AlertRuleForm
    list_display = (
        "name",
        "is_active",
        "recipients",
        "min_severity",
        "location",
        "type_list",
        "quiet_hours",
        "updated_at",
    )
    list_filter = ("is_active", "min_severity", "location")
    search_fields = ("name", "recipients")
    inlines = [HeldAlertInline]

    @admin.display(description="Incident types")
    def type_list(self, obj: AlertRule) -> str:
        return ", ".join(obj.incident_types) or "all"

    @admin.display(description="Quiet hours")
    def quiet_hours(self, obj: AlertRule) -> str:
        if obj.quiet_start is None or obj.quiet_end is None:
            return "—"
        return f"{obj.quiet_start:%H:%M}–{obj.quiet_end:%H:%M} {obj.time_zone}"


@admin.register(FirmwareTarget)
class FirmwareTargetAdmin(admin.ModelAdmin):
    """The firmware version wanted per vendor and model (the firmware_mismatch detector)."""

    list_display = ("vendor", "model", "version", "stations_off_target", "updated_at")
    search_fields = ("vendor", "model", "version")
    fields = ("vendor", "model", "version")

    @admin.display(description="Stations on another version")
    def stations_off_target(self, obj: FirmwareTarget) -> int:
        from stations.models import ChargingStation

        return (
            ChargingStation.objects.filter(vendor=obj.vendor, model=obj.model)
            .exclude(firmware_version="")
            .exclude(firmware_version=obj.version)
            .count()
        )


class MonitoringThresholdsForm(forms.ModelForm):
    class Meta:
        model = MonitoringThresholds
        fields = tuple(THRESHOLDS)

    def __init__(self, *args: Any, **kwargs: Any):
        from django.conf import settings

        super().__init__(*args, **kwargs)
        for name, (_, minimum) in THRESHOLDS.items():
            default = getattr(settings, f"MONITORING_{name.upper()}")
            field = self.fields[name]
            field.help_text = f"Empty: {default} (MONITORING_{name.upper()}); at least {minimum}."
            field.widget.attrs["placeholder"] = str(default)


@admin.register(MonitoringThresholds)
class MonitoringThresholdsAdmin(admin.ModelAdmin):
    """One row for the network: the list page opens it (or the form that creates it)."""

    form = MonitoringThresholdsForm

    def has_add_permission(self, request: HttpRequest) -> bool:
        return super().has_add_permission(request) and not MonitoringThresholds.objects.exists()

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def changelist_view(self, request: HttpRequest, extra_context: Any = None) -> Any:
        from django.shortcuts import redirect
        from django.urls import reverse

        row = MonitoringThresholds.objects.order_by("pk").first()
        if row is None:
            return redirect(reverse("admin:monitoring_monitoringthresholds_add"))
        return redirect(reverse("admin:monitoring_monitoringthresholds_change", args=[row.pk]))

"""Energy management in the operator panel: sites, the grid tree, connectors in it, external
limits, priority rules; the allocation log read-only. Writes go through the services, so the
admin refuses what they refuse (a cycle, a limit under what must keep running)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.translation import gettext_lazy as _

from stations.energy import services
from stations.energy.models import (
    AllocationRun,
    ConnectorEnergy,
    EnergySite,
    ExternalLimit,
    GridNode,
    PriorityRule,
    StationEnergy,
)


@admin.register(EnergySite)
class EnergySiteAdmin(admin.ModelAdmin):
    list_display = ("location", "enabled", "strategy", "deadman_s", "site_page")
    list_select_related = ("location",)
    raw_id_fields = ("location",)

    @admin.display(description=_("Site energy page"))
    def site_page(self, obj: EnergySite) -> str:
        url = reverse("panel:energy-site", args=[obj.pk])
        return format_html('<a href="{}">{}</a>', url, _("Tree and load"))

    def save_model(self, request: HttpRequest, obj: EnergySite, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        services.energy_site_enable(location=obj.location, enabled=obj.enabled)


@admin.register(GridNode)
class GridNodeAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "site",
        "kind",
        "parent",
        "limit_l1_a",
        "limit_l2_a",
        "limit_l3_a",
        "limit_kw",
    )
    list_filter = ("kind",)
    list_select_related = ("site__location", "parent")
    raw_id_fields = ("site", "parent")

    def save_model(self, request: HttpRequest, obj: GridNode, form: Any, change: bool) -> None:
        # The form ran the same checks (below): the service does not refuse it now.
        services.grid_node_save(node=obj)

    def get_form(
        self, request: HttpRequest, obj: Any = None, change: bool = False, **kwargs: Any
    ) -> Any:
        form = super().get_form(request, obj, change, **kwargs)

        class ServiceCheckedForm(form):  # type: ignore[misc, valid-type]
            def _post_clean(self) -> None:
                super()._post_clean()
                if self.errors:
                    return
                try:
                    services._check_minimums(self.instance)
                except services.EnergyError as error:
                    self.add_error(error.field or None, error.message)

        return ServiceCheckedForm


@admin.register(ConnectorEnergy)
class ConnectorEnergyAdmin(admin.ModelAdmin):
    list_display = (
        "connector",
        "node",
        "rotation",
        "phases",
        "max_current_a",
        "limit_a",
        "limit_until",
    )
    list_select_related = ("connector__station", "connector__evse", "node")
    raw_id_fields = ("connector", "node")
    readonly_fields = ("limit_a", "limit_phases", "limit_sent_at", "limit_until", "profile_id")


@admin.register(StationEnergy)
class StationEnergyAdmin(admin.ModelAdmin):
    list_display = (
        "station",
        "unmanaged",
        "rejections",
        "safe_share_a",
        "max_periods",
        "rate_unit",
    )
    list_filter = ("unmanaged",)
    list_select_related = ("station",)
    raw_id_fields = ("station",)
    readonly_fields = (
        "safe_share_a",
        "safe_share_sent_at",
        "default_until",
        "rejections",
        "unmanaged",
        "unmanaged_since",
        "last_increase_at",
    )
    actions = ("manage_again",)

    @admin.action(description=_("Take back into energy management"), permissions=["change"])
    def manage_again(self, request: HttpRequest, queryset: QuerySet[StationEnergy]) -> None:
        for row in queryset.select_related("station"):
            services.station_energy_manage(station=row.station)
        self.message_user(request, _("Taken back into energy management."))


@admin.register(ExternalLimit)
class ExternalLimitAdmin(admin.ModelAdmin):
    list_display = (
        "__str__",
        "node",
        "source",
        "limit_a",
        "limit_kw",
        "received_at",
        "fresh_for_s",
    )
    list_filter = ("source",)
    list_select_related = ("node",)
    raw_id_fields = ("node", "station")


@admin.register(PriorityRule)
class PriorityRuleAdmin(admin.ModelAdmin):
    list_display = ("label", "tier", "site", "id_token", "account")
    raw_id_fields = ("site", "id_token", "account")


@admin.register(AllocationRun)
class AllocationRunAdmin(admin.ModelAdmin):
    """The allocation log: one row per run, read-only."""

    list_display = ("id", "site", "trigger", "started_at", "compute_ms", "sessions", "changed")
    list_filter = ("trigger",)
    list_select_related = ("site__location",)
    readonly_fields = [f.name for f in AllocationRun._meta.fields]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

"""Operator panel for tariffs: a tariff is edited on one page with its elements (each with its
price components and restrictions) and where it applies; a price preview rates a hypothetical
session under it.

Every save publishes the tariff as a new, immutable version (who, when, what changed), in force
from now or from a scheduled time; the history is listed on the tariff's page. Edits change
future sessions only: a session keeps the version fixed at its start.
"""

from __future__ import annotations

import json
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin import widgets as admin_widgets
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html, format_html_join

from tariffs import services, views
from tariffs.forms import TariffElementForm, TariffElementFormSet
from tariffs.models import Tariff, TariffAssignment, TariffElement

PRICE_FIELDS = (
    ("energy_price", "energy_vat", "energy_step_size"),
    ("flat_price", "flat_vat"),
    ("time_price", "time_vat", "time_step_size"),
    ("parking_price", "parking_vat", "parking_step_size"),
)
RESTRICTION_FIELDS = (
    ("start_time", "end_time"),
    ("start_date", "end_date"),
    "day_of_week",
    ("min_kwh", "max_kwh"),
    ("min_power", "max_power"),
    ("min_current", "max_current"),
    ("min_duration", "max_duration"),
    "reservation",
)


class TariffElementInline(admin.StackedInline):
    model = TariffElement
    form = TariffElementForm
    formset = TariffElementFormSet
    extra = 0
    min_num = 1
    fieldsets = (
        (None, {"fields": ("position",)}),
        (
            "Prices",
            {
                "fields": PRICE_FIELDS,
                "description": (
                    "Prices excl. VAT. Leave a price empty when the element has no such "
                    "component. VAT empty: no VAT applies (not the same as 0). Step: the "
                    "billing increment, applied once per session to the last component; "
                    "empty: 1."
                ),
            },
        ),
        (
            "Restrictions: the prices apply while all of these hold (empty: always)",
            {"fields": RESTRICTION_FIELDS},
        ),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[TariffElement]:
        return super().get_queryset(request).prefetch_related("price_components")

    def get_formset(self, request: HttpRequest, obj: Any = None, **kwargs: Any) -> Any:
        # OCPI: a tariff has at least one element.
        kwargs.setdefault("validate_min", True)
        return super().get_formset(request, obj, **kwargs)


class TariffAssignmentInline(admin.TabularInline):
    model = TariffAssignment
    extra = 0
    fields = (
        "location",
        "station",
        "evse_id",
        "connector_id",
        "account",
        "valid_from",
        "valid_until",
    )
    autocomplete_fields = ("location", "station")
    raw_id_fields = ("account",)
    verbose_name = "where it applies"
    verbose_name_plural = (
        "Where it applies (most specific wins: connector > EVSE > station > site > default; "
        "an account's own price beats the same place without account)"
    )


class TariffForm(forms.ModelForm):
    effective_from = forms.SplitDateTimeField(
        required=False,
        widget=admin_widgets.AdminSplitDateTime(),
        label="Takes effect",
        help_text="Empty: now. A later time schedules the new prices; earlier is refused.",
    )

    class Meta:
        model = Tariff
        fields = (
            "tariff_id",
            "name",
            "currency",
            "type",
            "display_text",
            "min_price_excl_vat",
            "min_price_incl_vat",
            "max_price_excl_vat",
            "max_price_incl_vat",
            "start_date_time",
            "end_date_time",
        )

    def clean_effective_from(self) -> Any:
        value = self.cleaned_data.get("effective_from")
        if (
            value is not None
            and value < timezone.now()
            and (self.instance.pk is not None and self.instance.versions.exists())
        ):
            raise forms.ValidationError("A new price cannot take effect in the past.")
        return value


class ValidityFilter(admin.SimpleListFilter):
    title = "validity"
    parameter_name = "valid"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("now", "Valid now"), ("ended", "Ended"), ("future", "Starts later")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Tariff]) -> QuerySet[Tariff]:
        now = timezone.now()
        if self.value() == "now":
            return queryset.filter(
                Q(start_date_time__isnull=True) | Q(start_date_time__lte=now),
                Q(end_date_time__isnull=True) | Q(end_date_time__gt=now),
            )
        if self.value() == "ended":
            return queryset.filter(end_date_time__lte=now)
        if self.value() == "future":
            return queryset.filter(start_date_time__gt=now)
        return queryset


@admin.register(Tariff)
class TariffAdmin(admin.ModelAdmin):
    list_display = (
        "name",
        "tariff_id",
        "currency",
        "type",
        "prices",
        "validity",
        "assignment_count",
        "updated_at",
    )
    list_filter = (ValidityFilter, "currency", "type")
    search_fields = ("name", "tariff_id", "display_text")
    form = TariffForm
    inlines = [TariffElementInline, TariffAssignmentInline]
    readonly_fields = (
        "in_force",
        "history",
        "preview_link",
        "ocpi_json",
        "created_at",
        "updated_at",
    )
    fieldsets = (
        (None, {"fields": ("tariff_id", "name", "currency", "type", "display_text")}),
        ("Publication", {"fields": ("effective_from", "in_force", "history")}),
        (
            "Price bounds for a session (excl. and incl. VAT are clamped independently)",
            {
                "fields": (
                    ("min_price_excl_vat", "min_price_incl_vat"),
                    ("max_price_excl_vat", "max_price_incl_vat"),
                )
            },
        ),
        ("Validity", {"fields": (("start_date_time", "end_date_time"),)}),
        ("Price preview", {"fields": ("preview_link",)}),
        (
            "As published (OCPI 2.2.1)",
            {"fields": ("ocpi_json", "created_at", "updated_at"), "classes": ("collapse",)},
        ),
    )

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        fields = tuple(super().get_readonly_fields(request, obj))
        # The OCPI id is what partners, CDRs and frozen sessions refer to.
        return ("tariff_id", *fields) if obj is not None else fields

    def get_queryset(self, request: HttpRequest) -> QuerySet[Tariff]:
        return (
            super()
            .get_queryset(request)
            .annotate(_assignments=Count("assignments", distinct=True))
            .prefetch_related("elements__price_components")
        )

    def get_urls(self) -> list[URLPattern]:
        name = f"{self.opts.app_label}_{self.opts.model_name}_preview"
        preview = path(
            "<path:object_id>/preview/", self.admin_site.admin_view(self.preview_view), name=name
        )
        return [preview, *super().get_urls()]

    def preview_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        return views.tariff_preview(request, model_admin=self, object_id=object_id)

    def save_related(self, request: HttpRequest, form: Any, formsets: Any, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        tariff = form.instance
        try:
            version = services.tariff_version_publish(
                tariff=tariff,
                created_by=request.user,
                effective_from=form.cleaned_data.get("effective_from"),
            )
        except services.TariffNotPublishable as refused:
            self.message_user(request, f"Not published: {refused.message}", messages.ERROR)
            return
        if version is not None:
            self.message_user(
                request,
                f"Published {version}, in force from {version.effective_from:%Y-%m-%d %H:%M} UTC.",
                messages.SUCCESS,
            )

    @admin.display(description="History")
    def history(self, obj: Tariff) -> str:
        """Every published version, newest first: sessions keep the one in force at start."""
        if obj.pk is None:
            return "—"
        rows = format_html_join(
            "",
            "<tr><td>v{}</td><td>{} UTC</td><td>{}</td><td>{} UTC</td><td>{}</td></tr>",
            (
                (
                    v.number,
                    f"{v.effective_from:%Y-%m-%d %H:%M}",
                    v.created_by.get_username() if v.created_by else "system",
                    f"{v.created_at:%Y-%m-%d %H:%M}",
                    format_html_join(
                        "", "<div>{}</div>", ((line,) for line in v.changes.splitlines())
                    ),
                )
                for v in obj.versions.select_related("created_by").order_by("-number")
            ),
        )
        return format_html(
            '<table class="tariff-history"><thead><tr><th>Version</th><th>In force from</th>'
            "<th>Published by</th><th>At</th><th>What changed</th></tr></thead>"
            "<tbody>{}</tbody></table>",
            rows,
        )

    @admin.display(description="In force now")
    def in_force(self, obj: Tariff) -> str:
        if obj.pk is None:
            return "Published when saved."
        now = timezone.now()
        current = obj.versions.filter(effective_from__lte=now).order_by("-number").first()
        scheduled = obj.versions.filter(effective_from__gt=now).order_by("effective_from")
        parts = [f"v{current.number}" if current else "no version in force yet"]
        parts += [f"v{v.number} from {v.effective_from:%Y-%m-%d %H:%M} UTC" for v in scheduled]
        return (
            "; scheduled: ".join([parts[0], ", ".join(parts[1:])]) if len(parts) > 1 else parts[0]
        )

    def save_formset(self, request: HttpRequest, form: Any, formset: Any, change: bool) -> None:
        formset.save()
        if formset.model is not TariffElement:
            return
        for element_form in formset.forms:
            element = element_form.instance
            if (
                element.pk is None
                or element_form in formset.deleted_forms
                or not element_form.has_changed()
            ):
                continue
            services.tariff_element_components_set(
                element=element, components=element_form.components
            )

    @admin.display(description="Prices")
    def prices(self, obj: Tariff) -> str:
        return format_html_join(
            "", "<div>{}</div>", ((str(element),) for element in obj.elements.all())
        )

    @admin.display(description="Valid")
    def validity(self, obj: Tariff) -> str:
        if not obj.start_date_time and not obj.end_date_time:
            return "always"
        start = obj.start_date_time.strftime("%Y-%m-%d %H:%M") if obj.start_date_time else "…"
        end = obj.end_date_time.strftime("%Y-%m-%d %H:%M") if obj.end_date_time else "…"
        return f"{start} – {end} UTC"

    @admin.display(description="Applies at", ordering="_assignments")
    def assignment_count(self, obj: Tariff) -> int:
        return obj._assignments  # type: ignore[attr-defined]  # annotated by get_queryset

    @admin.display(description="Price preview")
    def preview_link(self, obj: Tariff) -> str:
        if obj.pk is None:
            return "Available after saving."
        url = reverse("admin:tariffs_tariff_preview", args=[obj.pk])
        return format_html('<a class="button" href="{}">Price a session under this tariff</a>', url)

    @admin.display(description="OCPI JSON")
    def ocpi_json(self, obj: Tariff) -> str:
        if obj.pk is None:
            return "Shown after saving."
        text = json.dumps(obj.to_ocpi(), indent=2, ensure_ascii=False)
        return format_html('<pre style="white-space:pre-wrap;margin:0">{}</pre>', text)


class ScopeFilter(admin.SimpleListFilter):
    title = "scope"
    parameter_name = "scope"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("default", "Default"),
            ("site", "Site"),
            ("station", "Station"),
            ("evse", "EVSE or connector"),
            ("account", "For an account"),
        ]

    def queryset(
        self, request: HttpRequest, queryset: QuerySet[TariffAssignment]
    ) -> QuerySet[TariffAssignment]:
        no_station = Q(station__isnull=True)
        match self.value():
            case "default":
                return queryset.filter(no_station, location__isnull=True)
            case "site":
                return queryset.filter(no_station, location__isnull=False)
            case "station":
                return queryset.filter(station__isnull=False, evse_id__isnull=True)
            case "evse":
                return queryset.filter(evse_id__isnull=False)
            case "account":
                return queryset.filter(account__isnull=False)
        return queryset


@admin.register(TariffAssignment)
class TariffAssignmentAdmin(admin.ModelAdmin):
    list_display = ("tariff", "scope", "account", "valid_from", "valid_until", "rank")
    list_select_related = ("tariff", "location", "station", "account")
    list_filter = (ScopeFilter,)
    search_fields = (
        "tariff__name",
        "tariff__tariff_id",
        "station__identity",
        "location__name",
        "account__name",
    )
    autocomplete_fields = ("tariff", "location", "station")
    raw_id_fields = ("account",)
    fieldsets = (
        (None, {"fields": ("tariff",)}),
        (
            "Where (empty: everywhere). Most specific wins: connector > EVSE > station > site",
            {
                "fields": ("location", "station", ("evse_id", "connector_id")),
                "description": (
                    "Connectors are numbered within their EVSE. An OCPP 1.6 station has one "
                    "EVSE per connector: its connector N is EVSE N, connector 1 (or just "
                    "EVSE N)."
                ),
            },
        ),
        (
            "For whom (empty: everyone). A customer, fleet or roaming partner account",
            {"fields": ("account",)},
        ),
        ("When (empty: always)", {"fields": (("valid_from", "valid_until"),)}),
    )

    @admin.display(description="Applies at")
    def scope(self, obj: TariffAssignment) -> str:
        return obj.scope_label

    @admin.display(description="Rank")
    def rank(self, obj: TariffAssignment) -> int:
        return obj.specificity

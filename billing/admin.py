"""Billing in the operator panel: read-only records, actions that call services, exports.

Finance issues, credits and exports; Operators and Support read. Money rows are never edited
here: actions go through the services, which keep the invariants and the audit trail.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import TYPE_CHECKING, Any, cast

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin import helpers
from django.core.exceptions import PermissionDenied
from django.db.models import Field, Q, QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join
from django.utils.translation import gettext as _
from import_export.admin import ExportMixin
from import_export.forms import ExportForm

from billing import services
from billing.forms import CreditReasonForm, InvoiceCreditForm
from billing.models import (
    BillingAuditEntry,
    BillingPeriod,
    BillingProfile,
    Cdr,
    Invoice,
    InvoiceLine,
    InvoiceVatLine,
    SessionReview,
    SettlementLine,
    SettlementStatement,
)
from billing.pdf import invoice_pdf
from billing.resources import (
    CdrResource,
    FinanceCSV,
    FinanceXLSX,
    InvoiceLineResource,
    InvoiceResource,
    SettlementLineResource,
)
from cpo.lib.api import ApplicationError
from cpo.lib.formatting import add_months, local_midnight
from sessions.models import ChargingSession
from tariffs.models import Tariff

if TYPE_CHECKING:
    from django.db.models.options import Options

    from billing.models import CdrQuerySet
    from cpo.models import User


class ReadOnlyMixin:
    """Rows written only by services."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class FinanceExportMixin(ExportMixin):
    """CSV and XLSX of the filtered changelist, all columns (no column picking: an export is
    exactly what was issued), for users with the model's `export_*` permission.

    The admins that add it to a ModelAdmin ignore mypy's [misc]: the import-export stubs declare
    `model` and `change_list_template` otherwise than django-stubs' ModelAdmin."""

    export_formats = [FinanceCSV, FinanceXLSX]
    export_form_class = ExportForm
    opts: Options[Any]  # the ModelAdmin's, which this mixin is always combined with

    def has_export_permission(self, request: HttpRequest) -> bool:
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.export_{opts.model_name}")

    def get_export_data(
        self, file_format: Any, request: HttpRequest, queryset: Any, **kwargs: Any
    ) -> Any:
        # import-export gives native values to its own binary formats only (by exact type):
        # ours are subclasses, so say it here. XLSX gets dates and numbers, CSV text.
        if not self.has_export_permission(request):
            raise PermissionDenied
        data = self.get_data_for_export(
            request, queryset, force_native_type=file_format.is_binary(), **kwargs
        )
        export_data = file_format.export_data(data)
        encoding = kwargs.get("encoding")
        if not file_format.is_binary() and encoding:
            export_data = export_data.encode(encoding)
        return export_data


def _reason_or_prompt(
    admin_obj: admin.ModelAdmin, request: HttpRequest, queryset: QuerySet, title: str
) -> str | TemplateResponse:
    """The reason posted with a credit action, or the page that asks for it (a credit is
    never made without one)."""
    form = CreditReasonForm(request.POST if "apply" in request.POST else None)
    if form.is_valid():
        return str(form.cleaned_data["reason"]).strip()
    context = {
        **admin_obj.admin_site.each_context(request),
        "title": title,
        "queryset": queryset,
        "form": form,
        "action": request.POST.get("action", ""),
        "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        "opts": admin_obj.opts,
    }
    return TemplateResponse(request, "billing/credit_reason.html", context)


def _run(request: HttpRequest, admin_obj: admin.ModelAdmin[Any], fn: Any, **kwargs: Any) -> Any:
    try:
        return fn(**kwargs)
    except ApplicationError as exc:
        admin_obj.message_user(request, exc.message, level=messages.ERROR)
        return None


class PeriodStartFilter(admin.SimpleListFilter):
    """Billing period by its start month (all accounts), e.g. 2025-01, each invoice's month
    read in its own time zone (one query per zone in use)."""

    title = "period month"
    parameter_name = "period_month"
    field = "period_start"
    zone_field = "time_zone"

    def _zones(self, queryset: QuerySet) -> list[str]:
        return list(queryset.order_by().values_list(self.zone_field, flat=True).distinct())

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        queryset = model_admin.get_queryset(request)
        months: set[str] = set()
        for zone in self._zones(queryset):
            months.update(
                f"{m:%Y-%m}"
                for m in queryset.filter(**{self.zone_field: zone}).datetimes(
                    self.field, "month", tzinfo=zoneinfo.ZoneInfo(zone or "UTC")
                )
            )
        return [(m, m) for m in sorted(months, reverse=True)[:36]]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if not (value := self.value()):
            return queryset
        try:
            first = dt.date.fromisoformat(f"{value}-01")
        except ValueError:
            return queryset.none()
        match = Q(pk__in=[])
        for zone in self._zones(queryset):
            tz = zoneinfo.ZoneInfo(zone or "UTC")
            match |= Q(
                **{
                    self.zone_field: zone,
                    f"{self.field}__gte": local_midnight(first, tz),
                    f"{self.field}__lt": local_midnight(add_months(first, 1), tz),
                }
            )
        return queryset.filter(match)


class LinePeriodStartFilter(PeriodStartFilter):
    field = "invoice__period_start"
    zone_field = "invoice__time_zone"


class InvoicedFilter(admin.SimpleListFilter):
    title = "billing"
    parameter_name = "billed"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("billable", "Waiting for an invoice"), ("invoiced", "On an invoice")]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "billable":
            return cast("CdrQuerySet", queryset).billable()
        if self.value() == "invoiced":
            return queryset.filter(invoice_line__isnull=False)
        return queryset


@admin.register(Cdr)
class CdrAdmin(FinanceExportMixin, ReadOnlyMixin, admin.ModelAdmin):  # type: ignore[misc]  # see FinanceExportMixin
    resource_classes = [CdrResource]
    list_display = (
        "uid",
        "end",
        "account",
        "site_name",
        "station_identity",
        "token_visual_number",
        "energy",
        "total",
        "credit",
        "invoice",
    )
    list_filter = (
        "credit",
        "currency",
        InvoicedFilter,
        ("account", admin.RelatedOnlyFieldListFilter),
    )
    list_select_related = ("account", "invoice_line__invoice")
    search_fields = ("uid", "token_uid", "token_visual_number", "station_identity", "=session__uid")
    date_hierarchy = "end"
    actions = ["credit_selected", "rerate_selected"]
    readonly_fields = [f.name for f in Cdr._meta.fields]

    @admin.display(description="kWh", ordering="total_energy_kwh")
    def energy(self, obj: Cdr) -> str:
        return f"{obj.total_energy_kwh:.3f}"

    @admin.display(description="Total incl. VAT", ordering="total_cost_incl_vat")
    def total(self, obj: Cdr) -> str:
        return format_html("{} {}", obj.currency, f"{obj.total_cost_incl_vat:.2f}")

    @admin.display(description="Invoice")
    def invoice(self, obj: Cdr) -> str:
        line = getattr(obj, "invoice_line", None)
        if line is None:
            return "-"
        url = reverse("admin:billing_invoice_change", args=[line.invoice_id])
        return format_html('<a href="{}">{}</a>', url, line.invoice)

    def has_credit_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.credit_cdr")

    @admin.action(description="Credit the selected CDRs…", permissions=["credit"])
    def credit_selected(
        self, request: HttpRequest, queryset: QuerySet[Cdr]
    ) -> TemplateResponse | None:
        reason = _reason_or_prompt(self, request, queryset, "Credit CDRs")
        if not isinstance(reason, str):
            return reason
        done = 0
        for cdr in queryset.filter(credit=False):
            done += (
                _run(
                    request,
                    self,
                    services.cdr_credit,
                    cdr_id=cdr.pk,
                    reason=reason,
                    user=request.user,
                )
                is not None
            )
        self.message_user(request, f"{done} CDR(s) credited.")
        return None

    @admin.action(
        description="Re-rate the sessions of the selected CDRs (not invoiced)",
        permissions=["credit"],
    )
    def rerate_selected(self, request: HttpRequest, queryset: QuerySet[Cdr]) -> None:
        done = 0
        for session_id in set(queryset.values_list("session_id", flat=True)):
            done += (
                _run(
                    request,
                    self,
                    services.cdr_rerate,
                    session_id=session_id,
                    reason="re-rated from the panel",
                    user=request.user,
                )
                is not None
            )
        self.message_user(request, f"{done} session(s) re-rated.")


def _local_time(moment: dt.datetime | None, zone: str) -> str:
    if moment is None:
        return "-"
    return format_html("{} <small>{}</small>", f"{moment:%Y-%m-%d %H:%M}", zone or "UTC")


def _party(data: dict[str, Any]) -> str:
    rows = [
        ("Name", data.get("name")),
        ("Address", data.get("address")),
        ("", " ".join(filter(None, [data.get("postal_code"), data.get("city")]))),
        ("Country", data.get("country")),
        ("Reg. no.", data.get("registration_number")),
        ("VAT ID", data.get("vat_id")),
        ("IBAN", data.get("iban")),
        ("BIC", data.get("bic")),
        ("E-mail", data.get("email")),
        ("Customer no.", data.get("reference")),
    ]
    return format_html_join(
        "", "<div><span class='party-label'>{}</span> {}</div>", ((k, v) for k, v in rows if v)
    )


class InvoiceLineInline(admin.TabularInline):
    model = InvoiceLine
    extra = 0
    can_delete = False
    fields = (
        "position",
        "start_local",
        "stop_local",
        "site_name",
        "station_identity",
        "token_visual_number",
        "tariff",
        "energy_kwh",
        "duration",
        "vat_rate",
        "amount_excl_vat",
        "vat_amount",
        "amount_incl_vat",
        "cdr",
    )
    readonly_fields = fields
    raw_id_fields = ("cdr",)

    @admin.display(description="Start (site time)")
    def start_local(self, obj: InvoiceLine) -> str:
        return _local_time(obj.local_start, obj.site_time_zone)

    @admin.display(description="Stop (site time)")
    def stop_local(self, obj: InvoiceLine) -> str:
        return _local_time(obj.local_end, obj.site_time_zone)

    @admin.display(description="Tariff")
    def tariff(self, obj: InvoiceLine) -> str:
        return obj.tariff_label or "-"

    @admin.display(description="Duration (h:mm)")
    def duration(self, obj: InvoiceLine) -> str:
        return obj.duration_label

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class InvoiceVatLineInline(admin.TabularInline):
    model = InvoiceVatLine
    extra = 0
    can_delete = False
    fields = ("rate", "base_excl_vat", "vat_amount", "total_incl_vat")
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Invoice)
class InvoiceAdmin(FinanceExportMixin, admin.ModelAdmin):  # type: ignore[misc]  # see FinanceExportMixin
    resource_classes = [InvoiceResource]
    change_form_template = "billing/invoice_change_form.html"
    list_display = (
        "__str__",
        "kind",
        "status",
        "account",
        "period_start",
        "currency",
        "total_excl_vat",
        "total_incl_vat",
        "issue_date",
        "pdf_link",
    )
    list_filter = (
        "status",
        "kind",
        "currency",
        PeriodStartFilter,
        ("account", admin.RelatedOnlyFieldListFilter),
        ("period", admin.RelatedOnlyFieldListFilter),
    )
    list_select_related = ("account",)
    search_fields = ("number", "account__name")
    date_hierarchy = "issue_date"
    inlines = [InvoiceVatLineInline, InvoiceLineInline]
    actions = ["issue_selected", "credit_selected", "discard_selected"]
    readonly_fields = [
        *(f.name for f in Invoice._meta.fields),
        "period_local",
        "seller_details",
        "buyer_details",
    ]
    fieldsets = (
        (None, {"fields": ("number", "kind", "status", "account", "currency")}),
        (
            "Dates and terms",
            {
                "fields": (
                    "issue_date",
                    "payment_terms_days",
                    "due_date",
                    "period_local",
                    "time_zone",
                    "issued_at",
                    "issued_by",
                )
            },
        ),
        ("Seller and buyer", {"fields": ("seller_details", "buyer_details")}),
        ("Totals", {"fields": ("total_excl_vat", "total_vat", "total_incl_vat")}),
        ("Credit", {"fields": ("credit_of", "reason")}),
        (
            "Record",
            {
                "fields": ("period", "period_start", "period_end", "series", "sequence"),
                "classes": ["collapse"],
            },
        ),
    )

    @admin.display(description="Period")
    def period_local(self, obj: Invoice) -> str:
        dates = obj.period_local_dates
        if dates is None:
            return "-"
        return format_html(
            "{} to {} <small>({}, both included)</small>",
            f"{dates[0]:%Y-%m-%d}",
            f"{dates[1]:%Y-%m-%d}",
            obj.time_zone or "UTC",
        )

    @admin.display(description="Seller")
    def seller_details(self, obj: Invoice) -> str:
        return _party(obj.seller)

    @admin.display(description="Buyer")
    def buyer_details(self, obj: Invoice) -> str:
        return _party(obj.buyer)

    @admin.display(description="PDF")
    def pdf_link(self, obj: Invoice) -> str:
        if not obj.is_issued:
            return "-"
        return format_html(
            '<a href="{}">PDF</a>', reverse("admin:billing_invoice_pdf", args=[obj.pk])
        )

    def get_urls(self) -> list[Any]:
        extra = [
            path(
                "<int:pk>/pdf/",
                self.admin_site.admin_view(self.pdf_view),
                name="billing_invoice_pdf",
            ),
            path(
                "<int:pk>/credit/",
                self.admin_site.admin_view(self.credit_view),
                name="billing_invoice_credit",
            ),
        ]
        return extra + super().get_urls()

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        invoice = Invoice.objects.filter(pk=object_id).first()
        can_credit = (
            invoice is not None
            and invoice.is_issued
            and invoice.kind == Invoice.Kind.INVOICE
            and self.has_credit_permission(request)
        )
        return super().change_view(
            request, object_id, form_url, {**(extra_context or {}), "can_credit": can_credit}
        )

    def credit_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        """One invoice's credit note: everything left, some lines, or an amount, with a
        reason; issued at once, and the page of the new credit note is shown."""
        if not self.has_credit_permission(request):
            raise PermissionDenied
        invoice = get_object_or_404(
            Invoice, pk=pk, status=Invoice.Status.ISSUED, kind=Invoice.Kind.INVOICE
        )
        form = InvoiceCreditForm(request.POST or None, invoice=invoice)
        if request.method == "POST" and form.is_valid():
            data = form.cleaned_data
            common = {"invoice_id": invoice.pk, "reason": data["reason"], "user": request.user}
            try:
                if data["mode"] == "lines":
                    note = services.invoice_credit_lines(
                        line_ids=[line.pk for line in data["lines"]], **common
                    )
                elif data["mode"] == "amount":
                    note = services.invoice_credit_amount(
                        amount_excl_vat=data["amount_excl_vat"], vat_rate=form.rate, **common
                    )
                else:
                    note = services.invoice_credit(**common)
            except ApplicationError as exc:
                form.add_error(None, exc.message)
            else:
                self.message_user(
                    request,
                    f"Credit note {note.number} issued: {note.currency} "
                    f"{note.total_incl_vat:.2f} incl. VAT.",
                )
                return redirect("admin:billing_invoice_change", note.pk)
        context = {
            **self.admin_site.each_context(request),
            "title": f"Credit {invoice.number}",
            "opts": self.opts,
            "original": invoice,
            "form": form,
            "already": list(invoice.credit_notes.order_by("pk")),
        }
        return TemplateResponse(request, "billing/invoice_credit.html", context)

    def pdf_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        invoice = get_object_or_404(
            Invoice.objects.select_related("credit_of"), pk=pk, status=Invoice.Status.ISSUED
        )
        if not self.has_view_permission(request, invoice):
            raise PermissionDenied
        response = HttpResponse(invoice_pdf(invoice), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{invoice.number}.pdf"'
        return response

    def get_export_queryset(self, request: HttpRequest) -> QuerySet[Invoice]:
        # Exports are of issued documents only: what the customer received.
        return super().get_export_queryset(request).filter(status=Invoice.Status.ISSUED)

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_issue_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.issue_invoice")

    def has_credit_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.credit_invoice")

    @admin.action(description="Issue the selected drafts", permissions=["issue"])
    def issue_selected(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        done = 0
        for pk in (
            queryset.filter(status=Invoice.Status.DRAFT).order_by("pk").values_list("pk", flat=True)
        ):
            done += (
                _run(request, self, services.invoice_issue, invoice_id=pk, user=request.user)
                is not None
            )
        self.message_user(request, f"{done} invoice(s) issued.")

    @admin.action(description="Credit the selected invoices in full…", permissions=["credit"])
    def credit_selected(
        self, request: HttpRequest, queryset: QuerySet[Invoice]
    ) -> TemplateResponse | None:
        issued = queryset.filter(status=Invoice.Status.ISSUED, kind=Invoice.Kind.INVOICE)
        reason = _reason_or_prompt(self, request, issued, "Credit invoices in full")
        if not isinstance(reason, str):
            return reason
        done = 0
        for pk in issued.values_list("pk", flat=True):
            done += (
                _run(
                    request,
                    self,
                    services.invoice_credit,
                    invoice_id=pk,
                    reason=reason,
                    user=request.user,
                )
                is not None
            )
        self.message_user(request, f"{done} credit note(s) issued.")
        return None

    @admin.action(
        description="Discard the selected drafts (their CDRs are billed next period)",
        permissions=["issue"],
    )
    def discard_selected(self, request: HttpRequest, queryset: QuerySet[Invoice]) -> None:
        done = 0
        for pk in queryset.filter(status=Invoice.Status.DRAFT).values_list("pk", flat=True):
            done += (
                _run(
                    request, self, services.invoice_draft_discard, invoice_id=pk, user=request.user
                )
                is not None
            )
        self.message_user(request, f"{done} draft(s) discarded.")


@admin.register(InvoiceLine)
class InvoiceLineAdmin(FinanceExportMixin, ReadOnlyMixin, admin.ModelAdmin):  # type: ignore[misc]  # see FinanceExportMixin
    resource_classes = [InvoiceLineResource]
    list_display = (
        "invoice",
        "position",
        "session_start",
        "site_name",
        "station_identity",
        "token_visual_number",
        "energy_kwh",
        "currency",
        "amount_incl_vat",
    )
    list_filter = (
        "invoice__status",
        "invoice__kind",
        "currency",
        LinePeriodStartFilter,
        ("invoice__account", admin.RelatedOnlyFieldListFilter),
        ("invoice__period", admin.RelatedOnlyFieldListFilter),
    )
    list_select_related = ("invoice", "invoice__account", "cdr")
    search_fields = ("invoice__number", "token_visual_number", "station_identity")
    readonly_fields = [f.name for f in InvoiceLine._meta.fields]

    def get_export_queryset(self, request: HttpRequest) -> QuerySet[InvoiceLine]:
        return super().get_export_queryset(request).filter(invoice__status=Invoice.Status.ISSUED)


@admin.register(BillingPeriod)
class BillingPeriodAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("account", "kind", "start", "end", "status", "closed_at")
    list_filter = ("status", "kind", ("account", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("account",)
    actions = ["close_selected"]
    readonly_fields = [f.name for f in BillingPeriod._meta.fields]

    def has_close_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.close_billingperiod")

    @admin.action(description="Close the selected periods (ended only)", permissions=["close"])
    def close_selected(self, request: HttpRequest, queryset: QuerySet[BillingPeriod]) -> None:
        made = 0
        for pk in queryset.filter(status=BillingPeriod.Status.OPEN).values_list("pk", flat=True):
            invoices = _run(
                request, self, services.billing_period_close, period_id=pk, user=request.user
            )
            made += len(invoices or [])
        self.message_user(request, f"{made} draft invoice(s) made.")


class SettlementLineInline(admin.TabularInline):
    model = SettlementLine
    extra = 0
    can_delete = False
    fields = ("cdr",)
    readonly_fields = fields

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(SettlementStatement)
class SettlementStatementAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = (
        "account",
        "period",
        "currency",
        "cdr_count",
        "total_energy_kwh",
        "total_excl_vat",
        "total_incl_vat",
    )
    list_filter = ("currency", ("account", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("account", "period", "period__account")
    inlines = [SettlementLineInline]
    readonly_fields = [f.name for f in SettlementStatement._meta.fields]


@admin.register(SettlementLine)
class SettlementLineAdmin(FinanceExportMixin, ReadOnlyMixin, admin.ModelAdmin):  # type: ignore[misc]  # see FinanceExportMixin
    resource_classes = [SettlementLineResource]
    list_display = ("statement", "cdr")
    list_filter = (
        ("statement__account", admin.RelatedOnlyFieldListFilter),
        ("statement__period", admin.RelatedOnlyFieldListFilter),
    )
    list_select_related = ("statement__account", "statement__period__account", "cdr")

    def has_export_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.export_settlementstatement")


@admin.register(BillingAuditEntry)
class BillingAuditEntryAdmin(ReadOnlyMixin, admin.ModelAdmin):
    list_display = ("created_at", "action", "object_type", "object_id", "user")
    list_filter = ("action", "object_type")
    list_select_related = ("user",)
    readonly_fields = [f.name for f in BillingAuditEntry._meta.fields]


@admin.register(BillingProfile)
class BillingProfileAdmin(admin.ModelAdmin):
    """The buyer's registration number and payment terms, per account (Finance edits)."""

    list_display = ("account", "registration_number", "payment_terms_days", "language")
    list_select_related = ("account",)
    search_fields = ("account__name", "registration_number")
    raw_id_fields = ("account",)

    def formfield_for_dbfield(
        self, db_field: Field[Any, Any], request: HttpRequest, **kwargs: Any
    ) -> forms.Field | None:
        if db_field.name == "language":
            default = _("Default (%(language)s)") % {"language": settings.LANGUAGE_CODE}
            kwargs["widget"] = forms.Select(choices=[("", default), *settings.LANGUAGES])
        return super().formfield_for_dbfield(db_field, request, **kwargs)


# --- Finance's review queue ---------------------------------------------------------------------


def _staff(request: HttpRequest) -> User:
    # The admin serves logged-in staff only (admin_site.admin_view).
    return cast("User", request.user)


class ReviewDecisionForm(forms.Form):
    reason = forms.CharField(max_length=200, help_text="Kept with the decision in the audit log.")


class TariffChoiceForm(forms.Form):
    tariff = forms.ModelChoiceField(
        queryset=Tariff.objects.filter(versions__isnull=False).distinct().order_by("name"),
        help_text="Its version in force when the session started prices it.",
    )


class RatingStatusFilter(admin.SimpleListFilter):
    title = "rating status"
    parameter_name = "rating"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [
            ("decide", "Waiting for a decision"),
            *[
                (str(status.value), str(status.label))
                for status in ChargingSession.RatingStatus
                if status in ChargingSession.RATING_ATTENTION
            ],
            ("flagged", "Rated, with a flag to check"),
        ]

    def queryset(self, request: HttpRequest, queryset: QuerySet[Any]) -> QuerySet[Any]:
        if self.value() == "decide":
            return queryset.filter(rating_status__in=ChargingSession.RATING_ATTENTION)
        if self.value() == "flagged":
            return queryset.filter(rating_status=ChargingSession.RatingStatus.RATED)
        if self.value():
            return queryset.filter(rating_status=self.value())
        return queryset


@admin.register(SessionReview)
class SessionReviewAdmin(ReadOnlyMixin, admin.ModelAdmin):
    """Ended sessions that no CDR covers yet because finance must decide: no tariff applied
    at their start, they are held for review (a refused token that charged anyway, a meter
    anomaly, an orphan), or rating failed. Each decision goes through a billing service and
    lands in the audit log."""

    list_display = (
        "station_identity",
        "started_at",
        "ended_at",
        "energy",
        "rating_status",
        "rating_note",
        "flags",
        "account",
    )
    list_filter = (RatingStatusFilter,)
    list_select_related = ("station", "account")
    search_fields = ("station__identity", "id_tag", "transaction_id")
    actions = ["assign_tariff_and_rate", "bill_anyway", "write_off", "rate_again"]
    ordering = ("ended_at",)

    def has_review_session_permission(self, request: HttpRequest) -> bool:
        return request.user.has_perm("billing.review_session")

    @admin.display(description="Station", ordering="station__identity")
    def station_identity(self, obj: SessionReview) -> str:
        return obj.station.identity

    @admin.display(description="kWh")
    def energy(self, obj: SessionReview) -> str:
        return str(obj.energy_kwh)

    @admin.display(description="Flags")
    def flags(self, obj: SessionReview) -> str:
        return "; ".join(str(flag) for flag in obj.anomalies)

    def _decide(
        self,
        request: HttpRequest,
        queryset: QuerySet[SessionReview],
        *,
        title: str,
        form_class: type[forms.Form],
        action: str,
        decide: Any,
    ) -> HttpResponse | None:
        """An intermediate page asks for the decision's input; applying it calls `decide`
        per session and reports what was done and what was refused."""
        form = form_class(request.POST if "apply" in request.POST else None)
        if "apply" in request.POST and form.is_valid():
            done, refused = 0, []
            for session in queryset:
                try:
                    decide(session, form.cleaned_data)
                    done += 1
                except ApplicationError as error:
                    refused.append(f"{session.station.identity} {session.transaction_id}: {error}")
            if done:
                self.message_user(request, f"{title}: {done} session(s).", messages.SUCCESS)
            if refused:
                self.message_user(request, "; ".join(refused)[:500], messages.ERROR)
            return None
        context = {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.model._meta,
            "sessions": queryset,
            "form": form,
            "action": action,
            "action_checkbox_name": helpers.ACTION_CHECKBOX_NAME,
        }
        return TemplateResponse(request, "billing/session_review_decision.html", context)

    @admin.action(description="Assign a tariff and rate", permissions=["review_session"])
    def assign_tariff_and_rate(
        self, request: HttpRequest, queryset: QuerySet[SessionReview]
    ) -> HttpResponse | None:
        return self._decide(
            request,
            queryset,
            title="Assign a tariff and rate",
            form_class=TariffChoiceForm,
            action="assign_tariff_and_rate",
            decide=lambda session, data: services.session_tariff_assign_and_rate(
                session=session, tariff=data["tariff"], user=_staff(request)
            ),
        )

    @admin.action(description="Bill anyway (held for review)", permissions=["review_session"])
    def bill_anyway(
        self, request: HttpRequest, queryset: QuerySet[SessionReview]
    ) -> HttpResponse | None:
        return self._decide(
            request,
            queryset,
            title="Bill anyway",
            form_class=ReviewDecisionForm,
            action="bill_anyway",
            decide=lambda session, data: services.session_bill_anyway(
                session=session, reason=data["reason"], user=_staff(request)
            ),
        )

    @admin.action(description="Write off (never billed)", permissions=["review_session"])
    def write_off(
        self, request: HttpRequest, queryset: QuerySet[SessionReview]
    ) -> HttpResponse | None:
        return self._decide(
            request,
            queryset,
            title="Write off",
            form_class=ReviewDecisionForm,
            action="write_off",
            decide=lambda session, data: services.session_write_off(
                session=session, reason=data["reason"], user=_staff(request)
            ),
        )

    @admin.action(description="Rate again (rating failed)", permissions=["review_session"])
    def rate_again(self, request: HttpRequest, queryset: QuerySet[SessionReview]) -> None:
        rated = 0
        for session in queryset.filter(rating_status=ChargingSession.RatingStatus.FAILED):
            try:
                rated += services.cdr_create_for_session(session_id=session.pk) is not None
            except Exception as error:  # shown to finance, and kept on the session
                services.session_rating_failed(session_id=session.pk, error=str(error))
        self.message_user(request, f"{rated} session(s) rated.", messages.INFO)

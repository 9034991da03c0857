"""REST API v1 of billing: CDRs, and invoices with their PDF. Read-only: issuing, crediting
and closing periods stay with Finance in the panel (billing.services). Every role reads (the
view permissions of the billing models)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.http import HttpResponse
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiResponse, extend_schema
from rest_framework import filters, generics, renderers, serializers
from rest_framework.request import Request
from rest_framework.response import Response

from billing.models import Cdr, Invoice, InvoiceLine
from billing.pdf import invoice_pdf
from cpo.lib.api import HasModelPermissions, StableCursorPagination

CDR_FIELDS = (
    "id",
    "uid",
    "session",
    "revision",
    "account",
    "id_token",
    "location",
    "credit",
    "credit_of",
    "credit_reason",
    "start",
    "end",
    "site_name",
    "station_identity",
    "evse_uid",
    "connector_id",
    "token_uid",
    "token_visual_number",
    "tariff_version",
    "currency",
    "total_energy_kwh",
    "total_time_h",
    "total_parking_time_h",
    "total_fixed_cost_excl_vat",
    "total_energy_cost_excl_vat",
    "total_time_cost_excl_vat",
    "total_parking_cost_excl_vat",
    "total_reservation_cost_excl_vat",
    "total_cost_excl_vat",
    "total_vat",
    "total_cost_incl_vat",
    "vat_breakdown",
    "created_at",
)


class CdrOutputSerializer(serializers.ModelSerializer[Cdr]):
    class Meta:
        model = Cdr
        fields: tuple[str, ...] = CDR_FIELDS


class CdrDetailOutputSerializer(CdrOutputSerializer):
    class Meta(CdrOutputSerializer.Meta):
        fields = (*CDR_FIELDS, "charging_periods", "tariff_snapshot", "signed_data")


class CdrFilter(django_filters.FilterSet):
    station = django_filters.CharFilter(field_name="station_identity", help_text="OCPP identity")
    ended_after = django_filters.IsoDateTimeFilter(field_name="end", lookup_expr="gte")
    ended_before = django_filters.IsoDateTimeFilter(field_name="end", lookup_expr="lt")

    class Meta:
        model = Cdr
        fields = ("station", "account", "location", "session", "currency", "credit")


class CdrListApi(generics.ListAPIView[Cdr]):
    """Charge detail records, newest first by default."""

    permission_classes = [HasModelPermissions]
    required_permissions = ("billing.view_cdr",)
    queryset = Cdr.objects.all()
    serializer_class = CdrOutputSerializer
    pagination_class = StableCursorPagination
    filter_backends = [DjangoFilterBackend, filters.OrderingFilter]
    filterset_class = CdrFilter
    ordering_fields = ("id", "end", "created_at")
    ordering = "-id"


class CdrDetailApi(generics.RetrieveAPIView[Cdr]):
    permission_classes = [HasModelPermissions]
    required_permissions = ("billing.view_cdr",)
    queryset = Cdr.objects.all()
    serializer_class = CdrDetailOutputSerializer
    lookup_url_kwarg = "cdr_id"


class InvoiceLineOutputSerializer(serializers.ModelSerializer[InvoiceLine]):
    class Meta:
        model = InvoiceLine
        fields = (
            "position",
            "cdr",
            "currency",
            "session_start",
            "session_end",
            "site_name",
            "station_identity",
            "evse_uid",
            "token_visual_number",
            "tariff_id",
            "tariff_version",
            "energy_kwh",
            "duration_minutes",
            "description",
            "vat_rate",
            "amount_excl_vat",
            "vat_amount",
            "amount_incl_vat",
        )


INVOICE_FIELDS = (
    "id",
    "number",
    "kind",
    "status",
    "account",
    "currency",
    "period_start",
    "period_end",
    "time_zone",
    "issued_at",
    "issue_date",
    "due_date",
    "credit_of",
    "reason",
    "total_excl_vat",
    "total_vat",
    "total_incl_vat",
    "created_at",
)


class InvoiceOutputSerializer(serializers.ModelSerializer[Invoice]):
    class Meta:
        model = Invoice
        fields: tuple[str, ...] = INVOICE_FIELDS


class InvoiceDetailOutputSerializer(InvoiceOutputSerializer):
    lines = InvoiceLineOutputSerializer(many=True, read_only=True)

    class Meta(InvoiceOutputSerializer.Meta):
        fields = (*INVOICE_FIELDS, "seller", "buyer", "lines")


class InvoiceFilter(django_filters.FilterSet):
    issued_after = django_filters.IsoDateTimeFilter(field_name="issued_at", lookup_expr="gte")
    issued_before = django_filters.IsoDateTimeFilter(field_name="issued_at", lookup_expr="lt")

    class Meta:
        model = Invoice
        fields = ("account", "status", "kind", "currency", "number")


class InvoiceListApi(generics.ListAPIView[Invoice]):
    """Invoices and credit notes (drafts too), newest first by default."""

    permission_classes = [HasModelPermissions]
    required_permissions = ("billing.view_invoice",)
    queryset = Invoice.objects.all()
    serializer_class = InvoiceOutputSerializer
    pagination_class = StableCursorPagination
    filter_backends = [DjangoFilterBackend, filters.OrderingFilter]
    filterset_class = InvoiceFilter
    ordering_fields = ("id", "issued_at", "created_at")
    ordering = "-id"


class InvoiceDetailApi(generics.RetrieveAPIView[Invoice]):
    permission_classes = [HasModelPermissions]
    required_permissions = ("billing.view_invoice",)
    queryset = Invoice.objects.prefetch_related("lines")
    serializer_class = InvoiceDetailOutputSerializer
    lookup_url_kwarg = "invoice_id"


class PdfRenderer(renderers.BaseRenderer):
    """Lets a client ask for `Accept: application/pdf`; errors still go out as JSON."""

    media_type = "application/pdf"
    format = "pdf"
    charset = None
    render_style = "binary"

    def render(
        self,
        data: Any,
        accepted_media_type: str | None = None,
        renderer_context: Mapping[str, Any] | None = None,
    ) -> Any:
        if isinstance(data, bytes):
            return data
        return renderers.JSONRenderer().render(data)


class InvoicePdfApi(generics.GenericAPIView[Invoice]):
    """The PDF the customer received: issued invoices and credit notes only (404 for drafts)."""

    permission_classes = [HasModelPermissions]
    required_permissions = ("billing.view_invoice",)
    lookup_url_kwarg = "invoice_id"
    renderer_classes = [renderers.JSONRenderer, PdfRenderer]

    def get_queryset(self) -> QuerySet[Invoice]:
        return Invoice.objects.select_related("credit_of").filter(status=Invoice.Status.ISSUED)

    def finalize_response(
        self, request: Request, response: Response, *args: Any, **kwargs: Any
    ) -> Response:
        # The stubs say Response; the PDF itself is a plain HttpResponse.
        if isinstance(response, Response):
            # An error: JSON in the one error shape, whatever the client asked for.
            request.accepted_renderer = renderers.JSONRenderer()
            request.accepted_media_type = "application/json"
        return super().finalize_response(request, response, *args, **kwargs)

    @extend_schema(
        responses={
            (200, "application/pdf"): OpenApiResponse(OpenApiTypes.BINARY, description="The PDF")
        }
    )
    def get(self, request: Request, invoice_id: int) -> HttpResponse:
        invoice = self.get_object()
        response = HttpResponse(invoice_pdf(invoice), content_type="application/pdf")
        response["Content-Disposition"] = f'attachment; filename="{invoice.number}.pdf"'
        return response

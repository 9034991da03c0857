"""REST API v1 of tariffs and their published versions.

A tariff is written whole (its fields and, when given, all its elements with their price
components); every create or update publishes a new immutable version through
tariffs.services (tariff_version_publish's rules), and sessions keep the version in force at
their start. Reading needs tariffs.view_tariff; writing add/change (Operators).
"""

from __future__ import annotations

from typing import Any

import django_filters
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import extend_schema, extend_schema_field
from rest_framework import filters, generics, serializers, status
from rest_framework.request import Request
from rest_framework.response import Response

from cpo.lib.api import ApplicationError, HasModelPermissions, StableCursorPagination
from tariffs import services
from tariffs.models import PriceComponent, Tariff, TariffElement, TariffVersion


class PriceComponentSerializer(serializers.ModelSerializer):
    class Meta:
        model = PriceComponent
        fields = ("type", "price", "vat", "step_size")
        extra_kwargs = {"vat": {"required": False}, "step_size": {"required": False}}


class TariffElementSerializer(serializers.ModelSerializer):
    price_components = PriceComponentSerializer(many=True)

    class Meta:
        model = TariffElement
        fields = (*services.ELEMENT_FIELDS, "price_components")
        extra_kwargs = {name: {"required": False} for name in services.ELEMENT_FIELDS}

    def validate_price_components(self, value: list[dict[str, Any]]) -> list[dict[str, Any]]:
        if not value:
            raise serializers.ValidationError("an element needs a price", code="required")
        return value


class TariffVersionSummarySerializer(serializers.ModelSerializer):
    class Meta:
        model = TariffVersion
        fields = ("id", "number", "effective_from", "created_at")


class TariffOutputSerializer(serializers.ModelSerializer):
    elements = TariffElementSerializer(many=True, read_only=True)
    current_version = serializers.SerializerMethodField()

    class Meta:
        model = Tariff
        fields: tuple[str, ...] = (
            "id",
            *services.TARIFF_FIELDS,
            "elements",
            "current_version",
            "updated_at",
        )

    @extend_schema_field(TariffVersionSummarySerializer(allow_null=True))
    def get_current_version(self, tariff: Tariff) -> Any:
        version = tariff.versions.order_by("-number").first()
        return TariffVersionSummarySerializer(version).data if version else None


class TariffInputSerializer(serializers.ModelSerializer):
    elements = TariffElementSerializer(many=True, required=False)
    effective_from = serializers.DateTimeField(
        required=False,
        allow_null=True,
        help_text="When the published version takes effect (now when left out; never earlier "
        "once a version exists)",
    )

    class Meta:
        model = Tariff
        fields = (*services.TARIFF_FIELDS, "elements", "effective_from")
        extra_kwargs = {"tariff_id": {"required": False, "validators": []}}


class TariffWrittenSerializer(TariffOutputSerializer):
    published_version = serializers.IntegerField(
        allow_null=True, help_text="The version this write published (null: nothing changed)"
    )

    class Meta(TariffOutputSerializer.Meta):
        fields = (*TariffOutputSerializer.Meta.fields, "published_version")


def _written(tariff: Tariff, version: TariffVersion | None) -> dict[str, Any]:
    tariff.published_version = version.number if version else None  # type: ignore[attr-defined]
    return TariffWrittenSerializer(tariff).data


def _write(request: Request, tariff: Tariff | None) -> tuple[Tariff, TariffVersion | None]:
    data = TariffInputSerializer(instance=tariff, data=request.data, partial=tariff is not None)
    data.is_valid(raise_exception=True)
    attrs = dict(data.validated_data)
    elements = attrs.pop("elements", None)
    effective_from = attrs.pop("effective_from", None)
    try:
        if tariff is None:
            if elements is None:
                raise serializers.ValidationError({"elements": ["a tariff needs its elements"]})
            return services.tariff_create(
                data=attrs,
                elements=elements,
                created_by=request.user,
                effective_from=effective_from,
            )
        return services.tariff_update(
            tariff=tariff,
            data=attrs,
            elements=elements,
            created_by=request.user,
            effective_from=effective_from,
        )
    except services.TariffNotPublishable as refused:
        raise ApplicationError(refused.message, code="not_publishable") from None


class TariffFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Tariff
        fields = ("name", "currency", "type", "tariff_id")


def _tariffs() -> Any:
    return Tariff.objects.prefetch_related("elements__price_components")


class TariffListApi(generics.ListAPIView):
    """Tariffs (their working copy and current version); POST creates one and publishes its
    first version (Operators)."""

    permission_classes = [HasModelPermissions]
    required_permissions = {"GET": ("tariffs.view_tariff",), "POST": ("tariffs.add_tariff",)}
    queryset = _tariffs()
    serializer_class = TariffOutputSerializer
    pagination_class = StableCursorPagination
    filter_backends = [DjangoFilterBackend, filters.OrderingFilter]
    filterset_class = TariffFilter
    ordering_fields = ("id", "name", "updated_at")
    ordering = "id"

    @extend_schema(request=TariffInputSerializer, responses={201: TariffWrittenSerializer})
    def post(self, request: Request) -> Response:
        tariff, version = _write(request, None)
        return Response(_written(tariff, version), status=status.HTTP_201_CREATED)


class TariffDetailApi(generics.RetrieveAPIView):
    """One tariff; PATCH changes it and publishes a new version (Operators)."""

    permission_classes = [HasModelPermissions]
    required_permissions = {"GET": ("tariffs.view_tariff",), "PATCH": ("tariffs.change_tariff",)}
    queryset = _tariffs()
    serializer_class = TariffOutputSerializer
    lookup_url_kwarg = "tariff_pk"

    @extend_schema(request=TariffInputSerializer, responses=TariffWrittenSerializer)
    def patch(self, request: Request, tariff_pk: int) -> Response:
        tariff, version = _write(request, self.get_object())
        return Response(_written(_tariffs().get(pk=tariff.pk), version))


class TariffVersionSerializer(serializers.ModelSerializer):
    tariff_id = serializers.CharField(source="tariff.tariff_id", read_only=True)

    class Meta:
        model = TariffVersion
        fields = (
            "id",
            "tariff",
            "tariff_id",
            "number",
            "effective_from",
            "currency",
            "type",
            "start_date_time",
            "end_date_time",
            "changes",
            "ocpi",
            "created_by",
            "created_at",
        )


class TariffVersionListApi(generics.ListAPIView):
    """The published versions of one tariff, newest first by default."""

    permission_classes = [HasModelPermissions]
    required_permissions = ("tariffs.view_tariff",)
    serializer_class = TariffVersionSerializer
    pagination_class = StableCursorPagination
    filter_backends = [filters.OrderingFilter]
    ordering_fields = ("number",)
    ordering = "-number"

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular reads the model
            return TariffVersion.objects.none()
        tariff = generics.get_object_or_404(Tariff, pk=self.kwargs["tariff_pk"])
        return TariffVersion.objects.filter(tariff=tariff).select_related("tariff")


class TariffVersionDetailApi(generics.RetrieveAPIView):
    permission_classes = [HasModelPermissions]
    required_permissions = ("tariffs.view_tariff",)
    serializer_class = TariffVersionSerializer
    lookup_field = "number"
    lookup_url_kwarg = "number"

    def get_queryset(self) -> Any:
        return TariffVersion.objects.filter(tariff_id=self.kwargs["tariff_pk"]).select_related(
            "tariff"
        )

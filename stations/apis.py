"""REST API v1 of the network: sites, stations (by OCPP identity), EVSEs and connectors.

Thin views: filters and ordering by django-filter and DRF, cursor pages, writes through
stations.services. Reading needs the model's view permission, writing its add/change
permission (Operators; Finance and Support read).
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema, inline_serializer
from rest_framework import serializers, status
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cpo.lib.api import HasModelPermissions, V1DetailApi, V1ListApi
from cpo.lib.countries import validate_country_alpha3
from stations import services
from stations.models import ChargingStation, Connector, Evse, Location

# Characters of an OCPP identity as it appears in the station's URL (unreserved URL characters
# and the few OCPP 1.6 allows besides), at most 48.
IDENTITY_PATTERN = r"^[A-Za-z0-9\-._~:*+|@]{1,48}$"


# --- Locations -----------------------------------------------------------------------------------


class LocationOutputSerializer(serializers.ModelSerializer):
    station_count = serializers.IntegerField(read_only=True, source="stations.count")

    class Meta:
        model = Location
        fields = ("id", *services.LOCATION_FIELDS, "station_count", "created_at", "updated_at")


class LocationInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    address = serializers.CharField(max_length=255, required=False, allow_blank=True)
    postal_code = serializers.CharField(max_length=10, required=False, allow_blank=True)
    city = serializers.CharField(max_length=45, required=False, allow_blank=True)
    country = serializers.CharField(
        max_length=3,
        required=False,
        validators=[validate_country_alpha3],
        help_text="ISO 3166-1 alpha-3, e.g. NLD",
    )
    latitude = serializers.DecimalField(
        max_digits=9, decimal_places=6, min_value=-90, max_value=90, required=False, allow_null=True
    )
    longitude = serializers.DecimalField(
        max_digits=9,
        decimal_places=6,
        min_value=-180,
        max_value=180,
        required=False,
        allow_null=True,
    )
    time_zone = serializers.CharField(max_length=64, required=False, help_text="e.g. Europe/Berlin")
    publish = serializers.BooleanField(required=False)


class LocationFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")
    city = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Location
        fields = ("name", "city", "country", "publish")


class LocationListApi(V1ListApi):
    """Sites; POST creates one (Operators)."""

    required_permissions = {
        "GET": ("stations.view_location",),
        "POST": ("stations.add_location",),
    }
    queryset = Location.objects.all()
    serializer_class = LocationOutputSerializer
    filterset_class = LocationFilter
    ordering_fields = ("id", "name", "city", "created_at")
    ordering = "id"

    @extend_schema(request=LocationInputSerializer, responses={201: LocationOutputSerializer})
    def post(self, request: Request) -> Response:
        data = LocationInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        location = services.location_create(data=dict(data.validated_data))
        return Response(LocationOutputSerializer(location).data, status=status.HTTP_201_CREATED)


class LocationDetailApi(V1DetailApi):
    """One site; PATCH changes it (Operators)."""

    required_permissions = {
        "GET": ("stations.view_location",),
        "PATCH": ("stations.change_location",),
    }
    queryset = Location.objects.all()
    serializer_class = LocationOutputSerializer
    lookup_url_kwarg = "location_id"

    @extend_schema(request=LocationInputSerializer, responses=LocationOutputSerializer)
    def patch(self, request: Request, location_id: int) -> Response:
        location = self.get_object()
        data = LocationInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        location = services.location_update(location=location, data=dict(data.validated_data))
        return Response(LocationOutputSerializer(location).data)


# --- Stations ------------------------------------------------------------------------------------


class ConnectorOutputSerializer(serializers.ModelSerializer):
    station = serializers.CharField(source="station.identity", read_only=True)
    evse_id = serializers.IntegerField(source="evse.evse_id", read_only=True)

    class Meta:
        model = Connector
        fields = (
            "id",
            "station",
            "evse_id",
            "connector_id",
            "standard",
            "format",
            "power_type",
            "max_power_w",
            "status",
            "error_code",
            "info",
            "status_at",
        )


class EvseOutputSerializer(serializers.ModelSerializer):
    station = serializers.CharField(source="station.identity", read_only=True)
    connectors = ConnectorOutputSerializer(many=True, read_only=True)

    class Meta:
        model = Evse
        fields = ("id", "station", "evse_id", "uid", "status", "status_at", "connectors")


class StationOutputSerializer(serializers.ModelSerializer):
    has_password = serializers.SerializerMethodField()

    class Meta:
        model = ChargingStation
        fields: tuple[str, ...] = (
            "id",
            "identity",
            "location",
            "protocol",
            "registration_status",
            "has_password",
            "heartbeat_interval",
            "cost_display_enabled",
            "trace_enabled",
            "vendor",
            "model",
            "serial_number",
            "firmware_version",
            "is_online",
            "last_seen_at",
            "connected_at",
            "node",
            "status",
            "error_code",
            "created_at",
            "updated_at",
        )

    def get_has_password(self, station: ChargingStation) -> bool:
        return bool(station.password_hash)


class StationDetailOutputSerializer(StationOutputSerializer):
    evses = EvseOutputSerializer(many=True, read_only=True)

    class Meta(StationOutputSerializer.Meta):
        fields = (*StationOutputSerializer.Meta.fields, "evses")


class StationUpdateInputSerializer(serializers.Serializer):
    location = serializers.PrimaryKeyRelatedField(
        queryset=Location.objects.all(), required=False, allow_null=True
    )
    protocol = serializers.ChoiceField(
        choices=ChargingStation.Protocol.choices, required=False, allow_blank=True
    )
    heartbeat_interval = serializers.IntegerField(
        min_value=10, max_value=86400, required=False, allow_null=True
    )
    cost_display_enabled = serializers.BooleanField(required=False)
    trace_enabled = serializers.BooleanField(required=False)


class StationCreateInputSerializer(StationUpdateInputSerializer):
    identity = serializers.RegexField(
        IDENTITY_PATTERN,
        help_text="The charge point identity in the OCPP URL",
        error_messages={"invalid": "Letters, digits and - . _ ~ : * + | @ only, at most 48."},
    )
    registration_status = serializers.ChoiceField(
        choices=ChargingStation.RegistrationStatus.choices, required=False
    )
    password = serializers.CharField(
        required=False,
        allow_blank=True,
        write_only=True,
        trim_whitespace=False,
        help_text="HTTP Basic password (OCPP_STATION_PASSWORD_MIN_LENGTH-40 characters); "
        "stored only as a salted hash",
    )
    connector_count = serializers.IntegerField(
        min_value=0,
        max_value=64,
        default=0,
        help_text="Creates EVSE 1..N with connector 1 each",
    )


class StationFilter(django_filters.FilterSet):
    identity = django_filters.CharFilter(lookup_expr="icontains")
    location = django_filters.NumberFilter(field_name="location_id")
    vendor = django_filters.CharFilter(lookup_expr="iexact")

    class Meta:
        model = ChargingStation
        fields = ("identity", "location", "protocol", "registration_status", "is_online", "vendor")


def _stations() -> Any:
    return ChargingStation.objects.select_related("location")


class StationListApi(V1ListApi):
    """Stations; POST creates one (Operators)."""

    required_permissions = {
        "GET": ("stations.view_chargingstation",),
        "POST": ("stations.add_chargingstation",),
    }
    queryset = _stations()
    serializer_class = StationOutputSerializer
    filterset_class = StationFilter
    ordering_fields = ("id", "identity", "last_seen_at", "created_at")
    ordering = "identity"

    @extend_schema(
        request=StationCreateInputSerializer, responses={201: StationDetailOutputSerializer}
    )
    def post(self, request: Request) -> Response:
        data = StationCreateInputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        attrs = dict(data.validated_data)
        password = attrs.pop("password", "")
        count = attrs.pop("connector_count")
        station = services.station_create(data=attrs, password=password, connector_count=count)
        return Response(StationDetailOutputSerializer(station).data, status=status.HTTP_201_CREATED)


class StationDetailApi(V1DetailApi):
    """One station (by its OCPP identity) with its EVSEs and connectors; PATCH changes it
    (Operators)."""

    lookup_field = "identity"
    lookup_url_kwarg = "identity"

    required_permissions = {
        "GET": ("stations.view_chargingstation",),
        "PATCH": ("stations.change_chargingstation",),
    }
    queryset = _stations().prefetch_related("evses__connectors")
    serializer_class = StationDetailOutputSerializer

    @extend_schema(request=StationUpdateInputSerializer, responses=StationDetailOutputSerializer)
    def patch(self, request: Request, identity: str) -> Response:
        station = self.get_object()
        data = StationUpdateInputSerializer(data=request.data, partial=True)
        data.is_valid(raise_exception=True)
        station = services.station_update(station=station, data=dict(data.validated_data))
        return Response(StationDetailOutputSerializer(station).data)


class StationPasswordApi(APIView):
    """Set the station's HTTP Basic password, or rotate it to a random one (shown once)."""

    permission_classes = [HasModelPermissions]
    required_permissions = ("stations.change_chargingstation",)

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "StationPasswordInput"

        password = serializers.CharField(
            required=False,
            trim_whitespace=False,
            help_text="The new password; leave out (with rotate) for a random one",
        )
        rotate = serializers.BooleanField(
            default=False, help_text="Make a random password and return it once"
        )

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if bool(attrs.get("password")) == attrs["rotate"]:
                raise serializers.ValidationError(
                    "give either a password or rotate: true", code="one_of"
                )
            return attrs

    @extend_schema(
        request=InputSerializer,
        responses=inline_serializer(
            "StationPasswordOutput",
            {
                "identity": serializers.CharField(),
                "password": serializers.CharField(
                    allow_null=True, help_text="The rotated password (only when rotated)"
                ),
            },
        ),
    )
    def post(self, request: Request, identity: str) -> Response:
        station = get_object_or_404(ChargingStation, identity=identity)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rotate = data.validated_data["rotate"]
        password = services.station_password_set(
            station=station, password=None if rotate else data.validated_data["password"]
        )
        return Response({"identity": station.identity, "password": password if rotate else None})


class StationRegistrationApi(APIView):
    """Accept a station, or set it back to Pending (or Rejected); it learns this at its next
    BootNotification."""

    permission_classes = [HasModelPermissions]
    required_permissions = ("stations.change_chargingstation",)

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "StationRegistrationInput"

        registration_status = serializers.ChoiceField(
            choices=ChargingStation.RegistrationStatus.choices
        )

    @extend_schema(request=InputSerializer, responses=StationDetailOutputSerializer)
    def post(self, request: Request, identity: str) -> Response:
        station = get_object_or_404(ChargingStation, identity=identity)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        station = services.station_registration_set(
            station=station, status=data.validated_data["registration_status"]
        )
        return Response(StationDetailOutputSerializer(station).data)


# --- EVSEs and connectors ------------------------------------------------------------------------


class EvseFilter(django_filters.FilterSet):
    station = django_filters.CharFilter(field_name="station__identity")

    class Meta:
        model = Evse
        fields = ("station", "evse_id", "status")


class EvseListApi(V1ListApi):
    required_permissions = ("stations.view_chargingstation",)
    queryset = Evse.objects.select_related("station").prefetch_related("connectors__station")
    serializer_class = EvseOutputSerializer
    filterset_class = EvseFilter
    ordering_fields = ("id", "evse_id", "status_at")
    ordering = "id"


class EvseDetailApi(V1DetailApi):
    required_permissions = ("stations.view_chargingstation",)
    queryset = EvseListApi.queryset
    serializer_class = EvseOutputSerializer
    lookup_url_kwarg = "evse_pk"


class ConnectorFilter(django_filters.FilterSet):
    station = django_filters.CharFilter(field_name="station__identity")
    evse_id = django_filters.NumberFilter(field_name="evse__evse_id")

    class Meta:
        model = Connector
        fields = ("station", "evse_id", "connector_id", "status", "standard", "power_type")


class ConnectorListApi(V1ListApi):
    required_permissions = ("stations.view_connector",)
    queryset = Connector.objects.select_related("station", "evse")
    serializer_class = ConnectorOutputSerializer
    filterset_class = ConnectorFilter
    ordering_fields = ("id", "connector_id", "status_at")
    ordering = "id"


class ConnectorDetailApi(V1DetailApi):
    required_permissions = ("stations.view_connector",)
    queryset = ConnectorListApi.queryset
    serializer_class = ConnectorOutputSerializer
    lookup_url_kwarg = "connector_pk"

"""REST API for tokens, drivers, accounts and sessions: one view per use case, writes via
services. Sessions are read-only here: chargers write them; every session carries what the
integrity checks found (anomalies, held for review, estimated).

Every view states the model permissions it needs (role groups: Operators write, Support
reads); listing is not open to any authenticated user as DRF's DjangoModelPermissions would
leave it.
"""

from __future__ import annotations

from typing import Any

import django_filters
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cpo.lib.api import HasModelPermissions, V1DetailApi, V1ListApi
from cpo.lib.countries import validate_country_alpha2
from sessions import selectors, services
from sessions.models import ChargingSession, CustomerAccount, Driver, IdToken, MeterSample
from stations.models import ChargingStation, Location


class ChargingApi(APIView):
    permission_classes = [HasModelPermissions]
    required_permissions: tuple[str, ...] = ()


def paginated(
    request: Request, view: APIView, queryset: Any, serializer: type[serializers.Serializer]
) -> Response:
    paginator = LimitOffsetPagination()
    page = paginator.paginate_queryset(queryset, request, view=view)
    return paginator.get_paginated_response(serializer(page, many=True).data)


def boolean_param(value: str | None) -> bool | None:
    if value is None or value == "":
        return None
    return value.lower() in {"1", "true", "yes"}


SEARCH = OpenApiParameter("q", str, description="uid or visual number (tokens), name, ...")


# --- Tokens ---------------------------------------------------------------------------------


class TokenOutputSerializer(serializers.ModelSerializer):
    group_uid = serializers.CharField(source="group.uid", default="", read_only=True)

    class Meta:
        model = IdToken
        fields = (
            "id",
            "uid",
            "type",
            "visual_number",
            "driver",
            "account",
            "group",
            "group_uid",
            "valid_from",
            "valid_until",
            "blocked",
            "blocked_reason",
            "max_concurrent_sessions",
            "allowed_locations",
            "allowed_stations",
            "budget_energy_wh",
            "budget_cost",
            "budget_period",
            "issuer_country_code",
            "issuer_party_id",
            "contract_id",
            "in_local_list",
            "created_at",
            "updated_at",
        )


class TokenInputSerializer(serializers.Serializer):
    uid = serializers.CharField(max_length=36)
    type = serializers.ChoiceField(choices=IdToken.Type.choices, default=IdToken.Type.ISO14443)
    visual_number = serializers.CharField(max_length=64, required=False, allow_blank=True)
    driver = serializers.PrimaryKeyRelatedField(
        queryset=Driver.objects.all(), required=False, allow_null=True
    )
    account = serializers.PrimaryKeyRelatedField(
        queryset=CustomerAccount.objects.all(), required=False, allow_null=True
    )
    group = serializers.PrimaryKeyRelatedField(
        queryset=IdToken.objects.all(), required=False, allow_null=True
    )
    valid_from = serializers.DateTimeField(required=False, allow_null=True)
    valid_until = serializers.DateTimeField(required=False, allow_null=True)
    max_concurrent_sessions = serializers.IntegerField(min_value=1, required=False, allow_null=True)
    allowed_locations = serializers.PrimaryKeyRelatedField(
        queryset=Location.objects.all(), many=True, required=False
    )
    allowed_stations = serializers.PrimaryKeyRelatedField(
        queryset=ChargingStation.objects.all(), many=True, required=False
    )
    budget_energy_wh = serializers.DecimalField(
        max_digits=14, decimal_places=3, min_value=0, required=False, allow_null=True
    )
    budget_cost = serializers.DecimalField(
        max_digits=12, decimal_places=4, min_value=0, required=False, allow_null=True
    )
    budget_period = serializers.ChoiceField(choices=IdToken.BudgetPeriod.choices, required=False)
    issuer_country_code = serializers.CharField(
        max_length=2, required=False, allow_blank=True, validators=[validate_country_alpha2]
    )
    issuer_party_id = serializers.CharField(max_length=3, required=False, allow_blank=True)
    contract_id = serializers.CharField(max_length=36, required=False, allow_blank=True)
    in_local_list = serializers.BooleanField(required=False)


class TokenUpdateInputSerializer(TokenInputSerializer):
    # What a card is never changes: a mistyped card is deleted and entered again.
    uid = None  # type: ignore[assignment]
    type = None  # type: ignore[assignment]


def _restrictions(data: dict[str, Any]) -> dict[str, Any]:
    return {key: data.pop(key) for key in ("allowed_locations", "allowed_stations") if key in data}


class TokenListApi(ChargingApi):
    required_permissions = ("charging.view_idtoken",)

    @extend_schema(
        parameters=[
            SEARCH,
            OpenApiParameter("blocked", bool),
            OpenApiParameter("type", str),
            OpenApiParameter("account", int),
            OpenApiParameter("driver", int),
        ],
        responses=TokenOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        filters = {
            "q": params.get("q", ""),
            "blocked": boolean_param(params.get("blocked")),
            "type": params.get("type", ""),
            "account": params.get("account"),
            "driver": params.get("driver"),
            "group": params.get("group"),
        }
        tokens = selectors.token_list(filters=filters).prefetch_related(
            "allowed_locations", "allowed_stations"
        )
        return paginated(request, self, tokens, TokenOutputSerializer)


class TokenDetailApi(ChargingApi):
    required_permissions = ("charging.view_idtoken",)

    @extend_schema(responses=TokenOutputSerializer)
    def get(self, request: Request, token_id: int) -> Response:
        token = get_object_or_404(IdToken, pk=token_id)
        return Response(TokenOutputSerializer(token).data)


class TokenCreateApi(ChargingApi):
    required_permissions = ("charging.add_idtoken",)

    @extend_schema(request=TokenInputSerializer, responses={201: TokenOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = TokenInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token = services.id_token_create(**serializer.validated_data)
        return Response(TokenOutputSerializer(token).data, status=status.HTTP_201_CREATED)


class TokenUpdateApi(ChargingApi):
    required_permissions = ("charging.change_idtoken",)

    @extend_schema(request=TokenUpdateInputSerializer, responses=TokenOutputSerializer)
    def post(self, request: Request, token_id: int) -> Response:
        token = get_object_or_404(IdToken, pk=token_id)
        serializer = TokenUpdateInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = dict(serializer.validated_data)
        restrictions = _restrictions(data)
        services.id_token_update(token=token, data=data)
        if restrictions:
            locations = restrictions.get("allowed_locations", token.allowed_locations.all())
            stations = restrictions.get("allowed_stations", token.allowed_stations.all())
            services.id_token_set_restrictions(
                token=token, locations=list(locations), stations=list(stations)
            )
        token.refresh_from_db()
        return Response(TokenOutputSerializer(token).data)


class TokenDeleteApi(ChargingApi):
    required_permissions = ("charging.delete_idtoken",)

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request, token_id: int) -> Response:
        token = get_object_or_404(IdToken, pk=token_id)
        services.id_token_delete(token=token)
        return Response(status=status.HTTP_204_NO_CONTENT)


class TokenBlockApi(ChargingApi):
    required_permissions = ("charging.block_idtoken",)

    class InputSerializer(serializers.Serializer):
        reason = serializers.CharField(max_length=255, required=False, allow_blank=True)

    @extend_schema(request=InputSerializer, responses=TokenOutputSerializer)
    def post(self, request: Request, token_id: int) -> Response:
        token = get_object_or_404(IdToken, pk=token_id)
        serializer = self.InputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        services.id_token_block(token=token, reason=serializer.validated_data.get("reason", ""))
        return Response(TokenOutputSerializer(token).data)


class TokenUnblockApi(ChargingApi):
    required_permissions = ("charging.block_idtoken",)

    @extend_schema(request=None, responses=TokenOutputSerializer)
    def post(self, request: Request, token_id: int) -> Response:
        token = get_object_or_404(IdToken, pk=token_id)
        services.id_token_unblock(token=token)
        return Response(TokenOutputSerializer(token).data)


# --- Drivers --------------------------------------------------------------------------------


class DriverOutputSerializer(serializers.ModelSerializer):
    token_count = serializers.IntegerField(read_only=True, default=None)

    class Meta:
        model = Driver
        fields = (
            "id",
            "reference",
            "name",
            "account",
            "email",
            "phone",
            "is_active",
            "token_count",
            "created_at",
        )


class DriverInputSerializer(serializers.Serializer):
    account = serializers.PrimaryKeyRelatedField(queryset=CustomerAccount.objects.all())
    name = serializers.CharField(max_length=255)
    reference = serializers.CharField(max_length=32, required=False, allow_blank=True)
    email = serializers.EmailField(required=False, allow_blank=True)
    phone = serializers.CharField(max_length=32, required=False, allow_blank=True)
    is_active = serializers.BooleanField(required=False)


class DriverListApi(ChargingApi):
    required_permissions = ("charging.view_driver",)

    @extend_schema(
        parameters=[SEARCH, OpenApiParameter("account", int)],
        responses=DriverOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        filters = {
            "q": request.query_params.get("q", ""),
            "account": request.query_params.get("account"),
        }
        return paginated(
            request, self, selectors.driver_list(filters=filters), DriverOutputSerializer
        )


class DriverDetailApi(ChargingApi):
    required_permissions = ("charging.view_driver",)

    @extend_schema(responses=DriverOutputSerializer)
    def get(self, request: Request, driver_id: int) -> Response:
        driver = get_object_or_404(selectors.driver_list(), pk=driver_id)
        return Response(DriverOutputSerializer(driver).data)


class DriverCreateApi(ChargingApi):
    required_permissions = ("charging.add_driver",)

    @extend_schema(request=DriverInputSerializer, responses={201: DriverOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = DriverInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        driver = services.driver_create(**serializer.validated_data)
        return Response(DriverOutputSerializer(driver).data, status=status.HTTP_201_CREATED)


class DriverUpdateApi(ChargingApi):
    required_permissions = ("charging.change_driver",)

    @extend_schema(request=DriverInputSerializer, responses=DriverOutputSerializer)
    def post(self, request: Request, driver_id: int) -> Response:
        driver = get_object_or_404(Driver, pk=driver_id)
        serializer = DriverInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        driver = services.driver_update(driver=driver, data=dict(serializer.validated_data))
        return Response(DriverOutputSerializer(driver).data)


# --- Sessions -------------------------------------------------------------------------------

# What the integrity checks found on a session, on every session the API shows.
SESSION_INTEGRITY_FIELDS = (
    "needs_review",
    "is_estimated",
    "is_orphan",
    "seq_no_gap",
    "sample_conflicts",
    "anomalies",
)


class SessionOutputSerializer(serializers.ModelSerializer):
    station = serializers.CharField(source="station.identity")
    energy_kwh = serializers.DecimalField(max_digits=16, decimal_places=3)
    duration_seconds = serializers.SerializerMethodField()

    class Meta:
        model = ChargingSession
        fields: tuple[str, ...] = (
            "id",
            "uid",
            "station",
            "evse_id",
            "connector_id",
            "transaction_id",
            "id_tag",
            "status",
            "started_at",
            "ended_at",
            "energy_kwh",
            "duration_seconds",
            "live_cost",
            "live_cost_currency",
            "auth_status",
            "stop_reason",
            "rating_status",
            "rating_note",
            *SESSION_INTEGRITY_FIELDS,
        )

    def get_duration_seconds(self, obj: ChargingSession) -> int:
        return int(obj.duration.total_seconds())


class SessionDetailOutputSerializer(SessionOutputSerializer):
    samples_after_stop = serializers.IntegerField(
        help_text="Meter samples that arrived after the stop: kept, not counted."
    )

    class Meta(SessionOutputSerializer.Meta):
        fields = (
            *SessionOutputSerializer.Meta.fields,
            "meter_start_wh",
            "meter_stop_wh",
            "energy_wh",
            "samples_after_stop",
        )


class SessionListApi(ChargingApi):
    required_permissions = ("charging.view_chargingsession",)

    class FilterSerializer(serializers.Serializer):
        status = serializers.ChoiceField(choices=ChargingSession.Status.choices, required=False)
        station = serializers.CharField(required=False)
        needs_review = serializers.BooleanField(required=False, allow_null=True, default=None)
        estimated = serializers.BooleanField(required=False, allow_null=True, default=None)
        flagged = serializers.BooleanField(required=False, allow_null=True, default=None)

    @extend_schema(
        parameters=[FilterSerializer], responses=SessionDetailOutputSerializer(many=True)
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        return paginated(
            request,
            self,
            selectors.session_list(filters=filters.validated_data),
            SessionDetailOutputSerializer,
        )


class SessionDetailApi(ChargingApi):
    required_permissions = ("charging.view_chargingsession",)

    @extend_schema(responses=SessionDetailOutputSerializer)
    def get(self, request: Request, session_id: int) -> Response:
        session = get_object_or_404(selectors.session_list(), pk=session_id)
        return Response(SessionDetailOutputSerializer(session).data)


class DriverSessionsApi(ChargingApi):
    required_permissions = ("charging.view_driver", "charging.view_chargingsession")

    OutputSerializer = SessionOutputSerializer

    @extend_schema(responses=OutputSerializer(many=True))
    def get(self, request: Request, driver_id: int) -> Response:
        driver = get_object_or_404(Driver, pk=driver_id)
        return paginated(
            request, self, selectors.driver_sessions(driver=driver), self.OutputSerializer
        )


# --- Accounts -------------------------------------------------------------------------------


class AccountOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = CustomerAccount
        fields = ("id", *services.ACCOUNT_FIELDS, "created_at")


class AccountInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=255)
    reference = serializers.CharField(max_length=32, required=False, allow_blank=True)
    kind = serializers.ChoiceField(choices=CustomerAccount.Kind.choices, required=False)
    legal_name = serializers.CharField(max_length=255, required=False, allow_blank=True)
    address = serializers.CharField(max_length=255, required=False, allow_blank=True)
    postal_code = serializers.CharField(max_length=16, required=False, allow_blank=True)
    city = serializers.CharField(max_length=64, required=False, allow_blank=True)
    country = serializers.CharField(
        max_length=2, required=False, validators=[validate_country_alpha2]
    )
    vat_id = serializers.CharField(max_length=32, required=False, allow_blank=True)
    email = serializers.EmailField(required=False, allow_blank=True)
    currency = serializers.CharField(max_length=3, required=False)
    billing_period = serializers.ChoiceField(
        choices=CustomerAccount.BillingPeriod.choices, required=False
    )
    time_zone = serializers.CharField(max_length=64, required=False, allow_blank=True)
    country_code = serializers.CharField(
        max_length=2, required=False, allow_blank=True, validators=[validate_country_alpha2]
    )
    party_id = serializers.CharField(max_length=3, required=False, allow_blank=True)
    is_active = serializers.BooleanField(required=False)


class AccountListApi(ChargingApi):
    required_permissions = ("charging.view_customeraccount",)

    @extend_schema(
        parameters=[SEARCH, OpenApiParameter("kind", str), OpenApiParameter("is_active", bool)],
        responses=AccountOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        params = request.query_params
        filters = {
            "q": params.get("q", ""),
            "kind": params.get("kind", ""),
            "is_active": boolean_param(params.get("is_active")),
        }
        return paginated(
            request, self, selectors.account_list(filters=filters), AccountOutputSerializer
        )


class AccountDetailApi(ChargingApi):
    required_permissions = ("charging.view_customeraccount",)

    @extend_schema(responses=AccountOutputSerializer)
    def get(self, request: Request, account_id: int) -> Response:
        account = get_object_or_404(CustomerAccount, pk=account_id)
        return Response(AccountOutputSerializer(account).data)


class AccountCreateApi(ChargingApi):
    required_permissions = ("charging.add_customeraccount",)

    @extend_schema(request=AccountInputSerializer, responses={201: AccountOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = AccountInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        account = services.account_create(**serializer.validated_data)
        return Response(AccountOutputSerializer(account).data, status=status.HTTP_201_CREATED)


class AccountUpdateApi(ChargingApi):
    required_permissions = ("charging.change_customeraccount",)

    @extend_schema(request=AccountInputSerializer, responses=AccountOutputSerializer)
    def post(self, request: Request, account_id: int) -> Response:
        account = get_object_or_404(CustomerAccount, pk=account_id)
        serializer = AccountInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        account = services.account_update(account=account, data=dict(serializer.validated_data))
        return Response(AccountOutputSerializer(account).data)


# --- /api/v1/: lists with filters, ordering and cursor pages; tokens written by services ------


class TokenFilter(django_filters.FilterSet):
    q = django_filters.CharFilter(method="search", help_text="uid or visual number")
    valid_at = django_filters.IsoDateTimeFilter(method="valid", help_text="Valid at this time")

    class Meta:
        model = IdToken
        fields = ("q", "type", "blocked", "account", "driver", "group", "in_local_list")

    def search(self, queryset: Any, name: str, value: str) -> Any:
        return queryset.filter(selectors.token_search_q(value)) if value else queryset

    def valid(self, queryset: Any, name: str, value: Any) -> Any:
        from django.db.models import Q

        return queryset.filter(
            Q(valid_from__isnull=True) | Q(valid_from__lte=value),
            Q(valid_until__isnull=True) | Q(valid_until__gt=value),
        )


class TokenListV1Api(V1ListApi):
    """RFID cards and other tokens; POST creates one (Operators)."""

    required_permissions = {"GET": ("charging.view_idtoken",), "POST": ("charging.add_idtoken",)}
    queryset = IdToken.objects.select_related("group").prefetch_related(
        "allowed_locations", "allowed_stations"
    )
    serializer_class = TokenOutputSerializer
    filterset_class = TokenFilter
    ordering_fields = ("id", "uid", "created_at", "updated_at")
    ordering = "id"

    @extend_schema(request=TokenInputSerializer, responses={201: TokenOutputSerializer})
    def post(self, request: Request) -> Response:
        serializer = TokenInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        token = services.id_token_create(**serializer.validated_data)
        return Response(TokenOutputSerializer(token).data, status=status.HTTP_201_CREATED)


class TokenDetailV1Api(V1DetailApi):
    """One token; PATCH changes it (Operators; uid and type never change)."""

    required_permissions = {
        "GET": ("charging.view_idtoken",),
        "PATCH": ("charging.change_idtoken",),
    }
    queryset = TokenListV1Api.queryset
    serializer_class = TokenOutputSerializer
    lookup_url_kwarg = "token_id"

    @extend_schema(request=TokenUpdateInputSerializer, responses=TokenOutputSerializer)
    def patch(self, request: Request, token_id: int) -> Response:
        token = self.get_object()
        serializer = TokenUpdateInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        token = services.id_token_change(token=token, data=dict(serializer.validated_data))
        return Response(TokenOutputSerializer(token).data)


class DriverFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = Driver
        fields = ("name", "account", "is_active", "reference")


class DriverListV1Api(V1ListApi):
    required_permissions = ("charging.view_driver",)
    queryset = selectors.driver_list()
    serializer_class = DriverOutputSerializer
    filterset_class = DriverFilter
    ordering_fields = ("id", "name", "created_at")
    ordering = "id"


class DriverDetailV1Api(V1DetailApi):
    required_permissions = ("charging.view_driver",)
    queryset = selectors.driver_list()
    serializer_class = DriverOutputSerializer
    lookup_url_kwarg = "driver_id"


class AccountFilter(django_filters.FilterSet):
    name = django_filters.CharFilter(lookup_expr="icontains")

    class Meta:
        model = CustomerAccount
        fields = ("name", "kind", "is_active", "currency", "billing_period", "reference")


class AccountListV1Api(V1ListApi):
    required_permissions = ("charging.view_customeraccount",)
    queryset = CustomerAccount.objects.all()
    serializer_class = AccountOutputSerializer
    filterset_class = AccountFilter
    ordering_fields = ("id", "name", "created_at")
    ordering = "id"


class AccountDetailV1Api(V1DetailApi):
    required_permissions = ("charging.view_customeraccount",)
    queryset = CustomerAccount.objects.all()
    serializer_class = AccountOutputSerializer
    lookup_url_kwarg = "account_id"


class SessionFilter(django_filters.FilterSet):
    station = django_filters.CharFilter(field_name="station__identity", help_text="OCPP identity")
    location = django_filters.NumberFilter(field_name="station__location_id")
    started_after = django_filters.IsoDateTimeFilter(field_name="started_at", lookup_expr="gte")
    started_before = django_filters.IsoDateTimeFilter(field_name="started_at", lookup_expr="lt")
    needs_review = django_filters.BooleanFilter(method="review")
    flagged = django_filters.BooleanFilter(method="anomalous", help_text="Has any anomaly")

    class Meta:
        model = ChargingSession
        fields = (
            "station",
            "location",
            "status",
            "id_token",
            "account",
            "rating_status",
            "is_estimated",
            "started_after",
            "started_before",
            "needs_review",
            "flagged",
        )

    def review(self, queryset: Any, name: str, value: bool) -> Any:
        return (
            queryset.filter(**{"rating_status": ChargingSession.RatingStatus.NEEDS_REVIEW})
            if value
            else queryset.exclude(rating_status=ChargingSession.RatingStatus.NEEDS_REVIEW)
        )

    def anomalous(self, queryset: Any, name: str, value: bool) -> Any:
        return queryset.exclude(anomalies=[]) if value else queryset.filter(anomalies=[])


class SessionListV1Api(V1ListApi):
    """Charging sessions, newest first by default."""

    required_permissions = ("charging.view_chargingsession",)
    queryset = selectors.session_list()
    serializer_class = SessionDetailOutputSerializer
    filterset_class = SessionFilter
    ordering_fields = ("id", "started_at")
    ordering = "-id"


class SessionDetailV1Api(V1DetailApi):
    required_permissions = ("charging.view_chargingsession",)
    queryset = selectors.session_list()
    serializer_class = SessionDetailOutputSerializer
    lookup_url_kwarg = "session_id"


class MeterSampleOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = MeterSample
        fields = (
            "id",
            "evse_id",
            "connector_id",
            "timestamp",
            "measurand",
            "phase",
            "location",
            "context",
            "unit",
            "value",
            "raw_value",
            "format",
            "signed_data",
            "signing_method",
            "encoding_method",
            "public_key",
            "after_stop",
        )


class MeterSampleFilter(django_filters.FilterSet):
    after = django_filters.IsoDateTimeFilter(field_name="timestamp", lookup_expr="gte")
    before = django_filters.IsoDateTimeFilter(field_name="timestamp", lookup_expr="lt")

    class Meta:
        model = MeterSample
        fields = ("measurand", "phase", "context", "after_stop", "after", "before")


class SessionSamplesV1Api(V1ListApi):
    """The meter samples of one session, in the order they were taken by default."""

    required_permissions = ("charging.view_chargingsession", "charging.view_metersample")
    serializer_class = MeterSampleOutputSerializer
    filterset_class = MeterSampleFilter
    ordering_fields = ("id", "timestamp")
    ordering = "id"

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular reads the model
            return MeterSample.objects.none()
        session = get_object_or_404(ChargingSession, pk=self.kwargs["session_id"])
        return MeterSample.objects.filter(session=session)

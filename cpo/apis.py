"""The REST API v1 at the edge: the user's own API tokens, and the /api/v1/ routes composed
from each app's API module (stations.apis, stations.commands.apis, sessions.apis,
tariffs.apis, billing.apis, stations.monitoring.apis)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.urls import path
from drf_spectacular.utils import extend_schema
from drf_spectacular.views import SpectacularRedocView
from rest_framework import generics, serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.request import Request
from rest_framework.response import Response

from billing import apis as billing_apis
from cpo import api_tokens
from cpo.lib.api import StableCursorPagination
from cpo.models import ApiToken
from sessions import apis as sessions_apis
from stations import apis as stations_apis
from stations.commands import apis as commands_apis
from stations.energy import apis as energy_apis
from stations.monitoring import apis as monitoring_apis
from tariffs import apis as tariffs_apis


class ApiTokenOutputSerializer(serializers.ModelSerializer):
    is_active = serializers.SerializerMethodField()

    class Meta:
        model = ApiToken
        fields: tuple[str, ...] = (
            "id",
            "name",
            "prefix",
            "created_at",
            "expires_at",
            "revoked_at",
            "last_used_at",
            "last_used_from",
            "is_active",
        )

    def get_is_active(self, token: ApiToken) -> bool:
        return token.is_active()


class ApiTokenCreatedSerializer(ApiTokenOutputSerializer):
    secret = serializers.CharField(
        help_text="The token, shown this once: send it as 'Authorization: Bearer <secret>'"
    )

    class Meta(ApiTokenOutputSerializer.Meta):
        fields = (*ApiTokenOutputSerializer.Meta.fields, "secret")


class OwnTokens(generics.GenericAPIView):
    """Every user manages its own tokens only; no role permission is needed."""

    permission_classes = [IsAuthenticated]

    def get_queryset(self) -> Any:
        if getattr(self, "swagger_fake_view", False):  # drf-spectacular reads the model
            return ApiToken.objects.none()
        return ApiToken.objects.filter(user_id=self.request.user.pk or 0)


class ApiTokenListApi(OwnTokens, generics.ListAPIView):
    """Your API tokens, newest first; POST makes one (its secret is in the answer, once)."""

    serializer_class = ApiTokenOutputSerializer
    pagination_class = StableCursorPagination

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "ApiTokenCreateInput"

        name = serializers.CharField(max_length=100)
        expires_at = serializers.DateTimeField(
            required=False,
            help_text=f"Default: {api_tokens.DEFAULT_LIFETIME.days} days from now; "
            f"at most {api_tokens.MAX_LIFETIME.days}",
        )

    @extend_schema(request=InputSerializer, responses={201: ApiTokenCreatedSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        token, secret = api_tokens.api_token_create(
            user=request.user,
            name=data.validated_data["name"],
            expires_at=data.validated_data.get("expires_at"),
        )
        token.secret = secret  # type: ignore[attr-defined]
        return Response(ApiTokenCreatedSerializer(token).data, status=status.HTTP_201_CREATED)


class ApiTokenDetailApi(OwnTokens, generics.RetrieveAPIView):
    serializer_class = ApiTokenOutputSerializer
    lookup_url_kwarg = "api_token_id"


class ApiTokenRevokeApi(OwnTokens):
    """Revoke one of your tokens: every request with it is refused from now on."""

    serializer_class = ApiTokenOutputSerializer
    lookup_url_kwarg = "api_token_id"

    @extend_schema(request=None, responses=ApiTokenOutputSerializer)
    def post(self, request: Request, api_token_id: int) -> Response:
        token = api_tokens.api_token_revoke(token=self.get_object())
        return Response(ApiTokenOutputSerializer(token).data)


class RedocView(SpectacularRedocView):
    """ReDoc from static/ (no Google Fonts, no inline script: our template). Its search runs
    in a Web Worker it starts from a blob: URL, which this page's policy alone allows."""

    template_name = "cpo/api/redoc.html"

    @extend_schema(exclude=True)
    def get(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        response = super().get(request, *args, **kwargs)
        if settings.CONTENT_SECURITY_POLICY:
            response.headers["Content-Security-Policy"] = (
                f"{settings.CONTENT_SECURITY_POLICY}; worker-src 'self' blob:"
            )
        return response


STATION = "stations/<str:identity>/"

urlpatterns_v1 = [
    # Sites, stations (by OCPP identity), EVSEs and connectors.
    path("locations/", stations_apis.LocationListApi.as_view(), name="location-list"),
    path(
        "locations/<int:location_id>/",
        stations_apis.LocationDetailApi.as_view(),
        name="location-detail",
    ),
    path("stations/", stations_apis.StationListApi.as_view(), name="station-list"),
    path(STATION, stations_apis.StationDetailApi.as_view(), name="station-detail"),
    path(
        f"{STATION}password/",
        stations_apis.StationPasswordApi.as_view(),
        name="station-password",
    ),
    path(
        f"{STATION}registration/",
        stations_apis.StationRegistrationApi.as_view(),
        name="station-registration",
    ),
    path(
        f"{STATION}password/rotation/",
        commands_apis.StationPasswordRotationApi.as_view(),
        name="station-password-rotation",
    ),
    path(
        f"{STATION}security-profile/",
        commands_apis.StationSecurityProfileApi.as_view(),
        name="station-security-profile",
    ),
    path(
        f"{STATION}certificates/",
        commands_apis.StationCertificateListApi.as_view(),
        name="station-certificate-list",
    ),
    path(
        f"{STATION}roots/<int:root_id>/",
        commands_apis.StationRootApi.as_view(),
        name="station-root",
    ),
    path(
        "certificates/<str:serial>/revoke/",
        commands_apis.CertificateRevokeApi.as_view(),
        name="certificate-revoke",
    ),
    path("trusted-roots/", commands_apis.TrustedRootListApi.as_view(), name="trusted-root-list"),
    path(f"{STATION}commands/", commands_apis.station_command_send, name="station-command-send"),
    path(
        f"{STATION}local-list/sync/",
        commands_apis.StationLocalListSyncApi.as_view(),
        name="station-local-list-sync",
    ),
    path("evses/", stations_apis.EvseListApi.as_view(), name="evse-list"),
    path("evses/<int:evse_pk>/", stations_apis.EvseDetailApi.as_view(), name="evse-detail"),
    path("connectors/", stations_apis.ConnectorListApi.as_view(), name="connector-list"),
    path(
        "connectors/<int:connector_pk>/",
        stations_apis.ConnectorDetailApi.as_view(),
        name="connector-detail",
    ),
    # Commands and jobs.
    path("commands/", commands_apis.CommandListV1Api.as_view(), name="command-list"),
    path(
        "commands/<int:command_id>/",
        commands_apis.CommandDetailApi.as_view(),
        name="command-detail",
    ),
    path("jobs/", commands_apis.JobListV1Api.as_view(), name="job-list"),
    path("jobs/<int:job_id>/", commands_apis.JobDetailApi.as_view(), name="job-detail"),
    path("jobs/<int:job_id>/cancel/", commands_apis.JobCancelApi.as_view(), name="job-cancel"),
    # Charging: tokens, drivers, accounts, sessions and their meter samples.
    path("tokens/", sessions_apis.TokenListV1Api.as_view(), name="token-list"),
    path("tokens/<int:token_id>/", sessions_apis.TokenDetailV1Api.as_view(), name="token-detail"),
    path("tokens/<int:token_id>/block/", sessions_apis.TokenBlockApi.as_view(), name="token-block"),
    path(
        "tokens/<int:token_id>/unblock/",
        sessions_apis.TokenUnblockApi.as_view(),
        name="token-unblock",
    ),
    path("drivers/", sessions_apis.DriverListV1Api.as_view(), name="driver-list"),
    path(
        "drivers/<int:driver_id>/",
        sessions_apis.DriverDetailV1Api.as_view(),
        name="driver-detail",
    ),
    path("accounts/", sessions_apis.AccountListV1Api.as_view(), name="account-list"),
    path(
        "accounts/<int:account_id>/",
        sessions_apis.AccountDetailV1Api.as_view(),
        name="account-detail",
    ),
    path("sessions/", sessions_apis.SessionListV1Api.as_view(), name="session-list"),
    path(
        "sessions/<int:session_id>/",
        sessions_apis.SessionDetailV1Api.as_view(),
        name="session-detail",
    ),
    path(
        "sessions/<int:session_id>/samples/",
        sessions_apis.SessionSamplesV1Api.as_view(),
        name="session-samples",
    ),
    # Energy management: why a session is limited, a site's tree, external limits.
    path(
        "sessions/<int:session_id>/energy/",
        energy_apis.SessionEnergyApi.as_view(),
        name="session-energy",
    ),
    path(
        "locations/<int:location_id>/energy/",
        energy_apis.SiteEnergyApi.as_view(),
        name="site-energy",
    ),
    path(
        "energy/nodes/<int:node_id>/limit/",
        energy_apis.NodeLimitPushApi.as_view(),
        name="energy-node-limit",
    ),
    # Incidents (monitoring).
    path("incidents/", monitoring_apis.IncidentListV1Api.as_view(), name="incident-list"),
    path(
        "incidents/<int:incident_id>/",
        monitoring_apis.IncidentDetailV1Api.as_view(),
        name="incident-detail",
    ),
    path(
        "incidents/<int:incident_id>/acknowledge/",
        monitoring_apis.IncidentAcknowledgeApi.as_view(),
        name="incident-acknowledge",
    ),
    path("uptime/", monitoring_apis.UptimeReportV1Api.as_view(), name="uptime-report"),
    # Tariffs and their versions.
    path("tariffs/", tariffs_apis.TariffListApi.as_view(), name="tariff-list"),
    path("tariffs/<int:tariff_pk>/", tariffs_apis.TariffDetailApi.as_view(), name="tariff-detail"),
    path(
        "tariffs/<int:tariff_pk>/versions/",
        tariffs_apis.TariffVersionListApi.as_view(),
        name="tariff-version-list",
    ),
    path(
        "tariffs/<int:tariff_pk>/versions/<int:number>/",
        tariffs_apis.TariffVersionDetailApi.as_view(),
        name="tariff-version-detail",
    ),
    # Billing.
    path("cdrs/", billing_apis.CdrListApi.as_view(), name="cdr-list"),
    path("cdrs/<int:cdr_id>/", billing_apis.CdrDetailApi.as_view(), name="cdr-detail"),
    path("invoices/", billing_apis.InvoiceListApi.as_view(), name="invoice-list"),
    path(
        "invoices/<int:invoice_id>/",
        billing_apis.InvoiceDetailApi.as_view(),
        name="invoice-detail",
    ),
    path(
        "invoices/<int:invoice_id>/pdf/", billing_apis.InvoicePdfApi.as_view(), name="invoice-pdf"
    ),
    # The caller's own API tokens.
    path("api-tokens/", ApiTokenListApi.as_view(), name="api-token-list"),
    path("api-tokens/<int:api_token_id>/", ApiTokenDetailApi.as_view(), name="api-token-detail"),
    path(
        "api-tokens/<int:api_token_id>/revoke/",
        ApiTokenRevokeApi.as_view(),
        name="api-token-revoke",
    ),
]

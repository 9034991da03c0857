"""REST API for commands to stations and jobs: one view per use case, writes via services.

Sending may wait up to a minute for the station's answer. A synchronous view would hold its
request's thread all that time, so the send endpoint is an async view: it runs the DRF view
(authentication, permissions, validation, the service call) through `sync_to_async`, then polls
for the answer on the event loop, where a waiting request holds no thread.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import django_filters
from asgiref.sync import sync_to_async
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, filters, generics, serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cpo.lib.api import ApplicationError, HasModelPermissions, StableCursorPagination
from stations.commands import jobs, local_lists, security, services
from stations.commands import permissions as command_permissions
from stations.commands.models import Command, Job, JobTarget, SecurityChange
from stations.commands.verbs import VERBS, CommandError
from stations.models import ChargingStation, Location, StationCertificate, TrustedRoot

MAX_WAIT = 60.0


class MaySendSomeCommand(BasePermission):
    """The user may send at least one kind of command; the view checks the verb itself."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        return bool(user and user.is_authenticated and command_permissions.can_send_some(user))


class StationsApi(APIView):
    permission_classes = [HasModelPermissions]
    required_permissions: tuple[str, ...] = ()


def _station(station_id: int | None = None, identity: str | None = None) -> ChargingStation:
    """The station of a URL: by database id (/api/) or by OCPP identity (/api/v1/)."""
    if identity is not None:
        return get_object_or_404(ChargingStation, identity=identity)
    return get_object_or_404(ChargingStation, pk=station_id)


def _application_error(error: CommandError) -> ApplicationError:
    return ApplicationError(error.message, {"field": error.field} if error.field else {})


class CommandOutputSerializer(serializers.ModelSerializer):
    station_identity = serializers.CharField(source="station.identity", read_only=True)
    parts = serializers.SerializerMethodField(
        help_text="A batch split per the station's ItemsPerMessage: the ids of all its commands."
    )
    batch_response = serializers.SerializerMethodField(
        help_text="A split batch: the answers of all its commands joined, once all answered."
    )

    def get_parts(self, command: Command) -> list[int] | None:
        if command.batch_size <= 1:
            return None
        return [part.pk for part in services.command_parts(command)]

    def get_batch_response(self, command: Command) -> dict[str, Any] | None:
        if command.batch_size <= 1:
            return None
        return services.command_batch_response(command)

    class Meta:
        model = Command
        fields = (
            "id",
            "station",
            "station_identity",
            "protocol",
            "verb",
            "action",
            "payload",
            "status",
            "response",
            "error_code",
            "error_description",
            "origin",
            "requested_by",
            "created_at",
            "expires_at",
            "sent_at",
            "completed_at",
            "batch",
            "parts",
            "batch_response",
        )


# --- Commands -----------------------------------------------------------------------------------


class StationCommandSendApi(StationsApi):
    """Send a version-neutral verb or a raw OCPP action to a station.

    Raw actions and most verbs need `stations.send_command`; asking for status, unlocking and
    remote stop have permissions of their own (stations.commands.permissions)."""

    permission_classes = [MaySendSomeCommand]

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "CommandSendInput"

        verb = serializers.ChoiceField(choices=sorted(VERBS), required=False)
        params = serializers.DictField(
            required=False,
            default=dict,
            help_text="The verb's parameters; remote_stop also takes session_id",
        )
        action = serializers.CharField(
            required=False, max_length=50, help_text="Raw mode: an action of the station's protocol"
        )
        payload = serializers.DictField(required=False, default=dict)
        wait = serializers.FloatField(
            required=False,
            default=0,
            min_value=0,
            max_value=MAX_WAIT,
            help_text="Seconds to wait for the station's answer (0: return at once)",
        )
        expires_in = serializers.IntegerField(
            required=False, min_value=1, help_text="Seconds an offline station is waited for"
        )

        def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
            if bool(attrs.get("verb")) == bool(attrs.get("action")):
                raise serializers.ValidationError("give either a verb or a raw action")
            return attrs

    @extend_schema(
        request=InputSerializer,
        responses={200: CommandOutputSerializer, 202: CommandOutputSerializer},
    )
    def post(
        self, request: Request, station_id: int | None = None, identity: str | None = None
    ) -> Response:
        from datetime import timedelta

        station = _station(station_id, identity)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        attrs = data.validated_data
        params = dict(attrs.get("params") or {})
        if attrs.get("verb") == "remote_stop" and params.get("session_id"):
            # Stop by session: the edge resolves the session's OCPP transaction id.
            from sessions.models import ChargingSession

            session = get_object_or_404(
                ChargingSession, pk=params.pop("session_id"), station=station
            )
            params["transaction_id"] = session.transaction_id
        if not command_permissions.can_send(request.user, attrs.get("verb", ""), params):
            raise exceptions.PermissionDenied("you may not send this command")
        try:
            command = services.command_create(
                station=station,
                verb=attrs.get("verb", ""),
                params=params,
                action=attrs.get("action", ""),
                payload=attrs.get("payload"),
                origin=Command.Origin.API,
                requested_by=request.user,
                expires_in=timedelta(seconds=attrs["expires_in"])
                if attrs.get("expires_in")
                else None,
            )
        except CommandError as error:
            raise _application_error(error) from None
        response = Response(CommandOutputSerializer(command).data, status=status.HTTP_202_ACCEPTED)
        response.command_wait = (command.pk, attrs["wait"])  # type: ignore[attr-defined]
        return response


def _command_if_final(command_id: int) -> Command | None:
    command = Command.objects.select_related("station").get(pk=command_id)
    return command if command.is_final else None


@csrf_exempt
async def station_command_send(request: HttpRequest, **station: Any) -> HttpResponse:
    """`station`: station_id (/api/) or identity (/api/v1/)."""
    response = await sync_to_async(_send_view)(request, **station)
    command_id, wait = getattr(response, "command_wait", (None, 0))
    if command_id and wait:
        deadline = time.monotonic() + wait
        check = sync_to_async(_command_if_final, thread_sensitive=False)
        command = await check(command_id)
        while command is None and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
            command = await check(command_id)
        if command is not None:
            # A split batch reads its parts from the database: not on the event loop.
            response.data = await sync_to_async(
                lambda: CommandOutputSerializer(command).data, thread_sensitive=False
            )()
            response.status_code = status.HTTP_200_OK
    return response


_send_view = StationCommandSendApi.as_view()
# drf-spectacular documents the wrapped DRF view.
station_command_send.cls = StationCommandSendApi  # type: ignore[attr-defined]
station_command_send.initkwargs = {}  # type: ignore[attr-defined]


class CommandListApi(StationsApi):
    required_permissions = ("commands.view_command",)

    class FilterSerializer(serializers.Serializer):
        class Meta:
            ref_name = "CommandFilter"

        station = serializers.IntegerField(required=False)
        status = serializers.ChoiceField(choices=Command.Status.choices, required=False)
        action = serializers.CharField(required=False)

    @extend_schema(
        parameters=[
            OpenApiParameter("station", int),
            OpenApiParameter("status", str),
            OpenApiParameter("action", str),
        ],
        responses=CommandOutputSerializer(many=True),
    )
    def get(self, request: Request) -> Response:
        filters = self.FilterSerializer(data=request.query_params)
        filters.is_valid(raise_exception=True)
        commands = Command.objects.select_related("station").filter(
            **{f"{k}_id" if k == "station" else k: v for k, v in filters.validated_data.items()}
        )
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(commands, request, view=self)
        return paginator.get_paginated_response(CommandOutputSerializer(page, many=True).data)


class CommandDetailApi(StationsApi):
    required_permissions = ("commands.view_command",)

    @extend_schema(responses=CommandOutputSerializer)
    def get(self, request: Request, command_id: int) -> Response:
        command = get_object_or_404(Command.objects.select_related("station"), pk=command_id)
        return Response(CommandOutputSerializer(command).data)


# --- Jobs ---------------------------------------------------------------------------------------


class JobTargetOutputSerializer(serializers.ModelSerializer):
    station_identity = serializers.CharField(source="station.identity", read_only=True)
    command_status = serializers.CharField(source="command.status", default="", read_only=True)
    upload = serializers.SerializerMethodField()

    class Meta:
        model = JobTarget
        fields = (
            "station",
            "station_identity",
            "status",
            "attempts",
            "progress",
            "detail",
            "request_id",
            "command",
            "command_status",
            "upload",
            "started_at",
            "finished_at",
        )

    def get_upload(self, target: JobTarget) -> dict[str, Any] | None:
        upload = next((u for u in target.uploads.all() if u.uploaded_at), None)
        if upload is None:
            return None
        return {
            "filename": upload.filename,
            "size": upload.size,
            "uploaded_at": upload.uploaded_at,
            "url": upload.file.url,
        }


class JobOutputSerializer(serializers.ModelSerializer):
    progress = serializers.SerializerMethodField()

    class Meta:
        model = Job
        fields: tuple[str, ...] = (
            "id",
            "kind",
            "name",
            "status",
            "parameters",
            "location",
            "station_model",
            "station_filter",
            "concurrency",
            "max_attempts",
            "target_timeout",
            "created_by",
            "created_at",
            "finished_at",
            "progress",
        )

    def get_progress(self, job: Job) -> dict[str, int]:
        counts = {choice: 0 for choice in JobTarget.Status.values}
        for target in job.targets.all():
            counts[target.status] += 1
        counts["total"] = sum(counts.values())
        return counts


class JobDetailOutputSerializer(JobOutputSerializer):
    targets = JobTargetOutputSerializer(many=True, read_only=True)

    class Meta(JobOutputSerializer.Meta):
        fields = (*JobOutputSerializer.Meta.fields, "targets")


def _jobs() -> Any:
    return Job.objects.prefetch_related("targets")


class JobCreateApi(StationsApi):
    required_permissions = ("commands.manage_job", "stations.send_command")

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "JobCreateInput"

        kind = serializers.ChoiceField(choices=Job.Kind.choices)
        name = serializers.CharField(required=False, allow_blank=True, default="")
        parameters = serializers.DictField(
            required=False,
            default=dict,
            help_text="firmware: location, retrieve_at, install_at?, signing_certificate?, "
            "signature?, retries?, retry_interval?; diagnostics: log_type?, "
            "start_time?, stop_time?",
        )
        location = serializers.PrimaryKeyRelatedField(
            queryset=Location.objects.all(), required=False, allow_null=True
        )
        station_model = serializers.CharField(required=False, allow_blank=True, default="")
        station_filter = serializers.CharField(required=False, allow_blank=True, default="")
        stations = serializers.ListField(
            child=serializers.IntegerField(), required=False, help_text="Station ids"
        )
        station_identities = serializers.ListField(
            child=serializers.CharField(max_length=48),
            required=False,
            help_text="Stations by OCPP identity (instead of ids)",
        )

        def validate_station_identities(self, identities: list[str]) -> list[int]:
            found = dict(
                ChargingStation.objects.filter(identity__in=identities).values_list(
                    "identity", "pk"
                )
            )
            unknown = sorted(set(identities) - set(found))
            if unknown:
                raise serializers.ValidationError(
                    f"unknown stations: {', '.join(unknown)}", code="not_found"
                )
            return [found[identity] for identity in identities]

        concurrency = serializers.IntegerField(min_value=1, default=10)
        max_attempts = serializers.IntegerField(min_value=1, max_value=20, default=3)
        target_timeout = serializers.IntegerField(min_value=10, default=3600)

    @extend_schema(request=InputSerializer, responses={201: JobDetailOutputSerializer})
    def post(self, request: Request) -> Response:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        attrs = data.validated_data
        parameters = dict(attrs["parameters"])
        if attrs["kind"] == Job.Kind.DIAGNOSTICS and not parameters.get("upload_base_url"):
            # Stations upload to this back office at the address the caller used.
            parameters["upload_base_url"] = request.build_absolute_uri("/").rstrip("/")
        try:
            job = jobs.job_create(
                kind=attrs["kind"],
                name=attrs["name"],
                parameters=parameters,
                location=attrs.get("location"),
                station_model=attrs["station_model"],
                station_filter=attrs["station_filter"],
                station_ids=attrs.get("station_identities") or attrs.get("stations"),
                concurrency=attrs["concurrency"],
                max_attempts=attrs["max_attempts"],
                target_timeout=attrs["target_timeout"],
                created_by=request.user,
            )
        except CommandError as error:
            raise _application_error(error) from None
        job = _jobs().get(pk=job.pk)
        return Response(JobDetailOutputSerializer(job).data, status=status.HTTP_201_CREATED)


class JobListApi(StationsApi):
    required_permissions = ("commands.view_job",)

    @extend_schema(responses=JobOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(_jobs(), request, view=self)
        return paginator.get_paginated_response(JobOutputSerializer(page, many=True).data)


class JobDetailApi(StationsApi):
    required_permissions = ("commands.view_job",)

    @extend_schema(responses=JobDetailOutputSerializer)
    def get(self, request: Request, job_id: int) -> Response:
        job = get_object_or_404(
            _jobs().prefetch_related("targets__station", "targets__command", "targets__uploads"),
            pk=job_id,
        )
        return Response(JobDetailOutputSerializer(job).data)


class JobCancelApi(StationsApi):
    required_permissions = ("commands.manage_job",)

    @extend_schema(request=None, responses=JobOutputSerializer)
    def post(self, request: Request, job_id: int) -> Response:
        job = get_object_or_404(Job, pk=job_id)
        jobs.job_cancel(job=job)
        return Response(JobOutputSerializer(_jobs().get(pk=job.pk)).data)


class StationLocalListSyncApi(StationsApi):
    """Send the station its local authorization list (differential, or full on request)."""

    required_permissions = ("stations.send_command",)

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "LocalListSyncInput"

        full = serializers.BooleanField(default=False)

    @extend_schema(request=InputSerializer, responses={200: CommandOutputSerializer, 204: None})
    def post(
        self, request: Request, station_id: int | None = None, identity: str | None = None
    ) -> Response:
        station = _station(station_id, identity)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            command_id = local_lists.local_list_sync(
                station_id=station.pk, full=data.validated_data["full"]
            )
        except CommandError as error:
            raise _application_error(error) from None
        if command_id is None:
            return Response(status=status.HTTP_204_NO_CONTENT)
        return Response(CommandOutputSerializer(Command.objects.get(pk=command_id)).data)


# --- /api/v1/: lists with filters, ordering and cursor pages --------------------------------------


class CommandFilter(django_filters.FilterSet):
    station = django_filters.CharFilter(field_name="station__identity", help_text="OCPP identity")
    created_after = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="gte")
    created_before = django_filters.IsoDateTimeFilter(field_name="created_at", lookup_expr="lt")

    class Meta:
        model = Command
        fields = ("station", "status", "action", "verb", "origin", "protocol")


class CommandListV1Api(generics.ListAPIView):
    """Commands to stations, newest first by default."""

    permission_classes = [HasModelPermissions]
    required_permissions = ("commands.view_command",)
    queryset = Command.objects.select_related("station")
    serializer_class = CommandOutputSerializer
    pagination_class = StableCursorPagination
    filter_backends = [DjangoFilterBackend, filters.OrderingFilter]
    filterset_class = CommandFilter
    ordering_fields = ("id", "created_at")
    ordering = "-id"


class JobFilter(django_filters.FilterSet):
    station = django_filters.CharFilter(
        field_name="targets__station__identity",
        distinct=True,
        help_text="OCPP identity of a target",
    )

    class Meta:
        model = Job
        fields = ("station", "kind", "status")


class JobListV1Api(generics.ListAPIView):
    """Firmware and diagnostics jobs, newest first by default; POST starts one (Operators)."""

    permission_classes = [HasModelPermissions]
    required_permissions = {
        "GET": ("commands.view_job",),
        "POST": JobCreateApi.required_permissions,
    }
    InputSerializer = JobCreateApi.InputSerializer
    post = JobCreateApi.post
    queryset = Job.objects.prefetch_related("targets")
    serializer_class = JobOutputSerializer
    pagination_class = StableCursorPagination
    filter_backends = [DjangoFilterBackend, filters.OrderingFilter]
    filterset_class = JobFilter
    ordering_fields = ("id", "created_at")
    ordering = "-id"


# --- Station security: password rotation, profiles, certificates, roots ----------------------


class SecurityChangeOutputSerializer(serializers.ModelSerializer):
    station_identity = serializers.CharField(source="station.identity", read_only=True)

    class Meta:
        model = SecurityChange
        # Never the password (nor its hash): a rotation shows only that it happened.
        fields = (
            "id",
            "station_identity",
            "kind",
            "profile",
            "status",
            "command",
            "prerequisites",
            "created_at",
            "completed_at",
        )
        read_only_fields = fields


class StationPasswordRotationApi(StationsApi):
    """Send the station a new random password over OCPP (1.6 AuthorizationKey, 2.0.1
    SecurityCtrlr.BasicAuthPassword); it is checked at the handshake once the station
    accepted it, the old one until then. The password is never shown."""

    required_permissions = ("stations.send_command",)

    @extend_schema(request=None, responses={202: SecurityChangeOutputSerializer})
    def post(self, request: Request, identity: str) -> Response:
        station = _station(identity=identity)
        try:
            change = security.password_rotate(
                station=station, requested_by=request.user, origin=Command.Origin.API
            )
        except CommandError as error:
            raise _application_error(error) from None
        return Response(
            SecurityChangeOutputSerializer(change).data, status=status.HTTP_202_ACCEPTED
        )


class StationSecurityProfileApi(StationsApi):
    """Raise the station's security profile (prerequisites first, then the switch); the
    stored profile rises when the station accepted. A downgrade is refused."""

    required_permissions = ("stations.send_command",)

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "SecurityProfileInput"

        profile = serializers.ChoiceField(choices=[1, 2, 3])

    @extend_schema(request=InputSerializer, responses={202: SecurityChangeOutputSerializer})
    def post(self, request: Request, identity: str) -> Response:
        station = _station(identity=identity)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        try:
            change = security.security_profile_upgrade(
                station=station,
                profile=int(data.validated_data["profile"]),
                requested_by=request.user,
                origin=Command.Origin.API,
            )
        except CommandError as error:
            raise _application_error(error) from None
        return Response(
            SecurityChangeOutputSerializer(change).data, status=status.HTTP_202_ACCEPTED
        )


class StationCertificateOutputSerializer(serializers.ModelSerializer):
    station_identity = serializers.CharField(source="station.identity", read_only=True)

    class Meta:
        model = StationCertificate
        fields = (
            "serial",
            "station_identity",
            "certificate_type",
            "subject",
            "not_before",
            "not_after",
            "status",
            "revoked_at",
            "revoked_by",
            "pem",
        )
        read_only_fields = fields


class StationCertificateListApi(StationsApi):
    """The certificates our CA signed for a station, newest end first."""

    required_permissions = ("stations.view_stationcertificate",)

    @extend_schema(responses=StationCertificateOutputSerializer(many=True))
    def get(self, request: Request, identity: str) -> Response:
        station = _station(identity=identity)
        rows = StationCertificate.objects.filter(station=station).select_related("station")
        return Response(StationCertificateOutputSerializer(rows, many=True).data)


class CertificateRevokeApi(StationsApi):
    """Revoke a certificate of ours: refused at the handshake, listed in the CRL."""

    required_permissions = ("stations.change_stationcertificate",)

    @extend_schema(request=None, responses=StationCertificateOutputSerializer)
    def post(self, request: Request, serial: str) -> Response:
        certificate = get_object_or_404(StationCertificate, serial=serial.lower())
        if not security.certificate_revoke(certificate=certificate, by=request.user.get_username()):
            raise ApplicationError("the certificate is revoked already", code="revoked")
        certificate.refresh_from_db()
        return Response(StationCertificateOutputSerializer(certificate).data)


class TrustedRootOutputSerializer(serializers.ModelSerializer):
    class Meta:
        model = TrustedRoot
        fields = ("id", "name", "kind", "serial", "subject", "not_after", "pem")
        read_only_fields = fields


class TrustedRootListApi(StationsApi):
    """The roots stations may be given: our CSMS root and the roots operators stored."""

    required_permissions = ("stations.view_trustedroot",)

    @extend_schema(responses=TrustedRootOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        security.csms_root()
        return Response(TrustedRootOutputSerializer(TrustedRoot.objects.all(), many=True).data)


class StationRootApi(StationsApi):
    """InstallCertificate or DeleteCertificate of a stored root on a station, built from the
    stored certificate (the delete names it by its hash data)."""

    required_permissions = ("stations.send_command",)

    class InputSerializer(serializers.Serializer):
        class Meta:
            ref_name = "StationRootInput"

        action = serializers.ChoiceField(choices=["install", "delete"])

    @extend_schema(request=InputSerializer, responses={202: CommandOutputSerializer})
    def post(self, request: Request, identity: str, root_id: int) -> Response:
        station = _station(identity=identity)
        root = get_object_or_404(TrustedRoot, pk=root_id)
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        send = (
            security.root_install
            if data.validated_data["action"] == "install"
            else (security.root_delete)
        )
        try:
            command = send(station=station, root=root, requested_by=request.user, origin="api")
        except CommandError as error:
            raise _application_error(error) from None
        return Response(CommandOutputSerializer(command).data, status=status.HTTP_202_ACCEPTED)

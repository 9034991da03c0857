"""Incidents in the REST API v1: list with filters and cursor pages, detail with the timeline,
and the acknowledge action (the same service as the panel's)."""

from __future__ import annotations

import csv
from datetime import UTC, date, datetime, time, timedelta
from typing import Any

import django_filters
from django.db.models import QuerySet
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cpo.lib.api import ApplicationError, HasModelPermissions, V1DetailApi, V1ListApi
from cpo.lib.spreadsheets import csv_rows
from stations.monitoring import services, uptime
from stations.monitoring.models import Incident, IncidentEntry


def incident_queryset() -> QuerySet[Incident]:
    return Incident.objects.select_related(
        "station", "evse", "connector", "session", "acknowledged_by"
    )


class IncidentEntrySerializer(serializers.ModelSerializer):
    user = serializers.CharField(source="user.username", read_only=True, allow_null=True)

    class Meta:
        model = IncidentEntry
        fields: tuple[str, ...] = ("at", "kind", "message", "step", "command", "user")


class IncidentOutputSerializer(serializers.ModelSerializer):
    station = serializers.CharField(source="station.identity", read_only=True, allow_null=True)
    evse_id = serializers.SerializerMethodField(help_text="The OCPP EVSE number")
    connector_id = serializers.SerializerMethodField(help_text="The OCPP connector number")
    session = serializers.CharField(source="session.uid", read_only=True, allow_null=True)
    acknowledged_by = serializers.CharField(
        source="acknowledged_by.username", read_only=True, allow_null=True
    )

    class Meta:
        model = Incident
        fields: tuple[str, ...] = (
            "id",
            "type",
            "severity",
            "state",
            "title",
            "station",
            "evse_id",
            "connector_id",
            "session",
            "details",
            "first_seen_at",
            "last_seen_at",
            "acknowledged_at",
            "acknowledged_by",
            "resolved_at",
            "playbook_state",
            "playbook_step",
        )

    def get_evse_id(self, incident: Incident) -> int | None:
        return incident.evse.evse_id if incident.evse is not None else None

    def get_connector_id(self, incident: Incident) -> int | None:
        return incident.connector.connector_id if incident.connector is not None else None


class IncidentDetailSerializer(IncidentOutputSerializer):
    timeline = IncidentEntrySerializer(source="entries", many=True, read_only=True)

    class Meta(IncidentOutputSerializer.Meta):
        fields = (*IncidentOutputSerializer.Meta.fields, "timeline")


class IncidentFilter(django_filters.FilterSet):
    station = django_filters.CharFilter(field_name="station__identity")
    site = django_filters.NumberFilter(field_name="station__location_id")
    since = django_filters.IsoDateTimeFilter(field_name="last_seen_at", lookup_expr="gte")

    class Meta:
        model = Incident
        fields = ("state", "type", "severity", "station", "site", "since")


class IncidentListV1Api(V1ListApi):
    required_permissions = ("monitoring.view_incident",)
    queryset = incident_queryset()
    serializer_class = IncidentOutputSerializer
    filterset_class = IncidentFilter
    ordering_fields = ("id", "first_seen_at", "last_seen_at", "severity")
    ordering = "-id"


class IncidentDetailV1Api(V1DetailApi):
    required_permissions = ("monitoring.view_incident",)
    queryset = incident_queryset().prefetch_related("entries__user")
    serializer_class = IncidentDetailSerializer
    lookup_url_kwarg = "incident_id"


class IncidentAcknowledgeSerializer(serializers.Serializer):
    note = serializers.CharField(max_length=200, required=False, allow_blank=True)


class IncidentAcknowledgeApi(APIView):
    permission_classes = [HasModelPermissions]
    required_permissions = ("monitoring.view_incident", "monitoring.acknowledge_incident")

    @extend_schema(request=IncidentAcknowledgeSerializer, responses=IncidentDetailSerializer)
    def post(self, request: Request, incident_id: int) -> Response:
        get_object_or_404(Incident, pk=incident_id)
        serializer = IncidentAcknowledgeSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        try:
            services.incident_acknowledge(
                incident_id=incident_id,
                user=request.user,
                note=serializer.validated_data.get("note", ""),
            )
        except services.IncidentError as exc:
            raise ApplicationError(str(exc), status=409, code="not_open") from exc
        incident: Any = incident_queryset().prefetch_related("entries__user").get(pk=incident_id)
        return Response(IncidentDetailSerializer(incident).data)


# --- uptime figures -----------------------------------------------------------------------------


class UptimeQuerySerializer(serializers.Serializer):
    figure = serializers.ChoiceField(choices=["sla", "nevi", "uk"])
    start = serializers.DateField(required=False, help_text="SLA: first day (UTC)")
    end = serializers.DateField(required=False, help_text="SLA: last day, inclusive (UTC)")
    target = serializers.FloatField(required=False, min_value=0, max_value=100)
    month = serializers.RegexField(r"^\d{4}-\d{2}$", required=False, help_text="NEVI: YYYY-MM")
    year = serializers.IntegerField(required=False, min_value=2000, max_value=2100)
    site = serializers.IntegerField(required=False, help_text="A site's id; all sites if absent")
    output = serializers.ChoiceField(choices=["json", "csv"], default="json")

    def validate(self, attrs: dict[str, Any]) -> dict[str, Any]:
        figure = attrs["figure"]
        if figure == "sla":
            if "start" not in attrs or "end" not in attrs:
                raise serializers.ValidationError("the SLA needs start and end")
            if attrs["end"] < attrs["start"]:
                raise serializers.ValidationError("the end is before the start")
        if figure == "nevi":
            if "month" not in attrs:
                raise serializers.ValidationError("NEVI needs a month (YYYY-MM)")
            try:
                attrs["month"] = date.fromisoformat(attrs["month"] + "-01")
            except ValueError as exc:
                raise serializers.ValidationError("not a month") from exc
        if figure == "uk" and "year" not in attrs:
            raise serializers.ValidationError("the UK figure needs a calendar year")
        return attrs


class UptimeReportV1Api(APIView):
    """Uptime figures (UTC): the contract SLA over days, NEVI for a month with the rolling
    twelve months, the UK regulations' reliability of rapid charge points for a year. JSON,
    or `output=csv` for the per-EVSE rows as CSV."""

    permission_classes = [HasModelPermissions]
    required_permissions = ("stations.view_chargingstation",)

    @extend_schema(parameters=[UptimeQuerySerializer], responses={200: dict})
    def get(self, request: Request) -> Any:
        query = UptimeQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        site = q.get("site")
        if q["figure"] == "sla":
            start = datetime.combine(q["start"], time.min, UTC)
            end = datetime.combine(q["end"] + timedelta(days=1), time.min, UTC)
            report = uptime.sla_report(
                start=start,
                end=end,
                target=q.get("target", uptime.DEFAULT_SLA_TARGET),
                location_id=site,
            )
            columns, name = uptime.SLA_COLUMNS, f"uptime-sla-{q['start']}-{q['end']}"
        elif q["figure"] == "nevi":
            report = uptime.nevi_report(month=q["month"], tz=UTC, location_id=site)
            columns, name = uptime.NEVI_COLUMNS, f"uptime-nevi-{q['month']:%Y-%m}"
        else:
            report = uptime.uk_report(year=q["year"], tz=UTC, location_id=site)
            columns, name = uptime.UK_COLUMNS, f"uptime-uk-{q['year']}"
        if q["output"] == "csv":
            response = HttpResponse(content_type="text/csv; charset=utf-8")
            response["Content-Disposition"] = f'attachment; filename="{name}.csv"'
            writer = csv.writer(response)
            writer.writerow(columns)
            writer.writerows(
                csv_rows([row.get(column, "") for column in columns] for row in report["rows"])
            )
            return response
        return Response(report)

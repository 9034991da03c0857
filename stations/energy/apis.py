"""Energy management in the REST API v1: a site's tree with loads and limits, a session's
"why am I limited", and the external limit a building meter or the grid operator pushes."""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cpo.lib.api import ApplicationError, HasModelPermissions
from sessions.models import ChargingSession
from stations.energy import selectors, services
from stations.energy.models import EnergySite, GridNode


class SessionEnergySerializer(serializers.Serializer):
    current_a = serializers.DecimalField(max_digits=6, decimal_places=2)
    phases = serializers.IntegerField()
    paused = serializers.BooleanField()
    rule = serializers.CharField(help_text="vehicle_max, phase_limit, power_limit or fixed")
    binding_node = serializers.CharField(allow_null=True)
    binding_phase = serializers.CharField(allow_null=True)
    explanation = serializers.CharField()
    capped_at_a = serializers.DecimalField(max_digits=6, decimal_places=2, allow_null=True)
    updated_at = serializers.DateTimeField()


class SessionEnergyApi(APIView):
    """Why the session is limited: its current and the node, phase and rule that bind it."""

    permission_classes = [HasModelPermissions]
    required_permissions = ("charging.view_chargingsession", "energy.view_sessionallocation")

    @extend_schema(responses=SessionEnergySerializer)
    def get(self, request: Request, session_id: int) -> Response:
        get_object_or_404(ChargingSession, pk=session_id)
        data = selectors.session_energy(session_id=session_id)
        if data is None:
            raise ApplicationError(
                "this session is not energy-managed", status=404, code="not_managed"
            )
        return Response(SessionEnergySerializer(data).data)


class PhaseSerializer(serializers.Serializer):
    phase = serializers.CharField()
    load = serializers.FloatField(help_text="Counted load, A")
    limit = serializers.FloatField(allow_null=True, help_text="After the safety margin, A")
    used = serializers.BooleanField()


class NodeSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    kind = serializers.CharField()
    depth = serializers.IntegerField()
    limit_kw = serializers.FloatField(allow_null=True)
    power_kw = serializers.FloatField()
    phases = PhaseSerializer(many=True)
    connectors = serializers.ListField(child=serializers.DictField())


class SiteEnergySerializer(serializers.Serializer):
    location_id = serializers.IntegerField()
    strategy = serializers.CharField()
    nodes = NodeSerializer(many=True, help_text="The tree, flattened, parents first")


class SiteEnergyApi(APIView):
    permission_classes = [HasModelPermissions]
    required_permissions = ("energy.view_energysite",)

    @extend_schema(responses=SiteEnergySerializer)
    def get(self, request: Request, location_id: int) -> Response:
        site = get_object_or_404(EnergySite, location_id=location_id)
        data: dict[str, Any] = selectors.site_energy(site=site)
        return Response(
            SiteEnergySerializer(
                {"location_id": location_id, "strategy": site.strategy, "nodes": data["nodes"]}
            ).data
        )


class ExternalLimitInputSerializer(serializers.Serializer):
    limit_a = serializers.DecimalField(
        max_digits=8, decimal_places=2, required=False, allow_null=True, min_value=0
    )
    limit_kw = serializers.DecimalField(
        max_digits=10, decimal_places=2, required=False, allow_null=True, min_value=0
    )
    fresh_for_s = serializers.IntegerField(required=False, min_value=1, max_value=86400)
    name = serializers.CharField(required=False, allow_blank=True, max_length=100)


class ExternalLimitOutputSerializer(serializers.Serializer):
    id = serializers.IntegerField()
    node = serializers.IntegerField(source="node_id")
    limit_a = serializers.DecimalField(max_digits=8, decimal_places=2, allow_null=True)
    limit_kw = serializers.DecimalField(max_digits=10, decimal_places=2, allow_null=True)
    received_at = serializers.DateTimeField()
    fresh_for_s = serializers.IntegerField()


class NodeLimitPushApi(APIView):
    """A building meter or the grid operator caps a node; not renewed within `fresh_for_s`,
    the limit falls to its fail-safe value."""

    permission_classes = [HasModelPermissions]
    required_permissions = ("energy.view_gridnode", "energy.add_externallimit")

    @extend_schema(request=ExternalLimitInputSerializer, responses=ExternalLimitOutputSerializer)
    def post(self, request: Request, node_id: int) -> Response:
        node = get_object_or_404(GridNode, pk=node_id)
        serializer = ExternalLimitInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        data = serializer.validated_data
        try:
            limit = services.external_limit_push(
                node=node,
                limit_a=data.get("limit_a"),
                limit_kw=data.get("limit_kw"),
                fresh_for_s=data.get("fresh_for_s"),
                name=data.get("name", ""),
            )
        except services.EnergyError as error:
            raise ApplicationError(error.message, status=400, code="invalid") from error
        return Response(ExternalLimitOutputSerializer(limit).data)

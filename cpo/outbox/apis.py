"""REST API of integrator webhooks: subscriptions (endpoints) and their deliveries.

One view per use case; writes go through `cpo.outbox.webhooks`. A secret is in the answer of
create and rotate-secret only, never in a list or a detail. Operators manage endpoints; the
other roles read them (their model permissions, see README "Roles").
"""

from __future__ import annotations

from typing import Any

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.pagination import LimitOffsetPagination
from rest_framework.permissions import BasePermission
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from cpo.outbox import selectors, webhooks
from cpo.outbox.models import DeliveryAttempt, WebhookEndpoint


class HasModelPermissions(BasePermission):
    """The user holds every permission in the view's `required_permissions`."""

    def has_permission(self, request: Request, view: APIView) -> bool:
        user = request.user
        required = getattr(view, "required_permissions", None)
        if not user or not user.is_authenticated or required is None:
            return False
        return user.has_perms(required)


class WebhookApi(APIView):
    permission_classes = [HasModelPermissions]
    required_permissions: tuple[str, ...] = ()


class EndpointOutputSerializer(serializers.ModelSerializer):
    owner: serializers.SlugRelatedField[Any] = serializers.SlugRelatedField(
        slug_field="username", read_only=True
    )

    class Meta:
        model = WebhookEndpoint
        fields: tuple[str, ...] = (
            "id",
            "name",
            "url",
            "events",
            "is_active",
            "owner",
            "secret_rotated_at",
            "created_at",
            "updated_at",
        )


class EndpointWithSecretSerializer(EndpointOutputSerializer):
    secret = serializers.CharField(help_text="The signing secret, shown this once.")

    class Meta(EndpointOutputSerializer.Meta):
        fields = (*EndpointOutputSerializer.Meta.fields, "secret")


class EndpointInputSerializer(serializers.Serializer):
    name = serializers.CharField(max_length=100)
    url = serializers.URLField(max_length=500)
    events = serializers.ListField(
        child=serializers.ChoiceField(choices=sorted(webhooks.EVENT_TYPES)), allow_empty=False
    )
    is_active = serializers.BooleanField(default=True)


class DeliveryOutputSerializer(serializers.ModelSerializer):
    message = serializers.IntegerField(source="message_id")
    event_id = serializers.CharField(source="message.idempotency_key")
    event_type = serializers.CharField(source="message.topic")
    message_status = serializers.CharField(source="message.status")

    class Meta:
        model = DeliveryAttempt
        fields = (
            "id",
            "message",
            "event_id",
            "event_type",
            "message_status",
            "number",
            "started_at",
            "duration_ms",
            "status_code",
            "succeeded",
            "error",
            "response_excerpt",
        )


def _with_secret(endpoint: WebhookEndpoint, secret: str) -> dict[str, Any]:
    endpoint.secret = secret  # type: ignore[attr-defined]  # read by the serializer only
    return dict(EndpointWithSecretSerializer(endpoint).data)


class WebhookListApi(WebhookApi):
    required_permissions = ("outbox.view_webhookendpoint",)

    @extend_schema(responses=EndpointOutputSerializer(many=True))
    def get(self, request: Request) -> Response:
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(
            WebhookEndpoint.objects.select_related("owner").order_by("id"), request, view=self
        )
        return paginator.get_paginated_response(EndpointOutputSerializer(page, many=True).data)


class WebhookCreateApi(WebhookApi):
    required_permissions = ("outbox.add_webhookendpoint",)

    @extend_schema(request=EndpointInputSerializer, responses={201: EndpointWithSecretSerializer})
    def post(self, request: Request) -> Response:
        serializer = EndpointInputSerializer(data=request.data)
        serializer.is_valid(raise_exception=True)
        endpoint, secret = webhooks.webhook_endpoint_create(
            owner=request.user, **serializer.validated_data
        )
        return Response(_with_secret(endpoint, secret), status=status.HTTP_201_CREATED)


class WebhookDetailApi(WebhookApi):
    required_permissions = ("outbox.view_webhookendpoint",)

    @extend_schema(responses=EndpointOutputSerializer)
    def get(self, request: Request, endpoint_id: int) -> Response:
        endpoint = get_object_or_404(WebhookEndpoint, pk=endpoint_id)
        return Response(EndpointOutputSerializer(endpoint).data)


class WebhookUpdateApi(WebhookApi):
    required_permissions = ("outbox.change_webhookendpoint",)

    @extend_schema(request=EndpointInputSerializer, responses=EndpointOutputSerializer)
    def post(self, request: Request, endpoint_id: int) -> Response:
        endpoint = get_object_or_404(WebhookEndpoint, pk=endpoint_id)
        serializer = EndpointInputSerializer(data=request.data, partial=True)
        serializer.is_valid(raise_exception=True)
        data = {k: v for k, v in serializer.validated_data.items() if k in request.data}
        webhooks.webhook_endpoint_update(endpoint=endpoint, data=data)
        return Response(EndpointOutputSerializer(endpoint).data)


class WebhookDeleteApi(WebhookApi):
    required_permissions = ("outbox.delete_webhookendpoint",)

    @extend_schema(request=None, responses={204: None})
    def post(self, request: Request, endpoint_id: int) -> Response:
        endpoint = get_object_or_404(WebhookEndpoint, pk=endpoint_id)
        webhooks.webhook_endpoint_delete(endpoint=endpoint)
        return Response(status=status.HTTP_204_NO_CONTENT)


class WebhookRotateSecretApi(WebhookApi):
    required_permissions = ("outbox.change_webhookendpoint",)

    @extend_schema(request=None, responses=EndpointWithSecretSerializer)
    def post(self, request: Request, endpoint_id: int) -> Response:
        endpoint = get_object_or_404(WebhookEndpoint, pk=endpoint_id)
        secret = webhooks.webhook_endpoint_rotate_secret(endpoint=endpoint)
        return Response(_with_secret(endpoint, secret))


class WebhookTestApi(WebhookApi):
    required_permissions = ("outbox.change_webhookendpoint",)

    class OutputSerializer(serializers.Serializer):
        message = serializers.IntegerField()
        event_id = serializers.CharField()

    @extend_schema(request=None, responses={202: OutputSerializer})
    def post(self, request: Request, endpoint_id: int) -> Response:
        endpoint = get_object_or_404(WebhookEndpoint, pk=endpoint_id)
        message = webhooks.webhook_test_send(endpoint=endpoint)
        return Response(
            {"message": message.pk, "event_id": message.idempotency_key},
            status=status.HTTP_202_ACCEPTED,
        )


class WebhookDeliveriesApi(WebhookApi):
    required_permissions = ("outbox.view_webhookendpoint", "outbox.view_deliveryattempt")

    @extend_schema(responses=DeliveryOutputSerializer(many=True))
    def get(self, request: Request, endpoint_id: int) -> Response:
        get_object_or_404(WebhookEndpoint, pk=endpoint_id)
        paginator = LimitOffsetPagination()
        page = paginator.paginate_queryset(
            selectors.endpoint_deliveries(endpoint_id=endpoint_id), request, view=self
        )
        return paginator.get_paginated_response(DeliveryOutputSerializer(page, many=True).data)

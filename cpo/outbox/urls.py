"""REST routes of integrator webhooks, included at /api/v1/webhooks/."""

from __future__ import annotations

from django.urls import path

from cpo.outbox import apis

urlpatterns = [
    path("", apis.WebhookListApi.as_view(), name="webhook-list"),
    path("create/", apis.WebhookCreateApi.as_view(), name="webhook-create"),
    path("<int:endpoint_id>/", apis.WebhookDetailApi.as_view(), name="webhook-detail"),
    path("<int:endpoint_id>/update/", apis.WebhookUpdateApi.as_view(), name="webhook-update"),
    path("<int:endpoint_id>/delete/", apis.WebhookDeleteApi.as_view(), name="webhook-delete"),
    path(
        "<int:endpoint_id>/rotate-secret/",
        apis.WebhookRotateSecretApi.as_view(),
        name="webhook-rotate-secret",
    ),
    path("<int:endpoint_id>/test/", apis.WebhookTestApi.as_view(), name="webhook-test"),
    path(
        "<int:endpoint_id>/deliveries/",
        apis.WebhookDeliveriesApi.as_view(),
        name="webhook-deliveries",
    ),
]

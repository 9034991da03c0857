"""The webhooks API: subscriptions and their deliveries, per role."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import Group
from django.db import transaction
from rest_framework.test import APIClient

from cpo.models import User
from cpo.outbox import services, webhooks
from cpo.outbox.models import OutboxMessage, WebhookEndpoint
from tests.apiv1 import errors
from tests.cpo.outbox.conftest import Receiver

pytestmark = pytest.mark.django_db

BASE = "/api/v1/webhooks/"


def client_as(role: str) -> APIClient:
    user = User.objects.create_user(username=f"api-{role.lower()}", is_staff=True)
    user.groups.add(Group.objects.get(name=role))
    client = APIClient()
    client.force_authenticate(user)
    return client


@pytest.fixture
def operator(roles) -> APIClient:  # noqa: ARG001
    return client_as("Operators")


def test_create_returns_the_secret_once_and_lists_never(operator, receiver: Receiver) -> None:
    created = operator.post(
        f"{BASE}create/",
        {"name": "crm", "url": receiver.url, "events": ["session.started", "cdr.created"]},
        format="json",
    )
    assert created.status_code == 201, created.json()
    body = created.json()
    assert body["secret"].startswith("whsec_")
    assert body["events"] == ["cdr.created", "session.started"]
    assert body["owner"] == "api-operators"
    listed = operator.get(BASE).json()
    assert listed["count"] == 1
    assert "secret" not in listed["results"][0]
    detail = operator.get(f"{BASE}{body['id']}/").json()
    assert "secret" not in detail
    assert body["secret"] not in str(listed) + str(detail)


def test_bad_input_is_answered_with_the_field(operator) -> None:
    answer = operator.post(
        f"{BASE}create/", {"name": "x", "url": "not a url", "events": ["nope"]}, format="json"
    )
    assert answer.status_code == 400
    # The API's one error shape, with the field of each refusal.
    assert {field for field, _code in errors(answer)} == {"url", "events.0"}
    assert not WebhookEndpoint.objects.exists()
    empty = operator.post(
        f"{BASE}create/", {"name": "x", "url": "https://example.com/h", "events": []}, format="json"
    )
    assert empty.status_code == 400
    assert [field for field, _code in errors(empty)] == ["events"]


def test_update_rotate_test_event_deliveries_and_delete(operator, receiver: Receiver) -> None:
    hook, secret = webhooks.webhook_endpoint_create(
        name="crm", url=receiver.url, events=["cdr.created"]
    )
    updated = operator.post(
        f"{BASE}{hook.pk}/update/",
        {"events": ["invoice.issued"], "is_active": False},
        format="json",
    )
    assert updated.status_code == 200, updated.json()
    assert updated.json()["events"] == ["invoice.issued"]
    assert updated.json()["name"] == "crm"
    assert updated.json()["is_active"] is False
    operator.post(f"{BASE}{hook.pk}/update/", {"is_active": True}, format="json")

    rotated = operator.post(f"{BASE}{hook.pk}/rotate-secret/").json()
    assert rotated["secret"].startswith("whsec_")
    assert rotated["secret"] != secret
    hook.refresh_from_db()
    assert webhooks.endpoint_secret(hook) == rotated["secret"]

    test = operator.post(f"{BASE}{hook.pk}/test/")
    assert test.status_code == 202
    services.outbox_deliver_destination(kind="webhook", ref=str(hook.pk))
    deliveries = operator.get(f"{BASE}{hook.pk}/deliveries/").json()
    assert deliveries["count"] == 1
    (delivery,) = deliveries["results"]
    assert delivery["event_type"] == "webhook.test"
    assert delivery["event_id"] == test.json()["event_id"]
    assert (delivery["status_code"], delivery["succeeded"]) == (200, True)
    assert receiver.requests[0].event["id"] == test.json()["event_id"]

    assert operator.post(f"{BASE}{hook.pk}/delete/").status_code == 204
    assert not WebhookEndpoint.objects.exists()
    assert OutboxMessage.objects.count() == 1  # the history stays


def test_support_reads_but_cannot_subscribe(roles, receiver: Receiver) -> None:  # noqa: ARG001
    support = client_as("Support")
    hook, _ = webhooks.webhook_endpoint_create(name="crm", url=receiver.url, events=["cdr.created"])
    assert support.get(BASE).status_code == 200
    assert support.get(f"{BASE}{hook.pk}/deliveries/").status_code == 200
    refused = support.post(
        f"{BASE}create/",
        {"name": "mine", "url": receiver.url, "events": ["cdr.created"]},
        format="json",
    )
    assert refused.status_code == 403
    assert support.post(f"{BASE}{hook.pk}/rotate-secret/").status_code == 403
    assert WebhookEndpoint.objects.count() == 1


def test_deliveries_of_one_endpoint_only(operator, receiver: Receiver) -> None:
    mine, _ = webhooks.webhook_endpoint_create(name="a", url=receiver.url, events=["cdr.created"])
    other, _ = webhooks.webhook_endpoint_create(name="b", url=receiver.url, events=["cdr.created"])
    with transaction.atomic():
        webhooks.event_publish(type="cdr.created", payload={})
    for hook in (mine, other):
        services.outbox_deliver_destination(kind="webhook", ref=str(hook.pk))
    assert operator.get(f"{BASE}{mine.pk}/deliveries/").json()["count"] == 1

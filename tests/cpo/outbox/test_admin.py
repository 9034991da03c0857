"""Webhook endpoints in the panel: the secret is shown once, rotated, a test event sent."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import Group
from django.test import Client

from cpo.models import User
from cpo.outbox import services, webhooks
from cpo.outbox.models import OutboxMessage, WebhookEndpoint
from cpo.outbox.signing import signature_verify
from tests.cpo.outbox.conftest import Receiver

pytestmark = pytest.mark.django_db

LIST = "/admin/outbox/webhookendpoint/"


@pytest.fixture
def operator(roles) -> Client:  # noqa: ARG001
    user = User.objects.create_user(username="hooks-operator", is_staff=True)
    user.groups.add(Group.objects.get(name="Operators"))
    client = Client()
    client.force_login(user)
    return client


def shown_secrets(html: str) -> list[str]:
    return re.findall(r'<code class="webhook-secret">([^<]+)</code>', html)


def test_adding_an_endpoint_shows_its_secret_once(operator, receiver: Receiver) -> None:
    page = operator.post(
        f"{LIST}add/",
        {
            "name": "crm",
            "url": receiver.url,
            "events": ["session.started", "session.ended"],
            "is_active": "on",
        },
    )
    assert page.status_code == 200
    (secret,) = shown_secrets(page.content.decode())
    assert "no-store" in page["Cache-Control"]
    hook = WebhookEndpoint.objects.get()
    assert hook.owner.username == "hooks-operator"
    assert webhooks.endpoint_secret(hook) == secret
    change = operator.get(f"{LIST}{hook.pk}/change/").content.decode()
    assert secret not in change
    assert secret not in operator.get(LIST).content.decode()


def test_rotate_shows_the_new_secret_and_test_event_is_signed_with_it(
    operator, receiver: Receiver
) -> None:
    hook, old = webhooks.webhook_endpoint_create(
        name="crm", url=receiver.url, events=["cdr.created"]
    )
    page = operator.post(LIST, {"action": "rotate_secret", "_selected_action": [hook.pk]})
    (new,) = shown_secrets(page.content.decode())
    assert new != old
    operator.post(LIST, {"action": "send_test_event", "_selected_action": [hook.pk]})
    services.outbox_deliver_destination(kind="webhook", ref=str(hook.pk))
    (got,) = receiver.requests
    assert got.event["type"] == "webhook.test"
    assert signature_verify(new, got.headers["x-cpo-signature"], got.body)
    log = operator.get(f"{LIST}{hook.pk}/change/").content.decode()
    assert 'id="delivery-log"' in log
    assert "webhook.test" in log


def test_support_may_not_redeliver(roles, receiver: Receiver) -> None:  # noqa: ARG001
    user = User.objects.create_user(username="hooks-support", is_staff=True)
    user.groups.add(Group.objects.get(name="Support"))
    client = Client()
    client.force_login(user)
    hook, _ = webhooks.webhook_endpoint_create(name="crm", url=receiver.url, events=["cdr.created"])
    message = webhooks.webhook_test_send(endpoint=hook)
    OutboxMessage.objects.filter(pk=message.pk).update(status=OutboxMessage.Status.DEAD)
    client.post(
        "/admin/outbox/outboxmessage/",
        {"action": "redeliver", "_selected_action": [message.pk]},
    )
    assert OutboxMessage.objects.get(pk=message.pk).status == OutboxMessage.Status.DEAD

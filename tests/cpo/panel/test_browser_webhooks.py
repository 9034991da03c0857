"""Dead letters in a real browser: an endpoint that kept failing shows on the dashboard and in
the outbox's list, and the operator's click on "redeliver" gets it delivered by the worker."""

from __future__ import annotations

import asyncio
import time

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction
from playwright.async_api import expect

from cpo.outbox import webhooks
from cpo.outbox.models import OutboxMessage
from cpo.outbox.signing import signature_verify
from tests.cpo.outbox.conftest import Receiver, fast_outbox, outbox_worker, receiver  # noqa: F401
from tests.cpo.panel.conftest import login, make_staff

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live, pytest.mark.browser]


def dead_letter(listener: Receiver) -> tuple[int, str]:
    """An endpoint whose receiver answered 503 to every attempt: a dead letter."""
    hook, secret = webhooks.webhook_endpoint_create(
        name="failing integrator", url=listener.url, events=["invoice.issued"]
    )
    listener.answer_with(503, 503, 503)
    with transaction.atomic():
        (message,) = webhooks.event_publish(type="invoice.issued", payload={"invoice": "I-9"})
    deadline = time.monotonic() + 30
    while OutboxMessage.objects.get(pk=message.pk).status != OutboxMessage.Status.DEAD:
        assert time.monotonic() < deadline, "never became a dead letter"
        time.sleep(0.1)
    return message.pk, secret


async def test_an_operator_redelivers_a_dead_letter(
    daphne_server,
    roles,  # noqa: ARG001
    browser_page,
    outbox_worker,  # noqa: F811, ARG001
    receiver,  # noqa: F811
) -> None:
    page = browser_page
    await sync_to_async(make_staff)("operator-hooks", "Operators")
    pk, secret = await sync_to_async(dead_letter)(receiver)
    assert len(receiver.requests) == 3

    await login(page, daphne_server.http_url, "operator-hooks")
    await expect(page.locator('[data-field="alerts.counts.outbox_dead_letters"]')).to_have_text("1")
    await page.goto(f"{daphne_server.http_url}/admin/outbox/outboxmessage/?status__exact=dead")
    row = page.locator("#result_list tbody tr")
    await expect(row).to_have_count(1)
    await expect(row).to_contain_text("invoice.issued")
    await expect(row).to_contain_text("HTTP 503")
    await row.locator("input.action-select").check()
    await page.select_option("select[name=action]", "redeliver")
    await page.click("button[name=index]")
    await expect(page.locator(".messagelist")).to_contain_text(
        "1 message(s) queued for delivery again"
    )

    got = await sync_to_async(receiver.wait_for)(4)
    assert got[-1].status == 200
    assert got[-1].event["id"] == got[0].event["id"]
    assert signature_verify(secret, got[-1].headers["x-cpo-signature"], got[-1].body)
    message = await sync_to_async(OutboxMessage.objects.get)(pk=pk)
    deadline = time.monotonic() + 20
    while message.status != OutboxMessage.Status.DELIVERED:
        assert time.monotonic() < deadline
        await asyncio.sleep(0.1)
        message = await sync_to_async(OutboxMessage.objects.get)(pk=pk)
    await page.goto(f"{daphne_server.http_url}/admin/outbox/outboxmessage/?status__exact=dead")
    await expect(page.locator("#result_list tbody tr")).to_have_count(0)


async def test_an_operator_rotates_the_secret_then_sends_a_test_event_signed_with_it(
    daphne_server,
    roles,  # noqa: ARG001
    browser_page,
    outbox_worker,  # noqa: F811, ARG001
    receiver,  # noqa: F811
) -> None:
    page = browser_page
    base = daphne_server.http_url
    await sync_to_async(make_staff)("operator-rotate", "Operators")
    hook, old_secret = await sync_to_async(webhooks.webhook_endpoint_create)(
        name="rotating integrator", url=receiver.url, events=["session.started"]
    )

    await login(page, base, "operator-rotate")
    await page.goto(f"{base}/admin/outbox/webhookendpoint/")
    row = page.locator("#result_list tbody tr", has_text="rotating integrator")
    await row.locator("input.action-select").check()
    await page.select_option("select[name=action]", "rotate_secret")
    await page.click("button[name=index]")
    new_secret = (await page.locator("#webhook-secrets code.webhook-secret").inner_text()).strip()
    assert new_secret
    assert new_secret != old_secret

    await page.click("text=Back to the endpoints")
    row = page.locator("#result_list tbody tr", has_text="rotating integrator")
    await row.locator("input.action-select").check()
    await page.select_option("select[name=action]", "send_test_event")
    await page.click("button[name=index]")
    await expect(page.locator(".messagelist")).to_contain_text("1 test event(s) queued")

    (got,) = await sync_to_async(receiver.wait_for)(1)
    assert got.headers["x-cpo-event-type"] == "webhook.test"
    assert signature_verify(new_secret, got.headers["x-cpo-signature"], got.body)
    assert not signature_verify(old_secret, got.headers["x-cpo-signature"], got.body)
    assert hook.pk

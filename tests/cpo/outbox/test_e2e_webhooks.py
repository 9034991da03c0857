"""Webhooks end to end: a real OCPP station on a real daphne, a real Celery worker, and a real
HTTP receiver on loopback that checks every signature."""

from __future__ import annotations

import threading
import time
from datetime import timedelta

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction
from django.utils import timezone
from ocpp.v16 import call

from cpo.outbox import webhooks
from cpo.outbox.models import DeliveryAttempt, OutboxMessage, WebhookEndpoint
from cpo.outbox.signing import signature_verify
from sessions.models import IdToken
from stations.models import ChargingStation, Connector, Evse
from tests.conftest import start_celery_worker
from tests.cpo.outbox.conftest import FAST, Receiver

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

PASSWORD = "station-secret-0077"
TAG = "WEBHOOK-TAG-1"
EVENTS = ["session.started", "session.ended", "station.online", "station.offline"]


def ts(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def subscribe(receiver: Receiver, events: list[str]) -> tuple[WebhookEndpoint, str]:
    return webhooks.webhook_endpoint_create(name="integrator", url=receiver.url, events=events)


def wait_until(check, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.1)


@sync_to_async
def network() -> None:
    cp = ChargingStation(identity="CP-HOOK-16", protocol="ocpp1.6")
    cp.set_password(PASSWORD)
    cp.save()
    evse = Evse.objects.create(station=cp, evse_id=1, uid="CP-HOOK-16-1")
    Connector.objects.create(station=cp, evse=evse, connector_id=1)
    IdToken.objects.create(uid=TAG)


async def test_a_charge_over_ocpp_reaches_the_integrator_signed_and_in_order(
    daphne_server, outbox_worker, receiver
) -> None:
    from tests.ocpp_client import station

    await network()
    _, secret = await sync_to_async(subscribe)(receiver, EVENTS)
    start = timezone.now().replace(microsecond=0) - timedelta(minutes=20)
    async with station(daphne_server.ws_url, "CP-HOOK-16", password=PASSWORD) as cp:
        await cp.cp.call(
            call.BootNotification(charge_point_vendor="ACME", charge_point_model="Hook")
        )
        started = await cp.cp.call(
            call.StartTransaction(connector_id=1, id_tag=TAG, meter_start=1000, timestamp=ts(start))
        )
        await cp.cp.call(
            call.StopTransaction(
                transaction_id=started.transaction_id,
                meter_stop=8500,
                timestamp=ts(start + timedelta(minutes=15)),
                reason="Local",
            )
        )
    got = await sync_to_async(receiver.wait_for)(
        4, where=lambda r: r.event["type"] != "webhook.test"
    )
    for request in got:
        assert signature_verify(secret, request.headers["x-cpo-signature"], request.body)
        assert request.headers["x-cpo-event-id"] == request.event["id"]
        assert request.headers["x-cpo-event-type"] == request.event["type"]
        assert request.event["version"] == 1
    types = [r.event["type"] for r in got]
    assert sorted(types) == sorted(EVENTS)
    # One station's events in the order they happened, one session's too.
    assert types.index("station.online") < types.index("station.offline")
    assert types.index("session.started") < types.index("session.ended")
    ended = next(r.event["data"] for r in got if r.event["type"] == "session.ended")
    assert ended["station"] == "CP-HOOK-16"
    assert ended["id_tag"] == TAG
    assert ended["transaction_id"] == str(started.transaction_id)
    assert ended["energy_wh"] == "7500"
    assert ended["stop_reason"] == "Local"


def test_a_500_then_a_200_is_delivered_once_with_one_event_id(outbox_worker, receiver) -> None:
    hook, secret = subscribe(receiver, ["invoice.issued"])
    receiver.answer_with(500)
    with transaction.atomic():
        (message,) = webhooks.event_publish(type="invoice.issued", payload={"invoice": "I-1"})
    first, second = receiver.wait_for(2)
    assert (first.status, second.status) == (500, 200)
    assert first.event["id"] == second.event["id"] == message.idempotency_key
    assert signature_verify(secret, second.headers["x-cpo-signature"], second.body)
    wait_until(
        lambda: OutboxMessage.objects.get(pk=message.pk).status == OutboxMessage.Status.DELIVERED
    )
    log = DeliveryAttempt.objects.filter(message=message).order_by("number")
    assert [(a.number, a.status_code, a.succeeded) for a in log] == [
        (1, 500, False),
        (2, 200, True),
    ]
    time.sleep(1.5)  # longer than any retry here: nothing more comes
    assert len(receiver.requests) == 2


def test_an_event_of_a_rolled_back_change_is_never_sent(outbox_worker, receiver) -> None:
    subscribe(receiver, ["cdr.created"])

    def change_that_fails() -> None:
        with transaction.atomic():
            webhooks.event_publish(type="cdr.created", payload={"cdr": "rolled-back"})
            raise RuntimeError("the change failed")

    with pytest.raises(RuntimeError):
        change_that_fails()
    with transaction.atomic():
        webhooks.event_publish(type="cdr.created", payload={"cdr": "committed"})
    from cpo.outbox.tasks import outbox_sweep

    outbox_sweep.delay()
    receiver.wait_for(1)
    time.sleep(1.0)
    assert [r.event["data"]["cdr"] for r in receiver.requests] == ["committed"]
    assert OutboxMessage.objects.count() == 1


def test_a_worker_killed_mid_delivery_delivers_after_its_restart(fast_outbox, receiver) -> None:
    """At least once: the receiver saw the first try, the worker died before recording it; the
    lease runs out, the sweep (what beat runs) hands it to the new worker, which sends it again
    with the same event id."""
    from cpo.celery import app
    from cpo.outbox.tasks import outbox_sweep

    app.control.purge()
    hook, secret = subscribe(receiver, ["station.online"])
    receiver.hold = threading.Event()
    release = receiver.hold
    first_worker = start_celery_worker("outbox-a", **FAST)
    try:
        with transaction.atomic():
            (message,) = webhooks.event_publish(type="station.online", payload={"station": "S"})
        assert receiver.holding.wait(30), "the delivery never reached the receiver"
        first_worker.process.kill()
        first_worker.process.wait(10)
    finally:
        first_worker.stop()
    release.set()
    receiver.wait_for(1)
    row = OutboxMessage.objects.get(pk=message.pk)
    assert row.status == OutboxMessage.Status.DELIVERING  # nobody recorded the answer
    second_worker = start_celery_worker("outbox-b", **FAST)
    try:
        lease = row.lease_expires_at
        assert lease is not None
        wait_until(lambda: lease < timezone.now())
        outbox_sweep.delay()
        first, again = receiver.wait_for(2)
        assert first.event["id"] == again.event["id"] == message.idempotency_key
        assert signature_verify(secret, again.headers["x-cpo-signature"], again.body)
        wait_until(
            lambda: (
                OutboxMessage.objects.get(pk=message.pk).status == OutboxMessage.Status.DELIVERED
            )
        )
        assert OutboxMessage.objects.get(pk=message.pk).attempts == 2
    finally:
        second_worker.stop()

"""The outbox's services in this process against a real HTTP receiver on loopback: enqueue,
claim, deliver, retry, dead-letter, redeliver, ordering; and webhook events published by the
services that make the changes."""

from __future__ import annotations

import datetime as dt
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from cpo.outbox import services, webhooks
from cpo.outbox.models import DeliveryAttempt, OutboxMessage
from cpo.outbox.signing import signature_verify
from tests.cpo.outbox.conftest import Receiver

pytestmark = pytest.mark.django_db

Status = OutboxMessage.Status


def enqueue(receiver: Receiver, n: int = 1, *, key: str = "", ref: str = "r1") -> list[int]:
    with transaction.atomic():
        return [
            services.outbox_enqueue(
                destination_kind="test-http",
                destination_ref=ref,
                url=receiver.url,
                body={"n": i, "key": key},
                ordering_key=key,
                idempotency_key=f"{ref}-{key}-{i}",
            ).pk
            for i in range(n)
        ]


@pytest.fixture(autouse=True)
def _plain_http_transport():
    from cpo.outbox.transports import _TRANSPORTS, http_transport, transport_register

    transport_register("test-http", http_transport)
    yield
    _TRANSPORTS.pop("test-http", None)


def make_due() -> None:
    OutboxMessage.objects.filter(status=Status.PENDING).update(next_attempt_at=timezone.now())


def deliver(ref: str = "r1") -> services.DestinationRun:
    return services.outbox_deliver_destination(kind="test-http", ref=ref)


# --- enqueue -------------------------------------------------------------------------------


def test_enqueue_outside_a_transaction_is_refused(transactional_db, receiver) -> None:
    with pytest.raises(RuntimeError, match="inside the transaction"):
        services.outbox_enqueue(
            destination_kind="test-http", destination_ref="r1", url=receiver.url, body=b"x"
        )
    assert not OutboxMessage.objects.exists()


def test_the_same_idempotency_key_is_one_message(receiver) -> None:
    first = enqueue(receiver)
    again = enqueue(receiver)
    assert first == again
    assert OutboxMessage.objects.count() == 1


def test_a_rolled_back_enqueue_leaves_nothing_to_send(transactional_db, receiver) -> None:
    def change_that_fails() -> None:
        with transaction.atomic():
            enqueue(receiver)
            raise ZeroDivisionError  # the change fails after the enqueue

    with pytest.raises(ZeroDivisionError):
        change_that_fails()
    assert not OutboxMessage.objects.exists()
    assert services.outbox_sweep() == []
    assert deliver().delivered == 0
    assert receiver.requests == []


# --- delivery, retries, dead letters ----------------------------------------------------------


def test_delivered_once_with_its_body_and_logged(receiver) -> None:
    (pk,) = enqueue(receiver)
    run = deliver()
    assert (run.delivered, run.failed) == (1, 0)
    message = OutboxMessage.objects.get(pk=pk)
    assert message.status == Status.DELIVERED
    assert message.delivered_at is not None
    assert json.loads(receiver.requests[0].body) == {"n": 0, "key": ""}
    assert receiver.requests[0].headers["content-type"] == "application/json"
    (attempt,) = DeliveryAttempt.objects.filter(message=message)
    assert (attempt.number, attempt.status_code, attempt.succeeded) == (1, 200, True)
    assert attempt.response_excerpt == "ok"
    assert deliver().delivered == 0


def test_a_500_is_retried_after_the_back_off_then_delivered(receiver, fast_outbox) -> None:
    (pk,) = enqueue(receiver)
    receiver.answer_with(500)
    run = deliver()
    assert (run.delivered, run.failed) == (0, 1)
    message = OutboxMessage.objects.get(pk=pk)
    assert message.status == Status.PENDING
    assert message.last_error == "HTTP 500"
    assert message.next_attempt_at > timezone.now()
    assert run.retry_at == message.next_attempt_at
    assert deliver().delivered == 0  # not due yet
    make_due()
    assert deliver().delivered == 1
    assert OutboxMessage.objects.get(pk=pk).status == Status.DELIVERED
    codes = list(
        DeliveryAttempt.objects.filter(message_id=pk)
        .order_by("number")
        .values_list("number", "status_code")
    )
    assert codes == [(1, 500), (2, 200)]


def test_a_destination_that_is_down_becomes_a_dead_letter_after_its_attempts(
    fast_outbox, settings
) -> None:
    down = Receiver(port=1)  # nothing listens on port 1
    (pk,) = enqueue(down)
    for _ in range(settings.OUTBOX_MAX_ATTEMPTS):
        make_due()
        deliver()
    message = OutboxMessage.objects.get(pk=pk)
    assert message.status == Status.DEAD
    assert message.attempts == settings.OUTBOX_MAX_ATTEMPTS
    assert message.dead_at is not None
    assert "refused" in message.last_error.lower()
    assert DeliveryAttempt.objects.filter(message=message, succeeded=False).count() == 3


def test_a_message_past_its_age_is_a_dead_letter_at_its_first_failure(receiver) -> None:
    (pk,) = enqueue(receiver)
    OutboxMessage.objects.filter(pk=pk).update(expires_at=timezone.now() + timedelta(seconds=1))
    receiver.answer_with(503)
    deliver()
    assert OutboxMessage.objects.get(pk=pk).status == Status.DEAD


def test_redeliver_gives_a_dead_letter_fresh_attempts(receiver) -> None:
    (pk,) = enqueue(receiver)
    OutboxMessage.objects.filter(pk=pk).update(status=Status.DEAD, attempts=3)
    assert deliver().delivered == 0
    assert services.outbox_message_redeliver(message_id=pk) is True
    assert services.outbox_message_redeliver(message_id=pk) is False  # not dead any more
    assert OutboxMessage.objects.get(pk=pk).attempts == 0
    assert deliver().delivered == 1
    assert len(receiver.requests) == 1


def test_the_first_failure_holds_the_rest_of_the_destination_back(receiver) -> None:
    """A destination that fails is not hammered with the rest of the batch."""
    ids = enqueue(receiver, 3)
    receiver.answer_with(500)
    run = deliver()
    assert (run.delivered, run.failed) == (0, 1)
    rows = OutboxMessage.objects.filter(pk__in=ids).order_by("pk")
    assert [m.status for m in rows] == [Status.PENDING] * 3
    # The untried ones were given their attempt back and wait as long as the failed one.
    assert [m.attempts for m in rows] == [1, 0, 0]
    assert len({m.next_attempt_at for m in rows}) == 1
    assert len(receiver.requests) == 1


def test_another_destination_is_not_held_back(receiver) -> None:
    enqueue(receiver, 1, ref="slow")
    (other,) = enqueue(receiver, 1, ref="fine")
    receiver.answer_with(500)
    deliver("slow")
    assert deliver("fine").delivered == 1
    assert OutboxMessage.objects.get(pk=other).status == Status.DELIVERED


def test_messages_of_one_ordering_key_go_one_after_the_other(receiver) -> None:
    first, second = enqueue(receiver, 2, key="session:1")
    (free,) = enqueue(receiver, 1, key="")
    receiver.answer_with(500)
    run = deliver()
    # The first failed: the second of its key waits behind it (and the unordered one was
    # released with the batch).
    assert run.failed == 1
    assert OutboxMessage.objects.get(pk=second).status == Status.PENDING
    make_due()
    deliver()
    got = [(r.event["key"], r.event["n"]) for r in receiver.requests]
    # The first (500), the first again with the free one of its batch, then the second.
    assert got == [("session:1", 0), ("session:1", 0), ("", 0), ("session:1", 1)]
    assert set(
        OutboxMessage.objects.filter(pk__in=[first, second, free]).values_list("status", flat=True)
    ) == {Status.DELIVERED}


def test_a_later_message_of_a_key_is_not_claimed_while_an_earlier_one_is_out(receiver) -> None:
    first, second = enqueue(receiver, 2, key="k")
    claimed = services._claim(kind="test-http", ref="r1", now=timezone.now(), limit=10)
    assert [m.pk for m in claimed] == [first]
    assert services._claim(kind="test-http", ref="r1", now=timezone.now(), limit=10) == []
    OutboxMessage.objects.filter(pk=first).update(status=Status.DELIVERED)
    again = services._claim(kind="test-http", ref="r1", now=timezone.now(), limit=10)
    assert [m.pk for m in again] == [second]


def test_one_claim_per_destination_at_a_time(receiver) -> None:
    """A second task for a destination whose batch is out takes nothing (one slow endpoint
    holds one worker); another destination is claimed meanwhile."""
    enqueue(receiver, 2)
    (other,) = enqueue(receiver, 1, ref="other")
    claimed = services._claim(kind="test-http", ref="r1", now=timezone.now(), limit=1)
    assert len(claimed) == 1
    assert services._claim(kind="test-http", ref="r1", now=timezone.now(), limit=10) == []
    again = services._claim(kind="test-http", ref="other", now=timezone.now(), limit=10)
    assert [m.pk for m in again] == [other]
    OutboxMessage.objects.filter(pk=claimed[0].pk).update(status=Status.DELIVERED)
    assert len(services._claim(kind="test-http", ref="r1", now=timezone.now(), limit=10)) == 1


def test_a_worker_that_died_mid_delivery_leaves_its_message_to_the_sweep(receiver) -> None:
    (pk,) = enqueue(receiver)
    services._claim(kind="test-http", ref="r1", now=timezone.now(), limit=10)
    assert OutboxMessage.objects.get(pk=pk).status == Status.DELIVERING
    assert services.outbox_sweep() == []  # the lease still runs
    OutboxMessage.objects.filter(pk=pk).update(lease_expires_at=timezone.now() - timedelta(1))
    assert services.outbox_sweep() == [("test-http", "r1")]
    message = OutboxMessage.objects.get(pk=pk)
    assert (message.status, message.claim) == (Status.PENDING, None)
    assert deliver().delivered == 1
    assert OutboxMessage.objects.get(pk=pk).attempts == 2


def test_no_transport_for_the_kind_is_a_dead_letter_at_once(receiver) -> None:
    with transaction.atomic():
        pk = services.outbox_enqueue(
            destination_kind="nobody", destination_ref="x", url=receiver.url, body=b"x"
        ).pk
    services.outbox_deliver_destination(kind="nobody", ref="x")
    message = OutboxMessage.objects.get(pk=pk)
    assert message.status == Status.DEAD
    assert "no transport" in message.last_error


# --- webhooks --------------------------------------------------------------------------------


def endpoint(receiver: Receiver, *events: str, **fields):
    return webhooks.webhook_endpoint_create(
        name=fields.pop("name", "integrator"), url=receiver.url, events=list(events), **fields
    )


def never_called() -> dict[str, Any]:
    raise AssertionError("the payload is built only for a subscriber")


def test_publishing_to_nobody_costs_no_query(django_assert_num_queries) -> None:
    webhooks.subscriptions()  # the cache is warm, as after any process's first publish
    with django_assert_num_queries(0):
        assert webhooks.event_publish(type="session.started", payload=never_called) == []


def test_an_endpoint_gets_only_the_events_it_subscribed_to(receiver) -> None:
    hook, _ = endpoint(receiver, "session.started")
    endpoint(receiver, "session.started", name="paused", is_active=False)
    assert webhooks.event_publish(type="session.ended", payload={}) == []
    (message,) = webhooks.event_publish(type="session.started", payload={"session": "s1"})
    assert message.destination_ref == str(hook.pk)
    assert message.topic == "session.started"


def test_a_new_endpoint_is_seen_at_once_despite_the_cache(receiver) -> None:
    assert webhooks.event_publish(type="station.online", payload={}) == []  # cached: nobody
    endpoint(receiver, "station.online")
    assert len(webhooks.event_publish(type="station.online", payload={})) == 1


def test_the_same_fact_published_twice_is_one_event(receiver) -> None:
    endpoint(receiver, "session.ended")
    (a,) = webhooks.event_publish(type="session.ended", payload={}, dedupe_key="s1")
    (b,) = webhooks.event_publish(type="session.ended", payload={}, dedupe_key="s1")
    assert a.pk == b.pk
    assert OutboxMessage.objects.count() == 1


def test_an_unknown_event_type_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown webhook event"):
        webhooks.event_publish(type="session.exploded", payload={})


def test_a_delivery_is_signed_with_the_current_secret(receiver) -> None:
    hook, secret = endpoint(receiver, "cdr.created")
    (message,) = webhooks.event_publish(type="cdr.created", payload={"cdr": "c1"})
    services.outbox_deliver_destination(kind="webhook", ref=str(hook.pk))
    (got,) = receiver.requests
    assert signature_verify(secret, got.headers["x-cpo-signature"], got.body)
    assert got.headers["x-cpo-event-type"] == "cdr.created"
    assert got.headers["x-cpo-event-id"] == message.idempotency_key == got.event["id"]
    assert got.event["version"] == 1
    assert got.event["data"] == {"cdr": "c1"}
    new_secret = webhooks.webhook_endpoint_rotate_secret(endpoint=hook)
    webhooks.webhook_test_send(endpoint=hook)
    services.outbox_deliver_destination(kind="webhook", ref=str(hook.pk))
    test = receiver.requests[1]
    assert test.event["type"] == "webhook.test"
    assert signature_verify(new_secret, test.headers["x-cpo-signature"], test.body)
    assert not signature_verify(secret, test.headers["x-cpo-signature"], test.body)


def test_the_secret_is_stored_sealed_only(receiver) -> None:
    hook, secret = endpoint(receiver, "cdr.created")
    hook.refresh_from_db()
    assert secret.startswith("whsec_")
    assert secret not in hook.secret_sealed
    assert webhooks.endpoint_secret(hook) == secret


def test_a_deleted_endpoint_makes_its_waiting_messages_dead_letters(receiver) -> None:
    hook, _ = endpoint(receiver, "invoice.issued")
    (message,) = webhooks.event_publish(type="invoice.issued", payload={})
    webhooks.webhook_endpoint_delete(endpoint=hook)
    services.outbox_deliver_destination(kind="webhook", ref=message.destination_ref)
    message.refresh_from_db()
    assert (message.status, message.last_error) == (Status.DEAD, "the webhook endpoint was deleted")
    assert receiver.requests == []


def test_bad_subscriptions_are_refused(receiver) -> None:
    from django.core.exceptions import ValidationError

    with pytest.raises(ValidationError, match="unknown event types"):
        endpoint(receiver, "session.started", "nope")
    with pytest.raises(ValidationError, match="at least one"):
        endpoint(receiver)
    with pytest.raises(ValidationError):
        webhooks.webhook_endpoint_create(name="x", url="ftp://nowhere", events=["cdr.created"])


# --- the services that make the changes publish -------------------------------------------------


def topics() -> list[str]:
    return list(OutboxMessage.objects.order_by("id").values_list("topic", flat=True))


def test_station_connect_and_disconnect_publish_online_and_offline(receiver) -> None:
    from stations import services as stations
    from stations.models import ChargingStation

    endpoint(receiver, "station.online", "station.offline")
    station = ChargingStation.objects.create(identity="WH-1", protocol="ocpp1.6")
    connection_id, _ = stations.station_connected(
        station_id=station.pk,
        protocol="ocpp1.6",
        channel_name="c1",
        remote_addr="127.0.0.1",
        node="n1",
        security_profile=1,
    )
    # A reconnect that replaces the connection is no new "online".
    stations.station_connected(
        station_id=station.pk,
        protocol="ocpp1.6",
        channel_name="c2",
        remote_addr="127.0.0.1",
        node="n1",
        security_profile=1,
    )
    # The replaced connection's close does not take the station offline.
    stations.station_disconnected(
        station_id=station.pk, connection_id=connection_id, channel_name="c1", reason="replaced"
    )
    assert topics() == ["station.online"]
    stations.stations_node_down(node="n1", reason="node stopped")
    assert topics() == ["station.online", "station.offline"]
    offline = json.loads(bytes(OutboxMessage.objects.order_by("id").last().body))
    assert offline["data"]["station"] == "WH-1"
    assert offline["data"]["reason"] == "node stopped"


def test_missed_heartbeats_publish_offline(receiver) -> None:
    from stations import services as stations
    from stations.models import ChargingStation

    endpoint(receiver, "station.offline")
    old = timezone.now() - timedelta(hours=2)
    ChargingStation.objects.create(identity="WH-2", is_online=True, last_seen_at=old)
    assert stations.stations_mark_offline() == 1
    (message,) = OutboxMessage.objects.all()
    assert json.loads(bytes(message.body))["data"]["reason"] == "missed heartbeats"


def test_a_cdr_and_an_invoice_publish_their_events(receiver) -> None:
    from billing import services as billing
    from billing.models import Invoice
    from tests.billing.conftest import (
        make_account,
        make_cdr,
        make_ended_session,
        make_site,
        make_tariff,
        make_token,
    )

    endpoint(receiver, "cdr.created", "invoice.issued")
    station = make_site("WH-BILL")
    account = make_account("Hooked")
    start = timezone.now() - timedelta(hours=3)
    session = make_ended_session(station, make_token(account), make_tariff(), start=start)
    cdr = billing.cdr_create_for_session(session_id=session.pk)
    assert cdr is not None
    jan = dt.datetime(2025, 1, 15, 12, tzinfo=dt.UTC)
    draft = Invoice.objects.create(account=account, currency="EUR")
    billing._invoice_fill(draft, [make_cdr(account, station, end=jan, excl="1.00")])
    billing.invoice_issue(invoice_id=draft.pk, now=jan)
    events = [json.loads(bytes(m.body)) for m in OutboxMessage.objects.order_by("id")]
    assert [e["type"] for e in events] == ["cdr.created", "invoice.issued"]
    assert events[0]["data"]["cdr"] == cdr.uid
    assert events[0]["data"]["session"] == str(session.uid)
    assert Decimal(events[0]["data"]["total_cost_incl_vat"]) == cdr.total_cost_incl_vat
    assert events[1]["data"]["invoice"] == "INV-2025-000001"
    assert Decimal(events[1]["data"]["total_incl_vat"]) == Decimal("1.21")
    assert events[1]["data"]["currency"] == "EUR"


def test_incidents_opened_and_resolved_are_webhook_events_in_their_transaction(receiver) -> None:
    from stations.models import ChargingStation, Connector
    from stations.monitoring import services as monitoring

    endpoint(receiver, "incident.opened", "incident.resolved")
    station = ChargingStation.objects.create(identity="WH-INC", protocol="ocpp1.6")
    evse = station.evses.create(evse_id=1, uid="wh-inc-1")
    connector = Connector.objects.create(station=station, evse=evse, connector_id=1)

    def open_incident() -> Any:
        return monitoring.incident_open_or_touch(
            type="connector_faulted",
            fingerprint=f"connector_faulted:{connector.pk}",
            station_id=station.pk,
            evse_id=evse.pk,
            connector_id=connector.pk,
            severity="error",
            title="WH-INC 1 Faulted",
        )

    def open_then_fail() -> None:
        with transaction.atomic():
            open_incident()
            raise RuntimeError("the detector's transaction rolls back")

    with pytest.raises(RuntimeError):
        open_then_fail()
    assert not OutboxMessage.objects.exists()

    incident, opened = open_incident()
    assert opened
    open_incident()  # still present: no second event
    monitoring.incident_resolve(incident_id=incident.pk)

    opened_msg, resolved_msg = OutboxMessage.objects.order_by("pk")
    assert [opened_msg.topic, resolved_msg.topic] == ["incident.opened", "incident.resolved"]
    assert opened_msg.ordering_key == resolved_msg.ordering_key  # one incident, in order
    services.outbox_deliver_destination(kind="webhook", ref=opened_msg.destination_ref)
    first, second = receiver.requests
    assert first.event["data"] | {"first_seen_at": None, "last_seen_at": None} == {
        "id": incident.pk,
        "type": "connector_faulted",
        "severity": "error",
        "state": "open",
        "title": "WH-INC 1 Faulted",
        "station": "WH-INC",
        "evse_id": 1,
        "connector_id": 1,
        "first_seen_at": None,
        "last_seen_at": None,
        "resolved_at": None,
    }
    assert second.event["type"] == "incident.resolved"
    assert second.event["data"]["state"] == "resolved"
    assert second.event["data"]["resolved_at"]

"""The outbox's "ocpi" transport against a partner's receiver on loopback: the token in the
partner's encoding, a new X-Request-ID per attempt, the correlation id carried, routing
headers for hubs only, and OCPI status codes deciding delivered / retry / dead letter."""

from __future__ import annotations

import base64

import pytest
from django.db import transaction
from django.utils import timezone

from cpo.outbox import services
from cpo.outbox.models import OutboxMessage
from roaming import outbound
from tests.roaming.conftest import PushReceiver, registered_partner

pytestmark = pytest.mark.django_db

Status = OutboxMessage.Status


def send(partner, receiver: PushReceiver, **fields) -> OutboxMessage:
    with transaction.atomic():
        message = services.outbox_enqueue(
            destination_kind=outbound.KIND,
            destination_ref=str(partner.pk),
            url=f"{receiver.url}/2.2.1/commands/START_SESSION/1",
            method="POST",
            body={"result": "ACCEPTED"},
            **fields,
        )
    services.outbox_deliver_destination(kind=outbound.KIND, ref=str(partner.pk))
    message.refresh_from_db()
    return message


def test_a_push_carries_the_token_the_request_ids_and_no_routing_peer_to_peer(
    party, push_receiver
) -> None:
    partner = registered_partner(party, push_receiver, b64=True)
    message = send(partner, push_receiver, headers={"X-Correlation-ID": "corr-1"})
    assert message.status == Status.DELIVERED
    (call,) = push_receiver.calls
    assert call["method"] == "POST"
    assert call["body"] == {"result": "ACCEPTED"}
    expected = base64.b64encode(b"their-token-C").decode()
    assert call["headers"]["Authorization"] == f"Token {expected}"
    assert call["headers"]["X-Correlation-ID"] == "corr-1"
    assert call["headers"]["X-Request-ID"]
    assert not any(name.lower().startswith("ocpi-") for name in call["headers"])


def test_raw_token_and_routing_headers_for_a_hub(party, push_receiver) -> None:
    partner = registered_partner(party, push_receiver, b64=False, is_hub=True)
    send(partner, push_receiver)
    (call,) = push_receiver.calls
    headers = call["headers"]
    assert headers["Authorization"] == "Token their-token-C"
    assert headers["OCPI-from-country-code"] == "NL"
    assert headers["OCPI-from-party-id"] == "CPO"
    assert headers["OCPI-to-country-code"] == "DE"
    assert headers["OCPI-to-party-id"] == "MSP"
    assert headers["X-Correlation-ID"]


def test_an_ocpi_client_error_is_a_dead_letter_at_once(party, push_receiver) -> None:
    partner = registered_partner(party, push_receiver)
    push_receiver.answer = {"status_code": 2001, "status_message": "bad", "timestamp": "x"}
    message = send(partner, push_receiver)
    assert message.status == Status.DEAD
    assert "OCPI 2001" in message.last_error
    assert message.attempts == 1


@pytest.mark.parametrize(
    ("http_status", "ocpi_status"), [(200, 3000), (503, 3000), (500, 2000), (401, 2000)]
)
def test_server_errors_are_retried_with_a_new_request_id(
    party, push_receiver, http_status, ocpi_status
) -> None:
    partner = registered_partner(party, push_receiver)
    push_receiver.http_status = http_status
    push_receiver.answer = {"status_code": ocpi_status, "timestamp": "x"}
    message = send(partner, push_receiver, headers={"X-Correlation-ID": "corr-2"})
    assert message.status == Status.PENDING
    assert message.next_attempt_at > timezone.now()
    push_receiver.http_status = 200
    push_receiver.answer = {"status_code": 1000, "timestamp": "x"}
    OutboxMessage.objects.filter(pk=message.pk).update(next_attempt_at=timezone.now())
    services.outbox_deliver_destination(kind=outbound.KIND, ref=str(partner.pk))
    message.refresh_from_db()
    assert message.status == Status.DELIVERED
    first, second = push_receiver.calls
    assert first["headers"]["X-Request-ID"] != second["headers"]["X-Request-ID"]
    assert first["headers"]["X-Correlation-ID"] == second["headers"]["X-Correlation-ID"]


def test_an_unregistered_partner_gets_nothing(party, push_receiver) -> None:
    partner = registered_partner(party, push_receiver)
    partner.status = partner.Status.UNREGISTERED
    partner.save()
    message = send(partner, push_receiver)
    assert message.status == Status.DEAD
    assert push_receiver.calls == []

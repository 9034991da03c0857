"""Integrator webhooks, the first user of the outbox.

A service that makes a change announces it with `event_publish(type=..., payload=...)` inside
its transaction; each active endpoint subscribed to the type gets one outbox message (the
event as JSON), delivered and retried by the outbox, signed when sent (`cpo.outbox.signing`).

Which endpoints want which type is cached (the Django cache, shared by all processes): a
publish nobody subscribed to costs no database query, which keeps the OCPP path's counts as
they were (tests/stations/ocpp/test_queries.py). Every write to an endpoint moves the cache to
a new generation, at once and again after its commit; a process that read the endpoints
before the commit wrote under the old generation, which nobody reads any more.
"""

from __future__ import annotations

import json
import logging
import secrets
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Any

from django.core.cache import cache
from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from cpo.lib.sealing import seal, unseal
from cpo.outbox.models import OutboxMessage, WebhookEndpoint
from cpo.outbox.services import outbox_enqueue
from cpo.outbox.signing import SIGNATURE_HEADER, signature_header
from cpo.outbox.transports import HttpAnswer, TransportError, http_send, transport_register

logger = logging.getLogger(__name__)

KIND = "webhook"
PAYLOAD_VERSION = 1
EVENT_TYPES = {
    "session.started": "a charging session started",
    "session.ended": "a charging session ended (the station's stop, or closed on an estimate)",
    "cdr.created": "a session was rated into a CDR (a credit CDR too)",
    "invoice.issued": "an invoice or a credit note was issued",
    "station.online": "a station connected",
    "station.offline": "a station disconnected or missed its heartbeats",
    "incident.opened": "monitoring opened an incident (a fault, a station offline, ...)",
    "incident.resolved": "an incident's condition cleared, or an operator resolved it",
}
# Sent by "send test event" only, to one endpoint whatever it subscribed to.
TEST_EVENT = "webhook.test"

_GENERATION_KEY = "outbox:webhooks:generation"
_SUBSCRIPTIONS_TTL = 24 * 3600

Payload = dict[str, Any] | Callable[[], dict[str, Any]]


def iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


# --- which endpoints want what -----------------------------------------------------------------


# The subscriptions of the generation this process read last.
_local: tuple[Any, dict[str, list[int]]] | None = None


def _subscriptions_from_database() -> dict[str, list[int]]:
    wanted: dict[str, list[int]] = {}
    for pk, events in WebhookEndpoint.objects.filter(is_active=True).values_list("pk", "events"):
        for event in events or []:
            wanted.setdefault(event, []).append(pk)
    return wanted


def subscriptions() -> dict[str, list[int]]:
    """{event type: [endpoint id]} of the active endpoints, from the cache when it has them;
    without a cache (Redis away) from the database."""
    global _local  # noqa: PLW0603 - one (generation, subscriptions) pair per process
    try:
        generation = cache.get(_GENERATION_KEY, 0)
    except Exception:  # noqa: BLE001 - the cache is an optimisation; Redis errors vary
        return _subscriptions_from_database()
    # This process already holds the set of this generation: one Redis read per publish (the
    # generation), not two, on the OCPP path. No generation (a Redis that forgot it) is never
    # trusted from memory: an endpoint may have changed since.
    if generation and _local is not None and _local[0] == generation:
        return dict(_local[1])
    key = f"outbox:webhooks:subscriptions:{generation}"
    try:
        cached = cache.get(key)
    except Exception:  # noqa: BLE001
        return _subscriptions_from_database()
    if cached is None:
        cached = _subscriptions_from_database()
        try:
            cache.set(key, cached, _SUBSCRIPTIONS_TTL)
        except Exception:  # noqa: BLE001
            logger.warning("outbox: could not cache the webhook subscriptions")
    _local = (generation, cached)
    return dict(cached)


def subscriptions_changed_now() -> None:
    """Forget the cached subscriptions (what every endpoint write does, at once and after
    its commit)."""
    _new_generation()


def _new_generation() -> None:
    try:
        cache.set(_GENERATION_KEY, uuid.uuid4().hex, None)
    except Exception:  # noqa: BLE001
        logger.warning("outbox: could not invalidate the cached webhook subscriptions")


def subscriptions_changed() -> None:
    """An endpoint was written: forget the cached subscriptions now (this transaction reads
    its own writes) and after the commit (others read the committed state from then on)."""
    _new_generation()
    transaction.on_commit(_new_generation)


# --- publishing ----------------------------------------------------------------------------


def event_body(*, event_id: str, type: str, data: dict[str, Any], at: datetime) -> bytes:
    envelope = {
        "id": event_id,
        "type": type,
        "version": PAYLOAD_VERSION,
        "created_at": iso(at),
        "data": data,
    }
    return json.dumps(envelope, separators=(",", ":"), default=str).encode()


def _enqueue_event(
    endpoint: WebhookEndpoint,
    *,
    type: str,
    data: dict[str, Any],
    event_id: str,
    at: datetime,
    subject: str,
) -> OutboxMessage:
    return outbox_enqueue(
        destination_kind=KIND,
        destination_ref=str(endpoint.pk),
        url=endpoint.url,
        body=event_body(event_id=event_id, type=type, data=data, at=at),
        headers={
            "Content-Type": "application/json",
            "User-Agent": "cpo-backoffice-webhooks/1",
            "X-CPO-Event-Id": event_id,
            "X-CPO-Event-Type": type,
        },
        topic=type,
        ordering_key=subject,
        idempotency_key=event_id,
    )


def event_publish(
    *, type: str, payload: Payload, subject: str = "", dedupe_key: str = ""
) -> list[OutboxMessage]:
    """Announce an event to the endpoints subscribed to `type`, in the caller's transaction.

    `payload` is the event's data, or a function returning it, called only when some endpoint
    wants the event (so a publish nobody listens to reads nothing). Events of the same
    `subject` ("session:<uid>", "station:<identity>") reach each endpoint in the order they
    were published. `dedupe_key` names the fact ("<session uid>"): publishing the same fact
    twice gives the same event id, and the outbox keeps one message per endpoint.
    """
    if type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {type!r}")
    endpoint_ids = subscriptions().get(type)
    if not endpoint_ids:
        return []
    endpoints = list(WebhookEndpoint.objects.filter(pk__in=endpoint_ids, is_active=True))
    if not endpoints:
        return []
    data = payload() if callable(payload) else payload
    event_id = (
        str(uuid.uuid5(uuid.NAMESPACE_URL, f"cpo:{type}:{dedupe_key}"))
        if dedupe_key
        else str(uuid.uuid4())
    )
    at = timezone.now()
    return [
        _enqueue_event(endpoint, type=type, data=data, event_id=event_id, at=at, subject=subject)
        for endpoint in endpoints
        if type in endpoint.events
    ]


# --- the transport ---------------------------------------------------------------------------


def webhook_transport(message: OutboxMessage) -> HttpAnswer:
    """Sign the stored event with the endpoint's current secret and send it to the endpoint's
    current URL (an endpoint edited after the event was written gets it at its new address)."""
    endpoint = WebhookEndpoint.objects.filter(pk=message.destination_ref).first()
    if endpoint is None:
        raise TransportError("the webhook endpoint was deleted", permanent=True)
    if not endpoint.is_active:
        raise TransportError("the webhook endpoint is inactive", permanent=True)
    body = bytes(message.body)
    headers = {
        **message.headers,
        SIGNATURE_HEADER: signature_header(unseal(endpoint.secret_sealed), body),
        "X-CPO-Delivery-Attempt": str(message.attempts),
    }
    return http_send(method=message.method, url=endpoint.url, headers=headers, body=body)


def register() -> None:
    transport_register(KIND, webhook_transport)


# --- endpoints ---------------------------------------------------------------------------------


def secret_generate() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def endpoint_secret(endpoint: WebhookEndpoint) -> str:
    return str(unseal(endpoint.secret_sealed))


def _events_clean(events: list[str] | tuple[str, ...]) -> list[str]:
    unknown = sorted(set(events) - set(EVENT_TYPES))
    if unknown:
        raise ValidationError({"events": f"unknown event types: {', '.join(unknown)}"})
    if not events:
        raise ValidationError({"events": "subscribe to at least one event type"})
    return sorted(set(events))


@transaction.atomic
def webhook_endpoint_create(
    *, name: str, url: str, events: list[str], owner: Any = None, is_active: bool = True
) -> tuple[WebhookEndpoint, str]:
    """A new endpoint and its secret, which is returned here once and kept only sealed."""
    secret = secret_generate()
    endpoint = WebhookEndpoint(
        name=name,
        url=url,
        events=_events_clean(events),
        is_active=is_active,
        owner=owner if owner is not None and getattr(owner, "pk", None) else None,
        secret_sealed=seal(secret),
    )
    endpoint.full_clean()
    endpoint.save()
    subscriptions_changed()
    return endpoint, secret


WRITABLE = ("name", "url", "events", "is_active")


@transaction.atomic
def webhook_endpoint_update(*, endpoint: WebhookEndpoint, data: dict[str, Any]) -> WebhookEndpoint:
    for field in WRITABLE:
        if field in data:
            value = _events_clean(data[field]) if field == "events" else data[field]
            setattr(endpoint, field, value)
    endpoint.full_clean()
    endpoint.save()
    subscriptions_changed()
    return endpoint


@transaction.atomic
def webhook_endpoint_delete(*, endpoint: WebhookEndpoint) -> None:
    """Its messages stay as history; the ones still waiting become dead letters when tried."""
    endpoint.delete()
    subscriptions_changed()


@transaction.atomic
def webhook_endpoint_rotate_secret(*, endpoint: WebhookEndpoint) -> str:
    """A new secret, returned once; deliveries from now on (retries too) are signed with it."""
    secret = secret_generate()
    endpoint.secret_sealed = seal(secret)
    endpoint.secret_rotated_at = timezone.now()
    endpoint.save(update_fields=["secret_sealed", "secret_rotated_at", "updated_at"])
    return secret


@transaction.atomic
def webhook_test_send(*, endpoint: WebhookEndpoint) -> OutboxMessage:
    """A `webhook.test` event to this endpoint alone, whatever it subscribed to."""
    event_id = str(uuid.uuid4())
    data = {"endpoint": endpoint.name, "message": "a test event from the CPO back office"}
    return _enqueue_event(
        endpoint, type=TEST_EVENT, data=data, event_id=event_id, at=timezone.now(), subject=""
    )

"""The outbox's writes: enqueue a message in the caller's transaction, claim and deliver the
due ones, retry with back-off, dead-letter, redeliver.

The guarantee is at-least-once: a message is written with the change it announces (both
commit or neither), then delivered until the destination answers 2xx, it runs out of
attempts or age, or no retry can help. A destination may see a message twice (a worker that
died after sending, before recording); the idempotency key, which webhooks send as the event
id, lets it drop the second copy.

Delivery is per destination: `outbox_deliver_destination` claims a small batch of one
destination's due messages, sends them one after another outside any transaction, and
records each outcome. A slow or dead endpoint only holds up its own task; the first failure
of a batch puts the rest of the batch back to wait with it, so a destination that is down
costs one timeout per retry, not one per message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, F, OuterRef
from django.utils import timezone

from cpo.outbox.models import DeliveryAttempt, OutboxMessage
from cpo.outbox.transports import EXCERPT_CHARS, HttpAnswer, TransportError, transport_for

logger = logging.getLogger(__name__)

Status = OutboxMessage.Status


def retry_delay(*, attempts: int, rng: Callable[[], float] = random.random) -> float:
    """Seconds to wait after the `attempts`-th failed attempt: exponential back-off from
    OUTBOX_RETRY_BASE_SECONDS, capped at OUTBOX_RETRY_MAX_SECONDS, with "equal jitter" (half
    the step fixed, half random) so that messages that failed together do not retry together."""
    base = float(settings.OUTBOX_RETRY_BASE_SECONDS)
    cap = float(settings.OUTBOX_RETRY_MAX_SECONDS)
    step = min(cap, base * 2 ** max(attempts - 1, 0))
    return step / 2 + rng() * step / 2


def _body_bytes(body: bytes | dict[str, Any] | list[Any], headers: dict[str, str]) -> bytes:
    if isinstance(body, bytes | bytearray | memoryview):
        return bytes(body)
    headers.setdefault("Content-Type", "application/json")
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


# Wakes a worker for one destination: the delivery task's `delay`, registered by the app's
# ready() (this module does not import the tasks, which import it).
_wake: Callable[[str, str], object] | None = None


def wake_register(wake: Callable[[str, str], object]) -> None:
    global _wake
    _wake = wake


def _kick(kind: str, ref: str) -> None:
    # After commit, and never the caller's failure: a lost kick (Redis away) only delays the
    # message until the next sweep.
    if _wake is None:
        return
    try:
        _wake(kind, ref)
    except Exception:  # noqa: BLE001 - the broker's errors vary by transport
        logger.warning("outbox: could not wake a worker for %s:%s; the sweep will", kind, ref)


def outbox_enqueue(
    *,
    destination_kind: str,
    destination_ref: str,
    url: str,
    body: bytes | dict[str, Any] | list[Any],
    method: str = "POST",
    headers: dict[str, str] | None = None,
    topic: str = "",
    ordering_key: str = "",
    idempotency_key: str = "",
) -> OutboxMessage:
    """Write a message to send, in the caller's transaction (it must be inside one: the row
    and the change it announces commit together). After the commit a worker is woken; the
    sweep delivers it anyway if that wake-up is lost. Enqueueing the same idempotency key for
    the same destination again returns the first message and adds nothing."""
    if not transaction.get_connection().in_atomic_block:
        raise RuntimeError("outbox_enqueue must be called inside the transaction of the change")
    now = timezone.now()
    all_headers = dict(headers or {})
    message = OutboxMessage(
        destination_kind=destination_kind,
        destination_ref=str(destination_ref),
        topic=topic[:64],
        ordering_key=ordering_key[:200],
        method=method.upper(),
        url=url,
        body=_body_bytes(body, all_headers),
        headers=all_headers,
        idempotency_key=idempotency_key or uuid.uuid4().hex,
        next_attempt_at=now,
        expires_at=now + timedelta(seconds=settings.OUTBOX_MAX_AGE_SECONDS),
        created_at=now,
    )
    try:
        with transaction.atomic():
            message.save(force_insert=True)
    except IntegrityError:
        return OutboxMessage.objects.get(
            destination_kind=message.destination_kind,
            destination_ref=message.destination_ref,
            idempotency_key=message.idempotency_key,
        )
    transaction.on_commit(lambda: _kick(message.destination_kind, message.destination_ref))
    return message


def _destination_lock(kind: str, ref: str) -> None:
    """Serialise the claims of one destination until the end of the transaction: on
    PostgreSQL a transaction-level advisory lock on its name; SQLite's IMMEDIATE transactions
    already serialise every writer."""
    if connection.vendor != "postgresql":
        return
    digest = hashlib.sha256(f"cpo.outbox:{kind}:{ref}".encode()).digest()
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_advisory_xact_lock(%s)", [int.from_bytes(digest[:8], "big", signed=True)]
        )


def _claim(*, kind: str, ref: str, now: datetime, limit: int) -> list[OutboxMessage]:
    """Take up to `limit` due messages of one destination for delivery: each the head of its
    ordering key (no earlier message of the key still open), none while another claim of the
    destination is out. Claims of one destination run one at a time (`_destination_lock`);
    rows locked elsewhere are skipped, and the conditional update takes only rows that are
    still pending."""
    earlier_open = OutboxMessage.objects.filter(
        destination_kind=kind,
        destination_ref=ref,
        ordering_key=OuterRef("ordering_key"),
        id__lt=OuterRef("id"),
        status__in=OutboxMessage.OPEN,
    ).exclude(ordering_key="")
    with transaction.atomic():
        _destination_lock(kind, ref)
        busy = OutboxMessage.objects.filter(
            destination_kind=kind,
            destination_ref=ref,
            status=Status.DELIVERING,
            lease_expires_at__gt=now,
        )
        if busy.exists():
            # Another task is sending to this destination: one at a time, so a slow endpoint
            # takes one worker, not all of them; that task goes on while messages are due.
            return []
        ids = list(
            OutboxMessage.objects.select_for_update(skip_locked=True)
            .filter(
                destination_kind=kind,
                destination_ref=ref,
                status=Status.PENDING,
                next_attempt_at__lte=now,
            )
            .filter(~Exists(earlier_open))
            .order_by("id")
            .values_list("id", flat=True)[:limit]
        )
        if not ids:
            return []
        claim = uuid.uuid4()
        OutboxMessage.objects.filter(pk__in=ids, status=Status.PENDING).update(
            status=Status.DELIVERING,
            claim=claim,
            lease_expires_at=now + timedelta(seconds=settings.OUTBOX_LEASE_SECONDS),
            attempts=F("attempts") + 1,
        )
        return list(OutboxMessage.objects.filter(claim=claim).order_by("id"))


@dataclass(frozen=True)
class Outcome:
    delivered: bool
    # A failure that may pass (no answer, a non-2xx answer); then the destination waits.
    retry_at: datetime | None = None


def _send(message: OutboxMessage) -> tuple[HttpAnswer | None, str, bool]:
    try:
        answer = transport_for(message.destination_kind)(message)
    except TransportError as error:
        return None, str(error), error.permanent
    except Exception as error:  # noqa: BLE001 - a transport's bug fails the attempt, not the worker
        logger.exception("outbox: transport of %s failed", message.destination_kind)
        return None, f"{type(error).__name__}: {error}"[:500], False
    return answer, "" if answer.ok else f"HTTP {answer.status_code}", False


def _deliver(message: OutboxMessage) -> Outcome:
    started_at = timezone.now()
    clock = time.monotonic()
    answer, error, permanent = _send(message)
    duration_ms = int((time.monotonic() - clock) * 1000)
    now = timezone.now()
    ours = OutboxMessage.objects.filter(pk=message.pk, claim=message.claim)
    code = answer.status_code if answer is not None else None
    with transaction.atomic():
        DeliveryAttempt.objects.create(
            message=message,
            number=message.attempts,
            started_at=started_at,
            duration_ms=duration_ms,
            status_code=code,
            response_excerpt=answer.body[:EXCERPT_CHARS] if answer is not None else "",
            error=error,
            succeeded=not error,
        )
        done = {"claim": None, "lease_expires_at": None, "last_status_code": code}
        if not error:
            ours.update(status=Status.DELIVERED, delivered_at=now, last_error="", **done)
            return Outcome(True)
        retry_at = now + timedelta(seconds=retry_delay(attempts=message.attempts))
        if (
            permanent
            or message.attempts >= settings.OUTBOX_MAX_ATTEMPTS
            or retry_at > message.expires_at
        ):
            ours.update(status=Status.DEAD, dead_at=now, last_error=error, **done)
            logger.warning("outbox: message %s is a dead letter: %s", message.pk, error)
            return Outcome(False)
        ours.update(status=Status.PENDING, next_attempt_at=retry_at, last_error=error, **done)
        return Outcome(False, retry_at=retry_at)


def _release(messages: list[OutboxMessage], *, until: datetime) -> None:
    """Claimed but not tried (their destination just failed): back to wait with it, the
    attempt they were charged given back."""
    for message in messages:
        OutboxMessage.objects.filter(pk=message.pk, claim=message.claim).update(
            status=Status.PENDING,
            claim=None,
            lease_expires_at=None,
            next_attempt_at=until,
            attempts=F("attempts") - 1,
        )


@dataclass(frozen=True)
class DestinationRun:
    delivered: int
    failed: int
    # When the destination should be tried again (its next due message), if it has one soon.
    retry_at: datetime | None
    # The time budget ran out with due messages left.
    more: bool


def outbox_deliver_destination(
    *, kind: str, ref: str, budget_seconds: float | None = None
) -> DestinationRun:
    """Deliver one destination's due messages, batch after batch, until none is due, one
    fails (the destination waits for its retry), or the time budget is spent."""
    budget = settings.OUTBOX_TASK_BUDGET_SECONDS if budget_seconds is None else budget_seconds
    deadline = time.monotonic() + budget
    delivered = failed = 0
    retry_at: datetime | None = None
    while True:
        if time.monotonic() >= deadline:
            return DestinationRun(delivered, failed, retry_at, more=True)
        batch = _claim(kind=kind, ref=ref, now=timezone.now(), limit=settings.OUTBOX_BATCH_SIZE)
        if not batch:
            return DestinationRun(delivered, failed, retry_at, more=False)
        for index, message in enumerate(batch):
            outcome = _deliver(message)
            if outcome.delivered:
                delivered += 1
                continue
            failed += 1
            if outcome.retry_at is not None:
                _release(batch[index + 1 :], until=outcome.retry_at)
                return DestinationRun(delivered, failed, outcome.retry_at, more=False)


def outbox_leases_expire(*, now: datetime | None = None) -> int:
    """Messages whose worker died mid-delivery (its lease ran out): pending again, or a dead
    letter if that was their last attempt. The destination may have received them: they are
    sent again with the same idempotency key."""
    now = now or timezone.now()
    lost = OutboxMessage.objects.filter(status=Status.DELIVERING, lease_expires_at__lt=now)
    note = "the worker stopped during the delivery"
    reset = {"claim": None, "lease_expires_at": None, "last_error": note}
    dead = lost.filter(attempts__gte=settings.OUTBOX_MAX_ATTEMPTS).update(
        status=Status.DEAD, dead_at=now, **reset
    )
    again = lost.update(status=Status.PENDING, next_attempt_at=now, **reset)
    return dead + again


def outbox_due_destinations(*, now: datetime | None = None) -> list[tuple[str, str]]:
    now = now or timezone.now()
    rows = (
        OutboxMessage.objects.filter(status=Status.PENDING, next_attempt_at__lte=now)
        .values_list("destination_kind", "destination_ref")
        .order_by()
        .distinct()
    )
    return list(rows)


def outbox_sweep(*, now: datetime | None = None) -> list[tuple[str, str]]:
    """What beat runs: recover lost leases, then name every destination with due messages
    (the task wakes one delivery per destination)."""
    now = now or timezone.now()
    outbox_leases_expire(now=now)
    return outbox_due_destinations(now=now)


@transaction.atomic
def outbox_message_redeliver(*, message_id: int) -> bool:
    """A dead letter gets a fresh set of attempts (an operator fixed the endpoint). Being older
    than the open messages of its ordering key, it goes before them."""
    now = timezone.now()
    updated = OutboxMessage.objects.filter(pk=message_id, status=Status.DEAD).update(
        status=Status.PENDING,
        attempts=0,
        next_attempt_at=now,
        expires_at=now + timedelta(seconds=settings.OUTBOX_MAX_AGE_SECONDS),
        dead_at=None,
    )
    if updated:
        kind, ref = OutboxMessage.objects.values_list("destination_kind", "destination_ref").get(
            pk=message_id
        )
        transaction.on_commit(lambda: _kick(kind, ref))
    return bool(updated)

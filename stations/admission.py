"""Limits on failed station authentication at the OCPP handshake (brute force).

Failed HTTP Basic attempts are counted per station identity and per source address, in Redis
(the cache), over OCPP_AUTH_FAILURE_WINDOW_MINUTES. Past OCPP_AUTH_FREE_FAILURES each further
attempt of that identity or address waits twice as long as the one before (1 s, 2 s, 4 s,
... at most MAX_DELAY_SECONDS) before it is even checked; at OCPP_AUTH_LOCKOUT_FAILURES the
identity or address is refused outright for OCPP_AUTH_LOCKOUT_MINUTES: a Redis key that
expires by itself, and an `AuthLockout` row that the dashboard shows and an operator can lift
(`lockout_lift`). One warning is logged per lockout.

The source address of a connection through a trusted proxy (OCPP_TRUSTED_PROXIES) is the
one the proxy forwarded (X-Forwarded-For), never the proxy's own: counting the proxy would
lock out every station behind it. Without a forwarded address, only the identity is counted.

Redis is asked once per handshake (one MGET) and written only on failure; when it is
unreachable, nothing is limited (the password check itself still decides).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import timedelta

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone

from stations.models import AuthLockout

logger = logging.getLogger(__name__)

MAX_DELAY_SECONDS = 30.0


def _key(prefix: str, kind: str, value: str) -> str:
    # Identities and addresses are short; anything odd in them is fine in a Redis key.
    return f"ocpp-auth-{prefix}:{kind}:{value[:100]}"


def source_address(client: str, headers: dict[bytes, bytes]) -> str:
    """The address to count failures against, or "" when there is none to trust."""
    if client not in settings.OCPP_TRUSTED_PROXIES:
        return client
    forwarded = headers.get(b"x-forwarded-for", b"").decode("latin-1")
    # The last entry is the one the trusted proxy appended; earlier ones are the client's say.
    return forwarded.rsplit(",", 1)[-1].strip()[:100]


@dataclass(frozen=True)
class Gate:
    """What the failures so far mean for the next attempt."""

    locked: str = ""  # "identity" or "address": refused without a password check
    delay: float = 0.0  # seconds to wait before checking the password
    failures: int = 0


def _subjects(identity: str, address: str) -> list[tuple[str, str]]:
    """What one attempt is counted against: its identity, its source address, or both."""
    subjects = []
    if identity:
        subjects.append((AuthLockout.Kind.IDENTITY.value, identity))
    if address:
        subjects.append((AuthLockout.Kind.ADDRESS.value, address))
    return subjects


def auth_gate(*, identity: str, address: str) -> Gate:
    subjects = _subjects(identity, address)
    keys = [_key(p, kind, value) for kind, value in subjects for p in ("lock", "fail")]
    try:
        found = cache.get_many(keys)
    except Exception:  # Redis away: the password check alone decides
        logger.warning("authentication limits unavailable (Redis): not applied")
        return Gate()
    failures = 0
    for kind, value in subjects:
        if found.get(_key("lock", kind, value)):
            return Gate(locked=kind)
        failures = max(failures, int(found.get(_key("fail", kind, value)) or 0))
    free = settings.OCPP_AUTH_FREE_FAILURES
    if failures < free:
        return Gate(failures=failures)
    return Gate(delay=min(2.0 ** (failures - free), MAX_DELAY_SECONDS), failures=failures)


def auth_failed(*, identity: str, address: str) -> list[AuthLockout]:
    """Count one failed attempt; returns the lockouts it started (if any)."""
    window = settings.OCPP_AUTH_FAILURE_WINDOW_MINUTES * 60
    started: list[AuthLockout] = []
    for kind, value in _subjects(identity, address):
        key = _key("fail", kind, value)
        try:
            cache.add(key, 0, timeout=window)
            failures = cache.incr(key)
        except Exception:
            logger.warning("authentication limits unavailable (Redis): failure not counted")
            return started
        if failures >= settings.OCPP_AUTH_LOCKOUT_FAILURES:
            started.append(_lock(kind=kind, value=value, failures=failures))
    return started


@transaction.atomic
def _lock(*, kind: str, value: str, failures: int) -> AuthLockout:
    minutes = settings.OCPP_AUTH_LOCKOUT_MINUTES
    now = timezone.now()
    lockout = AuthLockout.objects.create(
        kind=kind,
        value=value[:100],
        failures=failures,
        locked_at=now,
        locked_until=now + timedelta(minutes=minutes),
    )
    cache.set(_key("lock", kind, value), lockout.pk, timeout=minutes * 60)
    cache.delete(_key("fail", kind, value))
    logger.warning(
        "OCPP authentication locked for %s %s: %d failed attempts; refused for %d minutes",
        kind,
        value,
        failures,
        minutes,
    )
    return lockout


def auth_succeeded(*, identity: str, gate: Gate) -> None:
    """A right password forgets the identity's failures (only asked when it had some)."""
    if gate.failures:
        try:
            cache.delete(_key("fail", AuthLockout.Kind.IDENTITY.value, identity))
        except Exception:
            logger.warning("authentication limits unavailable (Redis): failures kept")


@transaction.atomic
def lockout_lift(*, lockout: AuthLockout, by: str) -> bool:
    """An operator lifts a lockout: the identity or address may try again at once, with its
    failures forgotten. Returns whether it was still active."""
    locked = AuthLockout.objects.select_for_update().filter(pk=lockout.pk, lifted_at=None).first()
    if locked is None:
        return False
    locked.lifted_at = timezone.now()
    locked.lifted_by = by[:150]
    locked.save(update_fields=["lifted_at", "lifted_by"])
    cache.delete_many(
        [_key("lock", locked.kind, locked.value), _key("fail", locked.kind, locked.value)]
    )
    logger.info("OCPP authentication lockout of %s %s lifted by %s", locked.kind, locked.value, by)
    return True

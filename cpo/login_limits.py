"""Limits on failed panel logins, per username and per source address.

Every failed login (Django's `user_login_failed`, whoever called `authenticate` with a request:
the panel's login page) counts against the username tried and the address it came
from. At `LOGIN_FAILURE_LIMIT` failures that username, and that address, are locked for
`LOGIN_LOCKOUT_SECONDS`; while locked, `LimitedModelBackend` refuses every login of them, the
right password included, and the login page says why and until when. A failure after a
lockout has run out locks again at once, for twice as long (at most a day). A successful login
clears its username's count (not its address's: one good account must not reset an address
that tries many); a superuser lifts a lock on the "Login lockouts" admin page or with
`manage.py login_lift`. Each lockout is logged.

The source address is the peer's (`REMOTE_ADDR`); when the peer is one of
`LOGIN_TRUSTED_PROXIES`, the address that proxy reported in `X-Forwarded-For`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.backends import ModelBackend
from django.core.exceptions import PermissionDenied
from django.db import IntegrityError, transaction
from django.utils import timezone

from cpo.models import LoginThrottle

logger = logging.getLogger("cpo.login_limits")

MAX_LOCKOUT = timedelta(days=1)
# Counts older than this start again from zero.
FORGET_AFTER = timedelta(days=1)


def client_address(request: Any) -> str:
    meta = getattr(request, "META", {}) or {}
    peer = meta.get("REMOTE_ADDR") or ""
    trusted = set(settings.LOGIN_TRUSTED_PROXIES)
    if peer in trusted:
        hops = [h.strip() for h in meta.get("HTTP_X_FORWARDED_FOR", "").split(",") if h.strip()]
        # The rightmost entry not added by one of our own proxies is what the outermost
        # trusted proxy saw; anything left of it the client may have written itself.
        for hop in reversed(hops):
            if hop not in trusted:
                return hop
    return peer


def _keys(username: str | None, address: str) -> list[tuple[str, str]]:
    keys: list[tuple[str, str]] = []
    if username:
        keys.append((LoginThrottle.Scope.USERNAME, username.strip().lower()[:255]))
    if address:
        keys.append((LoginThrottle.Scope.ADDRESS, address[:255]))
    return keys


def login_locked_until(*, username: str | None, request: Any) -> datetime | None:
    """When the later of the username's and the address's lockouts ends; None if neither is
    locked now."""
    now = timezone.now()
    until = None
    for scope, key in _keys(username, client_address(request)):
        row = LoginThrottle.objects.filter(scope=scope, key=key, locked_until__gt=now).first()
        if row is not None and row.locked_until is not None:
            until = max(until, row.locked_until) if until else row.locked_until
    return until


def _lockout(lockouts: int) -> timedelta:
    seconds = settings.LOGIN_LOCKOUT_SECONDS * 2 ** max(0, lockouts - 1)
    return min(timedelta(seconds=seconds), MAX_LOCKOUT)


@transaction.atomic
def login_failure_record(*, username: str | None, request: Any) -> None:
    """Count a failed login against its username and its address; lock them at the limit."""
    now = timezone.now()
    address = client_address(request)
    for scope, key in _keys(username, address):
        try:
            with transaction.atomic():
                row, _ = LoginThrottle.objects.select_for_update().get_or_create(
                    scope=scope, key=key, defaults={"last_failure_at": now}
                )
        except IntegrityError:  # created by a concurrent failure
            row = LoginThrottle.objects.select_for_update().get(scope=scope, key=key)
        if now - row.last_failure_at > FORGET_AFTER:
            row.failures, row.lockouts, row.locked_until = 0, 0, None
        locked = row.locked_until is not None and row.locked_until > now
        row.failures += 1
        row.last_failure_at = now
        if not locked and row.failures >= settings.LOGIN_FAILURE_LIMIT:
            row.lockouts += 1
            row.locked_until = now + _lockout(row.lockouts)
            logger.warning(
                "panel logins of %s %r locked until %s after %d failed logins "
                "(last: username %r from %s)",
                scope,
                key,
                row.locked_until.isoformat(timespec="seconds"),
                row.failures,
                username,
                address,
            )
        row.save()


@transaction.atomic
def login_success_record(*, username: str) -> None:
    LoginThrottle.objects.filter(
        scope=LoginThrottle.Scope.USERNAME, key=username.strip().lower()
    ).delete()


@transaction.atomic
def login_throttle_lift(*, scope: str | None = None, key: str | None = None, by: str) -> int:
    """Lift lockouts (and forget the counts): one key, one scope, or all. Returns how many."""
    rows = LoginThrottle.objects.all()
    if scope:
        rows = rows.filter(scope=scope)
    if key:
        rows = rows.filter(key=key.strip().lower() if scope == "username" else key.strip())
    lifted = [str(row) for row in rows]
    rows.delete()
    for name in lifted:
        logger.warning("panel login limit of %s lifted by %s", name, by)
    return len(lifted)


def lockout_message(until: datetime) -> str:
    minutes = max(1, round((until - timezone.now()).total_seconds() / 60))
    return (
        "Too many failed logins for this username or from this address: logins are refused "
        f"until {until:%H:%M} UTC (about {minutes} minute{'s' if minutes != 1 else ''}), even "
        "with the right password. An administrator can lift the limit sooner."
    )


class LimitedModelBackend(ModelBackend):
    """Django's model backend, refusing logins of a locked username or address."""

    def authenticate(
        self,
        request: Any,
        username: str | None = None,
        password: str | None = None,
        **kwargs: Any,
    ) -> Any:
        if username is None:
            from django.contrib.auth import get_user_model

            username = kwargs.get(get_user_model().USERNAME_FIELD)
        if request is not None and login_locked_until(username=username, request=request):
            # Stops authenticate() at once; it reports the attempt as failed.
            raise PermissionDenied("login locked")
        return super().authenticate(request, username=username, password=password, **kwargs)


def login_failed_receiver(
    sender: Any, credentials: dict[str, Any], request: Any = None, **kwargs: Any
) -> None:
    if request is None:
        return  # not a login of a person at the panel (a test or a script)
    login_failure_record(username=credentials.get("username"), request=request)


def logged_in_receiver(sender: Any, request: Any, user: Any, **kwargs: Any) -> None:
    login_success_record(username=user.get_username())

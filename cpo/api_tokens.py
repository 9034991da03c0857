"""Per-user API tokens: the services that make, revoke and check them, and DRF's
authentication classes that accept them.

A token reads `cpo_<prefix>_<secret>` and is sent as `Authorization: Bearer <token>`. Any user
may make tokens for itself (the panel's "API tokens" page, or /api/v1/api-tokens/); a request
with one acts as that user, with exactly its permissions, until the token expires or is revoked.

Failed token authentications are counted per source address and per token prefix
(cpo.lib.api.FailedTokenThrottle); past the limit the API answers 429 with Retry-After before
it even looks at the token.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import secrets
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import (
    BaseAuthentication,
    TokenAuthentication,
    get_authorization_header,
)
from rest_framework.request import Request

from cpo.lib.throttles import FailedTokenThrottle
from cpo.models import ApiToken

TOKEN_MARK = "cpo_"  # noqa: S105 - the mark of our tokens, not a secret
# A token's expiry when none is asked for, and the longest one may ask for.
DEFAULT_LIFETIME = dt.timedelta(days=90)
MAX_LIFETIME = dt.timedelta(days=366)
# last_used_at is written at most this often per token: not one UPDATE per request.
LAST_USED_RESOLUTION = dt.timedelta(seconds=60)


def _hash(raw: str) -> str:
    return hashlib.sha256(raw.encode()).hexdigest()


def token_prefix(raw: str) -> str:
    """The prefix of a token string ('' when it is not one of ours)."""
    if not raw.startswith(TOKEN_MARK):
        return ""
    prefix, sep, _secret = raw[len(TOKEN_MARK) :].partition("_")
    return prefix if sep and len(prefix) <= 16 else ""


@transaction.atomic
def api_token_create(
    *, user: Any, name: str, expires_at: dt.datetime | None = None, now: dt.datetime | None = None
) -> tuple[ApiToken, str]:
    """Make a token for `user`; returns it with its secret, which is never shown again."""
    now = now or timezone.now()
    name = (name or "").strip()
    if not name:
        raise ValidationError({"name": ValidationError("Give the token a name.", code="required")})
    expires_at = expires_at or now + DEFAULT_LIFETIME
    if expires_at <= now:
        raise ValidationError(
            {"expires_at": ValidationError("The expiry must be in the future.", code="past")}
        )
    if expires_at > now + MAX_LIFETIME:
        raise ValidationError(
            {
                "expires_at": ValidationError(
                    f"A token lives at most {MAX_LIFETIME.days} days.", code="too_long"
                )
            }
        )
    prefix = secrets.token_hex(4)
    raw = f"{TOKEN_MARK}{prefix}_{secrets.token_urlsafe(32)}"
    token = ApiToken.objects.create(
        user=user,
        name=name[:100],
        prefix=prefix,
        secret_hash=_hash(raw),
        created_at=now,
        expires_at=expires_at,
    )
    return token, raw


@transaction.atomic
def api_token_revoke(*, token: ApiToken, now: dt.datetime | None = None) -> ApiToken:
    """Revoke the token (idempotent: a revoked token keeps its first revocation time)."""
    ApiToken.objects.filter(pk=token.pk, revoked_at__isnull=True).update(
        revoked_at=now or timezone.now()
    )
    token.refresh_from_db()
    return token


def api_token_authenticate(
    *, raw: str, address: str = "", now: dt.datetime | None = None
) -> ApiToken | None:
    """The active token `raw` is, with its active user; None for anything else."""
    now = now or timezone.now()
    prefix = token_prefix(raw)
    if not prefix:
        return None
    token = ApiToken.objects.select_related("user").filter(prefix=prefix).first()
    if token is None or not hmac.compare_digest(token.secret_hash, _hash(raw)):
        return None
    if not token.is_active(now=now) or not token.user.is_active:
        return None
    if token.last_used_at is None or token.last_used_at < now - LAST_USED_RESOLUTION:
        ApiToken.objects.filter(pk=token.pk).update(last_used_at=now, last_used_from=address[:64])
        token.last_used_at, token.last_used_from = now, address[:64]
    return token


def _refuse_while_throttled(throttle: FailedTokenThrottle, request: Request, prefix: str) -> None:
    wait = throttle.wait_for(request, prefix)
    if wait is not None:
        raise exceptions.Throttled(
            wait=wait, detail="Too many failed token authentications from here; wait."
        )


class ApiTokenAuthentication(BaseAuthentication):
    """`Authorization: Bearer cpo_...` (or `Token cpo_...`): a per-user API token."""

    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[Any, ApiToken] | None:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() not in (b"bearer", b"token"):
            return None
        raw = parts[1].decode(errors="replace") if len(parts) == 2 else ""
        if parts[0].lower() == b"token" and not raw.startswith(TOKEN_MARK):
            return None  # a key of DRF's own tokens: LegacyTokenAuthentication's
        prefix = token_prefix(raw)
        throttle = FailedTokenThrottle()
        _refuse_while_throttled(throttle, request, prefix)
        token = api_token_authenticate(raw=raw, address=throttle.get_ident(request))
        if token is None:
            throttle.failed(request, prefix)
            raise exceptions.AuthenticationFailed("Invalid, expired or revoked token.")
        return token.user, token

    def authenticate_header(self, request: Request) -> str:
        return f'{self.keyword} realm="api"'


class LegacyTokenAuthentication(TokenAuthentication):
    """DRF's own keys (`Authorization: Token <key>`), under the same failure throttle."""

    def authenticate(self, request: Request) -> Any:
        parts = get_authorization_header(request).split()
        if not parts or parts[0].lower() != b"token":
            return None
        key = parts[1].decode(errors="replace") if len(parts) == 2 else ""
        prefix = f"legacy-{key[:8]}" if key else ""
        throttle = FailedTokenThrottle()
        _refuse_while_throttled(throttle, request, prefix)
        try:
            return super().authenticate(request)
        except exceptions.AuthenticationFailed:
            throttle.failed(request, prefix)
            raise


def token_lifetime_days() -> tuple[int, int]:
    """(default, maximum) lifetime in days, as the token forms show them."""
    return DEFAULT_LIFETIME.days, MAX_LIFETIME.days


class ApiTokenScheme(OpenApiAuthenticationExtension):
    """The schema's description of ApiTokenAuthentication (Swagger UI's "Authorize")."""

    target_class = ApiTokenAuthentication
    name = "apiToken"

    def get_security_definition(self, auto_schema: Any) -> dict[str, Any]:
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A per-user API token: 'Authorization: Bearer cpo_...'. Make one on "
            "the panel's API tokens page or with POST /api/v1/api-tokens/.",
        }

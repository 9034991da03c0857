"""The API's throttles: requests per user, and failed token authentications.

Kept apart from cpo.lib.api: DRF loads the authentication classes (which use these) while
rest_framework.views is still being imported.
"""

from __future__ import annotations

from typing import Any

from django.core.cache import caches
from rest_framework.throttling import SimpleRateThrottle

THROTTLE_CACHE = "throttle"


class UserRateThrottle(SimpleRateThrottle):
    """Requests per authenticated user (and per address for anonymous ones); scope "user"."""

    scope = "user"
    cache = caches[THROTTLE_CACHE]

    def get_cache_key(self, request: Any, view: Any) -> str | None:
        if request.user and request.user.is_authenticated:
            ident = str(request.user.pk)
        else:
            ident = f"anon-{self.get_ident(request)}"
        return self.cache_format % {"scope": self.scope, "ident": ident}


class FailedTokenThrottle(SimpleRateThrottle):
    """Failed token authentications, counted per source address and per token prefix.

    Unlike DRF's throttles it records only failures: the authentication class asks `wait()`
    before it checks a token (refusing with 429 while the limit is reached) and calls
    `failed()` when a token did not authenticate. Scope "token_failure"."""

    scope = "token_failure"
    cache = caches[THROTTLE_CACHE]
    # Set by SimpleRateThrottle.__init__ from the scope's rate (not in the stubs).
    num_requests: int
    duration: int

    def __init__(self) -> None:
        super().__init__()
        self.now = self.timer()

    def _keys(self, request: Any, prefix: str) -> list[str]:
        keys = [
            self.cache_format % {"scope": self.scope, "ident": f"addr-{self.get_ident(request)}"}
        ]
        if prefix:
            keys.append(self.cache_format % {"scope": self.scope, "ident": f"prefix-{prefix}"})
        return keys

    def wait_for(self, request: Any, prefix: str) -> float | None:
        """Seconds until the next attempt is allowed, or None when it is allowed now."""
        waits = []
        for key in self._keys(request, prefix):
            history = [t for t in self.cache.get(key, []) if t > self.now - self.duration]
            if len(history) >= self.num_requests:
                waits.append(self.duration - (self.now - history[-1]))
        return max(waits) if waits else None

    def failed(self, request: Any, prefix: str) -> None:
        for key in self._keys(request, prefix):
            history = [t for t in self.cache.get(key, []) if t > self.now - self.duration]
            self.cache.set(key, [self.now, *history], self.duration)

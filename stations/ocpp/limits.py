"""Abuse bounds of the OCPP edge: frame size, message rate, the size of logged erroneous
frames and how often one repeated error is logged.

Everything on the path of a well-behaved station is in memory: the rate limiter is a token
bucket per connection, the frame size a length comparison. Redis is asked only for an
erroneous frame (the per-station daily budget of stored erroneous frames).
"""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime

from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)


def frame_bytes(text: str) -> int:
    """The UTF-8 size of a frame; encoded only when the character count leaves it open."""
    if len(text) * 4 <= settings.OCPP_MAX_FRAME_BYTES:
        return len(text)  # cannot exceed the limit whatever it holds
    return len(text.encode("utf-8", errors="replace"))


def too_big(text: str) -> bool:
    limit = settings.OCPP_MAX_FRAME_BYTES
    return bool(limit) and (len(text) > limit or frame_bytes(text) > limit)


class RateLimiter:
    """A token bucket: `rate` messages per second on average, bursts of up to `burst`."""

    def __init__(self, rate: float, burst: int):
        self.rate = rate
        self.burst = max(burst, 1)
        self.tokens = float(self.burst)
        self.updated = time.monotonic()

    @classmethod
    def from_settings(cls) -> RateLimiter | None:
        rate = settings.OCPP_RATE_LIMIT_PER_SECOND
        return cls(rate, settings.OCPP_RATE_LIMIT_BURST) if rate > 0 else None

    def allow(self) -> bool:
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.updated) * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return True
        return False


def error_log_budget_take(*, station_id: int | None, size: int) -> bool:
    """Whether `size` more bytes of erroneous frames of this station may be stored today.

    The counter lives in Redis (the cache), one key per station and UTC day. When Redis is
    unreachable the frame is stored: the budget bounds abuse, it must not cost the log of
    an ordinary error.
    """
    budget = settings.OCPP_ERROR_LOG_BYTES_PER_DAY
    if not budget:
        return True
    key = f"ocpp-error-log:{station_id or 0}:{datetime.now(UTC):%Y%m%d}"
    try:
        cache.add(key, 0, timeout=2 * 86400)
        used = cache.incr(key, size)
    except Exception:  # Redis away: fail open, see above
        return True
    return used <= budget


class _Throttle:
    """At most one log line per key per interval; the lines in between are counted."""

    def __init__(self, interval: float = 60.0, size: int = 10_000):
        self.interval = interval
        self.size = size
        self.last: dict[str, tuple[float, int]] = {}
        self.lock = threading.Lock()

    def due(self, key: str) -> int | None:
        """None: stay silent; else the number of lines suppressed since the last one."""
        now = time.monotonic()
        with self.lock:
            last = self.last.get(key)
            if last is not None and now - last[0] < self.interval:
                self.last[key] = (last[0], last[1] + 1)
                return None
            if len(self.last) >= self.size:
                self.last.clear()  # a bound, not a cache: forgetting only costs a log line
            self.last[key] = (now, 0)
            return last[1] if last is not None else 0


throttle = _Throttle()


def log_throttled(
    log: logging.Logger,
    key: str,
    level: int,
    message: str,
    *args: object,
    exc_info: bool = False,
) -> None:
    """Log `message` on `log` unless the same `key` was logged within the last minute."""
    suppressed = throttle.due(key)
    if suppressed is None:
        return
    if suppressed:
        message += " (%d more like it in the last minute)"
        args = (*args, suppressed)
    log.log(level, message, *args, exc_info=exc_info)

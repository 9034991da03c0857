"""The Channels layer on Redis, made to outlive Redis outages.

channels_redis raises ConnectionError from `receive()` when Redis goes away, and Channels'
consumer loop lets it propagate: the consumer dies and daphne closes its websocket with 1011.
For the OCPP edge that means a Redis blip disconnects every station. Here `receive()` waits
instead, retrying with back-off until Redis answers again, so the consumer keeps serving its
websocket (everything a station asks needs only the database).

`failures` counts the errors seen, process-wide: a Redis that restarted has forgotten every
group, so whoever holds group memberships re-adds them when the count moves
(`stations.ocpp.delivery`).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from typing import Any

import redis
from channels_redis.core import RedisChannelLayer

logger = logging.getLogger(__name__)

RETRY_MIN = 0.5  # seconds before the first retry; doubled up to RETRY_MAX
RETRY_MAX = 10.0
# One warning per outage, not one per connection: a node holds thousands of receivers.
_WARN_EVERY = 60.0

# What a lost, refused or restarting Redis raises (BusyLoadingError is a ConnectionError).
LAYER_ERRORS: tuple[type[BaseException], ...] = (redis.RedisError, OSError)


class ResilientRedisChannelLayer(RedisChannelLayer):
    failures = 0
    _warned_at = 0.0

    async def receive(self, channel: str) -> dict[str, Any]:
        delay = RETRY_MIN
        while True:
            try:
                return await super().receive(channel)
            except LAYER_ERRORS as error:
                self._failed(error)
            # Jitter spreads the retries of thousands of receivers of one node.
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, RETRY_MAX)

    def _failed(self, error: BaseException) -> None:
        ResilientRedisChannelLayer.failures += 1
        now = time.monotonic()
        if now - ResilientRedisChannelLayer._warned_at >= _WARN_EVERY:
            ResilientRedisChannelLayer._warned_at = now
            logger.warning("channel layer unreachable, retrying: %s", error)

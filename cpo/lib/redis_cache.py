"""Django's Redis cache with one client (and connection pool) per process.

Django keeps a cache object per async context (`caches` is an asgiref Local that is not
thread-critical), and each RedisCache object builds its own client and connection pool on
first use. In daphne every charger connection is a task with a context of its own, so each
connected station held its own pool and an open Redis connection for its whole life (333
Redis clients for 300 idle stations, and some 5 KiB of objects each; at 10,000 stations, as
many Redis connections as Redis allows by default). Here the client is shared by every cache
object of the process with the same servers and options: redis-py's pool is thread-safe and
hands each call a connection of its own.
"""

from __future__ import annotations

import threading
from typing import Any

from django.core.cache.backends.redis import RedisCache, RedisCacheClient
from django.utils.functional import cached_property

_CLIENTS: dict[str, RedisCacheClient] = {}
_LOCK = threading.Lock()


class SharedRedisCache(RedisCache):
    @cached_property
    def _cache(self) -> Any:
        # RedisCache's own attributes, untyped in django-stubs.
        mine: Any = self
        key = repr((mine._class, mine._servers, sorted(mine._options.items(), key=str)))
        with _LOCK:
            client = _CLIENTS.get(key)
            if client is None:
                client = _CLIENTS[key] = mine._class(mine._servers, **mine._options)
        return client

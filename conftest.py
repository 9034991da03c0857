"""Process-wide test set-up: the embedded Redis server for runs without REDIS_URL.

Settings only name the socket (var/test/redis.sock); the server is started here, once per run,
exactly as `make run` starts it, so tests talk to a real Redis either way.
"""

from __future__ import annotations

import os

_embedded_redis = None


def pytest_configure(config):
    global _embedded_redis
    if os.environ.get("REDIS_URL"):
        return
    from django.conf import settings

    from cpo.lib import embedded_redis

    if not embedded_redis.is_alive(settings.REDIS_SOCKET):
        # Each run starts empty: what an earlier run queued is not this run's.
        (settings.DATA_DIR / embedded_redis.AOF_NAME).unlink(missing_ok=True)
        _embedded_redis = embedded_redis.start(settings.DATA_DIR)


def pytest_unconfigure(config):
    if _embedded_redis is not None:
        from cpo.lib import embedded_redis

        embedded_redis.stop(_embedded_redis)

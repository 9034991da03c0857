"""Database access from the websocket consumer.

`database_sync_to_async` defaults to thread_sensitive=True, which runs every call of every
connection on one shared thread: one slow query stalls all chargers. Service calls here are
independent transactions, so they run on the executor's threads in parallel.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import wraps
from typing import Any, TypeVar

from channels.db import database_sync_to_async

from stations.ocpp import load

T = TypeVar("T")


def db(function: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    """`function` on an executor thread; counted while in flight (the node's load, which
    decides whether a boot is deferred: stations.ocpp.load)."""
    run = database_sync_to_async(function, thread_sensitive=False)

    @wraps(function)
    async def counted(*args: Any, **kwargs: Any) -> T:
        load.call_started()
        try:
            return await run(*args, **kwargs)
        finally:
            load.call_ended()

    return counted

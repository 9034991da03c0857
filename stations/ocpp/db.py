"""Database access from the websocket consumer.

`database_sync_to_async` defaults to thread_sensitive=True, which runs every call of every
connection on one shared thread: one slow query stalls all chargers. Service calls here are
independent transactions, so they run on the executor's threads in parallel.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from channels.db import database_sync_to_async

T = TypeVar("T")


def db(function: Callable[..., T]) -> Callable[..., Awaitable[T]]:
    return database_sync_to_async(function, thread_sensitive=False)

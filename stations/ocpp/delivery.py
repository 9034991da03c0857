"""Command delivery that does not depend on the state of the channel layer.

The database is the command queue; the channel layer only wakes the connection that holds a
station's socket (`stations.commands.dispatch`). Redis can lose that wake-up in three ways,
and each is covered here, per process, at no cost per frame:

- channels_redis drops a group member `group_expiry` seconds (24 h) after it joined: every
  connection re-joins its station's group when half of that has passed;
- a restarted Redis has forgotten every group: when the channel layer reports errors
  (`cpo.lib.channel_layer`), every connection re-joins, retrying with back-off while Redis
  is still away;
- a wake-up sent while Redis was unreachable is gone: every OCPP_COMMAND_POLL_INTERVAL
  seconds one query finds the stations with queued commands, and those whose current
  connection is in this process are woken (the polled fallback; one query per process, not
  per connection).

Nothing here can close a connection: channel-layer errors are logged and retried, and the
station's own calls never wait for the layer.
"""

from __future__ import annotations

import asyncio
import logging
import time
import weakref
from typing import Any, Protocol

from django.conf import settings

from stations.commands import selectors as queue_reads
from stations.commands.dispatch import station_group
from stations.ocpp.db import db

logger = logging.getLogger(__name__)

# Seconds a channel-layer call may take before the caller goes on without it (a blackholed
# Redis would otherwise hold a handshake until TCP gives up).
LAYER_TIMEOUT = 2.0
BACKOFF_MAX = 10.0  # seconds between re-join attempts while Redis is away, at most
# How often the layer's health is looked at (no I/O unless something is due).
TICK = 2.0


class Connection(Protocol):
    """What the delivery needs of a consumer (`stations.ocpp.consumer.OcppConsumer`)."""

    station_id: int
    channel_name: str
    channel_layer: Any

    def _commands_wake(self) -> None: ...


class _Delivery:
    """The connections of one event loop (daphne runs one per process)."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        # Connection -> monotonic time it last joined its group (0: join again). Weak, so a
        # consumer that died without its disconnect is never woken again.
        self.joined: weakref.WeakKeyDictionary[Connection, float] = weakref.WeakKeyDictionary()
        self.task: asyncio.Task[None] | None = None
        self.failures_seen = 0
        self.backoff = 0.0
        self.retry_at = 0.0

    def start(self) -> None:
        if self.task is None or self.task.done():
            self.task = self.loop.create_task(self.run())

    async def run(self) -> None:
        last_poll = time.monotonic()
        while len(self.joined):
            await asyncio.sleep(self.tick())
            try:
                await self.refresh()
                now = time.monotonic()
                if now - last_poll >= settings.OCPP_COMMAND_POLL_INTERVAL:
                    last_poll = now
                    await self.poll()
            except Exception:  # the loop must outlive any one failure
                logger.exception("command delivery round failed")

    def tick(self) -> float:
        tick = min(TICK, float(settings.OCPP_COMMAND_POLL_INTERVAL))
        expiry = self.group_expiry()
        if expiry:
            tick = min(tick, expiry / 4)
        if self.retry_at:
            tick = min(tick, max(self.retry_at - time.monotonic(), 0.1))
        return max(tick, 0.1)

    def group_expiry(self) -> float:
        for connection in list(self.joined):
            return float(getattr(connection.channel_layer, "group_expiry", 0) or 0)
        return 0.0

    async def refresh(self) -> None:
        """Re-join the groups that are due: half their expiry, a failed join, an outage."""
        connections = list(self.joined.items())
        if not connections:
            return
        layer = connections[0][0].channel_layer
        failures = getattr(layer, "failures", 0)
        outage = failures != self.failures_seen
        self.failures_seen = failures
        now = time.monotonic()
        if outage:
            for connection, _ in connections:
                self.joined[connection] = 0.0
            if not self.backoff:
                self.retry_at = 0.0  # the first sign of trouble: try at once, then back off
        if now < self.retry_at:
            return
        due_after = self.group_expiry() / 2
        rejoined = False
        for connection, joined_at in connections:
            if self.joined.get(connection) is None:
                continue  # left meanwhile
            if joined_at and (not due_after or now - joined_at < due_after) and not outage:
                continue
            if not await group_join(connection):
                # Redis is still away: the rest wait for the next try.
                self.backoff = min(max(self.backoff * 2, 1.0), BACKOFF_MAX)
                self.retry_at = time.monotonic() + self.backoff
                return
            self.joined[connection] = time.monotonic()
            rejoined = True
        self.backoff = 0.0
        self.retry_at = 0.0
        if outage or rejoined:
            # Wake-ups sent while the layer was away are lost: look for queued commands now.
            await self.poll()

    async def poll(self) -> None:
        """The polled fallback: wake this process's connections that have queued commands."""
        if not len(self.joined):
            return
        try:
            waiting = await db(queue_reads.stations_with_queued_commands)()
        except Exception:  # the database is away too; the next round tries again
            logger.exception("polling the command queue failed")
            return
        for connection in list(self.joined):
            # Only the station's current connection: one replaced while Redis was away (and
            # so never told to close) must not take its commands.
            if waiting.get(connection.station_id) == connection.channel_name:
                connection._commands_wake()


_current: _Delivery | None = None


def _delivery() -> _Delivery:
    global _current
    loop = asyncio.get_running_loop()
    if _current is None or _current.loop is not loop:
        _current = _Delivery(loop)
    return _current


async def group_join(connection: Connection) -> bool:
    """Add the connection to its station's group; False (logged) if the layer is away."""
    layer = connection.channel_layer
    if layer is None:
        return True
    try:
        await asyncio.wait_for(
            layer.group_add(station_group(connection.station_id), connection.channel_name),
            LAYER_TIMEOUT,
        )
    except Exception as error:  # any layer failure: the polled fallback delivers meanwhile
        logger.warning("station %s: joining its group failed: %r", connection.station_id, error)
        return False
    return True


async def join(connection: Connection) -> None:
    """A station connected: join its group (or retry later) and keep it joined and polled."""
    delivery = _delivery()
    delivery.joined[connection] = time.monotonic() if await group_join(connection) else 0.0
    delivery.start()


async def leave(connection: Connection) -> None:
    """A station disconnected: stop delivering and leave the group if the layer is there
    (if not, the member expires from the group by itself)."""
    _delivery().joined.pop(connection, None)
    layer = connection.channel_layer
    if layer is None:
        return
    try:
        await asyncio.wait_for(
            layer.group_discard(station_group(connection.station_id), connection.channel_name),
            LAYER_TIMEOUT,
        )
    except Exception as error:
        logger.info("station %s: leaving its group failed: %r", connection.station_id, error)


async def layer_send(connection: Connection, channel: str, message: dict[str, Any]) -> bool:
    """Send one channel-layer message within LAYER_TIMEOUT; False if it could not go."""
    layer = connection.channel_layer
    if layer is None:
        return False
    try:
        await asyncio.wait_for(layer.send(channel, message), LAYER_TIMEOUT)
    except Exception:
        return False
    return True

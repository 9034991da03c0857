"""Waking the process that holds a station's socket: the one channel-layer message of the
command queue.

Both sides use it: services send the wake-up after a command commits, and the OCPP consumer
joins the group it is sent to. Nothing else travels on the layer: the database is the queue,
so order and durability never depend on Redis.
"""

from __future__ import annotations

import logging

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

logger = logging.getLogger(__name__)

# The consumer's handler of this message type is `command_send` (Channels maps "." to "_").
WAKE_MESSAGE = {"type": "command.send"}


def station_group(station_id: int) -> str:
    """The channel-layer group the connection of a station belongs to."""
    return f"station.{station_id}"


def station_wake(station_id: int) -> None:
    """Tell whichever process holds the station's socket that commands are waiting."""
    layer = get_channel_layer()
    if layer is None:
        return
    try:
        async_to_sync(layer.group_send)(station_group(station_id), dict(WAKE_MESSAGE))
    except Exception:  # the row is durable; the station gets it on its next connect
        logger.exception("could not wake station %s", station_id)

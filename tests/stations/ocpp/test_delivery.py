"""Command delivery that outlives the channel layer's state (stations.ocpp.delivery).

The consumer runs in-process (WebsocketCommunicator). The channel layer is the real Redis of
the run (REDIS_URL, or the embedded server of the defaults), with a group expiry of seconds
where the expiry is what is tested.
"""

from __future__ import annotations

import asyncio
import copy
import json
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator

from stations.ocpp.routing import websocket_urlpatterns
from tests.stations.conftest import acreate, until_final, until_online

pytestmark = pytest.mark.django_db(transaction=True)

application = URLRouter(websocket_urlpatterns)


async def _connect(identity: str) -> WebsocketCommunicator:
    ws = WebsocketCommunicator(application, f"/ocpp/{identity}", subprotocols=["ocpp1.6"])
    connected, _ = await ws.connect(timeout=10)
    assert connected
    return ws


async def _answer_next_call(ws: WebsocketCommunicator, action: str, timeout: float) -> list[Any]:
    frame = json.loads(await ws.receive_from(timeout=timeout))
    assert frame[0] == 2, frame
    assert frame[2] == action, frame
    await ws.send_to(text_data=json.dumps([3, frame[1], {"status": "Accepted"}]))
    return frame


async def test_a_command_queued_after_the_group_expiry_reaches_the_station(settings, make_station):
    """channels_redis forgets a group member group_expiry seconds after it joined: the
    connection re-joins for as long as it lives."""
    layer = copy.deepcopy(settings.CHANNEL_LAYERS["default"])
    layer["CONFIG"]["group_expiry"] = 2
    layer["CONFIG"]["prefix"] = "cpotest-expiry"
    settings.CHANNEL_LAYERS = {"default": layer}
    # No polled fallback within the test: only the channel layer's wake-up can deliver.
    settings.OCPP_COMMAND_POLL_INTERVAL = 3600
    cs = await sync_to_async(make_station)("EXPIRY-1")
    ws = await _connect("EXPIRY-1")
    try:
        await until_online(cs.pk)
        await asyncio.sleep(5)  # well past the group expiry
        command = await acreate(cs, verb="clear_cache")
        await _answer_next_call(ws, "ClearCache", timeout=10)
        assert (await until_final(command.pk)).status == "accepted"
    finally:
        await ws.disconnect(timeout=10)


async def test_a_lost_wake_up_is_delivered_by_the_polled_fallback(
    settings, monkeypatch, make_station
):
    """Every wake-up lost (Redis away when the commands were queued): the queue is polled."""
    from stations.commands import dispatch

    monkeypatch.setattr(dispatch, "station_wake", lambda station_id: None)
    settings.OCPP_COMMAND_POLL_INTERVAL = 1
    cs = await sync_to_async(make_station)("POLLED-1")
    ws = await _connect("POLLED-1")
    try:
        await until_online(cs.pk)
        first = await acreate(cs, verb="clear_cache")
        second = await acreate(cs, verb="reset", params={"type": "soft"})
        await _answer_next_call(ws, "ClearCache", timeout=10)
        await _answer_next_call(ws, "Reset", timeout=10)
        assert (await until_final(first.pk)).status == "accepted"
        assert (await until_final(second.pk)).status == "accepted"
    finally:
        await ws.disconnect(timeout=10)


async def test_the_poll_wakes_only_the_current_connection(settings, monkeypatch, make_station):
    """A connection replaced while the layer was away (never told to close) keeps no
    claim on the station's commands."""
    from stations.commands import dispatch
    from stations.ocpp import delivery

    async def lost(*args: Any) -> bool:
        return False

    monkeypatch.setattr(dispatch, "station_wake", lambda station_id: None)
    monkeypatch.setattr(delivery, "layer_send", lost)
    settings.OCPP_COMMAND_POLL_INTERVAL = 1
    cs = await sync_to_async(make_station)("POLLED-2")
    old = await _connect("POLLED-2")
    # A round trip: the old connection's connect() has run to its end (its own look at the
    # queue included) before the new one comes.
    await old.send_to(text_data=json.dumps([2, "hb", "Heartbeat", {}]))
    assert json.loads(await old.receive_from(timeout=10))[0] == 3
    new = await _connect("POLLED-2")
    try:
        command = await acreate(cs, verb="clear_cache")
        await _answer_next_call(new, "ClearCache", timeout=10)
        assert (await until_final(command.pk)).status == "accepted"
        assert await old.receive_nothing(timeout=1.5)
    finally:
        await new.disconnect(timeout=10)
        await old.disconnect(timeout=10)

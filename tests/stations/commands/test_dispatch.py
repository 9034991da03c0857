"""Commands travel from any process to the one holding the station's socket, in order.

Real processes on loopback: daphne nodes, a Celery worker, Redis and the test database.
"""

from __future__ import annotations

import asyncio
import json
import time
from datetime import timedelta

import pytest
import websockets
from asgiref.sync import sync_to_async

from tests.conftest import start_daphne
from tests.ocpp_client import station
from tests.stations.conftest import acreate, create, http, until, until_final, until_online

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]


async def test_command_from_a_celery_worker_reaches_the_station(
    daphne_server, celery_worker, make_station
):
    from stations.commands.models import Command
    from stations.commands.tasks import command_send

    cs = await sync_to_async(make_station)("WORKER-1")
    async with station(daphne_server.ws_url, "WORKER-1") as client:
        await until_online(cs.pk)
        result = command_send.delay(cs.pk, verb="reset", params={"type": "hard"})
        command_id = await asyncio.to_thread(result.get, timeout=30)
        command = await until_final(command_id, timeout=15)
        assert command.status == Command.Status.ACCEPTED
        assert command.response == {"status": "Accepted"}
        assert command.node == "node-a"  # sent by daphne, created by the worker
        assert client.cp.received_calls == [("Reset", {"type": "Hard"})]


async def test_api_of_node_a_reaches_the_station_held_by_node_b(
    celery_worker, make_station, api_token
):
    from stations.commands.models import Command
    from stations.commands.tasks import command_send

    node_a = start_daphne("node-a")
    node_b = start_daphne("node-b")
    try:
        on_b = await sync_to_async(make_station)("HELD-BY-B", "ocpp2.0.1")
        on_a = await sync_to_async(make_station)("HELD-BY-A")
        async with (
            station(node_b.ws_url, "HELD-BY-B", protocol="ocpp2.0.1") as client_b,
            station(node_a.ws_url, "HELD-BY-A") as client_a,
        ):
            await until_online(on_b.pk)
            await until_online(on_a.pk)
            status, body = await http(
                "POST",
                f"{node_a.http_url}/api/stations/{on_b.pk}/commands/",
                token=api_token,
                body={"verb": "reset", "params": {"type": "soft"}, "wait": 15},
            )
            assert status == 200, body
            assert body["status"] == "accepted"
            assert body["response"] == {"status": "Accepted"}
            assert body["action"] == "Reset"
            assert body["payload"] == {"type": "OnIdle"}
            assert client_b.cp.received_calls == [("Reset", {"type": "OnIdle"})]
            command = await sync_to_async(Command.objects.get)(pk=body["id"])
            assert command.node == "node-b"
            assert command.origin == Command.Origin.API

            # The worker commands the station on node A at the same time.
            result = command_send.delay(on_a.pk, verb="clear_cache")
            command_id = await asyncio.to_thread(result.get, timeout=30)
            assert (await until_final(command_id, 15)).status == Command.Status.ACCEPTED
            assert client_a.cp.received_calls == [("ClearCache", {})]
    finally:
        node_a.stop()
        node_b.stop()


async def _raw_station(ws_url: str, identity: str, protocol: str = "ocpp1.6"):
    return await websockets.connect(
        f"{ws_url}/{identity}", subprotocols=[websockets.Subprotocol(protocol)], open_timeout=10
    )


async def test_ten_commands_go_out_one_at_a_time_in_order(daphne_server, make_station):
    from stations.ocpp import protocol as ocpp

    cs = await sync_to_async(make_station)("SERIAL-1")
    ws = await _raw_station(daphne_server.ws_url, "SERIAL-1")
    try:
        await until_online(cs.pk)

        def queue_ten() -> list[int]:
            from django.db import transaction

            with transaction.atomic():
                return [
                    create(
                        cs,
                        verb="data_transfer",
                        params={"vendor_id": "test", "message_id": f"m{i}"},
                    ).pk
                    for i in range(10)
                ]

        ids = await sync_to_async(queue_ten)()
        seen = []
        for _ in range(10):
            frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert frame[0] == 2
            assert frame[2] == "DataTransfer"
            ocpp.validate("ocpp1.6", 2, "DataTransfer", frame[3])
            seen.append(frame[3]["messageId"])
            # Nothing else may arrive while this CALL is unanswered.
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(ws.recv(), 0.3)
            await ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))
        assert seen == [f"m{i}" for i in range(10)]
        for command_id in ids:
            assert (await until_final(command_id)).status == "accepted"
    finally:
        await ws.close()


async def test_timeout_is_recorded_and_the_queue_moves_on(make_station):
    from stations.commands.models import Command

    server = start_daphne("node-timeout", OCPP_RESPONSE_TIMEOUT="1")
    try:
        cs = await sync_to_async(make_station)("SLOW-1")
        ws = await _raw_station(server.ws_url, "SLOW-1")
        await until_online(cs.pk)
        first = await acreate(cs, verb="clear_cache")
        second = await acreate(cs, verb="get_local_list_version")
        unanswered = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert unanswered[2] == "ClearCache"
        started = time.monotonic()
        nxt = json.loads(await asyncio.wait_for(ws.recv(), 10))
        assert nxt[2] == "GetLocalListVersion"
        assert time.monotonic() - started > 0.5
        # A late answer to the timed-out CALL is ignored.
        await ws.send(json.dumps([3, unanswered[1], {"status": "Accepted"}]))
        await ws.send(json.dumps([3, nxt[1], {"listVersion": 3}]))
        done_first = await until_final(first.pk)
        assert done_first.status == Command.Status.TIMED_OUT
        assert "no answer" in done_first.error_description
        done_second = await until_final(second.pk)
        assert done_second.status == Command.Status.ACCEPTED
        assert done_second.response == {"listVersion": 3}
        await ws.close()
    finally:
        server.stop()


async def test_callerror_and_invalid_response_fail_the_command(daphne_server, make_station):
    cs = await sync_to_async(make_station)("ERR-1")
    ws = await _raw_station(daphne_server.ws_url, "ERR-1")
    try:
        await until_online(cs.pk)
        first = await acreate(cs, verb="clear_cache")
        second = await acreate(cs, verb="clear_cache")
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        await ws.send(json.dumps([4, frame[1], "NotSupported", "no cache here", {}]))
        frame = json.loads(await asyncio.wait_for(ws.recv(), 10))
        await ws.send(json.dumps([3, frame[1], {"status": "Maybe"}]))
        one = await until_final(first.pk)
        assert (one.status, one.error_code) == ("failed", "NotSupported")
        two = await until_final(second.pk)
        assert (two.status, two.error_code) == ("failed", "InvalidResponse")
    finally:
        await ws.close()


async def test_offline_station_gets_its_queue_on_connect_and_stale_commands_expire(
    daphne_server, make_station
):
    from stations.commands.models import Command
    from stations.commands.results import commands_expire

    cs = await sync_to_async(make_station)("OFFLINE-1")
    kept = await acreate(cs, verb="reset", params={"type": "soft"})
    stale = await acreate(cs, verb="clear_cache", expires_in=timedelta(seconds=1))
    lapsed = await acreate(cs, verb="get_local_list_version", expires_in=timedelta(seconds=1))
    await asyncio.sleep(0.3)
    assert (await sync_to_async(Command.objects.get)(pk=kept.pk)).status == "queued"
    await asyncio.sleep(1.0)
    # Beat expires one; the other is found expired when the station connects.
    assert await sync_to_async(commands_expire)() == 2
    assert (await sync_to_async(Command.objects.get)(pk=stale.pk)).status == "expired"
    late = await acreate(cs, verb="get_local_list_version", expires_in=timedelta(seconds=1))
    await asyncio.sleep(1.2)
    async with station(daphne_server.ws_url, "OFFLINE-1") as client:
        done = await until_final(kept.pk)
        assert done.status == Command.Status.ACCEPTED
        assert (await until_final(late.pk)).status == Command.Status.EXPIRED
        await asyncio.sleep(0.3)
        assert [action for action, _ in client.cp.received_calls] == ["Reset"]
    assert (await sync_to_async(Command.objects.get)(pk=lapsed.pk)).status == "expired"


async def test_schema_invalid_raw_payload_is_refused_before_sending(
    daphne_server, make_station, api_token
):
    from stations.commands.models import Command

    cs = await sync_to_async(make_station)("RAW-1", "ocpp2.0.1")
    url = f"{daphne_server.http_url}/api/stations/{cs.pk}/commands/"
    async with station(daphne_server.ws_url, "RAW-1", protocol="ocpp2.0.1") as client:
        await until_online(cs.pk)
        status, body = await http(
            "POST", url, token=api_token, body={"action": "Reset", "payload": {"type": "Sideways"}}
        )
        assert status == 400
        [error] = body["errors"]
        assert "schema" in error["message"]
        assert "Sideways" in error["message"]
        assert error["field"] == "payload"
        status, body = await http(
            "POST", url, token=api_token, body={"action": "BootNotification", "payload": {}}
        )
        assert status == 400
        assert "sent by stations" in body["errors"][0]["message"]
        status, body = await http(
            "POST", url, token=api_token, body={"action": "RemoteStartTransaction", "payload": {}}
        )
        assert status == 400
        assert "not an OCPP 2.0.1 action" in body["errors"][0]["message"]
        assert await sync_to_async(Command.objects.count)() == 0
        # A valid raw call goes out and the caller may wait for the answer.
        status, body = await http(
            "POST",
            url,
            token=api_token,
            body={"action": "GetLocalListVersion", "payload": {}, "wait": 10},
        )
        assert status == 200, body
        assert body["status"] == "accepted"
        assert body["response"] == {"versionNumber": 0}
        assert [a for a, _ in client.cp.received_calls] == ["GetLocalListVersion"]

        # Remote stop by session: the API resolves the session's transaction id.
        def running_session() -> int:
            from django.utils import timezone

            from sessions.models import ChargingSession

            return ChargingSession.objects.create(
                station=cs, transaction_id="tx-77", started_at=timezone.now()
            ).pk

        session_id = await sync_to_async(running_session)()
        status, stop = await http(
            "POST",
            url,
            token=api_token,
            body={"verb": "remote_stop", "params": {"session_id": session_id}, "wait": 10},
        )
        assert status == 200, stop
        assert stop["action"] == "RequestStopTransaction"
        assert stop["payload"] == {"transactionId": "tx-77"}
        assert stop["status"] == "accepted"
        # Reading commands back.
        status, listing = await http(
            "GET", f"{daphne_server.http_url}/api/commands/?station={cs.pk}", token=api_token
        )
        assert status == 200
        assert [c["id"] for c in listing["results"]] == [stop["id"], body["id"]]
        status, one = await http(
            "GET", f"{daphne_server.http_url}/api/commands/{body['id']}/", token=api_token
        )
        assert status == 200
        assert one["action"] == "GetLocalListVersion"
    status, body = await http("POST", url, body={"verb": "clear_cache"})
    assert status in (401, 403)


async def test_command_waits_in_queue_when_the_connection_drops(daphne_server, make_station):
    from stations.commands.models import Command

    cs = await sync_to_async(make_station)("DROP-1")
    ws = await _raw_station(daphne_server.ws_url, "DROP-1")
    await until_online(cs.pk)
    first = await acreate(cs, verb="clear_cache")
    await asyncio.wait_for(ws.recv(), 10)
    second = await acreate(cs, verb="get_local_list_version")
    await ws.close()
    lost = await until_final(first.pk)
    assert (lost.status, lost.error_code) == ("failed", "ConnectionLost")
    await until(lambda: not Command.objects.filter(pk=second.pk, status="sent").exists())
    assert (await sync_to_async(Command.objects.get)(pk=second.pk)).status == "queued"
    async with station(daphne_server.ws_url, "DROP-1"):
        assert (await until_final(second.pk)).status == "accepted"

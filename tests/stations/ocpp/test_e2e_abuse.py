"""Bad input and abuse at the OCPP edge, end to end: a real daphne on loopback and real
websocket clients (tests/ocpp_client.py where the frames are OCPP, bare `websockets` where
they must not be).

Issue 20: identities decoded once and checked against OCPP_IDENTITY_PATTERN (finding 13);
NaN and deep nesting answered with CALLERRORs (11); absurd but schema-valid values refused,
or stored without them and flagged in transaction messages (8); frame size, message rate and
the message log's budget of erroneous frames (7); failed authentications delayed and locked
out (12).
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
import websockets
from asgiref.sync import sync_to_async
from django.core.cache import cache
from django.utils import timezone

from sessions.models import ChargingSession, MeterSample, TransactionEventRecord
from stations.models import (
    AuthLockout,
    ChargingStation,
    ConnectorStatusEvent,
    OcppMessage,
    SecurityEvent,
    StationConnection,
)
from tests.conftest import DaphneServer, start_daphne
from tests.ocpp_client import basic_auth, station

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

PASSWORD = "station-secret-0001"


@sync_to_async
def make_station(identity: str, *, protocol: str = "ocpp1.6") -> ChargingStation:
    row = ChargingStation(identity=identity, protocol=protocol)
    row.set_password(PASSWORD)
    row.save()
    return row


def ts(moment) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def handshake_status(url: str, **kwargs: Any) -> int:
    """The HTTP status of a websocket handshake that must be refused."""
    try:
        ws = await websockets.connect(
            url, subprotocols=[websockets.Subprotocol("ocpp1.6")], open_timeout=10, **kwargs
        )
    except websockets.InvalidStatus as refused:
        return refused.response.status_code
    await ws.close()
    raise AssertionError(f"{url} was accepted")


# --- finding 13: identities ---------------------------------------------------------------------


async def test_identity_is_decoded_once_and_malformed_paths_are_refused_with_403(daphne_server):
    await make_station("EDGE-16")
    base = f"ws://127.0.0.1:{daphne_server.port}"
    auth = basic_auth("EDGE-16", PASSWORD)
    # %25 is '%': decoded once this is EDGE%2D16, which is not EDGE-16 (nor a valid identity).
    assert await handshake_status(f"{base}/ocpp/EDGE%252D16", additional_headers=auth) == 403
    for path in (
        "/ocpp/x/../EDGE-16",
        "/ocpp/EDGE%0016",  # NUL
        "/ocpp/EDGE%2016",  # a blank: not in OCPP's identity charset
        "/ocpp/" + "E" * 49,  # longer than 48
        "/ocpp/",
        "/somewhere/else",
    ):
        assert await handshake_status(base + path, additional_headers=auth) == 403, path
    # Decoded once, a percent-encoded character of the charset is the identity's own.
    async with station(
        daphne_server.ws_url, "EDGE%2D16", headers=basic_auth("EDGE-16", PASSWORD)
    ) as cp:
        assert (await cp.raw([2, "h", "Heartbeat", {}]))[0] == 3


# --- finding 11: NaN and nesting ----------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["ocpp1.6", "ocpp2.0.1"])
async def test_nan_and_nesting_get_callerrors_and_the_connection_lives_on(daphne_server, protocol):
    identity = f"EDGE-NEST-{protocol[-1]}"
    await make_station(identity, protocol=protocol)
    format_violation = "FormationViolation" if protocol == "ocpp1.6" else "FormatViolation"
    invalid_json = "FormationViolation" if protocol == "ocpp1.6" else "RpcFrameworkError"
    deep = "[" * 40 + "]" * 40
    async with station(daphne_server.ws_url, identity, protocol=protocol, password=PASSWORD) as cp:
        for constant in ("NaN", "Infinity", "-Infinity"):
            text = f'[2,"n1","DataTransfer",{{"vendorId":"v","data":{constant}}}]'
            reply = await cp.raw(text, message_id="-1")
            assert reply[:3] == [4, "-1", invalid_json], reply
        # 40 levels parse, but no OCPP message nests that deep: answered under its own id.
        text = f'[2,"d1","DataTransfer",{{"vendorId":"v","data":{deep}}}]'
        assert (await cp.raw(text, message_id="d1"))[:3] == [4, "d1", format_violation]
        # Beyond what Python's parser can follow: the id is read from the text.
        text = '[2,"d2","DataTransfer",{"vendorId":"v","data":' + "[" * 100_000
        await cp.ws.send(text)  # past the recording client, which could not parse it either
        reply = await cp.connection.wait_for_reply("d2")
        assert reply[:3] == [4, "d2", format_violation]
        assert (await cp.raw([2, "after", "Heartbeat", {}]))[0] == 3


# --- finding 8: absurd values -------------------------------------------------------------------


@sync_to_async
def session_of(identity: str) -> ChargingSession:
    return ChargingSession.objects.get(station__identity=identity)


async def test_absurd_values_are_refused_outside_transactions_and_dropped_and_flagged_in_them(
    daphne_server,
):
    identity = "EDGE-ABSURD-16"
    await make_station(identity)
    now = timezone.now().replace(microsecond=0)
    async with station(daphne_server.ws_url, identity, password=PASSWORD) as cp:
        boot = {"chargePointVendor": "ACME", "chargePointModel": "X"}
        assert (await cp.raw([2, "b", "BootNotification", boot]))[0] == 3
        status = {
            "connectorId": 1,
            "errorCode": "NoError",
            "status": "Available",
            "timestamp": "9999-12-31T23:59:59Z",
        }
        refused = await cp.raw([2, "s1", "StatusNotification", status])
        assert refused[:3] == [4, "s1", "PropertyConstraintViolation"], refused
        assert "timestamp" in refused[3]
        nul = {"chargePointVendor": "AC\u0000ME", "chargePointModel": "X"}
        assert (await cp.raw([2, "b2", "BootNotification", nul]))[2] == (
            "PropertyConstraintViolation"
        )
        big = {"connectorId": 2**40, "errorCode": "NoError", "status": "Available"}
        assert (await cp.raw([2, "s2", "StatusNotification", big]))[2] == (
            "PropertyConstraintViolation"
        )

        # A transaction message is always accepted: the absurd part goes, the rest is stored.
        start = {
            "connectorId": 1,
            "idTag": "EDGE-TAG",
            "meterStart": 2**40,
            "timestamp": "9999-01-01T00:00:00Z",
        }
        started = await cp.raw([2, "t1", "StartTransaction", start])
        assert started[0] == 3, started
        transaction_id = started[2]["transactionId"]
        assert transaction_id > 0
        # The charger did not get that answer and sends the same StartTransaction again: its
        # time is replaced again (another moment of receipt), and it is still the same start.
        await asyncio.sleep(1.1)
        again = await cp.raw([2, "t1-retry", "StartTransaction", start])
        assert again[2]["transactionId"] == transaction_id, again
        meter = {
            "connectorId": 1,
            "transactionId": transaction_id,
            "meterValue": [
                {"timestamp": ts(now), "sampledValue": [{"value": "-1e300"}, {"value": "1500"}]},
                {"timestamp": "1900-01-01T00:00:00Z", "sampledValue": [{"value": "1600"}]},
            ],
        }
        assert (await cp.raw([2, "m1", "MeterValues", meter]))[0] == 3
        stop = {
            "transactionId": transaction_id,
            "meterStop": -(10**9),
            "timestamp": ts(now + timedelta(minutes=5)),
        }
        assert (await cp.raw([2, "t2", "StopTransaction", stop]))[0] == 3
        # A stop whose transaction id is beyond any column is acknowledged, not stored.
        lost = {"transactionId": 2**40, "meterStop": 10, "timestamp": ts(now)}
        assert (await cp.raw([2, "t3", "StopTransaction", lost])) == [3, "t3", {}]

    session = await session_of(identity)
    assert session.status == ChargingSession.Status.COMPLETED
    assert abs(session.started_at - timezone.now()) < timedelta(minutes=2)
    assert session.meter_start_wh is None
    assert session.meter_stop_wh is None
    absurd = [a for a in session.anomalies if a.startswith("absurd values from the station")]
    assert any("meterStart" in a for a in absurd), session.anomalies
    assert any("timestamp" in a and "receipt" in a for a in absurd), session.anomalies
    assert any("-1e300" in a for a in absurd), session.anomalies
    assert any("1900-01-01" in a for a in absurd), session.anomalies
    assert any("meterStop" in a for a in absurd), session.anomalies

    @sync_to_async
    def stored() -> tuple[list[Decimal | None], int, int]:
        values = list(
            MeterSample.objects.filter(session=session)
            .order_by("pk")
            .values_list("value", flat=True)
        )
        statuses = ConnectorStatusEvent.objects.filter(station__identity=identity).count()
        orphans = ChargingSession.objects.filter(station__identity=identity).count()
        return values, statuses, orphans

    values, statuses, sessions = await stored()
    assert values == [Decimal("1500")]
    assert statuses == 0  # the refused status report stored nothing
    assert sessions == 1  # the stop with an absurd transaction id made no orphan
    # The CDR step takes the session as stored (no decimal.InvalidOperation): flagged, it waits
    # for Finance's review instead of being billed.
    from billing.services import cdr_create_for_session

    await sync_to_async(cdr_create_for_session)(session_id=session.pk)


async def test_absurd_transaction_events_are_stored_without_the_absurd_part(daphne_server):
    identity = "EDGE-ABSURD-201"
    await make_station(identity, protocol="ocpp2.0.1")
    now = timezone.now().replace(microsecond=0)
    event = {
        "eventType": "Started",
        "timestamp": "9999-01-01T00:00:00Z",
        "triggerReason": "Authorized",
        "seqNo": 0,
        "transactionInfo": {"transactionId": "EDGE-TX-1"},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [
            {
                "timestamp": ts(now),
                "sampledValue": [
                    {"value": 1.0e300, "measurand": "Energy.Active.Import.Register"},
                    {"value": 12.5, "measurand": "Energy.Active.Import.Register"},
                ],
            }
        ],
    }
    absurd_seq = {**event, "seqNo": 2**40, "transactionInfo": {"transactionId": "EDGE-TX-2"}}
    async with station(
        daphne_server.ws_url, identity, protocol="ocpp2.0.1", password=PASSWORD
    ) as cp:
        boot = {"reason": "PowerUp", "chargingStation": {"model": "X", "vendorName": "ACME"}}
        assert (await cp.raw([2, "b", "BootNotification", boot]))[0] == 3
        assert (await cp.raw([2, "e1", "TransactionEvent", event]))[0] == 3
        assert (await cp.raw([2, "e2", "TransactionEvent", absurd_seq])) == [3, "e2", {}]

    @sync_to_async
    def stored() -> tuple[ChargingSession, list[Decimal | None], int]:
        session = ChargingSession.objects.get(station__identity=identity)
        values = list(MeterSample.objects.filter(session=session).values_list("value", flat=True))
        events = TransactionEventRecord.objects.filter(station__identity=identity).count()
        return session, values, events

    session, values, events = await stored()
    assert session.transaction_id == "EDGE-TX-1"
    assert abs(session.started_at - timezone.now()) < timedelta(minutes=2)
    assert values == [Decimal("12.5")]
    assert events == 1
    assert any(a.startswith("absurd values from the station") for a in session.anomalies)


# --- side writes under SQLite's write lock -----------------------------------------------------


@pytest.fixture
def touching_server(transactional_db) -> Any:  # noqa: ARG001
    # Every frame writes last-seen: every heartbeat meets the lock.
    server = start_daphne("edge-locked", OCPP_LAST_SEEN_WRITE_INTERVAL="0")
    yield server
    server.stop()


async def test_a_held_sqlite_write_lock_never_drops_a_heartbeating_station(touching_server):
    """Issue 20: "database is locked" escaped from the last-seen write and closed the socket
    (1011). Another connection holds SQLite's write lock longer than the busy timeout (20 s)
    while a real client keeps heartbeating."""
    import sqlite3

    from django.db import connection

    if connection.vendor != "sqlite":
        pytest.skip("SQLite's database-wide write lock; PostgreSQL locks rows")
    await make_station("EDGE-LOCKED")
    async with station(touching_server.ws_url, "EDGE-LOCKED", password=PASSWORD) as cp:
        assert (await cp.raw([2, "h0", "Heartbeat", {}]))[0] == 3
        await asyncio.sleep(1)  # its last-seen write, after the answer, is done
        holder = sqlite3.connect(connection.settings_dict["NAME"], isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")
        try:
            # Answered; its last-seen write then waits out the busy timeout and fails.
            assert (await cp.raw([2, "h1", "Heartbeat", {}], timeout=30))[0] == 3
            await asyncio.sleep(21)
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        for n in range(2, 5):
            assert (await cp.raw([2, f"h{n}", "Heartbeat", {}], timeout=30))[0] == 3
        assert cp.ws.state is websockets.State.OPEN
    text = touching_server.log.read_text(errors="replace")
    assert "station_seen failed (database error); the connection goes on" in text


# --- finding 7: frame size, rate, log budget ----------------------------------------------------


@pytest.fixture(scope="module")
def limited_server(django_db_setup, django_db_blocker) -> Any:  # noqa: ARG001
    server = start_daphne(
        "edge-limits",
        OCPP_MAX_FRAME_BYTES="10000",
        OCPP_RATE_LIMIT_PER_SECOND="1",
        OCPP_RATE_LIMIT_BURST="8",
        OCPP_ERROR_LOG_BYTES_PER_DAY="6000",
    )
    yield server
    server.stop()


@sync_to_async
def logged(identity: str) -> list[tuple[str, bool, str]]:
    return [
        (m.direction, m.is_error, m.frame)
        for m in OcppMessage.objects.filter(identity=identity).order_by("pk")
    ]


async def test_oversized_frames_get_a_callerror_and_are_logged_truncated_within_a_budget(
    limited_server: DaphneServer,
):
    identity = "EDGE-BIG"
    row = await make_station(identity)
    await sync_to_async(cache.delete)(f"ocpp-error-log:{row.pk}:{timezone.now():%Y%m%d}")
    big = json.dumps([2, "big1", "DataTransfer", {"vendorId": "v", "data": "x" * 20_000}])
    async with station(limited_server.ws_url, identity, password=PASSWORD) as cp:
        reply = await cp.raw(big, message_id="big1")
        assert reply[:3] == [4, "big1", "FormationViolation"], reply
        assert "10000 bytes" in reply[3]
        # Still open, and within the day's budget (6000 bytes) two more frames are logged at
        # most: each is cut to 2 KiB.
        for n in range(2, 5):
            frame = big.replace("big1", f"big{n}")
            assert (await cp.raw(frame, message_id=f"big{n}"))[:2] == [4, f"big{n}"]
        assert (await cp.raw([2, "h", "Heartbeat", {}]))[0] == 3

    rows = await logged(identity)
    incoming = [frame for direction, is_error, frame in rows if direction == "in" and is_error]
    assert 1 <= len(incoming) <= 2, len(incoming)
    assert all(len(frame) < 2200 for frame in incoming)
    assert incoming[0].startswith('[2, "big1"')
    assert incoming[0].endswith(f"[truncated: {len(big)} bytes in all]")


async def test_a_station_over_the_rate_limit_gets_callerrors_an_incident_then_is_closed(
    limited_server: DaphneServer,
):
    identity = "EDGE-RATE"
    await make_station(identity)
    ws = await websockets.connect(
        f"{limited_server.ws_url}/{identity}",
        subprotocols=[websockets.Subprotocol("ocpp1.6")],
        additional_headers=basic_auth(identity, PASSWORD),
        open_timeout=10,
    )
    answers: list[Any] = []

    async def send_until_closed() -> None:
        for n in range(40):
            await ws.send(json.dumps([2, f"r{n}", "Heartbeat", {}]))
            answers.append(json.loads(await asyncio.wait_for(ws.recv(), 10)))

    with pytest.raises(websockets.ConnectionClosed) as closed:
        await send_until_closed()
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 4008
    # The burst (8) is answered, then refused with CALLERRORs until as many again were refused
    # (a token refilled in between may let one more through).
    assert [a[0] for a in answers[:8]] == [3] * 8
    refused = [a for a in answers[8:] if a[0] == 4]
    assert all(a[2] == "GenericError" for a in refused), refused
    assert len(refused) == 7

    @sync_to_async
    def seen() -> tuple[list[str], list[str]]:
        events = list(
            SecurityEvent.objects.filter(station__identity=identity).values_list("type", flat=True)
        )
        reasons = list(
            StationConnection.objects.filter(station__identity=identity).values_list(
                "close_reason", flat=True
            )
        )
        return events, reasons

    for _ in range(50):
        events, reasons = await seen()
        if reasons and reasons[0]:
            break
        await asyncio.sleep(0.1)
    assert events == ["CSMS:RateLimitExceeded"]
    assert reasons == ["rate limit exceeded"]


# --- finding 12: failed authentications --------------------------------------------------------


@pytest.fixture
def lockout_server(transactional_db) -> Any:  # noqa: ARG001
    server = start_daphne(
        "edge-lockout",
        OCPP_AUTH_FREE_FAILURES="1",
        OCPP_AUTH_LOCKOUT_FAILURES="3",
        OCPP_AUTH_LOCKOUT_MINUTES="5",
        OCPP_TRUSTED_PROXIES="127.0.0.6",
    )
    yield server
    server.stop()
    # The counters and locks live in the suite's one Redis: none may outlive the test.
    cache.delete_many(
        [
            f"ocpp-auth-{kind}:{subject}"
            for kind in ("fail", "lock")
            for subject in (
                "identity:EDGE-LOCK",
                "identity:EDGE-PROXIED",
                "address:127.0.0.5",
                "address:10.9.8.7",
                "address:127.0.0.6",
            )
        ]
    )


async def attempt(
    server: DaphneServer, identity: str, password: str, source: str, **headers: str
) -> int:
    """One handshake from `source` (a loopback address); 101 when accepted."""
    try:
        ws = await websockets.connect(
            f"{server.ws_url}/{identity}",
            subprotocols=[websockets.Subprotocol("ocpp1.6")],
            additional_headers={**basic_auth(identity, password), **headers},
            open_timeout=30,
            local_addr=(source, 0),
        )
    except websockets.InvalidStatus as refused:
        return refused.response.status_code
    await ws.close()
    return 101


async def test_failed_authentications_are_delayed_then_locked_out(lockout_server):
    await make_station("EDGE-LOCK")
    loop = asyncio.get_running_loop()
    began = loop.time()
    # A wrong password: 401 with a Basic challenge.
    assert await attempt(lockout_server, "EDGE-LOCK", "wrong-password-1", "127.0.0.5") == 401
    assert await attempt(lockout_server, "EDGE-LOCK", "wrong-password-2", "127.0.0.5") == 401
    # The second failure waited (past the one free failure): 1 s.
    assert loop.time() - began >= 1.0
    assert await attempt(lockout_server, "EDGE-LOCK", "wrong-password-3", "127.0.0.5") == 401
    # Locked: the right password is refused too (403: no credential would help), from this
    # address and from any other.
    assert await attempt(lockout_server, "EDGE-LOCK", PASSWORD, "127.0.0.5") == 403
    assert await attempt(lockout_server, "EDGE-LOCK", PASSWORD, "127.0.0.7") == 403

    @sync_to_async
    def lockouts() -> list[tuple[str, str, int, bool]]:
        return [
            (lock.kind, lock.value, lock.failures, lock.is_active)
            for lock in AuthLockout.objects.order_by("kind")
        ]

    assert await lockouts() == [
        ("address", "127.0.0.5", 3, True),
        ("identity", "EDGE-LOCK", 3, True),
    ]
    text = lockout_server.log.read_text(errors="replace")
    assert text.count("OCPP authentication locked for identity EDGE-LOCK") == 1


async def test_a_trusted_proxy_is_never_counted_as_the_source(lockout_server):
    await make_station("EDGE-PROXIED")
    forwarded = {"X-Forwarded-For": "203.0.113.9, 10.9.8.7"}
    for n in range(3):
        status = await attempt(
            lockout_server, "EDGE-PROXIED", f"wrong-password-{n}", "127.0.0.6", **forwarded
        )
        assert status == 401

    @sync_to_async
    def locked_values() -> list[str]:
        return sorted(AuthLockout.objects.values_list("value", flat=True))

    # The address the proxy forwarded last, never the proxy's own.
    assert await locked_values() == ["10.9.8.7", "EDGE-PROXIED"]

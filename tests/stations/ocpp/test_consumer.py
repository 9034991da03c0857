"""The OCPP consumer in-process, through Channels' WebsocketCommunicator: fast framing and error
path tests for OCPP 1.6J and 2.0.1.

The application is the URLRouter of `stations.ocpp.routing.websocket_urlpatterns`, exactly what
`cpo.asgi.application` routes websockets to (importing cpo.asgi would also retune this
process's garbage collector). The consumer's database calls run on executor threads, as in
production, so the tests are transactional. The channel layer is the in-memory one: nothing
here crosses processes. The real server is covered by test_e2e.py.

Every CALLRESULT is checked against the official response schema of its action, every
CALLERROR for its shape and an error code of the negotiated version.
"""

from __future__ import annotations

import base64
import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.db import InterfaceError, OperationalError

from stations.models import ChargingStation, OcppMessage, StationConnection
from stations.ocpp import protocol
from stations.ocpp.routing import websocket_urlpatterns
from tests.ocpp_client import ERROR_CODES

pytestmark = pytest.mark.django_db(transaction=True)

V16, V201 = protocol.V16, protocol.V201
PASSWORD = "station-secret-0001"
TIMEOUT = 10  # seconds; database calls run on threads of a shared 2-core machine

application = URLRouter(websocket_urlpatterns)

# Per version, the CALLERROR code of each kind of error (1.6J keeps its spellings).
CODES = {
    V16: {
        "rpc": "FormationViolation",
        "format": "FormationViolation",
        "msgtype": "FormationViolation",
        "type": "TypeConstraintViolation",
        "occurrence": "OccurenceConstraintViolation",
        "property": "PropertyConstraintViolation",
    },
    V201: {
        "rpc": "RpcFrameworkError",
        "format": "FormatViolation",
        "msgtype": "MessageTypeNotSupported",
        "type": "TypeConstraintViolation",
        "occurrence": "OccurrenceConstraintViolation",
        "property": "PropertyConstraintViolation",
    },
}


@pytest.fixture(autouse=True)
def _in_memory_channel_layer(settings):
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


def make_station(identity: str, *, password: str | None = PASSWORD, **fields: Any) -> int:
    row = ChargingStation(identity=identity, **fields)
    if password:
        row.set_password(password)
    row.save()
    return row.pk


def basic_auth(username: str, password: str) -> list[tuple[bytes, bytes]]:
    token = base64.b64encode(f"{username}:{password}".encode()).decode()
    return [(b"authorization", f"Basic {token}".encode())]


class Station:
    """One connected station: sends frames and checks what the consumer answers."""

    def __init__(self, communicator: WebsocketCommunicator, protocol_name: str):
        self.ws = communicator
        self.protocol = protocol_name
        self.ids = itertools.count(1)

    async def send(self, frame: Any) -> None:
        text = frame if isinstance(frame, str) else json.dumps(frame)
        await self.ws.send_to(text_data=text)

    async def reply(self) -> list[Any]:
        return json.loads(await self.ws.receive_from(timeout=TIMEOUT))

    async def call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """A well-formed CALL that must be answered with a schema-valid CALLRESULT."""
        message_id = f"c{next(self.ids)}"
        await self.send([protocol.CALL, message_id, action, payload])
        answer = await self.reply()
        assert answer[:2] == [protocol.CALLRESULT, message_id], answer
        protocol.validate(self.protocol, protocol.CALLRESULT, action, answer[2])
        return answer[2]

    async def error(self, frame: Any, code: str, message_id: str) -> list[Any]:
        """Send a frame that must be answered with a well-formed CALLERROR `code`."""
        await self.send(frame)
        answer = await self.reply()
        assert answer[:3] == [protocol.CALLERROR, message_id, code], answer
        assert len(answer) == 5
        assert answer[2] in ERROR_CODES[self.protocol]
        assert isinstance(answer[3], str)
        assert len(answer[3]) <= 255
        assert isinstance(answer[4], dict)
        return answer

    async def heartbeat(self) -> None:
        answer = await self.call("Heartbeat", {})
        assert answer["currentTime"]


@asynccontextmanager
async def connected(
    identity: str,
    protocol_name: str,
    *,
    password: str | None = PASSWORD,
    subprotocols: list[str] | None = None,
) -> AsyncIterator[Station]:
    communicator = WebsocketCommunicator(
        application,
        f"/ocpp/{identity}",
        headers=basic_auth(identity, password) if password else [],
        subprotocols=subprotocols or [protocol_name],
    )
    accepted, chosen = await communicator.connect(timeout=TIMEOUT)
    assert accepted, f"{identity} refused (close code {chosen})"
    assert chosen == protocol_name
    try:
        yield Station(communicator, protocol_name)
    finally:
        await communicator.disconnect(timeout=TIMEOUT)


async def refused(identity: str, headers: list[tuple[bytes, bytes]]) -> bool:
    """Whether the consumer closes before accepting (daphne answers HTTP 403 then)."""
    communicator = WebsocketCommunicator(
        application, f"/ocpp/{identity}", headers=headers, subprotocols=[V16]
    )
    accepted, _ = await communicator.connect(timeout=TIMEOUT)
    # The server then drops the socket and tells the consumer, as daphne does.
    await communicator.disconnect(timeout=TIMEOUT)
    return not accepted


def connections_of(identity: str) -> list[tuple[str, int, bool]]:
    return [
        (c.protocol, c.security_profile, c.disconnected_at is not None)
        for c in StationConnection.objects.filter(station__identity=identity).order_by("pk")
    ]


# --- handshake ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [
        ([V201, V16], V201),
        ([V16, V201], V16),
        (["ocpp1.5", V16, V201], V16),
        (["ocpp2.1", V201], "ocpp2.1"),
        (["ocpp2.2", V201, "ocpp2.1"], V201),
        ([" ocpp1.6 "], V16),  # header values may carry blanks around the commas
    ],
)
async def test_subprotocol_is_the_chargers_first_choice_among_ours(offered, chosen):
    await sync_to_async(make_station)("CP-PROTO")
    async with connected("CP-PROTO", chosen, subprotocols=offered) as station:
        await station.heartbeat()
    assert await sync_to_async(connections_of)("CP-PROTO") == [(chosen, 1, True)]


@pytest.mark.parametrize("offered", [["ocpp1.5"], ["ocpp2.2", "json"], []])
async def test_no_common_subprotocol_completes_the_handshake_then_closes(offered):
    await sync_to_async(make_station)("CP-NOPROTO")
    communicator = WebsocketCommunicator(
        application,
        "/ocpp/CP-NOPROTO",
        headers=basic_auth("CP-NOPROTO", PASSWORD),
        subprotocols=offered,
    )
    accepted, chosen = await communicator.connect(timeout=TIMEOUT)
    assert accepted
    assert chosen is None  # no Sec-WebSocket-Protocol header in the answer
    closed = await communicator.receive_output(timeout=TIMEOUT)
    assert closed["type"] == "websocket.close"
    assert closed["code"] == 1000  # a valid code an application may send (not 1002)
    assert "ocpp1.6" in closed["reason"]
    await communicator.disconnect(timeout=TIMEOUT)
    # Never admitted: no connection recorded, the station stays offline.
    assert await sync_to_async(connections_of)("CP-NOPROTO") == []


async def test_unknown_identity_is_refused():
    assert await refused("NOBODY", basic_auth("NOBODY", PASSWORD))


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([], id="missing"),
        pytest.param(basic_auth("CP-AUTH", "wrong-password-00"), id="wrong-password"),
        pytest.param(basic_auth("CP-OTHER", PASSWORD), id="other-station-username"),
        pytest.param([(b"authorization", b"Basic not-base64!")], id="malformed"),
        pytest.param([(b"authorization", b"Bearer " + PASSWORD.encode())], id="not-basic"),
    ],
)
async def test_wrong_or_missing_basic_auth_is_refused(headers):
    await sync_to_async(make_station)("CP-AUTH")
    await sync_to_async(make_station)("CP-OTHER")
    assert await refused("CP-AUTH", headers)
    assert await sync_to_async(connections_of)("CP-AUTH") == []


@pytest.mark.parametrize("password", [None, "wrong-password-00"])
async def test_a_server_with_the_denial_extension_gets_a_401_with_a_basic_challenge(password):
    """Where the scope announces the ASGI WebSocket Denial Response extension (our daphne,
    cpo.lib.daphne_server), the refusal is an HTTP response of the consumer's own; without
    it (above), a websocket.close, which a server answers with 403."""
    await sync_to_async(make_station)("CP-AUTH")
    communicator = WebsocketCommunicator(
        application,
        "/ocpp/CP-AUTH",
        headers=basic_auth("CP-AUTH", password) if password else [],
        subprotocols=[V16],
    )
    communicator.scope["extensions"] = {"websocket.http.response": {}}
    await communicator.send_input({"type": "websocket.connect"})
    start = await communicator.receive_output(timeout=TIMEOUT)
    body = await communicator.receive_output(timeout=TIMEOUT)
    assert start["type"] == "websocket.http.response.start"
    assert start["status"] == 401
    assert dict(start["headers"])[b"www-authenticate"].startswith(b'Basic realm="OCPP"')
    assert body["type"] == "websocket.http.response.body"
    assert body["more_body"] is False
    await communicator.send_input({"type": "websocket.disconnect", "code": 1006})
    await communicator.wait(timeout=TIMEOUT)
    assert await sync_to_async(connections_of)("CP-AUTH") == []


async def test_right_credentials_are_profile_1_and_no_password_is_profile_0():
    await sync_to_async(make_station)("CP-PW")
    await sync_to_async(make_station)("CP-OPEN", password=None)
    async with connected("CP-PW", V16) as station:
        await station.heartbeat()
    async with connected("CP-OPEN", V201, password=None) as station:
        await station.heartbeat()
    assert await sync_to_async(connections_of)("CP-PW") == [(V16, 1, True)]
    assert await sync_to_async(connections_of)("CP-OPEN") == [(V201, 0, True)]


# --- framing ----------------------------------------------------------------------------------

# (frame, kind of error, message id of the answer): frames no version can read.
BAD_FRAMES = [
    pytest.param("this is not json", "rpc", "-1", id="not-json"),
    pytest.param('[2, "m1", "Heartbeat", {}', "rpc", "-1", id="truncated-json"),
    pytest.param('{"messageTypeId": 2}', "rpc", "-1", id="object-not-array"),
    pytest.param('"Heartbeat"', "rpc", "-1", id="string-not-array"),
    pytest.param("[]", "rpc", "-1", id="empty-array"),
    pytest.param([7, "m7", "Heartbeat", {}], "msgtype", "m7", id="message-type-7"),
    pytest.param(["2", "m8", "Heartbeat", {}], "msgtype", "m8", id="message-type-string"),
    pytest.param([2, "x" * 37, "Heartbeat", {}], "rpc", "-1", id="message-id-37-chars"),
    pytest.param([2, "", "Heartbeat", {}], "rpc", "-1", id="message-id-empty"),
    pytest.param([2, 17, "Heartbeat", {}], "rpc", "-1", id="message-id-not-a-string"),
    pytest.param([2, "m9", "Heartbeat"], "rpc", "m9", id="call-3-elements"),
    pytest.param([2, "m10", "Heartbeat", {}, {}], "rpc", "m10", id="call-5-elements"),
    pytest.param([2, "m11"], "rpc", "m11", id="call-2-elements"),
    pytest.param([2, "m12", 5, {}], "rpc", "m12", id="action-not-a-string"),
    pytest.param([2, "m13", "", {}], "rpc", "m13", id="action-empty"),
    pytest.param([2, "m14", "Heartbeat", []], "format", "m14", id="payload-array"),
    pytest.param([2, "m15", "Heartbeat", "{}"], "format", "m15", id="payload-string"),
    pytest.param([2, "m16", "Heartbeat", None], "format", "m16", id="payload-null"),
    pytest.param([3, "m17"], "rpc", "m17", id="callresult-2-elements"),
    pytest.param([4, "m18", "GenericError"], "rpc", "m18", id="callerror-3-elements"),
]


@pytest.mark.parametrize("protocol_name", [V16, V201])
@pytest.mark.parametrize(("frame", "kind", "message_id"), BAD_FRAMES)
async def test_a_bad_frame_gets_the_versions_callerror_and_the_connection_lives_on(
    protocol_name, frame, kind, message_id
):
    await sync_to_async(make_station)("CP-FRAME")
    async with connected("CP-FRAME", protocol_name) as station:
        await station.error(frame, CODES[protocol_name][kind], message_id)
        await station.heartbeat()


@pytest.mark.parametrize("protocol_name", [V16, V201])
async def test_binary_frames_are_read_as_utf8_text(protocol_name):
    await sync_to_async(make_station)("CP-BINARY")
    async with connected("CP-BINARY", protocol_name) as station:
        await station.ws.send_to(bytes_data=b'[2,"b1","Heartbeat",{}]')
        answer = await station.reply()
        assert answer[:2] == [protocol.CALLRESULT, "b1"]
        protocol.validate(protocol_name, protocol.CALLRESULT, "Heartbeat", answer[2])
        await station.ws.send_to(bytes_data=b"\xff\xfe not utf-8")
        assert (await station.reply())[:3] == [
            protocol.CALLERROR,
            "-1",
            CODES[protocol_name]["rpc"],
        ]
        await station.heartbeat()


@pytest.mark.parametrize("protocol_name", [V16, V201])
async def test_answers_to_calls_never_made_are_ignored(protocol_name):
    await sync_to_async(make_station)("CP-STRAY")
    async with connected("CP-STRAY", protocol_name) as station:
        await station.send([protocol.CALLRESULT, "never-sent", {"status": "Accepted"}])
        await station.send([protocol.CALLERROR, "never-sent-2", "GenericError", "", {}])
        assert await station.ws.receive_nothing(timeout=0.3)
        await station.heartbeat()


# --- schema validation ------------------------------------------------------------------------

# Per version: (action, payload, kind of error).
SCHEMA_VIOLATIONS = {
    V16: [
        ("Authorize", {"idTag": 5}, "type"),
        ("Authorize", {}, "occurrence"),
        ("Authorize", {"idTag": "A" * 21}, "property"),  # maxLength 20
        ("Authorize", {"idTag": "A", "bogus": 1}, "format"),  # additionalProperties
        (
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": "Dancing"},
            "property",
        ),
        ("StatusNotification", {"connectorId": "1", "errorCode": "NoError"}, "occurrence"),
        ("MeterValues", {"connectorId": 1, "meterValue": []}, "occurrence"),  # minItems 1
        (
            "StartTransaction",
            {"connectorId": 1, "idTag": "A", "meterStart": 1.5, "timestamp": "2026-01-01T00:00Z"},
            "type",
        ),
    ],
    V201: [
        ("Authorize", {"idToken": {"idToken": 5, "type": "ISO14443"}}, "type"),
        ("Authorize", {}, "occurrence"),
        ("Authorize", {"idToken": {"idToken": "A"}}, "occurrence"),
        ("Authorize", {"idToken": {"idToken": "A", "type": "Magic"}}, "property"),
        ("Authorize", {"idToken": {"idToken": "A", "type": "ISO14443"}, "bogus": 1}, "format"),
        (
            "StatusNotification",
            {
                "timestamp": "2026-01-01T00:00:00Z",
                "connectorStatus": "Dancing",
                "evseId": 1,
                "connectorId": 1,
            },
            "property",
        ),
        ("MeterValues", {"evseId": "1", "meterValue": [{}]}, "type"),
        ("MeterValues", {"evseId": 1, "meterValue": []}, "occurrence"),  # minItems 1
    ],
}


@pytest.mark.parametrize(
    ("protocol_name", "action", "payload", "kind"),
    [
        pytest.param(version, action, payload, kind, id=f"{version}-{action}-{kind}-{n}")
        for version, cases in SCHEMA_VIOLATIONS.items()
        for n, (action, payload, kind) in enumerate(cases)
    ],
)
async def test_schema_violations_get_their_constraint_code(protocol_name, action, payload, kind):
    await sync_to_async(make_station)("CP-SCHEMA")
    async with connected("CP-SCHEMA", protocol_name) as station:
        answer = await station.error(
            [protocol.CALL, "s1", action, payload], CODES[protocol_name][kind], "s1"
        )
        assert answer[3]  # says which field, for the station's log
        await station.heartbeat()


# --- routing ----------------------------------------------------------------------------------

# Per version: actions a station may not send: (action, payload, code).
NOT_FOR_THE_STATION: dict[str, list[tuple[str, dict[str, Any], str]]] = {
    V16: [
        ("FlyToTheMoon", {}, "NotImplemented"),
        ("heartbeat", {}, "NotImplemented"),  # actions are CamelCase; nothing else is routed
        ("TransactionEvent", {}, "NotImplemented"),  # a 2.0.1 action
        ("Reset", {"type": "Hard"}, "NotSupported"),  # CSMS -> station
        ("RemoteStartTransaction", {"idTag": "A"}, "NotSupported"),
        ("GetConfiguration", {}, "NotSupported"),
    ],
    V201: [
        ("FlyToTheMoon", {}, "NotImplemented"),
        ("handler_for", {}, "NotImplemented"),
        ("StartTransaction", {}, "NotImplemented"),  # a 1.6 action
        ("Reset", {"type": "Immediate"}, "NotSupported"),
        ("RequestStartTransaction", {}, "NotSupported"),
        ("CostUpdated", {"totalCost": 1, "transactionId": "t"}, "NotSupported"),
    ],
}


@pytest.mark.parametrize(
    ("protocol_name", "action", "payload", "code"),
    [
        pytest.param(version, action, payload, code, id=f"{version}-{action}")
        for version, cases in NOT_FOR_THE_STATION.items()
        for action, payload, code in cases
    ],
)
async def test_unknown_and_csms_actions_are_refused(protocol_name, action, payload, code):
    await sync_to_async(make_station)("CP-ROUTE")
    async with connected("CP-ROUTE", protocol_name) as station:
        await station.error([protocol.CALL, "r1", action, payload], code, "r1")
        await station.heartbeat()


BOOT: dict[str, dict[str, Any]] = {
    V16: {"chargePointVendor": "ACME", "chargePointModel": "Wallbox"},
    V201: {"chargingStation": {"vendorName": "ACME", "model": "Wallbox"}, "reason": "PowerUp"},
}
AUTHORIZE: dict[str, dict[str, Any]] = {
    V16: {"idTag": "CARD-1"},
    V201: {"idToken": {"idToken": "CARD-1", "type": "ISO14443"}},
}
STATUS = {
    V16: {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
    V201: {
        "timestamp": "2026-01-01T00:00:00Z",
        "connectorStatus": "Available",
        "evseId": 1,
        "connectorId": 1,
    },
}


@pytest.mark.parametrize("protocol_name", [V16, V201])
@pytest.mark.parametrize("registration", ["Pending", "Rejected"])
async def test_a_station_not_accepted_may_only_boot_and_heartbeat(protocol_name, registration):
    await sync_to_async(make_station)("CP-PENDING", registration_status=registration)
    async with connected("CP-PENDING", protocol_name) as station:
        boot = await station.call("BootNotification", BOOT[protocol_name])
        assert boot["status"] == registration
        assert 0 < boot["interval"] <= 60  # the wait before the next BootNotification
        await station.heartbeat()
        for action, payload in (
            ("Authorize", AUTHORIZE[protocol_name]),
            ("StatusNotification", STATUS[protocol_name]),
            ("Authorize", {}),  # refused before its payload is even looked at
        ):
            await station.error([protocol.CALL, "p1", action, payload], "SecurityError", "p1")
            await station.heartbeat()
        # An unknown action is still unknown, whatever the registration.
        await station.error([protocol.CALL, "p2", "FlyToTheMoon", {}], "NotImplemented", "p2")
        await station.heartbeat()


@pytest.mark.parametrize("protocol_name", [V16, V201])
async def test_an_accepted_pending_station_is_served_from_its_next_boot(protocol_name):
    station_id = await sync_to_async(make_station)("CP-LATER", registration_status="Pending")

    def accept() -> None:
        from stations.services import station_accept

        station_accept(station=ChargingStation.objects.get(pk=station_id))

    async with connected("CP-LATER", protocol_name) as station:
        assert (await station.call("BootNotification", BOOT[protocol_name]))["status"] == "Pending"
        await sync_to_async(accept)()
        # This connection still holds the registration it booted with...
        await station.error(
            [protocol.CALL, "a1", "Authorize", AUTHORIZE[protocol_name]], "SecurityError", "a1"
        )
        # ...until the station boots again.
        boot = await station.call("BootNotification", BOOT[protocol_name])
        assert boot["status"] == "Accepted"
        auth = await station.call("Authorize", AUTHORIZE[protocol_name])
        info = auth["idTagInfo"] if protocol_name == V16 else auth["idTokenInfo"]
        assert info["status"] == "Invalid"  # an unknown card, but the answer of an Accepted station


@pytest.mark.parametrize("protocol_name", [V16, V201])
async def test_a_failing_service_is_an_internal_error_and_the_connection_lives_on(
    protocol_name, monkeypatch
):
    from sessions import services as charging

    def broken(**kwargs: Any) -> None:
        raise RuntimeError("database on fire")

    # Where the OCPP edge's status service looks it up.
    monkeypatch.setattr(charging, "connector_status_changed", broken)
    await sync_to_async(make_station)("CP-BROKEN")
    async with connected("CP-BROKEN", protocol_name) as station:
        answer = await station.error(
            [protocol.CALL, "i1", "StatusNotification", STATUS[protocol_name]],
            "InternalError",
            "i1",
        )
        assert "fire" not in answer[3]  # no internals on the wire
        await station.heartbeat()


# --- the message log --------------------------------------------------------------------------


def logged(identity: str) -> list[tuple[str, int | None, str, str, bool, str]]:
    return [
        (m.direction, m.message_type, m.message_id, m.action, m.is_error, m.frame)
        for m in OcppMessage.objects.filter(identity=identity).order_by("pk")
    ]


@pytest.mark.parametrize("protocol_name", [V16, V201])
async def test_erroneous_frames_and_their_callerrors_are_logged(protocol_name):
    station_id = await sync_to_async(make_station)("CP-LOG")
    codes = CODES[protocol_name]
    async with connected("CP-LOG", protocol_name) as station:
        not_json = await station.error("this is not json", codes["rpc"], "-1")
        bad_type = await station.error([7, "l2", "Heartbeat", {}], codes["msgtype"], "l2")
        schema = await station.error(
            [protocol.CALL, "l3", "Authorize", {}], codes["occurrence"], "l3"
        )
        unknown = await station.error(
            [protocol.CALL, "l4", "FlyToTheMoon", {}], "NotImplemented", "l4"
        )
        # A good frame of an untraced station is not logged. The consumer answers one frame
        # at a time, so once this answer is in, every earlier log write is done.
        await station.heartbeat()

    compact = json.dumps
    assert await sync_to_async(logged)("CP-LOG") == [
        ("in", None, "", "", True, "this is not json"),
        ("out", 4, "-1", "", True, compact(not_json, separators=(",", ":"))),
        ("in", 7, "l2", "", True, '[7, "l2", "Heartbeat", {}]'),
        ("out", 4, "l2", "", True, compact(bad_type, separators=(",", ":"))),
        ("in", 2, "l3", "Authorize", True, '[2, "l3", "Authorize", {}]'),
        ("out", 4, "l3", "", True, compact(schema, separators=(",", ":"))),
        ("in", 2, "l4", "FlyToTheMoon", True, '[2, "l4", "FlyToTheMoon", {}]'),
        ("out", 4, "l4", "", True, compact(unknown, separators=(",", ":"))),
    ]
    stations = await sync_to_async(
        lambda: set(OcppMessage.objects.values_list("station_id", flat=True))
    )()
    assert stations == {station_id}


@pytest.mark.parametrize("protocol_name", [V16, V201])
async def test_a_traced_station_logs_every_frame(protocol_name):
    await sync_to_async(make_station)("CP-TRACE", trace_enabled=True)
    async with connected("CP-TRACE", protocol_name) as station:
        await station.heartbeat()
        await station.heartbeat()
    rows = await sync_to_async(logged)("CP-TRACE")
    assert [(d, t, i, a, e) for d, t, i, a, e, _ in rows] == [
        ("in", 2, "c1", "Heartbeat", False),
        ("out", 3, "c1", "", False),
        ("in", 2, "c2", "Heartbeat", False),
        ("out", 3, "c2", "", False),
    ]


@pytest.mark.parametrize("protocol_name", [V16, V201])
async def test_an_answer_of_ours_that_breaks_its_schema_is_our_internal_error(
    protocol_name, monkeypatch
):
    """The station's BootNotification was valid: a schema violation in our answer must not
    come back to it as a constraint violation of its own message."""
    from sessions import services as charging
    from stations import services

    monkeypatch.setattr(
        charging, "station_booted", lambda **kwargs: services.BootResult("Maybe", 300)
    )
    await sync_to_async(make_station)("CP-OURBUG")
    async with connected("CP-OURBUG", protocol_name) as station:
        await station.error(
            [protocol.CALL, "b1", "BootNotification", BOOT[protocol_name]], "InternalError", "b1"
        )
        await station.heartbeat()


# --- side writes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "error",
    [OperationalError("database is locked"), InterfaceError("connection already closed")],
    ids=["locked", "interface"],
)
async def test_a_failing_last_seen_write_never_drops_the_station(
    error, monkeypatch, settings, caplog
):
    from stations import services as network
    from stations.ocpp import limits

    settings.OCPP_LAST_SEEN_WRITE_INTERVAL = 0  # every frame writes: every frame fails
    limits.throttle.last.clear()
    attempts: list[int] = []

    def station_seen(*, station_id: int) -> None:
        attempts.append(station_id)
        raise error

    monkeypatch.setattr(network, "station_seen", station_seen)
    await sync_to_async(make_station)("CP-SEEN-FAILS")
    async with connected("CP-SEEN-FAILS", V16) as station:
        for _ in range(4):
            await station.heartbeat()
        await station.heartbeat()
    # Tried again with every frame once the interval passed, logged once, never closed.
    assert len(attempts) == 5
    lines = [r for r in caplog.records if "station_seen failed" in r.getMessage()]
    assert len(lines) == 1

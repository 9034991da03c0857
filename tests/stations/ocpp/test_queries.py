"""Query-count guards for the charger messages on the OCPP hot path, 1.6J and 2.0.1.

How the real path is measured: each test drives the per-version handler coroutine the consumer
calls for the action (`Handlers(consumer).<Action>(payload)`, after validating the payload
against the official schema as the consumer does, and validating the answer afterwards), so the
payload translation, the service call and its arguments are exactly production's. Only the
`db` wrapper is replaced (`stations.ocpp.{handlers,v16.handlers,v201.handlers,consumer}.db`):
in production it is `database_sync_to_async(thread_sensitive=False)`, which runs the service
on an executor thread with its own connection, invisible to `django_assert_num_queries` (it
counts the current connection only). The replacement calls the service synchronously in the
test's thread (DJANGO_ALLOW_ASYNC_UNSAFE allows the ORM under the running loop), so every
statement lands on the counted connection. The handlers get a fake consumer carrying what they
read: station_id, registration_status, cost_display_enabled and the real running_cost.

The tests are transactional on purpose: the services then run in autocommit, as they do in
production, and the counts include their transaction control exactly as the server issues it
(BEGIN/COMMIT of @transaction.atomic, SAVEPOINTs of nested blocks). In a test wrapped in a
transaction the outer BEGIN/COMMIT would become SAVEPOINTs and bulk_create's own transaction
would vanish. After-commit hooks run as in production (session start/end enqueue Celery tasks
on the broker; no query). Measured on the embedded SQLite; Django logs BEGIN/COMMIT on
PostgreSQL too and every statement here has its PostgreSQL twin (SELECT ... FOR UPDATE, ON
CONFLICT DO NOTHING), so the counts should hold there. SQLite splits a bulk insert above 999
parameters (58 samples of 17 columns); the batches here stay below that.

The connection-level costs are measured through the real consumer (WebsocketCommunicator,
same db replacement, the application run in the test's context so that it uses the counted
connection): the admission at connect, the per-frame overhead (none but the throttled
last-seen write), the message log of an erroneous frame, and the disconnect.

The counts are pinned as measured: a change that adds a query must fail here and say why.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any, cast

import pytest
from asgiref.sync import sync_to_async
from channels.routing import URLRouter
from channels.testing import WebsocketCommunicator
from django.utils import timezone

from sessions.models import ChargingSession, IdToken, MeterSample
from stations.models import ChargingStation, Connector, Evse
from stations.ocpp import consumer as consumer_module
from stations.ocpp import handlers as base_handlers
from stations.ocpp import protocol
from stations.ocpp.consumer import OcppConsumer
from stations.ocpp.routing import websocket_urlpatterns
from stations.ocpp.v16 import handlers as v16
from stations.ocpp.v201 import handlers as v201
from tariffs.services import _ENGINES

pytestmark = pytest.mark.django_db(transaction=True)

V16, V201 = protocol.V16, protocol.V201
PASSWORD = "station-secret-0001"
CARD = "CARD-0001"
START = timezone.now().replace(microsecond=0) - timedelta(hours=1)


def in_this_thread(function: Callable[..., Any]) -> Callable[..., Awaitable[Any]]:
    """The stand-in for stations.ocpp.db.db: the service call runs here, on the counted
    connection."""

    async def call(*args: Any, **kwargs: Any) -> Any:
        return function(*args, **kwargs)

    return call


@pytest.fixture(autouse=True)
def _services_on_the_counted_connection(monkeypatch, settings):
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    for module in (base_handlers, v16, v201, consumer_module):
        monkeypatch.setattr(module, "db", in_this_thread)
    settings.CHANNEL_LAYERS = {"default": {"BACKEND": "channels.layers.InMemoryChannelLayer"}}


@pytest.fixture(autouse=True)
def _webhook_subscriptions_known(transactional_db):  # noqa: ARG001
    """Which webhook endpoints want which event is cached for every process (cpo.outbox.
    webhooks): a process reads it once after each change of the endpoints, then a publish
    nobody subscribed to costs no query. The counts below are that warm path; the cold read
    is one query per process per change, not per message. The same holds for the partners
    that receive OCPI pushes (roaming.push.push_targets): none here, read once; and for the
    energy-managed stations (stations.energy.triggers.managed_sites), read at most every
    ENERGY_MANAGED_CACHE_SECONDS per process."""
    from cpo.outbox.webhooks import subscriptions
    from roaming.push import push_targets
    from stations.energy.triggers import managed_sites

    subscriptions()
    push_targets()
    managed_sites(refresh=True)


class FakeConsumer:
    """What the handlers read of their consumer."""

    def __init__(self, station_id: int):
        self.station_id = station_id
        self.registration_status = "Accepted"
        self.cost_display_enabled = False


def make_station(identity: str, protocol_name: str, **fields: Any) -> int:
    """A station as configured by the operator: EVSE 1 with connector 1."""
    station = ChargingStation(identity=identity, protocol=protocol_name, **fields)
    station.set_password(PASSWORD)
    station.save()
    evse = Evse.objects.create(station=station, evse_id=1, uid=f"{identity}-1")
    Connector.objects.create(station=station, evse=evse, connector_id=1)
    return station.pk


@pytest.fixture
def card(transactional_db):  # noqa: ARG001
    # A plain card: no group, no restrictions, no limits (the common case).
    return IdToken.objects.create(uid=CARD)


@pytest.fixture
def cp16(card):  # noqa: ARG001
    return v16.Handlers(cast(OcppConsumer, FakeConsumer(make_station("Q-16", V16))))


@pytest.fixture
def cp201(card):  # noqa: ARG001
    return v201.Handlers(cast(OcppConsumer, FakeConsumer(make_station("Q-201", V201))))


@sync_to_async
def _live_cost(tx: int) -> Any:
    return ChargingSession.objects.get(ocpp16_transaction_id=tx).live_cost


@sync_to_async
def _default_tariff() -> None:
    """A tariff in force everywhere, so that a start fixes (and inserts) its version."""
    from tariffs.models import PriceComponent, Tariff, TariffAssignment, TariffElement
    from tariffs.services import tariff_version_publish

    tariff = Tariff.objects.create(tariff_id="Q-T", name="Q", currency="EUR")
    element = TariffElement.objects.create(tariff=tariff)
    PriceComponent.objects.create(element=element, type="ENERGY", price=1, vat=21)
    tariff_version_publish(tariff=tariff, effective_from=START - timedelta(days=1))
    TariffAssignment.objects.create(tariff=tariff)


async def answer(handlers: Any, action: str, payload: dict[str, Any]) -> dict[str, Any]:
    """Run the handler of `action` as the consumer does, schema checks included."""
    version = V16 if isinstance(handlers, v16.Handlers) else V201
    protocol.validate(version, protocol.CALL, action, payload)
    response = await handlers.handler_for(action)(payload)
    protocol.validate(version, protocol.CALLRESULT, action, response)
    return response


def ts(moment: Any) -> str:
    return moment.isoformat().replace("+00:00", "Z")


# Up to eight distinct sampled values per timestamp, as a 3-phase AC charger reports them.
MEASURANDS = [
    ("Energy.Active.Import.Register", "", "Wh"),
    ("Power.Active.Import", "", "W"),
    ("Current.Import", "L1", "A"),
    ("Current.Import", "L2", "A"),
    ("Current.Import", "L3", "A"),
    ("Voltage", "L1-N", "V"),
    ("SoC", "", "Percent"),
    ("Power.Offered", "", "W"),
]


def meter_values(count: int, *, v201_format: bool, first_minute: int = 1) -> list[dict[str, Any]]:
    """`count` sampled values, eight per meterValue, one minute apart."""
    batches: list[dict[str, Any]] = []
    for n in range(count):
        if n % len(MEASURANDS) == 0:
            moment = START + timedelta(minutes=first_minute + len(batches))
            batches.append({"timestamp": ts(moment), "sampledValue": []})
        measurand, phase, unit = MEASURANDS[n % len(MEASURANDS)]
        value = 1000 + 100 * len(batches) if n % len(MEASURANDS) == 0 else 50
        sampled: dict[str, Any] = {"measurand": measurand}
        if v201_format:
            sampled |= {"value": value, "unitOfMeasure": {"unit": unit}}
        else:
            sampled |= {"value": str(value), "unit": unit}
        if phase:
            sampled["phase"] = phase
        batches[-1]["sampledValue"].append(sampled)
    return batches


def sample_inserts(captured: Any) -> int:
    return sum(
        1
        for query in captured.captured_queries
        if "INSERT" in query["sql"] and '"charging_metersample"' in query["sql"]
    )


# --- OCPP 1.6J --------------------------------------------------------------------------------


async def test_v16_boot_notification(cp16, django_assert_num_queries):
    # BEGIN; SELECT the station (FOR UPDATE); UPDATE the station; INSERT the boot (the boot
    # history the reboot-loop detector counts); COMMIT. Then SELECT its open sessions: a
    # station that boots again may have forgotten them (none here; only those there cost more).
    with django_assert_num_queries(6):
        boot = await answer(
            cp16,
            "BootNotification",
            {"chargePointVendor": "ACME", "chargePointModel": "Wallbox", "firmwareVersion": "1"},
        )
    assert boot["status"] == "Accepted"


async def test_v16_heartbeat(cp16, django_assert_num_queries):
    # Nothing: liveness is the consumer's throttled last-seen write (see below).
    with django_assert_num_queries(0):
        await answer(cp16, "Heartbeat", {})


async def test_v16_status_notification_of_a_connector(cp16, django_assert_num_queries):
    # BEGIN; INSERT the status event; UPDATE the connector (only if newer); UPDATE the EVSE;
    # COMMIT.
    with django_assert_num_queries(5):
        await answer(
            cp16,
            "StatusNotification",
            {
                "connectorId": 1,
                "errorCode": "NoError",
                "status": "Preparing",
                "timestamp": ts(START),
            },
        )
    assert await _connector_status(cp16.station_id, 1) == "Preparing"


async def test_v16_status_notification_available(cp16, django_assert_num_queries):
    # As any status report (5), and Available means no transaction runs on the connector:
    # SELECT the sessions still open there (none, the usual case).
    with django_assert_num_queries(6):
        await answer(
            cp16,
            "StatusNotification",
            {"connectorId": 1, "errorCode": "NoError", "status": "Available"},
        )
    assert await _connector_status(cp16.station_id, 1) == "Available"


async def test_v16_status_notification_of_the_station(cp16, django_assert_num_queries):
    # Connector 0: BEGIN; INSERT the status event; UPDATE the station; COMMIT.
    with django_assert_num_queries(4):
        await answer(
            cp16,
            "StatusNotification",
            {
                "connectorId": 0,
                "errorCode": "NoError",
                "status": "Available",
                "timestamp": ts(START),
            },
        )


async def test_v16_status_notification_of_a_connector_never_configured(
    cp16, django_assert_num_queries
):
    # The first report of connector 2 learns it, once: BEGIN; INSERT the event; UPDATE the
    # connector (no row); SELECT whether it exists; SELECT the station (for the EVSE uid, taken
    # before the EVSE is looked up); SELECT the EVSE; SAVEPOINT; INSERT the EVSE; RELEASE;
    # INSERT the connector; UPDATE the EVSE; COMMIT. Available: SELECT the sessions still open
    # on the connector (none).
    with django_assert_num_queries(13):
        await answer(
            cp16,
            "StatusNotification",
            {
                "connectorId": 2,
                "errorCode": "NoError",
                "status": "Available",
                "timestamp": ts(START),
            },
        )
    assert await _connector_status(cp16.station_id, 2) == "Available"


async def test_v16_authorize(cp16, django_assert_num_queries):
    # SELECT the token with its group, account and driver (restrictions as EXISTS); INSERT the
    # decision. No transaction: one write.
    with django_assert_num_queries(2):
        auth = await answer(cp16, "Authorize", {"idTag": CARD})
    assert auth["idTagInfo"]["status"] == "Accepted"


START_16 = {"connectorId": 1, "idTag": CARD, "meterStart": 1000, "timestamp": ts(START)}


async def test_v16_start_transaction(cp16, django_assert_num_queries):
    await _default_tariff()
    # BEGIN; SELECT a session of this start (retry check) and any still open on the EVSE (a
    # forgotten one is closed), in one statement, FOR UPDATE; SELECT the token; INSERT the
    # decision; INSERT the transactionId sequence row; INSERT the session; the price fixed in
    # the same transaction: SELECT the token's group and issuer (a card paying through no
    # account of its own), SELECT the assignments with the version in force (one query, no
    # JSON), INSERT the session's version; COMMIT.
    with django_assert_num_queries(10):
        started = await answer(cp16, "StartTransaction", START_16)
    assert started["idTagInfo"]["status"] == "Accepted"


async def test_v16_start_transaction_with_a_concurrency_limit(cp16, django_assert_num_queries):
    await _limit_card(1)
    # As above, plus: SELECT the token FOR UPDATE (its limit is decided under the row lock, so
    # two stations cannot both pass it); COUNT its active sessions; and the price fixed (the
    # card's group and issuer, the version in force: no tariff here, so no insert). 11; a card
    # without limits or budgets takes neither of the first two.
    with django_assert_num_queries(11):
        started = await answer(cp16, "StartTransaction", START_16)
    assert started["idTagInfo"]["status"] == "Accepted"


async def test_v16_start_transaction_retried(cp16, django_assert_num_queries):
    first = await answer(cp16, "StartTransaction", START_16)
    # BEGIN; SELECT the session of this start; COMMIT: the same transactionId, nothing written.
    with django_assert_num_queries(3):
        again = await answer(cp16, "StartTransaction", START_16)
    assert again["transactionId"] == first["transactionId"]


@pytest.mark.parametrize("samples", [1, 8, 40])
async def test_v16_meter_values(cp16, django_assert_num_queries, samples):
    await _default_tariff()
    _ENGINES.clear()  # a fresh process: the version's engine form is not parsed yet
    tx = (await answer(cp16, "StartTransaction", START_16))["transactionId"]

    def payload(first_minute: int) -> dict[str, Any]:
        return {
            "connectorId": 1,
            "transactionId": tx,
            "meterValue": meter_values(samples, v201_format=False, first_minute=first_minute),
        }

    # The first meter value of a session also starts its running cost: SELECT its tariff
    # version and site zone, SELECT the version's JSON (parsed once per process).
    with django_assert_num_queries(7):
        await answer(cp16, "MeterValues", payload(1))
    # Every later one: BEGIN; SELECT the session (FOR UPDATE); INSERT all samples in one
    # statement; UPDATE the session's live values and cost so far (extended from the state on
    # the row, no history read); COMMIT. The same for any batch size.
    with django_assert_num_queries(5) as captured:
        await answer(cp16, "MeterValues", payload(10))
    assert sample_inserts(captured) == 1
    assert await _samples_of(tx) == 2 * samples
    assert await _live_cost(tx) is not None


async def test_v16_meter_values_re_sent(cp16, django_assert_num_queries):
    tx = (await answer(cp16, "StartTransaction", START_16))["transactionId"]
    payload = {
        "connectorId": 1,
        "transactionId": tx,
        "meterValue": meter_values(8, v201_format=False),
    }
    await answer(cp16, "MeterValues", payload)
    # A retried message: BEGIN; SELECT the session (FOR UPDATE); INSERT (every row hits the
    # unique key; the database's rowcount says so, at no cost); SELECT the stored rows, to
    # tell a harmless retry from a re-send with other values; COMMIT. No UPDATE: old readings
    # do not move the session. Only a batch with duplicates pays the SELECT.
    with django_assert_num_queries(5):
        await answer(cp16, "MeterValues", payload)
    assert await _samples_of(tx) == 8


async def test_v16_stop_transaction(cp16, django_assert_num_queries):
    tx = (await answer(cp16, "StartTransaction", START_16))["transactionId"]
    end = START + timedelta(minutes=30)
    payload = {
        "transactionId": tx,
        "idTag": CARD,
        "meterStop": 9000,
        "timestamp": ts(end),
        "reason": "EVDisconnected",
        "transactionData": [
            {
                "timestamp": ts(end),
                "sampledValue": [
                    {"value": "9000", "context": "Transaction.End", "unit": "Wh"},
                    {"value": "80", "context": "Transaction.End", "measurand": "SoC"},
                ],
            }
        ],
    }
    # BEGIN; SELECT the session (FOR UPDATE); INSERT the transactionData samples; SELECT the
    # token; INSERT the decision; SELECT the session's energy register samples (the energy
    # rule of sessions.energy, which the rating reads too); UPDATE the session; COMMIT.
    with django_assert_num_queries(8) as captured:
        stopped = await answer(cp16, "StopTransaction", payload)
    assert sample_inserts(captured) == 1
    assert stopped["idTagInfo"]["status"] == "Accepted"
    assert await _session_status(tx) == "completed"


async def test_v16_stop_transaction_without_tag_or_data(cp16, django_assert_num_queries):
    tx = (await answer(cp16, "StartTransaction", START_16))["transactionId"]
    payload = {"transactionId": tx, "meterStop": 9000, "timestamp": ts(START + timedelta(hours=1))}
    # BEGIN; SELECT the session (FOR UPDATE); SELECT its energy register samples; UPDATE the
    # session; COMMIT.
    with django_assert_num_queries(5):
        assert await answer(cp16, "StopTransaction", payload) == {}


# --- OCPP 2.0.1 -------------------------------------------------------------------------------


async def test_v201_boot_notification(cp201, django_assert_num_queries):
    # BEGIN; SELECT the station (FOR UPDATE); UPDATE the station; INSERT the boot; COMMIT;
    # SELECT its open sessions (the station is asked about each, if any: GetTransactionStatus).
    with django_assert_num_queries(6):
        boot = await answer(
            cp201,
            "BootNotification",
            {"chargingStation": {"vendorName": "ACME", "model": "Wallbox"}, "reason": "PowerUp"},
        )
    assert boot["status"] == "Accepted"


async def test_v201_heartbeat(cp201, django_assert_num_queries):
    with django_assert_num_queries(0):
        await answer(cp201, "Heartbeat", {})


async def test_v201_status_notification(cp201, django_assert_num_queries):
    # BEGIN; INSERT the status event; UPDATE the connector (only if newer); UPDATE the EVSE;
    # COMMIT.
    with django_assert_num_queries(5):
        await answer(
            cp201,
            "StatusNotification",
            {"timestamp": ts(START), "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1},
        )
    assert await _connector_status(cp201.station_id, 1) == "Occupied"


async def test_v201_status_notification_available(cp201, django_assert_num_queries):
    # As any status report (5), plus SELECT the sessions still open on the EVSE (none).
    with django_assert_num_queries(6):
        await answer(
            cp201,
            "StatusNotification",
            {"timestamp": ts(START), "connectorStatus": "Available", "evseId": 1, "connectorId": 1},
        )


async def test_v201_authorize(cp201, django_assert_num_queries):
    # SELECT the token (joined, restrictions as EXISTS); INSERT the decision.
    with django_assert_num_queries(2):
        auth = await answer(cp201, "Authorize", {"idToken": {"idToken": CARD, "type": "ISO14443"}})
    assert auth["idTokenInfo"]["status"] == "Accepted"


TX = "TX-0001"
TOKEN_201 = {"idToken": CARD, "type": "ISO14443"}


def event(kind: str, seq_no: int, minute: int, **fields: Any) -> dict[str, Any]:
    info = {"transactionId": TX, "chargingState": "Charging"}
    if kind == "Ended":
        info = {"transactionId": TX, "stoppedReason": "EVDisconnected"}
    return {
        "eventType": kind,
        "timestamp": ts(START + timedelta(minutes=minute)),
        "triggerReason": {
            "Started": "Authorized",
            "Updated": "MeterValuePeriodic",
            "Ended": "EVCommunicationLost",
        }[kind],
        "seqNo": seq_no,
        "transactionInfo": info,
        **fields,
    }


STARTED = event(
    "Started",
    0,
    0,
    evse={"id": 1, "connectorId": 1},
    idToken=TOKEN_201,
    meterValue=[
        {
            "timestamp": ts(START),
            "sampledValue": [{"value": 1000, "context": "Transaction.Begin"}],
        }
    ],
)


async def test_v201_transaction_event_started(cp201, django_assert_num_queries):
    # BEGIN; SELECT the session (FOR UPDATE); INSERT the session; SAVEPOINT; INSERT the event
    # record; RELEASE; SELECT the recorded seqNos (a first event is not "the next seqNo");
    # INSERT the samples; SELECT the token; INSERT the decision; UPDATE the session; the
    # price fixed (SELECT the token's group and issuer, SELECT the version in force, INSERT the
    # session's version); the running cost started from its samples (SELECT the version and
    # site zone, SELECT the version's JSON, parsed once per process); COMMIT.
    await _default_tariff()
    _ENGINES.clear()
    with django_assert_num_queries(17) as captured:
        started = await answer(cp201, "TransactionEvent", STARTED)
    assert sample_inserts(captured) == 1
    assert started["idTokenInfo"]["status"] == "Accepted"


@pytest.mark.parametrize("samples", [1, 8, 40])
async def test_v201_transaction_event_updated(cp201, django_assert_num_queries, samples):
    await answer(cp201, "TransactionEvent", STARTED)
    updated = event("Updated", 1, 1, meterValue=meter_values(samples, v201_format=True))
    # BEGIN; SELECT the session (FOR UPDATE); SAVEPOINT; INSERT the event record; RELEASE;
    # INSERT the samples in one statement; UPDATE the session; COMMIT. The same for any batch.
    with django_assert_num_queries(8) as captured:
        assert await answer(cp201, "TransactionEvent", updated) == {}
    assert sample_inserts(captured) == 1
    assert await _samples_of(TX) == 1 + samples


async def test_v201_transaction_event_ended(cp201, django_assert_num_queries):
    await answer(cp201, "TransactionEvent", STARTED)
    await answer(
        cp201,
        "TransactionEvent",
        event("Updated", 1, 1, meterValue=meter_values(8, v201_format=True)),
    )
    ended = event(
        "Ended",
        2,
        30,
        idToken=TOKEN_201,
        meterValue=[
            {
                "timestamp": ts(START + timedelta(minutes=30)),
                "sampledValue": [{"value": 9000, "context": "Transaction.End"}],
            }
        ],
    )
    # BEGIN; SELECT the session (FOR UPDATE); SAVEPOINT; INSERT the event record; RELEASE;
    # INSERT the samples; SELECT the token; INSERT the decision; SELECT the session's energy
    # register samples (the energy rule); UPDATE the session; COMMIT.
    with django_assert_num_queries(11):
        await answer(cp201, "TransactionEvent", ended)
    assert await _session_status(TX) == "completed"


async def test_v201_transaction_event_retried(cp201, django_assert_num_queries):
    await answer(cp201, "TransactionEvent", STARTED)
    # BEGIN; SELECT the session (FOR UPDATE); SAVEPOINT; INSERT the event record (conflict);
    # ROLLBACK TO SAVEPOINT; RELEASE; SELECT the token (for idTokenInfo); COMMIT.
    with django_assert_num_queries(8):
        again = await answer(cp201, "TransactionEvent", STARTED)
    assert again["idTokenInfo"]["status"] == "Accepted"


@pytest.mark.parametrize("samples", [1, 8, 40])
async def test_v201_meter_values(cp201, django_assert_num_queries, samples):
    payload = {"evseId": 1, "meterValue": meter_values(samples, v201_format=True)}
    # Outside a transaction: BEGIN; INSERT the samples in one statement; COMMIT.
    with django_assert_num_queries(3) as captured:
        await answer(cp201, "MeterValues", payload)
    assert sample_inserts(captured) == 1


# --- the connection, through the real consumer ------------------------------------------------


class CountedCommunicator(WebsocketCommunicator):
    """Runs the consumer in the test's context. The base class starts the application in an
    empty context, and under a running event loop Django keeps database connections per
    context: the consumer would get a connection of its own, uncounted."""

    @property
    def future(self) -> asyncio.Task[None]:
        if self._future is None:
            self._future = asyncio.create_task(
                self.application(self.scope, self.input_queue.get, self.output_queue.put)
            )
        return self._future


application = URLRouter(websocket_urlpatterns)


def communicator(identity: str, protocol_name: str, password: str = PASSWORD) -> Any:
    token = base64.b64encode(f"{identity}:{password}".encode())
    return CountedCommunicator(
        application,
        f"/ocpp/{identity}",
        headers=[(b"authorization", b"Basic " + token)],
        subprotocols=[protocol_name],
    )


async def round_trip(ws: Any, frame: Any) -> list[Any]:
    await ws.send_to(text_data=frame if isinstance(frame, str) else json.dumps(frame))
    return json.loads(await ws.receive_from(timeout=10))


@pytest.mark.parametrize("protocol_name", [V16, V201])
async def test_admission_at_connect_and_the_disconnect(protocol_name, django_assert_num_queries):
    await _make_station("Q-CONNECT", protocol_name)
    ws = communicator("Q-CONNECT", protocol_name)
    # Admission: BEGIN; SELECT the station by identity; COMMIT.
    # The reconnect-flood gate (stations.monitoring.protection): UPDATE its cool-down (none);
    # SELECT the thresholds row; COUNT its connections of the hour.
    # The connection: BEGIN; SELECT the station (FOR UPDATE); UPDATE it online; UPDATE its
    # open connection rows (closed as replaced); INSERT the connection; COMMIT.
    # Commands of an earlier connection: SELECT the ones still "sent".
    # The command pump: SELECT the oldest queued command (none).
    # The Heartbeat round trip, which makes sure the pump ran, costs nothing.
    with django_assert_num_queries(14):
        accepted, chosen = await ws.connect(timeout=10)
        assert (await round_trip(ws, [2, "h1", "Heartbeat", {}]))[0] == protocol.CALLRESULT
    assert (accepted, chosen) == (True, protocol_name)
    # BEGIN; UPDATE the connection row closed; UPDATE the station offline; COMMIT.
    with django_assert_num_queries(4):
        await ws.disconnect(timeout=10)


@pytest.mark.parametrize(("identity", "password"), [("Q-NOBODY", PASSWORD), ("Q-REFUSED", "bad")])
async def test_a_refused_admission(identity, password, django_assert_num_queries):
    await _make_station("Q-REFUSED", V16)
    ws = communicator(identity, V16, password)
    # BEGIN; SELECT the station by identity; COMMIT. Nothing is written for a refusal.
    with django_assert_num_queries(3):
        accepted, _ = await ws.connect(timeout=10)
        await ws.disconnect(timeout=10)
    assert not accepted


async def test_the_consumer_adds_nothing_per_frame_but_the_throttled_last_seen_write(
    settings, django_assert_num_queries
):
    await _make_station("Q-FRAMES", V16)
    await _make_card()
    ws = communicator("Q-FRAMES", V16)
    await ws.connect(timeout=10)
    started = await round_trip(ws, [2, "s1", "StartTransaction", START_16])
    tx = started[2]["transactionId"]
    meter = {
        "connectorId": 1,
        "transactionId": tx,
        "meterValue": meter_values(8, v201_format=False),
    }
    assert (await round_trip(ws, [2, "m0", "MeterValues", meter]))[:2] == [3, "m0"]
    meter["meterValue"] = meter_values(8, v201_format=False, first_minute=10)
    # Exactly the handler's statements (test_v16_meter_values, a later meter value): parsing,
    # routing, schema checks and the answer cost none.
    with django_assert_num_queries(5):
        assert (await round_trip(ws, [2, "m1", "MeterValues", meter]))[:2] == [3, "m1"]
    # An erroneous frame of an untraced station: the frame and its CALLERROR go to the message
    # log in one INSERT (BEGIN; INSERT; COMMIT: bulk_create's transaction in autocommit).
    with django_assert_num_queries(3):
        assert (await round_trip(ws, "not json"))[0] == protocol.CALLERROR
    # Liveness: one UPDATE of last_seen_at, at most every OCPP_LAST_SEEN_WRITE_INTERVAL.
    settings.OCPP_LAST_SEEN_WRITE_INTERVAL = 0
    with django_assert_num_queries(1):
        assert (await round_trip(ws, [2, "h1", "Heartbeat", {}]))[0] == protocol.CALLRESULT
    await ws.disconnect(timeout=10)


# --- database helpers of the async tests (sync ORM calls, allowed by DJANGO_ALLOW_ASYNC_UNSAFE) --


async def _make_station(identity: str, protocol_name: str) -> int:
    return make_station(identity, protocol_name)


async def _make_card() -> None:
    IdToken.objects.create(uid=CARD)


async def _limit_card(limit: int) -> None:
    IdToken.objects.filter(uid=CARD).update(max_concurrent_sessions=limit)


async def _connector_status(station_id: int, evse_id: int) -> str:
    return Connector.objects.get(station_id=station_id, evse__evse_id=evse_id).status


async def _samples_of(transaction_id: int | str) -> int:
    return MeterSample.objects.filter(session__transaction_id=str(transaction_id)).count()


async def _session_status(transaction_id: int | str) -> str:
    return ChargingSession.objects.get(transaction_id=str(transaction_id)).status

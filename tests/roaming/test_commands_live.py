"""Commands and real-time authorization against the stand-in eMSP (extrawest-ocpi, its own
virtualenv, a separate process), our live daphne, a real OCPP 1.6 station answering the
commands, and a real Celery worker delivering the results through the outbox.

The peer sends its commands over HTTP with a response_url it serves, and parses our
CommandResponse and every CommandResult it receives with the package's models; it answers
our real-time authorizations through the package's tokens (sender) module.

Run alone with `-m live tests/roaming/test_commands_live.py`.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.conf import settings
from django.test import override_settings
from django.utils import timezone
from ocpp.v16 import call
from ocpp.v16 import call_result as result16

from tests.conftest import BIN, ROOT, DaphneServer, free_port, server_env, wait_for_port
from tests.ocpp_client import station
from tests.roaming.test_peer_live import PEER_TOKEN_A, Peer, peer_python  # noqa: F401

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

DEADLINE = 2.0
PASSWORD = "roaming-station-pass-1"
# Longer than the 20 characters of a 1.6 idTag: the station gets a surrogate.
LONG_UID = "DEADBEEF0123456789ABCDEF"


@pytest.fixture(scope="module")
def roaming_daphne(django_db_setup: Any, django_db_blocker: Any) -> Iterator[DaphneServer]:  # noqa: ARG001
    """Our daphne, told its public base URL and a real-time deadline of DEADLINE seconds."""
    port = free_port()
    log = Path(settings.DATA_DIR) / f"daphne-ocpi-commands-{port}.log"
    process = subprocess.Popen(
        [str(BIN / "daphne"), "-b", "127.0.0.1", "-p", str(port), "cpo.asgi:application"],
        cwd=ROOT,
        env=server_env(
            CPO_NODE_NAME="ocpi-commands",
            ROAMING_OCPI_BASE_URL=f"http://127.0.0.1:{port}",
            ROAMING_REALTIME_DEADLINE=str(DEADLINE),
        ),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
    )
    wait_for_port(port, process)
    server = DaphneServer(port, process, log)
    yield server
    server.stop()


@pytest.fixture(autouse=True)
async def _close_test_connections() -> Any:
    """The ORM helpers below run on asgiref's one thread: its connection is closed after each
    test, so that none is left open when the test database is dropped."""
    yield
    from django.db import connections

    await sync_to_async(connections.close_all)()


@pytest.fixture
def peer(peer_python: Path) -> Iterator[Peer]:  # noqa: F811
    started = Peer(peer_python, versions="2.2.1")
    yield started
    started.stop()


@pytest.fixture
def peer_211(peer_python: Path) -> Iterator[Peer]:  # noqa: F811
    started = Peer(peer_python, versions="2.1.1")
    yield started
    started.stop()


@pytest.fixture
def slow_peer(peer_python: Path) -> Iterator[Peer]:  # noqa: F811
    """Another eMSP (DE*MS2) that takes 3 x DEADLINE to answer a real-time authorization."""
    started = Peer(peer_python, versions="2.2.1", party_id="MS2", authorize_delay=3 * DEADLINE)
    yield started
    started.stop()


@sync_to_async
def network() -> int:
    """A published site with two 1.6 stations of two connectors (EVSEs RC-16-1, RC-16-2 ...)."""
    from decimal import Decimal

    from roaming.models import OurParty
    from stations.models import ChargingStation, Connector, Evse, Location

    OurParty.objects.create(country_code="NL", party_id="CPO", name="CPO", is_default=True)
    site = Location.objects.create(
        name="Roaming site", latitude=Decimal("52.37"), longitude=Decimal("4.90")
    )
    for identity in ("RC-16", "RC-16B"):
        cp = ChargingStation(identity=identity, protocol="ocpp1.6", location=site)
        cp.set_password(PASSWORD)
        cp.save()
        for number in (1, 2):
            evse = Evse.objects.create(station=cp, evse_id=number, uid=f"{identity}-{number}")
            Connector.objects.create(station=cp, evse=evse, connector_id=number, status="Available")
    return site.pk


@sync_to_async
def register(peer: Peer, daphne: DaphneServer, *, name: str) -> int:
    """We register with the peer (its token A); it then calls us with the token we gave."""
    from roaming import services
    from roaming.models import OurParty, Partner

    partner = Partner.objects.create(name=name)
    partner.allowed_parties.add(OurParty.objects.get())
    with override_settings(ROAMING_OCPI_BASE_URL=daphne.http_url):
        services.partner_register(
            partner_id=partner.pk, versions_url_theirs=peer.versions_url, their_token_a=PEER_TOKEN_A
        )
    return partner.pk


@sync_to_async
def allow_private_urls(partner_id: int) -> None:
    from roaming.models import Partner

    Partner.objects.filter(pk=partner_id).update(allow_private_urls=True)


async def control(peer: Peer, path: str, body: dict[str, Any] | None = None) -> Any:
    # The peer's control calls block: off the loop that runs the station.
    return await asyncio.to_thread(peer.control, path, body)


async def command(
    peer: Peer, daphne: DaphneServer, kind: str, body: dict[str, Any], version: str = "2.2.1"
) -> dict[str, Any]:
    return await control(
        peer,
        "command",
        {
            "versions_url": f"{daphne.http_url}/ocpi/versions",
            "version": version,
            "type": kind,
            "body": body,
        },
    )


async def results_of(peer: Peer, number: str, timeout: float = 30.0) -> list[dict[str, Any]]:
    """The results the peer got at the response URL of its command `number` (waits for one)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        results = (await control(peer, "state"))["commands"][number]["results"]
        if results:
            return results
        await asyncio.sleep(0.2)
    raise AssertionError(f"no result for command {number} in {timeout}s")


def token(uid: str, *, version: str = "2.2.1", whitelist: str = "NEVER") -> dict[str, Any]:
    data: dict[str, Any] = {
        "uid": uid,
        "type": "RFID",
        "issuer": "Stand-in eMSP",
        "valid": True,
        "whitelist": whitelist,
        "last_updated": "2026-01-01T00:00:00Z",
    }
    if version == "2.1.1":
        return data | {"auth_id": "DE-MSP-C1"}
    return data | {"country_code": "DE", "party_id": "MSP", "contract_id": "DE-MSP-C1"}


def last_call(cp: Any, action: str) -> dict[str, Any]:
    calls = [payload for name, payload in cp.cp.received_calls if name == action]
    assert calls, f"the station got no {action}: {cp.cp.received_calls}"
    return calls[-1]


@sync_to_async
def session_of(transaction_id: int) -> Any:
    from sessions.models import ChargingSession

    return ChargingSession.objects.select_related("id_token").get(
        ocpp16_transaction_id=transaction_id
    )


@sync_to_async
def our_reservation_id(their_id: str) -> int:
    from roaming.models import RoamingCommand

    found = RoamingCommand.objects.get(type="RESERVE_NOW", their_reservation_id=their_id)
    assert found.reservation_id is not None
    return found.reservation_id


@sync_to_async
def stored_commands() -> int:
    from roaming.models import RoamingCommand

    return RoamingCommand.objects.count()


def ts(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


async def test_the_emsp_sends_the_five_commands_on_221(
    roaming_daphne: DaphneServer, peer: Peer, celery_worker: Any
) -> None:
    site = await network()
    partner_id = await register(peer, roaming_daphne, name="Stand-in eMSP")
    where = {"location_id": str(site), "evse_uid": "RC-16-1"}
    async with station(roaming_daphne.ws_url, "RC-16", password=PASSWORD) as cp:
        await cp.cp.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))

        # The SSRF guard: the peer's response URL is on loopback, and the partner is not
        # allowed private URLs: 2001, nothing stored, nothing sent.
        refused = await command(peer, roaming_daphne, "START_SESSION", {"token": token(LONG_UID)})
        assert refused["envelope"]["status_code"] == 2001
        refused = await command(
            peer, roaming_daphne, "START_SESSION", {"token": token(LONG_UID), **where}
        )
        assert refused["envelope"]["status_code"] == 2001, refused
        assert "loopback" in refused["envelope"]["status_message"]
        assert await stored_commands() == 0
        await allow_private_urls(partner_id)

        # START_SESSION: accepted at once, RemoteStartTransaction with a 20-character
        # surrogate of the long uid, ACCEPTED at the response URL once the station accepted.
        started = await command(
            peer,
            roaming_daphne,
            "START_SESSION",
            {"token": token(LONG_UID), **where, "authorization_reference": "AUTH-REF-1"},
        )
        assert started["parsed"]["result"] == "ACCEPTED", started
        assert started["parsed"]["timeout"] == settings.ROAMING_COMMAND_TIMEOUT
        assert [r["result"] for r in await results_of(peer, started["number"])] == ["ACCEPTED"]
        remote = last_call(cp, "RemoteStartTransaction")
        surrogate = remote["id_tag"]
        assert len(surrogate) == 20
        assert surrogate != LONG_UID[:20]
        assert remote["connector_id"] == 1

        # The station starts with it: accepted without asking the eMSP (whitelist NEVER, but
        # the eMSP vouched for it), with the eMSP's authorization reference.
        begun = await cp.cp.call(
            call.StartTransaction(
                connector_id=1, id_tag=surrogate, meter_start=0, timestamp=ts(timezone.now())
            )
        )
        assert begun.id_tag_info["status"] == "Accepted"
        session = await session_of(begun.transaction_id)
        assert session.authorization_reference == "AUTH-REF-1"
        assert (session.id_token.uid, session.id_token.issuer_party_id) == (LONG_UID, "MSP")
        assert (await control(peer, "state"))["authorizations"] == []

        # chargingprofiles on the session: a TxProfile on its transaction, its composite
        # schedule, and clearing it; each result parsed by the peer's package.
        profile = {
            "charging_rate_unit": "A",
            "charging_profile_period": [{"start_period": 0, "limit": 16}],
        }
        for method, extra, action in (
            ("PUT", {"profile": profile}, "SetChargingProfile"),
            ("GET", {"query": {"duration": "900"}}, "GetCompositeSchedule"),
            ("DELETE", {}, "ClearChargingProfile"),
        ):
            sent = await control(
                peer,
                "chargingprofile",
                {
                    "versions_url": f"{roaming_daphne.http_url}/ocpi/versions",
                    "method": method,
                    "session_id": str(session.uid),
                    **extra,
                },
            )
            assert sent["parsed"]["result"] == "ACCEPTED", sent
            assert [r["result"] for r in await results_of(peer, sent["number"])] == ["ACCEPTED"]
            last_call(cp, action)
        tx_profile = last_call(cp, "SetChargingProfile")["cs_charging_profiles"]
        assert (tx_profile["charging_profile_purpose"], tx_profile["transaction_id"]) == (
            "TxProfile",
            begun.transaction_id,
        )
        assert last_call(cp, "ClearChargingProfile")["id"] == tx_profile["charging_profile_id"]

        # STOP_SESSION by our session id.
        stopped = await command(
            peer, roaming_daphne, "STOP_SESSION", {"session_id": str(session.uid)}
        )
        assert stopped["parsed"]["result"] == "ACCEPTED"
        assert [r["result"] for r in await results_of(peer, stopped["number"])] == ["ACCEPTED"]
        assert last_call(cp, "RemoteStopTransaction")["transaction_id"] == begun.transaction_id
        unknown = await command(peer, roaming_daphne, "STOP_SESSION", {"session_id": "nope"})
        assert unknown["parsed"]["result"] == "UNKNOWN_SESSION"

        # RESERVE_NOW on the second EVSE, with our own (integer) reservation id.
        expiry = ts(timezone.now().replace(microsecond=0) + dt.timedelta(minutes=30))
        reserved = await command(
            peer,
            roaming_daphne,
            "RESERVE_NOW",
            {
                "token": token(LONG_UID),
                "expiry_date": expiry,
                "reservation_id": "RES-1",
                "location_id": str(site),
                "evse_uid": "RC-16-2",
            },
        )
        assert reserved["parsed"]["result"] == "ACCEPTED", reserved
        assert [r["result"] for r in await results_of(peer, reserved["number"])] == ["ACCEPTED"]
        ours = await our_reservation_id("RES-1")
        reserve = last_call(cp, "ReserveNow")
        assert (reserve["reservation_id"], reserve["connector_id"], reserve["id_tag"]) == (
            ours,
            2,
            surrogate,
        )

        # CANCEL_RESERVATION by their id: the station is told ours.
        cancelled = await command(
            peer, roaming_daphne, "CANCEL_RESERVATION", {"reservation_id": "RES-1"}
        )
        assert cancelled["parsed"]["result"] == "ACCEPTED"
        assert [r["result"] for r in await results_of(peer, cancelled["number"])] == ["ACCEPTED"]
        assert last_call(cp, "CancelReservation")["reservation_id"] == ours

        # UNLOCK_CONNECTOR, once unlocked and once failing at the station.
        unlock = {"location_id": str(site), "evse_uid": "RC-16-2", "connector_id": "2"}
        unlocked = await command(peer, roaming_daphne, "UNLOCK_CONNECTOR", unlock)
        assert unlocked["parsed"]["result"] == "ACCEPTED"
        assert [r["result"] for r in await results_of(peer, unlocked["number"])] == ["ACCEPTED"]
        assert last_call(cp, "UnlockConnector")["connector_id"] == 2
        cp.cp.responses["UnlockConnector"] = result16.UnlockConnector(status="UnlockFailed")
        failing = await command(peer, roaming_daphne, "UNLOCK_CONNECTOR", unlock)
        assert [r["result"] for r in await results_of(peer, failing["number"])] == ["FAILED"]
        cp.assert_schema_valid()

    # Every result the peer got parsed with its own CommandResult model.
    state = await control(peer, "state")
    assert all("invalid" not in r for c in state["commands"].values() for r in c["results"])


async def test_the_emsp_sends_the_four_commands_on_211(
    roaming_daphne: DaphneServer, peer_211: Peer, celery_worker: Any
) -> None:
    site = await network()
    partner_id = await register(peer_211, roaming_daphne, name="Stand-in eMSP 2.1.1")
    await allow_private_urls(partner_id)
    v = "2.1.1"
    async with station(roaming_daphne.ws_url, "RC-16", password=PASSWORD) as cp:
        await cp.cp.call(call.BootNotification(charge_point_model="M", charge_point_vendor="V"))
        where = {"location_id": str(site), "evse_uid": "RC-16-1"}
        started = await command(
            peer_211,
            roaming_daphne,
            "START_SESSION",
            {"token": token("CAFE01", version=v), **where},
            v,
        )
        assert started["parsed"] == {"result": "ACCEPTED"}, started
        assert [r["result"] for r in await results_of(peer_211, started["number"])] == ["ACCEPTED"]
        assert last_call(cp, "RemoteStartTransaction")["id_tag"] == "CAFE01"
        begun = await cp.cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="CAFE01", meter_start=0, timestamp=ts(timezone.now())
            )
        )
        assert begun.id_tag_info["status"] == "Accepted"
        session = await session_of(begun.transaction_id)
        stopped = await command(
            peer_211, roaming_daphne, "STOP_SESSION", {"session_id": str(session.uid)}, v
        )
        assert [r["result"] for r in await results_of(peer_211, stopped["number"])] == ["ACCEPTED"]
        # The station refuses the reservation (occupied): 2.1.1 has no EVSE_OCCUPIED, REJECTED.
        cp.cp.responses["ReserveNow"] = result16.ReserveNow(status="Occupied")
        reserved = await command(
            peer_211,
            roaming_daphne,
            "RESERVE_NOW",
            {
                "token": token("CAFE01", version=v),
                "expiry_date": ts(timezone.now() + dt.timedelta(minutes=30)),
                "reservation_id": 42,
                **where,
            },
            v,
        )
        assert reserved["parsed"] == {"result": "ACCEPTED"}
        assert [r["result"] for r in await results_of(peer_211, reserved["number"])] == ["REJECTED"]
        assert last_call(cp, "ReserveNow")["reservation_id"] == await our_reservation_id("42")
        unlocked = await command(
            peer_211,
            roaming_daphne,
            "UNLOCK_CONNECTOR",
            {"location_id": str(site), "evse_uid": "RC-16-2", "connector_id": "2"},
            v,
        )
        assert [r["result"] for r in await results_of(peer_211, unlocked["number"])] == ["ACCEPTED"]
        # 2.1.1 has no CANCEL_RESERVATION: HTTP 404 in the envelope, nothing stored.
        before = await stored_commands()
        cancel = await command(
            peer_211, roaming_daphne, "CANCEL_RESERVATION", {"reservation_id": "42"}, v
        )
        assert (cancel["http"], cancel["envelope"]["status_code"]) == (404, 2000)
        assert await stored_commands() == before
        cp.assert_schema_valid()


@sync_to_async
def realtime_rows() -> list[tuple[str, str, str]]:
    from roaming.models import RealtimeAuthorization

    return sorted(
        (row.partner.name, row.uid.upper(), row.result)
        for row in RealtimeAuthorization.objects.select_related("partner")
    )


async def test_an_unknown_token_is_asked_of_both_emsps_under_the_deadline(
    roaming_daphne: DaphneServer, peer: Peer, slow_peer: Peer
) -> None:
    await network()
    await register(peer, roaming_daphne, name="Fast eMSP")
    await register(slow_peer, roaming_daphne, name="Slow eMSP")
    async with (
        station(roaming_daphne.ws_url, "RC-16", password=PASSWORD) as cp,
        station(roaming_daphne.ws_url, "RC-16B", password=PASSWORD) as other,
    ):
        for client in (cp, other):
            await client.cp.call(
                call.BootNotification(charge_point_model="M", charge_point_vendor="V")
            )
        # The fast eMSP allows it: the first ALLOWED wins, the slow one is not waited for.
        began = time.monotonic()
        allowed = await cp.cp.call(call.Authorize(id_tag="CAFE0001"))
        took = time.monotonic() - began
        assert allowed.id_tag_info["status"] == "Accepted"
        assert took < DEADLINE, took

        # Refused by the fast one: the slow one is waited for, up to the deadline and no
        # longer; meanwhile another station is answered at once (the loop is not blocked).
        async def heartbeat_later() -> float:
            await asyncio.sleep(0.3)
            start = time.monotonic()
            await other.cp.call(call.Heartbeat())
            return time.monotonic() - start

        began = time.monotonic()
        refused, heartbeat = await asyncio.gather(
            cp.cp.call(call.Authorize(id_tag="BLOCKED01")), heartbeat_later()
        )
        took = time.monotonic() - began
        assert refused.id_tag_info["status"] == "Blocked"
        assert DEADLINE - 0.2 <= took < DEADLINE + 1.0, took
        assert heartbeat < 0.5, heartbeat

        # The allowed token is cached now (whitelist ALLOWED, valid): a start asks nobody and
        # carries the reference of the real-time answer.
        begun = await cp.cp.call(
            call.StartTransaction(
                connector_id=1, id_tag="CAFE0001", meter_start=0, timestamp=ts(timezone.now())
            )
        )
        assert begun.id_tag_info["status"] == "Accepted"
        session = await session_of(begun.transaction_id)
        # (the package keeps CiString values in lower case)
        assert session.authorization_reference.upper() == "MSP-1"
    assert await realtime_rows() == [
        ("Fast eMSP", "BLOCKED01", "BLOCKED"),
        ("Fast eMSP", "CAFE0001", "ALLOWED"),
        ("Slow eMSP", "BLOCKED01", "TIMEOUT"),
        ("Slow eMSP", "CAFE0001", "TIMEOUT"),
    ]
    # Each eMSP was asked once per token, with where the charger is.
    asked = (await control(peer, "state"))["authorizations"]
    assert [a["uid"].upper() for a in asked] == ["CAFE0001", "BLOCKED01"]
    assert [uid.upper() for uid in asked[0]["location"]["evse_uids"]] == ["RC-16-1", "RC-16-2"]

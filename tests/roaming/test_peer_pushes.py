"""Pushes against the independent stand-in eMSP (extrawest-ocpi, its own virtualenv and
process; see test_peer_live.py): on 2.2.1 and 2.1.1, we register with it, the nightly
reconciliation finds it lacks our locations (its GET answers 404) and PUTs them, a real OCPP
StatusNotification through our daphne becomes an EVSE PATCH, the peer down and back loses
nothing, and a session of its token is PUT, PATCHed, COMPLETED and its CDR POSTed (the Location
header it answers is kept). Every object is parsed by the package's models of the version
before it reaches the peer's store; nothing may be refused or dead-lettered."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.db import transaction
from django.test import override_settings
from django.utils import timezone
from ocpp.v16 import call

from billing import services as billing
from cpo.outbox import services as outbox
from cpo.outbox.models import OutboxMessage
from roaming import push, services
from roaming.models import CdrPush, EmspToken, OurParty, Partner, RoamingSession
from sessions import services as sessions
from sessions.models import ChargingSession
from stations import services as stations
from stations.models import ChargingStation
from tariffs.models import TariffAssignment
from tests.billing.conftest import make_tariff
from tests.conftest import DaphneServer
from tests.ocpp_client import station
from tests.roaming.conftest import make_site
from tests.roaming.test_peer_live import (  # noqa: F401 - fixtures
    PEER_TOKEN_A,
    Peer,
    ocpi_daphne,
    peer_python,
)

pytestmark = [pytest.mark.live]

PASSWORD = "station-secret-0001-peer"


@pytest.fixture(params=["2.2.1", "2.1.1"])
def peer_of(request: Any, peer_python: Any) -> Any:  # noqa: F811
    started = Peer(peer_python, versions=request.param)
    yield request.param, started
    started.stop()


def deliver(partner: Partner) -> None:
    outbox.outbox_deliver_destination(kind="ocpi", ref=str(partner.pk))


def due_now() -> None:
    OutboxMessage.objects.filter(status=OutboxMessage.Status.PENDING).update(
        next_attempt_at=timezone.now()
    )


def evse_statuses(peer: Peer, site: Any) -> dict[str, str]:
    # The package keeps CiString values (uids) in lower case.
    location = peer.control("state")["store"]["locations"][str(site.pk)]
    return {e["uid"].upper(): e["status"] for e in location["evses"]}


async def _status_notifications(
    daphne: DaphneServer, identity: str, partner: Partner, peer: Peer, site: Any
) -> dict[str, str]:
    """Boot, report statuses, and let the pushes through while the charger is connected."""
    async with station(daphne.ws_url, identity, password=PASSWORD) as cp:
        await cp.cp.call(
            call.BootNotification(charge_point_vendor="ACME", charge_point_model="AC-22")
        )
        for status in ("Preparing", "Charging"):
            await cp.cp.call(
                call.StatusNotification(connector_id=1, error_code="NoError", status=status)
            )
        await cp.cp.call(
            call.StatusNotification(connector_id=2, error_code="NoError", status="Faulted")
        )
        await sync_to_async(deliver)(partner)
        return await sync_to_async(evse_statuses)(peer, site)


def test_pushes_reach_the_stand_in_emsp_and_nothing_is_lost(
    transactional_db: Any,  # noqa: ARG001
    ocpi_daphne: DaphneServer,  # noqa: F811
    peer_of: tuple[str, Peer],
) -> None:
    version, peer = peer_of
    party = OurParty.objects.create(
        country_code="NL", party_id="CPO", name="CPO Operations", is_default=True
    )
    sites = [make_site("PEER0", stations=0)] + [make_site(f"PEER{i}", evses=2) for i in (1, 2)]
    TariffAssignment.objects.create(tariff=make_tariff(tariff_id="PEER-AC"))
    # The charger: a 1.6 station laid out as the network does (connector N is EVSE N).
    charger = ChargingStation(identity="PEER0-0", location=sites[0], protocol="ocpp1.6")
    charger.set_password(PASSWORD)
    charger.save()
    stations.station_evses_create(station=charger, count=2)
    partner = Partner.objects.create(name="Stand-in eMSP")
    partner.allowed_parties.add(party)
    with override_settings(ROAMING_OCPI_BASE_URL=ocpi_daphne.http_url):
        partner = services.partner_register(
            partner_id=partner.pk, versions_url_theirs=peer.versions_url, their_token_a=PEER_TOKEN_A
        )
    assert partner.version == version
    assert {m for m in push.MODULES if partner.endpoint_url(m, "RECEIVER")} == set(push.MODULES)

    # It has none of our locations: the reconciliation GETs each (404) and PUTs it.
    report = push.partner_reconcile(partner_id=partner.pk)
    assert (report.locations_checked, report.locations_sent) == (3, 3), report
    deliver(partner)
    state = peer.control("state")
    assert sorted(state["store"]["locations"]) == sorted(str(s.pk) for s in sites)
    # Asked again, it has them all as they are: nothing more to send.
    again = push.partner_reconcile(partner_id=partner.pk)
    assert (again.locations_checked, again.locations_sent) == (3, 0), again

    # A real charger's StatusNotifications through our daphne: PATCHes of its EVSEs.
    connected = asyncio.run(
        _status_notifications(ocpi_daphne, charger.identity, partner, peer, sites[0])
    )
    assert connected == {"PEER0-0-1": "CHARGING", "PEER0-0-2": "OUTOFORDER"}
    # It hung up: offline (once daphne has seen the close), both UNKNOWN.
    offline = {"PEER0-0-1": "UNKNOWN", "PEER0-0-2": "UNKNOWN"}
    deadline = time.monotonic() + 20
    while evse_statuses(peer, sites[0]) != offline and time.monotonic() < deadline:
        time.sleep(0.2)
        deliver(partner)
    assert evse_statuses(peer, sites[0]) == offline

    # Down: the pushes wait; back: it gets them all.
    peer.control("down", {"down": True})
    with transaction.atomic():
        stations.location_update(location=sites[1], data={"name": "Renamed while down"})
        stations.connector_status_changed(
            station_id=charger.pk,
            evse_id=1,
            connector_id=1,
            status="Available",
            timestamp=timezone.now() + dt.timedelta(seconds=5),
        )
    deliver(partner)
    waiting = OutboxMessage.objects.filter(
        destination_ref=str(partner.pk), status=OutboxMessage.Status.PENDING
    )
    assert waiting.count() == 2
    peer.control("down", {"down": False})
    due_now()
    deliver(partner)
    store = peer.control("state")["store"]["locations"]
    assert store[str(sites[1].pk)]["name"] == "Renamed while down"
    # Still offline: the status it reported while down shows once it is back online.
    assert evse_statuses(peer, sites[0])["PEER0-0-1"] == "UNKNOWN"

    # A session of its token, and its CDR.
    token = EmspToken.objects.create(
        partner=partner,
        country_code="DE",
        party_id="MSP",
        uid="PEERCARD01",
        type="RFID",
        contract_id="DE-MSP-PEERCARD01",
        issuer="Stand-in eMSP",
        valid=True,
        whitelist="ALLOWED",
        data={},
        last_updated=timezone.now(),
    )
    start = timezone.now() - dt.timedelta(minutes=45)
    other = sites[2].stations.get()
    started = sessions.session_start(
        station_id=other.pk,
        evse_id=1,
        connector_id=1,
        id_tag=token.uid,
        meter_start_wh=Decimal(0),
        timestamp=start,
    )
    RoamingSession.objects.filter(session_id=started.session_id).update(
        last_pushed_at=timezone.now() - dt.timedelta(hours=1)
    )
    ChargingSession.objects.filter(pk=started.session_id).update(energy_wh=Decimal(3000))
    assert push.sessions_patch_due() == 1
    sessions.session_stop(
        station_id=other.pk,
        transaction_id=started.transaction_id,
        meter_stop_wh=Decimal(9000),
        timestamp=start + dt.timedelta(minutes=40),
    )
    cdr = billing.cdr_create_for_session(session_id=started.session_id, bill_anyway=True)
    assert cdr is not None
    deliver(partner)

    state = peer.control("state")
    dead = OutboxMessage.objects.filter(
        destination_ref=str(partner.pk), status=OutboxMessage.Status.DEAD
    ).values_list("url", "last_error")
    assert not dead, list(dead)
    assert not state.get("refused"), state.get("refused")
    uid = str(ChargingSession.objects.get(pk=started.session_id).uid)
    session_pushes = [p for p in state["pushes"] if p["module"] == "sessions"]
    assert [p["action"] for p in session_pushes] == ["create", "update", "update"]
    assert state["store"]["sessions"][uid]["status"] == "COMPLETED"
    assert float(state["store"]["sessions"][uid]["kwh"]) == 9.0
    (posted,) = [p for p in state["pushes"] if p["module"] == "cdrs"]
    assert posted["id"].upper() == cdr.uid.upper()[: len(posted["id"])]
    pushed = CdrPush.objects.get(cdr=cdr)
    # What the package answers (it writes its enum names into the URL): kept as given.
    assert f"127.0.0.1:{peer.port}/" in pushed.location_url
    assert "cdrs" in pushed.location_url
    assert pushed.location_url.endswith(posted["id"])
    assert pushed.acknowledged_at is not None
    assert not OutboxMessage.objects.filter(
        destination_ref=str(partner.pk), status=OutboxMessage.Status.DEAD
    ).exists()

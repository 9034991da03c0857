"""Sessions and CDRs of eMSP tokens: pushed to the token's eMSP (PUT at the start, periodic
PATCH, COMPLETED at the end, the CDR POSTed with its Location kept, a credit CDR for a
correction), and the sender GETs of both modules with their bad-input answers."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from billing import services as billing
from cpo.outbox import services as outbox
from cpo.outbox.models import OutboxMessage
from roaming import push, services
from roaming.models import CdrPush, EmspToken, IssuedToken, RoamingSession
from roaming.tokens import token_hash
from sessions import services as sessions
from sessions.models import ChargingSession
from tariffs.models import TariffAssignment
from tests.billing.conftest import make_tariff
from tests.roaming.conftest import PushReceiver, auth, envelope_of, make_site, registered_partner

pytestmark = pytest.mark.django_db


def emsp_token(partner: Any, uid: str = "EMSPCARD01") -> EmspToken:
    now = timezone.now()
    return EmspToken.objects.create(
        partner=partner,
        country_code="DE",
        party_id="MSP",
        uid=uid,
        type="RFID",
        contract_id=f"DE-MSP-{uid}",
        issuer="Stand-in eMSP",
        valid=True,
        whitelist="ALLOWED",
        data={},
        last_updated=now,
    )


def charge(station: Any, id_tag: str, *, start: dt.datetime, minutes: int = 30) -> ChargingSession:
    started = sessions.session_start(
        station_id=station.pk,
        evse_id=1,
        connector_id=1,
        id_tag=id_tag,
        meter_start_wh=Decimal(1000),
        timestamp=start,
    )
    sessions.session_stop(
        station_id=station.pk,
        transaction_id=started.transaction_id,
        meter_stop_wh=Decimal(8500),
        timestamp=start + dt.timedelta(minutes=minutes),
    )
    return ChargingSession.objects.get(pk=started.session_id)


def deliver(partner: Any) -> None:
    outbox.outbox_deliver_destination(kind="ocpi", ref=str(partner.pk))


@pytest.fixture
def priced_site(party: Any) -> Any:
    site = make_site("SES", evses=1)
    TariffAssignment.objects.create(tariff=make_tariff(tariff_id="SES-AC"))
    return site


def test_a_roaming_session_is_put_patched_completed_and_its_cdr_posted(
    party, priced_site, push_receiver: PushReceiver, settings
) -> None:
    settings.OCPI_SESSION_PATCH_MINUTES = 5
    partner = registered_partner(party, push_receiver)
    token = emsp_token(partner)
    station = priced_site.stations.get()
    start = timezone.now() - dt.timedelta(minutes=40)
    started = sessions.session_start(
        station_id=station.pk,
        evse_id=1,
        connector_id=1,
        id_tag=token.uid,
        meter_start_wh=Decimal(1000),
        timestamp=start,
    )
    session = ChargingSession.objects.get(pk=started.session_id)
    link = RoamingSession.objects.get(session=session)
    assert (link.partner, link.token) == (partner, token)

    # Not due yet, then due: one PATCH.
    assert push.sessions_patch_due() == 0
    RoamingSession.objects.filter(pk=link.pk).update(
        last_pushed_at=timezone.now() - dt.timedelta(minutes=6)
    )
    ChargingSession.objects.filter(pk=session.pk).update(energy_wh=Decimal(2500))
    assert push.sessions_patch_due() == 1
    sessions.session_stop(
        station_id=station.pk,
        transaction_id=started.transaction_id,
        meter_stop_wh=Decimal(8500),
        timestamp=start + dt.timedelta(minutes=30),
    )
    push_receiver.headers = {"Location": f"{push_receiver.url}/2.2.1/cdrs/mine-1"}
    cdr = billing.cdr_create_for_session(session_id=session.pk, bill_anyway=True)
    assert cdr is not None
    deliver(partner)

    put, patch, completed, posted = push_receiver.calls
    path = f"/2.2.1/sessions/NL/CPO/{session.uid}"
    assert (put["method"], put["path"], put["body"]["status"]) == ("PUT", path, "ACTIVE")
    assert put["body"]["cdr_token"] == {
        "country_code": "DE",
        "party_id": "MSP",
        "uid": "EMSPCARD01",
        "type": "RFID",
        "contract_id": "DE-MSP-EMSPCARD01",
    }
    assert put["body"]["location_id"] == str(priced_site.pk)
    assert put["body"]["evse_uid"] == "SES-0-1"
    assert (patch["method"], patch["path"]) == ("PATCH", path)
    assert patch["body"]["kwh"] == 2.5
    assert {d["type"] for d in patch["body"]["charging_periods"][0]["dimensions"]} == {
        "ENERGY",
        "TIME",
    }
    assert (completed["method"], completed["body"]["status"]) == ("PUT", "COMPLETED")
    assert completed["body"]["kwh"] == 7.5
    assert completed["body"]["end_date_time"].endswith("Z")
    assert (posted["method"], posted["path"]) == ("POST", "/2.2.1/cdrs")
    body = posted["body"]
    assert body["id"] == cdr.uid
    assert body["session_id"] == str(session.uid)
    assert body["total_energy"] == 7.5
    assert body["tariffs"][0]["id"] == "SES-AC"
    assert body["cdr_location"]["evse_uid"] == "SES-0-1"
    assert body["total_cost"]["incl_vat"] == float(cdr.total_cost_incl_vat)
    pushed = CdrPush.objects.get(cdr=cdr)
    assert pushed.location_url == f"{push_receiver.url}/2.2.1/cdrs/mine-1"
    assert pushed.acknowledged_at is not None

    # A correction: the credit CDR, then the new revision.
    billing.cdr_rerate(session_id=session.pk, reason="meter fix")
    deliver(partner)
    credit, revision = push_receiver.calls[4:]
    assert credit["body"]["credit"] is True
    assert credit["body"]["credit_reference_id"] == cdr.uid
    assert credit["body"]["total_cost"]["incl_vat"] == -float(cdr.total_cost_incl_vat)
    assert revision["body"]["id"] != cdr.uid
    assert "credit" not in revision["body"]


def test_the_authorization_reference_is_echoed(
    party, priced_site, push_receiver: PushReceiver
) -> None:
    partner = registered_partner(party, push_receiver)
    token = emsp_token(partner)
    session = charge(
        priced_site.stations.get(), token.uid, start=timezone.now() - dt.timedelta(hours=1)
    )
    ChargingSession.objects.filter(pk=session.pk).update(authorization_reference="AUTH-REF-7")
    cdr = billing.cdr_create_for_session(session_id=session.pk, bill_anyway=True)
    assert cdr is not None
    body = json.loads(bytes(OutboxMessage.objects.filter(topic="cdrs.cdr").get().body))
    assert body["auth_method"] == "AUTH_REQUEST"
    assert body["authorization_reference"] == "AUTH-REF-7"


def test_sessions_of_other_tokens_are_not_pushed(
    party, priced_site, push_receiver: PushReceiver
) -> None:
    partner = registered_partner(party, push_receiver)
    emsp_token(partner)
    charge(priced_site.stations.get(), "SOMEONE-ELSE", start=timezone.now() - dt.timedelta(hours=1))
    assert not RoamingSession.objects.exists()
    assert not OutboxMessage.objects.filter(destination_kind="ocpi").exists()


def test_a_211_partner_gets_211_sessions_and_cdrs(
    party, priced_site, push_receiver: PushReceiver
) -> None:
    partner = registered_partner(party, push_receiver, version="2.1.1", b64=False)
    token = emsp_token(partner)
    session = charge(
        priced_site.stations.get(), token.uid, start=timezone.now() - dt.timedelta(hours=1)
    )
    billing.cdr_create_for_session(session_id=session.pk, bill_anyway=True)
    deliver(partner)
    put, completed, posted = push_receiver.calls
    assert put["body"]["auth_id"] == "DE-MSP-EMSPCARD01"
    assert put["body"]["location"]["evses"][0]["uid"] == "SES-0-1"
    assert "start_datetime" in completed["body"]
    assert completed["body"]["status"] == "COMPLETED"
    assert posted["path"] == "/2.1.1/cdrs"
    assert "stop_date_time" in posted["body"]
    assert isinstance(posted["body"]["total_cost"], float | int)


# --- the sender GETs -----------------------------------------------------------------------


def token_for(partner: Any) -> dict[str, Any]:
    token = "our-token-for-the-emsp"
    IssuedToken.objects.create(
        partner=partner,
        kind=IssuedToken.Kind.CREDENTIALS,
        token_hash=token_hash(token),
        token_sealed=services.seal(token),
    )
    return auth(token)


def test_sessions_get_pages_oldest_first_with_date_from_required(
    party, priced_site, push_receiver: PushReceiver
) -> None:
    partner = registered_partner(party, push_receiver)
    token = emsp_token(partner)
    station = priced_site.stations.get()
    made = [
        charge(station, token.uid, start=timezone.now() - dt.timedelta(hours=5 - i))
        for i in range(3)
    ]
    headers = token_for(partner)
    client = Client()

    missing = envelope_of(client.get("/ocpi/2.2.1/sessions", **headers))
    assert missing["status_code"] == 2001
    bad = envelope_of(client.get("/ocpi/2.2.1/sessions?date_from=yesterday", **headers))
    assert bad["status_code"] == 2001
    offset = envelope_of(
        client.get("/ocpi/2.2.1/sessions?date_from=2020-01-01T00:00:00Z&offset=-1", **headers)
    )
    assert offset["status_code"] == 2001

    first = client.get("/ocpi/2.2.1/sessions?date_from=2020-01-01T00:00:00Z&limit=2", **headers)
    body = envelope_of(first)
    assert body["status_code"] == 1000
    assert first["X-Total-Count"] == "3"
    assert first["X-Limit"] == "100"
    assert "offset=2" in first["Link"]
    second = client.get(first["Link"].split("<")[1].split(">")[0], **headers)
    ids = [s["id"] for s in body["data"]] + [s["id"] for s in envelope_of(second)["data"]]
    assert ids == [str(s.uid) for s in sorted(made, key=lambda s: (s.updated_at, s.pk))]
    assert "Link" not in second
    later = envelope_of(
        client.get("/ocpi/2.2.1/sessions?date_from=2999-01-01T00:00:00Z", **headers)
    )
    assert later["data"] == []
    old = envelope_of(client.get("/ocpi/2.1.1/sessions?date_from=2020-01-01T00:00:00Z", **headers))
    assert {s["status"] for s in old["data"]} == {"COMPLETED"}
    assert all("location" in s for s in old["data"])


def test_cdrs_get_with_filters(party, priced_site, push_receiver: PushReceiver) -> None:
    partner = registered_partner(party, push_receiver)
    token = emsp_token(partner)
    station = priced_site.stations.get()
    for i in range(2):
        session = charge(station, token.uid, start=timezone.now() - dt.timedelta(hours=3 - i))
        billing.cdr_create_for_session(session_id=session.pk, bill_anyway=True)
    # Another eMSP's CDR is not listed.
    charge(station, "NOT-ROAMING", start=timezone.now() - dt.timedelta(hours=1))
    headers = token_for(partner)
    client = Client()
    answer = client.get("/ocpi/2.2.1/cdrs?limit=1", **headers)
    body = envelope_of(answer)
    assert answer["X-Total-Count"] == "2"
    assert len(body["data"]) == 1
    assert body["data"][0]["cdr_token"]["uid"] == "EMSPCARD01"
    assert (
        envelope_of(client.get("/ocpi/2.2.1/cdrs?date_to=tomorrow", **headers))["status_code"]
        == 2001
    )
    none = envelope_of(client.get("/ocpi/2.2.1/cdrs?date_to=2000-01-01T00:00:00Z", **headers))
    assert none["data"] == []

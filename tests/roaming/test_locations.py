"""The locations sender and OCPI's transport rules around it: paging, dates, routing
headers, request ids, status mapping, and the envelope on every error."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client, override_settings
from django.utils import timezone

from roaming import services
from roaming.models import IssuedToken, LocationParty, OurParty, Partner
from roaming.tokens import token_hash, token_new
from stations.models import ChargingStation, Connector, Location
from tests.roaming.conftest import auth, envelope_of, make_site

pytestmark = pytest.mark.django_db

LOCATIONS = "/ocpi/2.2.1/locations"


def registered(partner: Partner, **fields: Any) -> str:
    """A registered partner's token C (as the exchange leaves it)."""
    token = token_new()
    IssuedToken.objects.create(
        partner=partner,
        kind=IssuedToken.Kind.CREDENTIALS,
        token_hash=token_hash(token),
        token_sealed="x",
    )
    Partner.objects.filter(pk=partner.pk).update(
        status=Partner.Status.REGISTERED,
        roles=[
            {
                "role": "EMSP",
                "country_code": "DE",
                "party_id": "MSP",
                "business_details": {"name": "e"},
            }
        ],
        **fields,
    )
    return token


@pytest.fixture
def token(partner: Partner) -> str:
    return registered(partner)


def set_updated(site: Location, when: dt.datetime) -> None:
    """Pin a site's change times (auto_now would say now)."""
    Location.objects.filter(pk=site.pk).update(updated_at=when)
    ChargingStation.objects.filter(location=site).update(updated_at=when, connected_at=None)
    Connector.objects.filter(station__location=site).update(status_at=None)


def test_a_location_in_221_and_211(token: str) -> None:
    site = make_site("AMS")
    client = Client()
    got = envelope_of(client.get(f"{LOCATIONS}/{site.pk}", **auth(token)))["data"]
    assert got["country_code"] == "NL"
    assert got["party_id"] == "CPO"
    assert got["id"] == str(site.pk)
    assert got["coordinates"] == {"latitude": "52.378900", "longitude": "4.900100"}
    assert got["country"] == "NLD"
    assert got["time_zone"] == "Europe/Amsterdam"
    assert got["publish"] is True
    assert got["operator"] == {"name": "CPO Operations"}
    evse = got["evses"][0]
    assert evse["uid"] == "AMS-0-1"
    assert evse["evse_id"] == "NL*CPO*EAMS0*1"
    assert evse["status"] == "AVAILABLE"
    assert evse["physical_reference"] == "1"
    assert evse["capabilities"] == ["RFID_READER"]
    connector = evse["connectors"][0]
    assert connector == {
        "id": "1",
        "standard": "IEC_62196_T2",
        "format": "SOCKET",
        "power_type": "AC_3_PHASE",
        "max_voltage": 230,
        "max_amperage": 32,
        "max_electric_power": 22000,
        "last_updated": connector["last_updated"],
    }
    old = envelope_of(client.get(f"/ocpi/2.1.1/locations/{site.pk}", **auth(token, b64=False)))[
        "data"
    ]
    assert old["type"] == "UNKNOWN"
    assert "country_code" not in old
    assert "publish" not in old
    assert old["evses"][0]["connectors"][0]["voltage"] == 230
    assert "max_voltage" not in old["evses"][0]["connectors"][0]


def test_single_evse_and_connector_and_unknown_ones_are_2003(token: str) -> None:
    site = make_site("AMS")
    client = Client()
    evse = envelope_of(client.get(f"{LOCATIONS}/{site.pk}/AMS-0-2", **auth(token)))["data"]
    assert evse["uid"] == "AMS-0-2"
    connector = envelope_of(client.get(f"{LOCATIONS}/{site.pk}/AMS-0-2/2", **auth(token)))["data"]
    assert connector["id"] == "2"
    for path in (f"{site.pk + 1000}", "not-a-number", f"{site.pk}/nope", f"{site.pk}/AMS-0-2/9"):
        response = client.get(f"{LOCATIONS}/{path}", **auth(token))
        assert response.status_code == 404, path
        assert envelope_of(response)["status_code"] == 2003, path


@pytest.mark.parametrize(
    ("station_online", "station_status", "connector_statuses", "expected"),
    [
        (False, "", ["Charging"], "UNKNOWN"),
        (True, "Unavailable", ["Available"], "INOPERATIVE"),
        (True, "Faulted", ["Available"], "OUTOFORDER"),
        (True, "", ["Available"], "AVAILABLE"),
        (True, "", ["Preparing"], "CHARGING"),
        (True, "", ["SuspendedEV"], "CHARGING"),
        (True, "", ["Reserved"], "RESERVED"),
        (True, "", ["Unavailable"], "INOPERATIVE"),
        (True, "", ["Faulted"], "OUTOFORDER"),
        (True, "", [""], "UNKNOWN"),
        (True, "", ["Available", "Occupied"], "CHARGING"),
        (True, "", ["Faulted", "Available"], "AVAILABLE"),
    ],
)
def test_evse_status_follows_connectivity_station_and_connectors(
    token: str,
    station_online: bool,
    station_status: str,
    connector_statuses: list[str],
    expected: str,
) -> None:
    site = make_site("ST", evses=1)
    station = ChargingStation.objects.get(location=site)
    ChargingStation.objects.filter(pk=station.pk).update(
        is_online=station_online, status=station_status
    )
    evse = station.evses.get()
    Connector.objects.filter(evse=evse).delete()
    for number, status in enumerate(connector_statuses, start=1):
        Connector.objects.create(station=station, evse=evse, connector_id=number, status=status)
    got = envelope_of(Client().get(f"{LOCATIONS}/{site.pk}/{evse.uid}", **auth(token)))["data"]
    assert got["status"] == expected


def test_unpublished_sites_without_coordinates_and_other_parties_are_not_shown(
    token: str, party: OurParty
) -> None:
    shown = make_site("SHOWN")
    hidden = make_site("PRIVATE", publish=False)
    nowhere = make_site("NOWHERE", latitude=None, longitude=None)
    other = OurParty.objects.create(country_code="BE", party_id="SUB", name="Sub-operator")
    theirs = make_site("SUB")
    LocationParty.objects.create(location=theirs, party=other)
    client = Client()
    listed = envelope_of(client.get(LOCATIONS, **auth(token)))["data"]
    assert [item["id"] for item in listed] == [str(shown.pk)]
    for site in (hidden, nowhere, theirs):
        assert client.get(f"{LOCATIONS}/{site.pk}", **auth(token)).status_code == 404


def test_a_partner_allowed_two_parties_sees_both_and_to_headers_narrow_it(
    partner: Partner, token: str
) -> None:
    other = OurParty.objects.create(country_code="BE", party_id="SUB", name="Sub-operator")
    partner.allowed_parties.add(other)
    ours = make_site("OURS")
    theirs = make_site("SUB")
    LocationParty.objects.create(location=theirs, party=other)
    client = Client()
    listed = envelope_of(client.get(LOCATIONS, **auth(token)))["data"]
    assert {(i["country_code"], i["party_id"], i["id"]) for i in listed} == {
        ("NL", "CPO", str(ours.pk)),
        ("BE", "SUB", str(theirs.pk)),
    }
    to_sub: dict[str, Any] = {"HTTP_OCPI_TO_COUNTRY_CODE": "BE", "HTTP_OCPI_TO_PARTY_ID": "SUB"}
    response = client.get(LOCATIONS, **auth(token), **to_sub)
    assert [i["id"] for i in envelope_of(response)["data"]] == [str(theirs.pk)]
    # The answer's routing headers are the request's, swapped.
    assert response["OCPI-from-country-code"] == "BE"
    assert response["OCPI-from-party-id"] == "SUB"
    nowhere: dict[str, Any] = {"HTTP_OCPI_TO_COUNTRY_CODE": "FR", "HTTP_OCPI_TO_PARTY_ID": "XXX"}
    refused = client.get(LOCATIONS, **auth(token), **nowhere)
    assert (refused.status_code, envelope_of(refused)["status_code"]) == (200, 2001)


def test_routing_headers_are_required_from_hubs_and_checked_peer_to_peer(party: OurParty) -> None:
    make_site("AMS")
    hub = Partner.objects.create(name="Hub", is_hub=True)
    hub.allowed_parties.add(party)
    hub_token = registered(hub)
    client = Client()
    missing = client.get(LOCATIONS, **auth(hub_token))
    assert (missing.status_code, envelope_of(missing)["status_code"]) == (200, 2001)
    from_msp: dict[str, Any] = {
        "HTTP_OCPI_FROM_COUNTRY_CODE": "DE",
        "HTTP_OCPI_FROM_PARTY_ID": "ANY",
    }
    answer = client.get(LOCATIONS, **auth(hub_token), **from_msp)
    assert envelope_of(answer)["status_code"] == 1000
    assert answer["OCPI-to-country-code"] == "DE"
    assert answer["OCPI-to-party-id"] == "ANY"
    peer = Partner.objects.create(name="Peer")
    peer.allowed_parties.add(party)
    peer_token = registered(peer)
    assert envelope_of(client.get(LOCATIONS, **auth(peer_token)))["status_code"] == 1000
    wrong_from = client.get(LOCATIONS, **auth(peer_token), **from_msp)
    assert envelope_of(wrong_from)["status_code"] == 2001
    right_from: dict[str, Any] = {
        "HTTP_OCPI_FROM_COUNTRY_CODE": "DE",
        "HTTP_OCPI_FROM_PARTY_ID": "MSP",
    }
    assert (
        envelope_of(client.get(LOCATIONS, **auth(peer_token), **right_from))["status_code"] == 1000
    )


def test_request_and_correlation_ids_are_echoed_or_made(token: str) -> None:
    client = Client()
    response = client.get(
        LOCATIONS, **auth(token), HTTP_X_REQUEST_ID="req-1", HTTP_X_CORRELATION_ID="corr-1"
    )
    assert (response["X-Request-ID"], response["X-Correlation-ID"]) == ("req-1", "corr-1")
    made = client.get(LOCATIONS, **auth(token))
    assert len(made["X-Request-ID"]) == 36
    assert len(made["X-Correlation-ID"]) == 36
    refused = client.get(LOCATIONS, HTTP_X_REQUEST_ID="req-2")
    assert refused.status_code == 401
    assert refused["X-Request-ID"] == "req-2"


@override_settings(ROAMING_PAGE_MAX=2, ROAMING_OCPI_BASE_URL="https://cpo.example.com")
def test_paging_is_stable_with_headers_and_a_link_until_the_last_page(token: str) -> None:
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    sites = [make_site(f"S{i}", evses=1) for i in range(5)]
    # Created in one order, changed in another: pages go by last change, then id.
    order = [3, 0, 4, 1, 2]
    for rank, index in enumerate(order):
        set_updated(sites[index], base + dt.timedelta(minutes=rank))
    set_updated(sites[2], base + dt.timedelta(minutes=1))  # a tie with sites[0]: id decides
    client = Client()
    seen: list[str] = []
    url = f"{LOCATIONS}?limit=50"
    pages = 0
    while url:
        response = client.get(url, **auth(token))
        body = envelope_of(response)
        assert response["X-Total-Count"] == "5"
        assert response["X-Limit"] == "2"
        seen += [item["id"] for item in body["data"]]
        pages += 1
        link = response.get("Link")
        if link is None:
            break
        assert link.startswith("<https://cpo.example.com/ocpi/2.2.1/locations?")
        assert link.endswith('>; rel="next"')
        url = link[1 : link.index(">")].removeprefix("https://cpo.example.com")
    expected = [sites[i].pk for i in (3, 0, 2, 4, 1)]
    assert seen == [str(pk) for pk in expected]
    assert pages == 3


def test_date_from_is_inclusive_date_to_exclusive_and_the_link_keeps_them(token: str) -> None:
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    sites = [make_site(f"D{i}", evses=1) for i in range(4)]
    for minute, site in enumerate(sites):
        set_updated(site, base + dt.timedelta(minutes=minute))
    client = Client()
    window = "date_from=2026-01-01T00:01:00Z&date_to=2026-01-01T00:03:00Z"
    response = client.get(f"{LOCATIONS}?{window}&limit=1", **auth(token))
    assert [i["id"] for i in envelope_of(response)["data"]] == [str(sites[1].pk)]
    assert response["X-Total-Count"] == "2"
    link = response["Link"]
    assert "date_from=2026-01-01T00%3A01%3A00Z" in link
    assert "date_to=2026-01-01T00%3A03%3A00Z" in link
    assert "offset=1" in link
    following = client.get(
        link[1 : link.index(">")].removeprefix("http://localhost:8000"), **auth(token)
    )
    assert [i["id"] for i in envelope_of(following)["data"]] == [str(sites[2].pk)]
    assert "Link" not in following


def test_a_status_change_moves_the_location_last_updated(token: str) -> None:
    base = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    site = make_site("BUBBLE", evses=1)
    set_updated(site, base)
    changed = base + dt.timedelta(hours=1)
    Connector.objects.filter(station__location=site).update(status="Charging", status_at=changed)
    client = Client()
    got = envelope_of(client.get(f"{LOCATIONS}/{site.pk}", **auth(token)))["data"]
    assert got["last_updated"] == "2026-01-01T01:00:00Z"
    assert got["evses"][0]["last_updated"] == "2026-01-01T01:00:00Z"
    assert got["evses"][0]["connectors"][0]["last_updated"] == "2026-01-01T01:00:00Z"
    after = envelope_of(client.get(f"{LOCATIONS}?date_from=2026-01-01T00:30:00Z", **auth(token)))
    assert [i["id"] for i in after["data"]] == [str(site.pk)]


@pytest.mark.parametrize(
    "query",
    [
        "offset=-1",
        "offset=abc",
        "limit=0",
        "limit=1.5",
        "date_from=yesterday",
        "date_to=2026-13-01T00:00:00Z",
        "date_from=2026-01-01T00:00:00%2B02:00",
    ],
)
def test_bad_paging_parameters_are_2001(token: str, query: str) -> None:
    response = Client().get(f"{LOCATIONS}?{query}", **auth(token))
    body = envelope_of(response)
    assert (response.status_code, body["status_code"]) == (200, 2001)
    assert "data" not in body


def test_errors_are_envelopes_with_the_http_status_the_spec_names(token: str) -> None:
    client = Client()
    cases = [
        (client.post(LOCATIONS, **auth(token)), 405, 2000),
        (client.get("/ocpi/2.2.1/no-such-module", **auth(token)), 404, 2000),
        (client.get("/ocpi/3.0/locations", **auth(token)), 404, 2000),
        (client.get(LOCATIONS, HTTP_AUTHORIZATION="Bearer x"), 401, 2000),
        (client.get(LOCATIONS, HTTP_AUTHORIZATION="Token "), 401, 2000),
    ]
    for response, http_status, code in cases:
        assert response.status_code == http_status
        assert response["Content-Type"] == "application/json"
        assert envelope_of(response)["status_code"] == code


def test_an_unregistered_partner_token_is_401(partner: Partner, token: str) -> None:
    services.partner_unregister(partner=partner, now=timezone.now(), detail="test")
    response = Client().get(LOCATIONS, **auth(token))
    assert response.status_code == 401


def test_connector_tariff_ids_follow_tariff_assignment(token: str) -> None:
    from tariffs.models import TariffAssignment
    from tests.billing.conftest import make_tariff

    site = make_site("PRICED", evses=2)
    station = ChargingStation.objects.get(location=site)
    client = Client()
    bare = envelope_of(client.get(f"{LOCATIONS}/{site.pk}", **auth(token)))["data"]
    assert all("tariff_ids" not in c for e in bare["evses"] for c in e["connectors"])
    everywhere = make_tariff(tariff_id="NETWORK")
    TariffAssignment.objects.create(tariff=everywhere)
    fast = make_tariff(tariff_id="SECOND-CONNECTOR")
    TariffAssignment.objects.create(tariff=fast, station=station, evse_id=2, connector_id=2)
    got = envelope_of(client.get(f"{LOCATIONS}/{site.pk}", **auth(token)))["data"]
    assert [c["tariff_ids"] for e in got["evses"] for c in e["connectors"]] == [
        ["NETWORK"],
        ["SECOND-CONNECTOR"],
    ]
    old = envelope_of(client.get(f"/ocpi/2.1.1/locations/{site.pk}", **auth(token, b64=False)))
    assert [c["tariff_id"] for e in old["data"]["evses"] for c in e["connectors"]] == [
        "NETWORK",
        "SECOND-CONNECTOR",
    ]


def test_connector_tariffs_are_chosen_once_per_place_that_can_differ(
    django_assert_max_num_queries,
) -> None:
    """Site-wide, station and EVSE assignments each win where they apply, and a site whose
    stations have no assignments of their own costs one choice, not one per connector."""
    import datetime as dt

    from roaming.selectors import ConnectorTariffs
    from tariffs.models import TariffAssignment
    from tests.billing.conftest import make_tariff

    site = make_site("LEVELS", stations=3, evses=2)
    plain, own, per_evse = ChargingStation.objects.filter(location=site).order_by("identity")
    TariffAssignment.objects.create(tariff=make_tariff(tariff_id="SITE"), location=site)
    TariffAssignment.objects.create(tariff=make_tariff(tariff_id="STATION"), station=own)
    TariffAssignment.objects.create(
        tariff=make_tariff(tariff_id="EVSE-2"), station=per_evse, evse_id=2
    )
    chooser = ConnectorTariffs(now=dt.datetime.now(dt.UTC))
    got = {
        (station.identity, connector.connector_id): chooser(station, connector.evse, connector)
        for station in (plain, own, per_evse)
        for connector in station.connectors.select_related("evse").order_by("connector_id")
    }
    assert got == {
        ("LEVELS-0", 1): ["SITE"],
        ("LEVELS-0", 2): ["SITE"],
        ("LEVELS-1", 1): ["STATION"],
        ("LEVELS-1", 2): ["STATION"],
        ("LEVELS-2", 1): ["SITE"],
        ("LEVELS-2", 2): ["EVSE-2"],
    }
    # Sites without assignments of their own: one choice for all their connectors.
    make_site("WIDE", stations=4, evses=2)
    make_site("WIDER", stations=2, evses=2)
    again = ConnectorTariffs(now=dt.datetime.now(dt.UTC))
    connectors = [
        (station, connector.evse, connector)
        for station in ChargingStation.objects.filter(location__name__startswith="WIDE")
        for connector in station.connectors.select_related("evse")
    ]
    with django_assert_max_num_queries(2):
        assert {tuple(again(*c)) for c in connectors} == {()}

"""Pushes to partners (roaming.push) through the outbox to receivers on loopback: what is
written with each change, for whom, collapse, partners down and back, reconciliation."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db import connection, transaction
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from cpo.outbox import services as outbox
from cpo.outbox.models import DeliveryAttempt, OutboxMessage
from roaming import push
from roaming.models import OurParty
from stations import services as stations
from stations.models import ChargingStation, Evse
from tests.roaming.conftest import PushReceiver, make_site, registered_partner

pytestmark = pytest.mark.django_db

Status = OutboxMessage.Status


def deliver(partner: Any) -> outbox.DestinationRun:
    return outbox.outbox_deliver_destination(kind="ocpi", ref=str(partner.pk))


def status_report(station: ChargingStation, evse_id: int, status: str, at: dt.datetime) -> None:
    stations.connector_status_changed(
        station_id=station.pk, evse_id=evse_id, connector_id=evse_id, status=status, timestamp=at
    )


def messages(partner: Any) -> list[OutboxMessage]:
    return list(
        OutboxMessage.objects.filter(
            destination_kind="ocpi", destination_ref=str(partner.pk)
        ).order_by("id")
    )


def test_a_status_change_is_a_patch_of_the_evse_for_each_partner_that_sees_it(
    party, push_receiver: PushReceiver
) -> None:
    site = make_site("PUSH1", evses=2)
    station = site.stations.get()
    seeing = registered_partner(party, push_receiver, name="sees")
    other_party = OurParty.objects.create(country_code="BE", party_id="OTH", name="Other")
    blind = registered_partner(other_party, push_receiver, name="blind")
    blind.allowed_parties.set([other_party])

    status_report(station, 1, "Charging", timezone.now())

    assert messages(blind) == []
    (message,) = messages(seeing)
    assert message.method == "PATCH"
    assert message.url == f"{push_receiver.url}/2.2.1/locations/NL/CPO/{site.pk}/PUSH1-0-1"
    assert message.ordering_key == f"locations:{site.pk}"
    deliver(seeing)
    (call,) = push_receiver.calls
    assert call["method"] == "PATCH"
    assert call["path"] == f"/2.2.1/locations/NL/CPO/{site.pk}/PUSH1-0-1"
    assert call["body"]["status"] == "CHARGING"
    assert call["body"]["last_updated"].endswith("Z")


def test_an_unpublished_site_and_a_site_without_partners_push_nothing(
    party, push_receiver: PushReceiver
) -> None:
    hidden = make_site("HIDDEN", publish=False)
    alone = make_site("ALONE").stations.get()
    assert push.push_targets() == []  # read once, then cached
    with CaptureQueriesContext(connection) as nobody:
        status_report(alone, 1, "Charging", timezone.now())
    # No partner: the push costs no query (the targets come from the cache).
    assert nobody.captured_queries
    assert not any("roaming_" in query["sql"] for query in nobody.captured_queries)
    partner = registered_partner(party, push_receiver)
    status_report(hidden.stations.get(), 1, "Charging", timezone.now())
    assert messages(partner) == []


def test_a_burst_of_status_changes_collapses_into_the_latest(
    party, push_receiver: PushReceiver
) -> None:
    site = make_site("BURST", evses=2)
    station = site.stations.get()
    partner = registered_partner(party, push_receiver)
    start = timezone.now() - dt.timedelta(minutes=5)
    for i, status in enumerate(["Preparing", "Charging", "SuspendedEV", "Finishing", "Available"]):
        status_report(station, 1, status, start + dt.timedelta(seconds=i))
    status_report(station, 2, "Faulted", start)
    assert len(messages(partner)) == 6

    deliver(partner)

    assert [(c["path"].rsplit("/", 1)[1], c["body"]["status"]) for c in push_receiver.calls] == [
        ("BURST-0-1", "AVAILABLE"),
        ("BURST-0-2", "OUTOFORDER"),
    ]
    assert {m.status for m in messages(partner)} == {Status.DELIVERED}
    skipped = DeliveryAttempt.objects.filter(response_excerpt__startswith="not sent: superseded")
    assert skipped.count() == 4


def test_a_partner_down_holds_up_nobody_and_gets_everything_when_back(party) -> None:
    site = make_site("DOWN", evses=2)
    station = site.stations.get()
    a_receiver, b_receiver = PushReceiver(), PushReceiver()
    try:
        a = registered_partner(party, a_receiver, name="A")
        b = registered_partner(party, b_receiver, name="B")
        a_receiver.down = True
        start = timezone.now() - dt.timedelta(minutes=5)
        for i in range(3):
            status_report(
                station, 1, ["Charging", "Available"][i % 2], start + dt.timedelta(seconds=i)
            )
            status_report(
                station, 2, ["Available", "Charging"][i % 2], start + dt.timedelta(seconds=i)
            )
            stations.location_update(location=site, data={"name": f"Down {i}"})
            deliver(a)
            deliver(b)
        assert all(m.status == Status.DELIVERED for m in messages(b))
        waiting = [m for m in messages(a) if m.status == Status.PENDING]
        assert waiting
        assert a_receiver.calls == []
        assert b_receiver.calls[-1]["body"]["name"] == "Down 2"

        a_receiver.down = False
        OutboxMessage.objects.filter(status=Status.PENDING).update(next_attempt_at=timezone.now())
        deliver(a)

        assert all(m.status == Status.DELIVERED for m in messages(a))
        # The latest state of everything, nothing older after it.
        puts = [c for c in a_receiver.calls if c["method"] == "PUT"]
        assert puts[-1]["body"]["name"] == "Down 2"
        last_put = a_receiver.calls.index(puts[-1])
        patches_after = [c for c in a_receiver.calls[last_put:] if c["method"] == "PATCH"]
        assert patches_after == []
        assert {e["uid"]: e["status"] for e in puts[-1]["body"]["evses"]} == {
            "DOWN-0-1": "CHARGING",
            "DOWN-0-2": "AVAILABLE",
        }
    finally:
        a_receiver.stop()
        b_receiver.stop()


def test_an_edit_of_the_site_is_a_full_put_and_unpublishing_says_so(
    party, push_receiver: PushReceiver
) -> None:
    site = make_site("EDIT", evses=1)
    partner = registered_partner(party, push_receiver)
    stations.location_update(location=site, data={"name": "Edited"})
    stations.location_update(location=site, data={"publish": False})
    deliver(partner)
    # The first PUT was superseded by the second one still waiting behind it.
    (call,) = push_receiver.calls
    assert call["method"] == "PUT"
    assert call["path"] == f"/2.2.1/locations/NL/CPO/{site.pk}"
    assert call["body"]["publish"] is False
    assert call["body"]["name"] == "Edited"
    assert [e["uid"] for e in call["body"]["evses"]] == ["EDIT-0-1"]


def test_a_211_partner_gets_211_objects(party, push_receiver: PushReceiver) -> None:
    site = make_site("OLD", evses=1)
    partner = registered_partner(party, push_receiver, version="2.1.1", b64=False)
    stations.location_update(location=site, data={"name": "Old style"})
    status_report(site.stations.get(), 1, "Charging", timezone.now() + dt.timedelta(seconds=1))
    deliver(partner)
    put, patch = push_receiver.calls
    assert put["path"] == f"/2.1.1/locations/NL/CPO/{site.pk}"
    assert put["body"]["type"] == "UNKNOWN"
    assert "publish" not in put["body"]
    assert "voltage" in put["body"]["evses"][0]["connectors"][0]
    assert patch["body"]["status"] == "CHARGING"
    assert put["headers"]["Authorization"] == "Token their-token-C"


def test_station_offline_makes_its_evses_unknown(party, push_receiver: PushReceiver) -> None:
    site = make_site("OFF", evses=2)
    station = site.stations.get()
    ChargingStation.objects.filter(pk=station.pk).update(channel_name="chan")
    partner = registered_partner(party, push_receiver)
    stations.station_disconnected(
        station_id=station.pk, connection_id=0, channel_name="chan", reason="closed"
    )
    deliver(partner)
    assert sorted(
        (c["path"].rsplit("/", 1)[1], c["body"]["status"]) for c in push_receiver.calls
    ) == [
        ("OFF-0-1", "UNKNOWN"),
        ("OFF-0-2", "UNKNOWN"),
    ]


def test_a_partner_without_a_locations_receiver_gets_no_location_pushes(
    party, push_receiver: PushReceiver
) -> None:
    site = make_site("NOLOC", evses=1)
    partner = registered_partner(party, push_receiver, modules=("sessions", "cdrs"))
    status_report(site.stations.get(), 1, "Charging", timezone.now())
    assert messages(partner) == []


def test_a_rolled_back_change_pushes_nothing(party, push_receiver: PushReceiver) -> None:
    site = make_site("ROLL", evses=1)
    partner = registered_partner(party, push_receiver)
    station = site.stations.get()

    def change_that_fails() -> None:
        with transaction.atomic():
            status_report(station, 1, "Charging", timezone.now())
            raise RuntimeError("the change fails")

    with pytest.raises(RuntimeError):
        change_that_fails()
    assert messages(partner) == []
    assert Evse.objects.get(uid="ROLL-0-1").status != "Charging"

"""Monitoring services: offline detection (beat's sweep, a dead node) and message-log pruning."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from stations.models import ChargingStation, OcppMessage, StationConnection
from stations.services import message_log_prune, stations_mark_offline, stations_node_down

pytestmark = pytest.mark.django_db


def test_a_station_is_offline_after_the_configured_missed_heartbeats(settings):
    settings.OCPP_OFFLINE_AFTER_MISSED_HEARTBEATS = 3
    now = timezone.now()
    quiet = ChargingStation.objects.create(
        identity="QUIET",
        is_online=True,
        heartbeat_interval=60,
        last_seen_at=now - timedelta(seconds=181),
    )
    alive = ChargingStation.objects.create(
        identity="ALIVE",
        is_online=True,
        heartbeat_interval=60,
        last_seen_at=now - timedelta(seconds=170),
    )
    # A very short interval never beats the throttled last-seen writes.
    chatty = ChargingStation.objects.create(
        identity="CHATTY",
        is_online=True,
        heartbeat_interval=5,
        last_seen_at=now - timedelta(seconds=40),
    )

    assert stations_mark_offline(now=now) == 1

    quiet.refresh_from_db()
    alive.refresh_from_db()
    chatty.refresh_from_db()
    assert (quiet.is_online, alive.is_online, chatty.is_online) == (False, True, True)


def test_the_stations_of_a_dead_node_go_offline_at_once():
    """A crashed daphne runs no disconnect handler: its stations are marked offline as soon as
    the run command sees it gone, however recently they were seen."""
    now = timezone.now()

    def online(identity: str, node: str) -> ChargingStation:
        station = ChargingStation.objects.create(
            identity=identity,
            is_online=True,
            node=node,
            channel_name=f"specific.{identity}",
            last_seen_at=now,
            heartbeat_interval=300,
        )
        StationConnection.objects.create(station=station, protocol="ocpp1.6", node=node)
        return station

    held = online("HELD", "host-a:8000")
    elsewhere = online("ELSEWHERE", "host-b:8000")

    assert stations_node_down(node="host-a:8000", reason="node died (code -9)") == 1

    held.refresh_from_db()
    elsewhere.refresh_from_db()
    assert (held.is_online, held.channel_name) == (False, "")
    assert held.last_seen_at == now  # when it was last heard from, not when the node died
    assert elsewhere.is_online
    closed = StationConnection.objects.get(station=held)
    assert closed.disconnected_at is not None
    assert closed.close_reason == "node died (code -9)"
    assert StationConnection.objects.get(station=elsewhere).disconnected_at is None
    # Nothing left to do the second time (the run command's start, then the child's death).
    assert stations_node_down(node="host-a:8000", reason="again") == 0


def test_the_message_log_is_pruned_after_its_retention(settings):
    settings.OCPP_MESSAGE_LOG_RETENTION_DAYS = 14
    now = timezone.now()
    OcppMessage.objects.create(
        identity="X", direction="in", frame="[]", created_at=now - timedelta(days=15)
    )
    kept = OcppMessage.objects.create(
        identity="X", direction="in", frame="[]", created_at=now - timedelta(days=13)
    )
    assert message_log_prune(now=now) == 1
    assert list(OcppMessage.objects.values_list("pk", flat=True)) == [kept.pk]

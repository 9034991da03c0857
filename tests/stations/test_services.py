"""Monitoring services run by Celery beat: offline detection and message-log pruning."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from stations.models import ChargingStation, OcppMessage
from stations.services import message_log_prune, stations_mark_offline

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

"""Two StartTransactions at the same moment, in two threads with their own database
connections, on PostgreSQL (SQLite serialises every writer, so nothing races there).

Each start is held for a moment between its decision and its insert (the transactionId is
drawn there), so that the two overlap for certain: without the unique start key both retries
would store a session, and without the token lock both starts would pass the limit.
"""

from __future__ import annotations

import threading
import time
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from django.db import connection, connections
from django.utils import timezone

from sessions import services
from sessions.models import ChargingSession, IdToken
from stations.models import ChargingStation

pytestmark = [pytest.mark.live, pytest.mark.django_db(transaction=True)]

START = timezone.now().replace(microsecond=0) - timedelta(minutes=5)


@pytest.fixture(autouse=True)
def _postgresql_only() -> None:
    if connection.vendor == "sqlite":
        pytest.skip(
            "SQLite serialises every writer (IMMEDIATE transactions): two starts cannot "
            "overlap; this runs on PostgreSQL"
        )


@pytest.fixture
def slow_insert(monkeypatch: Any) -> None:
    """Widen the window between a start's decision and its insert to half a second."""
    draw = services._next_ocpp16_transaction_id

    def slowly() -> int:
        time.sleep(0.5)
        return draw()

    monkeypatch.setattr(services, "_next_ocpp16_transaction_id", slowly)


def at_once(*calls: Any) -> list[Any]:
    """Run the calls in threads released together; their results (or exceptions) in order."""
    barrier = threading.Barrier(len(calls))
    results: list[Any] = [None] * len(calls)

    def run(i: int, call: Any) -> None:
        try:
            barrier.wait()
            results[i] = call()
        except Exception as error:  # reported by the test, not lost in the thread
            results[i] = error
        finally:
            connections.close_all()

    threads = [threading.Thread(target=run, args=(i, c)) for i, c in enumerate(calls)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return results


def start(station: ChargingStation, id_tag: str) -> Any:
    return lambda: services.session_start(
        station_id=station.pk,
        evse_id=1,
        connector_id=1,
        id_tag=id_tag,
        meter_start_wh=Decimal(1000),
        timestamp=START,
    )


def test_concurrent_retries_of_one_start_get_one_session_and_one_answer(slow_insert: None):
    station = ChargingStation.objects.create(identity="CP-RACE-RETRY", protocol="ocpp1.6")
    IdToken.objects.create(uid="04RACE0001")
    first, second = at_once(start(station, "04RACE0001"), start(station, "04RACE0001"))
    assert not isinstance(first, Exception), first
    assert not isinstance(second, Exception), second
    session = ChargingSession.objects.get(station=station)
    assert first.transaction_id == second.transaction_id == session.ocpp16_transaction_id
    assert first.authorization.status == second.authorization.status == "Accepted"


def test_two_stations_cannot_both_pass_a_concurrency_limit(slow_insert: None):
    stations = [
        ChargingStation.objects.create(identity=f"CP-RACE-{n}", protocol="ocpp1.6") for n in (1, 2)
    ]
    IdToken.objects.create(uid="04RACE0002", max_concurrent_sessions=1)
    results = at_once(*(start(s, "04RACE0002") for s in stations))
    statuses = sorted(r.authorization.status for r in results)
    assert statuses == ["Accepted", "ConcurrentTx"]
    assert ChargingSession.objects.filter(auth_status="Accepted").count() == 1


def test_two_cards_of_one_group_cannot_both_pass_the_groups_limit(slow_insert: None):
    stations = [
        ChargingStation.objects.create(identity=f"CP-GROUP-{n}", protocol="ocpp1.6") for n in (1, 2)
    ]
    group = IdToken.objects.create(uid="0AF1EE70", max_concurrent_sessions=1)
    for uid in ("04F1EE71", "04F1EE72"):
        IdToken.objects.create(uid=uid, group=group)
    results = at_once(start(stations[0], "04F1EE71"), start(stations[1], "04F1EE72"))
    assert sorted(r.authorization.status for r in results) == ["Accepted", "ConcurrentTx"]

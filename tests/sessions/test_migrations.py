"""Rows written before the one 1.6 address: moved by the data migrations, nothing lost."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("charging", "0003_authorization_context_stop"), ("tariffs", "0001_initial")]
AFTER = [
    ("charging", "0004_ocpp16_connector_address"),
    ("tariffs", "0002_ocpp16_connector_address"),
]


@pytest.mark.django_db(transaction=True)
def test_ocpp16_rows_move_to_evse_n_connector_1() -> None:
    try:
        _rows_move_to_evse_n_connector_1()
    finally:
        # Leave the database migrated to the latest state for the tests that follow, whatever
        # happened above (a failure here must not fail every later test too).
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


def _rows_move_to_evse_n_connector_1() -> None:
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    apps = executor.loader.project_state(BEFORE).apps
    station_model = apps.get_model("stations", "ChargingStation")
    session_model = apps.get_model("charging", "ChargingSession")
    sample_model = apps.get_model("charging", "MeterSample")
    tariff_model = apps.get_model("tariffs", "Tariff")
    assignment_model = apps.get_model("tariffs", "TariffAssignment")
    at = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
    old = station_model.objects.create(identity="MIG-16", protocol="ocpp1.6")
    new = station_model.objects.create(identity="MIG-201", protocol="ocpp2.0.1")
    session = session_model.objects.create(
        station=old, evse_id=2, connector_id=2, transaction_id="7", started_at=at
    )
    first = session_model.objects.create(
        station=old, evse_id=1, connector_id=1, transaction_id="8", started_at=at
    )
    other = session_model.objects.create(
        station=new, evse_id=2, connector_id=2, transaction_id="tx", started_at=at
    )
    sample_model.objects.create(
        station=old, session=session, evse_id=2, connector_id=2, timestamp=at, value=10
    )
    # The same reading already at the new address (a retried MeterValues): kept once.
    sample_model.objects.create(
        station=old, session=session, evse_id=2, connector_id=1, timestamp=at, value=10
    )
    sample_model.objects.create(
        station=old,
        session=session,
        evse_id=2,
        connector_id=2,
        timestamp=at + dt.timedelta(minutes=1),
        value=20,
    )
    tariff = tariff_model.objects.create(tariff_id="MIG", name="Migrated")
    assignment = assignment_model.objects.create(
        tariff=tariff, station=old, evse_id=2, connector_id=2
    )
    kept = assignment_model.objects.create(tariff=tariff, station=new, evse_id=2, connector_id=2)

    executor = MigrationExecutor(connection)
    executor.migrate(AFTER)
    apps = executor.loader.project_state(AFTER).apps
    session_model = apps.get_model("charging", "ChargingSession")
    sample_model = apps.get_model("charging", "MeterSample")
    assignment_model = apps.get_model("tariffs", "TariffAssignment")

    assert session_model.objects.get(pk=session.pk).connector_id == 1
    assert session_model.objects.get(pk=first.pk).connector_id == 1
    assert session_model.objects.get(pk=other.pk).connector_id == 2
    assert sorted(
        sample_model.objects.filter(station_id=old.pk).values_list(
            "evse_id", "connector_id", "value"
        )
    ) == [(2, 1, 10), (2, 1, 20)]
    assert assignment_model.objects.get(pk=assignment.pk).connector_id == 1
    assert assignment_model.objects.get(pk=kept.pk).connector_id == 2

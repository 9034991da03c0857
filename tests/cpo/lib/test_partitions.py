"""Meter samples and the message log partitioned by month on PostgreSQL (cpo.lib.partitions)."""

from __future__ import annotations

import datetime as dt

import pytest
from django.db import connection

from cpo.lib.partitions import (
    MONTHS_AHEAD,
    is_partitioned,
    partition_month_ensure,
    partitioned_table_convert,
    partitions_maintain,
    partitions_of,
)
from cpo.tasks import partitions_maintain as partitions_maintain_task
from sessions.services import Sample, SampleBatch, session_meter_samples
from stations.models import ChargingStation, OcppMessage

pytestmark = pytest.mark.django_db(transaction=True)
postgresql = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="partitioning is PostgreSQL's"
)


def _month(day: dt.date) -> str:
    return f"{day:%Y%m}"


def _partition_holding(table: str, row_id: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT tableoid::regclass::text FROM "{table}" WHERE id = %s', [row_id])  # noqa: S608
        return cursor.fetchone()[0]


def _samples(station: ChargingStation, at: dt.datetime, value: str) -> None:
    session_meter_samples(
        station_id=station.pk,
        batch=SampleBatch(evse_id=1, connector_id=1, samples=[Sample(timestamp=at, value=value)]),
    )


@postgresql
def test_the_migrations_partition_meter_samples_and_the_message_log_by_month():
    today = dt.datetime.now(dt.UTC).date()
    for table in ("charging_metersample", "stations_ocppmessage"):
        assert is_partitioned(connection, table)
        names = partitions_of(connection, table)
        assert f"{table}_default" in names
        assert f"{table}_p{_month(today)}" in names
        ahead = today.replace(day=1)
        for _ in range(MONTHS_AHEAD):
            ahead = (ahead + dt.timedelta(days=32)).replace(day=1)
        assert f"{table}_p{_month(ahead)}" in names


@postgresql
def test_rows_land_in_their_month_a_resent_value_is_kept_once_and_a_wild_clock_in_the_default():
    station = ChargingStation.objects.create(identity="PART-1", protocol="ocpp1.6")
    now = dt.datetime.now(dt.UTC).replace(microsecond=0)
    _samples(station, now, "100")
    _samples(station, now, "100")  # a retried MeterValues
    from sessions.models import MeterSample

    (sample,) = MeterSample.objects.filter(station=station)
    assert _partition_holding("charging_metersample", sample.pk) == (
        f"charging_metersample_p{_month(now.date())}"
    )
    _samples(station, dt.datetime(2003, 5, 1, tzinfo=dt.UTC), "1")
    old = MeterSample.objects.get(station=station, timestamp__year=2003)
    assert _partition_holding("charging_metersample", old.pk) == "charging_metersample_default"
    log = OcppMessage.objects.create(
        station=station, identity="PART-1", direction="in", action="Heartbeat", frame="[]"
    )
    assert _partition_holding("stations_ocppmessage", log.pk) == (
        f"stations_ocppmessage_p{_month(log.created_at.date())}"
    )


@postgresql
def test_a_new_month_takes_over_its_rows_from_the_default_and_old_months_are_dropped():
    from sessions.models import MeterSample

    station = ChargingStation.objects.create(identity="PART-2", protocol="ocpp1.6")
    far = dt.datetime(2031, 2, 10, tzinfo=dt.UTC)
    _samples(station, far, "5")
    sample = MeterSample.objects.get(station=station)
    assert _partition_holding("charging_metersample", sample.pk) == "charging_metersample_default"
    assert partition_month_ensure(
        connection, table="charging_metersample", column="timestamp", month=far.date()
    )
    assert _partition_holding("charging_metersample", sample.pk) == "charging_metersample_p203102"
    assert MeterSample.objects.filter(station=station).count() == 1
    # Created once.
    assert not partition_month_ensure(
        connection, table="charging_metersample", column="timestamp", month=far.date()
    )

    # Retention: months wholly older than it go; the coming months are made, the default stays.
    before = partitions_of(connection, "charging_metersample")
    try:
        done = partitions_maintain(
            connection,
            retention_days={"charging_metersample": 400},
            today=dt.date(2032, 6, 15),
        )
        dropped = done["charging_metersample"]["dropped"]
        assert "charging_metersample_p203102" in dropped
        assert f"charging_metersample_p{_month(dt.datetime.now(dt.UTC).date())}" in dropped
        assert done["charging_metersample"]["created"] == [
            f"charging_metersample_p2032{month:02d}" for month in range(6, 10)
        ]
        assert not MeterSample.objects.filter(station=station).exists()
        assert "charging_metersample_default" in partitions_of(connection, "charging_metersample")
        # No retention for the message log given: nothing of it dropped.
        assert done["stations_ocppmessage"]["dropped"] == []
    finally:
        # The months the rest of the suite writes into.
        for name in before:
            if name.endswith("_default"):
                continue
            month = dt.date(int(name[-6:-2]), int(name[-2:]), 1)
            partition_month_ensure(
                connection, table="charging_metersample", column="timestamp", month=month
            )


@postgresql
def test_converting_keeps_rows_ids_and_constraints():
    with connection.cursor() as cursor:
        cursor.execute(
            "CREATE TABLE part_probe (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY,"
            " at timestamptz NOT NULL, kind varchar(8) NOT NULL,"
            " CONSTRAINT part_probe_unique UNIQUE (kind, at))"
        )
        cursor.execute("CREATE INDEX part_probe_kind_idx ON part_probe (kind)")
        cursor.execute("INSERT INTO part_probe (at, kind) VALUES (now(), 'a'), ('2001-01-01', 'b')")
    try:
        partitioned_table_convert(connection, table="part_probe", column="at")
        assert is_partitioned(connection, "part_probe")
        with connection.cursor() as cursor:
            cursor.execute("SELECT id, kind FROM part_probe ORDER BY id")
            assert cursor.fetchall() == [(1, "a"), (2, "b")]
            cursor.execute("INSERT INTO part_probe (at, kind) VALUES (now(), 'c') RETURNING id")
            assert cursor.fetchone()[0] == 3  # the identity goes on after the copied rows
            cursor.execute(
                "SELECT conname FROM pg_constraint WHERE conrelid = 'part_probe'::regclass"
                " ORDER BY conname"
            )
            assert [row[0] for row in cursor.fetchall()] == ["part_probe_pkey", "part_probe_unique"]
            cursor.execute("SELECT indexname FROM pg_indexes WHERE tablename = 'part_probe'")
            assert "part_probe_kind_idx" in {row[0] for row in cursor.fetchall()}
        with pytest.raises(ValueError, match="identifier"):
            partitioned_table_convert(connection, table="x; DROP TABLE y", column="at")
    finally:
        with connection.cursor() as cursor:
            cursor.execute("DROP TABLE IF EXISTS part_probe")


def test_on_sqlite_the_tables_stay_as_they_are_and_the_task_does_nothing():
    if connection.vendor == "postgresql":
        pytest.skip("the SQLite path")
    assert not is_partitioned(connection, "charging_metersample")
    assert partitions_of(connection, "charging_metersample") == []
    assert partitions_maintain_task() == {}

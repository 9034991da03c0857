"""Native PostgreSQL partitioning by month for the big append-only tables.

Meter samples and the OCPP message log grow with every charger message; on PostgreSQL they are
partitioned by range of their time column, one partition per calendar month (UTC), named
`<table>_pYYYYMM`, plus a default partition for rows outside every month created (a charger
whose clock is years off). Old months are dropped whole, which costs nothing, instead of
deleting rows one by one. SQLite keeps one table: every function here does nothing there.

`partitioned_table_convert` is what the migrations call; `partitions_maintain` runs daily on
beat: it creates the months ahead (moving any rows the default partition already holds for
such a month into it) and drops the months past a table's retention.
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from dataclasses import dataclass

from django.db.backends.base.base import BaseDatabaseWrapper

logger = logging.getLogger(__name__)

MONTHS_AHEAD = 3
# On conversion: months back from now that get partitions of their own (older rows go to the
# default partition, where they stay readable).
MONTHS_BACK = 2

_MONTH = re.compile(r"_p(\d{4})(\d{2})$")
# Table and column names go into the SQL text (identifiers cannot be parameters): only plain
# lower-case names are accepted, and they come from this module's TABLES and the migrations.
_IDENTIFIER = re.compile(r"^[a-z_][a-z0-9_]{0,50}$")


def _identifiers(*names: str) -> None:
    for name in names:
        if not _IDENTIFIER.match(name):
            raise ValueError(f"not a plain SQL identifier: {name!r}")


@dataclass(frozen=True)
class PartitionedTable:
    table: str
    column: str


# The tables partitioned on PostgreSQL, and by which time column.
TABLES = (
    PartitionedTable("charging_metersample", "timestamp"),
    PartitionedTable("stations_ocppmessage", "created_at"),
)


def _is_postgresql(connection: BaseDatabaseWrapper) -> bool:
    return connection.vendor == "postgresql"


def _month_start(day: dt.date) -> dt.date:
    return day.replace(day=1)


def _next_month(day: dt.date) -> dt.date:
    return (day.replace(day=28) + dt.timedelta(days=4)).replace(day=1)


def _previous_month(day: dt.date) -> dt.date:
    return (day.replace(day=1) - dt.timedelta(days=1)).replace(day=1)


def _bound(day: dt.date) -> str:
    return f"{day.isoformat()} 00:00:00+00"


def is_partitioned(connection: BaseDatabaseWrapper, table: str) -> bool:
    if not _is_postgresql(connection):
        return False
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT 1 FROM pg_partitioned_table p JOIN pg_class c ON c.oid = p.partrelid"
            " WHERE c.relname = %s AND pg_table_is_visible(c.oid)",
            [table],
        )
        return cursor.fetchone() is not None


def partitions_of(connection: BaseDatabaseWrapper, table: str) -> list[str]:
    """The partitions' names, default included, in name order."""
    if not _is_postgresql(connection):
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid"
            " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s ORDER BY c.relname",
            [table],
        )
        return [row[0] for row in cursor.fetchall()]


def partitioned_table_convert(
    connection: BaseDatabaseWrapper, *, table: str, column: str, today: dt.date | None = None
) -> None:
    """Turn `table` into a table partitioned by month on `column`, keeping its rows, columns,
    identity sequence, foreign keys, indexes and unique constraints (each must contain
    `column`, as PostgreSQL requires). The primary key becomes (id, column)."""
    _identifiers(table, column)
    if not _is_postgresql(connection) or is_partitioned(connection, table):
        return
    old = f"{table}_unpartitioned"
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT conname, pg_get_constraintdef(oid), contype FROM pg_constraint"
            " WHERE conrelid = %s::regclass AND contype IN ('f', 'u') ORDER BY conname",
            [table],
        )
        constraints = cursor.fetchall()
        cursor.execute(
            "SELECT i.relname, pg_get_indexdef(i.oid) FROM pg_index x"
            " JOIN pg_class i ON i.oid = x.indexrelid"
            " WHERE x.indrelid = %s::regclass AND NOT x.indisprimary"
            " AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conindid = i.oid)"
            " ORDER BY i.relname",
            [table],
        )
        indexes = cursor.fetchall()
        cursor.execute(f'ALTER TABLE "{table}" RENAME TO "{old}"')
        cursor.execute(
            "SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass AND contype = 'p'",
            [old],
        )
        for (primary,) in cursor.fetchall():
            cursor.execute(f'ALTER TABLE "{old}" RENAME CONSTRAINT "{primary}" TO "{old}_pkey"')
        # The names move to the new table, so the old one gives them up.
        for name, _, _ in constraints:
            cursor.execute(f'ALTER TABLE "{old}" DROP CONSTRAINT "{name}"')
        for name, _ in indexes:
            cursor.execute(f'DROP INDEX "{name}"')
        cursor.execute(
            f'CREATE TABLE "{table}" (LIKE "{old}" INCLUDING DEFAULTS INCLUDING IDENTITY'
            f' INCLUDING STORAGE INCLUDING COMMENTS) PARTITION BY RANGE ("{column}")'
        )
        cursor.execute(
            f'ALTER TABLE "{table}" ADD CONSTRAINT "{table}_pkey" PRIMARY KEY ("id", "{column}")'
        )
        for name, definition, _ in constraints:
            cursor.execute(f'ALTER TABLE "{table}" ADD CONSTRAINT "{name}" {definition}')
        for _, definition in indexes:
            cursor.execute(definition.replace(f" ON public.{old} ", f" ON public.{table} "))
        cursor.execute(f'CREATE TABLE "{table}_default" PARTITION OF "{table}" DEFAULT')
        today = today or dt.datetime.now(dt.UTC).date()
        month = _month_start(today)
        for _ in range(MONTHS_BACK):
            month = _previous_month(month)
        last = _month_start(today)
        for _ in range(MONTHS_AHEAD):
            last = _next_month(last)
        while month <= last:
            _partition_create(cursor, table=table, month=month)
            month = _next_month(month)
        cursor.execute(f'INSERT INTO "{table}" SELECT * FROM "{old}"')  # noqa: S608
        restart = f"SELECT setval(pg_get_serial_sequence('\"{table}\"', 'id'),"
        restart += f' COALESCE((SELECT MAX("id") FROM "{table}"), 0) + 1, false)'  # noqa: S608
        cursor.execute(restart)
        cursor.execute(f'DROP TABLE "{old}"')


def _partition_create(cursor: object, *, table: str, month: dt.date) -> None:
    name = f"{table}_p{month:%Y%m}"
    cursor.execute(  # type: ignore[attr-defined]
        f'CREATE TABLE IF NOT EXISTS "{name}" PARTITION OF "{table}"'
        f" FOR VALUES FROM ('{_bound(month)}') TO ('{_bound(_next_month(month))}')"
    )


def partition_month_ensure(
    connection: BaseDatabaseWrapper, *, table: str, column: str, month: dt.date
) -> bool:
    """Create the partition of `month` if it is missing; True when it was created. Rows the
    default partition holds for that month move into it (PostgreSQL refuses the new
    partition otherwise), in one transaction."""
    _identifiers(table, column)
    month = _month_start(month)
    name = f"{table}_p{month:%Y%m}"
    if name in partitions_of(connection, table):
        return False
    start, end = _bound(month), _bound(_next_month(month))
    with connection.cursor() as cursor:
        in_month = f'"{column}" >= %s AND "{column}" < %s'
        stray_sql = f'SELECT EXISTS (SELECT 1 FROM "{table}_default" WHERE {in_month})'  # noqa: S608
        cursor.execute(stray_sql, [start, end])
        (stray,) = cursor.fetchone()
        if not stray:
            _partition_create(cursor, table=table, month=month)
            return True
        cursor.execute(f'ALTER TABLE "{table}" DETACH PARTITION "{table}_default"')
        _partition_create(cursor, table=table, month=month)
        move_sql = f'INSERT INTO "{table}" SELECT * FROM "{table}_default" WHERE {in_month}'  # noqa: S608
        cursor.execute(move_sql, [start, end])
        moved = cursor.rowcount
        cursor.execute(
            f'DELETE FROM "{table}_default" WHERE {in_month}',  # noqa: S608
            [start, end],
        )
        cursor.execute(f'ALTER TABLE "{table}" ATTACH PARTITION "{table}_default" DEFAULT')
    logger.warning("%s: %s rows of %s moved from the default partition", table, moved, name)
    return True


def partitions_drop_before(
    connection: BaseDatabaseWrapper, *, table: str, before: dt.date
) -> list[str]:
    """Drop the monthly partitions that end on or before `before`; returns their names."""
    _identifiers(table)
    dropped = []
    with connection.cursor() as cursor:
        for name in partitions_of(connection, table):
            found = _MONTH.search(name)
            if found is None:
                continue
            month = dt.date(int(found.group(1)), int(found.group(2)), 1)
            if _next_month(month) <= before:
                cursor.execute(f'DROP TABLE "{name}"')
                dropped.append(name)
    return dropped


def partitions_maintain(
    connection: BaseDatabaseWrapper,
    *,
    retention_days: dict[str, int],
    today: dt.date | None = None,
) -> dict[str, dict[str, list[str]]]:
    """The daily pass: the next MONTHS_AHEAD months exist, and the months wholly older than a
    table's retention (days; 0 keeps everything) are dropped."""
    today = today or dt.datetime.now(dt.UTC).date()
    done: dict[str, dict[str, list[str]]] = {}
    for spec in TABLES:
        if not is_partitioned(connection, spec.table):
            continue
        created = []
        month = _month_start(today)
        for _ in range(MONTHS_AHEAD + 1):
            if partition_month_ensure(
                connection, table=spec.table, column=spec.column, month=month
            ):
                created.append(f"{spec.table}_p{month:%Y%m}")
            month = _next_month(month)
        dropped: list[str] = []
        days = retention_days.get(spec.table, 0)
        if days > 0:
            dropped = partitions_drop_before(
                connection, table=spec.table, before=today - dt.timedelta(days=days)
            )
        done[spec.table] = {"created": created, "dropped": dropped}
    return done

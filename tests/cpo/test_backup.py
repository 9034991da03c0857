"""`manage.py backup`: a consistent, restorable copy taken while the back office writes."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import threading
from io import StringIO
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

pytestmark = pytest.mark.django_db(transaction=True)


def _stations(count: int, prefix: str) -> None:
    from stations.models import ChargingStation

    ChargingStation.objects.bulk_create(
        ChargingStation(identity=f"{prefix}-{n}", protocol="ocpp1.6") for n in range(count)
    )


def _backup(directory: Path) -> Path:
    out = StringIO()
    call_command("backup", str(directory), stdout=out)
    (folder,) = directory.iterdir()
    assert f"backup written to {folder}" in out.getvalue()
    return folder


def _writer(stop: threading.Event, written: list[int]) -> None:
    from stations.models import ChargingStation

    try:
        while not stop.is_set():
            ChargingStation.objects.create(identity=f"LIVE-{len(written)}", protocol="ocpp1.6")
            written.append(1)
    finally:
        connection.close()


def _backup_while_writing(tmp_path: Path) -> tuple[Path, int, int]:
    from stations.models import ChargingStation

    _stations(500, "KEPT")
    before = ChargingStation.objects.count()
    stop, written = threading.Event(), list[int]()
    writer = threading.Thread(target=_writer, args=(stop, written))
    writer.start()
    try:
        while len(written) < 5:  # the writer is busy before the backup starts
            threading.Event().wait(0.01)
        folder = _backup(tmp_path)
    finally:
        stop.set()
        writer.join()
    return folder, before, ChargingStation.objects.count()


@pytest.mark.skipif(connection.vendor != "sqlite", reason="the SQLite backup path")
def test_sqlite_backup_is_a_consistent_snapshot_taken_while_another_connection_writes(tmp_path):
    from stations.models import ChargingStation

    folder, before, after = _backup_while_writing(tmp_path)

    copy = sqlite3.connect(folder / "cpo.sqlite3")
    try:
        assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        table = ChargingStation._meta.db_table
        (copied,) = copy.execute(f"SELECT count(*) FROM {table}").fetchone()  # noqa: S608
        kept = copy.execute(f"SELECT count(*) FROM {table} WHERE identity LIKE 'KEPT-%'")  # noqa: S608
        assert kept.fetchone()[0] == 500
    finally:
        copy.close()
    assert before <= copied <= after

    manifest = json.loads((folder / "manifest.json").read_text())
    assert manifest["vendor"] == "sqlite"
    assert manifest["files"]["database"] == "cpo.sqlite3"
    assert "stations.0001_initial" in manifest["migrations"]
    # The key in the data directory travels with the database it seals secrets for.
    assert manifest["files"]["key"] == "secret_key"
    assert (folder / "secret_key").read_text().strip()


@pytest.mark.skipif(connection.vendor != "postgresql", reason="the PostgreSQL backup path")
def test_postgresql_backup_restores_into_a_new_database(tmp_path):
    import psycopg
    from psycopg import sql

    from stations.models import ChargingStation

    folder, before, after = _backup_while_writing(tmp_path)
    dump = folder / "cpo.pgdump"
    assert json.loads((folder / "manifest.json").read_text())["files"]["database"] == dump.name

    settings_dict = connection.settings_dict
    restored = f"{settings_dict['NAME']}_restored"
    params = {"host": settings_dict["HOST"], "port": settings_dict["PORT"] or 5432}
    params["user"] = settings_dict["USER"]
    with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{restored}"')
        admin.execute(f'CREATE DATABASE "{restored}"')
    try:
        subprocess.run(
            [
                shutil.which("pg_restore") or "pg_restore",
                "--no-owner",
                f"--host={params['host']}",
                f"--port={params['port']}",
                f"--username={params['user']}",
                f"--dbname={restored}",
                str(dump),
            ],
            check=True,
            capture_output=True,
        )
        with psycopg.connect(dbname=restored, **params) as copy:
            table = sql.Identifier(ChargingStation._meta.db_table)
            count = sql.SQL("SELECT count(*) FROM {}").format(table)
            (copied,) = copy.execute(count).fetchone() or (0,)
            kept = copy.execute(count + sql.SQL(" WHERE identity LIKE 'KEPT-%%'"))
            assert kept.fetchone() == (500,)
    finally:
        with psycopg.connect(dbname="postgres", autocommit=True, **params) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{restored}" WITH (FORCE)')
    assert before <= copied <= after

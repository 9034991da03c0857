"""`python manage.py backup DIR` (what `make backup` runs): a consistent copy of what the back
office cannot rebuild, taken while it runs.

What it writes into DIR/<UTC timestamp>/:
- the database: SQLite through SQLite's online backup API (a consistent snapshot even while
  daphne and the worker write, which copying the file under WAL is not); PostgreSQL with
  `pg_dump --format=custom` (restore with `pg_restore`);
- `secret_key` when the key lives in the data directory: sealed command payloads and the masks
  of station secrets are derived from it, so a database without its key loses them;
- `media/`: diagnostics uploads and other stored files;
- `manifest.json`: when, which database, which migrations were applied, sizes.

Redis holds nothing that needs a backup: the database is the command queue and the record of
every task's work; the sweeps re-queue what a lost Redis forgot (README "What survives which
failure").
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.db import connection
from django.db.migrations.recorder import MigrationRecorder


class Command(BaseCommand):
    help = "Write a consistent backup of the database, the secret key and media into DIR."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("directory", type=Path, help="where the backup folder is created")

    def handle(self, *args: Any, **options: Any) -> None:
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")
        target: Path = options["directory"].resolve() / stamp
        target.mkdir(parents=True, exist_ok=False)
        manifest: dict[str, Any] = {"created_at": stamp, "vendor": connection.vendor, "files": {}}

        if connection.vendor == "sqlite":
            database_file = target / "cpo.sqlite3"
            _sqlite_backup(Path(connection.settings_dict["NAME"]), database_file)
        elif connection.vendor == "postgresql":
            database_file = target / "cpo.pgdump"
            _pg_dump(connection.settings_dict, database_file)
        else:
            raise CommandError(f"no backup method for the {connection.vendor} database")
        manifest["files"]["database"] = database_file.name

        key_file = Path(settings.DATA_DIR) / "secret_key"
        if key_file.exists() and key_file.read_text().strip() == settings.SECRET_KEY:
            shutil.copy2(key_file, target / "secret_key")
            os.chmod(target / "secret_key", 0o600)
            manifest["files"]["key"] = key_file.name
        else:
            # The key comes from the environment: it is backed up wherever that is kept.
            manifest["key"] = "SECRET_KEY comes from the environment and is not copied"

        media = Path(settings.MEDIA_ROOT)
        if media.is_dir():
            shutil.copytree(media, target / "media")
            manifest["files"]["media"] = "media/"

        manifest["migrations"] = sorted(
            f"{app}.{name}"
            for app, name in MigrationRecorder(connection).migration_qs.values_list("app", "name")
        )
        manifest["sizes"] = {
            str(path.relative_to(target)): path.stat().st_size
            for path in sorted(target.rglob("*"))
            if path.is_file()
        }
        (target / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
        self.stdout.write(f"backup written to {target}")


def _sqlite_backup(source: Path, destination: Path) -> None:
    # A connection of its own: the backup API copies page by page and restarts the copy when
    # a writer changes a page in between, so the result is one consistent state.
    src = sqlite3.connect(source, timeout=20)
    dst = sqlite3.connect(destination)
    try:
        with dst:
            src.backup(dst, pages=4096)
        if dst.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise CommandError(f"the copy {destination} fails SQLite's integrity check")
    finally:
        dst.close()
        src.close()


def _pg_dump(database: dict[str, Any], destination: Path) -> None:
    binary = shutil.which("pg_dump")
    if binary is None:
        raise CommandError("pg_dump is not installed (Debian: apt-get install postgresql-client)")
    environment = os.environ | {
        "PGHOST": str(database.get("HOST") or ""),
        "PGPORT": str(database.get("PORT") or ""),
        "PGUSER": str(database.get("USER") or ""),
        "PGPASSWORD": str(database.get("PASSWORD") or ""),
        "PGDATABASE": str(database["NAME"]),
    }
    result = subprocess.run(
        [binary, "--format=custom", "--no-owner", f"--file={destination}"],
        env={key: value for key, value in environment.items() if value},
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise CommandError(f"pg_dump failed: {result.stderr.strip()}")

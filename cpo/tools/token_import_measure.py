"""Measure a big token import on the embedded SQLite: duration, the longest time another
writer waited for the database, and the process's memory.

    .venv/bin/python -m cpo.tools.token_import_measure --rows 50000

It runs in a fresh data directory of its own (never the one of `make run`): migrates a new
SQLite file, stores a file of `--rows` cards as an upload would, and runs the import the way
the Celery task does (`sessions.token_import.token_import_process`), in this process. A second
thread plays a charger: it writes one row (a station's last-seen time) every 20 ms on its own
connection, and records how long each write waited, which is how long the import held the
write lock at a stretch. Memory is the resident set size (VmRSS), sampled every 0.1 s.
"""

from __future__ import annotations

import argparse
import csv
import io
import os
import tempfile
import threading
import time
from pathlib import Path


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cards_csv(count: int) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["uid", "type", "visual_number", "account", "valid_until", "blocked"])
    for n in range(1, count + 1):
        writer.writerow(
            [f"{0x04000000 + n:08X}", "ISO14443", f"NL-ACM-{n:06d}", "ACME", "2031-12-31", "0"]
        )
    return out.getvalue().encode()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=50_000)
    args = parser.parse_args()

    data_dir = Path(tempfile.mkdtemp(prefix="token-import-measure-"))
    os.environ["CPO_DATA_DIR"] = str(data_dir)
    os.environ.pop("DATABASE_URL", None)
    os.environ.pop("REDIS_URL", None)
    os.environ["CELERY_TASK_ALWAYS_EAGER"] = "true"  # the local-list tasks run here, not queued
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpo.settings")
    import django

    django.setup()
    from django.core.management import call_command
    from django.db import connection
    from django.utils import timezone

    call_command("migrate", verbosity=0)
    from sessions import services
    from sessions.models import IdToken, TokenImport
    from sessions.token_import import token_import_process
    from stations.models import ChargingStation

    services.account_create(name="Acme Fleet", reference="ACME", kind="company")
    probe = ChargingStation.objects.create(identity="PROBE-1")
    content = cards_csv(args.rows)
    token_import = TokenImport.objects.create(
        content=content, file_name="cards.csv", file_format="csv"
    )
    connection.close()

    stop = threading.Event()
    waits: list[float] = []
    rss: list[float] = []

    def charger() -> None:
        while not stop.is_set():
            began = time.monotonic()
            ChargingStation.objects.filter(pk=probe.pk).update(last_seen_at=timezone.now())
            waits.append(time.monotonic() - began)
            time.sleep(0.02)
        connection.close()

    def memory() -> None:
        while not stop.is_set():
            rss.append(rss_mib())
            time.sleep(0.1)

    before = rss_mib()
    threads = [threading.Thread(target=charger), threading.Thread(target=memory)]
    for thread in threads:
        thread.start()
    began = time.monotonic()
    result = token_import_process(token_import_id=token_import.pk)
    duration = time.monotonic() - began
    stop.set()
    for thread in threads:
        thread.join()

    print(f"rows: {args.rows:,} ({len(content) / 1e6:.1f} MB of CSV), status {result.status}")
    print(f"created {result.created_count:,}, tokens in the table {IdToken.objects.count():,}")
    print(f"duration: {duration:.1f} s")
    print(
        f"charger writes: {len(waits)}, longest wait {max(waits):.3f} s, "
        f"median {sorted(waits)[len(waits) // 2] * 1000:.1f} ms"
    )
    print(f"RSS: {before:.0f} MiB before, {max(rss):.0f} MiB peak (+{max(rss) - before:.0f} MiB)")
    print(f"data dir (delete at will): {data_dir}")


if __name__ == "__main__":
    main()

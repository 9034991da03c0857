"""`python manage.py simulate`: simulated charging stations against a running back office.

    manage.py simulate --demo                  the demo stations of `make run`, for a live demo
    manage.py simulate --count 500 --create    500 generated stations (created in the database)

Stations behave like real chargers (see cpo/tools/simulator.py) until Ctrl-C or --duration.
The back office is the one `make run` starts: ws://127.0.0.1:$PORT/ocpp (PORT 8000 unless set),
or --url. Up to NOTES_UP_TO stations say what they do (connected, waiting N s before the next
session, failed to connect and why); every 10 s a summary counts the whole fleet.
"""

from __future__ import annotations

import os
import signal
import time
from collections import Counter
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from cpo.tools.simulator import (
    DEFAULT_MEASURANDS,
    Behaviour,
    Fleet,
    StationSpec,
    fleet_specs,
    raise_open_files_limit,
)

# Above this many stations, only the summary: one line per event would be a flood.
NOTES_UP_TO = 20
REPORT_EVERY = 10.0


def _pair(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    return float(low), float(high or low)


def default_url() -> str:
    """The OCPP endpoint of `make run` on this machine: PORT (8000), on HOST when that is one
    address rather than all of them."""
    port = os.environ.get("PORT", "").strip() or "8000"
    if not port.isdigit():
        raise CommandError(f"PORT must be a port number, got {port!r}")
    host = os.environ.get("HOST", "").strip()
    if host in ("", "0.0.0.0", "::", "[::]"):  # noqa: S104 - listening everywhere, not a target
        host = "127.0.0.1"
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"ws://{host}:{port}/ocpp"


def _span(low: float, high: float) -> str:
    return f"{low:g} s" if low == high else f"{low:g}-{high:g} s"


class Command(BaseCommand):
    help = "Run simulated OCPP 1.6J / 2.0.1 / 2.1 charging stations against a back office."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url",
            default="",
            help="the OCPP endpoint, without the identity (default ws://127.0.0.1:$PORT/ocpp, "
            "where `make run` listens: PORT and HOST as for make run, PORT 8000 unless set)",
        )
        parser.add_argument(
            "--demo",
            action="store_true",
            help="drive the demo stations DEMO-16 and DEMO-201 of `make run`",
        )
        parser.add_argument("--count", type=int, default=0, help="N generated stations")
        parser.add_argument("--prefix", default="SIM-", help="identity prefix of generated ones")
        parser.add_argument(
            "--create",
            action="store_true",
            help="create the generated stations in the database first",
        )
        parser.add_argument(
            "--protocols",
            default="ocpp1.6,ocpp2.0.1",
            help="generated stations take these round-robin",
        )
        parser.add_argument("--connectors", type=int, default=2)
        parser.add_argument(
            "--id-tag",
            default="",
            help="the tag drivers present (default DEMO-TAG-OK with --demo, else BENCH-TAG-OK)",
        )
        parser.add_argument("--meter-interval", type=float, default=60.0, help="seconds")
        parser.add_argument("--measurands", default=",".join(DEFAULT_MEASURANDS))
        parser.add_argument(
            "--session-gap",
            type=_pair,
            default=(60.0, 300.0),
            help="idle seconds before a session, MIN,MAX",
        )
        parser.add_argument(
            "--session-length",
            type=_pair,
            default=(300.0, 1200.0),
            help="seconds a session lasts, MIN,MAX",
        )
        parser.add_argument(
            "--processes",
            type=int,
            default=0,
            help="worker processes (default: one per 2,500 stations)",
        )
        parser.add_argument("--duration", type=float, default=0, help="stop after N seconds")
        parser.add_argument(
            "--outage-every",
            type=float,
            default=0,
            help="every N seconds a share of the stations loses its connection",
        )
        parser.add_argument("--outage-share", type=float, default=0.1)
        parser.add_argument("--outage-seconds", type=float, default=30.0)
        parser.add_argument(
            "--quiet",
            action="store_true",
            help=f"only the summary every {REPORT_EVERY:g} s, no line per station event "
            f"(always so above {NOTES_UP_TO} stations)",
        )
        parser.add_argument(
            "--validate",
            action="store_true",
            default=None,
            help="check every frame against the schemas (default with --demo)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        raise_open_files_limit()
        specs: list[StationSpec] = []
        if options["demo"]:
            from cpo.demo import DEMO_STATIONS

            specs += [
                StationSpec(
                    identity=s["identity"],
                    protocol=s["protocol"],
                    password=s["password"],
                    connectors=s["evses"],
                )
                for s in DEMO_STATIONS
            ]
        if options["count"]:
            protocols = [p.strip() for p in options["protocols"].split(",") if p.strip()]
            generated = fleet_specs(
                prefix=options["prefix"],
                count=options["count"],
                protocols=protocols,
                connectors=options["connectors"],
                seed=settings.SECRET_KEY,
            )
            if options["create"]:
                from cpo.tools.bench.data import fleet_stations_create

                rows = fleet_stations_create(specs=generated)
                self.stdout.write(f"{len(generated)} stations ready ({rows.created} created)")
            specs += generated
        if not specs:
            raise CommandError("nothing to simulate: give --demo and/or --count N")
        id_tag = options["id_tag"] or ("DEMO-TAG-OK" if options["demo"] else "BENCH-TAG-OK")
        validate = options["validate"] if options["validate"] is not None else options["demo"]
        behaviour = Behaviour(
            meter_interval=options["meter_interval"] or None,
            measurands=tuple(m.strip() for m in options["measurands"].split(",") if m.strip()),
            id_tag=id_tag,
            session_gap=options["session_gap"],
            session_length=options["session_length"],
            validate=bool(validate),
        )
        processes = options["processes"] or max(1, -(-len(specs) // 2500))
        url = options["url"] or default_url()
        notes = not options["quiet"] and len(specs) <= NOTES_UP_TO
        fleet = Fleet(specs, url, behaviour, processes=processes, notes=notes)
        stopping = False

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            if stopping:
                # Ctrl-C again: no more waiting for connections to close.
                fleet.terminate()
                raise SystemExit(130)
            # Only a flag: printing here could re-enter a write the main loop is in.
            stopping = True

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        self._introduce(specs, url, behaviour, notes)
        self._failures_seen: Counter[str] = Counter()
        fleet.start()
        try:
            # No deadline to wait for: stations that cannot connect keep retrying with back-off.
            fleet.command("connect", deadline=time.time() + 1)
            fleet.command("life")
            started = last_report = last_outage = time.monotonic()
            while not stopping:
                time.sleep(0.5)
                self._notes(fleet)
                now = time.monotonic()
                if options["duration"] and now - started >= options["duration"]:
                    self.stdout.write(f"--duration {options['duration']:g} s reached")
                    break
                if options["outage_every"] and now - last_outage >= options["outage_every"]:
                    last_outage = now
                    fleet.command(
                        "outage",
                        fraction=options["outage_share"],
                        seconds=options["outage_seconds"],
                    )
                if now - last_report >= REPORT_EVERY:
                    last_report = now
                    self._report(fleet, len(specs))
            if stopping:
                self.stdout.write(
                    f"Stopping: closing the connections of {len(specs)} station(s) "
                    "(Ctrl-C again to quit at once)"
                )
            self._notes(fleet)
            self._report(fleet, len(specs))
        except RuntimeError as error:  # a worker process died: say so, not a traceback
            raise CommandError(str(error)) from None
        finally:
            fleet.close()
            for sig, handler in previous.items():
                if handler is not None:  # None: a handler not set from Python, left alone
                    signal.signal(sig, handler)
        self.stdout.write("Stopped.")

    def _introduce(self, specs: list[StationSpec], url: str, behaviour: Any, notes: bool) -> None:
        named = (
            ": "
            + ", ".join(f"{s.identity} ({s.protocol}, {s.connectors} connectors)" for s in specs)
            if len(specs) <= NOTES_UP_TO
            else ""
        )
        self.stdout.write(f"Simulating {len(specs)} station(s) against {url}{named}")
        if behaviour.session_gap is not None:
            meter = (
                f", meter values every {behaviour.meter_interval:g} s"
                if behaviour.meter_interval
                else ""
            )
            self.stdout.write(
                f"Each connector waits {_span(*behaviour.session_gap)} before a session "
                f"(--session-gap) and charges {_span(*behaviour.session_length)} "
                f"(--session-length){meter}."
            )
        if not notes:
            self.stdout.write(
                f"A summary every {REPORT_EVERY:g} s"
                + (
                    f" (more than {NOTES_UP_TO} stations: no line per station)."
                    if len(specs) > NOTES_UP_TO
                    else "."
                )
            )
        self.stdout.write("Ctrl-C stops.")

    def _notes(self, fleet: Fleet) -> None:
        if fleet.with_notes:
            for line in fleet.notes():
                self.stdout.write(line)
            # Seen as it happens, also through a pipe (`make simulate | tee simulate.log`).
            self.stdout.flush()

    def _report(self, fleet: Fleet, total: int) -> None:
        stats, counters = fleet.stats()
        failures = stats.failure_reasons - self._failures_seen
        self._failures_seen = Counter(stats.failure_reasons)
        answered = sum(stats.answered.values())
        line = (
            f"connected {counters['online']} of {total}, charging {counters['active_sessions']}, "
            f"sessions {stats.sessions}, meter samples {stats.samples}, answered {answered}, "
            f"errors {sum(stats.call_errors.values())}, "
            f"timeouts {sum(stats.timeouts.values())}, queued {counters['queued_now']}"
        )
        if failures:
            reasons = ", ".join(f"{reason} {n}" for reason, n in failures.most_common())
            line += f"; failed to connect {failures.total()} times ({reasons})"
        if stats.schema_violations:
            line += f", schema violations {len(stats.schema_violations)}"
        self.stdout.write(line)
        for violation in stats.schema_violations[:3]:
            self.stdout.write(f"  {violation}")
        self.stdout.flush()

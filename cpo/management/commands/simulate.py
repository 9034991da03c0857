"""`python manage.py simulate`: simulated charging stations against a running back office.

    manage.py simulate --demo                  the demo stations of `make run`, for a live demo
    manage.py simulate --count 500 --create    500 generated stations (created in the database)

Stations behave like real chargers (see stations/simulator.py) until Ctrl-C or --duration.
"""

from __future__ import annotations

import signal
import time
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


def _pair(text: str) -> tuple[float, float]:
    low, _, high = text.partition(",")
    return float(low), float(high or low)


class Command(BaseCommand):
    help = "Run simulated OCPP 1.6J / 2.0.1 charging stations against a back office."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--url",
            default="ws://127.0.0.1:8000/ocpp",
            help="the OCPP endpoint, without the identity",
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
        fleet = Fleet(specs, options["url"], behaviour, processes=processes)
        stopping = False

        def stop(signum: int, frame: Any) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, stop)
        signal.signal(signal.SIGTERM, stop)
        fleet.start()
        try:
            self.stdout.write(f"{len(specs)} stations connecting to {options['url']}")
            # No deadline to wait for: stations that cannot connect keep retrying with back-off.
            fleet.command("connect", deadline=time.time() + 1)
            fleet.command("life")
            started = last_report = last_outage = time.monotonic()
            while not stopping:
                time.sleep(0.5)
                now = time.monotonic()
                if options["duration"] and now - started >= options["duration"]:
                    break
                if options["outage_every"] and now - last_outage >= options["outage_every"]:
                    last_outage = now
                    fleet.command(
                        "outage",
                        fraction=options["outage_share"],
                        seconds=options["outage_seconds"],
                    )
                if now - last_report >= 10:
                    last_report = now
                    self._report(fleet)
            self._report(fleet)
        finally:
            fleet.close()

    def _report(self, fleet: Fleet) -> None:
        stats, counters = fleet.stats()
        answered = sum(stats.answered.values())
        self.stdout.write(
            f"online {counters['online']}, charging {counters['active_sessions']}, "
            f"answered {answered}, errors {sum(stats.call_errors.values())}, "
            f"timeouts {sum(stats.timeouts.values())}, queued {counters['queued_now']}, "
            f"sessions {stats.sessions}, samples {stats.samples}"
            + (
                f", schema violations {len(stats.schema_violations)}"
                if stats.schema_violations
                else ""
            )
        )
        for violation in stats.schema_violations[:3]:
            self.stdout.write(f"  {violation}")

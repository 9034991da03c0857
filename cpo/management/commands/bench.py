"""`python manage.py bench` (what `make bench` runs): the OCPP load benchmark.

Defaults finish in a few minutes on a 2-core machine. BENCH_FULL=1 runs the targets: 10,000
stations, 1,000 messages/s for 10 minutes. See stations/bench/runner.py for what is measured.
"""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from cpo.tools.bench import report
from cpo.tools.bench.runner import BenchConfig, run


class Command(BaseCommand):
    help = "Benchmark the OCPP edge: boot storm and steady state, against the Python ceiling."
    # The benchmark migrates its own database; checks would touch the default one first.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--stations", type=int, help="N stations (BENCH_STATIONS)")
        parser.add_argument("--rate", type=float, help="offered messages/s (BENCH_RATE)")
        parser.add_argument("--duration", type=float, help="steady-state seconds (BENCH_DURATION)")
        parser.add_argument(
            "--ceiling-duration",
            type=float,
            help="steady-state seconds against the ceiling (default: the same)",
        )
        parser.add_argument("--processes", type=int, help="simulator processes (BENCH_PROCESSES)")
        parser.add_argument("--protocols", default="ocpp1.6,ocpp2.0.1")
        parser.add_argument("--no-ceiling", action="store_true", help="skip the ceiling")
        parser.add_argument("--out", type=Path, help="directory of the JSON file")

    def handle(self, *args: Any, **options: Any) -> None:
        config = BenchConfig.from_env()
        for name in ("stations", "rate", "duration", "ceiling_duration", "processes"):
            if options[name] is not None:
                setattr(config, name, options[name])
        config.protocols = [p.strip() for p in options["protocols"].split(",") if p.strip()]
        config.ceiling = not options["no_ceiling"]
        if options["out"]:
            config.out_dir = options["out"]

        def log(message: str) -> None:
            self.stderr.write(f"bench: {message}")

        def interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        # Either signal unwinds through the runner, which stops every process it started
        # (a background job inherits SIGINT ignored, hence the explicit handlers).
        signal.signal(signal.SIGTERM, interrupt)
        signal.signal(signal.SIGINT, interrupt)
        results = run(config, log=log)
        self.stdout.write(report.render(results))
        path = report.write_json(results, config.out_dir)
        self.stdout.write(f"\nEvery figure: {path}")

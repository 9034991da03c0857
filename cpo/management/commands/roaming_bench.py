"""`python manage.py roaming_bench`: the OCPI figures of the README (cpo/tools/roaming_bench.py).

Defaults are the issue's sizes (10,000 stations, 10,000 status changes, one partner of three
down for 10 minutes); `--stations 1000 --changes 1000 --down-seconds 30` runs in a few minutes.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from cpo.tools.roaming_bench import RoamingBenchConfig, render, run


class Command(BaseCommand):
    help = "Benchmark roaming: a page of 100 locations, EVSE status pushes to 3 partners."
    # It migrates its own database first (SQLite); checks would touch the default one.
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--stations", type=int, default=10_000)
        parser.add_argument("--changes", type=int, default=10_000)
        parser.add_argument("--down-seconds", type=float, default=600.0)
        parser.add_argument("--out", type=Path, help="write the figures as JSON here")

    def handle(self, *args: Any, **options: Any) -> None:
        config = RoamingBenchConfig(
            stations=options["stations"],
            changes=options["changes"],
            down_seconds=options["down_seconds"],
        )
        result = run(config, log=lambda message: self.stderr.write(f"roaming_bench: {message}"))
        self.stdout.write(render(result))
        out = options["out"] or Path(settings.DATA_DIR) / "roaming-bench" / "result.json"
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result.to_dict(), indent=2, default=str))

"""`python manage.py energy_bench`: the load allocator's speed on one large site.

The issue's figure: one site with 500 connectors behind 5 circuits, a session on each, a full
reallocation in 50 ms or less. Pure computation (stations/energy/bench.py): no database.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from stations.energy.allocator import Strategy
from stations.energy.bench import time_reallocations


class Command(BaseCommand):
    help = "Time full reallocations of one site (500 connectors behind 5 circuits by default)."
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--connectors", type=int, default=500)
        parser.add_argument("--circuits", type=int, default=5)
        parser.add_argument("--runs", type=int, default=50)
        parser.add_argument(
            "--strategy", choices=[strategy.value for strategy in Strategy], default=None
        )

    def handle(self, *args: Any, **options: Any) -> None:
        chosen = [Strategy(options["strategy"])] if options["strategy"] else list(Strategy)
        for strategy in chosen:
            result = time_reallocations(
                options["connectors"], options["circuits"], options["runs"], strategy
            )
            self.stdout.write(
                f"{strategy.value}: {result.connectors} connectors, {result.circuits} circuits, "
                f"{result.runs} runs: p50 {result.p50_ms:.1f} ms, max {result.max_ms:.1f} ms, "
                f"CPU p50 {result.cpu_p50_ms:.1f} ms, max {result.cpu_max_ms:.1f} ms "
                f"({result.paused} paused)"
            )

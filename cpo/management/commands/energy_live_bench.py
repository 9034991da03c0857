"""`python manage.py energy_live_bench`: energy management measured with the real back office
and simulated stations that obey their profiles (cpo/tools/bench/energy_live.py)."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from cpo.tools.bench.energy_live import energy_live_bench


class Command(BaseCommand):
    help = (
        "Sessions arriving and leaving on a limited site: session start to every changed "
        "profile answered, and the highest load of any node against its limit."
    )
    requires_system_checks: list[str] = []

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--stations", type=int, default=12, help="two connectors each")
        parser.add_argument("--circuits", type=int, default=2)
        parser.add_argument("--circuit-limit", type=int, default=40, help="A per phase")
        parser.add_argument("--connection-limit", type=int, default=63, help="A per phase")
        parser.add_argument("--duration", type=float, default=120.0, help="seconds")
        parser.add_argument("--gap", type=float, default=2.0, help="seconds between events")

    def handle(self, *args: Any, **options: Any) -> None:
        result = energy_live_bench(
            stations=options["stations"],
            circuits=options["circuits"],
            circuit_limit_a=options["circuit_limit"],
            connection_limit_a=options["connection_limit"],
            duration=options["duration"],
            gap=options["gap"],
            log=self.stdout.write,
        )
        for key, value in asdict(result).items():
            self.stdout.write(f"{key}: {value}")

"""Load the demo network: `make demo` always, `make run` only when it is wanted."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from cpo.demo import demo_data_load, demo_data_wanted


class Command(BaseCommand):
    help = (
        "Create what is missing of the demo logins, site, stations, tokens, account and tariff "
        "(existing logins and stations, and their passwords, are left as they are)."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--if-wanted",
            action="store_true",
            help="only with DEMO=1, or on the first run on the embedded defaults (make run)",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if options["if_wanted"]:
            wanted, why = demo_data_wanted()
            if not wanted:
                self.stdout.write(f"Demo data not loaded ({why}): `make demo` loads it.")
                return
        created = demo_data_load()
        self.stdout.write(self.style.SUCCESS("Demo data loaded."))
        if not (created.logins or created.stations):
            self.stdout.write(
                "Its logins and stations existed already and were left as they are; the demo "
                "passwords are in README.md (Demo data) unless someone changed them."
            )
            return
        # The only time these passwords are printed: the run banner never shows them.
        self.stdout.write("Created now (shown once; README.md, Demo data, lists them too):")
        for role, username, password in created.logins:
            self.stdout.write(f"  login    {username:<10} password {password}  ({role})")
        for spec in created.stations:
            self.stdout.write(
                f"  station  {spec['identity']:<10} password {spec['password']}  "
                f"({spec['protocol']}, HTTP Basic)"
            )
        self.stdout.write(
            "These passwords are public: change them before this server is reachable by others "
            "(manage.py changepassword <login>; a station's password on its page in the panel)."
        )

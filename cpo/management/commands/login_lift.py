"""Lift panel login lockouts (cpo.login_limits): a superuser locked out of the panel itself
has this way in."""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from cpo.login_limits import login_throttle_lift


class Command(BaseCommand):
    help = "Lift the panel login lockout of a username or an address (or all of them)."

    def add_arguments(self, parser: CommandParser) -> None:
        group = parser.add_mutually_exclusive_group(required=True)
        group.add_argument("--username")
        group.add_argument("--address")
        group.add_argument("--all", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if options["username"]:
            lifted = login_throttle_lift(scope="username", key=options["username"], by="manage.py")
        elif options["address"]:
            lifted = login_throttle_lift(scope="address", key=options["address"], by="manage.py")
        else:
            lifted = login_throttle_lift(by="manage.py")
        self.stdout.write(f"lifted {lifted} login limit(s)")

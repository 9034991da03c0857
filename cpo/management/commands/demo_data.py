from __future__ import annotations

from django.core.management.base import BaseCommand

from cpo.demo import demo_data_load


class Command(BaseCommand):
    help = "Create or reset the demo logins, site, stations, tokens, account and tariff."

    def handle(self, *args: object, **options: object) -> None:
        demo_data_load()
        self.stdout.write(self.style.SUCCESS("Demo data loaded."))

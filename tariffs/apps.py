from __future__ import annotations

from django.apps import AppConfig


class TariffsConfig(AppConfig):
    name = "tariffs"
    verbose_name = "Tariffs"

    def ready(self) -> None:
        from sessions.pricing import session_pricer_register
        from tariffs.services import session_tariff_fix

        # Every new session gets its tariff version in the transaction that creates it.
        session_pricer_register(session_tariff_fix)

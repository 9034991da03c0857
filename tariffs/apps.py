from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class TariffsConfig(AppConfig):
    name = "tariffs"
    verbose_name = _("Tariffs")

    def ready(self) -> None:
        from sessions.pricing import session_pricer_register
        from tariffs.services import SessionPricer

        # Every new session gets its tariff version in the transaction that creates it, and
        # its cost so far with each meter value.
        session_pricer_register(SessionPricer())

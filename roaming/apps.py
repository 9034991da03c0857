from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RoamingConfig(AppConfig):
    name = "roaming"
    verbose_name = _("Roaming")

    def ready(self) -> None:
        from roaming import outbound

        # Pushes to partners (and command results) are outbox messages of kind "ocpi".
        outbound.register()

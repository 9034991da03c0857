from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RoamingConfig(AppConfig):
    name = "roaming"
    verbose_name = _("Roaming")

    def ready(self) -> None:
        from roaming import outbound, push

        # Pushes to partners (and command results) are outbox messages of kind "ocpi".
        outbound.register()
        # Every change a partner may see is written to the outbox with it (roaming.push).
        push.connect()

from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class RoamingConfig(AppConfig):
    name = "roaming"
    verbose_name = _("Roaming")

    def ready(self) -> None:
        from roaming import commands, outbound, push, realtime
        from sessions.authorizers import external_authorizer_register
        from stations.commands.signals import command_finished

        # Pushes to partners (and command results) are outbox messages of kind "ocpi".
        outbound.register()
        # Every change a partner may see is written to the outbox with it (roaming.push).
        push.connect()
        # Sessions ask roaming about tokens they do not know (real-time authorization).
        external_authorizer_register(realtime.authorize)
        # A station's answer to a partner's command becomes the partner's result.
        command_finished.connect(
            commands.command_finished_receiver, dispatch_uid="roaming.commands.command_finished"
        )

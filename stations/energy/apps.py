from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class EnergyConfig(AppConfig):
    """Energy management: each site's tree of grid nodes with their limits, the allocation of
    current to charging sessions, and the charging profiles that make stations obey it."""

    name = "stations.energy"
    label = "energy"
    verbose_name = _("Energy management")

    def ready(self) -> None:
        from sessions.signals import session_ended, session_started
        from stations.commands.signals import command_finished
        from stations.energy import receivers, signals

        session_started.connect(receivers.session_changed, dispatch_uid="energy.session_started")
        session_ended.connect(receivers.session_changed, dispatch_uid="energy.session_ended")
        signals.energy_changed.connect(
            receivers.energy_changed_receiver, dispatch_uid="energy.energy_changed"
        )
        command_finished.connect(
            receivers.command_finished_receiver, dispatch_uid="energy.command_finished"
        )

from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class CommandsConfig(AppConfig):
    """Commands and jobs: the durable queue of calls to stations, jobs over many stations,
    diagnostics uploads and local authorization lists."""

    name = "stations.commands"
    label = "commands"
    verbose_name = _("Commands and jobs")

    def ready(self) -> None:
        from stations.commands import receivers, signals

        signals.job_targets_changed.connect(
            receivers.job_targets_changed_receiver, dispatch_uid="commands.job_advance"
        )
        signals.local_list_refused.connect(
            receivers.local_list_refused_receiver, dispatch_uid="commands.local_list_resync"
        )

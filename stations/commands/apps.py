from __future__ import annotations

from django.apps import AppConfig


class CommandsConfig(AppConfig):
    """Commands and jobs: the durable queue of calls to stations, jobs over many stations,
    diagnostics uploads and local authorization lists."""

    name = "stations.commands"
    label = "commands"
    verbose_name = "Commands and jobs"

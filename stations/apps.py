from __future__ import annotations

from django.apps import AppConfig


class StationsConfig(AppConfig):
    name = "stations"
    verbose_name = "Network"

    def ready(self) -> None:
        # Token changes come from the charging app; stations only listen (design.md §3).
        from sessions.signals import id_token_changed
        from stations.signals import id_token_changed_receiver

        id_token_changed.connect(
            id_token_changed_receiver, dispatch_uid="stations.local_lists.id_token_changed"
        )

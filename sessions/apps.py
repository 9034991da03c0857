from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class SessionsConfig(AppConfig):
    name = "sessions"
    # django.contrib.sessions owns the label "sessions"; this app's tables, permissions and
    # admin URLs use "charging". Fixed before the first migration: never change it.
    label = "charging"
    verbose_name = _("Charging")

    def ready(self) -> None:
        from sessions.local_lists import local_list_entries
        from sessions.receivers import id_token_changed_receiver, session_estimated_receiver
        from sessions.signals import id_token_changed, session_estimated
        from stations.commands.local_lists import local_list_source_register

        # The command queue sends local lists; which tokens they hold is decided here.
        local_list_source_register(local_list_entries)
        id_token_changed.connect(
            id_token_changed_receiver, dispatch_uid="charging.local_lists.id_token_changed"
        )
        session_estimated.connect(
            session_estimated_receiver, dispatch_uid="charging.session_estimated.rate_later"
        )

from __future__ import annotations

from typing import Any

from django.apps import AppConfig


def _enqueue_freeze(sender: Any, session_id: int, **kwargs: Any) -> None:
    from tariffs.tasks import session_tariff_freeze

    # session_started is sent after the start committed; the freeze runs off the charger's
    # path (it was about an eighth of the OCPP server's CPU when done inline).
    session_tariff_freeze.delay(session_id)


class TariffsConfig(AppConfig):
    name = "tariffs"
    verbose_name = "Tariffs"

    def ready(self) -> None:
        from sessions.signals import session_started

        session_started.connect(_enqueue_freeze, dispatch_uid="tariffs.freeze_on_session_start")

from __future__ import annotations

from django.apps import AppConfig


class OcppConfig(AppConfig):
    """The OCPP edge: websocket consumer, per-version handlers, framing and validation, and
    the per-version calls of every command. It has no models of its own."""

    name = "stations.ocpp"
    label = "ocpp"
    verbose_name = "OCPP"

    def ready(self) -> None:
        from stations.commands.codec import codec_register
        from stations.ocpp.commands import OcppCommandCodec

        # Every process that creates commands (web, daphne, Celery) loads the apps: the queue
        # learns how to speak to stations here, without importing the edge itself.
        codec_register(OcppCommandCodec())

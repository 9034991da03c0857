from __future__ import annotations

from django.apps import AppConfig


class StationsConfig(AppConfig):
    """The network: sites, stations, EVSEs, connectors, their status history and device
    model, and what stations report."""

    name = "stations"
    verbose_name = "Network"

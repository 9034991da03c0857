from __future__ import annotations

from django.apps import AppConfig
from django.utils.translation import gettext_lazy as _


class StationsConfig(AppConfig):
    """The network: sites, stations, EVSEs, connectors, their status history and device
    model, and what stations report."""

    name = "stations"
    verbose_name = _("Network")

from __future__ import annotations

from django.apps import AppConfig


class RoamingConfig(AppConfig):
    name = "roaming"
    verbose_name = "Roaming"

from __future__ import annotations

from django.apps import AppConfig


class SessionsConfig(AppConfig):
    name = "sessions"
    # django.contrib.sessions owns the label "sessions"; this app's tables, permissions and
    # admin URLs use "charging". Fixed before the first migration: never change it.
    label = "charging"
    verbose_name = "Charging"

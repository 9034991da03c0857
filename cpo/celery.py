"""The Celery application: broker and result backend on Redis, configured from settings."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "cpo.settings")

app = Celery("cpo")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

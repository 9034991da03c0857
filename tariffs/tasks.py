"""Celery tasks of tariffs: thin, they take primary keys and call a service."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from celery import shared_task
from django.db import OperationalError

if TYPE_CHECKING:
    from celery import Task


@shared_task(bind=True, max_retries=5, acks_late=True)
def session_tariff_freeze(self: Task[Any, Any], session_id: int) -> None:
    """Fix the tariff of a session that just started (idempotent: an existing snapshot stays).

    The tariff is chosen as of the session's start time, so freezing it here, a moment after
    the charger's StartTransaction was answered, gives the price the driver started under.
    """
    from tariffs.services import session_tariff_freeze as freeze

    try:
        freeze(session_id=session_id)
    except OperationalError as exc:  # a locked or restarting database: try again shortly
        raise self.retry(exc=exc, countdown=5 * (self.request.retries + 1)) from exc

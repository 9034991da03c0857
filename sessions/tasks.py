"""Celery tasks of charging: thin, they take primary keys and call a service."""

from __future__ import annotations

from celery import shared_task
from django.db import OperationalError


@shared_task(bind=True, max_retries=5, acks_late=True)
def session_estimate_rate(self, session_id: int) -> bool:
    """Rate a session closed on an estimate, unless the station's own stop replaced it."""
    from sessions.services import session_estimate_rate as rate

    try:
        return rate(session_id=session_id)
    except OperationalError as exc:  # a locked or restarting database: try again shortly
        raise self.retry(exc=exc, countdown=5 * (self.request.retries + 1)) from exc

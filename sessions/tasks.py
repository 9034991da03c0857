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


# A 50,000-row file takes minutes; the default 5-minute limit is for short tasks.
@shared_task(acks_late=True, time_limit=2 * 60 * 60, soft_time_limit=2 * 60 * 60 - 60)
def token_import_run(token_import_id: int) -> str:
    """Validate and write an uploaded token file (sessions.token_import)."""
    from sessions.token_import import token_import_process

    return token_import_process(token_import_id=token_import_id).status

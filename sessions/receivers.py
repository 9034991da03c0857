"""Receivers of facts that concern the charging domain, connected in SessionsConfig.ready().

They hold no logic: they enqueue Celery work after the announcing transaction commits.
"""

from __future__ import annotations

from typing import Any

from django.db import transaction


def id_token_changed_receiver(sender: Any, token_ids: list[int], **kwargs: Any) -> None:
    """Tokens changed: the stations' local authorization lists may differ now."""
    ids = [int(i) for i in token_ids]

    def enqueue() -> None:
        from stations.commands.tasks import local_lists_update

        local_lists_update.delay(ids)

    transaction.on_commit(enqueue)


def session_estimated_receiver(sender: Any, session_id: int, **kwargs: Any) -> None:
    """A session closed on an estimate is rated after a delay in which the station's own stop
    may still arrive (sessions.services, "Sessions a station no longer knows")."""

    def enqueue() -> None:
        from django.conf import settings

        from sessions.tasks import session_estimate_rate

        session_estimate_rate.apply_async(
            (session_id,), countdown=settings.CHARGING_ESTIMATE_RATING_DELAY_SECONDS
        )

    transaction.on_commit(enqueue)


def token_import_queued_receiver(sender: Any, token_import_id: int, **kwargs: Any) -> None:
    """A token file to import: the worker validates and writes it."""

    def enqueue() -> None:
        from sessions.tasks import token_import_run

        token_import_run.delay(token_import_id)

    transaction.on_commit(enqueue)

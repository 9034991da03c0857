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

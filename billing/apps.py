from __future__ import annotations

from typing import Any

from django.apps import AppConfig


def _enqueue_cdr(sender: Any, session_id: int, **kwargs: Any) -> None:
    from django.db import transaction

    from billing.tasks import cdr_create_for_session

    # After commit: the worker must see the ended session, and a rolled-back end rates nothing.
    transaction.on_commit(lambda: cdr_create_for_session.delay(session_id))


class BillingConfig(AppConfig):
    name = "billing"
    verbose_name = "Billing"

    def ready(self) -> None:
        from sessions.signals import session_ended

        session_ended.connect(_enqueue_cdr, dispatch_uid="billing.cdr_on_session_end")

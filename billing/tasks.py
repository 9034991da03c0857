"""Celery tasks of billing: thin, they load by primary key and call a service."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from celery import Task, shared_task
from django.conf import settings
from django.db import OperationalError

if TYPE_CHECKING:
    from billiard.einfo import ExceptionInfo


class RatingTask(Task):  # type: ignore[type-arg]
    """A rating that fails for good marks its session "failed", with the reason, so that it
    shows in finance's queue and the sweep tries it again."""

    def on_failure(
        self,
        exc: Exception,
        task_id: str,
        args: tuple[Any, ...],
        kwargs: dict[str, Any],
        einfo: ExceptionInfo,
    ) -> None:
        from billing.services import session_rating_failed

        session_id = args[0] if args else kwargs["session_id"]
        session_rating_failed(session_id=session_id, error=str(exc) or type(exc).__name__)


@shared_task(bind=True, base=RatingTask, max_retries=5, acks_late=True)
def cdr_create_for_session(self: Task[Any, Any], session_id: int) -> int | None:
    """Rate an ended session into its CDR (idempotent: a redelivery returns the same CDR)."""
    from billing.services import cdr_create_for_session as create

    try:
        cdr = create(session_id=session_id)
    except OperationalError as exc:  # a locked or restarting database: try again shortly
        raise self.retry(exc=exc, countdown=10 * (self.request.retries + 1)) from exc
    return cdr.pk if cdr is not None else None


@shared_task
def billing_periods_close_due() -> int:
    """Open due billing periods and close the ended ones; returns the invoices made."""
    from billing.services import billing_periods_close_due as close_due

    return close_due()


@shared_task
def billing_period_close(period_id: int) -> list[int]:
    from billing.services import billing_period_close as close

    return [invoice.pk for invoice in close(period_id=period_id)]


@shared_task
def cdrs_create_missing() -> int:
    """Rate ended sessions that have no CDR yet (a lost message, a worker that was down)."""
    from billing.services import cdrs_create_missing as sweep

    return sweep(older_than=dt.timedelta(minutes=10), limit=settings.BILLING_CDR_SWEEP_BATCH_SIZE)

"""Celery edges of the outbox: deliver one destination, and the sweep beat runs."""

from __future__ import annotations

import logging

from celery import shared_task
from django.utils import timezone

logger = logging.getLogger(__name__)


@shared_task(name="cpo.outbox.tasks.outbox_deliver", ignore_result=True)
def outbox_deliver(kind: str, ref: str) -> dict[str, int]:
    """Deliver the due messages of one destination; come back when its next retry is due."""
    from cpo.outbox import services

    run = services.outbox_deliver_destination(kind=kind, ref=ref)
    try:
        if run.more:
            outbox_deliver.delay(kind, ref)
        elif run.retry_at is not None:
            wait = max((run.retry_at - timezone.now()).total_seconds(), 0.0)
            outbox_deliver.apply_async((kind, ref), countdown=wait)
    except Exception:  # noqa: BLE001 - the sweep finds the destination if the broker is away
        logger.warning("outbox: could not schedule %s:%s again; the sweep will", kind, ref)
    return {"delivered": run.delivered, "failed": run.failed}


@shared_task(name="cpo.outbox.tasks.outbox_sweep", ignore_result=True)
def outbox_sweep() -> int:
    """Beat, every OUTBOX_SWEEP_SECONDS: what a lost wake-up, a lost retry or a worker that
    died mid-delivery left behind is delivered from here."""
    from cpo.outbox import services

    destinations = services.outbox_sweep()
    for kind, ref in destinations:
        outbox_deliver.delay(kind, ref)
    return len(destinations)

"""Celery tasks of monitoring: thin wrappers that call the detectors and the playbooks."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

logger = logging.getLogger(__name__)


@shared_task
def monitoring_pass() -> dict[str, Any]:
    """Beat, every minute: every detector, the playbook steps that are due, then the
    summaries of alerts held in quiet hours that are over and the daily digests that are due.
    Each part runs whatever became of the one before: a failing playbook or mail step never
    stops detection (the e-mails are outbox rows; the mail server is the outbox's concern)."""
    from stations.monitoring.alerts import alert_digests_send, alert_summaries_send
    from stations.monitoring.detectors import detectors_run
    from stations.monitoring.playbooks import playbooks_run

    report: dict[str, Any] = dict(detectors_run())
    for name, step in (
        ("playbook_steps", playbooks_run),
        ("alert_summaries", alert_summaries_send),
        ("alert_digests", alert_digests_send),
    ):
        try:
            report[name] = step()
        except Exception:
            logger.exception("monitoring pass: %s failed", name)
    return report

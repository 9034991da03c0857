"""Celery tasks of monitoring: thin wrappers that call the detectors and the playbooks."""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task
def monitoring_pass() -> dict[str, Any]:
    """Beat, every minute: every detector, the playbook steps that are due, then the
    summaries of alerts held in quiet hours that are over."""
    from stations.monitoring.alerts import alert_summaries_send
    from stations.monitoring.detectors import detectors_run
    from stations.monitoring.playbooks import playbooks_run

    report: dict[str, Any] = dict(detectors_run())
    report["playbook_steps"] = playbooks_run()
    report["alert_summaries"] = alert_summaries_send()
    return report

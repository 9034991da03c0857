"""Celery tasks of monitoring: thin wrappers that call the detectors and the playbooks."""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task
def monitoring_pass() -> dict[str, Any]:
    """Beat, every minute: every detector, then the playbook steps that are due."""
    from stations.monitoring.detectors import detectors_run
    from stations.monitoring.playbooks import playbooks_run

    report: dict[str, Any] = dict(detectors_run())
    report["playbook_steps"] = playbooks_run()
    return report

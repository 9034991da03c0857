from __future__ import annotations

from django.apps import AppConfig


class MonitoringConfig(AppConfig):
    """Monitoring: incidents found by the detectors, their timelines, and the remediation
    playbooks that try to clear them within hard limits."""

    name = "stations.monitoring"
    label = "monitoring"
    verbose_name = "Monitoring and incidents"

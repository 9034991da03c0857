"""The detectors' thresholds: the operators' values (`MonitoringThresholds`, edited in the
panel) over the MONITORING_* settings.

`limits.MONITORING_FAULTED_MINUTES` reads like the setting. A monitoring pass loads the row
once (`pass_thresholds`) and every detector of that pass reads the same values; outside a
pass, each read asks the database (a shell, a test calling one detector).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

from django.conf import settings

_current: ContextVar[dict[str, int] | None] = ContextVar("monitoring_thresholds", default=None)


def overrides_load() -> dict[str, int]:
    from stations.monitoring.models import MonitoringThresholds

    row = MonitoringThresholds.objects.order_by("pk").first()
    return row.overrides() if row is not None else {}


class _Limits:
    def __getattr__(self, name: str) -> Any:
        overrides = _current.get()
        if overrides is None:
            overrides = overrides_load()
        if name in overrides:
            return overrides[name]
        return getattr(settings, name)


limits = _Limits()


@contextmanager
def pass_thresholds() -> Iterator[dict[str, int]]:
    """The thresholds of one pass, read once. The database being unreachable here leaves the
    settings' values (the pass itself will say more)."""
    try:
        overrides = overrides_load()
    except Exception:
        overrides = {}
    token = _current.set(overrides)
    try:
        yield overrides
    finally:
        _current.reset(token)

"""Celery edges of roaming: the minute's pushes and the nightly reconciliation."""

from __future__ import annotations

from typing import Any

from celery import shared_task


@shared_task(name="roaming.tasks.roaming_push_due", ignore_result=True)
def roaming_push_due() -> dict[str, int]:
    """Every minute: PATCH charging roaming sessions, push tariffs that came into force."""
    from roaming import push

    return push.push_due()


@shared_task(name="roaming.tasks.roaming_reconcile", ignore_result=True)
def roaming_reconcile() -> list[dict[str, Any]]:
    """Nightly: re-send each partner what it is missing."""
    from roaming import push

    return [report.__dict__ for report in push.partners_reconcile()]


@shared_task(name="roaming.tasks.roaming_commands_timeout", ignore_result=True)
def roaming_commands_timeout() -> int:
    """Beat: partner commands past their deadline get their TIMEOUT result."""
    from roaming.commands import roaming_commands_timeout as sweep

    return sweep()

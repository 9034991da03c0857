"""Celery tasks of roaming: thin wrappers that call services."""

from __future__ import annotations

from celery import shared_task


@shared_task
def roaming_commands_timeout() -> int:
    """Beat: partner commands past their deadline get their TIMEOUT result."""
    from roaming.commands import roaming_commands_timeout as sweep

    return sweep()

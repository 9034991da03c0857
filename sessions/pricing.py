"""The port through which a session gets its price at its start.

The tariffs app sits above charging: it registers, when Django starts
(`tariffs.apps.TariffsConfig.ready`), the function that picks the tariff version in force for a
new session and records it. The session services call it in the same transaction that creates
the session, so the price of a started session is fixed before its start is answered, and no
tariff edit after that can reach it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from sessions.models import ChargingSession

# Given a session just stored, record the tariff version it is priced with (or none).
SessionPricer = Callable[["ChargingSession"], None]

_pricer: SessionPricer | None = None


def session_pricer_register(pricer: SessionPricer) -> None:
    global _pricer
    _pricer = pricer


def session_price_fix(session: ChargingSession) -> None:
    """Fix the price of a session the moment it is created (inside its transaction)."""
    if _pricer is None:
        raise ImproperlyConfigured("No session pricer is registered: 'tariffs' must be installed")
    _pricer(session)

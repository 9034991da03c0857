"""The port through which a session gets its price: fixed at its start, and its cost so far
kept up with its meter values.

The tariffs app sits above charging: it registers, when Django starts
(`tariffs.apps.TariffsConfig.ready`), the pricer that
1. picks the tariff version in force for a new session and records it, in the same transaction
   that creates the session, so the price of a started session is fixed before its start is
   answered and no tariff edit after that can reach it;
2. extends the session's running cost to its latest meter value, incrementally (the session
   row carries the running cost's state), so every active session, 1.6 and 2.0.1, shows its
   cost so far and budgets can count it.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Protocol

from django.core.exceptions import ImproperlyConfigured

if TYPE_CHECKING:
    from sessions.models import ChargingSession


class SessionPricer(Protocol):
    def fix(self, session: ChargingSession) -> None:
        """Record the tariff version a session just stored is priced with (or none)."""

    def advance(self, session: ChargingSession, *, until: datetime) -> list[str]:
        """Extend the session's cost so far to `until` from its live values (energy, charging
        state, power), on the session object; the names of the fields it changed."""


_pricer: SessionPricer | None = None


def session_pricer_register(pricer: SessionPricer) -> None:
    global _pricer
    _pricer = pricer


def _registered() -> SessionPricer:
    if _pricer is None:
        raise ImproperlyConfigured("No session pricer is registered: 'tariffs' must be installed")
    return _pricer


def session_price_fix(session: ChargingSession) -> None:
    """Fix the price of a session the moment it is created (inside its transaction)."""
    _registered().fix(session)


def session_cost_advance(session: ChargingSession, *, until: datetime) -> list[str]:
    """Bring the session's cost so far up to its meter value at `until`; the changed fields
    for the caller's save."""
    return _registered().advance(session, until=until)

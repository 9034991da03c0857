"""The answer to a station's EV charging needs (OCPP 2.0.1 / 2.1 NotifyEVChargingNeeds, K15).

Accepted promises a charging schedule (K15.FR.03: a SetChargingProfile follows), so the edge
answers Accepted only when a planner has taken the needs on; without one it answers Rejected
(the EV then charges on the station's own limits). The hook: energy management registers its
planner once (at app start) with `charging_needs_planner_register`; the planner gets the station,
the EVSE and the needs as sent, returns whether it will send a profile for them, and sends it
through the command queue itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

# (station_id, evse_id, charging_needs payload) -> True when a profile will follow.
ChargingNeedsPlanner = Callable[[int, int, dict[str, Any]], bool]

_planner: ChargingNeedsPlanner | None = None


@dataclass(frozen=True)
class ChargingNeedsAnswer:
    status: str  # Accepted | Rejected (OCPP NotifyEVChargingNeedsStatusEnumType)
    reason: str = ""


def charging_needs_planner_register(planner: ChargingNeedsPlanner | None) -> None:
    """Install (or, with None, remove) the planner that answers charging needs."""
    global _planner  # noqa: PLW0603  # one planner per process, registered at start
    _planner = planner


def charging_needs_answer(
    *, station_id: int, evse_id: int, needs: dict[str, Any]
) -> ChargingNeedsAnswer:
    """Accepted when the registered planner will send a schedule, else Rejected."""
    if _planner is not None and _planner(station_id, evse_id, needs):
        return ChargingNeedsAnswer("Accepted")
    return ChargingNeedsAnswer("Rejected", "no energy management computes a schedule")

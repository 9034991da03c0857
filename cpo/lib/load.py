"""This process's load counters, kept by the OCPP edge (stations.ocpp.load) and shown by
/healthz: base code, so that the health view reads them without importing an app."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Load:
    # Charger database calls waiting for a thread or running (stations.ocpp.db).
    in_flight: int = 0
    # BootNotifications answered Pending because the node was saturated.
    boots_deferred: int = 0


LOAD = Load()

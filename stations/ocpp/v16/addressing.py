"""Where a 1.6 connector number lands in the network, and back.

OCPP 1.6 numbers a station's connectors 1..n (0 is the station itself) and has no EVSE. The
network models an EVSE per 1.6 connector, as the OCA and OCPI advise: connector N is EVSE N
with its connector 1. Status, transactions, meter values and every command use this one
mapping, so a session, a status report and a tariff assigned to "connector 2" name one place.
"""

from __future__ import annotations


def evse_address(connector_id: int) -> tuple[int, int]:
    """The (EVSE, connector) of a 1.6 connector number; (0, 0) is the station itself."""
    return (connector_id, 1) if connector_id else (0, 0)


def connector_number(evse_id: int) -> int:
    """The 1.6 connector number of an EVSE of the network."""
    return evse_id

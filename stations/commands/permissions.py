"""Who may send which command: one rule for the panel, the admin actions and the REST API.

`stations.send_command` allows every verb and raw actions (Operators). Three commands that
help a driver at the charger have a permission of their own, so that Support can be given
them without anything else that changes a station:

- `stations.trigger_status`: TriggerMessage StatusNotification ("ask for status"),
- `stations.unlock_connector`: UnlockConnector,
- `stations.remote_stop`: RemoteStopTransaction / RequestStopTransaction.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

SEND_ANY = "stations.send_command"
TRIGGER_STATUS = "stations.trigger_status"
UNLOCK_CONNECTOR = "stations.unlock_connector"
REMOTE_STOP = "stations.remote_stop"
DRIVER_HELP = (TRIGGER_STATUS, UNLOCK_CONNECTOR, REMOTE_STOP)


def command_permission(verb: str, params: Mapping[str, Any] | None = None) -> str:
    """The permission a command needs: one of DRIVER_HELP, or SEND_ANY."""
    params = params or {}
    if verb == "unlock_connector":
        return UNLOCK_CONNECTOR
    if verb == "remote_stop":
        return REMOTE_STOP
    if verb == "trigger_message" and params.get("message") == "StatusNotification":
        return TRIGGER_STATUS
    return SEND_ANY


def can_send(user: Any, verb: str = "", params: Mapping[str, Any] | None = None) -> bool:
    """May `user` send `verb` with `params`? No verb: a raw action, which needs SEND_ANY."""
    if user.has_perm(SEND_ANY):
        return True
    if not verb:
        return False
    needed = command_permission(verb, params)
    return needed != SEND_ANY and bool(user.has_perm(needed))


def can_send_some(user: Any) -> bool:
    """May `user` send at least one kind of command (shows the station page's commands)?"""
    return any(user.has_perm(perm) for perm in (SEND_ANY, *DRIVER_HELP))

"""Secrets in OCPP payloads: the one list of secret configuration keys, and their masks.

A station's password (1.6 security extension: the configuration key AuthorizationKey; 2.0.1:
the variable SecurityCtrlr.BasicAuthPassword) travels in ChangeConfiguration / SetVariables,
and some chargers echo it in GetConfiguration / GetVariables answers, NotifyReport and
NotifyEvent, sometimes in hex. Every stored payload, answer, logged frame and device-model
value holds instead its mask: "set:" and a keyed hash of the value, which tells whether two
values are equal (what was set, what the station reports) and nothing else. Only the frame
to the station carries the clear value; the command queue keeps it sealed until then
(`cpo.lib.sealing`).

One-time upload URLs (`cpo.lib.log_scrub`) are masked in the same pass: their token is a
credential too.
"""

from __future__ import annotations

import json
import re
from typing import Any

from django.utils.crypto import salted_hmac

from cpo.lib.log_scrub import scrub

# Configuration keys whose values are secret: 1.6 keys by name, 2.0.1 variables as
# "Component.Variable" (any instance, any EVSE). Compared without regard to case.
SECRET_KEYS = (
    "AuthorizationKey",
    "SecurityCtrlr.BasicAuthPassword",
)
_SECRET = frozenset(key.lower() for key in SECRET_KEYS)

MASK_PREFIX = "set:"
_MASKED = re.compile(r"set:[0-9a-f]{16}")
_HEX = re.compile(r"(?:[0-9a-fA-F]{2})+")
# The fields of a 2.0.1 variable reference that carry its value.
_VALUE_FIELDS = ("attributeValue", "actualValue")


def is_secret_key(key: str) -> bool:
    return key.lower() in _SECRET


def _normalized(value: str) -> str:
    # A charger that echoes the key in hex reports the same secret: same hash.
    if len(value) >= 16 and _HEX.fullmatch(value):
        try:
            decoded = bytes.fromhex(value).decode("utf-8")
        except UnicodeDecodeError:
            return value
        if decoded.isprintable():
            return decoded
    return value


def mask_value(value: Any) -> Any:
    """The stored form of a secret value: "set:<hash>" (empty stays empty: nothing is set)."""
    if value is None or value == "":
        return value
    text = str(value)
    if _MASKED.fullmatch(text):
        return text
    digest = salted_hmac("stations.secret_keys", _normalized(text)).hexdigest()[:16]
    return MASK_PREFIX + digest


def _variable_key(item: dict[str, Any]) -> str:
    component, variable = item.get("component"), item.get("variable")
    if not isinstance(component, dict) or not isinstance(variable, dict):
        return ""
    return f"{component.get('name', '')}.{variable.get('name', '')}"


def mask(data: Any) -> Any:
    """A copy of `data` (any payload or answer) with every secret value masked; `data`
    itself when there is nothing to mask."""
    if isinstance(data, list):
        items = [mask(item) for item in data]
        return data if all(a is b for a, b in zip(items, data, strict=True)) else items
    if isinstance(data, str):
        return scrub(data)
    if not isinstance(data, dict):
        return data
    masked = {key: mask(value) for key, value in data.items()}
    # 1.6: ChangeConfiguration {key, value}; GetConfiguration's configurationKey entries.
    key = data.get("key")
    if isinstance(key, str) and "value" in data and is_secret_key(key):
        masked["value"] = mask_value(data["value"])
    # 2.0.1: SetVariableData, GetVariableResult, EventData, ReportData.
    if "component" in data and is_secret_key(_variable_key(data)):
        for field in _VALUE_FIELDS:
            if field in data:
                masked[field] = mask_value(data[field])
        attributes = data.get("variableAttribute")
        if isinstance(attributes, list):
            masked["variableAttribute"] = [
                {**a, "value": mask_value(a["value"])}
                if isinstance(a, dict) and "value" in a
                else a
                for a in attributes
            ]
    changed = any(masked[k] is not data[k] for k in data)
    return masked if changed else data


def _mentions_a_secret(text: str) -> bool:
    lowered = text.lower()
    return any(key.rsplit(".", 1)[-1] in lowered for key in _SECRET)


def mask_frame(frame: str) -> str:
    """An OCPP-J frame as the message log stores it: secret values masked."""
    if not _mentions_a_secret(frame):
        return scrub(frame)
    try:
        data = json.loads(frame)
    except (ValueError, RecursionError):
        # Not JSON (or nested beyond reading), yet it names a secret key: nothing of it can be
        # trusted to be harmless.
        return f"[{len(frame)} characters withheld: the frame names a secret key]"
    masked = mask(data)
    return frame if masked is data else json.dumps(masked, separators=(",", ":"))

"""The OCPP edge's side of the command queue: verbs to calls of the station's version, raw
payloads checked against the official schemas, and answers read into neutral outcomes.

Registered with the queue as its codec by `stations.ocpp.apps.OcppConfig.ready`; the consumer
uses `outcome` when a station answers.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import ModuleType
from typing import Any

from stations.commands.codec import Outcome
from stations.commands.verbs import VERBS, CommandError
from stations.ocpp import protocol
from stations.ocpp.v16 import commands as v16
from stations.ocpp.v201 import commands as v201

# 2.1 shares the 2.0.1 calls of every verb (each is checked against the 2.1 schema when queued).
_VERSIONS: dict[str, ModuleType] = {protocol.V16: v16, protocol.V201: v201, protocol.V21: v201}
_ID_TOKEN_LENGTH = {
    protocol.V16: v16.ID_TAG_LENGTH,
    protocol.V201: v201.ID_TOKEN_LENGTH,
    protocol.V21: v201.ID_TOKEN_LENGTH,
}
_LABEL = {protocol.V16: "OCPP 1.6J", protocol.V201: "OCPP 2.0.1", protocol.V21: "OCPP 2.1"}

# Actions a station sends, never receives: raw mode refuses them.
_STATION_INITIATED = frozenset(
    {
        "Authorize",
        "BootNotification",
        "DiagnosticsStatusNotification",
        "FirmwareStatusNotification",
        "Heartbeat",
        "LogStatusNotification",
        "MeterValues",
        "SecurityEventNotification",
        "SignCertificate",
        "SignedFirmwareStatusNotification",
        "StartTransaction",
        "StatusNotification",
        "StopTransaction",
        "TransactionEvent",
        "NotifyReport",
        "NotifyEvent",
        "NotifyChargingLimit",
        "NotifyCustomerInformation",
        "NotifyDisplayMessages",
        "NotifyEVChargingNeeds",
        "NotifyEVChargingSchedule",
        "NotifyMonitoringReport",
        "ReportChargingProfiles",
        "ReservationStatusUpdate",
        "ClearedChargingLimit",
        "Get15118EVCertificate",
        "GetCertificateStatus",
        "PublishFirmwareStatusNotification",
        # OCPP 2.1
        "NotifySettlement",
        "NotifyPriorityCharging",
        "NotifyDERAlarm",
        "NotifyDERStartStop",
        "ReportDERControl",
        "NotifyPeriodicEventStream",
        "OpenPeriodicEventStream",
        "ClosePeriodicEventStream",
        "PullDynamicScheduleUpdate",
        "BatterySwap",
        "GetCertificateChainStatus",
        "VatNumberValidation",
    }
)


def _version(name: str) -> ModuleType:
    module = _VERSIONS.get(name)
    if module is None:
        raise CommandError("the station has not connected yet: its protocol is unknown")
    return module


def validate_call(version: str, action: str, payload: Any) -> None:
    """Raise CommandError unless `payload` is a valid CALL of `action` in `version`."""
    if action in _STATION_INITIATED:
        raise CommandError(f"{action} is sent by stations, not to them", field="action")
    if not isinstance(payload, dict):
        raise CommandError("the payload must be a JSON object", field="payload")
    try:
        protocol.validate(version, protocol.CALL, action, payload)
    except protocol.OcppError as error:
        if error.kind == "NotImplemented":
            raise CommandError(
                f"{action} is not an OCPP {version[4:]} action", field="action"
            ) from None
        raise CommandError(f"schema: {error.description}", field="payload") from None


class OcppCommandCodec:
    """The `stations.commands.codec.CommandCodec` of OCPP 1.6J and 2.0.1."""

    def supports(self, version: str, verb: str) -> bool:
        return verb in _VERSIONS.get(version, v201).BUILDERS

    def encode(
        self, version: str, verb: str, params: Mapping[str, Any]
    ) -> tuple[str, dict[str, Any]]:
        builders = _version(version).BUILDERS
        spec = VERBS.get(verb)
        if spec is None:
            raise CommandError(f"unknown verb {verb!r}", field="verb")
        if verb not in builders:
            raise CommandError(f"{spec.label} does not exist in {_LABEL[version]}")
        try:
            action, payload = builders[verb](params)
        except (KeyError, TypeError, ValueError) as exc:
            raise CommandError(f"invalid parameters for {verb}: {exc}") from None
        validate_call(version, action, payload)
        return action, payload

    def check_raw(self, version: str, action: str, payload: Any) -> None:
        _version(version)
        validate_call(version, action, payload)

    def verb_of(self, version: str, action: str) -> str:
        return str(_version(version).ACTION_VERBS.get(action, ""))

    def id_token_max_length(self, version: str) -> int:
        return _ID_TOKEN_LENGTH.get(version, v201.ID_TOKEN_LENGTH)

    def items_limit_instance(self, version: str, action: str) -> str:
        return items_limit_instance(version, action)

    def items_split(
        self, version: str, action: str, payload: dict[str, Any], size: int
    ) -> list[dict[str, Any]]:
        return items_split(action, payload, size)


# The list of items per call a station limits with DeviceDataCtrlr.ItemsPerMessage[instance].
_ITEMS = {
    "GetVariables": "getVariableData",
    "SetVariables": "setVariableData",
    "GetReport": "componentVariable",
}


def items_limit_instance(version: str, action: str) -> str:
    return action if version != protocol.V16 and action in _ITEMS else ""


def items_split(action: str, payload: dict[str, Any], size: int) -> list[dict[str, Any]]:
    """Consecutive slices of the call's items; the parts of a GetReport get consecutive
    request ids (each part is its own report)."""
    items = payload[_ITEMS[action]]
    parts = []
    for number, start in enumerate(range(0, len(items), size)):
        part = {**payload, _ITEMS[action]: items[start : start + size]}
        if action == "GetReport":
            part["requestId"] = int(payload["requestId"]) + number
        parts.append(part)
    return parts


def outcome(version: str, action: str, response: Any) -> Outcome:
    """What a station's CALLRESULT to `action` means, in the queue's terms."""
    result: Outcome = _version(version).outcome(action, response)
    return result

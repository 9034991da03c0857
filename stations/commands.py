"""Version-neutral command verbs and their translation to OCPP 1.6J and 2.0.1 calls.

A verb names what an operator wants ("reset", "remote_start") with neutral parameters; its
builder returns the (action, payload) of the station's protocol. Every payload is validated
against the official schema before a command row is created (see
`stations.command_services.command_create`), so nothing invalid ever reaches a charger.

The parameter specs drive the operator panel's form per verb and the REST API's validation.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from django.utils.dateparse import parse_datetime

from stations.ocpp import protocol as ocpp

V16 = ocpp.V16
V201 = ocpp.V201


class CommandError(Exception):
    """A verb or raw payload that cannot be sent; `message` is safe to show to the caller."""

    def __init__(self, message: str, *, field: str = ""):
        super().__init__(message)
        self.message = message
        self.field = field


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # int, str, bool, datetime, choice, json, list
    required: bool = False
    choices: tuple[str, ...] = ()
    help: str = ""
    default: Any = None


@dataclass(frozen=True)
class Verb:
    name: str
    label: str
    params: tuple[Param, ...]
    build: Callable[[str, dict[str, Any]], tuple[str, dict[str, Any]]]
    protocols: tuple[str, ...] = (V16, V201)
    # How long a command waits for an offline station before it expires.
    expiry: timedelta = field(default=timedelta(hours=1))


def new_request_id() -> int:
    """A request id for calls whose answers arrive later (logs, firmware, reports)."""
    return secrets.randbelow(2**31 - 2) + 1


def iso(value: Any) -> str:
    """An OCPP date-time (UTC, Z suffix) from a datetime or an ISO 8601 string."""
    if isinstance(value, str):
        parsed = parse_datetime(value)
        if parsed is None:
            raise CommandError(f"{value!r} is not an ISO 8601 date-time")
        value = parsed
    if not isinstance(value, datetime):
        raise CommandError(f"{value!r} is not a date-time")
    if value.tzinfo is None:
        raise CommandError("date-times must carry a time zone")
    return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


def _get(params: dict[str, Any], name: str) -> Any:
    value = params.get(name)
    if value is None or value == "":
        raise CommandError(f"{name} is required", field=name)
    return value


def _opt(params: dict[str, Any], name: str) -> Any:
    value = params.get(name)
    return None if value == "" else value


def _put(payload: dict[str, Any], key: str, value: Any) -> None:
    if value is not None and value != "":
        payload[key] = value


def _not_in_16(verb: str) -> CommandError:
    return CommandError(f"{verb} does not exist in OCPP 1.6J")


# --- Charging profiles ---------------------------------------------------------------------------

_PURPOSE_16 = {"ChargingStationMaxProfile": "ChargePointMaxProfile"}


def charging_profile(protocol: str, profile: dict[str, Any]) -> dict[str, Any]:
    """A neutral charging profile in the shape of the protocol.

    Neutral: {id, stack_level, purpose, kind, recurrency?, valid_from?, valid_to?,
    transaction_id?, schedule: {id?, rate_unit, duration?, start?, min_rate?,
    periods: [{start, limit, phases?}]}}; purpose uses the 2.0.1 names.
    """
    if not isinstance(profile, dict):
        raise CommandError("charging_profile must be an object", field="charging_profile")
    schedule = profile.get("schedule") or {}
    periods = []
    for period in schedule.get("periods") or []:
        item: dict[str, Any] = {
            "startPeriod": int(period.get("start", 0)),
            "limit": float(period["limit"]),
        }
        _put(item, "numberPhases", period.get("phases"))
        periods.append(item)
    sched: dict[str, Any] = {
        "chargingRateUnit": schedule.get("rate_unit", "A"),
        "chargingSchedulePeriod": periods,
    }
    _put(sched, "duration", schedule.get("duration"))
    if schedule.get("start"):
        sched["startSchedule"] = iso(schedule["start"])
    _put(sched, "minChargingRate", schedule.get("min_rate"))
    purpose = profile.get("purpose", "TxProfile")
    out: dict[str, Any] = {
        "stackLevel": int(profile.get("stack_level", 0)),
        "chargingProfileKind": profile.get("kind", "Absolute"),
    }
    _put(out, "recurrencyKind", profile.get("recurrency"))
    for key, name in (("valid_from", "validFrom"), ("valid_to", "validTo")):
        if profile.get(key):
            out[name] = iso(profile[key])
    if protocol == V16:
        out["chargingProfileId"] = int(profile.get("id", 1))
        out["chargingProfilePurpose"] = _PURPOSE_16.get(purpose, purpose)
        if profile.get("transaction_id") not in (None, ""):
            out["transactionId"] = int(profile["transaction_id"])
        out["chargingSchedule"] = sched
    else:
        out["id"] = int(profile.get("id", 1))
        out["chargingProfilePurpose"] = purpose
        _put(out, "transactionId", profile.get("transaction_id") and str(profile["transaction_id"]))
        sched["id"] = int(schedule.get("id", out["id"]))
        out["chargingSchedule"] = [sched]
    return out


def _id_token(value: str, token_type: str | None) -> dict[str, Any]:
    return {"idToken": value, "type": token_type or "Central"}


# --- Builders ------------------------------------------------------------------------------------


def _remote_start(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    token = str(_get(a, "id_token"))
    evse = _opt(a, "evse_id")
    profile = _opt(a, "charging_profile")
    if p == V16:
        payload: dict[str, Any] = {"idTag": token}
        _put(payload, "connectorId", evse)
        if profile:
            payload["chargingProfile"] = charging_profile(p, profile)
        return "RemoteStartTransaction", payload
    payload = {
        "idToken": _id_token(token, _opt(a, "id_token_type")),
        "remoteStartId": int(_opt(a, "remote_start_id") or new_request_id()),
    }
    _put(payload, "evseId", evse)
    if _opt(a, "group_id_token"):
        payload["groupIdToken"] = _id_token(a["group_id_token"], _opt(a, "id_token_type"))
    if profile:
        payload["chargingProfile"] = charging_profile(p, profile)
    return "RequestStartTransaction", payload


def _remote_stop(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    transaction_id = _get(a, "transaction_id")
    if p == V16:
        try:
            return "RemoteStopTransaction", {"transactionId": int(transaction_id)}
        except (TypeError, ValueError):
            raise CommandError(
                "a 1.6 transaction id is an integer", field="transaction_id"
            ) from None
    return "RequestStopTransaction", {"transactionId": str(transaction_id)}


_RESET = {
    V16: {"soft": "Soft", "hard": "Hard", "OnIdle": "Soft", "Immediate": "Hard"},
    V201: {"soft": "OnIdle", "hard": "Immediate", "OnIdle": "OnIdle", "Immediate": "Immediate"},
}


def _reset(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    kind = a.get("type") or "soft"
    if kind not in _RESET[p]:
        raise CommandError("type is soft or hard (OnIdle or Immediate)", field="type")
    payload: dict[str, Any] = {"type": _RESET[p][kind]}
    if p == V201:
        _put(payload, "evseId", _opt(a, "evse_id"))
    return "Reset", payload


def _unlock(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    evse = int(_get(a, "evse_id"))
    if p == V16:
        return "UnlockConnector", {"connectorId": evse}
    return "UnlockConnector", {"evseId": evse, "connectorId": int(a.get("connector_id") or 1)}


def _availability(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    operative = a.get("operative", True)
    status = "Operative" if operative in (True, "true", "1", 1) else "Inoperative"
    evse = int(a.get("evse_id") or 0)
    if p == V16:
        return "ChangeAvailability", {"connectorId": evse, "type": status}
    payload: dict[str, Any] = {"operationalStatus": status}
    if evse:
        payload["evse"] = {"id": evse}
        _put(payload["evse"], "connectorId", _opt(a, "connector_id"))
    return "ChangeAvailability", payload


def _variable_ref(key: str) -> dict[str, Any]:
    """'Component.Variable' or 'Component[instance].Variable[instance]' as a 2.0.1 reference."""
    component, sep, variable = key.partition(".")
    if not sep or not component or not variable:
        raise CommandError(f"{key!r}: 2.0.1 keys are Component.Variable", field="key")

    def named(text: str) -> dict[str, Any]:
        name, _, instance = text.partition("[")
        ref: dict[str, Any] = {"name": name}
        if instance:
            ref["instance"] = instance.rstrip("]")
        return ref

    return {"component": named(component), "variable": named(variable)}


def _keys(a: dict[str, Any]) -> list[str]:
    keys = a.get("keys") or []
    if isinstance(keys, str):
        keys = [k.strip() for k in keys.replace("\n", ",").split(",") if k.strip()]
    return [str(k) for k in keys]


def _get_configuration(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    keys = _keys(a)
    if p == V16:
        return "GetConfiguration", ({"key": keys} if keys else {})
    if not keys:
        return "GetBaseReport", {"requestId": new_request_id(), "reportBase": "FullInventory"}
    return "GetVariables", {"getVariableData": [_variable_ref(k) for k in keys]}


def _set_configuration(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    key = str(_get(a, "key"))
    value = a.get("value")
    if value is None:
        raise CommandError("value is required", field="value")
    if p == V16:
        return "ChangeConfiguration", {"key": key, "value": str(value)}
    return "SetVariables", {
        "setVariableData": [{**_variable_ref(key), "attributeValue": str(value)}]
    }


def _base_report(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if p == V16:
        # 1.6 has no device model: the full configuration is its base report.
        return "GetConfiguration", {}
    return "GetBaseReport", {
        "requestId": int(_opt(a, "request_id") or new_request_id()),
        "reportBase": a.get("report_base") or "FullInventory",
    }


_TRIGGER_16 = (
    "BootNotification",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StatusNotification",
)
_TRIGGER_16_EXTENDED = {
    "LogStatusNotification": "LogStatusNotification",
    "SignChargingStationCertificate": "SignChargePointCertificate",
}
_TRIGGER_201 = {"DiagnosticsStatusNotification": "LogStatusNotification"}
TRIGGERS = (
    "BootNotification",
    "Heartbeat",
    "StatusNotification",
    "MeterValues",
    "FirmwareStatusNotification",
    "DiagnosticsStatusNotification",
    "LogStatusNotification",
    "SignChargingStationCertificate",
    "TransactionEvent",
)


def _trigger(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    message = str(_get(a, "message"))
    evse = _opt(a, "evse_id")
    if p == V16:
        if message in _TRIGGER_16:
            action = "TriggerMessage"
        elif message in _TRIGGER_16_EXTENDED:
            action, message = "ExtendedTriggerMessage", _TRIGGER_16_EXTENDED[message]
        else:
            raise CommandError(f"{message} cannot be triggered in OCPP 1.6J", field="message")
        payload: dict[str, Any] = {"requestedMessage": message}
        _put(payload, "connectorId", evse)
        return action, payload
    payload = {"requestedMessage": _TRIGGER_201.get(message, message)}
    if evse:
        payload["evse"] = {"id": int(evse)}
        _put(payload["evse"], "connectorId", _opt(a, "connector_id"))
    return "TriggerMessage", payload


def _clear_cache(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "ClearCache", {}


def local_list_entry(protocol: str, uid: str, entry: dict[str, Any] | None) -> dict[str, Any]:
    """One local list entry; `entry` None deletes the token (differential updates only).

    Entry: {type, status, expiry?, group?}.
    """
    if protocol == V16:
        item: dict[str, Any] = {"idTag": uid}
        if entry is not None:
            info: dict[str, Any] = {"status": entry.get("status", "Accepted")}
            _put(info, "expiryDate", entry.get("expiry") and iso(entry["expiry"]))
            _put(info, "parentIdTag", entry.get("group"))
            item["idTagInfo"] = info
        return item
    item = {"idToken": _id_token(uid, (entry or {}).get("type") or "ISO14443")}
    if entry is not None:
        info = {"status": entry.get("status", "Accepted")}
        _put(info, "cacheExpiryDateTime", entry.get("expiry") and iso(entry["expiry"]))
        if entry.get("group"):
            info["groupIdToken"] = _id_token(entry["group"], entry.get("group_type") or "Central")
        item["idTokenInfo"] = info
    return item


def _send_local_list(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    version = int(_get(a, "version"))
    update = a.get("update_type") or "Full"
    if update not in ("Full", "Differential"):
        raise CommandError("update_type is Full or Differential", field="update_type")
    entries = a.get("entries") or []
    if not isinstance(entries, list):
        raise CommandError("entries must be a list", field="entries")
    items = []
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("id_token"):
            raise CommandError("each entry needs an id_token", field="entries")
        info = None if entry.get("status") in (None, "") else entry
        if info is None and update == "Full":
            raise CommandError("a Full update needs a status for every entry", field="entries")
        items.append(local_list_entry(p, str(entry["id_token"]), info))
    if p == V16:
        payload = {"listVersion": version, "updateType": update}
        if items:
            payload["localAuthorizationList"] = items
        return "SendLocalList", payload
    payload = {"versionNumber": version, "updateType": update}
    if items:
        payload["localAuthorizationList"] = items
    return "SendLocalList", payload


def _local_list_version(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "GetLocalListVersion", {}


def _reserve(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    reservation = int(_get(a, "reservation_id"))
    expiry = iso(_get(a, "expires_at"))
    token = str(_get(a, "id_token"))
    evse = _opt(a, "evse_id")
    if p == V16:
        payload: dict[str, Any] = {
            "connectorId": int(evse or 0),
            "expiryDate": expiry,
            "idTag": token,
            "reservationId": reservation,
        }
        _put(payload, "parentIdTag", _opt(a, "group_id_token"))
        return "ReserveNow", payload
    payload = {
        "id": reservation,
        "expiryDateTime": expiry,
        "idToken": _id_token(token, _opt(a, "id_token_type")),
    }
    _put(payload, "evseId", evse)
    if _opt(a, "group_id_token"):
        payload["groupIdToken"] = _id_token(a["group_id_token"], "Central")
    return "ReserveNow", payload


def _cancel_reservation(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "CancelReservation", {"reservationId": int(_get(a, "reservation_id"))}


def _set_profile(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    evse = int(a.get("evse_id") or 0)
    profile = charging_profile(p, _get(a, "charging_profile"))
    if p == V16:
        return "SetChargingProfile", {"connectorId": evse, "csChargingProfiles": profile}
    return "SetChargingProfile", {"evseId": evse, "chargingProfile": profile}


def _clear_profile(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    profile_id = _opt(a, "profile_id")
    evse = _opt(a, "evse_id")
    purpose = _opt(a, "purpose")
    stack = _opt(a, "stack_level")
    if p == V16:
        payload: dict[str, Any] = {}
        _put(payload, "id", profile_id and int(profile_id))
        _put(payload, "connectorId", evse)
        _put(payload, "chargingProfilePurpose", purpose and _PURPOSE_16.get(purpose, purpose))
        _put(payload, "stackLevel", stack)
        return "ClearChargingProfile", payload
    payload = {}
    _put(payload, "chargingProfileId", profile_id and int(profile_id))
    criteria: dict[str, Any] = {}
    _put(criteria, "evseId", evse)
    _put(criteria, "chargingProfilePurpose", purpose)
    _put(criteria, "stackLevel", stack)
    if criteria:
        payload["chargingProfileCriteria"] = criteria
    return "ClearChargingProfile", payload


def _composite(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    evse = int(a.get("evse_id") or 0)
    duration = int(_get(a, "duration"))
    payload: dict[str, Any] = {"duration": duration}
    _put(payload, "chargingRateUnit", _opt(a, "rate_unit"))
    payload["connectorId" if p == V16 else "evseId"] = evse
    return "GetCompositeSchedule", payload


def _data_transfer(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    payload: dict[str, Any] = {"vendorId": str(_get(a, "vendor_id"))}
    _put(payload, "messageId", _opt(a, "message_id"))
    data = _opt(a, "data")
    if data is not None:
        payload["data"] = data if p == V201 or isinstance(data, str) else str(data)
    return "DataTransfer", payload


def _log_payload(a: dict[str, Any], log_type: str) -> dict[str, Any]:
    log: dict[str, Any] = {"remoteLocation": str(_get(a, "location"))}
    if _opt(a, "start_time"):
        log["oldestTimestamp"] = iso(a["start_time"])
    if _opt(a, "stop_time"):
        log["latestTimestamp"] = iso(a["stop_time"])
    payload: dict[str, Any] = {
        "logType": log_type,
        "requestId": int(_opt(a, "request_id") or new_request_id()),
        "log": log,
    }
    _put(payload, "retries", _opt(a, "retries"))
    _put(payload, "retryInterval", _opt(a, "retry_interval"))
    return payload


def _diagnostics(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if p == V201:
        return "GetLog", _log_payload(a, "DiagnosticsLog")
    payload: dict[str, Any] = {"location": str(_get(a, "location"))}
    _put(payload, "retries", _opt(a, "retries"))
    _put(payload, "retryInterval", _opt(a, "retry_interval"))
    if _opt(a, "start_time"):
        payload["startTime"] = iso(a["start_time"])
    if _opt(a, "stop_time"):
        payload["stopTime"] = iso(a["stop_time"])
    return "GetDiagnostics", payload


def _get_log(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    log_type = a.get("log_type") or "DiagnosticsLog"
    if log_type not in ("DiagnosticsLog", "SecurityLog"):
        raise CommandError("log_type is DiagnosticsLog or SecurityLog", field="log_type")
    return "GetLog", _log_payload(a, log_type)


def _firmware(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    location = str(_get(a, "location"))
    retrieve = iso(_get(a, "retrieve_at"))
    certificate = _opt(a, "signing_certificate")
    signature = _opt(a, "signature")
    if bool(certificate) != bool(signature):
        raise CommandError("a signed update needs both signing_certificate and signature")
    if p == V16 and not certificate:
        payload: dict[str, Any] = {"location": location, "retrieveDate": retrieve}
        _put(payload, "retries", _opt(a, "retries"))
        _put(payload, "retryInterval", _opt(a, "retry_interval"))
        return "UpdateFirmware", payload
    firmware: dict[str, Any] = {"location": location, "retrieveDateTime": retrieve}
    if _opt(a, "install_at"):
        firmware["installDateTime"] = iso(a["install_at"])
    _put(firmware, "signingCertificate", certificate)
    _put(firmware, "signature", signature)
    payload = {"requestId": int(_opt(a, "request_id") or new_request_id()), "firmware": firmware}
    _put(payload, "retries", _opt(a, "retries"))
    _put(payload, "retryInterval", _opt(a, "retry_interval"))
    return ("SignedUpdateFirmware" if p == V16 else "UpdateFirmware"), payload


def _truthy(value: Any) -> bool:
    return value in (True, "true", "True", "1", 1, "on")


def _customer_information(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if p == V16:
        raise _not_in_16("customer_information")
    payload: dict[str, Any] = {
        "requestId": int(_opt(a, "request_id") or new_request_id()),
        "report": _truthy(a.get("report", True)),
        "clear": _truthy(a.get("clear", False)),
    }
    _put(payload, "customerIdentifier", _opt(a, "customer_identifier"))
    if _opt(a, "id_token"):
        payload["idToken"] = _id_token(a["id_token"], _opt(a, "id_token_type") or "ISO14443")
    return "CustomerInformation", payload


def _set_display(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if p == V16:
        raise _not_in_16("set_display_message")
    message: dict[str, Any] = {
        "id": int(_get(a, "message_id")),
        "priority": a.get("priority") or "NormalCycle",
        "message": {"format": a.get("format") or "UTF8", "content": str(_get(a, "message"))},
    }
    _put(message["message"], "language", _opt(a, "language"))
    _put(message, "state", _opt(a, "state"))
    if _opt(a, "starts_at"):
        message["startDateTime"] = iso(a["starts_at"])
    if _opt(a, "ends_at"):
        message["endDateTime"] = iso(a["ends_at"])
    _put(message, "transactionId", _opt(a, "transaction_id"))
    return "SetDisplayMessage", {"message": message}


def _get_displays(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if p == V16:
        raise _not_in_16("get_display_messages")
    payload: dict[str, Any] = {"requestId": int(_opt(a, "request_id") or new_request_id())}
    ids = a.get("ids")
    if ids:
        payload["id"] = [int(i) for i in (ids.split(",") if isinstance(ids, str) else ids)]
    _put(payload, "priority", _opt(a, "priority"))
    _put(payload, "state", _opt(a, "state"))
    return "GetDisplayMessages", payload


def _clear_display(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if p == V16:
        raise _not_in_16("clear_display_message")
    return "ClearDisplayMessage", {"id": int(_get(a, "message_id"))}


_CERT_INSTALL = {
    V16: {
        "csms_root": "CentralSystemRootCertificate",
        "manufacturer_root": "ManufacturerRootCertificate",
    },
    V201: {
        "csms_root": "CSMSRootCertificate",
        "manufacturer_root": "ManufacturerRootCertificate",
        "v2g_root": "V2GRootCertificate",
        "mo_root": "MORootCertificate",
    },
}
_CERT_IDS_201 = {**_CERT_INSTALL[V201], "v2g_chain": "V2GCertificateChain"}
CERTIFICATE_TYPES = ("csms_root", "manufacturer_root", "v2g_root", "mo_root", "v2g_chain")


def _cert_type(p: str, a: dict[str, Any], table: dict[str, str], *, required: bool) -> str | None:
    value = _opt(a, "certificate_type")
    if value is None:
        if required:
            raise CommandError("certificate_type is required", field="certificate_type")
        return None
    if value not in table:
        raise CommandError(
            f"certificate_type {value} does not exist in {p}", field="certificate_type"
        )
    return table[value]


def _install_certificate(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    kind = _cert_type(p, a, _CERT_INSTALL[p], required=True)
    return "InstallCertificate", {
        "certificateType": kind,
        "certificate": str(_get(a, "certificate")),
    }


def _delete_certificate(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "DeleteCertificate", {
        "certificateHashData": {
            "hashAlgorithm": a.get("hash_algorithm") or "SHA256",
            "issuerNameHash": str(_get(a, "issuer_name_hash")),
            "issuerKeyHash": str(_get(a, "issuer_key_hash")),
            "serialNumber": str(_get(a, "serial_number")),
        }
    }


def _installed_ids(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    if p == V16:
        kind = _cert_type(p, a, _CERT_INSTALL[V16], required=True)
        return "GetInstalledCertificateIds", {"certificateType": kind}
    kind = _cert_type(p, a, _CERT_IDS_201, required=False)
    return "GetInstalledCertificateIds", ({"certificateType": [kind]} if kind else {})


def _certificate_signed(p: str, a: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    payload: dict[str, Any] = {"certificateChain": str(_get(a, "certificate_chain"))}
    if p == V201:
        kind = _opt(a, "certificate_type")
        if kind:
            table = {"charging_station": "ChargingStationCertificate", "v2g": "V2GCertificate"}
            if kind not in table:
                raise CommandError(
                    "certificate_type is charging_station or v2g", field="certificate_type"
                )
            payload["certificateType"] = table[kind]
    return "CertificateSigned", payload


# --- The verbs -----------------------------------------------------------------------------------

_TOKEN_TYPES = (
    "Central",
    "ISO14443",
    "ISO15693",
    "eMAID",
    "KeyCode",
    "Local",
    "MacAddress",
    "NoAuthorization",
)
_PURPOSES = ("TxProfile", "TxDefaultProfile", "ChargingStationMaxProfile")
_EVSE = Param("evse_id", "int", help="EVSE (2.0.1) or connector (1.6) number; 0 = station")
_MINUTE = timedelta(minutes=1)
_DAY = timedelta(days=1)

VERBS: dict[str, Verb] = {
    verb.name: verb
    for verb in (
        Verb(
            "remote_start",
            "Remote start",
            (
                Param("id_token", "str", True, help="Token to charge with"),
                Param("id_token_type", "choice", choices=_TOKEN_TYPES, default="Central"),
                _EVSE,
                Param("remote_start_id", "int", help="2.0.1; generated when empty"),
                Param("group_id_token", "str"),
                Param("charging_profile", "json", help="Neutral charging profile (TxProfile)"),
            ),
            _remote_start,
            expiry=2 * _MINUTE,
        ),
        Verb(
            "remote_stop",
            "Remote stop",
            (Param("transaction_id", "str", True, help="The session's OCPP transaction id"),),
            _remote_stop,
            expiry=5 * _MINUTE,
        ),
        Verb(
            "reset",
            "Reset",
            (
                Param(
                    "type",
                    "choice",
                    True,
                    choices=("soft", "hard"),
                    default="soft",
                    help="soft = 1.6 Soft / 2.0.1 OnIdle; hard = Hard / Immediate",
                ),
                Param("evse_id", "int", help="2.0.1 only: reset one EVSE"),
            ),
            _reset,
        ),
        Verb(
            "unlock_connector",
            "Unlock connector",
            (
                Param("evse_id", "int", True),
                Param("connector_id", "int", default=1),
            ),
            _unlock,
            expiry=2 * _MINUTE,
        ),
        Verb(
            "change_availability",
            "Change availability",
            (
                Param("operative", "bool", default=True),
                _EVSE,
                Param("connector_id", "int"),
            ),
            _availability,
        ),
        Verb(
            "get_configuration",
            "Get configuration",
            (Param("keys", "list", help="1.6 keys or 2.0.1 Component.Variable; empty = all"),),
            _get_configuration,
        ),
        Verb(
            "set_configuration",
            "Set configuration",
            (
                Param("key", "str", True, help="1.6 key or 2.0.1 Component.Variable"),
                Param("value", "str", True),
            ),
            _set_configuration,
        ),
        Verb(
            "get_base_report",
            "Get base report",
            (
                Param(
                    "report_base",
                    "choice",
                    choices=("FullInventory", "ConfigurationInventory", "SummaryInventory"),
                    default="FullInventory",
                ),
                Param("request_id", "int"),
            ),
            _base_report,
        ),
        Verb(
            "trigger_message",
            "Trigger message",
            (
                Param("message", "choice", True, choices=TRIGGERS),
                _EVSE,
                Param("connector_id", "int"),
            ),
            _trigger,
            expiry=10 * _MINUTE,
        ),
        Verb("clear_cache", "Clear authorization cache", (), _clear_cache),
        Verb(
            "send_local_list",
            "Send local list",
            (
                Param("version", "int", True),
                Param(
                    "update_type", "choice", True, choices=("Full", "Differential"), default="Full"
                ),
                Param(
                    "entries",
                    "json",
                    help='[{"id_token": "...", "status": "Accepted", "expiry": ..., '
                    '"group": ...}]; no status = delete (differential)',
                ),
            ),
            _send_local_list,
            expiry=_DAY,
        ),
        Verb("get_local_list_version", "Get local list version", (), _local_list_version),
        Verb(
            "reserve_now",
            "Reserve now",
            (
                Param("reservation_id", "int", True),
                Param("expires_at", "datetime", True),
                Param("id_token", "str", True),
                Param("id_token_type", "choice", choices=_TOKEN_TYPES, default="Central"),
                _EVSE,
                Param("group_id_token", "str"),
            ),
            _reserve,
            expiry=5 * _MINUTE,
        ),
        Verb(
            "cancel_reservation",
            "Cancel reservation",
            (Param("reservation_id", "int", True),),
            _cancel_reservation,
        ),
        Verb(
            "set_charging_profile",
            "Set charging profile",
            (
                _EVSE,
                Param("charging_profile", "json", True, help="Neutral charging profile"),
            ),
            _set_profile,
        ),
        Verb(
            "clear_charging_profile",
            "Clear charging profile",
            (
                Param("profile_id", "int"),
                _EVSE,
                Param("purpose", "choice", choices=_PURPOSES),
                Param("stack_level", "int"),
            ),
            _clear_profile,
        ),
        Verb(
            "get_composite_schedule",
            "Get composite schedule",
            (
                _EVSE,
                Param("duration", "int", True, help="Seconds"),
                Param("rate_unit", "choice", choices=("A", "W")),
            ),
            _composite,
            expiry=10 * _MINUTE,
        ),
        Verb(
            "data_transfer",
            "Data transfer",
            (
                Param("vendor_id", "str", True),
                Param("message_id", "str"),
                Param("data", "str"),
            ),
            _data_transfer,
        ),
        Verb(
            "get_diagnostics",
            "Get diagnostics",
            (
                Param("location", "str", True, help="Upload URL"),
                Param("start_time", "datetime"),
                Param("stop_time", "datetime"),
                Param("retries", "int"),
                Param("retry_interval", "int"),
                Param("request_id", "int", help="2.0.1 GetLog; generated when empty"),
            ),
            _diagnostics,
            expiry=_DAY,
        ),
        Verb(
            "get_log",
            "Get log",
            (
                Param(
                    "log_type",
                    "choice",
                    True,
                    choices=("DiagnosticsLog", "SecurityLog"),
                    default="DiagnosticsLog",
                ),
                Param("location", "str", True, help="Upload URL"),
                Param("start_time", "datetime"),
                Param("stop_time", "datetime"),
                Param("retries", "int"),
                Param("retry_interval", "int"),
                Param("request_id", "int"),
            ),
            _get_log,
            expiry=_DAY,
        ),
        Verb(
            "update_firmware",
            "Update firmware",
            (
                Param("location", "str", True, help="Firmware URL"),
                Param("retrieve_at", "datetime", True),
                Param("install_at", "datetime"),
                Param("retries", "int"),
                Param("retry_interval", "int"),
                Param("request_id", "int"),
                Param("signing_certificate", "str", help="Signed update: PEM certificate"),
                Param("signature", "str", help="Signed update: base64 signature"),
            ),
            _firmware,
            expiry=_DAY,
        ),
        Verb(
            "customer_information",
            "Customer information",
            (
                Param("report", "bool", default=True),
                Param("clear", "bool", default=False),
                Param("customer_identifier", "str"),
                Param("id_token", "str"),
                Param("id_token_type", "choice", choices=_TOKEN_TYPES),
                Param("request_id", "int"),
            ),
            _customer_information,
            protocols=(V201,),
        ),
        Verb(
            "set_display_message",
            "Set display message",
            (
                Param("message_id", "int", True),
                Param("message", "str", True),
                Param(
                    "priority",
                    "choice",
                    choices=("NormalCycle", "InFront", "AlwaysFront"),
                    default="NormalCycle",
                ),
                Param("state", "choice", choices=("Charging", "Faulted", "Idle", "Unavailable")),
                Param("starts_at", "datetime"),
                Param("ends_at", "datetime"),
                Param("transaction_id", "str"),
                Param("language", "str"),
                Param("format", "choice", choices=("UTF8", "ASCII", "HTML", "URI"), default="UTF8"),
            ),
            _set_display,
            protocols=(V201,),
        ),
        Verb(
            "get_display_messages",
            "Get display messages",
            (
                Param("ids", "list"),
                Param("request_id", "int"),
                Param("priority", "choice", choices=("NormalCycle", "InFront", "AlwaysFront")),
                Param("state", "choice", choices=("Charging", "Faulted", "Idle", "Unavailable")),
            ),
            _get_displays,
            protocols=(V201,),
        ),
        Verb(
            "clear_display_message",
            "Clear display message",
            (Param("message_id", "int", True),),
            _clear_display,
            protocols=(V201,),
        ),
        Verb(
            "install_certificate",
            "Install certificate",
            (
                Param("certificate_type", "choice", True, choices=CERTIFICATE_TYPES[:4]),
                Param("certificate", "str", True, help="PEM"),
            ),
            _install_certificate,
        ),
        Verb(
            "delete_certificate",
            "Delete certificate",
            (
                Param(
                    "hash_algorithm",
                    "choice",
                    choices=("SHA256", "SHA384", "SHA512"),
                    default="SHA256",
                ),
                Param("issuer_name_hash", "str", True),
                Param("issuer_key_hash", "str", True),
                Param("serial_number", "str", True),
            ),
            _delete_certificate,
        ),
        Verb(
            "get_installed_certificate_ids",
            "Get installed certificate ids",
            (
                Param(
                    "certificate_type",
                    "choice",
                    choices=CERTIFICATE_TYPES,
                    help="Required in 1.6 (csms_root or manufacturer_root)",
                ),
            ),
            _installed_ids,
        ),
        Verb(
            "certificate_signed",
            "Certificate signed",
            (
                Param("certificate_chain", "str", True, help="PEM chain"),
                Param("certificate_type", "choice", choices=("charging_station", "v2g")),
            ),
            _certificate_signed,
        ),
    )
}

# Raw actions expire like the verb that sends them, else after an hour.
_EXPIRY_BY_ACTION = {
    "RemoteStartTransaction": 2 * _MINUTE,
    "RequestStartTransaction": 2 * _MINUTE,
    "RemoteStopTransaction": 5 * _MINUTE,
    "RequestStopTransaction": 5 * _MINUTE,
    "UnlockConnector": 2 * _MINUTE,
    "ReserveNow": 5 * _MINUTE,
    "SendLocalList": _DAY,
    "UpdateFirmware": _DAY,
    "SignedUpdateFirmware": _DAY,
    "GetDiagnostics": _DAY,
    "GetLog": _DAY,
}


def expiry_for(action: str, verb: str = "") -> timedelta:
    if verb in VERBS:
        return VERBS[verb].expiry
    return _EXPIRY_BY_ACTION.get(action, timedelta(hours=1))


def translate(protocol: str, verb: str, params: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    """The (action, payload) of `verb` for a station speaking `protocol`, schema-checked."""
    if protocol not in (V16, V201):
        raise CommandError("the station has not connected yet: its protocol is unknown")
    spec = VERBS.get(verb)
    if spec is None:
        raise CommandError(f"unknown verb {verb!r}", field="verb")
    if protocol not in spec.protocols:
        raise CommandError(f"{spec.label} does not exist in OCPP 1.6J")
    try:
        action, payload = spec.build(protocol, dict(params))
    except (KeyError, TypeError, ValueError) as exc:
        raise CommandError(f"invalid parameters for {verb}: {exc}") from None
    validate_call(protocol, action, payload)
    return action, payload


# Actions a station sends, never receives: raw mode refuses them.
_STATION_INITIATED = {
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
}


def validate_call(protocol: str, action: str, payload: Any) -> None:
    """Raise CommandError unless `payload` is a valid CALL of `action` in `protocol`."""
    if action in _STATION_INITIATED:
        raise CommandError(f"{action} is sent by stations, not to them", field="action")
    if not isinstance(payload, dict):
        raise CommandError("the payload must be a JSON object", field="payload")
    try:
        ocpp.validate(protocol, ocpp.CALL, action, payload)
    except ocpp.OcppError as error:
        if error.kind == "NotImplemented":
            raise CommandError(
                f"{action} is not an OCPP {protocol[4:]} action", field="action"
            ) from None
        raise CommandError(f"schema: {error.description}", field="payload") from None

"""OCPP 2.0.1: the calls of each command verb, and how a station's answer is read.

2.0.1 addresses EVSEs and connectors within them as the network does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stations.commands.codec import Outcome
from stations.commands.models import Command
from stations.commands.verbs import CommandError, new_request_id
from stations.ocpp.builders import (
    Builder,
    iso,
    keys,
    local_list_entries,
    optional,
    put,
    required,
    status_outcome,
    truthy,
)

# IdTokenType.idToken is identifierString[36].
ID_TOKEN_LENGTH = 36

# OCPI token types of roaming tokens have no IdTokenEnumType; the nearest ones.
TOKEN_TYPE = {
    "RFID": "ISO14443",
    "APP_USER": "Central",
    "AD_HOC_USER": "Central",
    "OTHER": "Central",
}


def id_token(value: str, token_type: str | None) -> dict[str, Any]:
    kind = token_type or "Central"
    return {"idToken": value, "type": TOKEN_TYPE.get(kind, kind)}


def charging_profile(profile: Any) -> dict[str, Any]:
    """A neutral charging profile (see the 1.6 module for its shape) as a ChargingProfileType."""
    if not isinstance(profile, dict):
        raise CommandError("charging_profile must be an object", field="charging_profile")
    schedule = profile.get("schedule") or {}
    periods = []
    for period in schedule.get("periods") or []:
        item: dict[str, Any] = {
            "startPeriod": int(period.get("start", 0)),
            "limit": float(period["limit"]),
        }
        put(item, "numberPhases", period.get("phases"))
        # Which phase a single-phase allocation uses, on a station that switches phases.
        put(item, "phaseToUse", period.get("phase_to_use"))
        periods.append(item)
    profile_id = int(profile.get("id", 1))
    sched: dict[str, Any] = {
        "id": int(schedule.get("id", profile_id)),
        "chargingRateUnit": schedule.get("rate_unit", "A"),
        "chargingSchedulePeriod": periods,
    }
    put(sched, "duration", schedule.get("duration"))
    if schedule.get("start"):
        sched["startSchedule"] = iso(schedule["start"])
    put(sched, "minChargingRate", schedule.get("min_rate"))
    purpose = profile.get("purpose", "TxProfile")
    if purpose == "ChargingStationExternalConstraints":
        # K01.FR.22: that purpose is the station's own record of limits set from outside; a
        # CSMS never sets it.
        raise CommandError(
            "a CSMS may not set a ChargingStationExternalConstraints profile (K01.FR.22)",
            field="charging_profile",
        )
    out: dict[str, Any] = {
        "id": profile_id,
        "stackLevel": int(profile.get("stack_level", 0)),
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": profile.get("kind", "Absolute"),
    }
    put(out, "recurrencyKind", profile.get("recurrency"))
    for key, name in (("valid_from", "validFrom"), ("valid_to", "validTo")):
        if profile.get(key):
            out[name] = iso(profile[key])
    put(out, "transactionId", profile.get("transaction_id") and str(profile["transaction_id"]))
    out["chargingSchedule"] = [sched]
    return out


def local_list_entry(uid: str, entry: Mapping[str, Any] | None) -> dict[str, Any]:
    """One localAuthorizationList item; `entry` None deletes the token (differential only).

    Entry: {status, type?, expiry?, group?, group_type?} with version-neutral statuses.
    """
    item: dict[str, Any] = {"idToken": id_token(uid, (entry or {}).get("type") or "ISO14443")}
    if entry is not None:
        info: dict[str, Any] = {"status": entry.get("status", "Accepted")}
        put(info, "cacheExpiryDateTime", entry.get("expiry") and iso(entry["expiry"]))
        if entry.get("group"):
            info["groupIdToken"] = id_token(entry["group"], entry.get("group_type") or "Central")
        item["idTokenInfo"] = info
    return item


def _evse(params: Mapping[str, Any]) -> dict[str, Any] | None:
    evse = optional(params, "evse_id")
    if not evse:
        return None
    ref: dict[str, Any] = {"id": int(evse)}
    put(ref, "connectorId", optional(params, "connector_id"))
    return ref


def _remote_start(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    payload: dict[str, Any] = {
        "idToken": id_token(str(required(a, "id_token")), optional(a, "id_token_type")),
        "remoteStartId": int(optional(a, "remote_start_id") or new_request_id()),
    }
    put(payload, "evseId", optional(a, "evse_id"))
    if optional(a, "group_id_token"):
        payload["groupIdToken"] = id_token(a["group_id_token"], optional(a, "id_token_type"))
    if optional(a, "charging_profile"):
        payload["chargingProfile"] = charging_profile(a["charging_profile"])
    return "RequestStartTransaction", payload


def _remote_stop(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return "RequestStopTransaction", {"transactionId": str(required(a, "transaction_id"))}


_RESET = {"soft": "OnIdle", "hard": "Immediate", "OnIdle": "OnIdle", "Immediate": "Immediate"}


def _transaction_status(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    payload: dict[str, Any] = {}
    put(payload, "transactionId", a.get("transaction_id") and str(a["transaction_id"]))
    return "GetTransactionStatus", payload


def _reset(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    kind = a.get("type") or "soft"
    if kind not in _RESET:
        raise CommandError("type is soft or hard (OnIdle or Immediate)", field="type")
    payload: dict[str, Any] = {"type": _RESET[kind]}
    put(payload, "evseId", optional(a, "evse_id"))
    return "Reset", payload


def _unlock(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return "UnlockConnector", {
        "evseId": int(required(a, "evse_id")),
        "connectorId": int(a.get("connector_id") or 1),
    }


def _availability(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    operative = a.get("operative", True)
    status = "Operative" if operative in (True, "true", "1", 1) else "Inoperative"
    payload: dict[str, Any] = {"operationalStatus": status}
    put(payload, "evse", _evse(a))
    return "ChangeAvailability", payload


def _variable_ref(key: str) -> dict[str, Any]:
    """'Component.Variable' or 'Component[instance].Variable[instance]' as a reference."""
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


def _get_configuration(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    wanted = keys(a)
    if not wanted:
        return "GetBaseReport", {"requestId": new_request_id(), "reportBase": "FullInventory"}
    return "GetVariables", {"getVariableData": [_variable_ref(k) for k in wanted]}


def _set_configuration(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    key = str(required(a, "key"))
    value = a.get("value")
    if value is None:
        raise CommandError("value is required", field="value")
    return "SetVariables", {
        "setVariableData": [{**_variable_ref(key), "attributeValue": str(value)}]
    }


def _base_report(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return "GetBaseReport", {
        "requestId": int(optional(a, "request_id") or new_request_id()),
        "reportBase": a.get("report_base") or "FullInventory",
    }


# 1.6 names that have a 2.0.1 counterpart under another name.
_TRIGGER = {"DiagnosticsStatusNotification": "LogStatusNotification"}


def _trigger(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    message = str(required(a, "message"))
    payload: dict[str, Any] = {"requestedMessage": _TRIGGER.get(message, message)}
    put(payload, "evse", _evse(a))
    return "TriggerMessage", payload


def _clear_cache(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return "ClearCache", {}


def _send_local_list(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    version, update, entries = local_list_entries(a)
    items = [
        local_list_entry(str(e["id_token"]), None if e.get("status") in (None, "") else e)
        for e in entries
    ]
    payload: dict[str, Any] = {"versionNumber": version, "updateType": update}
    if items:
        payload["localAuthorizationList"] = items
    return "SendLocalList", payload


def _local_list_version(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return "GetLocalListVersion", {}


def _reserve(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    payload: dict[str, Any] = {
        "id": int(required(a, "reservation_id")),
        "expiryDateTime": iso(required(a, "expires_at")),
        "idToken": id_token(str(required(a, "id_token")), optional(a, "id_token_type")),
    }
    put(payload, "evseId", optional(a, "evse_id"))
    if optional(a, "group_id_token"):
        payload["groupIdToken"] = id_token(a["group_id_token"], "Central")
    return "ReserveNow", payload


def _cancel_reservation(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return "CancelReservation", {"reservationId": int(required(a, "reservation_id"))}


def _set_profile(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    profile = charging_profile(required(a, "charging_profile"))
    return "SetChargingProfile", {"evseId": int(a.get("evse_id") or 0), "chargingProfile": profile}


def _clear_profile(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    profile_id = optional(a, "profile_id")
    payload: dict[str, Any] = {}
    put(payload, "chargingProfileId", profile_id and int(profile_id))
    criteria: dict[str, Any] = {}
    put(criteria, "evseId", optional(a, "evse_id"))
    put(criteria, "chargingProfilePurpose", optional(a, "purpose"))
    put(criteria, "stackLevel", optional(a, "stack_level"))
    if criteria:
        payload["chargingProfileCriteria"] = criteria
    return "ClearChargingProfile", payload


def _composite(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    payload: dict[str, Any] = {
        "duration": int(required(a, "duration")),
        "evseId": int(a.get("evse_id") or 0),
    }
    put(payload, "chargingRateUnit", optional(a, "rate_unit"))
    return "GetCompositeSchedule", payload


def _data_transfer(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    payload: dict[str, Any] = {"vendorId": str(required(a, "vendor_id"))}
    put(payload, "messageId", optional(a, "message_id"))
    data = optional(a, "data")
    if data is not None:
        payload["data"] = data
    return "DataTransfer", payload


def _log(a: Mapping[str, Any], log_type: str) -> tuple[str, dict[str, Any]]:
    log: dict[str, Any] = {"remoteLocation": str(required(a, "location"))}
    if optional(a, "start_time"):
        log["oldestTimestamp"] = iso(a["start_time"])
    if optional(a, "stop_time"):
        log["latestTimestamp"] = iso(a["stop_time"])
    payload: dict[str, Any] = {
        "logType": log_type,
        "requestId": int(optional(a, "request_id") or new_request_id()),
        "log": log,
    }
    put(payload, "retries", optional(a, "retries"))
    put(payload, "retryInterval", optional(a, "retry_interval"))
    return "GetLog", payload


def _diagnostics(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return _log(a, "DiagnosticsLog")


def _get_log(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    log_type = a.get("log_type") or "DiagnosticsLog"
    if log_type not in ("DiagnosticsLog", "SecurityLog"):
        raise CommandError("log_type is DiagnosticsLog or SecurityLog", field="log_type")
    return _log(a, log_type)


def _firmware(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    certificate = optional(a, "signing_certificate")
    signature = optional(a, "signature")
    if bool(certificate) != bool(signature):
        raise CommandError("a signed update needs both signing_certificate and signature")
    firmware: dict[str, Any] = {
        "location": str(required(a, "location")),
        "retrieveDateTime": iso(required(a, "retrieve_at")),
    }
    if optional(a, "install_at"):
        firmware["installDateTime"] = iso(a["install_at"])
    put(firmware, "signingCertificate", certificate)
    put(firmware, "signature", signature)
    payload: dict[str, Any] = {
        "requestId": int(optional(a, "request_id") or new_request_id()),
        "firmware": firmware,
    }
    put(payload, "retries", optional(a, "retries"))
    put(payload, "retryInterval", optional(a, "retry_interval"))
    return "UpdateFirmware", payload


def _customer_information(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    payload: dict[str, Any] = {
        "requestId": int(optional(a, "request_id") or new_request_id()),
        "report": truthy(a.get("report", True)),
        "clear": truthy(a.get("clear", False)),
    }
    put(payload, "customerIdentifier", optional(a, "customer_identifier"))
    if optional(a, "id_token"):
        payload["idToken"] = id_token(a["id_token"], optional(a, "id_token_type") or "ISO14443")
    return "CustomerInformation", payload


def _set_display(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    message: dict[str, Any] = {
        "id": int(required(a, "message_id")),
        "priority": a.get("priority") or "NormalCycle",
        "message": {"format": a.get("format") or "UTF8", "content": str(required(a, "message"))},
    }
    put(message["message"], "language", optional(a, "language"))
    put(message, "state", optional(a, "state"))
    if optional(a, "starts_at"):
        message["startDateTime"] = iso(a["starts_at"])
    if optional(a, "ends_at"):
        message["endDateTime"] = iso(a["ends_at"])
    put(message, "transactionId", optional(a, "transaction_id"))
    return "SetDisplayMessage", {"message": message}


def _get_displays(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    payload: dict[str, Any] = {"requestId": int(optional(a, "request_id") or new_request_id())}
    ids = a.get("ids")
    if ids:
        payload["id"] = [int(i) for i in (ids.split(",") if isinstance(ids, str) else ids)]
    put(payload, "priority", optional(a, "priority"))
    put(payload, "state", optional(a, "state"))
    return "GetDisplayMessages", payload


def _clear_display(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return "ClearDisplayMessage", {"id": int(required(a, "message_id"))}


_CERTIFICATE_INSTALL = {
    "csms_root": "CSMSRootCertificate",
    "manufacturer_root": "ManufacturerRootCertificate",
    "v2g_root": "V2GRootCertificate",
    "mo_root": "MORootCertificate",
}
_CERTIFICATE_IDS = {**_CERTIFICATE_INSTALL, "v2g_chain": "V2GCertificateChain"}


def _certificate_type(a: Mapping[str, Any], table: dict[str, str], *, needed: bool) -> str | None:
    value = optional(a, "certificate_type")
    if value is None:
        if needed:
            raise CommandError("certificate_type is required", field="certificate_type")
        return None
    if value not in table:
        raise CommandError(
            f"certificate_type {value} does not exist in ocpp2.0.1", field="certificate_type"
        )
    return table[value]


def _install_certificate(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return "InstallCertificate", {
        "certificateType": _certificate_type(a, _CERTIFICATE_INSTALL, needed=True),
        "certificate": str(required(a, "certificate")),
    }


def _delete_certificate(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return "DeleteCertificate", {
        "certificateHashData": {
            "hashAlgorithm": a.get("hash_algorithm") or "SHA256",
            "issuerNameHash": str(required(a, "issuer_name_hash")),
            "issuerKeyHash": str(required(a, "issuer_key_hash")),
            "serialNumber": str(required(a, "serial_number")),
        }
    }


def _installed_ids(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    kind = _certificate_type(a, _CERTIFICATE_IDS, needed=False)
    return "GetInstalledCertificateIds", ({"certificateType": [kind]} if kind else {})


_SIGNED_TYPES = {"charging_station": "ChargingStationCertificate", "v2g": "V2GCertificate"}


def _certificate_signed(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    payload: dict[str, Any] = {"certificateChain": str(required(a, "certificate_chain"))}
    kind = optional(a, "certificate_type")
    if kind:
        if kind not in _SIGNED_TYPES:
            raise CommandError(
                "certificate_type is charging_station or v2g", field="certificate_type"
            )
        payload["certificateType"] = _SIGNED_TYPES[kind]
    return "CertificateSigned", payload


def _set_monitoring(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    ref = _variable_ref(str(required(a, "key")))
    put(ref["component"], "evse", _evse(a))
    try:
        value = float(str(required(a, "value")))
    except ValueError:
        raise CommandError("value: a number", field="value") from None
    severity = int(optional(a, "severity") if optional(a, "severity") is not None else 8)
    if not 0 <= severity <= 9:
        raise CommandError("severity: 0 to 9", field="severity")
    data: dict[str, Any] = {
        "value": value,
        "type": str(required(a, "type")),
        "severity": severity,
        "transaction": bool(a.get("transaction") or False),
        **ref,
    }
    put(data, "id", optional(a, "monitor_id"))
    return "SetVariableMonitoring", {"setMonitoringData": [data]}


def _monitoring_base(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return "SetMonitoringBase", {"monitoringBase": str(required(a, "monitoring_base"))}


def _monitoring_level(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    severity = int(required(a, "severity"))
    if not 0 <= severity <= 9:
        raise CommandError("severity: 0 to 9", field="severity")
    return "SetMonitoringLevel", {"severity": severity}


def _clear_monitoring(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    raw = a.get("ids") or []
    if isinstance(raw, str):
        raw = [part for part in raw.replace("\n", ",").split(",") if part.strip()]
    try:
        ids = [int(str(i).strip()) for i in raw]
    except ValueError:
        raise CommandError("ids: whole numbers", field="ids") from None
    if not ids:
        raise CommandError("ids: at least one monitor id", field="ids")
    return "ClearVariableMonitoring", {"id": ids}


BUILDERS: dict[str, Builder] = {
    "remote_start": _remote_start,
    "remote_stop": _remote_stop,
    "get_transaction_status": _transaction_status,
    "reset": _reset,
    "unlock_connector": _unlock,
    "change_availability": _availability,
    "get_configuration": _get_configuration,
    "set_configuration": _set_configuration,
    "get_base_report": _base_report,
    "trigger_message": _trigger,
    "clear_cache": _clear_cache,
    "send_local_list": _send_local_list,
    "get_local_list_version": _local_list_version,
    "reserve_now": _reserve,
    "cancel_reservation": _cancel_reservation,
    "set_charging_profile": _set_profile,
    "clear_charging_profile": _clear_profile,
    "get_composite_schedule": _composite,
    "data_transfer": _data_transfer,
    "get_diagnostics": _diagnostics,
    "get_log": _get_log,
    "update_firmware": _firmware,
    "customer_information": _customer_information,
    "set_display_message": _set_display,
    "get_display_messages": _get_displays,
    "clear_display_message": _clear_display,
    "install_certificate": _install_certificate,
    "delete_certificate": _delete_certificate,
    "get_installed_certificate_ids": _installed_ids,
    "certificate_signed": _certificate_signed,
    "set_variable_monitoring": _set_monitoring,
    "set_monitoring_base": _monitoring_base,
    "set_monitoring_level": _monitoring_level,
    "clear_variable_monitoring": _clear_monitoring,
}

# The verb a raw action belongs to: a raw command expires like the verb that sends it.
ACTION_VERBS = {
    "RequestStartTransaction": "remote_start",
    "RequestStopTransaction": "remote_stop",
    "UnlockConnector": "unlock_connector",
    "ReserveNow": "reserve_now",
    "SendLocalList": "send_local_list",
    "UpdateFirmware": "update_firmware",
    "GetLog": "get_log",
}

_VARIABLE_ACCEPTED = ("Accepted", "RebootRequired")


_MONITOR_ACCEPTED = ("Accepted",)


def outcome(action: str, response: Any) -> Outcome:
    """A status where the answer has one; SetVariables answers per variable instead."""
    if isinstance(response, dict) and response.get("status") is None:
        for field in ("setMonitoringResult", "clearMonitoringResult"):
            answers = response.get(field)
            if answers:
                refused = [
                    str(item.get("status"))
                    for item in answers
                    if item.get("status") not in _MONITOR_ACCEPTED
                ]
                if refused:
                    return Outcome(Command.Status.REJECTED, refused[0])
                return Outcome(Command.Status.ACCEPTED, "Accepted")
        results = response.get("setVariableResult")
        if results:
            refused = [
                str(item.get("attributeStatus"))
                for item in results
                if item.get("attributeStatus") not in _VARIABLE_ACCEPTED
            ]
            if refused:
                return Outcome(Command.Status.REJECTED, refused[0])
            return Outcome(Command.Status.ACCEPTED, str(results[0].get("attributeStatus")))
    return status_outcome(response)

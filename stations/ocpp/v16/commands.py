"""OCPP 1.6J: the calls of each command verb, and how a station's answer is read.

Addresses are the network's: EVSE N of a 1.6 station is its connector N (`connector_number`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from stations.commands.codec import Outcome
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
)
from stations.ocpp.v16.addressing import connector_number

# idTag and parentIdTag are CiString20Type.
ID_TAG_LENGTH = 20

# Version-neutral authorization statuses (2.0.1's names) have no 1.6 status of their own for
# the 2.0.1-only outcomes; the nearest 1.6 meaning is "Invalid" (NoCredit: "Blocked", as OCPI's
# guidance maps NO_CREDIT for 1.6).
AUTHORIZATION_STATUS = {
    "Accepted": "Accepted",
    "Blocked": "Blocked",
    "Expired": "Expired",
    "Invalid": "Invalid",
    "ConcurrentTx": "ConcurrentTx",
    "NotAtThisLocation": "Invalid",
    "NotAtThisTime": "Invalid",
    "NoCredit": "Blocked",
    "Unknown": "Invalid",
}

_PURPOSE = {"ChargingStationMaxProfile": "ChargePointMaxProfile"}


def _connector(params: Mapping[str, Any], name: str = "evse_id") -> int | None:
    value = optional(params, name)
    return None if value is None else connector_number(int(value))


def charging_profile(profile: Any) -> dict[str, Any]:
    """A neutral charging profile as a 1.6 csChargingProfiles.

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
        put(item, "numberPhases", period.get("phases"))
        periods.append(item)
    sched: dict[str, Any] = {
        "chargingRateUnit": schedule.get("rate_unit", "A"),
        "chargingSchedulePeriod": periods,
    }
    put(sched, "duration", schedule.get("duration"))
    if schedule.get("start"):
        sched["startSchedule"] = iso(schedule["start"])
    put(sched, "minChargingRate", schedule.get("min_rate"))
    purpose = profile.get("purpose", "TxProfile")
    out: dict[str, Any] = {
        "chargingProfileId": int(profile.get("id", 1)),
        "stackLevel": int(profile.get("stack_level", 0)),
        "chargingProfilePurpose": _PURPOSE.get(purpose, purpose),
        "chargingProfileKind": profile.get("kind", "Absolute"),
    }
    put(out, "recurrencyKind", profile.get("recurrency"))
    for key, name in (("valid_from", "validFrom"), ("valid_to", "validTo")):
        if profile.get(key):
            out[name] = iso(profile[key])
    if profile.get("transaction_id") not in (None, ""):
        out["transactionId"] = int(profile["transaction_id"])
    out["chargingSchedule"] = sched
    return out


def local_list_entry(uid: str, entry: Mapping[str, Any] | None) -> dict[str, Any]:
    """One localAuthorizationList item; `entry` None deletes the idTag (differential only).

    Entry: {status, expiry?, group?} with version-neutral statuses.
    """
    item: dict[str, Any] = {"idTag": uid}
    if entry is not None:
        status = entry.get("status", "Accepted")
        info: dict[str, Any] = {"status": AUTHORIZATION_STATUS.get(status, status)}
        put(info, "expiryDate", entry.get("expiry") and iso(entry["expiry"]))
        group = entry.get("group")
        if group and len(group) <= ID_TAG_LENGTH:
            info["parentIdTag"] = group
        item["idTagInfo"] = info
    return item


def _remote_start(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    payload: dict[str, Any] = {"idTag": str(required(a, "id_token"))}
    put(payload, "connectorId", _connector(a))
    if optional(a, "charging_profile"):
        payload["chargingProfile"] = charging_profile(a["charging_profile"])
    return "RemoteStartTransaction", payload


def _remote_stop(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    try:
        return "RemoteStopTransaction", {"transactionId": int(required(a, "transaction_id"))}
    except (TypeError, ValueError):
        raise CommandError("a 1.6 transaction id is an integer", field="transaction_id") from None


_RESET = {"soft": "Soft", "hard": "Hard", "OnIdle": "Soft", "Immediate": "Hard"}


def _reset(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    kind = a.get("type") or "soft"
    if kind not in _RESET:
        raise CommandError("type is soft or hard (OnIdle or Immediate)", field="type")
    return "Reset", {"type": _RESET[kind]}


def _unlock(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return "UnlockConnector", {"connectorId": connector_number(int(required(a, "evse_id")))}


def _availability(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    operative = a.get("operative", True)
    status = "Operative" if operative in (True, "true", "1", 1) else "Inoperative"
    return "ChangeAvailability", {"connectorId": _connector(a) or 0, "type": status}


def _get_configuration(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    wanted = keys(a)
    return "GetConfiguration", ({"key": wanted} if wanted else {})


def _set_configuration(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    value = a.get("value")
    if value is None:
        raise CommandError("value is required", field="value")
    return "ChangeConfiguration", {"key": str(required(a, "key")), "value": str(value)}


def _base_report(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    # 1.6 has no device model: the full configuration is its base report.
    return "GetConfiguration", {}


_TRIGGER = (
    "BootNotification",
    "DiagnosticsStatusNotification",
    "FirmwareStatusNotification",
    "Heartbeat",
    "MeterValues",
    "StatusNotification",
)
# Security extension (OCPP 1.6 security whitepaper): triggers of its own messages.
_TRIGGER_EXTENDED = {
    "LogStatusNotification": "LogStatusNotification",
    "SignChargingStationCertificate": "SignChargePointCertificate",
}


def _trigger(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    message = str(required(a, "message"))
    if message in _TRIGGER:
        action = "TriggerMessage"
    elif message in _TRIGGER_EXTENDED:
        action, message = "ExtendedTriggerMessage", _TRIGGER_EXTENDED[message]
    else:
        raise CommandError(f"{message} cannot be triggered in OCPP 1.6J", field="message")
    payload: dict[str, Any] = {"requestedMessage": message}
    put(payload, "connectorId", _connector(a))
    return action, payload


def _clear_cache(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return "ClearCache", {}


def _send_local_list(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    version, update, entries = local_list_entries(a)
    items = [
        local_list_entry(str(e["id_token"]), None if e.get("status") in (None, "") else e)
        for e in entries
    ]
    payload: dict[str, Any] = {"listVersion": version, "updateType": update}
    if items:
        payload["localAuthorizationList"] = items
    return "SendLocalList", payload


def _local_list_version(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return "GetLocalListVersion", {}


def _reserve(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    payload: dict[str, Any] = {
        "connectorId": _connector(a) or 0,
        "expiryDate": iso(required(a, "expires_at")),
        "idTag": str(required(a, "id_token")),
        "reservationId": int(required(a, "reservation_id")),
    }
    put(payload, "parentIdTag", optional(a, "group_id_token"))
    return "ReserveNow", payload


def _cancel_reservation(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return "CancelReservation", {"reservationId": int(required(a, "reservation_id"))}


def _set_profile(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    profile = charging_profile(required(a, "charging_profile"))
    return "SetChargingProfile", {"connectorId": _connector(a) or 0, "csChargingProfiles": profile}


def _clear_profile(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    profile_id = optional(a, "profile_id")
    purpose = optional(a, "purpose")
    payload: dict[str, Any] = {}
    put(payload, "id", profile_id and int(profile_id))
    put(payload, "connectorId", _connector(a))
    put(payload, "chargingProfilePurpose", purpose and _PURPOSE.get(purpose, purpose))
    put(payload, "stackLevel", optional(a, "stack_level"))
    return "ClearChargingProfile", payload


def _composite(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    payload: dict[str, Any] = {
        "connectorId": _connector(a) or 0,
        "duration": int(required(a, "duration")),
    }
    put(payload, "chargingRateUnit", optional(a, "rate_unit"))
    return "GetCompositeSchedule", payload


def _data_transfer(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    payload: dict[str, Any] = {"vendorId": str(required(a, "vendor_id"))}
    put(payload, "messageId", optional(a, "message_id"))
    data = optional(a, "data")
    if data is not None:
        # 1.6 DataTransfer data is a string.
        payload["data"] = data if isinstance(data, str) else str(data)
    return "DataTransfer", payload


def _log(a: Mapping[str, Any], log_type: str) -> tuple[str, dict[str, Any]]:
    """Security extension GetLog."""
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
    # GetDiagnostics has no request id: its status notifications are matched by station.
    payload: dict[str, Any] = {"location": str(required(a, "location"))}
    put(payload, "retries", optional(a, "retries"))
    put(payload, "retryInterval", optional(a, "retry_interval"))
    if optional(a, "start_time"):
        payload["startTime"] = iso(a["start_time"])
    if optional(a, "stop_time"):
        payload["stopTime"] = iso(a["stop_time"])
    return "GetDiagnostics", payload


def _get_log(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    log_type = a.get("log_type") or "DiagnosticsLog"
    if log_type not in ("DiagnosticsLog", "SecurityLog"):
        raise CommandError("log_type is DiagnosticsLog or SecurityLog", field="log_type")
    return _log(a, log_type)


def _firmware(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    location = str(required(a, "location"))
    retrieve = iso(required(a, "retrieve_at"))
    certificate = optional(a, "signing_certificate")
    signature = optional(a, "signature")
    if bool(certificate) != bool(signature):
        raise CommandError("a signed update needs both signing_certificate and signature")
    if not certificate:
        payload: dict[str, Any] = {"location": location, "retrieveDate": retrieve}
        put(payload, "retries", optional(a, "retries"))
        put(payload, "retryInterval", optional(a, "retry_interval"))
        return "UpdateFirmware", payload
    # Security extension: SignedUpdateFirmware.
    firmware: dict[str, Any] = {
        "location": location,
        "retrieveDateTime": retrieve,
        "signingCertificate": certificate,
        "signature": signature,
    }
    if optional(a, "install_at"):
        firmware["installDateTime"] = iso(a["install_at"])
    payload = {
        "requestId": int(optional(a, "request_id") or new_request_id()),
        "firmware": firmware,
    }
    put(payload, "retries", optional(a, "retries"))
    put(payload, "retryInterval", optional(a, "retry_interval"))
    return "SignedUpdateFirmware", payload


_CERTIFICATE_TYPES = {
    "csms_root": "CentralSystemRootCertificate",
    "manufacturer_root": "ManufacturerRootCertificate",
}


def _certificate_type(a: Mapping[str, Any]) -> str:
    value = optional(a, "certificate_type")
    if value is None:
        raise CommandError("certificate_type is required", field="certificate_type")
    if value not in _CERTIFICATE_TYPES:
        raise CommandError(
            f"certificate_type {value} does not exist in ocpp1.6", field="certificate_type"
        )
    return _CERTIFICATE_TYPES[value]


def _install_certificate(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return "InstallCertificate", {
        "certificateType": _certificate_type(a),
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
    return "GetInstalledCertificateIds", {"certificateType": _certificate_type(a)}


def _certificate_signed(a: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    return "CertificateSigned", {"certificateChain": str(required(a, "certificate_chain"))}


BUILDERS: dict[str, Builder] = {
    "remote_start": _remote_start,
    "remote_stop": _remote_stop,
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
    "install_certificate": _install_certificate,
    "delete_certificate": _delete_certificate,
    "get_installed_certificate_ids": _installed_ids,
    "certificate_signed": _certificate_signed,
}

# The verb a raw action belongs to: a raw command expires like the verb that sends it.
ACTION_VERBS = {
    "RemoteStartTransaction": "remote_start",
    "RemoteStopTransaction": "remote_stop",
    "UnlockConnector": "unlock_connector",
    "ReserveNow": "reserve_now",
    "SendLocalList": "send_local_list",
    "UpdateFirmware": "update_firmware",
    "SignedUpdateFirmware": "update_firmware",
    "GetDiagnostics": "get_diagnostics",
    "GetLog": "get_log",
}


def outcome(action: str, response: Any) -> Outcome:
    """Every 1.6 answer that reports success does so in `status`."""
    return status_outcome(response)

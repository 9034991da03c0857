"""The verbs an operator, a job or another service can send to a station, version-neutral.

A verb names what is wanted ("reset", "remote_start") with neutral parameters. The parameter
specs drive the operator panel's form per verb and the REST API's validation; how a verb
becomes a call of the station's OCPP version is the edge's business (`stations.ocpp.commands`,
reached through `stations.commands.codec`). Numbering is the network's: `evse_id` is the EVSE
(an OCPP 1.6 connector N is EVSE N with connector 1), `connector_id` the connector within it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.utils.dateparse import parse_datetime


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
    # How long a command waits for an offline station before it expires.
    expiry: timedelta = field(default=timedelta(hours=1))


def new_request_id() -> int:
    """A request id for calls whose answers arrive later (logs, firmware, reports)."""
    return secrets.randbelow(2**31 - 2) + 1


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
CERTIFICATE_TYPES = ("csms_root", "manufacturer_root", "v2g_root", "mo_root", "v2g_chain")

TOKEN_TYPES = (
    "Central",
    "ISO14443",
    "ISO15693",
    "eMAID",
    "KeyCode",
    "Local",
    "MacAddress",
    "NoAuthorization",
)
MONITOR_TYPES = ("UpperThreshold", "LowerThreshold", "Delta", "Periodic", "PeriodicClockAligned")
PURPOSES = ("TxProfile", "TxDefaultProfile", "ChargingStationMaxProfile")
_EVSE = Param(
    "evse_id", "int", help="EVSE number (on a 1.6 station: the connector number); 0 = station"
)
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
                Param("id_token_type", "choice", choices=TOKEN_TYPES, default="Central"),
                _EVSE,
                Param("remote_start_id", "int", help="2.0.1; generated when empty"),
                Param("group_id_token", "str"),
                Param("charging_profile", "json", help="Neutral charging profile (TxProfile)"),
            ),
            expiry=2 * _MINUTE,
        ),
        Verb(
            "remote_stop",
            "Remote stop",
            (Param("transaction_id", "str", True, help="The session's OCPP transaction id"),),
            expiry=5 * _MINUTE,
        ),
        Verb(
            "get_transaction_status",
            "Get transaction status",
            (
                Param(
                    "transaction_id",
                    "str",
                    help="2.0.1: the station's transaction id; empty = any queued messages",
                ),
            ),
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
        ),
        Verb(
            "unlock_connector",
            "Unlock connector",
            (
                Param("evse_id", "int", True),
                Param("connector_id", "int", default=1),
            ),
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
        ),
        Verb(
            "get_configuration",
            "Get configuration",
            (Param("keys", "list", help="1.6 keys or 2.0.1 Component.Variable; empty = all"),),
        ),
        Verb(
            "set_configuration",
            "Set configuration",
            (
                Param("key", "str", True, help="1.6 key or 2.0.1 Component.Variable"),
                Param("value", "str", True),
            ),
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
        ),
        Verb(
            "trigger_message",
            "Trigger message",
            (
                Param("message", "choice", True, choices=TRIGGERS),
                _EVSE,
                Param("connector_id", "int"),
            ),
            expiry=10 * _MINUTE,
        ),
        Verb("clear_cache", "Clear authorization cache", ()),
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
            expiry=_DAY,
        ),
        Verb("get_local_list_version", "Get local list version", ()),
        Verb(
            "reserve_now",
            "Reserve now",
            (
                Param("reservation_id", "int", True),
                Param("expires_at", "datetime", True),
                Param("id_token", "str", True),
                Param("id_token_type", "choice", choices=TOKEN_TYPES, default="Central"),
                _EVSE,
                Param("group_id_token", "str"),
            ),
            expiry=5 * _MINUTE,
        ),
        Verb(
            "cancel_reservation",
            "Cancel reservation",
            (Param("reservation_id", "int", True),),
        ),
        Verb(
            "set_charging_profile",
            "Set charging profile",
            (
                _EVSE,
                Param("charging_profile", "json", True, help="Neutral charging profile"),
            ),
        ),
        Verb(
            "clear_charging_profile",
            "Clear charging profile",
            (
                Param("profile_id", "int"),
                _EVSE,
                Param("purpose", "choice", choices=PURPOSES),
                Param("stack_level", "int"),
            ),
        ),
        Verb(
            "get_composite_schedule",
            "Get composite schedule",
            (
                _EVSE,
                Param("duration", "int", True, help="Seconds"),
                Param("rate_unit", "choice", choices=("A", "W")),
            ),
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
                Param("id_token_type", "choice", choices=TOKEN_TYPES),
                Param("request_id", "int"),
            ),
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
        ),
        Verb(
            "clear_display_message",
            "Clear display message",
            (Param("message_id", "int", True),),
        ),
        Verb(
            "install_certificate",
            "Install certificate",
            (
                Param("certificate_type", "choice", True, choices=CERTIFICATE_TYPES[:4]),
                Param("certificate", "str", True, help="PEM"),
            ),
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
        ),
        # 2.0.1 monitoring (the station's own watching of its variables; its NotifyEvents
        # feed monitoring's device_problem detector).
        Verb(
            "set_variable_monitoring",
            "Set variable monitoring",
            (
                Param("key", "str", True, help="2.0.1 Component.Variable, e.g. Connector.Problem"),
                _EVSE,
                Param("connector_id", "int"),
                Param("type", "choice", True, choices=MONITOR_TYPES, default="Delta"),
                Param("value", "str", True, help="The threshold, delta or interval (a number)"),
                Param("severity", "int", default=8, help="0 (danger) to 9 (debug)"),
                Param("transaction", "bool", default=False, help="Only during transactions"),
                Param("monitor_id", "int", help="Replace this monitor instead of adding one"),
            ),
        ),
        Verb(
            "set_monitoring_base",
            "Set monitoring base",
            (
                Param(
                    "monitoring_base",
                    "choice",
                    True,
                    choices=("All", "FactoryDefault", "HardWiredOnly"),
                    default="All",
                ),
            ),
        ),
        Verb(
            "set_monitoring_level",
            "Set monitoring level",
            (Param("severity", "int", True, default=8, help="Report events of 0 up to this"),),
        ),
        Verb(
            "clear_variable_monitoring",
            "Clear variable monitoring",
            (Param("ids", "list", True, help="Monitor ids, comma-separated"),),
        ),
        Verb(
            "certificate_signed",
            "Certificate signed",
            (
                Param("certificate_chain", "str", True, help="PEM chain"),
                Param("certificate_type", "choice", choices=("charging_station", "v2g")),
            ),
        ),
    )
}


DEFAULT_EXPIRY = timedelta(hours=1)


def expiry_for(verb: str) -> timedelta:
    """How long a command of `verb` (or of a raw action, verb "") may wait for its station."""
    spec = VERBS.get(verb)
    return spec.expiry if spec is not None else DEFAULT_EXPIRY


def params_clean(verb: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """The parameters of `verb`, each of the type its spec names, or CommandError.

    Every edge (panel form, station page, REST API, jobs, services) reaches a station through
    here, so this is the one place where text from a form or a query string becomes the
    integer, boolean or date-time the protocol's schema wants: a station never receives "2"
    where it expects 2. An empty value ("" or None) is an absent parameter; a parameter the
    verb does not have is refused rather than silently dropped (a typo such as "connectorId"
    would otherwise send the command without it).
    """
    spec = VERBS.get(verb)
    if spec is None:
        raise CommandError(f"unknown verb {verb!r}", field="verb")
    known = {param.name: param for param in spec.params}
    unknown = sorted(set(params) - set(known))
    if unknown:
        raise CommandError(
            f"{spec.label} has no parameter {unknown[0]!r}"
            + (f" (it takes {', '.join(known)})" if known else " (it takes none)"),
            field=unknown[0],
        )
    clean: dict[str, Any] = {}
    for name, value in params.items():
        if value is None or (isinstance(value, str) and value.strip() == ""):
            continue
        clean[name] = _typed(known[name], value)
    return clean


_TRUE = frozenset({"true", "1", "on", "yes"})
_FALSE = frozenset({"false", "0", "off", "no"})
_WHOLE_NUMBER = re.compile(r"[+-]?\d+")


def _typed(param: Param, value: Any) -> Any:
    """`value` as the type of `param`; CommandError (naming the parameter) when it is not one."""
    kind = param.kind
    if kind == "int":
        # bool is an int in Python, never in a schema.
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str) and _WHOLE_NUMBER.fullmatch(value.strip()):
            return int(value.strip())
        raise CommandError(f"{param.name} must be a whole number, not {value!r}", field=param.name)
    if kind == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, int) and value in (0, 1):
            return bool(value)
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise CommandError(f"{param.name} must be true or false, not {value!r}", field=param.name)
    if kind in ("str", "choice"):
        # Identifiers such as a 1.6 transaction id may arrive as JSON numbers.
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if not isinstance(value, str):
            raise CommandError(f"{param.name} must be text, not {value!r}", field=param.name)
        return value
    if kind == "datetime":
        moment = value
        if isinstance(value, str):
            try:
                moment = parse_datetime(value.strip())
            except ValueError:  # well formed, but no such date (a 13th month)
                moment = None
        if not isinstance(moment, datetime):
            raise CommandError(
                f"{param.name} must be an ISO 8601 date-time, not {value!r}", field=param.name
            )
        if moment.tzinfo is None:
            raise CommandError(f"{param.name} must carry a time zone", field=param.name)
        # As text: parameters may be stored (jobs) and builders read ISO strings.
        return moment.isoformat()
    if kind == "list":
        if isinstance(value, str):
            return [item.strip() for item in value.replace("\n", ",").split(",") if item.strip()]
        if not isinstance(value, list | tuple):
            raise CommandError(f"{param.name} must be a list, not {value!r}", field=param.name)
        return list(value)
    return value  # json: any JSON value, checked by the builder and the schema

"""Range checks on charger messages that their JSON schemas let through.

The official schemas bound types, not values: a year-9999 timestamp, a meter reading of
-1e300 Wh, an integer beyond any column or a NUL character in a text are schema-valid. Stored,
they break PostgreSQL (integer and numeric overflow, NUL in text and jsonb) and the rating
(decimal.InvalidOperation). They are found here, after schema validation, by one walk over
the payload:

- integers: OCPP's integer is 32 bits (OCPP-J); ids of EVSEs and connectors are not negative;
- numbers: finite;
- texts (and keys): no NUL;
- event times (`timestamp`, `generatedAt`): within OCPP_TIMESTAMP_MAX_PAST_DAYS before and
  OCPP_TIMESTAMP_MAX_FUTURE_DAYS after now;
- sampled values: a number, within ±CHARGING_METER_MAX_WH (Wh, W, ... after a kilo unit or
  a 2.0.1 multiplier), energy not negative, power within MAX_POWER_W, SoC 0-100.

What the edge does with a finding (`stations.ocpp.consumer`): a message that is not a
transaction message is answered PropertyConstraintViolation and nothing of it is stored. A
transaction message must always be accepted (1.6 §4.7 / 2.0.1 E04: the charger would retry
it for ever), so `repair` drops the absurd part and says what it dropped: an event time is
replaced by the time of receipt, a meter start or stop is dropped, a sampled value or a meter
value with an absurd time is dropped, NUL characters are removed from texts. The session is
flagged with what was dropped. A message whose absurd part identifies it (its connector, EVSE,
transaction id or sequence number) cannot be attached to anything: it is acknowledged and
only kept in the message log.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from datetime import UTC, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from sessions import services as charging
from stations.ocpp import protocol

INT32 = (-(2**31), 2**31 - 1)
# The live power column holds less than 10^9 W; no charger delivers 100 MW.
MAX_POWER_W = Decimal(10**8)
TIME_KEYS = frozenset({"timestamp", "generatedAt"})
NON_NEGATIVE_KEYS = frozenset({"connectorId", "evseId"})
# Fields that say which connector, transaction or event a transaction message is about.
IDENTIFYING_KEYS = frozenset({"connectorId", "evseId", "transactionId", "seqNo", "id"})


@dataclass(frozen=True)
class Problem:
    path: tuple[str | int, ...]
    reason: str

    def describe(self) -> str:
        where = "/".join(str(part) for part in self.path) or "payload"
        return f"{where}: {self.reason}"[:200]


def time_problem(value: str) -> str | None:
    parsed = parse_datetime(value) if isinstance(value, str) else None
    if parsed is None:
        return None  # unreadable times are replaced by the time of receipt already
    if timezone.is_naive(parsed):
        parsed = timezone.make_aware(parsed, UTC)
    now = timezone.now()
    if parsed < now - timedelta(days=settings.OCPP_TIMESTAMP_MAX_PAST_DAYS):
        return f"{value} is more than {settings.OCPP_TIMESTAMP_MAX_PAST_DAYS} days ago"
    if parsed > now + timedelta(days=settings.OCPP_TIMESTAMP_MAX_FUTURE_DAYS):
        return f"{value} is more than {settings.OCPP_TIMESTAMP_MAX_FUTURE_DAYS} days ahead"
    return None


def meter_problem(value: Any) -> str | None:
    """A meter start/stop in Wh."""
    limit = settings.CHARGING_METER_MAX_WH
    if not 0 <= value <= limit:
        return f"{value} Wh is outside 0..{limit} Wh"
    return None


def sampled_value_problem(sampled: dict[str, Any]) -> str | None:
    """A 1.6 or 2.0.1 sampledValue: its value as the number it must be, within bounds."""
    if sampled.get("format") == "SignedData":
        return None
    raw = sampled.get("value")
    try:
        value = Decimal(str(raw))
    except (InvalidOperation, ValueError):
        return f"value {str(raw)[:40]!r} is not a number"
    if not value.is_finite():
        return f"value {raw} is not finite"
    unit_of_measure = sampled.get("unitOfMeasure") or {}
    unit = sampled.get("unit") or unit_of_measure.get("unit", "")
    multiplier = unit_of_measure.get("multiplier", 0)
    if not isinstance(multiplier, int) or not -9 <= multiplier <= 9:
        return f"multiplier {multiplier} is outside -9..9"
    try:
        value = value.scaleb(multiplier + (3 if unit in ("kWh", "kW", "kvarh", "kvar") else 0))
    except InvalidOperation:
        return f"value {raw} is out of range"
    measurand = sampled.get("measurand", "Energy.Active.Import.Register")
    limit = Decimal(settings.CHARGING_METER_MAX_WH)
    if abs(value) > limit:
        return f"value {raw} {unit} is beyond ±{limit}"
    if measurand.startswith("Energy") and value < 0:
        return f"{measurand} {raw} is negative"
    if measurand.startswith("Power") and abs(value) > MAX_POWER_W:
        return f"{measurand} {raw} {unit} is beyond {MAX_POWER_W} W"
    if measurand == "SoC" and not 0 <= value <= 100:
        return f"SoC {raw} is outside 0..100"
    return None


def problems(action: str, payload: dict[str, Any]) -> list[Problem]:
    """Every absurd value of a schema-valid payload, by its path (no recursion: the walk
    must not depend on how deep a payload nests)."""
    found: list[Problem] = []
    stack: list[tuple[tuple[str | int, ...], Any]] = [((), payload)]
    while stack:
        path, value = stack.pop()
        key = path[-1] if path else None
        if isinstance(value, bool) or value is None:
            continue
        if isinstance(value, dict):
            if len(path) >= 2 and path[-2] == "sampledValue":
                reason = sampled_value_problem(value)
                if reason:
                    found.append(Problem((*path, "value"), reason))
            for child_key, child in value.items():
                if isinstance(child_key, str) and "\x00" in child_key:
                    found.append(Problem((*path, child_key), "a key holds a NUL character"))
                    continue
                stack.append(((*path, child_key), child))
        elif isinstance(value, list):
            stack.extend(((*path, index), child) for index, child in enumerate(value))
        elif isinstance(value, int):
            if action == "DataTransfer" and path[:1] == ("data",):
                continue  # vendor data is stored as JSON, any size
            if not INT32[0] <= value <= INT32[1]:
                found.append(Problem(path, f"{value} is beyond a 32-bit integer"))
            elif value < 0 and (key in NON_NEGATIVE_KEYS or path[-2:-1] == ("evse",)):
                found.append(Problem(path, f"{value} is negative"))
            elif key in ("meterStart", "meterStop") and (reason := meter_problem(value)):
                found.append(Problem(path, reason))
        elif isinstance(value, float):
            if value != value or value in (float("inf"), float("-inf")):
                found.append(Problem(path, "not a finite number"))
        elif isinstance(value, str):
            if "\x00" in value:
                found.append(Problem(path, "text holds a NUL character"))
            elif key in TIME_KEYS and (reason := time_problem(value)):
                found.append(Problem(path, reason))
    found.sort(key=lambda problem: [str(part) for part in problem.path])
    return found


def is_transaction_message(protocol_name: str, action: str, payload: dict[str, Any]) -> bool:
    if protocol_name == protocol.V16:
        return action in ("StartTransaction", "StopTransaction") or (
            action == "MeterValues" and payload.get("transactionId") is not None
        )
    return action == "TransactionEvent"


# The answer to a transaction message that cannot be attached to anything: acknowledged, so
# that the charger goes on, and refusing what it can (the 1.6 start gets no usable id).
ACKNOWLEDGED: dict[str, dict[str, Any]] = {
    "StartTransaction": {"transactionId": 0, "idTagInfo": {"status": "Invalid"}},
    "StopTransaction": {},
    "MeterValues": {},
    "TransactionEvent": {},
}


@dataclass(frozen=True)
class Repair:
    payload: dict[str, Any] | None  # None: nothing can be stored, acknowledge only
    dropped: tuple[str, ...]


def _container(payload: dict[str, Any], path: tuple[str | int, ...]) -> Any:
    node: Any = payload
    for part in path:
        node = node[part]
    return node


def repair(payload: dict[str, Any], found: list[Problem]) -> Repair:
    """The transaction message with its absurd parts dropped, and what was dropped."""
    repaired = copy.deepcopy(payload)
    dropped: list[str] = []
    removals: list[tuple[tuple[str | int, ...], str | int]] = []
    for problem in found:
        path = problem.path
        key = path[-1] if path else None
        if "meterValue" in path or "transactionData" in path:
            at = next(i for i, part in enumerate(path) if part in ("meterValue", "transactionData"))
            if "sampledValue" in path[at:]:
                cut = path.index("sampledValue", at) + 2  # the sampledValue itself
            else:
                cut = at + 2  # the whole meter value (its time is absurd)
            removals.append((path[: cut - 1], path[cut - 1]))
            dropped.append(f"dropped {problem.describe()}")
            continue
        if key in IDENTIFYING_KEYS and not problem.reason.startswith("text"):
            return Repair(None, (problem.describe(),))
        parent = _container(repaired, path[:-1])
        if key in TIME_KEYS and not problem.reason.startswith("text"):
            parent[key] = timezone.now().isoformat().replace("+00:00", "Z")
            dropped.append(f"{charging.TIME_REPLACED}{problem.describe()}")
        elif problem.reason.startswith("text"):
            parent[key] = parent[key].replace("\x00", "")
            dropped.append(f"NUL removed: {problem.describe()}")
        else:
            removals.append((path[:-1], key))  # type: ignore[arg-type]  # key is set: a path
            dropped.append(f"dropped {problem.describe()}")
    # Deepest and last first, so that the indexes still to remove stay valid.
    for parent_path, key in sorted(
        set(removals),
        key=lambda item: (len(item[0]), item[1] if isinstance(item[1], int) else -1),
        reverse=True,
    ):
        parent = _container(repaired, parent_path)
        if isinstance(parent, list) and isinstance(key, int) and key < len(parent):
            parent.pop(key)
        elif isinstance(parent, dict):
            parent.pop(key, None)
    for values in ("meterValue", "transactionData"):
        if isinstance(repaired.get(values), list):
            kept = [m for m in repaired[values] if m.get("sampledValue")]
            if values == "meterValue" and not kept and "transactionInfo" not in repaired:
                # 1.6 MeterValues needs one meter value: nothing left to store.
                return Repair(None, tuple(dropped))
            repaired[values] = kept
            if not kept and values == "transactionData":
                del repaired[values]
    return Repair(repaired, tuple(dropped))

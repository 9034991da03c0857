"""Helpers shared by the 1.6J and 2.0.1 payload builders of CSMS-initiated commands."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from django.utils.dateparse import parse_datetime

from stations.commands.codec import Outcome
from stations.commands.models import Command
from stations.commands.verbs import CommandError

# A verb's builder: neutral parameters -> (action, payload) of one OCPP version.
Builder = Callable[[Mapping[str, Any]], tuple[str, dict[str, Any]]]

# Statuses in a CALLRESULT that mean the station will do (or did) what it was asked.
POSITIVE_STATUSES = frozenset(
    {"Accepted", "Unlocked", "Scheduled", "RebootRequired", "AcceptedCanceled"}
)


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


def required(params: Mapping[str, Any], name: str) -> Any:
    value = params.get(name)
    if value is None or value == "":
        raise CommandError(f"{name} is required", field=name)
    return value


def optional(params: Mapping[str, Any], name: str) -> Any:
    value = params.get(name)
    return None if value == "" else value


def put(payload: dict[str, Any], key: str, value: Any) -> None:
    if value is not None and value != "":
        payload[key] = value


def truthy(value: Any) -> bool:
    return value in (True, "true", "True", "1", 1, "on")


def keys(params: Mapping[str, Any]) -> list[str]:
    """A list parameter given as a list or as a comma/newline separated string."""
    value = params.get("keys") or []
    if isinstance(value, str):
        value = [k.strip() for k in value.replace("\n", ",").split(",") if k.strip()]
    return [str(k) for k in value]


def local_list_entries(params: Mapping[str, Any]) -> tuple[int, str, list[dict[str, Any]]]:
    """The version, update type and entries of a send_local_list, checked."""
    version = int(required(params, "version"))
    update = params.get("update_type") or "Full"
    if update not in ("Full", "Differential"):
        raise CommandError("update_type is Full or Differential", field="update_type")
    entries = params.get("entries") or []
    if not isinstance(entries, list):
        raise CommandError("entries must be a list", field="entries")
    for entry in entries:
        if not isinstance(entry, dict) or not entry.get("id_token"):
            raise CommandError("each entry needs an id_token", field="entries")
        if entry.get("status") in (None, "") and update == "Full":
            raise CommandError("a Full update needs a status for every entry", field="entries")
    return version, update, entries


def status_outcome(response: Any) -> Outcome:
    """The outcome of an answer that carries a `status` (most of them, in both versions)."""
    if isinstance(response, dict) and response.get("status") is not None:
        status = str(response["status"])
        if status in POSITIVE_STATUSES:
            return Outcome(Command.Status.ACCEPTED, status)
        return Outcome(Command.Status.REJECTED, status)
    return Outcome(Command.Status.ACCEPTED, "")

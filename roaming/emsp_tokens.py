"""The Tokens module's objects (we are the receiver): checked field by field, one reader and
one serializer per OCPI version. A body that is not a token (a missing or unknown field, a
wrong type, a too long value, a bad date) is OCPI 2001 and changes nothing."""

from __future__ import annotations

from typing import Any

from roaming.models import EmspToken
from roaming.ocpi import status
from roaming.ocpi.status import OcpiError, ocpi_datetime, parse_ocpi_datetime

# field: (type, max length or None, required) per version.
FIELDS_221: dict[str, tuple[type, int | None, bool]] = {
    "country_code": (str, 2, True),
    "party_id": (str, 3, True),
    "uid": (str, 36, True),
    "type": (str, None, True),
    "contract_id": (str, 36, True),
    "visual_number": (str, 64, False),
    "issuer": (str, 64, True),
    "group_id": (str, 36, False),
    "valid": (bool, None, True),
    "whitelist": (str, None, True),
    "language": (str, 2, False),
    "default_profile_type": (str, None, False),
    "energy_contract": (dict, None, False),
    "last_updated": (str, None, True),
}
FIELDS_211: dict[str, tuple[type, int | None, bool]] = {
    "uid": (str, 36, True),
    "type": (str, None, True),
    "auth_id": (str, 36, True),
    "visual_number": (str, 64, False),
    "issuer": (str, 64, True),
    "valid": (bool, None, True),
    "whitelist": (str, None, True),
    "language": (str, 2, False),
    "last_updated": (str, None, True),
}
TYPES = {"2.2.1": set(EmspToken.Type.values), "2.1.1": {"RFID", "OTHER"}}
PROFILE_TYPES = {"CHEAP", "FAST", "GREEN", "REGULAR"}


def _fields(version: str) -> dict[str, tuple[type, int | None, bool]]:
    return FIELDS_211 if version == "2.1.1" else FIELDS_221


def token_check(body: dict[str, Any], *, version: str, partial: bool = False) -> dict[str, Any]:
    """The body's fields, checked; `partial` (PATCH) needs only `last_updated`."""
    fields = _fields(version)
    unknown = set(body) - set(fields)
    if unknown:
        raise OcpiError(status.INVALID_PARAMETERS, f"unknown fields: {', '.join(sorted(unknown))}")
    for name, (kind, length, required) in fields.items():
        if name not in body or body[name] is None:
            if (required and not partial) or name == "last_updated":
                raise OcpiError(status.INVALID_PARAMETERS, f"{name} is required")
            continue
        value = body[name]
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            raise OcpiError(status.INVALID_PARAMETERS, f"{name} must be a {kind.__name__}")
        if length is not None and isinstance(value, str) and len(value) > length:
            raise OcpiError(status.INVALID_PARAMETERS, f"{name}: at most {length} characters")
    if "type" in body and body["type"] not in TYPES[version]:
        raise OcpiError(status.INVALID_PARAMETERS, f"type: one of {sorted(TYPES[version])}")
    if "whitelist" in body and body["whitelist"] not in EmspToken.Whitelist.values:
        raise OcpiError(
            status.INVALID_PARAMETERS, f"whitelist: one of {EmspToken.Whitelist.values}"
        )
    profile = body.get("default_profile_type")
    if profile is not None and profile not in PROFILE_TYPES:
        raise OcpiError(
            status.INVALID_PARAMETERS, f"default_profile_type: one of {sorted(PROFILE_TYPES)}"
        )
    try:
        parse_ocpi_datetime(body["last_updated"])
    except ValueError as exc:
        raise OcpiError(
            status.INVALID_PARAMETERS, f"last_updated: not an OCPI DateTime ({exc})"
        ) from exc
    return dict(body)


def token_columns(data: dict[str, Any], *, version: str) -> dict[str, Any]:
    """The model's columns from a complete, checked token object."""
    return {
        "contract_id": data["auth_id"] if version == "2.1.1" else data["contract_id"],
        "visual_number": data.get("visual_number") or "",
        "issuer": data["issuer"],
        "group_id": data.get("group_id") or "",
        "valid": data["valid"],
        "whitelist": data["whitelist"],
        "language": data.get("language") or "",
        "last_updated": parse_ocpi_datetime(data["last_updated"]),
    }


def token_v221(token: EmspToken) -> dict[str, Any]:
    data: dict[str, Any] = {
        "country_code": token.country_code,
        "party_id": token.party_id,
        "uid": token.uid,
        "type": token.type,
        "contract_id": token.contract_id,
        "issuer": token.issuer,
        "valid": token.valid,
        "whitelist": token.whitelist,
        "last_updated": ocpi_datetime(token.last_updated),
    }
    for name in ("visual_number", "group_id", "language"):
        if getattr(token, name):
            data[name] = getattr(token, name)
    for name in ("default_profile_type", "energy_contract"):
        if token.data.get(name) is not None:
            data[name] = token.data[name]
    return data


def token_v211(token: EmspToken) -> dict[str, Any]:
    data: dict[str, Any] = {
        "uid": token.uid,
        "type": token.type if token.type in TYPES["2.1.1"] else "OTHER",
        "auth_id": token.contract_id,
        "issuer": token.issuer,
        "valid": token.valid,
        "whitelist": token.whitelist,
        "last_updated": ocpi_datetime(token.last_updated),
    }
    for name in ("visual_number", "language"):
        if getattr(token, name):
            data[name] = getattr(token, name)
    return data


TOKEN_SERIALIZERS = {"2.2.1": token_v221, "2.1.1": token_v211}

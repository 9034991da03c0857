"""OCPI status codes (the envelope's `status_code`) and dates as OCPI writes them."""

from __future__ import annotations

import datetime as dt

SUCCESS = 1000
CLIENT_ERROR = 2000
INVALID_PARAMETERS = 2001
NOT_ENOUGH_INFORMATION = 2002
UNKNOWN_LOCATION = 2003
UNKNOWN_TOKEN = 2004
SERVER_ERROR = 3000
UNABLE_TO_USE_CLIENT_API = 3001
UNSUPPORTED_VERSION = 3002
NO_MUTUAL_ENDPOINTS = 3003


class OcpiError(Exception):
    """An answer other than success: its OCPI status code and, where the spec names one, the
    HTTP status (401, 404, 405); everything else that reached the OCPI layer is HTTP 200."""

    def __init__(self, status_code: int, message: str, *, http_status: int = 200) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.message = message
        self.http_status = http_status


def ocpi_datetime(value: dt.datetime) -> str:
    """RFC 3339 in UTC with `Z` (OCPI refuses other offsets)."""
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_ocpi_datetime(text: str) -> dt.datetime:
    """An OCPI DateTime as an aware UTC datetime; ValueError for anything else (a non-UTC
    offset included: OCPI says it is not the same)."""
    value = dt.datetime.fromisoformat(text.strip())
    if value.tzinfo is None:
        return value.replace(tzinfo=dt.UTC)
    if value.utcoffset() != dt.timedelta(0):
        raise ValueError(f"{text!r} is not UTC")
    return value.astimezone(dt.UTC)

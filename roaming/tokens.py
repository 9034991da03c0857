"""Credentials tokens: made, hashed, and read from the Authorization header.

OCPI 2.2.1 sends `Authorization: Token <base64(token)>`; 2.1.1 (and many 2.2 platforms) send
the token raw. An inbound header is tried both ways: its base64 decoding when that is a
printable token, then the raw value; the hash decides which one is ours.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import secrets

# OCPI: at most 64 characters of printable ASCII without spaces.
TOKEN_PATTERN = re.compile(r"^[\x21-\x7e]{1,64}$")


def token_new() -> str:
    # 43 characters of [A-Za-z0-9_-]: 256 random bits, inside OCPI's 64.
    return secrets.token_urlsafe(32)


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def token_encode(token: str, *, b64: bool) -> str:
    """The header value for calling a partner (no trailing newline: the spec's example has one)."""
    return base64.b64encode(token.encode()).decode("ascii") if b64 else token


def header_candidates(header: str) -> list[tuple[str, bool]]:
    """The tokens an Authorization header may carry, as (token, was_base64), best first."""
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "token" or not value:
        return []
    candidates: list[tuple[str, bool]] = []
    try:
        decoded = base64.b64decode(value, validate=True).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        decoded = ""
    if decoded and TOKEN_PATTERN.match(decoded):
        candidates.append((decoded, True))
    if TOKEN_PATTERN.match(value):
        candidates.append((value, False))
    return candidates

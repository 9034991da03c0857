"""Outside certificate services a station asks us about: OCSP responders and the ISO 15118
certificate provisioning service.

- **OCSP** (2.0.1 GetCertificateStatus, M04): a real RFC 6960 request, built with
  `cryptography.x509.ocsp` from the hash data the station sent, POSTed over HTTP to the
  responder URL the station named; the DER response goes back base64 as `ocspResult`. Answers
  are cached (Django's cache, OCSP_CACHE_SECONDS, never past the response's nextUpdate), so a
  fleet asking about one certificate asks the responder once. OCSP_ALLOWED_HOSTS limits which
  responders may be asked (empty: any).
- **ISO 15118 contract certificates** (Get15118EVCertificate, M06): forwarded as JSON to
  ISO15118_CERTIFICATE_SERVICE_URL (`{"identity", "iso15118SchemaVersion", "action",
  "exiRequest"}`, answered `{"status": "Accepted"|"Failed", "exiResponse": ...}`); unset, the
  answer is Failed.

Blocking HTTP, short timeouts: the OCPP edge calls these in a worker thread, only for the
messages that need them.
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp
from django.conf import settings
from django.core.cache import cache

logger = logging.getLogger(__name__)

TIMEOUT_SECONDS = 5.0
MAX_RESPONSE_BYTES = 64 * 1024
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA256": hashes.SHA256,
    "SHA384": hashes.SHA384,
    "SHA512": hashes.SHA512,
}


@dataclass(frozen=True)
class Answer:
    status: str  # "Accepted" or "Failed"
    payload: str = ""  # ocspResult / exiResponse, base64
    reason: str = ""


def _post(url: str, body: bytes, content_type: str, accept: str) -> bytes:
    # Only http(s) URLs reach urlopen: checked by the callers.
    request = urllib.request.Request(  # noqa: S310
        url, data=body, method="POST", headers={"Content-Type": content_type, "Accept": accept}
    )
    with urllib.request.urlopen(request, timeout=TIMEOUT_SECONDS) as response:  # noqa: S310
        data: bytes = response.read(MAX_RESPONSE_BYTES + 1)
    if len(data) > MAX_RESPONSE_BYTES:
        raise ValueError("response too large")
    return data


def _allowed(url: str) -> str:
    """Why `url` may not be asked, or ""."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "the responder URL is not an http(s) URL"
    allowed = settings.OCSP_ALLOWED_HOSTS
    if allowed and parts.hostname not in allowed:
        return f"responder {parts.hostname} is not in OCSP_ALLOWED_HOSTS"
    return ""


def ocsp_status(request_data: dict[str, Any]) -> Answer:
    """The OCSP answer for one 2.0.1 OCSPRequestDataType (hash data and responderURL)."""
    url = str(request_data.get("responderURL", ""))
    refused = _allowed(url)
    algorithm = _HASHES.get(str(request_data.get("hashAlgorithm", "")))
    if refused or algorithm is None:
        return Answer("Failed", reason=refused or "unsupported hash algorithm")
    try:
        name_hash = bytes.fromhex(str(request_data["issuerNameHash"]))
        key_hash = bytes.fromhex(str(request_data["issuerKeyHash"]))
        serial = int(str(request_data["serialNumber"]), 16)
    except (KeyError, ValueError):
        return Answer("Failed", reason="malformed certificate hash data")
    key = (
        "ocsp:"
        + hashlib.sha256(
            f"{url}|{name_hash.hex()}|{key_hash.hex()}|{serial:x}".encode()
        ).hexdigest()
    )
    try:
        cached = cache.get(key)
    except Exception:  # Redis away: ask the responder
        cached = None
    if cached:
        return Answer("Accepted", cached)
    der_request = (
        ocsp.OCSPRequestBuilder()
        .add_certificate_by_hash(name_hash, key_hash, serial, algorithm())
        .build()
        .public_bytes(serialization.Encoding.DER)
    )
    try:
        der = _post(url, der_request, "application/ocsp-request", "application/ocsp-response")
        response = ocsp.load_der_ocsp_response(der)
    except (OSError, ValueError, urllib.error.URLError) as error:
        logger.warning("OCSP responder %s: %s", url, error)
        return Answer("Failed", reason="the OCSP responder could not be asked")
    if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return Answer("Failed", reason=f"OCSP responder: {response.response_status.name}")
    encoded = base64.b64encode(der).decode()
    if len(encoded) > 5500:
        return Answer("Failed", reason="OCSP response too large for OCPP")
    timeout = settings.OCSP_CACHE_SECONDS
    next_update = response.next_update_utc
    if next_update is not None:
        timeout = min(timeout, int((next_update - datetime.now(UTC)).total_seconds()))
    if timeout > 0:
        try:
            cache.set(key, encoded, timeout=timeout)
        except Exception:
            logger.warning("OCSP cache unavailable (Redis): not cached")
    return Answer("Accepted", encoded)


def ev_certificate(*, identity: str, request: dict[str, Any]) -> Answer:
    """Forward a Get15118EVCertificate to the certificate provisioning service."""
    url = settings.ISO15118_CERTIFICATE_SERVICE_URL
    if not url:
        return Answer("Failed", reason="no ISO 15118 certificate service configured")
    body = json.dumps(
        {
            "identity": identity,
            "iso15118SchemaVersion": request.get("iso15118SchemaVersion", ""),
            "action": request.get("action", ""),
            "exiRequest": request.get("exiRequest", ""),
        }
    ).encode()
    try:
        answer = json.loads(_post(url, body, "application/json", "application/json"))
    except (OSError, ValueError, urllib.error.URLError) as error:
        logger.warning("ISO 15118 certificate service %s: %s", url, error)
        return Answer("Failed", reason="the certificate service could not be asked")
    if not isinstance(answer, dict) or answer.get("status") not in ("Accepted", "Failed"):
        return Answer("Failed", reason="the certificate service answered something else")
    exi = str(answer.get("exiResponse", ""))
    if len(exi) > 7500:
        return Answer("Failed", reason="exiResponse too large for OCPP")
    return Answer(str(answer["status"]), exi, str(answer.get("reason", ""))[:500])

"""Our calls to a partner's OCPI platform during registration (versions, details, credentials).

Pushes of modules go through the project's outbox, not through here. Each call carries a new
X-Request-ID and the X-Correlation-ID of the request that caused it (or a new one).
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass
from typing import Any

from django.conf import settings

from roaming.ocpi import status
from roaming.ocpi.transport import correlation_id
from roaming.tokens import token_encode

# Versions we speak, best first.
OUR_VERSIONS = ("2.2.1", "2.1.1")


class PartnerCallFailed(Exception):
    """The partner's API could not be used; `status_code` is the OCPI code to answer with."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int = status.UNABLE_TO_USE_CLIENT_API,
        http_status: int | None = None,
        answered: bool = False,
    ):
        super().__init__(message)
        self.status_code = status_code
        self.http_status = http_status
        # The platform answered (an HTTP error or an OCPI error), as opposed to no answer.
        self.answered = answered or http_status is not None
        # The OCPI status code of the answer, when it had one.
        self.ocpi_status: int | None = None


@dataclass(frozen=True)
class Negotiated:
    version: str
    endpoints: list[dict[str, Any]]
    encode_token_b64: bool


def ocpi_call(
    method: str,
    url: str,
    *,
    token: str,
    b64: bool,
    body: dict[str, Any] | None = None,
    timeout: float | None = None,
    extra_headers: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One call; the envelope of a 2xx answer with status 1xxx, else PartnerCallFailed."""
    if not url.startswith(("http://", "https://")):
        raise PartnerCallFailed(f"not an http(s) URL: {url!r}")
    headers = {
        **(extra_headers or {}),
        "Authorization": f"Token {token_encode(token, b64=b64)}",
        "Accept": "application/json",
        "X-Request-ID": str(uuid.uuid4()),
        "X-Correlation-ID": correlation_id.get() or str(uuid.uuid4()),
    }
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)  # noqa: S310
    try:
        seconds = settings.ROAMING_HTTP_TIMEOUT if timeout is None else timeout
        with urllib.request.urlopen(request, timeout=seconds) as response:  # noqa: S310
            raw = response.read()
    except urllib.error.HTTPError as error:
        failed = PartnerCallFailed(f"{method} {url}: HTTP {error.code}", http_status=error.code)
        try:  # an OCPI error inside an HTTP error (404 with 2004: unknown token)
            answer = json.loads(error.read())
            failed.ocpi_status = int(answer.get("status_code"))
        except (ValueError, TypeError, AttributeError, OSError):
            pass
        raise failed from error
    except (urllib.error.URLError, OSError, TimeoutError) as error:
        raise PartnerCallFailed(f"{method} {url}: {error}") from error
    try:
        answer = json.loads(raw)
    except ValueError as error:
        raise PartnerCallFailed(f"{method} {url}: the answer is not JSON") from error
    if not isinstance(answer, dict) or not isinstance(answer.get("status_code"), int):
        raise PartnerCallFailed(f"{method} {url}: the answer is not an OCPI envelope")
    if not 1000 <= answer["status_code"] < 2000:
        message = answer.get("status_message", "")
        failed = PartnerCallFailed(
            f"{method} {url}: OCPI {answer['status_code']} {message}".strip(), answered=True
        )
        failed.ocpi_status = answer["status_code"]
        raise failed
    return answer


def _get_either_encoding(url: str, *, token: str, b64_first: bool) -> tuple[dict[str, Any], bool]:
    """GET with the token encoded one way, and the other way when the platform refuses it:
    OCPI leaves the encoding to trial and error, and platforms refuse a token they cannot
    decode differently (HTTP 401, or an OCPI error such as 3000)."""
    try:
        return ocpi_call("GET", url, token=token, b64=b64_first), b64_first
    except PartnerCallFailed as error:
        if not error.answered:
            raise
    return ocpi_call("GET", url, token=token, b64=not b64_first), not b64_first


def negotiate(
    versions_url: str, *, token: str, b64_first: bool = True, wanted: str | None = None
) -> Negotiated:
    """Their versions and the details of the best version we share (or of `wanted`)."""
    answer, b64 = _get_either_encoding(versions_url, token=token, b64_first=b64_first)
    versions = answer.get("data")
    if not isinstance(versions, list):
        raise PartnerCallFailed(f"GET {versions_url}: data is not a list of versions")
    offered = {
        str(item.get("version")): str(item.get("url"))
        for item in versions
        if isinstance(item, dict) and item.get("url")
    }
    choices = [wanted] if wanted else list(OUR_VERSIONS)
    version = next((v for v in choices if v in offered), None)
    if version is None:
        raise PartnerCallFailed(
            f"no mutual version: they offer {sorted(offered)}, we need {choices}",
            status_code=status.UNSUPPORTED_VERSION,
        )
    details = ocpi_call("GET", offered[version], token=token, b64=b64).get("data")
    endpoints = details.get("endpoints") if isinstance(details, dict) else None
    if not isinstance(endpoints, list):
        raise PartnerCallFailed(f"GET {offered[version]}: no endpoints")
    endpoints = [
        e for e in endpoints if isinstance(e, dict) and e.get("identifier") and e.get("url")
    ]
    if not any(e["identifier"] == "credentials" for e in endpoints):
        raise PartnerCallFailed(
            f"{offered[version]} has no credentials endpoint",
            status_code=status.NO_MUTUAL_ENDPOINTS,
        )
    # 2.1.1 sends tokens raw; a 2.2.1 platform gets what it accepted on its versions.
    return Negotiated(
        version=version, endpoints=endpoints, encode_token_b64=b64 and version != "2.1.1"
    )

"""The outbox's "ocpi" transport: every call we push to a partner's OCPI platform (locations,
tariffs, sessions, CDRs, command results) is an outbox message delivered through here.

To send something to a partner, in the transaction of the change:

    outbox_enqueue(
        destination_kind="ocpi",                  # KIND
        destination_ref=str(partner.pk),
        url=<the partner's endpoint URL + path>,
        method="PUT" | "PATCH" | "POST",
        body=<the OCPI object as a dict>,
        headers={"X-Correlation-ID": ...},        # optional; routing headers optional too
        ordering_key=<one object: "locations:12">, # the partner receives its messages in order
        idempotency_key=<names the fact>,         # optional
    )

At send time the transport adds what must not be stored in the row or is new per attempt:
`Authorization: Token <their token>` (base64 or raw, as the partner negotiated), a new
X-Request-ID, the message's X-Correlation-ID (a new one when it has none), and for a hub the
routing headers (OCPI-from: our party given in the message, else the first one the partner
may see; OCPI-to: the message's, else the partner's first party). Peer-to-peer partners get
no routing headers.

Outcomes: HTTP 2xx with an OCPI status 1xxx (or no envelope at all) is delivered; OCPI 2xxx
(the partner refuses the object: invalid, unknown location) is a dead letter at once, no
retry helps; OCPI 3xxx, HTTP 5xx, 401, 408, 429, no answer, a timeout are retried with the
outbox's back-off; other HTTP 4xx are dead letters. A partner no longer registered, or
without a token, dead-letters its messages. A partner that a hub reports OFFLINE or SUSPENDED
(`client_status`, when the model has it) is retried later: nothing is sent, nothing is lost.

The answer's `Location` header (a CDR POST gets it) is handed to the message's delivery
hook (`delivered_hook_register`), keyed by the message's topic prefix.
"""

from __future__ import annotations

import http.client
import json
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from django.conf import settings

from cpo.lib.sealing import unseal
from cpo.outbox.transports import (
    EXCERPT_CHARS,
    HttpAnswer,
    TransportError,
    destination_namer_register,
    transport_register,
)
from roaming.models import Partner
from roaming.tokens import token_encode

if TYPE_CHECKING:
    from cpo.outbox.models import OutboxMessage

KIND = "ocpi"
ROUTING = (
    "OCPI-from-country-code",
    "OCPI-from-party-id",
    "OCPI-to-country-code",
    "OCPI-to-party-id",
)
# HTTP answers worth a retry (the rest of 4xx will not get better by themselves).
RETRY_HTTP = {401, 408, 425, 429}
# What a hub's client info says of a party that must not be called now.
UNREACHABLE = {"OFFLINE", "SUSPENDED"}


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)

# topic prefix ("cdrs") -> hook(message, answer headers), called after a delivered answer.
DeliveredHook = Callable[["OutboxMessage", dict[str, str]], None]
_HOOKS: dict[str, DeliveredHook] = {}


def delivered_hook_register(prefix: str, hook: DeliveredHook) -> None:
    _HOOKS[prefix] = hook


def partner_accepts_pushes(partner: Partner) -> bool:
    """Registered, with a token of theirs, and not reported offline or suspended by a hub."""
    if partner.status != Partner.Status.REGISTERED or not partner.their_token_sealed:
        return False
    return str(getattr(partner, "client_status", "") or "").upper() not in UNREACHABLE


def _routing(partner: Partner, stored: dict[str, str]) -> dict[str, str]:
    headers = {name: stored[name] for name in ROUTING if stored.get(name)}
    if not partner.is_hub:
        return {}
    if not headers.get("OCPI-from-party-id"):
        ours = partner.allowed_parties.order_by("-is_default", "country_code", "party_id").first()
        if ours is not None:
            headers["OCPI-from-country-code"] = ours.country_code
            headers["OCPI-from-party-id"] = ours.party_id
    if not headers.get("OCPI-to-party-id") and partner.roles:
        role = partner.roles[0]
        headers["OCPI-to-country-code"] = str(role.get("country_code", "")).upper()
        headers["OCPI-to-party-id"] = str(role.get("party_id", "")).upper()
    return headers


def _envelope_status(text: str) -> int | None:
    try:
        answer = json.loads(text)
    except ValueError:
        return None
    if isinstance(answer, dict) and isinstance(answer.get("status_code"), int):
        return int(answer["status_code"])
    return None


def _http(
    *, method: str, url: str, headers: dict[str, str], body: bytes
) -> tuple[int, str, dict[str, str]]:
    if not url.startswith(("http://", "https://")):
        raise TransportError(f"not an http(s) URL: {url[:100]}", permanent=True)
    request = urllib.request.Request(  # noqa: S310 - the scheme is checked above
        url, data=body or None, method=method, headers=headers
    )
    try:
        with _OPENER.open(request, timeout=settings.OUTBOX_HTTP_TIMEOUT_SECONDS) as response:  # noqa: S310
            text = response.read(EXCERPT_CHARS * 64).decode("utf-8", "replace")
            return response.status, text, dict(response.headers.items())
    except urllib.error.HTTPError as answer:
        try:
            text = answer.read(EXCERPT_CHARS * 4).decode("utf-8", "replace")
        except (OSError, http.client.HTTPException):
            text = ""
        return answer.code, text, dict(answer.headers.items())
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise TransportError(f"{type(error).__name__}: {reason}"[:500]) from error


def ocpi_headers(stored: dict[str, Any], partner: Partner) -> dict[str, str]:
    """The headers of one call to the partner: the stored ones (routing, correlation id) and
    its token, a new request id."""
    headers = {
        name: str(value)
        for name, value in stored.items()
        if name not in ROUTING and name.lower() not in ("authorization", "x-request-id")
    }
    headers.setdefault("Content-Type", "application/json")
    headers["Accept"] = "application/json"
    token = unseal(partner.their_token_sealed)
    headers["Authorization"] = f"Token {token_encode(token, b64=partner.encode_token_b64)}"
    headers["X-Request-ID"] = str(uuid.uuid4())
    if not headers.get("X-Correlation-ID"):
        headers["X-Correlation-ID"] = str(uuid.uuid4())
    headers.update(_routing(partner, stored))
    return headers


# Pre-send checks (collapse of superseded messages): a check returning a reason skips the
# send and counts the message as delivered, with the reason in its attempt log.
PreSend = Callable[["OutboxMessage"], str | None]
_PRE_SEND: list[PreSend] = []


def pre_send_register(check: PreSend) -> None:
    if check not in _PRE_SEND:
        _PRE_SEND.append(check)


def ocpi_transport(message: OutboxMessage) -> HttpAnswer:
    partner = Partner.objects.filter(pk=message.destination_ref).first()
    if partner is None:
        raise TransportError("no such partner", permanent=True)
    if partner.status != Partner.Status.REGISTERED or not partner.their_token_sealed:
        raise TransportError(f"the partner is {partner.get_status_display()}", permanent=True)
    if not partner_accepts_pushes(partner):
        raise TransportError("the hub reports the partner offline or suspended; later")
    for check in _PRE_SEND:
        reason = check(message)
        if reason:
            return HttpAnswer(204, f"not sent: {reason}")
    body = bytes(message.body)
    code, text, answer_headers = _http(
        method=message.method,
        url=message.url,
        headers=ocpi_headers(dict(message.headers or {}), partner),
        body=body,
    )
    ocpi_status = _envelope_status(text)
    excerpt = text[:EXCERPT_CHARS]
    if 200 <= code < 300:
        if ocpi_status is None or 1000 <= ocpi_status < 2000:
            hook = _HOOKS.get(message.topic.split(".", 1)[0])
            if hook is not None:
                hook(message, answer_headers)
            return HttpAnswer(code, excerpt)
        if 2000 <= ocpi_status < 3000:
            raise TransportError(f"OCPI {ocpi_status}: {excerpt[:400]}", permanent=True)
        raise TransportError(f"OCPI {ocpi_status}: {excerpt[:400]}")
    if code >= 500 or code in RETRY_HTTP:
        return HttpAnswer(code, excerpt)
    if ocpi_status is not None and ocpi_status >= 3000:
        return HttpAnswer(code, excerpt)
    raise TransportError(f"HTTP {code}: {excerpt[:400]}", permanent=True)


def ocpi_get(partner: Partner, url: str) -> tuple[int, dict[str, Any] | None]:
    """A GET of the partner's API (reconciliation): the HTTP status and the envelope, if the
    answer was one; TransportError when there was no answer."""
    code, text, _headers = _http(method="GET", url=url, headers=ocpi_headers({}, partner), body=b"")
    try:
        answer = json.loads(text)
    except ValueError:
        return code, None
    return code, answer if isinstance(answer, dict) else None


def partner_names(refs: list[str] | None) -> dict[str, str]:
    """The panel's names of "ocpi" destinations: the partners'."""
    partners = Partner.objects.all()
    if refs is not None:
        partners = partners.filter(pk__in=[int(ref) for ref in refs if ref.isdigit()])
    return {str(pk): name for pk, name in partners.values_list("pk", "name")}


def register() -> None:
    transport_register(KIND, ocpi_transport)
    destination_namer_register(KIND, partner_names)

"""OCPI's transport rules for every endpoint we serve.

`ocpi_endpoint` wraps a view: the method check (405), the token (401), the routing headers
of functional modules, the request ids echoed, and the envelope on every answer, errors
included. Views return the envelope's `data` (or an `OcpiResult` for headers and HTTP 201)
and raise `OcpiError` for anything else.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import wraps
from typing import Any

from django.http import HttpRequest, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.csrf import csrf_exempt

from roaming import selectors
from roaming.models import IssuedToken, OurParty, Partner
from roaming.ocpi import status
from roaming.ocpi.status import OcpiError, ocpi_datetime
from roaming.tokens import header_candidates

logger = logging.getLogger(__name__)

# The X-Correlation-ID of the request being served, carried onto the calls it makes.
correlation_id: ContextVar[str] = ContextVar("ocpi_correlation_id", default="")

ROUTING_HEADERS = (
    "OCPI-from-country-code",
    "OCPI-from-party-id",
    "OCPI-to-country-code",
    "OCPI-to-party-id",
)


@dataclass
class OcpiContext:
    """Who is calling: the token, its partner, and which of our parties it may see."""

    token: IssuedToken
    partner: Partner
    token_was_b64: bool
    parties: list[OurParty] = field(default_factory=list)
    routing: dict[str, str] = field(default_factory=dict)


@dataclass
class OcpiResult:
    data: Any = None
    http_status: int = 200
    headers: dict[str, str] = field(default_factory=dict)


def envelope(
    data: Any = None,
    *,
    status_code: int = status.SUCCESS,
    message: str = "Success",
    http_status: int = 200,
) -> JsonResponse:
    body: dict[str, Any] = {
        "status_code": status_code,
        "status_message": message,
        "timestamp": ocpi_datetime(timezone.now()),
    }
    if data is not None:
        body["data"] = data
    return JsonResponse(body, status=http_status)


def error_response(error: OcpiError) -> JsonResponse:
    return envelope(
        status_code=error.status_code, message=error.message, http_status=error.http_status
    )


def json_body(request: HttpRequest) -> dict[str, Any]:
    """The request's JSON object; malformed JSON is HTTP 400 (the spec's one use of it), any
    other shape 2001."""
    try:
        body = json.loads(request.body or b"null")
    except (ValueError, UnicodeDecodeError) as exc:
        raise OcpiError(
            status.INVALID_PARAMETERS, f"body is not valid JSON: {exc}", http_status=400
        ) from exc
    if not isinstance(body, dict):
        raise OcpiError(status.INVALID_PARAMETERS, "the body must be a JSON object")
    return body


def _authenticate(request: HttpRequest, module: str) -> OcpiContext:
    header = request.headers.get("Authorization", "")
    candidates = header_candidates(header)
    if not candidates:
        raise OcpiError(
            status.CLIENT_ERROR, "Authorization: Token <token> is required", http_status=401
        )
    found = selectors.issued_token_find(tokens=[token for token, _b64 in candidates])
    if found is None:
        raise OcpiError(status.CLIENT_ERROR, "unknown token", http_status=401)
    issued, token = found
    was_b64 = next(b64 for candidate, b64 in candidates if candidate == token)
    now = timezone.now()
    replay = module == "credentials" and request.method == "POST" and issued.consumed_at is not None
    if issued.expires_at is not None and now >= issued.expires_at:
        raise OcpiError(
            status.CLIENT_ERROR, "the token has expired or was revoked", http_status=401
        )
    if issued.consumed_at is not None and not replay:
        raise OcpiError(status.CLIENT_ERROR, "the registration token was used", http_status=401)
    if issued.kind == IssuedToken.Kind.REGISTRATION and module not in ("versions", "credentials"):
        raise OcpiError(
            status.CLIENT_ERROR,
            "a registration token opens only versions and credentials",
            http_status=401,
        )
    partner = issued.partner
    if module not in ("versions", "credentials") and partner.status != Partner.Status.REGISTERED:
        raise OcpiError(status.CLIENT_ERROR, "the partner is not registered", http_status=401)
    return OcpiContext(token=issued, partner=partner, token_was_b64=was_b64)


def _route(request: HttpRequest, context: OcpiContext) -> None:
    """Functional modules: the routing headers (required from hubs) and our visible parties."""
    headers = {name: request.headers.get(name, "").strip().upper() for name in ROUTING_HEADERS}
    from_party = (headers["OCPI-from-country-code"], headers["OCPI-from-party-id"])
    to_party = (headers["OCPI-to-country-code"], headers["OCPI-to-party-id"])
    if context.partner.is_hub and not all(from_party):
        raise OcpiError(
            status.INVALID_PARAMETERS,
            "OCPI-from-country-code and OCPI-from-party-id are required from a hub",
        )
    if (
        all(from_party)
        and not context.partner.is_hub
        and from_party not in context.partner.party_keys()
    ):
        raise OcpiError(status.INVALID_PARAMETERS, "OCPI-from-* is not a party of this partner")
    allowed = selectors.partner_parties(partner=context.partner)
    if any(to_party):
        if not all(to_party):
            raise OcpiError(
                status.INVALID_PARAMETERS, "OCPI-to-country-code and OCPI-to-party-id go together"
            )
        allowed = [p for p in allowed if (p.country_code, p.party_id) == to_party]
        if not allowed:
            raise OcpiError(
                status.INVALID_PARAMETERS, "OCPI-to-* is not a party this partner may reach"
            )
    context.parties = allowed
    context.routing = {name: value for name, value in headers.items() if value}


def _response_headers(
    request: HttpRequest, response: HttpResponse, context: OcpiContext | None
) -> None:
    response["X-Request-ID"] = request.headers.get("X-Request-ID") or str(uuid.uuid4())
    response["X-Correlation-ID"] = request.headers.get("X-Correlation-ID") or str(uuid.uuid4())
    if context is None or not context.routing:
        return
    # The answer goes back the other way: from and to swap.
    swap = {"from": "to", "to": "from"}
    for name, value in context.routing.items():
        _, side, rest = name.split("-", 2)
        response[f"OCPI-{swap[side]}-{rest}"] = value


OcpiView = Callable[..., Any]


def ocpi_endpoint(
    *, module: str, methods: tuple[str, ...], public: bool = False
) -> Callable[[OcpiView], Callable[..., HttpResponse]]:
    """Serve `view(request, context, **kwargs)` under OCPI's rules; `public`: no token needed."""

    def decorate(view: OcpiView) -> Callable[..., HttpResponse]:
        @csrf_exempt
        @wraps(view)
        def wrapper(request: HttpRequest, **kwargs: Any) -> HttpResponse:
            context: OcpiContext | None = None
            marker = correlation_id.set(request.headers.get("X-Correlation-ID", ""))
            try:
                if request.method not in methods:
                    raise OcpiError(
                        status.CLIENT_ERROR,
                        f"{request.method} is not allowed here",
                        http_status=405,
                    )
                if not public:
                    context = _authenticate(request, module)
                    if module not in ("versions", "credentials"):
                        _route(request, context)
                    selectors.partner_contact_note(partner=context.partner)
                result = view(request, context, **kwargs)
                if not isinstance(result, OcpiResult):
                    result = OcpiResult(data=result)
                response: HttpResponse = envelope(result.data, http_status=result.http_status)
                for name, value in result.headers.items():
                    response[name] = value
            except OcpiError as error:
                response = error_response(error)
            except Exception:
                logger.exception("OCPI %s %s failed", request.method, request.path)
                response = envelope(
                    status_code=status.SERVER_ERROR, message="internal error", http_status=500
                )
            finally:
                correlation_id.reset(marker)
            _response_headers(request, response, context)
            return response

        return wrapper

    return decorate


def not_found(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
    """Any other path under /ocpi/: HTTP 404 in the envelope."""
    response = envelope(
        status_code=status.CLIENT_ERROR,
        message=f"no OCPI endpoint at {request.path}",
        http_status=404,
    )
    _response_headers(request, response, None)
    return response

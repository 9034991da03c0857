"""The port through which the outbox sends: one transport per destination kind.

A user of the outbox registers, in its AppConfig.ready(), the transport of its kind: webhooks
sign the body with the endpoint's secret (`cpo.outbox.webhooks`); roaming will add its OCPI
token. The outbox imports none of them. A transport gets the stored message and returns what
the destination answered, or raises `TransportError` (`permanent=True`: no retry helps, the
message becomes a dead letter at once).
"""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from django.conf import settings

if TYPE_CHECKING:
    from cpo.outbox.models import OutboxMessage

# What the attempt log keeps of an answer.
EXCERPT_CHARS = 1000


@dataclass(frozen=True)
class HttpAnswer:
    status_code: int
    body: str

    @property
    def ok(self) -> bool:
        return 200 <= self.status_code < 300


class TransportError(Exception):
    """The message could not be handed over (no connection, timeout, refused by a rule)."""

    def __init__(self, message: str, *, permanent: bool = False):
        super().__init__(message)
        self.permanent = permanent


Transport = Callable[["OutboxMessage"], HttpAnswer]

_TRANSPORTS: dict[str, Transport] = {}


def transport_register(kind: str, transport: Transport) -> None:
    _TRANSPORTS[kind] = transport


def transport_for(kind: str) -> Transport:
    try:
        return _TRANSPORTS[kind]
    except KeyError:
        raise TransportError(
            f"no transport for destination kind {kind!r}", permanent=True
        ) from None


# Who a destination is, for the panel: kind -> namer(refs) -> {ref: name}; refs None: every
# destination of the kind (the list filter's choices). Registered by the kind's owner.
Namer = Callable[[list[str] | None], dict[str, str]]
_NAMERS: dict[str, Namer] = {}


def destination_namer_register(kind: str, namer: Namer) -> None:
    _NAMERS[kind] = namer


def destination_names(kind: str, refs: list[str] | None) -> dict[str, str]:
    namer = _NAMERS.get(kind)
    return namer(refs) if namer is not None else {}


def destination_kinds_named() -> list[str]:
    return sorted(_NAMERS)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    # A destination that moved says so in its answer; following it would send the body (and a
    # partner's token) to a host nobody configured.
    def redirect_request(self, *args: object, **kwargs: object) -> None:
        return None


_OPENER = urllib.request.build_opener(_NoRedirects)


def http_send(
    *, method: str, url: str, headers: Mapping[str, str], body: bytes, timeout: float | None = None
) -> HttpAnswer:
    """One HTTP request with a timeout on the connection and on each read; any answer comes
    back (a 4xx or 5xx too), only a failure to get one raises TransportError."""
    if not url.startswith(("http://", "https://")):
        raise TransportError(f"not an http(s) URL: {url[:100]}", permanent=True)
    # The scheme is checked just above: no file: or custom URL reaches the opener.
    request = urllib.request.Request(  # noqa: S310
        url, data=body or None, method=method, headers=dict(headers)
    )
    seconds = settings.OUTBOX_HTTP_TIMEOUT_SECONDS if timeout is None else timeout
    try:
        with _OPENER.open(request, timeout=seconds) as response:  # noqa: S310
            text = response.read(EXCERPT_CHARS * 4).decode("utf-8", "replace")
            return HttpAnswer(response.status, text[:EXCERPT_CHARS])
    except urllib.error.HTTPError as answer:
        try:
            text = answer.read(EXCERPT_CHARS * 4).decode("utf-8", "replace")
        except (OSError, http.client.HTTPException):
            text = ""
        return HttpAnswer(answer.code, text[:EXCERPT_CHARS])
    except (urllib.error.URLError, OSError, http.client.HTTPException) as error:
        reason = getattr(error, "reason", error)
        raise TransportError(f"{type(error).__name__}: {reason}"[:500]) from error


def http_transport(message: OutboxMessage) -> HttpAnswer:
    """The stored request as it is: the transport of kinds that need nothing added."""
    return http_send(
        method=message.method,
        url=message.url,
        headers=message.headers,
        body=bytes(message.body),
    )

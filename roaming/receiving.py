"""What partner commands (commands, chargingprofiles) share: the body's fields, the SSRF
guard on response URLs, the partner's session, and the result written with its outbox
message."""

from __future__ import annotations

import ipaddress
import socket
import uuid
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.utils import timezone

from cpo.outbox.services import outbox_enqueue
from roaming.models import Partner, RoamingCommand
from roaming.ocpi import status
from roaming.ocpi.status import OcpiError
from roaming.outbound import KIND
from sessions.models import ChargingSession


def fields_check(
    body: dict[str, Any], fields: dict[str, tuple[type, int | None, bool]]
) -> dict[str, Any]:
    """The body's fields by type and length; unknown or missing ones are 2001."""
    unknown = set(body) - set(fields)
    if unknown:
        raise OcpiError(status.INVALID_PARAMETERS, f"unknown fields: {', '.join(sorted(unknown))}")
    for name, (kind, length, required) in fields.items():
        value = body.get(name)
        if value is None:
            if required:
                raise OcpiError(status.INVALID_PARAMETERS, f"{name} is required")
            continue
        if not isinstance(value, kind) or (kind is not bool and isinstance(value, bool)):
            kinds = kind if isinstance(kind, tuple) else (kind,)
            what = " or ".join(k.__name__ for k in kinds)
            raise OcpiError(status.INVALID_PARAMETERS, f"{name} must be a {what}")
        if length is not None and isinstance(value, str) and len(value) > length:
            raise OcpiError(status.INVALID_PARAMETERS, f"{name}: at most {length} characters")
    return body


def url_guard(partner: Partner, url: str) -> None:
    """2001 unless `url` is http(s) on a public address: a partner's response_url must not
    make us call our own network (loopback, private, link-local, reserved), unless the
    partner is allowed to (`allow_private_urls`) or the guard is off for tests
    (ROAMING_ALLOW_PRIVATE_URLS)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise OcpiError(status.INVALID_PARAMETERS, "response_url: an http(s) URL is required")
    if partner.allow_private_urls or settings.ROAMING_ALLOW_PRIVATE_URLS:
        return
    try:
        infos = socket.getaddrinfo(parts.hostname, parts.port or 443, proto=socket.IPPROTO_TCP)
    except (socket.gaierror, UnicodeError) as exc:
        raise OcpiError(
            status.INVALID_PARAMETERS, f"response_url: {parts.hostname} does not resolve"
        ) from exc
    for info in infos:
        address = ipaddress.ip_address(str(info[4][0]).split("%")[0])
        if not address.is_global or address.is_multicast:
            raise OcpiError(
                status.INVALID_PARAMETERS,
                f"response_url: {parts.hostname} is a private or loopback address ({address})",
            )


def session_find(partner: Partner, session_id: str) -> ChargingSession | None:
    """Our session by its OCPI id (the session's uid; its number is accepted too), when it
    is one of this partner's drivers'."""
    sessions = ChargingSession.objects.select_related("station", "id_token")
    try:
        session = sessions.filter(uid=uuid.UUID(session_id)).first()
    except ValueError:
        session = sessions.filter(pk=int(session_id)).first() if session_id.isdigit() else None
    if session is None or session.id_token is None:
        return None
    key = (session.id_token.issuer_country_code, session.id_token.issuer_party_id)
    if not partner.is_hub and key not in partner.party_keys():
        return None
    return session


def result_store(roaming: RoamingCommand, *, result: str, body: dict[str, Any]) -> bool:
    """Write the result we owe and its outbox message, in the caller's transaction; False
    when the command had one already (the station answered after the TIMEOUT, say)."""
    claimed = RoamingCommand.objects.filter(pk=roaming.pk, result="").update(
        result=result[:24], result_body=body, result_at=timezone.now()
    )
    if not claimed:
        return False
    outbox_enqueue(
        destination_kind=KIND,
        destination_ref=str(roaming.partner_id),
        url=roaming.response_url,
        method="POST",
        body=body,
        topic=f"commands.{roaming.type.lower()}",
        ordering_key=f"commands:{roaming.pk}",
        idempotency_key=f"roaming-command-{roaming.pk}",
    )
    return True

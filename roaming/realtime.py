"""Real-time authorization: the charger asks about a token, roaming answers for the eMSPs.

Registered with sessions as its external authorizer (`sessions.authorizers`, in
RoamingConfig.ready()). Sessions ask it about a token they do not know, or about the local
twin of a partner's token; it answers None when the token is not a partner's.

A partner's token (one an eMSP pushed, `EmspToken`) is decided by its whitelist:
- ALWAYS: the cached token only (valid: accepted; not: blocked).
- ALLOWED: the cache when the token is valid, else the eMSP in real time.
- ALLOWED_OFFLINE: the eMSP in real time; the cache when it does not answer in time.
- NEVER: the eMSP in real time, always; no answer is a refusal.
A token the eMSP started a session for (START_SESSION, its result not older than the command
timeout) is accepted without asking again: the eMSP vouched for it, with its reference.

An unknown token is asked of every registered partner with a tokens sender endpoint that
accepts traffic (a hub too: it routes), all at once, under ROAMING_REALTIME_DEADLINE: the
first ALLOWED wins; the deadline is the longest an Authorize waits, whatever a slow partner
does. The calls run on a small thread pool and touch no database; this function runs on the
service call's thread, never on the consumer's event loop. With no such partner it costs one
query and no call.

An acceptance names the token's local twin (`sessions.services.id_token_roaming_upsert`), so
the local rules (an operator's block, concurrency, the group, budgets) still apply.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from django.conf import settings
from django.db.models import Q

from cpo.lib.sealing import unseal
from roaming.client import PartnerCallFailed, ocpi_call
from roaming.emsp_tokens import token_check, token_columns
from roaming.models import EmspToken, Partner, RealtimeAuthorization, RoamingCommand
from roaming.ocpi import status
from sessions.authorizers import ExternalAnswer
from sessions.models import IdToken
from sessions.services import AuthStatus, id_token_roaming_upsert
from stations.models import ChargingStation

logger = logging.getLogger(__name__)

# OCPI AllowedType -> the version-neutral status (the OCPP edge maps it per version: NoCredit
# is 2.0.1 NoCredit and 1.6 Blocked, NotAtThisLocation 2.0.1's own and 1.6 Invalid).
ALLOWED_STATUS = {
    "ALLOWED": AuthStatus.ACCEPTED,
    "BLOCKED": AuthStatus.BLOCKED,
    "EXPIRED": AuthStatus.EXPIRED,
    "NO_CREDIT": AuthStatus.NO_CREDIT,
    "NOT_ALLOWED": AuthStatus.NOT_AT_THIS_LOCATION,
}
TIMEOUT = "TIMEOUT"
FAILED = "FAILED"
# How long a real-time answer's authorization reference is carried onto a start.
REFERENCE_VALID = timedelta(minutes=15)

# The real-time calls; threads only wait on sockets (no database), 16 partners at once.
_POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="ocpi-realtime")


def ocpi_token_type(ocpp_type: str | None) -> str:
    """The OCPI token type of an OCPP idToken type (1.6 has none: a card)."""
    if ocpp_type in EmspToken.Type.values:
        return str(ocpp_type)
    if ocpp_type in (None, "", "ISO14443", "ISO15693", "Local", "KeyCode"):
        return EmspToken.Type.RFID
    if ocpp_type == "Central":
        return EmspToken.Type.APP_USER
    return EmspToken.Type.OTHER


@dataclass(frozen=True)
class Verdict:
    partner_id: int
    result: str  # an AllowedType, or TIMEOUT / FAILED
    reference: str = ""
    token: dict[str, Any] | None = None
    detail: str = ""
    duration_ms: int = 0


def _tokens_url(partner: Partner) -> str | None:
    return partner.endpoint_url("tokens", "SENDER")


def _location_references(station_id: int | None) -> tuple[Any, dict[str, Any] | None]:
    if station_id is None:
        return None, None
    station = (
        ChargingStation.objects.select_related("location")
        .prefetch_related("evses")
        .filter(pk=station_id)
        .first()
    )
    if station is None or station.location_id is None:
        return None, None
    evses = sorted(evse.uid for evse in station.evses.all() if evse.uid)
    return station.location, {"location_id": str(station.location_id), "evse_uids": evses}


def _routing(partner: Partner, to_party: tuple[str, str] | None) -> dict[str, str]:
    """A hub's routing headers: from our party it sees, to the token's party when known (read
    here, on the caller's thread: the pool's threads never touch the database)."""
    headers: dict[str, str] = {}
    if not partner.is_hub:
        return headers
    ours = partner.allowed_parties.order_by("-is_default", "pk").first()
    if ours is not None:
        headers["OCPI-from-country-code"] = ours.country_code
        headers["OCPI-from-party-id"] = ours.party_id
    if to_party is not None:
        headers["OCPI-to-country-code"], headers["OCPI-to-party-id"] = to_party
    return headers


def _ask(
    partner: Partner,
    *,
    uid: str,
    token_type: str,
    references: dict[str, Any] | None,
    headers: dict[str, str],
    seconds: float,
) -> Verdict:
    """POST {tokens}/{uid}/authorize?type= with LocationReferences: one partner's verdict.
    Runs on the pool: HTTP only, no database."""
    started = time.monotonic()
    base = (_tokens_url(partner) or "").rstrip("/")
    url = f"{base}/{quote(uid, safe='')}/authorize?type={token_type}"
    try:
        answer = ocpi_call(
            "POST",
            url,
            token=unseal(partner.their_token_sealed),
            b64=partner.encode_token_b64,
            body=references,
            timeout=seconds,
            extra_headers=headers,
        )
    except PartnerCallFailed as error:
        took = int((time.monotonic() - started) * 1000)
        if error.ocpi_status == status.UNKNOWN_TOKEN or error.http_status == 404:
            return Verdict(partner.pk, "UNKNOWN", detail=str(error)[:255], duration_ms=took)
        timed_out = "timed out" in str(error).lower()
        return Verdict(
            partner.pk, TIMEOUT if timed_out else FAILED, detail=str(error)[:255], duration_ms=took
        )
    took = int((time.monotonic() - started) * 1000)
    info = answer.get("data")
    if isinstance(info, list) and len(info) == 1:
        info = info[0]  # some platforms wrap the object in a list
    if not isinstance(info, dict) or info.get("allowed") not in ALLOWED_STATUS:
        return Verdict(partner.pk, FAILED, detail="not an AuthorizationInfo", duration_ms=took)
    reference = info.get("authorization_reference")
    token = info.get("token")
    return Verdict(
        partner.pk,
        str(info["allowed"]),
        reference=str(reference)[:36] if isinstance(reference, str) else "",
        token=token if isinstance(token, dict) else None,
        detail=str((info.get("info") or {}).get("text", ""))[:255]
        if isinstance(info.get("info"), dict)
        else "",
        duration_ms=took,
    )


def _ask_all(
    partners: list[Partner],
    *,
    uid: str,
    token_type: str,
    references: dict[str, Any] | None,
    to_party: tuple[str, str] | None = None,
) -> tuple[Verdict | None, list[Verdict]]:
    """Ask the partners at once; the first ALLOWED, or None, with every verdict we have
    by the deadline (a partner still silent then is TIMEOUT; its call is left to end alone)."""
    deadline = float(settings.ROAMING_REALTIME_DEADLINE)
    started = time.monotonic()
    futures: dict[Future[Verdict], Partner] = {
        _POOL.submit(
            _ask,
            partner,
            uid=uid,
            token_type=token_type,
            references=references,
            headers=_routing(partner, to_party),
            seconds=deadline,
        ): partner
        for partner in partners
    }
    verdicts: list[Verdict] = []
    pending = set(futures)
    while pending:
        remaining = deadline - (time.monotonic() - started)
        if remaining <= 0:
            break
        done, pending = wait(pending, timeout=remaining, return_when=FIRST_COMPLETED)
        for future in done:
            verdict = future.result()
            verdicts.append(verdict)
            if verdict.result == "ALLOWED":
                for late in pending:
                    verdicts.append(_timeout(futures[late], started))
                return verdict, verdicts
    for late in pending:
        verdicts.append(_timeout(futures[late], started))
    return None, verdicts


def _timeout(partner: Partner, started: float) -> Verdict:
    took = int((time.monotonic() - started) * 1000)
    return Verdict(partner.pk, TIMEOUT, detail="no answer by the deadline", duration_ms=took)


def _record(verdicts: list[Verdict], *, uid: str, token_type: str, location: Any) -> None:
    RealtimeAuthorization.objects.bulk_create(
        RealtimeAuthorization(
            partner_id=verdict.partner_id,
            uid=uid[:36],
            token_type=token_type,
            location=location,
            result=verdict.result[:12],
            authorization_reference=verdict.reference,
            detail=verdict.detail[:255],
            duration_ms=verdict.duration_ms,
        )
        for verdict in verdicts
    )


def _twin(token: EmspToken) -> IdToken:
    return id_token_roaming_upsert(
        uid=token.uid,
        token_type=token.type,
        issuer_country_code=token.country_code,
        issuer_party_id=token.party_id,
        contract_id=token.contract_id,
        visual_number=token.visual_number,
        group_uid=token.group_id,
    )


def _find_cached(uid: str, token_type: str) -> EmspToken | None:
    tokens = list(
        EmspToken.objects.select_related("partner").filter(uid__iexact=uid).order_by("pk")[:8]
    )
    typed = [token for token in tokens if token.type == token_type]
    found = typed or tokens
    return found[0] if found else None


def _vouched(
    token: EmspToken, *, uid: str, station_id: int | None, now: datetime
) -> RoamingCommand | None:
    """A START_SESSION the eMSP sent for this token at this station, answered ACCEPTED (or
    still waiting for the station) within the command timeout."""
    if station_id is None:
        return None
    since = now - timedelta(seconds=settings.ROAMING_COMMAND_TIMEOUT + 60)
    return (
        RoamingCommand.objects.filter(
            partner_id=token.partner_id,
            type=RoamingCommand.Type.START_SESSION,
            station_id=station_id,
            emsp_token=token,
            created_at__gte=since,
        )
        .filter(Q(result="") | Q(result="ACCEPTED"))
        .order_by("-pk")
        .first()
    )


def _recent_reference(token: EmspToken, *, uid: str, now: datetime) -> str:
    """The reference of the eMSP's latest real-time ALLOWED for this token (an Authorize a
    minute ago that a start now decides from the cache), if it is recent."""
    row = (
        RealtimeAuthorization.objects.filter(
            partner_id=token.partner_id,
            uid__iexact=uid,
            result="ALLOWED",
            at__gte=now - REFERENCE_VALID,
        )
        .exclude(authorization_reference="")
        .order_by("-at", "-pk")
        .first()
    )
    return row.authorization_reference if row is not None else ""


def _store_answered_token(partner: Partner, data: dict[str, Any]) -> EmspToken | None:
    """The token object a 2.2.1 AuthorizationInfo carries, kept like a pushed one when it is
    one of the partner's and a whole token; else nothing is kept."""
    try:
        checked = token_check(data, version="2.2.1")
    except Exception:  # noqa: BLE001 - an eMSP's malformed token is only not cached
        return None
    key = (checked["country_code"].upper(), checked["party_id"].upper())
    if not partner.is_hub and key not in partner.party_keys():
        return None
    token, _ = EmspToken.objects.update_or_create(
        country_code=key[0],
        party_id=key[1],
        uid=checked["uid"],
        type=checked["type"],
        defaults={**token_columns(checked, version="2.2.1"), "partner": partner, "data": checked},
    )
    return token


def _realtime_known(
    token: EmspToken, *, uid: str, station_id: int | None
) -> tuple[Verdict | None, list[Verdict], Any]:
    partner = token.partner
    location, references = _location_references(station_id)
    if _tokens_url(partner) is None or not partner.accepts_traffic(
        (token.country_code, token.party_id)
    ):
        return None, [], location
    first, verdicts = _ask_all(
        [partner],
        uid=uid,
        token_type=token.type,
        references=references,
        to_party=(token.country_code, token.party_id),
    )
    return (first or (verdicts[0] if verdicts else None)), verdicts, location


def _known(token: EmspToken, *, uid: str, station_id: int | None, now: datetime) -> ExternalAnswer:
    who = f"eMSP {token.country_code}*{token.party_id}"
    vouched = _vouched(token, uid=uid, station_id=station_id, now=now)
    if vouched is not None:
        return ExternalAnswer(
            AuthStatus.ACCEPTED,
            f"{who}: started remotely (START_SESSION)",
            token=_twin(token),
            authorization_reference=vouched.authorization_reference,
        )
    cache = (
        ExternalAnswer(
            AuthStatus.ACCEPTED,
            f"{who}: {token.whitelist}, cached",
            token=_twin(token),
            authorization_reference=_recent_reference(token, uid=uid, now=now),
        )
        if token.valid
        else ExternalAnswer(AuthStatus.BLOCKED, f"{who}: not valid", token=_twin(token))
    )
    whitelist = token.whitelist
    if whitelist == EmspToken.Whitelist.ALWAYS or (
        whitelist == EmspToken.Whitelist.ALLOWED and token.valid
    ):
        return cache
    verdict, verdicts, location = _realtime_known(token, uid=uid, station_id=station_id)
    if verdicts:
        _record(verdicts, uid=uid, token_type=token.type, location=location)
    if verdict is None or verdict.result not in ALLOWED_STATUS:
        why = verdict.detail if verdict is not None else "the eMSP cannot be asked now"
        if whitelist == EmspToken.Whitelist.ALLOWED_OFFLINE:
            return ExternalAnswer(
                cache.status, f"{cache.reason} (real time: {why})"[:255], token=cache.token
            )
        return ExternalAnswer(
            AuthStatus.INVALID, f"{who}: no real-time answer ({why})"[:255], token=_twin(token)
        )
    return ExternalAnswer(
        ALLOWED_STATUS[verdict.result],
        f"{who}: {verdict.result} (real time)",
        token=_twin(token),
        authorization_reference=verdict.reference,
    )


def _tokens_senders() -> list[Partner]:
    partners = Partner.objects.filter(status=Partner.Status.REGISTERED).exclude(
        their_token_sealed=""
    )
    return [p for p in partners if _tokens_url(p) is not None and p.accepts_traffic()]


def _unknown(*, uid: str, token_type: str, station_id: int | None) -> ExternalAnswer | None:
    partners = _tokens_senders()
    if not partners:
        return None
    location, references = _location_references(station_id)
    first, verdicts = _ask_all(partners, uid=uid, token_type=token_type, references=references)
    _record(verdicts, uid=uid, token_type=token_type, location=location)
    if first is None:
        refusal = next((v for v in verdicts if v.result in ALLOWED_STATUS), None)
        if refusal is not None:
            return ExternalAnswer(
                ALLOWED_STATUS[refusal.result], f"eMSP real time: {refusal.result}"
            )
        return None  # nobody knows it: an unknown token, as without roaming
    partner = next(p for p in partners if p.pk == first.partner_id)
    stored = _store_answered_token(partner, first.token) if first.token else None
    return ExternalAnswer(
        AuthStatus.ACCEPTED,
        f"eMSP {partner.name}: ALLOWED (real time)",
        token=_twin(stored) if stored is not None else None,
        authorization_reference=first.reference,
    )


def authorize(
    *,
    uid: str,
    token_type: str | None,
    station_id: int | None,
    token: IdToken | None,
    context: str,
    now: datetime,
) -> ExternalAnswer | None:
    """The external authorizer sessions call (see the module's docstring)."""
    ocpi_type = ocpi_token_type(token_type if token is None else token.type)
    cached = _find_cached(uid, ocpi_type)
    if cached is None and station_id is not None:
        # A surrogate id tag we gave a 1.6 station for a long uid (START_SESSION, RESERVE_NOW).
        command = (
            RoamingCommand.objects.select_related("emsp_token__partner")
            .filter(station_id=station_id, id_tag=uid, emsp_token__isnull=False)
            .order_by("-pk")
            .first()
        )
        cached = command.emsp_token if command is not None else None
    if cached is not None:
        return _known(cached, uid=uid, station_id=station_id, now=now)
    if token is not None:
        return None  # one of ours with an issuer, unknown to roaming: the local rules decide
    return _unknown(uid=uid, token_type=ocpi_type, station_id=station_id)

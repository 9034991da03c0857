"""Writes of roaming: registration tokens, the credentials exchange both ways, unregistering.

The exchange calls the partner's platform (their versions and details, or their credentials
POST) outside any transaction, then commits what it learned in one: a partner never waits
on our locks, and a failed call leaves everything as it was (a token A stays usable for a
retry). Tokens are shown once: to the operator (token A) or in the credentials answer.
"""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cpo.lib.sealing import seal, unseal
from roaming.client import Negotiated, PartnerCallFailed, negotiate, ocpi_call
from roaming.emsp_tokens import token_check, token_columns
from roaming.models import (
    ClientInfo,
    ClientStatus,
    CredentialsEvent,
    EmspToken,
    IssuedToken,
    Partner,
)
from roaming.ocpi import status
from roaming.ocpi.status import OcpiError, parse_ocpi_datetime
from roaming.receiving import fields_check
from roaming.tokens import TOKEN_PATTERN, token_hash, token_new


class RegistrationError(Exception):
    """An operator's registration could not be done; the message says why."""


def versions_url() -> str:
    return f"{settings.ROAMING_OCPI_BASE_URL}/ocpi/versions"


def _issue(
    *, partner: Partner, kind: str, now: dt.datetime, expires_at: dt.datetime | None = None
) -> str:
    token = token_new()
    IssuedToken.objects.create(
        partner=partner,
        kind=kind,
        token_hash=token_hash(token),
        token_sealed=seal(token),
        created_at=now,
        expires_at=expires_at,
    )
    return token


def _revoke_live(*, partner: Partner, kind: str, at: dt.datetime) -> None:
    """End the partner's live tokens of a kind at `at` (never later than they already end)."""
    live = IssuedToken.objects.filter(partner=partner, kind=kind, consumed_at__isnull=True)
    live.filter(expires_at__isnull=True).update(expires_at=at)
    live.filter(expires_at__gt=at).update(expires_at=at)


def _event(
    partner: Partner, action: str, *, now: dt.datetime, by_us: bool = False, detail: str = ""
) -> None:
    CredentialsEvent.objects.create(
        partner=partner,
        at=now,
        action=action,
        initiated_by_us=by_us,
        version=partner.version,
        detail=detail[:500],
    )


def our_credentials(*, partner: Partner, token: str, version: str) -> dict[str, Any]:
    """Our credentials object for this partner: its parties are the ones it may see."""
    parties = list(partner.allowed_parties.order_by("country_code", "party_id"))
    if not parties:
        # An operator took the parties away after the token was given: our side is missing.
        raise OcpiError(status.SERVER_ERROR, "this platform may see none of our parties yet")
    if version == "2.1.1":
        first = parties[0]
        return {
            "token": token,
            "url": versions_url(),
            "business_details": first.business_details(),
            "party_id": first.party_id,
            "country_code": first.country_code,
        }
    return {
        "token": token,
        "url": versions_url(),
        "roles": [
            {
                "role": "CPO",
                "business_details": party.business_details(),
                "party_id": party.party_id,
                "country_code": party.country_code,
            }
            for party in parties
        ],
    }


# --- token A ------------------------------------------------------------------------------------


@transaction.atomic
def registration_token_issue(*, partner_id: int, now: dt.datetime | None = None) -> str:
    """A new single-use token A for a partner that is not registered; an earlier unused one
    stops working. Returns the token (shown once)."""
    now = now or timezone.now()
    partner = Partner.objects.select_for_update().get(pk=partner_id)
    if partner.status in (Partner.Status.REGISTERED, Partner.Status.REGISTERING):
        raise RegistrationError(f"{partner} is {partner.get_status_display().lower()}")
    if not partner.allowed_parties.exists():
        raise RegistrationError(f"{partner} may see none of our parties: choose them first")
    _revoke_live(partner=partner, kind=IssuedToken.Kind.REGISTRATION, at=now)
    token = _issue(
        partner=partner,
        kind=IssuedToken.Kind.REGISTRATION,
        now=now,
        expires_at=now + dt.timedelta(hours=settings.ROAMING_TOKEN_A_HOURS),
    )
    if partner.status == Partner.Status.UNREGISTERED:
        partner.status = Partner.Status.PENDING
        partner.save(update_fields=["status", "updated_at"])
    _event(partner, CredentialsEvent.Action.TOKEN_A_ISSUED, now=now, by_us=True)
    return token


# --- the partner's credentials calls (we are the receiver) ---------------------------------------


def _credentials_body(
    body: dict[str, Any], *, version: str
) -> tuple[str, str, list[dict[str, Any]]]:
    """(token, versions url, roles) of a posted credentials object; 2001 when it is not one."""
    token, url = body.get("token"), body.get("url")
    if not isinstance(token, str) or not TOKEN_PATTERN.match(token):
        raise OcpiError(
            status.INVALID_PARAMETERS, "token: 1-64 printable ASCII characters required"
        )
    if not isinstance(url, str) or not re.match(r"^https?://\S+$", url):
        raise OcpiError(
            status.INVALID_PARAMETERS, "url: the versions URL (http or https) is required"
        )
    roles: Any
    if version == "2.1.1":
        roles = [
            {k: body.get(k) for k in ("country_code", "party_id", "business_details")}
            | {"role": "EMSP"}
        ]
    else:
        roles = body.get("roles")
        if not isinstance(roles, list) or not roles:
            raise OcpiError(
                status.INVALID_PARAMETERS, "roles: at least one CredentialsRole is required"
            )
    for role in roles:
        if not isinstance(role, dict):
            raise OcpiError(status.INVALID_PARAMETERS, "roles: each role must be an object")
        country, party = role.get("country_code"), role.get("party_id")
        if not (isinstance(country, str) and re.fullmatch(r"[A-Za-z]{2}", country)):
            raise OcpiError(status.INVALID_PARAMETERS, "country_code: two letters required")
        if not (isinstance(party, str) and re.fullmatch(r"[A-Za-z0-9]{3}", party)):
            raise OcpiError(status.INVALID_PARAMETERS, "party_id: three letters or digits required")
        details = role.get("business_details")
        if not (isinstance(details, dict) and isinstance(details.get("name"), str)):
            raise OcpiError(status.INVALID_PARAMETERS, "business_details.name is required")
    return token, url, roles


def _callback(*, url: str, token: str, b64_first: bool, version: str) -> Negotiated:
    try:
        return negotiate(url, token=token, b64_first=b64_first, wanted=version)
    except PartnerCallFailed as error:
        raise OcpiError(error.status_code, f"we could not use your API: {error}") from error


def _current_credentials_token(partner: Partner) -> str | None:
    live = (
        IssuedToken.objects.filter(
            partner=partner, kind=IssuedToken.Kind.CREDENTIALS, expires_at__isnull=True
        )
        .order_by("-created_at", "-pk")
        .first()
    )
    return unseal(live.token_sealed) if live else None


def credentials_post(
    *, token_id: int, was_b64: bool, body: dict[str, Any], version: str
) -> dict[str, Any]:
    """The partner registers with the token A we gave it: we fetch its versions with its
    token, then consume token A and answer with its new token. A retry of the same POST
    after a lost answer gets the same answer; a failed callback leaves token A usable."""
    issued = IssuedToken.objects.select_related("partner").get(pk=token_id)
    if issued.kind != IssuedToken.Kind.REGISTRATION:
        raise OcpiError(
            status.CLIENT_ERROR, "already registered: use PUT to update", http_status=405
        )
    their_token, url, roles = _credentials_body(body, version=version)
    if issued.consumed_at is not None:
        return _replay(issued=issued, their_token=their_token, version=version)
    try:
        negotiated = _callback(url=url, token=their_token, b64_first=was_b64, version=version)
    except OcpiError as error:
        with transaction.atomic():
            _event(
                issued.partner,
                CredentialsEvent.Action.FAILED,
                now=timezone.now(),
                detail=error.message,
            )
        raise
    with transaction.atomic():
        issued = IssuedToken.objects.select_for_update().select_related("partner").get(pk=token_id)
        if issued.consumed_at is not None:  # a concurrent POST committed first
            return _replay(issued=issued, their_token=their_token, version=version)
        now = timezone.now()
        if issued.expires_at is not None and now >= issued.expires_at:
            raise OcpiError(status.CLIENT_ERROR, "the registration token expired", http_status=401)
        partner = Partner.objects.select_for_update().get(pk=issued.partner_id)
        issued.consumed_at = now
        issued.consumed_by_hash = token_hash(their_token)
        issued.save(update_fields=["consumed_at", "consumed_by_hash"])
        _store_their_side(
            partner, their_token=their_token, url=url, roles=roles, negotiated=negotiated, now=now
        )
        partner.registered_at = now
        partner.unregistered_at = None
        partner.save()
        _revoke_live(partner=partner, kind=IssuedToken.Kind.CREDENTIALS, at=now)
        ours = _issue(partner=partner, kind=IssuedToken.Kind.CREDENTIALS, now=now)
        _event(partner, CredentialsEvent.Action.REGISTERED, now=now)
        # Inside the transaction: an answer we cannot give undoes the registration.
        answer = our_credentials(partner=partner, token=ours, version=version)
    return answer


def _replay(*, issued: IssuedToken, their_token: str, version: str) -> dict[str, Any]:
    partner = Partner.objects.get(pk=issued.partner_id)
    current = _current_credentials_token(partner)
    if issued.consumed_by_hash != token_hash(their_token) or current is None:
        raise OcpiError(status.CLIENT_ERROR, "the registration token was used", http_status=405)
    return our_credentials(partner=partner, token=current, version=version)


def _store_their_side(
    partner: Partner,
    *,
    their_token: str,
    url: str,
    roles: list[dict[str, Any]],
    negotiated: Negotiated,
    now: dt.datetime,
) -> None:
    partner.their_token_sealed = seal(their_token)
    partner.encode_token_b64 = negotiated.encode_token_b64
    partner.versions_url = url
    partner.version = negotiated.version
    partner.endpoints = negotiated.endpoints
    partner.roles = roles
    partner.status = Partner.Status.REGISTERED
    partner.last_contact_at = now


def credentials_put(
    *, token_id: int, was_b64: bool, body: dict[str, Any], version: str
) -> dict[str, Any]:
    """The partner changes its token or version: we fetch its versions with the new token,
    then answer with a new token of ours; the old one keeps working for the grace window."""
    issued = IssuedToken.objects.select_related("partner").get(pk=token_id)
    if (
        issued.kind != IssuedToken.Kind.CREDENTIALS
        or issued.partner.status != Partner.Status.REGISTERED
    ):
        raise OcpiError(status.CLIENT_ERROR, "not registered: POST first", http_status=405)
    their_token, url, roles = _credentials_body(body, version=version)
    negotiated = _callback(url=url, token=their_token, b64_first=was_b64, version=version)
    with transaction.atomic():
        partner = Partner.objects.select_for_update().get(pk=issued.partner_id)
        if partner.status != Partner.Status.REGISTERED:
            raise OcpiError(status.CLIENT_ERROR, "not registered: POST first", http_status=405)
        now = timezone.now()
        _store_their_side(
            partner, their_token=their_token, url=url, roles=roles, negotiated=negotiated, now=now
        )
        partner.save()
        grace_end = now + dt.timedelta(seconds=settings.ROAMING_REROLL_GRACE_SECONDS)
        _revoke_live(partner=partner, kind=IssuedToken.Kind.CREDENTIALS, at=grace_end)
        ours = _issue(partner=partner, kind=IssuedToken.Kind.CREDENTIALS, now=now)
        _event(
            partner,
            CredentialsEvent.Action.UPDATED,
            now=now,
            detail=f"old token valid until {grace_end:%H:%M:%S}Z",
        )
        answer = our_credentials(partner=partner, token=ours, version=version)
    return answer


@transaction.atomic
def credentials_delete(*, token_id: int) -> None:
    """The partner unregisters: every token of ours it holds stops now, its token is erased;
    the partner row, its tokens' rows and its history stay."""
    issued = IssuedToken.objects.get(pk=token_id)
    partner = Partner.objects.select_for_update().get(pk=issued.partner_id)
    if issued.kind != IssuedToken.Kind.CREDENTIALS or partner.status != Partner.Status.REGISTERED:
        raise OcpiError(status.CLIENT_ERROR, "not registered", http_status=405)
    now = timezone.now()
    partner_unregister(partner=partner, now=now, detail="by the partner (credentials DELETE)")


def partner_unregister(
    *, partner: Partner, now: dt.datetime, detail: str, by_us: bool = False
) -> None:
    _revoke_live(partner=partner, kind=IssuedToken.Kind.CREDENTIALS, at=now)
    _revoke_live(partner=partner, kind=IssuedToken.Kind.REGISTRATION, at=now)
    partner.status = Partner.Status.UNREGISTERED
    partner.unregistered_at = now
    partner.their_token_sealed = ""
    partner.save()
    _event(partner, CredentialsEvent.Action.UNREGISTERED, now=now, by_us=by_us, detail=detail)


# --- we register with the partner (we are the initiator) -----------------------------------------


def partner_register(*, partner_id: int, versions_url_theirs: str, their_token_a: str) -> Partner:
    """Register with a partner from its versions URL and the token A it gave us: fetch its
    versions and details, give it a token of ours (committed first: it calls our versions
    with it before answering), POST our credentials, keep the token it answers with."""
    partner = Partner.objects.get(pk=partner_id)
    if partner.status in (Partner.Status.REGISTERED, Partner.Status.REGISTERING):
        raise RegistrationError(f"{partner} is {partner.get_status_display().lower()}")
    if not partner.allowed_parties.exists():
        raise RegistrationError(f"{partner} may see none of our parties: choose them first")
    if not TOKEN_PATTERN.match(their_token_a):
        raise RegistrationError("the token must be 1-64 printable ASCII characters")
    try:
        negotiated = negotiate(versions_url_theirs, token=their_token_a)
    except PartnerCallFailed as error:
        with transaction.atomic():
            _event(
                partner,
                CredentialsEvent.Action.FAILED,
                now=timezone.now(),
                by_us=True,
                detail=str(error),
            )
        raise RegistrationError(str(error)) from error
    credentials_url = next(
        e["url"] for e in negotiated.endpoints if e["identifier"] == "credentials"
    )
    with transaction.atomic():
        partner = Partner.objects.select_for_update().get(pk=partner_id)
        if partner.status in (Partner.Status.REGISTERED, Partner.Status.REGISTERING):
            raise RegistrationError(f"{partner} is {partner.get_status_display().lower()}")
        previous_status = partner.status
        now = timezone.now()
        partner.status = Partner.Status.REGISTERING
        partner.versions_url = versions_url_theirs
        partner.version = negotiated.version
        partner.endpoints = negotiated.endpoints
        partner.encode_token_b64 = negotiated.encode_token_b64
        partner.save()
        _revoke_live(partner=partner, kind=IssuedToken.Kind.CREDENTIALS, at=now)
        ours = _issue(partner=partner, kind=IssuedToken.Kind.CREDENTIALS, now=now)
        body = our_credentials(partner=partner, token=ours, version=negotiated.version)
    try:
        answer = ocpi_call(
            "POST", credentials_url, token=their_token_a, b64=negotiated.encode_token_b64, body=body
        )
        data = answer.get("data")
        if not isinstance(data, dict):
            raise PartnerCallFailed("the credentials answer has no credentials object")
        their_token, _url, roles = _credentials_body(data, version=negotiated.version)
    except (PartnerCallFailed, OcpiError) as error:
        with transaction.atomic():
            now = timezone.now()
            _revoke_live(partner=partner, kind=IssuedToken.Kind.CREDENTIALS, at=now)
            Partner.objects.filter(pk=partner.pk).update(status=previous_status)
            _event(partner, CredentialsEvent.Action.FAILED, now=now, by_us=True, detail=str(error))
        raise RegistrationError(str(error)) from error
    with transaction.atomic():
        partner = Partner.objects.select_for_update().get(pk=partner_id)
        now = timezone.now()
        _store_their_side(
            partner,
            their_token=their_token,
            url=versions_url_theirs,
            roles=roles,
            negotiated=negotiated,
            now=now,
        )
        partner.registered_at = now
        partner.unregistered_at = None
        partner.save()
        _event(partner, CredentialsEvent.Action.REGISTERED, now=now, by_us=True)
    return partner


# --- tokens the eMSP pushes (we are the receiver) -------------------------------------------------


def _token_owner_check(
    partner: Partner, country_code: str, party_id: str, routing_from: tuple[str, str]
) -> None:
    """The token's party must be the caller's: one of its parties, or behind a hub, the
    party its routing headers name."""
    key = (country_code.upper(), party_id.upper())
    allowed = {routing_from} if partner.is_hub else partner.party_keys()
    if key not in allowed:
        raise OcpiError(
            status.INVALID_PARAMETERS, f"{key[0]}*{key[1]} is not a party of this platform"
        )


@transaction.atomic
def emsp_token_put(
    *,
    partner_id: int,
    country_code: str,
    party_id: str,
    uid: str,
    token_type: str,
    body: dict[str, Any],
    version: str,
    routing_from: tuple[str, str] = ("", ""),
) -> tuple[EmspToken, bool]:
    """Create or replace a token; the URL's keys must be the body's (2001 otherwise)."""
    partner = Partner.objects.get(pk=partner_id)
    _token_owner_check(partner, country_code, party_id, routing_from)
    data = token_check(body, version=version)
    keys = {"uid": uid, "type": token_type}
    if version != "2.1.1":
        keys |= {"country_code": country_code, "party_id": party_id}
    for name, value in keys.items():
        if str(data[name]).upper() != value.upper():
            raise OcpiError(status.INVALID_PARAMETERS, f"{name} in the body is not the URL's")
    token, created = EmspToken.objects.select_for_update().update_or_create(
        country_code=country_code.upper(),
        party_id=party_id.upper(),
        uid=uid,
        type=token_type,
        defaults={
            **token_columns(data, version=version),
            "partner": partner,
            "data": data,
            "received_at": timezone.now(),
        },
    )
    return token, created


@transaction.atomic
def emsp_token_patch(
    *,
    partner_id: int,
    country_code: str,
    party_id: str,
    uid: str,
    token_type: str,
    body: dict[str, Any],
    version: str,
    routing_from: tuple[str, str] = ("", ""),
) -> EmspToken:
    """Change some fields of a known token (2004 for an unknown one); the result must still
    be a whole token, and the keys cannot change."""
    partner = Partner.objects.get(pk=partner_id)
    _token_owner_check(partner, country_code, party_id, routing_from)
    changes = token_check(body, version=version, partial=True)
    token = (
        EmspToken.objects.select_for_update()
        .filter(
            country_code=country_code.upper(), party_id=party_id.upper(), uid=uid, type=token_type
        )
        .first()
    )
    if token is None:
        raise OcpiError(status.UNKNOWN_TOKEN, "unknown token", http_status=404)
    keys = ("uid", "type", "country_code", "party_id")
    if any(
        name in changes and str(changes[name]).upper() != str(token.data.get(name, "")).upper()
        for name in keys
    ):
        raise OcpiError(status.INVALID_PARAMETERS, "a PATCH cannot change the token's keys")
    data = token_check({**token.data, **changes}, version=version)
    for name, value in token_columns(data, version=version).items():
        setattr(token, name, value)
    token.data = data
    token.received_at = timezone.now()
    token.save()
    return token


# --- hubclientinfo (we are the receiver) ------------------------------------------------------

CLIENT_INFO_FIELDS: dict[str, tuple[type, int | None, bool]] = {
    "party_id": (str, 3, True),
    "country_code": (str, 2, True),
    "role": (str, None, True),
    "status": (str, None, True),
    "last_updated": (str, None, True),
}
ROLES = {"CPO", "EMSP", "HUB", "NAP", "NSP", "OTHER", "SCSP"}


@transaction.atomic
def client_info_put(
    *, partner_id: int, country_code: str, party_id: str, body: dict[str, Any]
) -> tuple[ClientInfo, bool]:
    """Store what a hub says of a party connected to it (2001 for anything else). A platform
    that reports its own party sets its `client_status` too: OFFLINE or SUSPENDED stop our
    pushes and real-time authorization requests to it until it is back."""
    partner = Partner.objects.select_for_update().get(pk=partner_id)
    data = fields_check(body, CLIENT_INFO_FIELDS)
    key = (country_code.upper(), party_id.upper())
    if (data["country_code"].upper(), data["party_id"].upper()) != key:
        raise OcpiError(status.INVALID_PARAMETERS, "country_code and party_id must be the URL's")
    if data["role"] not in ROLES:
        raise OcpiError(status.INVALID_PARAMETERS, f"role: one of {sorted(ROLES)}")
    if data["status"] not in ClientStatus.values:
        raise OcpiError(status.INVALID_PARAMETERS, f"status: one of {ClientStatus.values}")
    try:
        last_updated = parse_ocpi_datetime(data["last_updated"])
    except ValueError as exc:
        raise OcpiError(status.INVALID_PARAMETERS, f"last_updated: {exc}") from exc
    info, created = ClientInfo.objects.update_or_create(
        partner=partner,
        country_code=key[0],
        party_id=key[1],
        role=data["role"],
        defaults={
            "status": data["status"],
            "last_updated": last_updated,
            "received_at": timezone.now(),
        },
    )
    if key in partner.party_keys():
        partner.client_status = data["status"]
        partner.save(update_fields=["client_status", "updated_at"])
    return info, created

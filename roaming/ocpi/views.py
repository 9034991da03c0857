"""The OCPI endpoints we serve as a CPO: versions, credentials, locations (sender)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils import timezone

from cpo.lib.sealing import unseal
from roaming import chargingprofiles, commands, push, selectors, services
from roaming.cdrs import CDR_SERIALIZERS
from roaming.emsp_tokens import TOKEN_SERIALIZERS
from roaming.locations import SERIALIZERS, location_model
from roaming.models import ClientInfo, OurParty
from roaming.ocpi import status
from roaming.ocpi.status import OcpiError, ocpi_datetime, parse_ocpi_datetime
from roaming.ocpi.transport import OcpiContext, OcpiResult, json_body, ocpi_endpoint
from roaming.sessions import SESSION_SERIALIZERS
from roaming.tariffs import TARIFF_SERIALIZERS
from tariffs.models import TariffVersion

VERSIONS = ("2.2.1", "2.1.1")
# The modules of each version and our role in them (2.1.1 endpoints carry no role).
MODULES = (
    ("credentials", "SENDER"),
    ("locations", "SENDER"),
    ("tariffs", "SENDER"),
    ("tokens", "RECEIVER"),
    ("sessions", "SENDER"),
    ("cdrs", "SENDER"),
    ("commands", "RECEIVER"),
    ("chargingprofiles", "RECEIVER"),
    ("hubclientinfo", "RECEIVER"),
)
# Modules 2.1.1 does not have.
ONLY_221 = ("chargingprofiles", "hubclientinfo")


def _base() -> str:
    return f"{settings.ROAMING_OCPI_BASE_URL}/ocpi"


@ocpi_endpoint(module="versions", methods=("GET",))
def versions(request: HttpRequest, context: OcpiContext) -> list[dict[str, str]]:
    return [{"version": version, "url": f"{_base()}/{version}"} for version in VERSIONS]


@ocpi_endpoint(module="versions", methods=("GET",))
def version_details(request: HttpRequest, context: OcpiContext, version: str) -> dict[str, Any]:
    endpoints: list[dict[str, str]] = []
    for module, role in MODULES:
        if version == "2.1.1" and module in ONLY_221:
            continue
        endpoint = {"identifier": module, "url": f"{_base()}/{version}/{module}"}
        if version != "2.1.1":
            endpoint["role"] = role
        endpoints.append(endpoint)
    return {"version": version, "endpoints": endpoints}


@ocpi_endpoint(module="credentials", methods=("GET", "POST", "PUT", "DELETE"))
def credentials(request: HttpRequest, context: OcpiContext, version: str) -> Any:
    token = context.token
    if request.method == "GET":
        # The answer carries the token the partner calls us with.
        return services.our_credentials(
            partner=context.partner, token=unseal(token.token_sealed), version=version
        )
    if request.method == "DELETE":
        services.credentials_delete(token_id=token.pk)
        return None
    body = json_body(request)
    if request.method == "POST":
        return services.credentials_post(
            token_id=token.pk, was_b64=context.token_was_b64, body=body, version=version
        )
    return services.credentials_put(
        token_id=token.pk, was_b64=context.token_was_b64, body=body, version=version
    )


def _int_param(request: HttpRequest, name: str, default: int) -> int:
    text = request.GET.get(name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError as exc:
        raise OcpiError(status.INVALID_PARAMETERS, f"{name} must be an integer") from exc
    if value < 0 or (name == "limit" and value == 0):
        raise OcpiError(status.INVALID_PARAMETERS, f"{name} must be positive")
    return value


def _date_param(request: HttpRequest, name: str) -> dt.datetime | None:
    text = request.GET.get(name)
    if not text:
        return None
    try:
        return parse_ocpi_datetime(text)
    except ValueError as exc:
        raise OcpiError(status.INVALID_PARAMETERS, f"{name}: not an OCPI DateTime ({exc})") from exc


def _default_party(parties: list[OurParty]) -> OurParty | None:
    return next((party for party in parties if party.is_default), None)


def _paged(
    request: HttpRequest, queryset: QuerySet[Any], serialize: Callable[[Any], Any]
) -> OcpiResult:
    """One page of a list GET: offset/limit (capped at our maximum), the date window on
    last_updated, X-Total-Count, X-Limit, and a Link to the next page (omitted on the last)
    that repeats the request's filters."""
    maximum = settings.ROAMING_PAGE_MAX
    offset = _int_param(request, "offset", 0)
    limit = min(_int_param(request, "limit", maximum), maximum)
    date_from, date_to = _date_param(request, "date_from"), _date_param(request, "date_to")
    queryset = selectors.filter_dates(queryset, date_from=date_from, date_to=date_to)
    total = queryset.count()
    page = list(queryset[offset : offset + limit])
    headers = {"X-Total-Count": str(total), "X-Limit": str(maximum)}
    if offset + len(page) < total:
        params = request.GET.copy()
        params["offset"] = str(offset + len(page))
        params["limit"] = str(limit)
        query = urlencode(sorted(params.items()))
        headers["Link"] = f'<{settings.ROAMING_OCPI_BASE_URL}{request.path}?{query}>; rel="next"'
    return OcpiResult(data=[serialize(item) for item in page], headers=headers)


@ocpi_endpoint(module="locations", methods=("GET",))
def locations_list(request: HttpRequest, context: OcpiContext, version: str) -> OcpiResult:
    default = _default_party(context.parties)
    serialize = SERIALIZERS[version]["location"]
    tariffs = selectors.ConnectorTariffs(now=timezone.now())
    return _paged(
        request,
        selectors.locations_visible(parties=context.parties),
        lambda location: serialize(
            location_model(location, default_party=default, tariffs=tariffs)
        ),
    )


@ocpi_endpoint(module="tariffs", methods=("GET",))
def tariffs_list(request: HttpRequest, context: OcpiContext, version: str) -> OcpiResult:
    """Every tariff's version in force, published under our default party when the partner
    sees it (tariffs are network-wide), else under the first party it sees."""
    party = _default_party(context.parties) or next(iter(context.parties), None)
    if party is None:
        return _paged(request, TariffVersion.objects.none(), lambda tariff: tariff)
    serialize = TARIFF_SERIALIZERS[version]
    queryset = selectors.tariff_versions_current(now=timezone.now())
    return _paged(request, queryset, lambda tariff: serialize(tariff, party))


@ocpi_endpoint(module="locations", methods=("GET",))
def location_object(
    request: HttpRequest,
    context: OcpiContext,
    version: str,
    location_id: str,
    evse_uid: str | None = None,
    connector_id: str | None = None,
) -> dict[str, Any]:
    unknown = OcpiError(status.UNKNOWN_LOCATION, "unknown location", http_status=404)
    if not location_id.isdigit():
        raise unknown
    location = (
        selectors.locations_visible(parties=context.parties).filter(pk=int(location_id)).first()
    )
    if location is None:
        raise unknown
    model = location_model(
        location,
        default_party=_default_party(context.parties),
        tariffs=selectors.ConnectorTariffs(now=timezone.now()),
    )
    serializers = SERIALIZERS[version]
    if evse_uid is None:
        return serializers["location"](model)
    evse = next((evse for evse in model.evses if evse.uid == evse_uid), None)
    if evse is None:
        raise OcpiError(status.UNKNOWN_LOCATION, "unknown EVSE", http_status=404)
    if connector_id is None:
        return serializers["evse"](evse)
    connector = next((c for c in evse.connectors if c.id == connector_id), None)
    if connector is None:
        raise OcpiError(status.UNKNOWN_LOCATION, "unknown connector", http_status=404)
    return serializers["connector"](connector)


@ocpi_endpoint(module="tokens", methods=("GET", "PUT", "PATCH"))
def token_object(
    request: HttpRequest,
    context: OcpiContext,
    version: str,
    country_code: str,
    party_id: str,
    uid: str,
) -> Any:
    """The eMSP's token, keyed by country, party, uid and `?type=` (RFID when absent)."""
    token_type = request.GET.get("type") or "RFID"
    routing_from = (
        context.routing.get("OCPI-from-country-code", ""),
        context.routing.get("OCPI-from-party-id", ""),
    )
    keys: dict[str, Any] = {
        "country_code": country_code,
        "party_id": party_id,
        "uid": uid,
        "token_type": token_type,
        "version": version,
        "routing_from": routing_from,
    }
    if request.method == "GET":
        token = selectors.emsp_token_find(
            country_code=country_code, party_id=party_id, uid=uid, token_type=token_type
        )
        if token is None or token.partner_id != context.partner.pk:
            raise OcpiError(status.UNKNOWN_TOKEN, "unknown token", http_status=404)
        return TOKEN_SERIALIZERS[version](token)
    body = json_body(request)
    if request.method == "PUT":
        _token, created = services.emsp_token_put(partner_id=context.partner.pk, body=body, **keys)
        return OcpiResult(http_status=201 if created else 200)
    services.emsp_token_patch(partner_id=context.partner.pk, body=body, **keys)
    return None


@ocpi_endpoint(module="sessions", methods=("GET",))
def sessions_list(request: HttpRequest, context: OcpiContext, version: str) -> OcpiResult:
    """The sessions of this eMSP's tokens, oldest change first (then id); `date_from` is
    required, as OCPI says."""
    if not request.GET.get("date_from"):
        raise OcpiError(status.INVALID_PARAMETERS, "date_from is required")
    serialize = SESSION_SERIALIZERS[version]
    now = timezone.now()

    def one(roaming: Any) -> dict[str, Any]:
        model = push.session_ocpi_model(roaming=roaming, now=now)
        return serialize(model) if model is not None else {}

    return _paged(request, selectors.roaming_sessions(partner=context.partner), one)


@ocpi_endpoint(module="cdrs", methods=("GET",))
def cdrs_list(request: HttpRequest, context: OcpiContext, version: str) -> OcpiResult:
    """The CDRs (credit CDRs too) of this eMSP's sessions, oldest first (then id)."""
    serialize = CDR_SERIALIZERS[version]
    default = _default_party(selectors.our_parties())
    tokens = {
        roaming.session_id: roaming.token
        for roaming in context.partner.sessions.select_related("token")
    }

    def one(cdr: Any) -> dict[str, Any]:
        party = push.cdr_party(cdr, default)
        return serialize(cdr, party=party, token=tokens.get(cdr.session_id))

    return _paged(request, selectors.roaming_cdrs(partner=context.partner), one)


def _routing_from(context: OcpiContext) -> tuple[str, str]:
    return (
        context.routing.get("OCPI-from-country-code", ""),
        context.routing.get("OCPI-from-party-id", ""),
    )


@ocpi_endpoint(module="commands", methods=("POST",))
def command(request: HttpRequest, context: OcpiContext, version: str, command_type: str) -> Any:
    """A partner's command: checked, queued for the station, answered with a CommandResponse;
    its CommandResult follows at the response_url."""
    body = json_body(request)
    return commands.command_receive(
        partner=context.partner,
        parties=context.parties,
        version=version,
        command_type=command_type.upper(),
        body=body,
        routing=_routing_from(context),
    )


@ocpi_endpoint(module="chargingprofiles", methods=("GET", "PUT", "DELETE"))
def charging_profile(
    request: HttpRequest, context: OcpiContext, version: str, session_id: str
) -> Any:
    if version != "2.2.1":
        raise OcpiError(status.CLIENT_ERROR, "chargingprofiles is OCPI 2.2.1", http_status=404)
    body = json_body(request) if request.method == "PUT" else None
    return chargingprofiles.profile_receive(
        partner=context.partner,
        method=request.method or "GET",
        session_id=session_id,
        body=body,
        query={key: request.GET.get(key, "") for key in request.GET},
    )


def _client_info(info: ClientInfo) -> dict[str, Any]:
    return {
        "party_id": info.party_id,
        "country_code": info.country_code,
        "role": info.role,
        "status": info.status,
        "last_updated": ocpi_datetime(info.last_updated),
    }


@ocpi_endpoint(module="hubclientinfo", methods=("GET", "PUT"))
def client_info(
    request: HttpRequest, context: OcpiContext, version: str, country_code: str, party_id: str
) -> Any:
    if version != "2.2.1":
        raise OcpiError(status.CLIENT_ERROR, "hubclientinfo is OCPI 2.2.1", http_status=404)
    if request.method == "GET":
        info = (
            ClientInfo.objects.filter(
                partner=context.partner,
                country_code=country_code.upper(),
                party_id=party_id.upper(),
            )
            .order_by("role")
            .first()
        )
        if info is None:
            raise OcpiError(status.CLIENT_ERROR, "no client info for this party", http_status=404)
        return _client_info(info)
    _info, created = services.client_info_put(
        partner_id=context.partner.pk,
        country_code=country_code,
        party_id=party_id,
        body=json_body(request),
    )
    return OcpiResult(http_status=201 if created else 200)

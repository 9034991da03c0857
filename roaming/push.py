"""Pushes to partners: every change a partner may see becomes an outbox message (kind "ocpi",
`roaming.outbound`) in the transaction of the change, for every partner allowed to see it,
serialized for the partner's negotiated version and sent to the URL it registered for the
module (receiver role).

What is pushed when:

- an EVSE's status (a StatusNotification that moved it; its station connected,
  disconnected or connector 0 changed): PATCH {locations}/{cc}/{pid}/{location}/{evse_uid}
  with `status` and `last_updated`;
- a site's structure (the site, its stations or EVSEs edited, a station accepted, a new
  connector learned): PUT {locations}/{cc}/{pid}/{location}, the whole location; a site that
  stopped being visible (unpublished, its party taken away) is PUT once more with
  `publish: false` (2.2.1) or its EVSEs REMOVED (2.1.1), if the partner had it;
- a tariff version published and in force (at once, or when a scheduled one comes into
  force): PUT {tariffs}/{cc}/{pid}/{tariff_id};
- a session of an eMSP's token: PUT at its start (ACTIVE), PATCH every
  OCPI_SESSION_PATCH_MINUTES while charging (kwh, charging_periods, total_cost), PUT at its
  end (COMPLETED);
- its CDR once rated, and every credit CDR: POST {cdrs}; the partner's Location header is
  kept (`CdrPush.location_url`).

Order: one partner receives the messages of one object in the order they were written
(ordering_key "locations:<site>", "tariffs:<id>", "sessions:<uid>" — a session's CDR after
its COMPLETED). Collapse: an EVSE status PATCH (or a location PUT) that is still waiting when
a newer one of the same EVSE (or a newer PUT of its site) was written is not sent (its
attempt log says "superseded"): a burst of status changes, or a partner back after being
down, gets the latest state only, nothing older after it. Each partner is its own outbox
destination: one that is down waits on its own retries and holds up nobody else.

Cost on the OCPP path: who can receive pushes (registered partners with their receiver URLs
and parties) is cached (`push_targets`, the Django cache, cleared on every partner or party
write): with no partner, a status change costs one cache read and no query. Meter samples
push nothing (the periodic PATCH reads the session).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.db.models import F, Max, Min
from django.utils import timezone

from billing.models import Cdr
from cpo.outbox.models import OutboxMessage
from cpo.outbox.services import outbox_enqueue, outbox_message_redeliver
from cpo.outbox.transports import TransportError
from roaming import outbound, selectors
from roaming.cdrs import CDR_SERIALIZERS
from roaming.locations import SERIALIZERS, evse_status, location_model
from roaming.models import CdrPush, EmspToken, LocationParty, OurParty, Partner, RoamingSession
from roaming.ocpi.status import ocpi_datetime
from roaming.sessions import SESSION_SERIALIZERS, OcpiSession, session_model, session_patch
from roaming.tariffs import TARIFF_SERIALIZERS
from sessions.models import ChargingSession
from stations.models import ChargingStation, Evse, Location
from tariffs.models import TariffVersion

logger = logging.getLogger(__name__)

KIND = outbound.KIND
MODULES = ("locations", "tariffs", "sessions", "cdrs")
_TARGETS_KEY = "roaming:push:targets:v1"
_TARGETS_TTL = 300
OPEN = OutboxMessage.OPEN


@dataclass(frozen=True)
class Target:
    """A partner that receives pushes, as the cache keeps it."""

    partner_id: int
    version: str
    # module -> the partner's receiver URL, as it registered it
    urls: dict[str, str]
    # pks of our parties it may see
    party_ids: frozenset[int]

    def url(self, module: str, *parts: str | int) -> str:
        """The module's URL with the object's path: {url}/{cc}/{pid}/{id}... (the URL as
        registered when there is no path: a CDR POST goes exactly there)."""
        base = self.urls[module]
        if not parts:
            return base
        return "/".join([base.rstrip("/"), *(str(part) for part in parts)])


# --- who receives pushes ---------------------------------------------------------------------


def _targets_from_database() -> list[Target]:
    targets = []
    partners = Partner.objects.filter(status=Partner.Status.REGISTERED).prefetch_related(
        "allowed_parties"
    )
    for partner in partners:
        if not outbound.partner_accepts_pushes(partner) or not partner.version:
            continue
        urls = {}
        for module in MODULES:
            url = partner.endpoint_url(module, "RECEIVER")
            if url:
                urls[module] = url
        if urls:
            targets.append(
                Target(
                    partner_id=partner.pk,
                    version=partner.version,
                    urls=urls,
                    party_ids=frozenset(p.pk for p in partner.allowed_parties.all()),
                )
            )
    return targets


def push_targets() -> list[Target]:
    """The partners that receive pushes (cached; the database when the cache is away)."""
    try:
        cached = cache.get(_TARGETS_KEY)
    except Exception:  # noqa: BLE001 - the cache is an optimisation; Redis errors vary
        return _targets_from_database()
    if cached is None:
        cached = _targets_from_database()
        try:
            cache.set(_TARGETS_KEY, cached, _TARGETS_TTL)
        except Exception:  # noqa: BLE001
            logger.warning("roaming: could not cache the push targets")
    return list(cached)


def _forget_targets() -> None:
    try:
        cache.delete(_TARGETS_KEY)
    except Exception:  # noqa: BLE001
        logger.warning("roaming: could not forget the cached push targets")


def push_targets_changed() -> None:
    """A partner or a party was written: forget the targets now and after the commit."""
    _forget_targets()
    if transaction.get_connection().in_atomic_block:
        transaction.on_commit(_forget_targets)


def _targets(module: str) -> list[Target]:
    return [target for target in push_targets() if module in target.urls]


def _party_of(location: Location, default: OurParty | None) -> OurParty | None:
    owner = getattr(location, "ocpi_party", None)
    if owner is not None:
        return owner.party
    return default


def _default_party() -> OurParty | None:
    return OurParty.objects.filter(is_default=True).first()


def _visible(location: Location) -> bool:
    return (
        bool(location.publish) and location.latitude is not None and location.longitude is not None
    )


def _enqueue(
    target: Target,
    *,
    method: str,
    url: str,
    body: dict[str, Any],
    topic: str,
    ordering_key: str,
    idempotency_key: str = "",
) -> OutboxMessage:
    return outbox_enqueue(
        destination_kind=KIND,
        destination_ref=str(target.partner_id),
        url=url,
        method=method,
        body=body,
        topic=topic[:64],
        ordering_key=ordering_key,
        idempotency_key=idempotency_key,
    )


# --- locations -------------------------------------------------------------------------------


def _location_key(location_id: int) -> str:
    return f"locations:{location_id}"


def _pushes_of_station(station_ids: list[int], evse_id: int | None = None) -> None:
    """Status PATCHes of the EVSEs of these stations (one EVSE when `evse_id`)."""
    targets = _targets("locations")
    if not targets:
        return
    evses = (
        Evse.objects.filter(station_id__in=station_ids)
        .select_related("station__location__ocpi_party__party")
        .prefetch_related("connectors")
        .order_by("station_id", "evse_id")
    )
    if evse_id is not None:
        evses = evses.filter(evse_id=evse_id)
    default = _default_party()
    for evse in evses:
        station = evse.station
        location = station.location
        connectors = list(evse.connectors.all())
        if location is None or not connectors or not _visible(location):
            continue
        if station.registration_status != ChargingStation.RegistrationStatus.ACCEPTED:
            continue
        party = _party_of(location, default)
        if party is None:
            continue
        status = evse_status(station, connectors)
        stamp = max(
            value
            for value in (
                station.updated_at,
                station.connected_at,
                evse.status_at,
                *(c.status_at for c in connectors),
                timezone.now() if station.status in ("Unavailable", "Faulted") else None,
            )
            if value is not None
        )
        if not station.is_online:
            stamp = max(stamp, station.last_seen_at or stamp)
        body = {"status": status, "last_updated": ocpi_datetime(stamp)}
        for target in targets:
            if party.pk not in target.party_ids:
                continue
            _enqueue(
                target,
                method="PATCH",
                url=target.url(
                    "locations", party.country_code, party.party_id, location.pk, evse.uid
                ),
                body=body,
                topic=f"locations.evse:{evse.uid}",
                ordering_key=_location_key(location.pk),
            )


def on_evse_status_changed(sender: Any, *, station_id: int, evse_id: int, **kwargs: Any) -> None:
    _pushes_of_station([station_id], evse_id)


def on_station_state_changed(sender: Any, *, station_ids: list[int], **kwargs: Any) -> None:
    _pushes_of_station(list(station_ids))


def _pushed_before(target: Target, location_id: int) -> bool:
    return OutboxMessage.objects.filter(
        destination_kind=KIND,
        destination_ref=str(target.partner_id),
        ordering_key=_location_key(location_id),
    ).exists()


def location_push(*, location_id: int, targets: list[Target] | None = None) -> int:
    """A full PUT of the site to every partner that may see it (or to `targets`); returns how
    many messages were written. Inside the caller's transaction."""
    targets = _targets("locations") if targets is None else targets
    if not targets:
        return 0
    location = selectors.location_for_push(location_id=location_id)
    if location is None:
        return 0
    default = _default_party()
    party = _party_of(location, default)
    if party is None:
        return 0
    model = location_model(
        location, default_party=default, tariffs=selectors.ConnectorTariffs(now=timezone.now())
    )
    written = 0
    for target in targets:
        url = target.url("locations", party.country_code, party.party_id, location.pk)
        visible = _visible(location) and party.pk in target.party_ids
        if visible:
            body = SERIALIZERS[target.version]["location"](model)
        elif _pushed_before(target, location.pk):
            body = _withdrawn(SERIALIZERS[target.version]["location"](model), target.version)
        else:
            continue
        _enqueue(
            target,
            method="PUT",
            url=url,
            body=body,
            topic="locations.location",
            ordering_key=_location_key(location.pk),
        )
        written += 1
    return written


def _withdrawn(body: dict[str, Any], version: str) -> dict[str, Any]:
    """A site the partner may no longer see: 2.2.1 says publish false, 2.1.1 (no publish
    flag) marks its EVSEs REMOVED."""
    if version == "2.1.1":
        body["evses"] = [evse | {"status": "REMOVED"} for evse in body.get("evses", [])]
    else:
        body["publish"] = False
    return body


def on_network_changed(
    sender: Any, *, location_ids: list[int], station_ids: Sequence[int] = (), **kwargs: Any
) -> None:
    if not _targets("locations"):
        return
    ids = set(location_ids)
    if station_ids:
        ids |= {
            pk
            for pk in ChargingStation.objects.filter(pk__in=list(station_ids)).values_list(
                "location_id", flat=True
            )
            if pk is not None
        }
    for location_id in sorted(ids):
        location_push(location_id=location_id)


def on_location_party_changed(sender: Any, instance: LocationParty, **kwargs: Any) -> None:
    on_network_changed(sender, location_ids=[instance.location_id])


# --- collapse ------------------------------------------------------------------------------


def superseded(message: OutboxMessage) -> str | None:
    """The outbound pre-send check: an EVSE PATCH with a newer PATCH of the same EVSE or a
    newer PUT of its site waiting behind it, or a site PUT with a newer PUT behind it, is not
    sent (the newer one carries the later state)."""
    if message.destination_kind != KIND or not message.topic.startswith("locations."):
        return None
    covering = {message.topic, "locations.location"}
    newer = (
        OutboxMessage.objects.filter(
            destination_kind=KIND,
            destination_ref=message.destination_ref,
            ordering_key=message.ordering_key,
            id__gt=message.pk,
            status__in=OPEN,
            topic__in=covering,
        )
        .order_by("-id")
        .values_list("id", flat=True)
        .first()
    )
    return f"superseded by #{newer}" if newer else None


# --- tariffs -------------------------------------------------------------------------------


def tariff_push(*, version: TariffVersion, targets: list[Target] | None = None) -> int:
    """PUT the tariff version to every partner with a tariffs receiver, under our default
    party when it sees it, else the first party it sees (as the tariffs GET does)."""
    targets = _targets("tariffs") if targets is None else targets
    if not targets:
        return 0
    parties = {party.pk: party for party in OurParty.objects.all()}
    stored_id = version.ocpi["id"]
    written = 0
    for target in targets:
        seen = sorted(
            (parties[pk] for pk in target.party_ids if pk in parties),
            key=lambda p: (not p.is_default, p.country_code, p.party_id),
        )
        if not seen:
            continue
        party = seen[0]
        _enqueue(
            target,
            method="PUT",
            url=target.url("tariffs", party.country_code, party.party_id, stored_id),
            body=TARIFF_SERIALIZERS[target.version](version, party),
            topic="tariffs.tariff",
            ordering_key=f"tariffs:{stored_id}",
            idempotency_key=f"tariff-version:{version.pk}",
        )
        written += 1
    return written


def on_tariff_version_published(sender: Any, *, version: TariffVersion, **kwargs: Any) -> None:
    if version.effective_from <= timezone.now():
        tariff_push(version=version)


def tariffs_in_force_push(*, since: dt.datetime, now: dt.datetime) -> int:
    """Versions published ahead of time that came into force in (since, now]."""
    if not _targets("tariffs"):
        return 0
    written = 0
    # Scheduled versions only: one in force when published was pushed then.
    scheduled = TariffVersion.objects.filter(
        effective_from__gt=since, effective_from__lte=now, created_at__lt=F("effective_from")
    ).order_by("effective_from", "pk")
    for version in scheduled:
        written += tariff_push(version=version)
    return written


# --- sessions ------------------------------------------------------------------------------


def _session_key(session: ChargingSession) -> str:
    return f"sessions:{session.uid}"


def _emsp_token(session: ChargingSession, partner_ids: set[int]) -> EmspToken | None:
    if not session.id_tag:
        return None
    tokens = list(EmspToken.objects.filter(uid=session.id_tag, partner_id__in=partner_ids))
    if not tokens:
        tokens = list(
            EmspToken.objects.filter(uid__iexact=session.id_tag, partner_id__in=partner_ids)
        )
    # A uid is unique per type only: the RFID one for a card at the charger.
    tokens.sort(key=lambda t: (not t.valid, t.type != EmspToken.Type.RFID, t.pk))
    return tokens[0] if tokens else None


def _session_context(session: ChargingSession) -> tuple[OurParty, Any, str] | None:
    station = ChargingStation.objects.select_related("location__ocpi_party__party").get(
        pk=session.station_id
    )
    location = station.location
    if location is None:
        return None
    default = _default_party()
    party = _party_of(location, default)
    if party is None:
        return None
    evse = (
        Evse.objects.filter(station_id=station.pk, evse_id=session.evse_id or 1)
        .prefetch_related("connectors")
        .first()
    )
    if evse is None:
        return None
    site = selectors.location_for_push(location_id=location.pk)
    assert site is not None
    model = location_model(
        site, default_party=default, tariffs=selectors.ConnectorTariffs(now=timezone.now())
    )
    model_evse = next((e for e in model.evses if e.uid == evse.uid), None)
    connector_id = str(session.connector_id or 1)
    if model_evse is not None:
        connectors = [c for c in model_evse.connectors if c.id == connector_id]
        model_evse = type(model_evse)(**{**model_evse.__dict__, "connectors": connectors})
    only = type(model)(**{**model.__dict__, "evses": [model_evse] if model_evse else []})
    return party, only, evse.uid


def session_ocpi_model(
    *, roaming: RoamingSession, now: dt.datetime, session: ChargingSession | None = None
) -> OcpiSession | None:
    """The internal model of a roaming session (None: its station has no site or EVSE)."""
    session = session or roaming.session
    context = _session_context(session)
    if context is None:
        return None
    party, location, evse_uid = context
    return session_model(
        session, party=party, location=location, evse_uid=evse_uid, token=roaming.token, now=now
    )


def session_push(
    *, session: ChargingSession, method: str = "PUT", idempotency_key: str = ""
) -> OutboxMessage | None:
    """PUT (or PATCH) the session to the eMSP of its token, if it is one's. Inside the
    caller's transaction."""
    roaming = RoamingSession.objects.filter(session=session).select_related("partner").first()
    if roaming is None:
        return None
    target = next((t for t in _targets("sessions") if t.partner_id == roaming.partner_id), None)
    if target is None:
        return None
    model = session_ocpi_model(roaming=roaming, now=timezone.now(), session=session)
    if model is None:
        return None
    party = model.party
    body = (
        SESSION_SERIALIZERS[target.version](model)
        if method == "PUT"
        else session_patch(model, version=target.version)
    )
    message = _enqueue(
        target,
        method=method,
        url=target.url("sessions", party.country_code, party.party_id, model.id),
        body=body,
        topic=f"sessions.{model.status.lower()}",
        ordering_key=_session_key(session),
        idempotency_key=idempotency_key,
    )
    RoamingSession.objects.filter(pk=roaming.pk).update(last_pushed_at=timezone.now())
    return message


def roaming_session_link(*, session: ChargingSession) -> RoamingSession | None:
    """Record that a session is an eMSP token's (the first time it is seen)."""
    existing = RoamingSession.objects.filter(session=session).first()
    if existing is not None:
        return existing
    targets = push_targets()
    token = _emsp_token(session, {t.partner_id for t in targets}) if targets else None
    if token is None:
        return None
    return RoamingSession.objects.create(session=session, partner_id=token.partner_id, token=token)


def on_session_changed(sender: Any, *, session: ChargingSession, event: str, **kwargs: Any) -> None:
    if not push_targets():
        return
    if roaming_session_link(session=session) is None:
        return
    key = f"session:{session.uid}:{event}"
    session_push(session=session, method="PUT", idempotency_key=key)


def sessions_patch_due(*, now: dt.datetime | None = None, limit: int = 500) -> int:
    """The periodic PATCH: charging roaming sessions last pushed OCPI_SESSION_PATCH_MINUTES
    ago or more."""
    now = now or timezone.now()
    if not _targets("sessions"):
        return 0
    due = now - dt.timedelta(minutes=settings.OCPI_SESSION_PATCH_MINUTES)
    ids = list(
        RoamingSession.objects.filter(
            session__status=ChargingSession.Status.ACTIVE, last_pushed_at__lte=due
        )
        .order_by("last_pushed_at")
        .values_list("session_id", flat=True)[:limit]
    )
    written = 0
    for session_id in ids:
        with transaction.atomic():
            session = ChargingSession.objects.get(pk=session_id)
            if session.status == ChargingSession.Status.ACTIVE and session_push(
                session=session, method="PATCH"
            ):
                written += 1
    return written


# --- CDRs ----------------------------------------------------------------------------------


def cdr_party(cdr: Cdr, default: OurParty | None) -> OurParty | None:
    """The party a CDR is sent under: its site's (the default party's without one)."""
    location = (
        Location.objects.filter(pk=cdr.location_id).select_related("ocpi_party__party").first()
        if cdr.location_id is not None
        else None
    )
    return _party_of(location, default) if location is not None else default


def cdr_push(*, cdr: Cdr) -> CdrPush | None:
    """POST the CDR (or credit CDR) to the eMSP of its session, once."""
    roaming = RoamingSession.objects.filter(session_id=cdr.session_id).first()
    if roaming is None:
        return None
    target = next((t for t in _targets("cdrs") if t.partner_id == roaming.partner_id), None)
    if target is None:
        return None
    existing = CdrPush.objects.filter(cdr=cdr, partner_id=roaming.partner_id).first()
    if existing is not None:
        return existing
    cdr = Cdr.objects.select_related("session", "tariff_version", "credit_of").get(pk=cdr.pk)
    party = cdr_party(cdr, _default_party())
    if party is None:
        return None
    body = CDR_SERIALIZERS[target.version](cdr, party=party, token=roaming.token)
    message = _enqueue(
        target,
        method="POST",
        url=target.url("cdrs"),
        body=body,
        topic="cdrs.credit" if cdr.credit else "cdrs.cdr",
        ordering_key=f"sessions:{cdr.session.uid}",
        idempotency_key=f"cdr:{cdr.uid}",
    )
    return CdrPush.objects.create(cdr=cdr, partner_id=roaming.partner_id, message_id=message.pk)


def on_cdr_created(sender: Any, *, cdr: Cdr, **kwargs: Any) -> None:
    if not _targets("cdrs"):
        return
    cdr_push(cdr=cdr)


def cdr_acknowledged(message: OutboxMessage, headers: dict[str, str]) -> None:
    """The outbound delivery hook of CDR POSTs: keep the partner's Location header."""
    location = next((v for k, v in headers.items() if k.lower() == "location"), "")
    CdrPush.objects.filter(message_id=message.pk).update(
        location_url=location[:2000], acknowledged_at=timezone.now()
    )


# --- lag and reconciliation ----------------------------------------------------------------


@dataclass(frozen=True)
class PushLag:
    waiting: int
    oldest_waiting_seconds: float | None
    dead: int
    delivered_last_hour: int
    median_lag_seconds: float | None
    max_lag_seconds: float | None


def partner_push_lag(*, partner_id: int, now: dt.datetime | None = None) -> PushLag:
    """How far behind the partner's pushes are: messages still waiting (and the oldest),
    dead letters, and the lag (written -> delivered) of the last hour's deliveries."""
    now = now or timezone.now()
    mine = OutboxMessage.objects.filter(destination_kind=KIND, destination_ref=str(partner_id))
    waiting = mine.filter(status__in=OPEN)
    oldest = waiting.aggregate(first=Min("created_at"))["first"]
    recent = list(
        mine.filter(status=OutboxMessage.Status.DELIVERED, delivered_at__gte=now - HOUR)
        .order_by("-delivered_at")
        .values_list("created_at", "delivered_at")[:5000]
    )
    lags = sorted(
        (delivered - created).total_seconds() for created, delivered in recent if delivered
    )
    return PushLag(
        waiting=waiting.count(),
        oldest_waiting_seconds=(now - oldest).total_seconds() if oldest else None,
        dead=mine.filter(status=OutboxMessage.Status.DEAD).count(),
        delivered_last_hour=len(lags),
        median_lag_seconds=lags[len(lags) // 2] if lags else None,
        max_lag_seconds=lags[-1] if lags else None,
    )


HOUR = dt.timedelta(hours=1)


def last_acknowledged_at(*, partner_id: int) -> dt.datetime | None:
    """Up to when the partner has everything: the write time of the oldest message it did
    not acknowledge (dead or still waiting), else of the newest it acknowledged."""
    mine = OutboxMessage.objects.filter(destination_kind=KIND, destination_ref=str(partner_id))
    missing = mine.exclude(status=OutboxMessage.Status.DELIVERED).aggregate(
        first=Min("created_at")
    )["first"]
    if missing is not None:
        return missing
    return mine.aggregate(last=Max("created_at"))["last"]


@dataclass
class Reconciliation:
    partner: str
    locations_checked: int = 0
    locations_sent: int = 0
    sessions_sent: int = 0
    tariffs_sent: int = 0
    dead_letters_retried: int = 0
    error: str = ""


def partner_reconcile(*, partner_id: int, now: dt.datetime | None = None) -> Reconciliation:
    """Re-send a partner what it is missing (the nightly task; also an admin action).

    - Locations (their receiver has GET): each site it may see is fetched from the partner;
      one it lacks, or holds with another last_updated, is PUT again. A partner that cannot
      be reached is left to its outbox (nothing is enqueued on top of what waits).
    - Sessions and tariffs (no GET we rely on): re-PUT what changed since the last push the
      partner acknowledged (`last_acknowledged_at`).
    - Its dead letters of CDR POSTs are delivered again (a CDR must reach it once).
    The HTTP calls are made outside any transaction; each PUT is written in its own.
    """
    now = now or timezone.now()
    partner = Partner.objects.get(pk=partner_id)
    report = Reconciliation(partner=partner.name)
    target = next((t for t in push_targets() if t.partner_id == partner_id), None)
    if target is None:
        report.error = "the partner receives no pushes (not registered, or no receiver URLs)"
        return report
    watermark = last_acknowledged_at(partner_id=partner_id)
    if "locations" in target.urls:
        try:
            _reconcile_locations(partner, target, report)
        except TransportError as error:
            report.error = f"locations: {error}"
    if "sessions" in target.urls and watermark is not None:
        changed = RoamingSession.objects.filter(
            partner_id=partner_id, session__updated_at__gte=watermark
        ).values_list("session_id", flat=True)
        for session_id in changed:
            with transaction.atomic():
                session = ChargingSession.objects.get(pk=session_id)
                if session_push(session=session, method="PUT"):
                    report.sessions_sent += 1
    if "tariffs" in target.urls and watermark is not None:
        current = selectors.tariff_versions_current(now=now)
        for version in current.filter(**{"last_updated__gte": watermark}):
            with transaction.atomic():
                report.tariffs_sent += _tariff_repush(version, target)
    dead_cdrs = OutboxMessage.objects.filter(
        destination_kind=KIND,
        destination_ref=str(partner_id),
        status=OutboxMessage.Status.DEAD,
        topic__startswith="cdrs.",
    ).values_list("pk", flat=True)
    for message_id in dead_cdrs:
        if outbox_message_redeliver(message_id=message_id):
            report.dead_letters_retried += 1
    return report


def _tariff_repush(version: TariffVersion, target: Target) -> int:
    # A new message (the version's own idempotency key names its first push).
    before = OutboxMessage.objects.filter(
        destination_kind=KIND,
        destination_ref=str(target.partner_id),
        idempotency_key=f"tariff-version:{version.pk}",
        status=OutboxMessage.Status.DELIVERED,
    ).exists()
    if before:
        return 0
    OutboxMessage.objects.filter(
        destination_kind=KIND,
        destination_ref=str(target.partner_id),
        idempotency_key=f"tariff-version:{version.pk}",
    ).update(idempotency_key=f"tariff-version:{version.pk}:{timezone.now().timestamp()}")
    return tariff_push(version=version, targets=[target])


def _reconcile_locations(partner: Partner, target: Target, report: Reconciliation) -> None:
    parties = list(OurParty.objects.filter(pk__in=target.party_ids))
    visible = selectors.locations_visible(parties=parties)
    default = next((p for p in parties if p.is_default), None)
    for location in visible.iterator(chunk_size=200):
        party = _party_of(location, default)
        if party is None:
            continue
        ours = location_model(location, default_party=default)
        code, envelope = outbound.ocpi_get(
            partner, target.url("locations", party.country_code, party.party_id, location.pk)
        )
        report.locations_checked += 1
        theirs = envelope.get("data") if envelope and envelope.get("status_code") == 1000 else None
        if isinstance(theirs, list):
            theirs = theirs[0] if theirs else None
        if isinstance(theirs, dict) and theirs.get("last_updated") == ocpi_datetime(
            ours.last_updated
        ):
            continue
        with transaction.atomic():
            report.locations_sent += location_push(location_id=location.pk, targets=[target])


def partners_reconcile() -> list[Reconciliation]:
    return [partner_reconcile(partner_id=t.partner_id) for t in push_targets()]


def push_due(*, now: dt.datetime | None = None) -> dict[str, int]:
    """The minute's beat: periodic session PATCHes, tariff versions that came into force."""
    now = now or timezone.now()
    return {
        "sessions": sessions_patch_due(now=now),
        "tariffs": tariffs_in_force_push(since=now - dt.timedelta(seconds=90), now=now),
    }


def _targets_changed(sender: Any, **kwargs: Any) -> None:
    push_targets_changed()


def connect() -> None:
    """Wire the pushes to the facts the lower apps announce (roaming's AppConfig.ready)."""
    from django.db.models.signals import m2m_changed, post_delete, post_save

    from billing.signals import cdr_created
    from sessions.signals import session_changed
    from stations.signals import evse_status_changed, network_changed, station_state_changed
    from tariffs.signals import tariff_version_published

    evse_status_changed.connect(on_evse_status_changed, dispatch_uid="roaming-push-evse")
    station_state_changed.connect(on_station_state_changed, dispatch_uid="roaming-push-station")
    network_changed.connect(on_network_changed, dispatch_uid="roaming-push-network")
    tariff_version_published.connect(on_tariff_version_published, dispatch_uid="roaming-tariff")
    session_changed.connect(on_session_changed, dispatch_uid="roaming-push-session")
    cdr_created.connect(on_cdr_created, dispatch_uid="roaming-push-cdr")
    post_save.connect(on_location_party_changed, sender=LocationParty, dispatch_uid="roaming-lp")

    for model in (Partner, OurParty):
        post_save.connect(
            _targets_changed, sender=model, dispatch_uid=f"roaming-t-{model.__name__}"
        )
        post_delete.connect(
            _targets_changed, sender=model, dispatch_uid=f"roaming-d-{model.__name__}"
        )
    m2m_changed.connect(
        _targets_changed, sender=Partner.allowed_parties.through, dispatch_uid="roaming-t-m2m"
    )
    outbound.pre_send_register(superseded)
    outbound.delivered_hook_register("cdrs", cdr_acknowledged)

"""Reads of roaming: tokens by hash, the parties a partner sees, the sites it may see."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.db.models import DateTimeField, F, Max, OuterRef, Prefetch, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from billing.models import Cdr
from roaming.models import EmspToken, IssuedToken, OurParty, Partner, RoamingSession
from roaming.tokens import token_hash
from stations.models import ChargingStation, Connector, Evse, Location
from tariffs.models import TariffAssignment, TariffVersion
from tariffs.selectors import tariff_version_select

# A partner's last contact is written at most this often (every request would be a write).
CONTACT_WRITE_INTERVAL = dt.timedelta(seconds=60)


def issued_token_find(*, tokens: list[str]) -> tuple[IssuedToken, str] | None:
    """The token we issued among the candidates of one Authorization header, with its text."""
    by_hash = {token_hash(token): token for token in tokens}
    issued = (
        IssuedToken.objects.select_related("partner").filter(token_hash__in=list(by_hash)).first()
    )
    if issued is None:
        return None
    return issued, by_hash[issued.token_hash]


def partner_contact_note(*, partner: Partner) -> None:
    """Record that the partner called us (a throttled single-row update, no lock)."""
    now = timezone.now()
    if partner.last_contact_at and now - partner.last_contact_at < CONTACT_WRITE_INTERVAL:
        return
    Partner.objects.filter(pk=partner.pk).update(last_contact_at=now)


def our_parties() -> list[OurParty]:
    return list(OurParty.objects.order_by("country_code", "party_id"))


def partner_parties(*, partner: Partner) -> list[OurParty]:
    return list(partner.allowed_parties.order_by("country_code", "party_id"))


# A site's stations with their EVSEs and connectors, in their physical order (three queries
# per page, whatever its size).
_NETWORK = Prefetch(
    "stations",
    queryset=ChargingStation.objects.filter(
        registration_status=ChargingStation.RegistrationStatus.ACCEPTED
    )
    .order_by("identity")
    .prefetch_related(
        Prefetch(
            "evses",
            queryset=Evse.objects.order_by("evse_id").prefetch_related(
                Prefetch("connectors", queryset=Connector.objects.order_by("connector_id"))
            ),
        )
    ),
)


def locations_visible(*, parties: list[OurParty]) -> QuerySet[Location]:
    """The published sites of these parties that OCPI can show (coordinates known), each
    with `last_updated`: the latest change of the site, its stations, EVSEs and connectors
    (a connector's status change is its EVSE's and its site's change too), ordered by it and
    then by id, so that pages stay put while a partner crawls."""
    if not parties:
        return Location.objects.none()
    owned = Q(ocpi_party__party__in=parties)
    if any(party.is_default for party in parties):
        owned |= Q(ocpi_party__isnull=True)
    station_changed = Subquery(
        ChargingStation.objects.filter(location=OuterRef("pk"))
        .values("location")
        .annotate(latest=Max(Greatest("updated_at", Coalesce("connected_at", "updated_at"))))
        .values("latest")
    )
    evse_changed = Subquery(
        Evse.objects.filter(station__location=OuterRef("pk"), status_at__isnull=False)
        .values("station__location")
        .annotate(latest=Max("status_at"))
        .values("latest")
    )
    connector_changed = Subquery(
        Connector.objects.filter(station__location=OuterRef("pk"), status_at__isnull=False)
        .values("station__location")
        .annotate(latest=Max("status_at"))
        .values("latest")
    )
    own = F("updated_at")
    return (
        Location.objects.filter(
            owned, publish=True, latitude__isnull=False, longitude__isnull=False
        )
        .select_related("ocpi_party__party")
        .prefetch_related(_NETWORK)
        .annotate(
            last_updated=Greatest(
                own,
                Coalesce(station_changed, own, output_field=DateTimeField()),
                Coalesce(evse_changed, own, output_field=DateTimeField()),
                Coalesce(connector_changed, own, output_field=DateTimeField()),
                output_field=DateTimeField(),
            )
        )
        .order_by("last_updated", "pk")
    )


def filter_dates(
    queryset: QuerySet[Any], *, date_from: dt.datetime | None, date_to: dt.datetime | None
) -> QuerySet[Any]:
    """OCPI's window on last_updated: date_from inclusive, date_to exclusive (the field is
    the annotation of locations_visible, hence the keyword dicts)."""
    if date_from is not None:
        queryset = queryset.filter(**{"last_updated__gte": date_from})
    if date_to is not None:
        queryset = queryset.filter(**{"last_updated__lt": date_to})
    return queryset


def tariff_versions_current(*, now: dt.datetime) -> QuerySet[TariffVersion]:
    """The version in force now of every tariff, with `last_updated`: when it was published,
    or when it came into force if that was later; ordered by it, then by id."""
    in_force = Subquery(
        TariffVersion.objects.filter(tariff=OuterRef("tariff"), effective_from__lte=now)
        .order_by("-effective_from", "-number")
        .values("pk")[:1]
    )
    return (
        TariffVersion.objects.filter(effective_from__lte=now)
        .annotate(current=in_force)
        .filter(pk=F("current"))
        .annotate(
            last_updated=Greatest("created_at", "effective_from", output_field=DateTimeField())
        )
        .order_by("last_updated", "pk")
    )


def emsp_token_find(
    *, country_code: str, party_id: str, uid: str, token_type: str
) -> EmspToken | None:
    return EmspToken.objects.filter(
        country_code=country_code.upper(), party_id=party_id.upper(), uid=uid, type=token_type
    ).first()


class ConnectorTariffs:
    """The tariff that applies to a connector now, as `tariffs.selectors.tariff_version_select`
    picks it for a charge without an account of ours (a roaming driver, REGULAR type): the
    assignment rules of the rating, the tariff ids read once.

    The choice is asked once per place that can differ: per connector only for stations with
    EVSE or connector assignments, per station for stations with assignments of their own, per
    site for sites with assignments of their own, and once for everything else (only
    network-wide assignments apply there). A page of 100 sites without tariffs of their own
    costs one choice, not one per connector."""

    def __init__(self, *, now: dt.datetime) -> None:
        self.now = now
        self.ids: dict[int, str] = {}
        self.chosen: dict[tuple[Any, ...], tuple[int, int] | None] = {}
        placed = list(TariffAssignment.objects.values_list("station_id", "evse_id", "location_id"))
        self.stations_with_own = {station for station, _, _ in placed if station is not None}
        self.stations_per_evse = {
            station for station, evse, _ in placed if station is not None and evse is not None
        }
        self.sites_with_own = {
            site for station, _, site in placed if station is None and site is not None
        }

    def __call__(self, station: ChargingStation, evse: Evse, connector: Connector) -> list[str]:
        key: tuple[Any, ...]
        if station.pk in self.stations_per_evse:
            key = ("connector", station.pk, evse.evse_id, connector.connector_id)
        elif station.pk in self.stations_with_own:
            key = ("station", station.pk)
        elif station.location_id in self.sites_with_own:
            key = ("site", station.location_id)
        else:
            key = ("network",)  # only network-wide assignments apply here
        if key not in self.chosen:
            self.chosen[key] = tariff_version_select(
                station_id=station.pk,
                evse_id=evse.evse_id,
                connector_id=connector.connector_id,
                at=self.now,
            )
        chosen = self.chosen[key]
        if chosen is None:
            return []
        version_id = chosen[0]
        if version_id not in self.ids:
            self.ids[version_id] = TariffVersion.objects.values_list(
                "tariff__tariff_id", flat=True
            ).get(pk=version_id)
        return [self.ids[version_id]]


def location_for_push(*, location_id: int) -> Location | None:
    """One site with its network, whatever its publishing (a push says when it stops)."""
    return (
        Location.objects.filter(pk=location_id)
        .select_related("ocpi_party__party")
        .prefetch_related(_NETWORK)
        .first()
    )


def roaming_sessions(*, partner: Partner) -> QuerySet[RoamingSession]:
    """The sessions of the partner's tokens with `last_updated` (the session's last change),
    ordered by it, then by id: pages stay put while the partner crawls."""
    return (
        RoamingSession.objects.filter(partner=partner)
        .select_related("session", "token")
        .annotate(last_updated=F("session__updated_at"))
        .order_by("last_updated", "pk")
    )


def roaming_cdrs(*, partner: Partner) -> QuerySet[Cdr]:
    """The CDRs of the partner's sessions, credit CDRs included, oldest first, then by id."""
    return (
        Cdr.objects.filter(session__roaming__partner=partner)
        .select_related("session", "tariff_version", "credit_of", "location__ocpi_party__party")
        .annotate(last_updated=F("created_at"))
        .order_by("last_updated", "pk")
    )

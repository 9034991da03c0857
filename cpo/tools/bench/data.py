"""The rows a simulated fleet needs and the counts that check what it sent was stored.

Generated stations are created in bulk (one INSERT per thousand rows per table), each with its
own derived password hashed as any station's is.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db import transaction
from django.db.models import Count

from cpo.tools.simulator import StationSpec
from stations.models import (
    ChargingStation,
    Connector,
    ConnectorStatusEvent,
    Evse,
    Location,
    station_password_hash,
)

BENCH_LOCATION = "Simulated fleet"
BENCH_TAG = "BENCH-TAG-OK"


BENCH_TARIFF = "BENCH-STANDARD"
COST_DISPLAY_EVERY = 4


def _fleet_token_and_tariff(*, id_tag: str, site: Location) -> None:
    """The fleet's token as a real customer's is: an account, a monthly energy budget, a
    concurrency limit and an allowed site, so every Authorize and start runs the authorization
    rules; and a tariff on the site, so sessions are priced and live cost is computed."""
    from decimal import Decimal

    from sessions.models import CustomerAccount, IdToken, normalize_uid
    from tariffs.models import PriceComponent, Tariff, TariffAssignment, TariffElement
    from tariffs.services import tariff_version_publish

    account, _ = CustomerAccount.objects.get_or_create(name="Benchmark fleet")
    token = IdToken.objects.filter(uid_normalized=normalize_uid(id_tag)).first()
    if token is None:
        token = IdToken(uid=id_tag, type=IdToken.Type.ISO14443, visual_number=id_tag)
    token.account = account
    token.max_concurrent_sessions = 30000
    token.budget_energy_wh = Decimal("1000000000")
    token.budget_period = IdToken.BudgetPeriod.MONTH
    token.save()
    token.allowed_locations.set([site])
    tariff, created = Tariff.objects.get_or_create(
        tariff_id=BENCH_TARIFF, defaults={"name": "Benchmark standard", "currency": "EUR"}
    )
    if created:
        energy = TariffElement.objects.create(tariff=tariff, position=0)
        PriceComponent.objects.create(
            element=energy, type="ENERGY", price=Decimal("0.30"), vat=Decimal("21"), step_size=1
        )
        PriceComponent.objects.create(
            element=energy, type="FLAT", price=Decimal("0.50"), vat=Decimal("21"), step_size=1
        )
    if not tariff.versions.exists():
        tariff_version_publish(tariff=tariff, effective_from=datetime(2020, 1, 1, tzinfo=UTC))
    TariffAssignment.objects.get_or_create(tariff=tariff, location=site, station=None, account=None)


@dataclass(frozen=True)
class FleetRows:
    first_id: int
    last_id: int
    created: int


@transaction.atomic
def fleet_stations_create(*, specs: list[StationSpec], id_tag: str = BENCH_TAG) -> FleetRows:
    """Create (or reset the passwords of) the stations of `specs`, with EVSEs and connectors,
    and the accepted id tag they charge with.

    1. Stations that exist keep their rows and get the spec's password and protocol.
    2. Missing stations are created Accepted at one site, in bulk.
    3. Each gets one EVSE per connector (the 1.6 mapping: connector n is EVSE n) with one
       connector, as an operator would have configured them.
    """
    site, _ = Location.objects.get_or_create(
        name=BENCH_LOCATION, defaults={"city": "Amsterdam", "time_zone": "Europe/Amsterdam"}
    )
    _fleet_token_and_tariff(id_tag=id_tag, site=site)
    by_identity = {s.identity: s for s in specs}
    existing = {
        station.identity: station
        for station in ChargingStation.objects.filter(identity__in=list(by_identity))
    }
    for identity, station in existing.items():
        spec = by_identity[identity]
        station.set_password(spec.password or "")
        station.protocol = spec.protocol
        station.registration_status = ChargingStation.RegistrationStatus.ACCEPTED
    ChargingStation.objects.bulk_update(
        list(existing.values()),
        ["password_hash", "protocol", "registration_status"],
        batch_size=1000,
    )
    new = [
        ChargingStation(
            identity=spec.identity,
            location=site,
            protocol=spec.protocol,
            password_hash=station_password_hash(spec.password) if spec.password else "",
            registration_status=ChargingStation.RegistrationStatus.ACCEPTED,
            # A quarter show the driver the running cost: the live-cost path is measured too.
            cost_display_enabled=number % COST_DISPLAY_EVERY == 0,
        )
        for number, spec in enumerate(specs)
        if spec.identity not in existing
    ]
    ChargingStation.objects.bulk_create(new, batch_size=1000)
    ids = dict(
        ChargingStation.objects.filter(identity__in=list(by_identity)).values_list("identity", "pk")
    )
    have_evses = set(
        Evse.objects.filter(station_id__in=list(ids.values())).values_list("station_id", "evse_id")
    )
    evses = [
        Evse(station_id=ids[spec.identity], evse_id=n, uid=f"{spec.identity}-{n}")
        for spec in specs
        for n in range(1, spec.connectors + 1)
        if (ids[spec.identity], n) not in have_evses
    ]
    Evse.objects.bulk_create(evses, batch_size=1000)
    lonely = (
        Evse.objects.filter(station_id__in=list(ids.values()))
        .annotate(n=Count("connectors"))
        .filter(n=0)
        .values_list("pk", "station_id")
    )
    Connector.objects.bulk_create(
        [Connector(station_id=station_id, evse_id=pk, connector_id=1) for pk, station_id in lonely],
        batch_size=1000,
    )
    return FleetRows(min(ids.values()), max(ids.values()), len(new))


def fleet_rows_count(*, first_id: int, last_id: int) -> dict[str, int]:
    """Rows stored for the stations with primary keys in [first_id, last_id]."""
    from sessions.models import ChargingSession, MeterSample

    in_fleet = {"station__pk__range": (first_id, last_id)}
    stations = ChargingStation.objects.filter(pk__range=(first_id, last_id))
    return {
        "stations_booted": stations.filter(last_boot_at__isnull=False).count(),
        "stations_online": stations.filter(is_online=True).count(),
        "status_events": ConnectorStatusEvent.objects.filter(**in_fleet).count(),
        "sessions": ChargingSession.objects.filter(**in_fleet).count(),
        "samples": MeterSample.objects.filter(**in_fleet).count(),
    }


def fleet_acknowledged_missing(
    *, first_id: int, last_id: int, transactions: list[str], samples: list[str]
) -> dict[str, Any]:
    """Every transaction and meter value the fleet saw acknowledged, looked up one by one:
    how many are not stored (a count of rows can hide one lost beside one doubled).

    `transactions`: "identity<TAB>transaction id"; `samples`: "identity<TAB>timestamp<TAB>n",
    n sampled values sent at that timestamp (the simulator's timestamps are unique per station).
    """
    from sessions.models import ChargingSession, MeterSample

    ids = dict(
        ChargingStation.objects.filter(pk__range=(first_id, last_id)).values_list("identity", "pk")
    )
    stored_transactions: set[tuple[int, str]] = set()
    for station_id, transaction_id, ocpp16_id in ChargingSession.objects.filter(
        station__pk__range=(first_id, last_id)
    ).values_list("station_id", "transaction_id", "ocpp16_transaction_id"):
        stored_transactions.add((station_id, transaction_id))
        if ocpp16_id is not None:
            stored_transactions.add((station_id, str(ocpp16_id)))
    stored_samples = Counter(
        MeterSample.objects.filter(station__pk__range=(first_id, last_id)).values_list(
            "station_id", "timestamp"
        )
    )
    missing_transactions = [
        key
        for key in transactions
        if (ids.get(key.split("\t")[0], 0), key.split("\t")[1]) not in stored_transactions
    ]
    missing_samples = []
    for key in samples:
        identity, timestamp, count = key.split("\t")
        at = datetime.fromisoformat(timestamp)
        if stored_samples[(ids.get(identity, 0), at)] < int(count):
            missing_samples.append(key)
    return {
        "transactions_checked": len(transactions),
        "transactions_missing": len(missing_transactions),
        "meter_values_checked": len(samples),
        "meter_values_missing": len(missing_samples),
        "examples": (missing_transactions + missing_samples)[:5],
    }

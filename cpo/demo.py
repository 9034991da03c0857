"""Demo data: the network of the README's "Demo data" section.

Loaded only when asked (`make demo`, `DEMO=1 make run`) and on the first run on the embedded
defaults, so that a newcomer's `make run` shows a working network. Loading it again creates
what is missing and never touches a login or a station that exists: a password once set, by
the demo or by an operator, stays.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from cpo.lib.env import envstr

DEMO_LOGINS = [
    ("Admin", "admin", "admin-demo-2026"),
    ("Operator", "operator", "operator-demo-2026"),
    ("Finance", "finance", "finance-demo-2026"),
    ("Support", "support", "support-demo-2026"),
]
DEMO_STATIONS: list[dict[str, Any]] = [
    {"identity": "DEMO-16", "protocol": "ocpp1.6", "password": "DEMO-16-secret-pass", "evses": 2},
    {
        "identity": "DEMO-201",
        "protocol": "ocpp2.0.1",
        "password": "DEMO-201-secret-pass",
        "evses": 2,
    },
]
DEMO_TOKENS = ["DEMO-TAG-OK", "DEMO-TAG-BLOCKED", "DEMO-TAG-EXPIRED"]
DEMO_TARIFF_ID = "DEMO-STANDARD"


@dataclass
class DemoLoad:
    """What one load created: the only time its passwords are shown."""

    logins: list[tuple[str, str, str]] = field(default_factory=list)
    stations: list[dict[str, Any]] = field(default_factory=list)


def demo_data_wanted() -> tuple[bool, str]:
    """Whether the run command loads the demo data, and why.

    DEMO=1 asks for it and DEMO=0 refuses it; unset, it is loaded on the first run on the
    embedded defaults (no DATABASE_URL, a database without any login yet) and never on a
    production database.
    """
    from cpo.lib.env import envbool
    from cpo.models import User

    if envstr("DEMO").strip():
        wanted = envbool("DEMO", False)
        return wanted, "DEMO=1" if wanted else "DEMO=0"
    if settings.DATABASE_URL:
        return False, "DATABASE_URL is set"
    if User.objects.exists():
        return False, "not the first run"
    return True, "first run on the embedded defaults"


@transaction.atomic
def demo_data_load() -> DemoLoad:
    """Create what is missing of the demo logins, site, stations, tokens, account and tariff.

    Logins and stations that exist are left as they are (password, role, registration); the
    site, account, tokens and tariff are put back to their demo values.
    """
    from django.contrib.auth.models import Group

    from cpo.models import User
    from sessions.models import CustomerAccount, Driver, IdToken
    from stations.models import ChargingStation, Connector, Evse, Location
    from tariffs.models import PriceComponent, Tariff, TariffAssignment, TariffElement
    from tariffs.services import tariff_version_publish

    load = DemoLoad()
    for role, username, password in DEMO_LOGINS:
        if User.objects.filter(username=username).exists():
            continue
        user = User.objects.create_user(
            username=username,
            email=f"{username}@demo.invalid",
            password=password,
            is_staff=True,
            is_superuser=role == "Admin",
        )
        if role != "Admin":
            group = Group.objects.get(name=role if role != "Operator" else "Operators")
            user.groups.set([group])
        load.logins.append((role, username, password))

    site, _ = Location.objects.update_or_create(
        name="Demo Site Amsterdam",
        defaults={
            "address": "Stationsplein 1",
            "postal_code": "1012 AB",
            "city": "Amsterdam",
            "country": "NLD",
            "latitude": Decimal("52.378900"),
            "longitude": Decimal("4.900400"),
            "time_zone": "Europe/Amsterdam",
        },
    )
    for spec in DEMO_STATIONS:
        station = ChargingStation.objects.filter(identity=spec["identity"]).first()
        if station is None:
            station = ChargingStation(
                identity=spec["identity"],
                location=site,
                protocol=spec["protocol"],
                registration_status=ChargingStation.RegistrationStatus.ACCEPTED,
                cost_display_enabled=spec["protocol"] == "ocpp2.0.1",
            )
            station.set_password(spec["password"])
            station.save()
            load.stations.append(spec)
        for number in range(1, spec["evses"] + 1):
            evse, _ = Evse.objects.get_or_create(
                station=station,
                evse_id=number,
                defaults={
                    "uid": f"{station.identity}-{number}",
                    "emi3_id": f"NL*DMO*E{station.identity.replace('-', '')}*{number}",
                },
            )
            Connector.objects.get_or_create(
                station=station,
                evse=evse,
                connector_id=1,
                defaults={"max_power_w": 22000 if number == 1 else 11000},
            )

    account, _ = CustomerAccount.objects.update_or_create(
        name="Demo Fleet BV",
        defaults={
            "kind": CustomerAccount.Kind.COMPANY,
            "legal_name": "Demo Fleet B.V.",
            "address": "Keizersgracht 100",
            "postal_code": "1015 AA",
            "city": "Amsterdam",
            "country": "NL",
            "vat_id": "NL000099998B57",
            "email": "billing@demo-fleet.invalid",
            "currency": "EUR",
        },
    )
    driver, _ = Driver.objects.get_or_create(
        account=account, name="Dana Driver", defaults={"email": "dana@demo-fleet.invalid"}
    )
    now = timezone.now()
    token_fields: dict[str, dict[str, Any]] = {
        "DEMO-TAG-OK": {
            "driver": driver,
            "account": account,
            "blocked": False,
            "valid_until": None,
            "visual_number": "DEMO-0001",
        },
        "DEMO-TAG-BLOCKED": {
            "driver": None,
            "account": account,
            "blocked": True,
            "valid_until": None,
            "visual_number": "DEMO-0002",
        },
        "DEMO-TAG-EXPIRED": {
            "driver": None,
            "account": account,
            "blocked": False,
            "valid_until": now - timedelta(days=30),
            "visual_number": "DEMO-0003",
        },
    }
    for uid, fields in token_fields.items():
        # Central: printed demo ids, not RFID hex uids.
        IdToken.objects.update_or_create(
            uid_normalized=uid.lower(),
            issuer_country_code="",
            issuer_party_id="",
            defaults={"uid": uid, "type": IdToken.Type.CENTRAL, **fields},
        )

    tariff, created = Tariff.objects.get_or_create(
        tariff_id=DEMO_TARIFF_ID,
        defaults={
            "name": "Demo standard",
            "currency": "EUR",
            "display_text": "0.30 EUR/kWh + 0.50 EUR start, 2.00 EUR/h parking after charging",
        },
    )
    if created:
        energy = TariffElement.objects.create(tariff=tariff, position=0)
        PriceComponent.objects.create(
            element=energy, type="ENERGY", price=Decimal("0.30"), vat=Decimal("21"), step_size=1
        )
        PriceComponent.objects.create(
            element=energy, type="FLAT", price=Decimal("0.50"), vat=Decimal("21"), step_size=1
        )
        parking = TariffElement.objects.create(tariff=tariff, position=1)
        PriceComponent.objects.create(
            element=parking,
            type="PARKING_TIME",
            price=Decimal("2.00"),
            vat=Decimal("21"),
            step_size=60,
        )
    if not tariff.versions.exists():
        # In force before the thirty days of demo history below.
        tariff_version_publish(tariff=tariff, effective_from=now - timedelta(days=31))
    TariffAssignment.objects.get_or_create(tariff=tariff, location=None, station=None, account=None)
    demo_history_load(now=now)
    return load


def demo_history_load(*, now: datetime | None = None) -> None:
    """Thirty days of past charging on the demo stations, so the dashboard's charts, the station
    page and the reports have something to show: sessions with meter samples rated into CDRs,
    status reports and connections. Created once."""
    import random
    import uuid

    from sessions.models import ChargingSession, IdToken, MeterSample
    from stations.models import ChargingStation, ConnectorStatusEvent, StationConnection
    from tariffs.models import SessionTariff, Tariff

    identities = [spec["identity"] for spec in DEMO_STATIONS]
    stations = list(ChargingStation.objects.filter(identity__in=identities))
    history = ChargingSession.objects.filter(station__in=stations)
    if history.filter(transaction_id__startswith="demo-").exists():
        return
    now = (now or timezone.now()).replace(microsecond=0)
    rng = random.Random(2026)  # the same history on every machine
    token = IdToken.objects.get(uid_normalized="demo-tag-ok")
    version = Tariff.objects.get(tariff_id=DEMO_TARIFF_ID).versions.order_by("number")[0]
    ended: list[int] = []
    samples: list[MeterSample] = []
    for station in stations:
        register = Decimal(rng.randint(100_000, 900_000))
        start_of_history = now - timedelta(days=30)
        StationConnection.objects.create(
            station=station,
            protocol=station.protocol,
            remote_addr="192.0.2.10",
            node="demo",
            connected_at=start_of_history,
            disconnected_at=now - timedelta(hours=3),
            close_reason="demo: the simulator stopped",
        )
        ChargingStation.objects.filter(pk=station.pk, last_seen_at__isnull=True).update(
            last_seen_at=now - timedelta(hours=3)
        )
        for day in range(30, 0, -1):
            for _ in range(rng.randint(1, 3)):
                evse_id = rng.randint(1, 2)
                started = now - timedelta(
                    days=day, hours=rng.randint(0, 20), minutes=rng.randint(0, 59)
                )
                minutes = rng.choice((30, 45, 60, 90, 120))
                power_w = Decimal(rng.choice((7400, 11000, 22000 if evse_id == 1 else 11000)))
                energy = (power_w * minutes / 60).quantize(Decimal(1))
                session = ChargingSession.objects.create(
                    station=station,
                    evse_id=evse_id,
                    connector_id=1,
                    transaction_id=f"demo-{uuid.uuid4().hex[:24]}",
                    id_token=token,
                    id_tag=token.uid,
                    account=token.account,
                    auth_status="Accepted",
                    status=ChargingSession.Status.COMPLETED,
                    started_at=started,
                    ended_at=started + timedelta(minutes=minutes),
                    meter_start_wh=register,
                    meter_stop_wh=register + energy,
                    meter_last_wh=register + energy,
                    energy_wh=energy,
                    stop_reason="Local",
                )
                SessionTariff.objects.create(session=session, version=version)
                for step in range(0, minutes + 1, 15):
                    moment = started + timedelta(minutes=step)
                    common = {
                        "session": session,
                        "station": station,
                        "evse_id": evse_id,
                        "connector_id": 1,
                        "timestamp": moment,
                        "context": "Sample.Periodic",
                    }
                    samples.append(
                        MeterSample(
                            **common,
                            measurand="Energy.Active.Import.Register",
                            unit="Wh",
                            value=register + (energy * step / minutes).quantize(Decimal(1)),
                        )
                    )
                    samples.append(
                        MeterSample(
                            **common,
                            measurand="Power.Active.Import",
                            unit="W",
                            value=power_w if step < minutes else Decimal(0),
                        )
                    )
                register += energy
                ended.append(session.pk)
        # Two days of status reports, with one fault on the second connector.
        for evse_id in (1, 2):
            moment = now - timedelta(days=2)
            for status in ("Available", "Charging", "Available", "Faulted", "Available"):
                if status == "Faulted" and evse_id == 1:
                    status = "Preparing"
                ConnectorStatusEvent.objects.create(
                    station=station,
                    evse_id=evse_id,
                    connector_id=1,
                    status=status,
                    error_code="GroundFailure" if status == "Faulted" else "",
                    timestamp=moment,
                )
                moment += timedelta(hours=rng.randint(3, 9))
    MeterSample.objects.bulk_create(samples, ignore_conflicts=True)
    from billing.services import cdr_create_for_session

    for session_id in ended:
        cdr_create_for_session(session_id=session_id)

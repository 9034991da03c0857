"""Demo data for the run command: documented in the README, loaded idempotently on every start."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

DEMO_LOGINS = [
    ("Admin", "admin", "admin-demo-2026"),
    ("Operator", "operator", "operator-demo-2026"),
    ("Finance", "finance", "finance-demo-2026"),
    ("Support", "support", "support-demo-2026"),
]
DEMO_STATIONS = [
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


@transaction.atomic
def demo_data_load() -> None:
    """Create or reset the demo logins, site, stations, tokens, account and tariff."""
    from django.contrib.auth.models import Group

    from cpo.models import User
    from sessions.models import CustomerAccount, Driver, IdToken
    from stations.models import ChargingStation, Connector, Evse, Location
    from tariffs.models import PriceComponent, Tariff, TariffAssignment, TariffElement

    for role, username, password in DEMO_LOGINS:
        user, _ = User.objects.get_or_create(username=username)
        user.is_staff = True
        user.is_superuser = role == "Admin"
        user.email = f"{username}@demo.invalid"
        user.set_password(password)
        user.save()
        if role != "Admin":
            group = Group.objects.get(name=role if role != "Operator" else "Operators")
            user.groups.set([group])

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
        station, _ = ChargingStation.objects.get_or_create(
            identity=spec["identity"], defaults={"location": site, "protocol": spec["protocol"]}
        )
        station.location = site
        station.registration_status = ChargingStation.RegistrationStatus.ACCEPTED
        station.cost_display_enabled = spec["protocol"] == "ocpp2.0.1"
        station.set_password(spec["password"])
        station.save()
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
    token_fields = {
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
        IdToken.objects.update_or_create(
            uid_normalized=uid.lower(),
            type=IdToken.Type.ISO14443,
            issuer_country_code="",
            issuer_party_id="",
            defaults={"uid": uid, **fields},
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
    TariffAssignment.objects.get_or_create(tariff=tariff, location=None, station=None, account=None)

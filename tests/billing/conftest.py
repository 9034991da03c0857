"""Billing fixtures: a site with a station, accounts, tokens, and ended sessions with CDRs."""

from __future__ import annotations

import base64
import datetime as dt
import itertools
import re
import uuid
import zlib
from decimal import Decimal

import pytest
from django.contrib.auth.models import Group

from billing.models import Cdr
from sessions.models import ChargingSession, CustomerAccount, IdToken, MeterSample
from stations.models import ChargingStation, Connector, Evse, Location
from tariffs.models import PriceComponent, SessionTariff, Tariff, TariffElement
from tariffs.services import tariff_version_publish

UTC = dt.UTC
_seq = itertools.count(1)


def make_site(identity: str = "CP-BILL-1") -> ChargingStation:
    location = Location.objects.create(
        name="Harbour car park",
        address="Kade 1",
        postal_code="1011 AA",
        city="Amsterdam",
        country="NLD",
        time_zone="Europe/Amsterdam",
        latitude=Decimal("52.370216"),
        longitude=Decimal("4.895168"),
    )
    station = ChargingStation.objects.create(identity=identity, location=location)
    evse = Evse.objects.create(
        station=station, evse_id=1, uid=f"{identity}-1", emi3_id="NL*CPO*E1*1"
    )
    Connector.objects.create(station=station, evse=evse, connector_id=1)
    return station


def make_account(name: str, **kwargs: object) -> CustomerAccount:
    return CustomerAccount.objects.create(
        name=name,
        legal_name=f"{name} B.V.",
        address="Street 1",
        city="Utrecht",
        vat_id=f"NL{next(_seq):09d}B01",
        **kwargs,
    )


def make_token(account: CustomerAccount, uid: str | None = None) -> IdToken:
    uid = uid or f"04{next(_seq):010X}"
    return IdToken.objects.create(uid=uid, account=account, visual_number=f"NL-CPO-{uid}")


def make_tariff(
    energy: str = "0.30", parking: str = "2.00", vat: str = "21", *, tariff_id: str = ""
) -> Tariff:
    tariff = Tariff.objects.create(
        tariff_id=tariff_id or f"T-{next(_seq)}", name="Standard", currency="EUR"
    )
    element = TariffElement.objects.create(tariff=tariff, position=0)
    PriceComponent.objects.create(
        element=element, type="ENERGY", price=Decimal(energy), vat=Decimal(vat), step_size=1
    )
    PriceComponent.objects.create(
        element=element, type="PARKING_TIME", price=Decimal(parking), vat=Decimal(vat), step_size=60
    )
    # Its first version, in force long before the sessions of the tests.
    tariff_version_publish(tariff=tariff, effective_from=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    return tariff


def priced_with(session: ChargingSession, tariff: Tariff) -> ChargingSession:
    """The session priced with the tariff's latest version, as if it had applied at its start."""
    SessionTariff.objects.update_or_create(
        session=session, defaults={"version": tariff.versions.order_by("-number").first()}
    )
    return session


def make_ended_session(
    station: ChargingStation,
    token: IdToken,
    tariff: Tariff,
    *,
    start: dt.datetime,
    minutes: int = 60,
    energy_wh: int = 10_000,
    signed: bool = False,
) -> ChargingSession:
    """An ended session as the OCPP edge leaves it: meter registers, samples, frozen tariff."""
    end = start + dt.timedelta(minutes=minutes)
    session = ChargingSession.objects.create(
        station=station,
        evse_id=1,
        connector_id=1,
        transaction_id=str(uuid.uuid4()),
        id_token=token,
        id_tag=token.uid,
        account=token.account,
        auth_status="Accepted",
        status=ChargingSession.Status.COMPLETED,
        started_at=start,
        ended_at=end,
        meter_start_wh=Decimal(1000),
        meter_stop_wh=Decimal(1000 + energy_wh),
        meter_last_wh=Decimal(1000 + energy_wh),
        energy_wh=Decimal(energy_wh),
        stop_reason="Local",
    )
    priced_with(session, tariff)
    samples = [
        MeterSample(
            session=session,
            station=station,
            evse_id=1,
            connector_id=1,
            timestamp=start + dt.timedelta(minutes=minutes * i // 4),
            measurand="Energy.Active.Import.Register",
            unit="Wh",
            value=Decimal(1000 + energy_wh * i // 4),
            context="Sample.Periodic",
        )
        for i in range(5)
    ]
    if signed:
        for context, offset in (("Transaction.Begin", 0), ("Transaction.End", minutes)):
            samples.append(
                MeterSample(
                    session=session,
                    station=station,
                    evse_id=1,
                    connector_id=1,
                    timestamp=start + dt.timedelta(minutes=offset),
                    measurand="Energy.Active.Import.Register",
                    context=context,
                    format="SignedData",
                    location="Outlet",
                    signed_data=f'OCMF|{{"FV":"1.0","RD":[{{"TX":"{context[12]}"}}]}}|{{"SD":"3045"}}',
                    signing_method="ECDSA-secp256r1-SHA256",
                    encoding_method="OCMF",
                    public_key="3059301306072a8648ce3d0201",
                )
            )
    MeterSample.objects.bulk_create(samples)
    return session


def make_cdr(
    account: CustomerAccount,
    station: ChargingStation,
    *,
    end: dt.datetime,
    excl: str,
    vat_rate: str | None = "21",
    currency: str = "EUR",
    location: Location | None = None,
) -> Cdr:
    """A CDR straight from the ORM, for invoicing tests that are not about rating; `location`
    is its site snapshot (none: an older CDR, whose site is the station's)."""
    excl_d = Decimal(excl)
    vat = (excl_d * Decimal(vat_rate) / 100).quantize(Decimal("0.01")) if vat_rate else Decimal(0)
    start = end - dt.timedelta(minutes=45)
    session = ChargingSession.objects.create(
        station=station,
        evse_id=1,
        connector_id=1,
        transaction_id=str(uuid.uuid4()),
        account=account,
        status=ChargingSession.Status.COMPLETED,
        started_at=start,
        ended_at=end,
        energy_wh=Decimal(7000),
    )
    cdr = Cdr(
        uid=str(uuid.uuid4()),
        session=session,
        account=account,
        start=start,
        end=end,
        location=location,
        site_name="Harbour car park",
        station_identity=station.identity,
        evse_uid="E1",
        connector_id=1,
        token_uid="04AA",
        token_visual_number="NL-CPO-04AA",
        currency=currency,
        total_energy_kwh=Decimal("7.000000"),
        total_time_h=Decimal("0.75"),
        total_energy_cost_excl_vat=excl_d,
        total_energy_cost_incl_vat=excl_d + vat,
        total_cost_excl_vat=excl_d,
        total_vat=vat,
        total_cost_incl_vat=excl_d + vat,
        vat_breakdown=[{"rate": vat_rate, "excl_vat": str(excl_d), "vat": str(vat)}],
    )
    cdr.save()
    return cdr


@pytest.fixture
def station(db) -> ChargingStation:  # noqa: ARG001
    return make_site()


def staff(username: str, role: str | None):
    from cpo.models import User

    user = User.objects.create_user(username=username, password="pw-12345-xyz", is_staff=True)
    if role:
        user.groups.add(Group.objects.get(name=role))
    return user


def _pdf_string(literal: bytes) -> str:
    """A PDF string literal's text: backslash escapes, octal ones (non-ASCII letters of the
    standard fonts' WinAnsi encoding, e.g. \\344 for ä) included."""
    unescaped = re.sub(
        rb"\\([0-7]{1,3}|.)",
        lambda m: bytes([int(m.group(1), 8)]) if m.group(1)[:1].isdigit() else m.group(1),
        literal,
    )
    return unescaped.decode("cp1252")


def pdf_text(pdf: bytes) -> str:
    """The text of a reportlab PDF (its page streams decoded, the shown strings joined)."""
    shown: list[str] = []
    for match in re.finditer(
        rb"/Filter\s*(\[[^\]]*\]|/\w+)[^>]*>>\s*stream\r?\n(.*?)endstream", pdf, re.S
    ):
        data = match.group(2).strip()
        if b"ASCII85" in match.group(1):
            data = base64.a85decode(data.removesuffix(b"~>"))
        if b"Flate" in match.group(1):
            data = zlib.decompress(data)
        for text in re.findall(rb"\(((?:[^()\\]|\\.)*)\)\s*Tj", data):
            shown.append(_pdf_string(text))
    return "\n".join(shown)

"""Session integrity at the service level: one energy rule, late and conflicting samples,
meter resets, forgotten and unfinished sessions, idempotent and locked starts.

The end-to-end versions over the websocket, with the CDR and the invoice line, are in
test_e2e_integrity.py.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from sessions import services
from sessions.models import ChargingSession, IdToken
from sessions.services import Sample, SampleBatch
from stations.models import ChargingStation
from tariffs.models import PriceComponent, Tariff, TariffAssignment, TariffElement
from tariffs.services import session_rate

pytestmark = pytest.mark.django_db

D = Decimal
T0 = dt.datetime(2026, 10, 1, 10, 0, tzinfo=dt.UTC)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


@pytest.fixture
def station() -> ChargingStation:
    return ChargingStation.objects.create(identity="CP-INTEGRITY", protocol="ocpp1.6")


@pytest.fixture
def card() -> IdToken:
    return IdToken.objects.create(uid="04AABBCCDD")


@pytest.fixture
def energy_tariff() -> Tariff:
    tariff = Tariff.objects.create(tariff_id="E", name="Energy", currency="EUR")
    element = TariffElement.objects.create(tariff=tariff, position=0)
    PriceComponent.objects.create(
        element=element, type="ENERGY", price=D("0.30"), vat=D(21), step_size=1
    )
    TariffAssignment.objects.create(tariff=tariff)
    return tariff


def start(station: ChargingStation, meter_start: int, **fields: Any) -> int:
    return services.session_start(
        station_id=station.pk,
        evse_id=fields.pop("evse_id", 1),
        connector_id=1,
        id_tag=fields.pop("id_tag", "04AABBCCDD"),
        meter_start_wh=D(meter_start),
        timestamp=fields.pop("timestamp", T0),
        **fields,
    ).transaction_id


def meter(station: ChargingStation, tx: int, *readings: tuple[float, str], **fields: Any) -> None:
    services.session_meter_samples(
        station_id=station.pk,
        batch=SampleBatch(
            1, 1, [Sample(timestamp=at(m), value=v, unit="Wh", **fields) for m, v in readings]
        ),
        transaction_id=tx,
    )


def stop(station: ChargingStation, tx: int, meter_stop: int, minutes: float = 60) -> None:
    services.session_stop(
        station_id=station.pk,
        transaction_id=tx,
        meter_stop_wh=D(meter_stop),
        timestamp=at(minutes),
    )


def session_of(tx: int) -> ChargingSession:
    return ChargingSession.objects.select_related("station").get(ocpp16_transaction_id=tx)


# --- 1. one rule for session energy -----------------------------------------------------------


def test_session_energy_rating_and_cdr_energy_agree_on_meter_stop(station, card, energy_tariff):
    tx = start(station, 0)
    meter(station, tx, (30, "74.48"))
    assert session_of(tx).energy_wh == D("74.48")  # live: what the meter says so far
    stop(station, tx, 74)
    session = session_of(tx)
    assert session.energy_wh == D(74)
    rating = session_rate(session=session)
    # Before: the engine's curve peaked at the 74.48 Wh sample.
    assert rating.total_energy_kwh == D("0.074")


# --- 3. a register that goes backwards --------------------------------------------------------


def test_a_meter_reset_mid_session_is_flagged_and_summed_per_segment(station, card, energy_tariff):
    tx = start(station, 12000)
    meter(station, tx, (10, "12030"), (20, "12061"))
    meter(station, tx, (30, "20"))
    live = session_of(tx)
    assert live.energy_wh == D(61 + 20)
    assert any("meter reset" in anomaly for anomaly in live.anomalies)
    meter(station, tx, (40, "35"))
    stop(station, tx, 40)
    session = session_of(tx)
    assert session.energy_wh == D(101)
    assert len([a for a in session.anomalies if a.startswith("meter reset")]) == 1
    rating = session_rate(session=session)
    assert rating.total_energy_kwh == D("0.101")
    assert rating.total_cost.excl_vat == D("0.03")

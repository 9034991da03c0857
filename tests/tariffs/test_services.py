"""Tariff selection, versions fixed at a session's start, and rating sessions from what chargers
reported (database)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from sessions.models import (
    ChargingSession,
    CustomerAccount,
    IdToken,
    MeterSample,
    TransactionEventRecord,
)
from stations.models import ChargingStation, ConnectorStatusEvent, Location
from tariffs import selectors, services
from tariffs.models import PriceComponent, Tariff, TariffAssignment, TariffElement

pytestmark = pytest.mark.django_db

D = Decimal
BERLIN = ZoneInfo("Europe/Berlin")
SINCE = dt.datetime(2000, 1, 1, tzinfo=dt.UTC)


def berlin(year: int, month: int, day: int, hour: int = 0, minute: int = 0) -> dt.datetime:
    return dt.datetime(year, month, day, hour, minute, tzinfo=BERLIN).astimezone(dt.UTC)


def make_tariff(
    tariff_id: str, *elements: list[tuple[Any, ...] | dict[str, Any]], **fields
) -> Tariff:
    """elements: lists of (type, price, vat, step) plus an optional dict of restrictions."""
    tariff = Tariff.objects.create(tariff_id=tariff_id, name=tariff_id, **fields)
    for position, spec in enumerate(elements):
        restrictions: dict[str, Any] = spec[-1] if isinstance(spec[-1], dict) else {}
        element = TariffElement.objects.create(tariff=tariff, position=position, **restrictions)
        for type_, price, vat, step in (c for c in spec if isinstance(c, tuple)):
            PriceComponent.objects.create(
                element=element,
                type=type_,
                price=D(price),
                vat=None if vat is None else D(vat),
                step_size=step,
            )
    # The first version, in force long before the sessions of these tests.
    services.tariff_version_publish(tariff=tariff, effective_from=SINCE)
    return tariff


def energy_tariff(tariff_id: str, price: str, **fields) -> Tariff:
    return make_tariff(tariff_id, [("ENERGY", price, "19", 1)], **fields)


@pytest.fixture
def site() -> Location:
    return Location.objects.create(name="Depot", time_zone="Europe/Berlin")


@pytest.fixture
def cp(site: Location) -> ChargingStation:
    return ChargingStation.objects.create(identity="CP-T1", location=site, protocol="ocpp1.6")


@pytest.fixture
def fleet() -> CustomerAccount:
    return CustomerAccount.objects.create(name="Fleet Co", kind=CustomerAccount.Kind.COMPANY)


def selected(station, evse=None, connector=None, account=None, at=None) -> str | None:
    choice = selectors.tariff_select(
        station=station,
        evse_id=evse,
        connector_id=connector,
        account_id=account.pk if account else None,
        at=at or berlin(2025, 3, 12, 12, 0),
    )
    return None if choice is None else choice.assignment.tariff.tariff_id


def test_most_specific_assignment_wins(cp, site, fleet):
    other_site = Location.objects.create(name="Elsewhere", time_zone="Europe/Berlin")
    far = ChargingStation.objects.create(identity="CP-FAR", location=other_site)
    neighbour = ChargingStation.objects.create(identity="CP-T2", location=site)
    for tariff_id, scope in [
        ("DEFAULT", {}),
        ("SITE", {"location": site}),
        ("STATION", {"station": cp}),
        ("EVSE", {"station": cp, "evse_id": 1}),
        ("CONNECTOR", {"station": cp, "evse_id": 1, "connector_id": 2}),
        ("FLEET-STATION", {"station": cp, "account": fleet}),
        ("FLEET-SITE", {"location": site, "account": fleet}),
    ]:
        TariffAssignment.objects.create(tariff=energy_tariff(tariff_id, "0.30"), **scope)

    assert selected(far) == "DEFAULT"
    assert selected(neighbour) == "SITE"
    assert selected(neighbour, account=fleet) == "FLEET-SITE"
    assert selected(cp, evse=3, connector=1) == "STATION"
    assert selected(cp, evse=3, connector=1, account=fleet) == "FLEET-STATION"
    assert selected(cp, evse=1, connector=1) == "EVSE"
    assert selected(cp, evse=1, connector=2) == "CONNECTOR"
    # A connector's own price beats an account price at the station level.
    assert selected(cp, evse=1, connector=2, account=fleet) == "CONNECTOR"
    # Another account does not get the fleet's price.
    stranger = CustomerAccount.objects.create(name="Someone")
    assert selected(cp, evse=3, connector=1, account=stranger) == "STATION"


def test_validity_of_assignments_and_tariffs(cp):
    TariffAssignment.objects.create(tariff=energy_tariff("BASE", "0.30"))
    TariffAssignment.objects.create(
        tariff=energy_tariff("SPRING", "0.25"),
        station=cp,
        valid_from=berlin(2025, 3, 1, 0, 0),
        valid_until=berlin(2025, 6, 1, 0, 0),
    )
    TariffAssignment.objects.create(
        tariff=energy_tariff("EXPIRED", "0.20", end_date_time=berlin(2025, 1, 1, 0, 0)),
        station=cp,
        evse_id=1,
    )
    # The EVSE assignment's tariff has ended: the next most specific applies.
    assert selected(cp, evse=1, connector=1, at=berlin(2025, 3, 12, 12, 0)) == "SPRING"
    assert selected(cp, evse=1, connector=1, at=berlin(2025, 6, 1, 0, 0)) == "BASE"
    assert selected(cp, evse=1, connector=1, at=berlin(2024, 12, 31, 23, 0)) == "EXPIRED"
    # A later valid_from at the same scope is a scheduled price change and wins.
    TariffAssignment.objects.create(
        tariff=energy_tariff("APRIL", "0.27"), station=cp, valid_from=berlin(2025, 4, 1, 0, 0)
    )
    assert selected(cp, at=berlin(2025, 4, 2, 0, 0)) == "APRIL"
    assert selected(cp, at=berlin(2025, 3, 31, 0, 0)) == "SPRING"


def make_session(cp, start, **fields) -> ChargingSession:
    """A session as the start transaction leaves it: stored, its tariff version fixed."""
    defaults = {"evse_id": 1, "connector_id": 1, "transaction_id": "1", "started_at": start}
    session = ChargingSession.objects.create(station=cp, **{**defaults, **fields})
    services.session_tariff_fix(session)
    return session


def fixed_tariff(session: ChargingSession) -> str | None:
    version = selectors.session_tariff_version(session=session)
    return None if version is None else version.ocpi["id"]


def energy_samples(session, points, measurand="Energy.Active.Import.Register", **fields):
    for moment, value in points:
        MeterSample.objects.create(
            session=session,
            station=session.station,
            evse_id=session.evse_id,
            connector_id=session.connector_id,
            timestamp=moment,
            measurand=measurand,
            value=D(value),
            raw_value=str(value),
            **fields,
        )


def test_start_fixes_the_accounts_price_and_later_versions_change_nothing(cp, fleet):
    TariffAssignment.objects.create(tariff=energy_tariff("PUBLIC", "0.40"))
    TariffAssignment.objects.create(tariff=energy_tariff("FLEET", "0.30"), account=fleet)
    token = IdToken.objects.create(uid="04AABBCC", account=fleet)
    start = berlin(2025, 3, 12, 9, 0)
    session = make_session(
        cp,
        start,
        id_token=token,
        meter_start_wh=D(1000),
        ended_at=start + dt.timedelta(hours=1),
        meter_stop_wh=D(11000),
        energy_wh=D(10000),
        status=ChargingSession.Status.COMPLETED,
    )

    version = selectors.session_tariff_version(session=session)
    assert version is not None
    assert version.ocpi["id"] == "FLEET"
    assert version.ocpi["elements"][0]["price_components"][0]["price"] == "0.3"

    # A later price change, published, and a second fix leave the session's price alone.
    PriceComponent.objects.filter(element__tariff__tariff_id="FLEET").update(price=D("0.90"))
    newer = services.tariff_version_publish(tariff=Tariff.objects.get(tariff_id="FLEET"))
    assert newer is not None
    assert (newer.number, newer.changes) == (
        2,
        "elements[0].price_components[ENERGY].price: 0.3 → 0.9",
    )
    services.session_tariff_fix(session)
    assert selectors.session_tariff_version(session=session) == version
    result = services.session_rate(session=session)
    assert result.total_cost.excl_vat == D("3.00")
    assert result.total_cost.incl_vat == D("3.57")


def test_roaming_partner_token_gets_the_partners_price(cp):
    partner = CustomerAccount.objects.create(
        name="eMSP X", kind=CustomerAccount.Kind.ROAMING_PARTNER, country_code="DE", party_id="XYZ"
    )
    TariffAssignment.objects.create(tariff=energy_tariff("PUBLIC", "0.40"))
    TariffAssignment.objects.create(tariff=energy_tariff("ROAMING-X", "0.35"), account=partner)
    token = IdToken.objects.create(
        uid="DEXYZC12345", type=IdToken.Type.RFID, issuer_country_code="DE", issuer_party_id="XYZ"
    )
    session = make_session(cp, berlin(2025, 3, 12, 9, 0), id_token=token)
    assert fixed_tariff(session) == "ROAMING-X"


def test_no_tariff_fixes_nothing_and_has_no_live_cost(cp):
    session = make_session(cp, berlin(2025, 3, 12, 9, 0))
    assert fixed_tariff(session) is None
    # Looked up once: the session's state says it has no tariff, and nothing is priced.
    assert services.session_cost_advance(session, until=berlin(2025, 3, 12, 9, 30)) == [
        "live_cost_state"
    ]
    assert services.session_cost_advance(session, until=berlin(2025, 3, 12, 9, 45)) == []
    assert session.live_cost is None
    with pytest.raises(services.TariffNotFound):
        services.session_rate(session=session)


def time_and_parking_tariff() -> Tariff:
    return make_tariff(
        "TP",
        [("FLAT", "1.00", "19", 1), ("ENERGY", "0.30", "19", 1), ("TIME", "2.00", "19", 60)],
        [("PARKING_TIME", "6.00", "19", 60)],
    )


def test_ocpp16_session_rated_from_samples_and_connector_status(cp):
    TariffAssignment.objects.create(tariff=time_and_parking_tariff())
    start = berlin(2025, 3, 12, 18, 0)
    session = make_session(
        cp,
        start,
        meter_start_wh=D(1000),
        ended_at=start + dt.timedelta(minutes=75),
        meter_stop_wh=D(11000),
        energy_wh=D(10000),
        status=ChargingSession.Status.COMPLETED,
    )
    energy_samples(
        session,
        [(start + dt.timedelta(minutes=30), 6000), (start + dt.timedelta(minutes=50), 11000)],
    )
    for minutes, status in [(-1, "Preparing"), (0, "Charging"), (50, "SuspendedEVSE")]:
        ConnectorStatusEvent.objects.create(
            station=cp,
            evse_id=1,
            connector_id=1,
            status=status,
            timestamp=start + dt.timedelta(minutes=minutes),
        )
    # The EV is full and the station reports Finishing before the stop: parking.
    ConnectorStatusEvent.objects.create(
        station=cp,
        evse_id=1,
        connector_id=1,
        status="Finishing",
        timestamp=start + dt.timedelta(minutes=60),
    )
    # Another connector's status is not this session's.
    ConnectorStatusEvent.objects.create(
        station=cp,
        evse_id=2,
        connector_id=1,
        status="SuspendedEV",
        timestamp=start + dt.timedelta(minutes=5),
    )
    result = services.session_rate(session=session)

    assert result.total_energy_kwh == D(10)
    # SuspendedEVSE is the station withholding energy: still charging time.
    assert result.total_time_h == D("1.25")
    assert result.total_parking_time_h * 60 == D(15)
    # 1.00 + 10 kWh x 0.30 + 1 h x 2.00 + 0.25 h x 6.00 = 7.50
    assert result.total_cost.excl_vat == D("7.50")
    assert result.total_cost.incl_vat == D("8.93")
    states = [(p.state, p.start - start) for p in result.periods]
    assert states == [("CHARGING", dt.timedelta(0)), ("PARKING", dt.timedelta(minutes=60))]


def test_ocpp201_session_rated_from_charging_state(cp):
    cp.protocol = ChargingStation.Protocol.OCPP201
    cp.save()
    TariffAssignment.objects.create(tariff=time_and_parking_tariff())
    start = berlin(2025, 3, 12, 18, 0)
    session = make_session(
        cp,
        start,
        transaction_id="TX-A",
        meter_start_wh=D(0),
        ended_at=start + dt.timedelta(minutes=70),
        energy_wh=D(8000),
        status=ChargingSession.Status.COMPLETED,
    )
    energy_samples(
        session,
        [
            (start, "0"),
            (start + dt.timedelta(minutes=40), "8"),
            (start + dt.timedelta(hours=1), "8"),
        ],
        unit="kWh",
    )
    for seq, (minutes, event_type, state) in enumerate(
        [
            (0, "Started", "Charging"),
            (20, "Updated", "SuspendedEVSE"),
            (30, "Updated", "Charging"),
            (40, "Updated", "SuspendedEV"),
            (45, "Updated", "Charging"),
            (50, "Updated", "EVConnected"),
            (70, "Ended", ""),
        ]
    ):
        TransactionEventRecord.objects.create(
            session=session,
            station=cp,
            transaction_id="TX-A",
            seq_no=seq,
            event_type=event_type,
            trigger_reason="ChargingStateChanged",
            timestamp=start + dt.timedelta(minutes=minutes),
            charging_state=state,
        )
    # A 1.6-style status report must not count for a session that has chargingState.
    ConnectorStatusEvent.objects.create(
        station=cp,
        evse_id=1,
        connector_id=1,
        status="Finishing",
        timestamp=start + dt.timedelta(minutes=10),
    )

    result = services.session_rate(session=session)

    assert result.total_energy_kwh == D(8)
    # Charging 0-40 and 45-50; parking 40-45 and 50-70.
    assert result.total_parking_time_h * 60 == D(25)
    assert result.total_time_h * 60 == D(70)
    # 1.00 + 8 x 0.30 + 45 min x 2.00/h + 25 min x 6.00/h = 1 + 2.4 + 1.5 + 2.5 = 7.40
    assert result.total_cost.excl_vat == D("7.40")
    assert result.total_cost.incl_vat == D("8.81")
    assert [p.state for p in result.periods] == ["CHARGING", "PARKING", "CHARGING", "PARKING"]


def test_usage_reads_units_phases_power_and_current(cp):
    start = berlin(2025, 3, 12, 10, 0)
    session = make_session(cp, start, meter_start_wh=D(500), ended_at=start + dt.timedelta(hours=1))
    minute = dt.timedelta(minutes=1)
    energy_samples(session, [(start + 30 * minute, "5.5")], unit="kWh")
    # Phase registers are not the session's energy.
    energy_samples(session, [(start + 30 * minute, "99999")], phase="L1")
    energy_samples(
        session, [(start + 10 * minute, "11")], measurand="Power.Active.Import", unit="kW"
    )
    for phase in ("L1", "L2", "L3"):
        energy_samples(
            session, [(start + 20 * minute, "16")], measurand="Current.Import", phase=phase
        )
    energy_samples(session, [(start + 20 * minute, "3")], measurand="Current.Import", phase="N")

    usage = selectors.session_usage(session=session)

    by_time = {r.timestamp - start: r for r in usage.readings}
    assert by_time[dt.timedelta(0)].energy_wh == D(500)
    assert by_time[30 * minute].energy_wh == D(5500)
    # Power and current readings get their energy from the register curve.
    assert by_time[10 * minute].power_w == D(11000)
    assert by_time[10 * minute].energy_wh == D(500) + D(5000) / 3
    assert by_time[20 * minute].current_a == D(48)
    assert usage.end == start + dt.timedelta(hours=1)


def test_power_restricted_tariff_prices_by_the_reported_power(cp):
    TariffAssignment.objects.create(
        tariff=make_tariff(
            "POWER",
            [("ENERGY", "0.25", None, 1), {"max_power": D(10)}],
            [("ENERGY", "0.45", None, 1)],
        )
    )
    start = berlin(2025, 3, 12, 10, 0)
    session = make_session(
        cp,
        start,
        meter_start_wh=D(0),
        meter_stop_wh=D(20000),
        ended_at=start + dt.timedelta(hours=2),
        status=ChargingSession.Status.COMPLETED,
    )
    hour = dt.timedelta(hours=1)
    energy_samples(session, [(start + hour, "11000")])
    energy_samples(session, [(start, "11")], measurand="Power.Active.Import", unit="kW")
    energy_samples(session, [(start + hour, "9000")], measurand="Power.Active.Import")
    result = services.session_rate(session=session)
    # 11 kWh at 11 kW (0.45), then 9 kWh at 9 kW (0.25).
    assert result.total_cost.excl_vat == D("7.20")
    periods = result.to_ocpi_charging_periods()
    assert {"type": "MAX_POWER", "volume": D("11.0000")} in periods[0]["dimensions"]


@pytest.mark.parametrize(
    ("fields", "energy"),
    [
        ({"meter_start_wh": D(100), "meter_stop_wh": D(4100)}, D(4)),
        ({"energy_wh": D(2500)}, D("2.5")),
        ({"meter_stop_wh": D(900), "energy_wh": D(0)}, D(0)),
    ],
)
def test_sessions_without_samples_are_rated_from_the_session(cp, fields, energy):
    TariffAssignment.objects.create(tariff=energy_tariff("E", "0.50"))
    start = berlin(2025, 3, 12, 10, 0)
    session = make_session(cp, start, ended_at=start + dt.timedelta(hours=1), **fields)
    result = services.session_rate(session=session)
    assert result.total_energy_kwh == energy
    assert result.total_cost.excl_vat == energy * D("0.50")


def test_odd_sessions_never_raise(cp):
    TariffAssignment.objects.create(tariff=energy_tariff("E", "0.50"))
    start = berlin(2025, 3, 12, 10, 0)
    # Ended before it started (a charger clock jumped), register going backwards.
    session = make_session(
        cp,
        start,
        ended_at=start - dt.timedelta(minutes=5),
        meter_start_wh=D(5000),
        meter_stop_wh=D(4000),
    )
    energy_samples(session, [(start - dt.timedelta(minutes=1), "4500")])
    result = services.session_rate(session=session)
    assert result.total_cost.excl_vat == D(0)


def test_a_tariff_the_engine_cannot_read_is_never_published(cp):
    broken = make_tariff("FINE", [("ENERGY", "0.50", "21", 1)])
    TariffElement.objects.filter(tariff=broken).update(day_of_week=["SOMEDAY"])
    with pytest.raises(services.TariffNotPublishable, match="cannot be rated"):
        services.tariff_version_publish(tariff=broken)
    assert broken.versions.count() == 1


def test_live_cost_follows_each_meter_value_in_the_sites_time_zone(cp):
    """Through the charging service that stores a MeterValues, as the OCPP edge calls it."""
    from sessions import services as charging

    # Energy before 18:00 Berlin time is cheap, after it expensive.
    TariffAssignment.objects.create(
        tariff=make_tariff(
            "TOU",
            [("ENERGY", "0.20", "21", 1), {"start_time": dt.time(0), "end_time": dt.time(18)}],
            [("ENERGY", "0.40", "21", 1)],
        )
    )
    start = berlin(2025, 3, 12, 17, 30)
    session = make_session(cp, start, meter_start_wh=D(0), ocpp16_transaction_id=77)

    def meter(minutes: int, wh: str) -> ChargingSession:
        charging.session_meter_samples(
            station_id=cp.pk,
            transaction_id=77,
            batch=charging.SampleBatch(
                1, 1, [charging.Sample(timestamp=start + dt.timedelta(minutes=minutes), value=wh)]
            ),
        )
        session.refresh_from_db()
        return session

    # 5 kWh x 0.20 + 5 kWh x 0.40 = 3.00 excl, 3.63 incl.
    meter(30, "5000")
    assert meter(60, "10000").live_cost == D("3.63")
    assert session.live_cost_currency == "EUR"
    assert fixed_tariff(session) == "TOU"
    # The next value extends it (+5 kWh x 0.40 = 2.42 incl.), and agrees with a full rating.
    assert meter(90, "15000").live_cost == D("6.05")
    full = services.session_rate(session=session, now=start + dt.timedelta(minutes=90))
    assert full.total_cost.incl_vat == D("6.05")
    assert (
        session.live_cost_state["tariff_version"]
        == selectors.session_tariff_version(session=session).pk
    )

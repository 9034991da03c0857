"""The panel's charging reads: energy per day and site, session curves, live sessions,
sessions per token and per site and month."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from sessions import selectors
from sessions.models import MeterSample
from stations.models import Location
from tests.sessions.conftest import charging_session
from tests.stations.conftest import station_with_connectors

pytestmark = pytest.mark.django_db

H = dt.timedelta(hours=1)


def test_energy_per_day_and_site_and_session_curve() -> None:
    now = timezone.now()
    site = Location.objects.create(name="Harbour", time_zone="Europe/Amsterdam")
    station = station_with_connectors("E-1", location=site)
    start = now - 2 * H
    charge = charging_session(station, started_at=start, energy_wh=11_000, active=False)
    MeterSample.objects.bulk_create(
        [
            MeterSample(
                session=charge,
                station=station,
                evse_id=1,
                connector_id=1,
                timestamp=start + n * H / 2,
                measurand="Energy.Active.Import.Register",
                unit="kWh",
                value=Decimal(n) * Decimal("2.5"),
            )
            for n in range(3)
        ]
        + [
            MeterSample(
                session=charge,
                station=station,
                evse_id=1,
                connector_id=1,
                timestamp=start + n * H / 2,
                measurand="Power.Active.Import",
                unit="W",
                value=Decimal(11_000),
            )
            for n in range(3)
        ]
        # A per-phase value is not the session's power.
        + [
            MeterSample(
                session=charge,
                station=station,
                evse_id=1,
                connector_id=1,
                timestamp=start,
                measurand="Power.Active.Import",
                phase="L1",
                unit="W",
                value=Decimal(3600),
            )
        ]
    )
    energy = selectors.energy_per_day_and_site(days=7, now=now)
    assert len(energy["labels"]) == 7
    assert [d["label"] for d in energy["datasets"]] == ["Harbour"]
    assert sum(energy["datasets"][0]["data"]) == 11.0

    curve = selectors.session_curve(session=charge)
    assert [p["y"] for p in curve["power"]] == [11.0, 11.0, 11.0]
    # kWh registers, relative to the session's start reading (0 Wh here).
    assert [p["y"] for p in curve["energy"]] == [0.0, 2.5, 5.0]


def test_live_sessions_running_cost_and_alerts(settings) -> None:
    settings.PANEL_LONG_SESSION_HOURS = 10
    settings.PANEL_NO_ENERGY_MINUTES = 15
    now = timezone.now()
    station = station_with_connectors("L-1", connectors=2)
    charging_session(
        station,
        started_at=now - 11 * H,
        energy_wh=12_000,
        last_power_w=Decimal(7400),
        live_cost=Decimal("3.3333"),
        live_cost_currency="EUR",
    )
    charging_session(station, started_at=now - H / 2, evse_id=2, connector_id=0)
    charging_session(station, started_at=now - 3 * H, energy_wh=5_000, active=False)

    live = selectors.live_sessions(now=now, limit=1)
    assert live["total"] == 2
    assert live["power_kw"] == "7.40"
    assert [row["connector"] for row in live["items"]] == ["2/0"]  # newest first
    assert selectors.running_cost_by_currency() == [{"currency": "EUR", "amount": "3.33"}]
    assert selectors.session_totals(start=now - 4 * H, end=now) == {
        "sessions": 2,
        "energy_kwh": "5.000",
    }
    alerts = selectors.session_alerts(now=now, limit=5)
    assert alerts["counts"] == {"session_long": 1, "session_no_energy": 1}
    assert alerts["items"][0]["title"].startswith("Session on L-1 running 11.0 h")
    assert alerts["items"][1]["title"] == "No energy on L-1 2/0"

    # Sessions are addressed like connectors; a 2.0.1 session may know only its EVSE.
    active = selectors.station_active_sessions(station=station, now=now)
    assert set(active) == {(1, 1), (2, 0)}
    assert active[(1, 1)]["cost"] == "3.33"
    recent = selectors.station_recent_sessions(station=station)
    assert [row["status"] for row in recent] == ["Active", "Completed", "Active"]
    assert recent[1]["duration_s"] == 3600


def test_sessions_per_token_and_per_site_month() -> None:
    from tests.billing.conftest import make_account, make_site, make_token

    station = make_site("T-1")  # Harbour car park, Europe/Amsterdam
    token = make_token(make_account("Fleet"))
    start = dt.datetime(2025, 1, 31, 23, 30, tzinfo=dt.UTC)  # February in Amsterdam
    charging_session(station, started_at=start, energy_wh=2_000, id_token=token, id_tag=token.uid)
    charging_session(station, started_at=start, energy_wh=1_000, id_token=token, id_tag=token.uid)
    charging_session(station, started_at=start, energy_wh=500, id_tag="0BADCAFE")

    rows = selectors.sessions_per_token(start=start, end=start + H)
    assert [(r["token_id"], r["token"], r["sessions"], r["energy_kwh"]) for r in rows] == [
        (token.pk, token.uid, 2, "3.000"),
        (None, "0BADCAFE", 1, "0.500"),
    ]
    assert rows[1]["type"] == "(unknown token)"

    site = station.location_id
    cells = selectors.sessions_per_site_month(
        zones={"Europe/Amsterdam": [site], "UTC": [None]},
        first_month=dt.date(2025, 1, 1),
        last_month=dt.date(2025, 2, 1),
    )
    assert cells == {(site, "2025-02"): {"sessions": 3, "energy_kwh": "3.500"}}

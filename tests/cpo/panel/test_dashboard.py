"""Dashboard selectors, reports and their CSV, the JSON endpoints and role menus."""

from __future__ import annotations

import csv
import datetime as dt
import io
import uuid
from decimal import Decimal

import pytest
from django.utils import timezone

from cpo.panel import dashboard
from cpo.panel import menus as panel
from sessions.models import ChargingSession, MeterSample
from stations.models import (
    ChargingStation,
    Connector,
    ConnectorStatusEvent,
    Evse,
    Location,
    StationConnection,
)
from tests.cpo.panel.conftest import make_staff

pytestmark = pytest.mark.django_db

H = dt.timedelta(hours=1)


def make_station(identity: str, *, location: Location | None = None, connectors: int = 1):
    station = ChargingStation.objects.create(identity=identity, location=location)
    for n in range(1, connectors + 1):
        evse = Evse.objects.create(station=station, evse_id=n, uid=f"{identity}-{n}")
        Connector.objects.create(station=station, evse=evse, connector_id=1)
    return station


def status(station, moment, value, evse_id=1):  # type: ignore[no-untyped-def]
    ConnectorStatusEvent.objects.create(
        station=station,
        evse_id=evse_id,
        connector_id=1 if evse_id else 0,
        status=value,
        timestamp=moment,
    )


def session(station, *, started_at, energy_wh=0, active=True, **fields):  # type: ignore[no-untyped-def]
    return ChargingSession.objects.create(
        station=station,
        evse_id=1,
        connector_id=1,
        transaction_id=str(uuid.uuid4()),
        id_tag=fields.pop("id_tag", "04AABBCCDD"),
        started_at=started_at,
        status=ChargingSession.Status.ACTIVE if active else ChargingSession.Status.COMPLETED,
        ended_at=None if active else started_at + H,
        energy_wh=Decimal(energy_wh),
        meter_start_wh=Decimal(0),
        **fields,
    )


def test_uptime_splits_the_period_into_usable_faulted_unavailable_and_offline() -> None:
    t0 = (timezone.now() - dt.timedelta(days=2)).replace(microsecond=0)
    station = make_station("UP-1", location=Location.objects.create(name="Depot"))
    StationConnection.objects.create(
        station=station, protocol="ocpp1.6", connected_at=t0 - H, disconnected_at=t0 + 8 * H
    )
    status(station, t0 - H / 2, "Available")  # the state at the start of the period
    status(station, t0 + 2 * H, "Faulted")
    status(station, t0 + 3 * H, "Available")
    status(station, t0 + 5 * H, "Unavailable")
    status(station, t0 + 6 * H, "Charging")

    rows = dashboard.uptime_report(start=t0, end=t0 + 10 * H)

    by_connector = {row["connector"]: row for row in rows}
    assert set(by_connector) == {"", "1/1"}
    connector = by_connector["1/1"]
    assert connector["usable_pct"] == 60.0
    assert connector["faulted_pct"] == 10.0
    assert connector["unavailable_pct"] == 10.0
    assert connector["offline_pct"] == 20.0
    assert connector["usable_h"] == 6.0
    assert by_connector[""]["usable_pct"] == 60.0
    assert by_connector[""]["site"] == "Depot"


def test_uptime_station_level_fault_and_second_connector() -> None:
    t0 = (timezone.now() - dt.timedelta(days=1)).replace(microsecond=0)
    station = make_station("UP-2", connectors=2)
    StationConnection.objects.create(station=station, protocol="ocpp1.6", connected_at=t0 - H)
    ChargingStation.objects.filter(pk=station.pk).update(is_online=True)
    status(station, t0, "Available", evse_id=1)
    status(station, t0, "Faulted", evse_id=2)
    status(station, t0 + 2 * H, "Faulted", evse_id=0)  # the whole station
    status(station, t0 + 3 * H, "Available", evse_id=0)

    rows = {r["connector"]: r for r in dashboard.uptime_report(start=t0, end=t0 + 4 * H)}

    assert rows["1/1"]["usable_pct"] == 75.0
    assert rows["1/1"]["faulted_pct"] == 25.0
    assert rows["2/1"]["faulted_pct"] == 100.0
    # The station is usable while any connector is.
    assert rows[""]["usable_pct"] == 75.0
    assert rows[""]["faulted_pct"] == 25.0


def test_dashboard_summary_counts_and_alerts(settings) -> None:  # type: ignore[no-untyped-def]
    settings.PANEL_LONG_SESSION_HOURS = 10
    settings.PANEL_NO_ENERGY_MINUTES = 15
    now = timezone.now()
    online = make_station("D-ON", connectors=2)
    offline = make_station("D-OFF")
    ChargingStation.objects.filter(pk=online.pk).update(is_online=True)
    Connector.objects.filter(station=online, evse__evse_id=1).update(status="Charging")
    Connector.objects.filter(station=online, evse__evse_id=2).update(
        status="Faulted", error_code="GroundFailure"
    )
    Connector.objects.filter(station=offline).update(status="Available")
    session(online, started_at=now - 11 * H, energy_wh=12_000, last_power_w=Decimal(7400))
    session(online, started_at=now - dt.timedelta(minutes=30), energy_wh=0)

    data = dashboard.dashboard_summary(now=now)

    assert data["stations"] == {"total": 2, "online": 1, "offline": 1, "faulted": 1}
    # The last report of an offline station's connector does not count as available.
    assert data["connectors"] == {"Charging": 1, "Faulted": 1, "Offline": 1}
    assert data["live_sessions"]["total"] == 2
    assert data["live_sessions"]["power_kw"] == "7.40"
    kinds = [a["kind"] for a in data["alerts"]["items"]]
    assert data["alerts"]["counts"] == {
        "station_offline": 1,
        "connector_faulted": 1,
        "session_long": 1,
        "session_no_energy": 1,
    }
    assert set(kinds) == set(data["alerts"]["counts"])
    faulted = next(a for a in data["alerts"]["items"] if a["kind"] == "connector_faulted")
    assert faulted["detail"] == "GroundFailure"


def test_revenue_comes_from_cdrs_and_degrades_to_running_costs(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from tests.billing.conftest import make_account, make_cdr, make_site

    site = make_site("REV-1")
    now = timezone.now()
    make_cdr(make_account("Fleet"), site, end=now - dt.timedelta(minutes=1), excl="12.345")
    month = now.astimezone(dashboard.panel_tz()).strftime("%Y-%m")

    chart = dashboard.revenue_per_month(months=3, now=now)
    assert chart["source"] == dashboard.REVENUE_FROM_CDRS
    assert chart["labels"][-1] == month
    assert chart["datasets"] == [{"label": "EUR", "data": [0.0, 0.0, 12.35]}]

    running = session(
        site,
        started_at=now - H / 4,
        live_cost=Decimal("3.3333"),
        tariff_snapshot={"currency": "EUR"},
    )
    monkeypatch.setattr(dashboard, "cdr_model", lambda: None)
    chart = dashboard.revenue_per_month(months=1, now=now)
    assert chart["source"] == dashboard.REVENUE_FROM_LIVE_COST
    assert "billing not installed" in chart["label"]
    assert chart["datasets"] == [{"label": "EUR", "data": [3.33]}]
    assert running.pk


def test_energy_per_day_and_site_and_session_curve() -> None:
    now = timezone.now()
    site = Location.objects.create(name="Harbour", time_zone="Europe/Amsterdam")
    station = make_station("E-1", location=site)
    start = now - 2 * H
    charge = session(station, started_at=start, energy_wh=11_000, active=False)
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
    energy = dashboard.energy_per_day_and_site(days=7, now=now)
    assert len(energy["labels"]) == 7
    assert [d["label"] for d in energy["datasets"]] == ["Harbour"]
    assert sum(energy["datasets"][0]["data"]) == 11.0

    curve = dashboard.session_curve(session=charge)
    assert [p["y"] for p in curve["power"]] == [11.0, 11.0, 11.0]
    # kWh registers, relative to the session's start reading (0 Wh here).
    assert [p["y"] for p in curve["energy"]] == [0.0, 2.5, 5.0]


def _csv(response) -> list[dict[str, str]]:  # type: ignore[no-untyped-def]
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_reports_render_and_export_csv(client, roles) -> None:  # type: ignore[no-untyped-def]  # noqa: ARG001
    from tests.billing.conftest import make_account, make_cdr, make_site

    site = make_site("R-1")
    now = timezone.now()
    make_cdr(make_account("Fleet"), site, end=now - H, excl="20.00")
    session(site, started_at=now - 2 * H, energy_wh=5_000, active=False, id_tag="=HYPERLINK(1)")
    client.force_login(make_staff("fin", "Finance"))
    today = now.astimezone(dashboard.panel_tz()).date()
    period = f"start={today - dt.timedelta(days=3)}&end={today}"

    page = client.get(f"/admin/panel/reports/uptime/?{period}")
    assert page.status_code == 200
    assert b"R-1" in page.content
    assert b"Download CSV" in page.content
    rows = _csv(client.get(f"/admin/panel/reports/uptime/?{period}&format=csv"))
    assert {r["station"] for r in rows} == {"R-1"}
    assert float(rows[0]["offline_pct"]) == 100.0

    month = today.strftime("%Y-%m")
    rows = _csv(
        client.get(f"/admin/panel/reports/energy-revenue/?first={month}&last={month}&format=csv")
    )
    harbour = next(r for r in rows if r["site"] == "Harbour car park")
    assert harbour["revenue_EUR"] == "20.00"
    assert harbour["month"] == month

    rows = _csv(client.get(f"/admin/panel/reports/sessions-per-token/?{period}&format=csv"))
    tag = next(r for r in rows if r["token"].endswith("HYPERLINK(1)"))
    assert tag["type"] == "(unknown token)"
    # A cell a spreadsheet would run as a formula is defused.
    assert tag["token"] == "'=HYPERLINK(1)"
    assert tag["energy_kwh"] == "5.000"

    bad = client.get("/admin/panel/reports/uptime/?start=2025-02-02&end=2025-01-01&format=csv")
    assert bad.status_code == 200
    assert b"The end is before the start" in bad.content


def test_json_endpoints_are_staff_only(client, roles) -> None:  # type: ignore[no-untyped-def]  # noqa: ARG001
    station = make_station("J-1")
    anonymous = client.get("/admin/panel/dashboard.json")
    assert anonymous.status_code == 302
    assert "/admin/login/" in anonymous["Location"]

    from cpo.models import User

    client.force_login(User.objects.create_user("nobody", password="x-12345678", is_staff=True))
    assert client.get("/admin/panel/dashboard.json").status_code == 403
    assert client.get(f"/admin/panel/stations/{station.pk}/live.json").status_code == 403

    client.force_login(make_staff("sup", "Support"))
    live = client.get(f"/admin/panel/stations/{station.pk}/live.json").json()
    assert [c["label"] for c in live["connectors"]] == ["1/1"]
    assert client.get("/admin/panel/dashboard.json").json()["stations"]["total"] == 1
    refused = client.post(f"/admin/panel/stations/{station.pk}/command", {"verb": "clear_cache"})
    assert refused.status_code == 403


def test_command_endpoint_reports_an_invalid_command(client, roles) -> None:  # type: ignore[no-untyped-def]  # noqa: ARG001
    station = make_station("C-1")
    client.force_login(make_staff("op", "Operators"))
    answer = client.post(
        f"/admin/panel/stations/{station.pk}/command",
        {"verb": "clear_cache"},
        HTTP_ACCEPT="application/json",
    )
    # Never connected: its protocol is unknown, nothing is queued.
    assert answer.status_code == 400
    assert "protocol" in answer.json()["error"]
    ChargingStation.objects.filter(pk=station.pk).update(protocol="ocpp1.6")
    answer = client.post(
        f"/admin/panel/stations/{station.pk}/command",
        {"verb": "remote_start"},
        HTTP_ACCEPT="application/json",
    )
    assert answer.status_code == 400
    assert "id_token" in answer.json()["error"]
    answer = client.post(
        f"/admin/panel/stations/{station.pk}/command", {"verb": "reset", "type": "hard"}
    )
    assert answer.status_code == 302
    assert station.commands.get().payload == {"type": "Hard"}


def test_each_role_finds_its_work_first(rf, roles) -> None:  # type: ignore[no-untyped-def]  # noqa: ARG001
    apps = [{"app_label": label} for label in ("billing", "charging", "stations", "tariffs")]
    finance = make_staff("f", "Finance")
    operator = make_staff("o", "Operators")
    support = make_staff("s", "Support")

    assert panel.order_app_list(apps, finance)[0]["app_label"] == "billing"
    assert panel.order_app_list(apps, operator)[0]["app_label"] == "stations"
    assert panel.order_app_list(apps, support)[0]["app_label"] == "charging"
    assert panel.role_widgets(finance)[0] == "money"
    assert "alerts" not in panel.role_widgets(finance)

    finance_links = [link.label for link in panel.quick_links(finance)]
    assert finance_links[0] == "Invoices"
    assert "Commands" not in finance_links
    operator_links = [link.label for link in panel.quick_links(operator)]
    assert operator_links[0] == "Stations"
    assert "Invoices" not in operator_links
    assert [link.label for link in panel.quick_links(support)][0] == "Tokens"

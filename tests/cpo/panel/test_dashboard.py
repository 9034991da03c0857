"""The panel's composition of the apps' reads: dashboard, charts, the station page, reports and
their CSV, the JSON endpoints and role menus. (Each app's own reads are tested with it:
tests/<app>/test_selectors.py.)"""

from __future__ import annotations

import csv
import datetime as dt
import io
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import selectors as billing_selectors
from cpo.lib.formatting import panel_tz
from cpo.panel import dashboard
from cpo.panel import menus as panel
from stations.models import ChargingStation, Connector
from tests.cpo.panel.conftest import make_staff
from tests.sessions.conftest import charging_session as session
from tests.stations.conftest import station_with_connectors as make_station

pytestmark = pytest.mark.django_db

H = dt.timedelta(hours=1)


def test_dashboard_summary_counts_and_alerts(settings) -> None:
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
        "auth_lockout": 0,
        "session_long": 1,
        "session_no_energy": 1,
        "sessions_to_review": 0,
        "outbox_dead_letters": 0,
    }
    assert set(kinds) == {kind for kind, n in data["alerts"]["counts"].items() if n}
    faulted = next(a for a in data["alerts"]["items"] if a["kind"] == "connector_faulted")
    assert faulted["detail"] == "GroundFailure"


def test_dead_letters_are_an_alert() -> None:
    from cpo.outbox.models import OutboxMessage

    now = timezone.now()
    for status in ("dead", "dead", "pending"):
        OutboxMessage.objects.create(
            destination_kind="webhook",
            destination_ref="1",
            url="https://example.com/h",
            idempotency_key=f"k-{OutboxMessage.objects.count()}",
            status=status,
            expires_at=now + H,
            dead_at=now if status == "dead" else None,
        )
    data = dashboard.dashboard_summary(now=now)
    assert data["alerts"]["counts"]["outbox_dead_letters"] == 2
    (alert,) = [a for a in data["alerts"]["items"] if a["kind"] == "outbox_dead_letters"]
    assert alert["title"] == "2 message(s) could not be delivered"
    assert alert["detail"] == "2 webhook"
    assert alert["url"] == "/admin/outbox/outboxmessage/?status__exact=dead"


def test_dashboard_query_count_is_constant_in_the_number_of_stations(
    django_assert_max_num_queries,
) -> None:
    now = timezone.now()

    def add_stations(first: int, last: int) -> None:
        for n in range(first, last):
            station = make_station(f"Q-{n}", connectors=2)
            if n % 2:
                ChargingStation.objects.filter(pk=station.pk).update(is_online=True)
            Connector.objects.filter(station=station, evse__evse_id=2).update(status="Faulted")
            session(
                station,
                started_at=now - 13 * H,
                last_power_w=Decimal(11_000),
                live_cost=Decimal("1.5"),
                live_cost_currency="EUR",
            )

    add_stations(0, 2)
    with django_assert_max_num_queries(100) as two:
        small = dashboard.dashboard_summary(now=now)
    add_stations(2, 20)
    with django_assert_max_num_queries(len(two.captured_queries)):
        large = dashboard.dashboard_summary(now=now)
    assert small["stations"]["total"] == 2
    assert large["stations"]["total"] == 20
    assert len(large["live_sessions"]["items"]) == 20
    assert large["alerts"]["counts"]["connector_faulted"] == 20


def test_station_live_finds_each_connectors_session(client, roles) -> None:  # noqa: ARG001
    from stations.commands import services as command_services

    now = timezone.now()
    station = make_station("SL-1", connectors=3)
    ChargingStation.objects.filter(pk=station.pk).update(is_online=True, protocol="ocpp1.6")
    station.refresh_from_db()
    # 1.6 connector 1 is stored as EVSE 1 / connector 1, like its Connector row.
    on_one = session(station, started_at=now - H, energy_wh=4_000)
    # A 2.0.1 session that knows only its EVSE.
    on_two = session(station, started_at=now - H / 2, evse_id=2, connector_id=0)
    command_services.command_create(station=station, verb="clear_cache")

    live = dashboard.station_live(station=station)

    assert live["is_online"] is True
    by_label = {c["label"]: c for c in live["connectors"]}
    assert by_label["1/1"]["session"]["id"] == on_one.pk
    assert by_label["1/1"]["session"]["energy_kwh"] == "4.000"
    assert by_label["2/1"]["session"]["id"] == on_two.pk
    assert by_label["3/1"]["session"] is None
    assert [c["action"] for c in live["commands"]] == ["ClearCache"]
    client.force_login(make_staff("sup", "Support"))
    served = client.get(f"/admin/panel/stations/{station.pk}/live.json").json()
    assert [c["session"] and c["session"]["id"] for c in served["connectors"]] == [
        on_one.pk,
        on_two.pk,
        None,
    ]
    assert served["commands"] == live["commands"]


def test_revenue_comes_from_cdrs() -> None:
    from tests.billing.conftest import make_account, make_cdr, make_site

    site = make_site("REV-1")
    now = timezone.now()
    make_cdr(make_account("Fleet"), site, end=now - dt.timedelta(minutes=1), excl="12.345")
    # A running cost is not revenue: it shows as the running cost only.
    session(
        site,
        started_at=now - H / 4,
        live_cost=Decimal("3.3333"),
        live_cost_currency="EUR",
    )
    month = now.astimezone(panel_tz()).strftime("%Y-%m")

    chart = dashboard.revenue_per_month(months=3, now=now)
    assert chart["source"] == billing_selectors.REVENUE_FROM_CDRS
    assert chart["label"] == "Rated CDRs, excl. VAT (credits deducted)"
    assert chart["labels"][-1] == month
    assert chart["datasets"] == [{"label": "EUR", "data": [0.0, 0.0, 12.35]}]
    assert dashboard.charts(months=3, now=now)["revenue"] == chart

    today = dashboard.dashboard_summary(now=now)["today"]
    assert today["revenue"] == [{"currency": "EUR", "amount": "12.35"}]
    assert today["running_cost"] == [{"currency": "EUR", "amount": "3.33"}]
    assert today["revenue_source"] == billing_selectors.REVENUE_FROM_CDRS
    assert today["revenue_label"] == chart["label"]


def _csv(response) -> list[dict[str, str]]:
    assert response.status_code == 200, response.content[:300]
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    return list(csv.DictReader(io.StringIO(response.content.decode())))


def test_reports_render_and_export_csv(client, roles) -> None:  # noqa: ARG001
    from tests.billing.conftest import make_account, make_cdr, make_site

    site = make_site("R-1")
    now = timezone.now()
    make_cdr(make_account("Fleet"), site, end=now - H, excl="20.00")
    session(site, started_at=now - 2 * H, energy_wh=5_000, active=False, id_tag="=HYPERLINK(1)")
    client.force_login(make_staff("fin", "Finance"))
    today = now.astimezone(panel_tz()).date()
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


def test_json_endpoints_are_staff_only(client, roles) -> None:  # noqa: ARG001
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


def test_command_endpoint_reports_an_invalid_command(client, roles) -> None:  # noqa: ARG001
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


def test_each_role_finds_its_work_first(rf, roles) -> None:  # noqa: ARG001
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
    assert finance_links[:2] == ["Sessions to review", "Invoices"]
    assert "Commands" not in finance_links
    operator_links = [link.label for link in panel.quick_links(operator)]
    assert operator_links[0] == "Stations"
    assert "Invoices" not in operator_links
    assert [link.label for link in panel.quick_links(support)][0] == "Tokens"

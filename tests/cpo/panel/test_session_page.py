"""The session page and the station page served by Django (no browser): what each role sees,
the credit action, times in the site's zone, money with its currency; the curve's reads."""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.test import Client
from django.urls import reverse

from cpo.lib.formatting import money_text
from tests.cpo.panel.conftest import make_staff

pytestmark = pytest.mark.django_db


@pytest.fixture
def history(roles: None) -> dict[str, Any]:  # noqa: ARG001
    from billing import services as billing
    from cpo.demo import demo_data_load, demo_history_load
    from sessions.models import ChargingSession

    demo_data_load()
    demo_history_load()
    session = (
        ChargingSession.objects.filter(station__identity="DEMO-16", status="completed")
        .order_by("-started_at")
        .first()
    )
    cdr = billing.cdr_create_for_session(session_id=session.pk)
    assert cdr is not None
    return {"session": session, "cdr": cdr}


def page_as(role: str, url: str) -> str:
    client = Client()
    client.force_login(make_staff(f"page-{role.lower()}", role))
    response = client.get(url)
    assert response.status_code == 200
    return response.content.decode()


def page_text(html: str) -> str:
    """What a reader sees: the page without its scripts (JSON data) and tags."""
    html = re.sub(r"<script.*?</script>", " ", html, flags=re.S)
    return re.sub(r"<[^>]+>", " ", html)


def assert_one_date_format(html: str) -> None:
    """No ISO 8601 timestamps, no UTC offsets, no Django "Dec. 1, 2026, 5:02 p.m." dates."""
    text = page_text(html)
    assert not re.search(r"\d{4}-\d\d-\d\dT\d\d:\d\d", text)
    assert not re.search(r"\d\d:\d\d(:\d\d)?(\.\d+)?\+\d\d:\d\d", text)
    assert not re.search(r"\b[ap]\.m\.", text)
    assert not re.search(r"\b(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)[a-z]*\.? \d", text)


def session_url(session: Any) -> str:
    return reverse("admin:charging_chargingsession_change", args=[session.pk])


@pytest.mark.parametrize("role", ["Operators", "Finance", "Support"])
def test_the_session_page_shows_cost_per_dimension_with_currency_in_the_sites_zone(
    history: dict[str, Any], role: str
) -> None:
    html = page_as(role, session_url(history["session"]))
    cdr = history["cdr"]
    # The zone is named, every time is in it, in one format.
    assert "Europe/Amsterdam" in html
    started = history["session"].started_at.astimezone(ZoneInfo("Europe/Amsterdam"))
    assert started.strftime("%Y-%m-%d %H:%M ") + started.tzname() in html
    # Per dimension, with the currency; the total as the CDR has it.
    dimensions = re.search(
        r'<table class="panel-table" id="cost-dimensions">(.*?)</table>', html, re.S
    )
    assert dimensions is not None
    assert 'data-dimension="ENERGY"' in dimensions.group(1)
    assert money_text(cdr.total_energy_cost_incl_vat, "EUR") in dimensions.group(1)
    assert money_text(cdr.total_cost_incl_vat, "EUR") in dimensions.group(1)
    assert re.search(r"<td>\d+\.\d\d EUR</td>", dimensions.group(1))
    # No raw four-decimal money, no tariff JSON.
    assert not re.search(r"\b\d+\.\d{4} EUR", html)
    assert '"price_components"' not in html
    assert "EUR/kWh" in html
    assert_one_date_format(html)
    # Only Finance may credit.
    assert ('id="session-credit-form"' in html) is (role == "Finance")
    # A completed session: no stop button.
    assert "session-remote-stop" not in html


def test_finance_credits_the_sessions_cdr_with_a_reason(history: dict[str, Any]) -> None:
    from billing.models import Cdr

    session, cdr = history["session"], history["cdr"]
    url = reverse("panel:session-credit", args=[session.pk])
    finance = Client()
    finance.force_login(make_staff("credit-finance", "Finance"))
    # No reason: refused, nothing credited, and said so.
    response = finance.post(url, {"reason": " "}, follow=True)
    assert "A credit needs a reason." in response.content.decode()
    assert not Cdr.objects.filter(credit_of=cdr).exists()
    response = finance.post(url, {"reason": "charger fault, driver refunded"})
    assert response.status_code == 302
    credit = Cdr.objects.get(credit_of=cdr)
    assert credit.credit_reason == "charger fault, driver refunded"
    # Credited: the page offers no second credit.
    assert 'id="session-credit-form"' not in finance.get(session_url(session)).content.decode()
    for role in ("Operators", "Support"):
        other = Client()
        other.force_login(make_staff(f"credit-{role.lower()}", role))
        assert other.post(url, {"reason": "x"}).status_code == 403


def test_the_station_page_names_its_zone_and_says_when_it_was_last_seen(
    history: dict[str, Any],
) -> None:
    from stations.models import ChargingStation

    station = ChargingStation.objects.get(identity="DEMO-16")
    html = page_as("Operators", reverse("admin:stations_chargingstation_change", args=[station.pk]))
    assert "Times in CET (Europe/Amsterdam)" in html or "Times in CEST (Europe/Amsterdam)" in html
    assert re.search(
        r'id="station-last-seen"[^>]*><time datetime="[^"]+" '
        r'title="[^"]+ \(Europe/Amsterdam\)" data-relative>3 hours ago</time>',
        html,
    )
    # One date format on the whole page, the recorded fields below included.
    assert_one_date_format(html)


def test_the_session_curve_is_one_query_whatever_the_number_of_samples(
    history: dict[str, Any], django_assert_num_queries: Any
) -> None:
    from sessions import selectors
    from sessions.models import ChargingSession, MeterSample

    # As the curve's endpoint reads it: the station with the session.
    session = ChargingSession.objects.select_related("station").get(pk=history["session"].pk)
    samples = MeterSample.objects.filter(session=session).count()
    assert samples >= 3
    with django_assert_num_queries(1):
        curve = selectors.session_curve(session=session)
    assert len(curve["energy"]) + len(curve["power"]) >= 3
    assert curve["energy"][0]["y"] == 0.0
    # Ten times the samples: still one query (read in batches).
    copies = [
        MeterSample(
            session=session,
            station_id=s.station_id,
            evse_id=s.evse_id,
            connector_id=s.connector_id,
            timestamp=s.timestamp + dt.timedelta(seconds=copy + 1),
            measurand=s.measurand,
            unit=s.unit,
            value=s.value,
            context=s.context,
        )
        for s in MeterSample.objects.filter(session=session)
        for copy in range(9)
    ]
    MeterSample.objects.bulk_create(copies)
    with django_assert_num_queries(1):
        bigger = selectors.session_curve(session=session)
    assert len(bigger["energy"]) + len(bigger["power"]) == 10 * (
        len(curve["energy"]) + len(curve["power"])
    )


def test_the_dashboards_today_is_the_operators_configured_zone(roles: None, settings) -> None:  # noqa: ARG001
    """PANEL_TIME_ZONE: the day the dashboard counts, and the zone it names."""
    from cpo.panel import dashboard

    settings.PANEL_TIME_ZONE = "America/New_York"
    now = dt.datetime(2026, 12, 1, 3, 0, tzinfo=dt.UTC)  # still 30 November in New York
    summary = dashboard.dashboard_summary(now=now)
    assert summary["today"]["since"] == "2026-11-30T00:00:00-05:00"
    assert summary["time_zone"] == "America/New_York"
    html = page_as("Operators", reverse("admin:index"))
    assert 'data-time-zone="America/New_York"' in html
    assert re.search(r"Times and “today” in E[SD]T \(America/New_York\)", html)


def test_a_stations_commands_page_lists_them_in_the_sites_zone(history: dict[str, Any]) -> None:
    from stations.commands import services as commands
    from stations.models import ChargingStation

    station = ChargingStation.objects.get(identity="DEMO-16")
    command = commands.command_create(station=station, verb="clear_cache", params={})
    html = page_as(
        "Operators", reverse("admin:stations_chargingstation_commands", args=[station.pk])
    )
    created = command.created_at.astimezone(ZoneInfo("Europe/Amsterdam"))
    assert f"{created:%Y-%m-%d %H:%M:%S} {created.tzname()}" in html
    assert re.search(r"times in CES?T \(Europe/Amsterdam\)", html)
    assert_one_date_format(html)


def test_the_session_page_in_dutch_gives_its_script_dutch_words(
    history: dict[str, Any],
) -> None:
    client = Client()
    user = make_staff("page-dutch", "Operators")
    user.language = "nl"
    user.save(update_fields=["language"])
    client.force_login(user)
    html = client.get(session_url(history["session"])).content.decode()
    assert "Kostenopbouw" in html  # "Cost breakdown"
    assert "Meterwaarden" in html  # "Meter samples"
    found = re.search(r'<script id="panel-texts" type="application/json">(.*?)</script>', html)
    assert found is not None
    texts = json.loads(found.group(1))
    assert texts["just now"] == "zojuist"
    assert texts["%(time)s ago"] == "%(time)s geleden"
    assert texts["updated"] == "Live: bijgewerkt"
    assert texts["plurals"]["%(n)d day"] == ["%(n)d dag", "%(n)d dagen"]

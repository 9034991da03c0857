"""Revenue from the rated CDRs: per currency, per month, per site and month, per token."""

from __future__ import annotations

import datetime as dt

import pytest
from django.utils import timezone

from billing import selectors, services
from stations.models import Location
from tests.billing.conftest import make_account, make_cdr, make_site

H = dt.timedelta(hours=1)


@pytest.mark.django_db(transaction=True)
def test_revenue_is_rated_cdrs_excl_vat_with_credits_deducted() -> None:
    station = make_site("B-1")
    account = make_account("Fleet")
    now = timezone.now()
    make_cdr(account, station, end=now - H, excl="12.345")
    credited = make_cdr(account, station, end=now - H, excl="5.00")
    make_cdr(account, station, end=now - H, excl="1000", currency="JPY")
    services.cdr_credit(cdr_id=credited.pk, reason="wrong tariff")

    revenue = selectors.revenue_by_currency(start=now - 2 * H, end=now)

    assert revenue == [
        {"currency": "EUR", "amount": "12.35"},
        {"currency": "JPY", "amount": "1000"},
    ]
    assert selectors.revenue_source() == {
        "source": selectors.REVENUE_FROM_CDRS,
        "label": "Rated CDRs, excl. VAT (credits deducted)",
    }
    # A CDR counts at its session's start.
    assert selectors.revenue_by_currency(start=now - H, end=now) == []


@pytest.mark.django_db
def test_revenue_per_month_in_the_panel_time_zone(settings) -> None:
    settings.PANEL_TIME_ZONE = "Europe/Amsterdam"
    station = make_site("B-2")
    account = make_account("Fleet")
    now = dt.datetime(2025, 3, 10, 12, tzinfo=dt.UTC)
    # Starts 2025-01-31 23:15 UTC: February in Amsterdam.
    make_cdr(account, station, end=dt.datetime(2025, 2, 1, 0, 0, tzinfo=dt.UTC), excl="2.005")
    make_cdr(account, station, end=dt.datetime(2025, 3, 1, 12, tzinfo=dt.UTC), excl="1.00")

    chart = selectors.revenue_per_month(months=3, now=now)

    assert chart["labels"] == ["2025-01", "2025-02", "2025-03"]
    assert chart["datasets"] == [{"label": "EUR", "data": [0.0, 2.01, 1.0]}]


@pytest.mark.django_db
def test_revenue_per_site_month_and_per_token() -> None:
    station = make_site("B-3")
    account = make_account("Fleet")
    elsewhere = Location.objects.create(name="Depot", time_zone="UTC")
    end = dt.datetime(2025, 2, 1, 0, 0, tzinfo=dt.UTC)  # starts 23:15 UTC on 31 January
    make_cdr(account, station, end=end, excl="10.00")
    make_cdr(account, station, end=end, excl="7.00")
    # The CDR's own site snapshot wins over the station's site of today.
    make_cdr(account, station, end=end, excl="4.00", location=elsewhere)
    site = station.location_id

    cells = selectors.revenue_per_site_month(
        zones={"Europe/Amsterdam": [site], "UTC": [elsewhere.pk, None]},
        first_month=dt.date(2025, 1, 1),
        last_month=dt.date(2025, 2, 1),
    )
    assert cells == {
        (site, "2025-02"): {"EUR": "17.00"},
        (elsewhere.pk, "2025-01"): {"EUR": "4.00"},  # in the snapshot site's own time zone
    }

    per_token = selectors.revenue_per_token(start=end - H, end=end + H)
    # make_cdr's CDRs name token 04AA, which the network does not know.
    assert per_token == {"04aa": {"EUR": "21.00"}}

"""Billing periods and invoice dates in the account's time zone (default: the seller's)."""

from __future__ import annotations

import datetime as dt
import zoneinfo

import pytest
from django.core.exceptions import ValidationError

from billing import services
from billing.apps import check_billing_time_zone
from billing.models import BillingPeriod, Invoice, InvoiceLine
from sessions.models import CustomerAccount
from tests.billing.conftest import (
    make_account,
    make_cdr,
    make_ended_session,
    make_tariff,
    make_token,
)

UTC = dt.UTC
AMS = zoneinfo.ZoneInfo("Europe/Amsterdam")
MONTHLY = CustomerAccount.BillingPeriod.MONTHLY


def test_bounds_are_local_midnights_across_summer_time() -> None:
    # October 2025 starts in summer time (UTC+2) and ends in winter time (UTC+1).
    assert services.period_bounds(MONTHLY, dt.datetime(2025, 10, 15, tzinfo=UTC), AMS) == (
        dt.datetime(2025, 9, 30, 22, tzinfo=UTC),
        dt.datetime(2025, 10, 31, 23, tzinfo=UTC),
    )
    # 31 October 23:30 local is 22:30 UTC: October. 1 November 00:30 local is 23:30 UTC on
    # 31 October: November, in Amsterdam.
    october_end = dt.datetime(2025, 10, 31, 23, tzinfo=UTC)
    late = dt.datetime(2025, 10, 31, 23, 30, tzinfo=AMS)
    assert services.period_bounds(MONTHLY, late, AMS)[1] == october_end
    early = dt.datetime(2025, 11, 1, 0, 30, tzinfo=AMS)
    assert services.period_bounds(MONTHLY, early, AMS)[0] == october_end
    # The day of the change to summer time has 23 hours.
    start, end = services.period_bounds(
        CustomerAccount.BillingPeriod.DAILY, dt.datetime(2025, 3, 30, 12, tzinfo=UTC), AMS
    )
    assert end - start == dt.timedelta(hours=23)
    weekly = services.period_bounds(
        CustomerAccount.BillingPeriod.WEEKLY, dt.datetime(2025, 3, 30, 23, 30, tzinfo=UTC), AMS
    )
    assert weekly[0] == dt.datetime(2025, 3, 31, tzinfo=AMS)  # Monday 31 March, local


def test_the_31_october_session_is_on_the_october_invoice(station) -> None:
    """Rated by the engine; the account has no zone of its own: the seller's applies."""
    account = make_account("Amsterdam fleet")
    assert account.time_zone == ""
    token = make_token(account)
    tariff = make_tariff()
    # 31 October 23:30 local (22:30 UTC), past midnight: a session belongs to the period in
    # which it started.
    october = make_ended_session(
        station, token, tariff, start=dt.datetime(2025, 10, 31, 22, 30, tzinfo=UTC), minutes=40
    )
    # 1 November 00:30 local, which is still 31 October in UTC.
    november = make_ended_session(
        station, token, tariff, start=dt.datetime(2025, 10, 31, 23, 30, tzinfo=UTC), minutes=20
    )
    october_cdr = services.cdr_create_for_session(session_id=october.pk)
    november_cdr = services.cdr_create_for_session(session_id=november.pk)

    # 1 November 00:05 local: October is over in Amsterdam.
    services.billing_periods_close_due(now=dt.datetime(2025, 10, 31, 23, 5, tzinfo=UTC))
    invoice = InvoiceLine.objects.get(cdr=october_cdr).invoice
    assert invoice.period_local_dates == (dt.date(2025, 10, 1), dt.date(2025, 10, 31))
    assert invoice.time_zone == "Europe/Amsterdam"
    assert invoice.period.time_zone == "Europe/Amsterdam"
    assert (invoice.period_start, invoice.period_end) == (
        dt.datetime(2025, 9, 30, 22, tzinfo=UTC),
        dt.datetime(2025, 10, 31, 23, tzinfo=UTC),
    )
    assert not InvoiceLine.objects.filter(cdr=november_cdr).exists()
    # Issued at 00:30 local on 1 November: the issue date is the local one.
    issued = services.invoice_issue(
        invoice_id=invoice.pk, now=dt.datetime(2025, 10, 31, 23, 30, tzinfo=UTC)
    )
    assert issued.issue_date == dt.date(2025, 11, 1)

    services.billing_periods_close_due(now=dt.datetime(2025, 12, 1, 1, tzinfo=UTC))
    assert InvoiceLine.objects.get(cdr=november_cdr).invoice.period_local_dates == (
        dt.date(2025, 11, 1),
        dt.date(2025, 11, 30),
    )


def test_an_account_in_its_own_zone(station) -> None:
    account = make_account("New York fleet", time_zone="America/New_York")
    # 31 January 22:00 in New York is 1 February 03:00 UTC: January's.
    cdr = make_cdr(account, station, end=dt.datetime(2025, 2, 1, 3, 45, tzinfo=UTC), excl="4.00")
    services.billing_periods_close_due(now=dt.datetime(2025, 2, 1, 5, 1, tzinfo=UTC))
    invoice = InvoiceLine.objects.get(cdr=cdr).invoice
    assert invoice.period_start == dt.datetime(2025, 1, 1, 5, tzinfo=UTC)
    assert invoice.period_local_dates == (dt.date(2025, 1, 1), dt.date(2025, 1, 31))
    assert invoice.time_zone == "America/New_York"
    # Issued at 2 February 01:00 UTC, still 1 February in New York.
    issued = services.invoice_issue(
        invoice_id=invoice.pk, now=dt.datetime(2025, 2, 2, 1, tzinfo=UTC)
    )
    assert issued.issue_date == dt.date(2025, 2, 1)


def test_the_series_follows_the_local_issue_date(station) -> None:
    account = make_account("New year")
    make_cdr(account, station, end=dt.datetime(2025, 12, 10, tzinfo=UTC), excl="1.00")
    services.billing_periods_close_due(now=dt.datetime(2025, 12, 31, 23, 30, tzinfo=UTC))
    # 00:30 on 1 January 2026 in Amsterdam: the 2026 series, dated 2026.
    invoice = services.invoice_issue(
        invoice_id=Invoice.objects.get().pk, now=dt.datetime(2025, 12, 31, 23, 30, tzinfo=UTC)
    )
    assert (invoice.number, invoice.issue_date) == ("INV-2026-000001", dt.date(2026, 1, 1))


def test_a_change_of_zone_leaves_no_overlap_and_no_gap(station) -> None:
    account = make_account("Moves", time_zone="UTC")
    january, _ = services.billing_period_ensure(
        account=account, instant=dt.datetime(2025, 1, 20, tzinfo=UTC)
    )
    assert (january.start, january.end) == (
        dt.datetime(2025, 1, 1, tzinfo=UTC),
        dt.datetime(2025, 2, 1, tzinfo=UTC),
    )
    account.time_zone = "Europe/Amsterdam"
    account.save()
    # The period already open stands; the next one starts where it ends.
    services.billing_periods_ensure(now=dt.datetime(2025, 2, 10, tzinfo=UTC))
    periods = list(BillingPeriod.objects.filter(account=account).order_by("start"))
    assert [(p.start, p.end) for p in periods] == [
        (dt.datetime(2025, 1, 1, tzinfo=UTC), dt.datetime(2025, 2, 1, tzinfo=UTC)),
        (dt.datetime(2025, 2, 1, tzinfo=UTC), dt.datetime(2025, 3, 1, tzinfo=AMS)),
    ]
    march, created = services.billing_period_ensure(
        account=account, instant=dt.datetime(2025, 3, 1, 0, 30, tzinfo=AMS)
    )
    assert created
    assert (march.start, march.end) == (
        dt.datetime(2025, 3, 1, tzinfo=AMS),
        dt.datetime(2025, 4, 1, tzinfo=AMS),
    )
    assert march.time_zone == "Europe/Amsterdam"
    # Asking again finds the same periods.
    assert services.billing_periods_ensure(now=dt.datetime(2025, 3, 2, tzinfo=UTC)) == 0


def test_time_zones_are_validated(db, settings) -> None:
    account = CustomerAccount(name="Typo", time_zone="Europe/Amsterdma")
    with pytest.raises(ValidationError, match="time_zone"):
        account.full_clean()
    assert check_billing_time_zone(None) == []
    settings.BILLING_TIME_ZONE = "Mars/Olympus"
    assert [e.id for e in check_billing_time_zone(None)] == ["billing.E001"]

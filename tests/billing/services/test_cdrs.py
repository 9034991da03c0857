"""CDRs: rated from a real ended session, equal to the engine, immutable, credited, re-rated."""

from __future__ import annotations

import datetime as dt
import time
import uuid
from decimal import Decimal

import pytest
from django.db import transaction

from billing import services
from billing.models import Cdr, ImmutableError, InvoiceLine
from cpo.lib.api import ApplicationError
from sessions import services as session_services
from sessions.models import ChargingSession
from stations.models import ConnectorStatusEvent
from tariffs.services import session_rate
from tests.billing.conftest import (
    make_account,
    make_ended_session,
    make_tariff,
    make_token,
    priced_with,
)
from tests.conftest import start_celery_worker

D = Decimal
START = dt.datetime(2025, 3, 10, 17, 30, tzinfo=dt.UTC)


@pytest.fixture
def ended(station):
    """10 kWh over 60 minutes, the last 15 of them parked (SuspendedEV)."""
    account = make_account("Fleet A")
    token = make_token(account)
    session = make_ended_session(station, token, make_tariff(), start=START, signed=True)
    for minute, status in ((0, "Charging"), (45, "SuspendedEV")):
        ConnectorStatusEvent.objects.create(
            station=station,
            evse_id=1,
            connector_id=1,
            status=status,
            timestamp=START + dt.timedelta(minutes=minute),
        )
    return session


def test_cdr_from_an_ended_session_matches_the_engine(ended: ChargingSession) -> None:
    cdr = services.cdr_create_for_session(session_id=ended.pk)
    assert cdr is not None
    expected = session_rate(session=ended)

    # By hand: 10 kWh x 0.30 = 3.00; 15 min parked x 2.00/h = 0.50; 3.50 + 21 % = 4.235 -> 4.24.
    assert (cdr.total_cost_excl_vat, cdr.total_cost_incl_vat) == (D("3.50"), D("4.24"))
    assert cdr.total_cost_excl_vat == expected.total_cost.excl_vat
    assert cdr.total_cost_incl_vat == expected.total_cost.incl_vat
    assert cdr.total_vat == D("0.74")
    assert cdr.total_energy_cost_excl_vat == expected.total_energy_cost.excl_vat == D("3.00")
    assert cdr.total_parking_cost_excl_vat == expected.total_parking_cost.excl_vat == D("0.50")
    assert cdr.total_time_cost_excl_vat == D(0)
    assert cdr.total_energy_kwh == D("10")
    assert cdr.total_time_h == D("1")
    assert cdr.total_parking_time_h == D("0.25")
    assert cdr.currency == "EUR"
    assert cdr.vat_breakdown == [{"rate": "21", "excl_vat": "3.50", "vat": "0.74"}]
    assert len(cdr.charging_periods) == len(expected.periods) == 2
    assert [p["start_date_time"] for p in cdr.charging_periods] == [
        p["start_date_time"] for p in expected.to_ocpi_charging_periods()
    ]
    assert cdr.charging_periods[1]["dimensions"] == [
        {"type": "ENERGY", "volume": 2.5},
        {"type": "PARKING_TIME", "volume": 0.25},
    ]

    # Snapshots: what was true when the session was rated.
    assert cdr.site_snapshot["name"] == "Harbour car park"
    assert cdr.site_snapshot["evse_uid"] == "CP-BILL-1-1"
    assert cdr.site_snapshot["connector_standard"] == "IEC_62196_T2"
    assert ended.id_token is not None
    assert cdr.token_snapshot["uid"] == ended.id_token.uid
    assert cdr.token_visual_number == ended.id_token.visual_number
    assert cdr.tariff_snapshot == ended.tariff.version.ocpi
    assert cdr.tariff_version == ended.tariff.version
    assert cdr.account_id == ended.account_id
    assert cdr.signed_data is not None
    assert [v["nature"] for v in cdr.signed_data["signed_values"]] == ["Start", "End"]
    assert cdr.signed_data["signed_values"][0]["signed_data"].startswith("OCMF|")
    # Unrounded, for audits.
    assert D(cdr.rating_audit["total_exact"]["incl_vat"]) == D("4.235")


def test_cdr_creation_is_idempotent(ended: ChargingSession) -> None:
    first = services.cdr_create_for_session(session_id=ended.pk)
    second = services.cdr_create_for_session(session_id=ended.pk)
    assert first == second
    assert Cdr.objects.filter(session=ended).count() == 1


def test_an_active_session_gets_no_cdr(ended: ChargingSession) -> None:
    ChargingSession.objects.filter(pk=ended.pk).update(status=ChargingSession.Status.ACTIVE)
    assert services.cdr_create_for_session(session_id=ended.pk) is None
    assert not Cdr.objects.exists()


def test_cdrs_are_immutable(ended: ChargingSession) -> None:
    cdr = services.cdr_create_for_session(session_id=ended.pk)
    assert cdr is not None
    cdr.total_cost_incl_vat = D("0.01")
    with pytest.raises(ImmutableError):
        cdr.save()
    with pytest.raises(ImmutableError):
        Cdr.objects.filter(pk=cdr.pk).update(total_cost_incl_vat=D("0.01"))
    with pytest.raises(ImmutableError):
        cdr.delete()
    with pytest.raises(ImmutableError):
        Cdr.objects.filter(pk=cdr.pk).delete()
    cdr.refresh_from_db()
    assert cdr.total_cost_incl_vat == D("4.24")


def test_rerate_credits_the_uninvoiced_cdr_and_makes_a_new_revision(
    ended: ChargingSession,
) -> None:
    first = services.cdr_create_for_session(session_id=ended.pk)
    assert first is not None
    second = services.cdr_rerate(session_id=ended.pk, reason="tariff corrected")
    credit = Cdr.objects.get(credit_of=first)
    assert credit.uid == f"{first.uid}-C"
    assert credit.total_cost_incl_vat == -first.total_cost_incl_vat
    assert credit.total_vat == -first.total_vat
    assert credit.vat_breakdown == [{"rate": "21", "excl_vat": "-3.50", "vat": "-0.74"}]
    assert second.revision == 2
    assert second.total_cost_incl_vat == first.total_cost_incl_vat
    # The cancelled pair is billed to nobody; the new revision is.
    assert list(Cdr.objects.billable()) == [second]


def test_an_invoiced_session_cannot_be_rerated(ended: ChargingSession) -> None:
    cdr = services.cdr_create_for_session(session_id=ended.pk)
    assert cdr is not None
    assert ended.account is not None
    period, _ = services.billing_period_ensure(account=ended.account, instant=START)
    invoice = services.billing_period_close(
        period_id=period.pk, now=period.end + dt.timedelta(hours=1)
    )[0]
    assert InvoiceLine.objects.get(cdr=cdr).invoice == invoice
    with pytest.raises(ApplicationError, match="credit its invoice"):
        services.cdr_rerate(session_id=ended.pk)
    # A credit CDR of an invoiced CDR is billed with the next period, as a negative line.
    credit = services.cdr_credit(cdr_id=cdr.pk, reason="goodwill")
    assert list(Cdr.objects.billable()) == [credit]
    with pytest.raises(ApplicationError, match="already credited"):
        services.cdr_credit(cdr_id=cdr.pk, reason="twice")


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_session_end_rates_the_session_in_a_real_worker(station) -> None:
    """session_stop -> session_ended -> on_commit -> Celery -> a worker writes the CDR."""
    from cpo.celery import app

    account = make_account("Driver B")
    token = make_token(account)
    tariff = make_tariff(energy="0.40")
    start = dt.datetime(2025, 3, 11, 8, 0, tzinfo=dt.UTC)
    result = session_services.session_start(
        station_id=station.pk,
        evse_id=1,
        connector_id=1,
        id_tag=token.uid,
        meter_start_wh=D(5000),
        timestamp=start,
    )
    priced_with(ChargingSession.objects.get(pk=result.session_id), tariff)
    app.control.purge()
    worker = start_celery_worker(f"cdr-{uuid.uuid4().hex[:6]}")
    try:
        with transaction.atomic():
            session_services.session_stop(
                station_id=station.pk,
                transaction_id=result.transaction_id,
                meter_stop_wh=D(17_500),
                timestamp=start + dt.timedelta(minutes=90),
            )
            # Nothing is enqueued before the stop is committed.
            assert not Cdr.objects.exists()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not Cdr.objects.exists():
            time.sleep(0.2)
    finally:
        worker.stop()
    cdr = Cdr.objects.get(session_id=result.session_id)
    # 12.5 kWh x 0.40 = 5.00 excl., 6.05 incl. 21 % VAT.
    assert (cdr.total_cost_excl_vat, cdr.total_cost_incl_vat) == (D("5.00"), D("6.05"))
    assert cdr.token_uid == token.uid


def test_a_session_held_for_review_gets_no_cdr(ended: ChargingSession) -> None:
    ChargingSession.objects.filter(pk=ended.pk).update(rating_status="needs_review")
    assert services.cdr_create_for_session(session_id=ended.pk) is None
    assert not Cdr.objects.filter(session=ended).exists()
    # Nothing to invoice either.
    assert not Cdr.objects.billable().exists()

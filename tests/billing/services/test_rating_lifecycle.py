"""Every ended session ends up rated, or waits where finance sees it: no tariff, held for
review, rating failed; finance assigns a tariff, bills anyway or writes off."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from django.utils import timezone

from billing import services
from billing.models import BillingAuditEntry, Cdr, SessionReview
from billing.selectors import review_alerts
from billing.tasks import RatingTask
from cpo.lib.api import ApplicationError
from sessions.models import ChargingSession
from tariffs.models import SessionTariff
from tests.billing.conftest import make_account, make_ended_session, make_tariff, make_token

pytestmark = pytest.mark.django_db

D = Decimal
Status = ChargingSession.RatingStatus


@pytest.fixture
def unpriced(station) -> ChargingSession:
    """An ended session that no tariff applied to when it started."""
    token = make_token(make_account("Walk-in"))
    session = make_ended_session(
        station, token, make_tariff(), start=timezone.now() - dt.timedelta(days=5)
    )
    SessionTariff.objects.filter(session=session).delete()
    return session


def test_no_tariff_waits_in_the_queue_until_finance_assigns_one(unpriced, admin_user) -> None:
    assert services.cdr_create_for_session(session_id=unpriced.pk) is None
    unpriced.refresh_from_db()
    assert unpriced.rating_status == Status.NO_TARIFF
    assert unpriced.rating_note == "no tariff applied at the session's start"
    assert list(SessionReview.objects.values_list("pk", flat=True)) == [unpriced.pk]
    assert review_alerts()["counts"] == {"sessions_to_review": 1}

    cdr = services.session_tariff_assign_and_rate(
        session=unpriced, tariff=make_tariff(energy="0.50"), user=admin_user
    )
    unpriced.refresh_from_db()
    assert unpriced.rating_status == Status.RATED
    assert cdr.total_cost_excl_vat == D("5.00")  # 10 kWh x 0.50, no parking
    assert SessionTariff.objects.get(session=unpriced).assigned_by == admin_user
    assert BillingAuditEntry.objects.filter(action="session_tariff_assigned", user=admin_user)
    assert review_alerts()["counts"] == {"sessions_to_review": 0}
    with pytest.raises(ApplicationError, match="Only a session without tariff"):
        services.session_tariff_assign_and_rate(
            session=unpriced, tariff=make_tariff(), user=admin_user
        )


def test_a_held_session_is_billed_only_when_finance_says_so(station, admin_user) -> None:
    token = make_token(make_account("Held"))
    session = make_ended_session(
        station, token, make_tariff(), start=timezone.now() - dt.timedelta(hours=3)
    )
    ChargingSession.objects.filter(pk=session.pk).update(
        rating_status=Status.NEEDS_REVIEW, rating_note="started with a Blocked token"
    )
    assert services.cdr_create_for_session(session_id=session.pk) is None
    assert not Cdr.objects.filter(session=session).exists()

    session.refresh_from_db()
    cdr = services.session_bill_anyway(session=session, reason="known customer", user=admin_user)
    session.refresh_from_db()
    assert cdr.total_cost_excl_vat == D("3.00")
    assert session.rating_status == Status.RATED
    assert session.rating_note == f"billed anyway by {admin_user.username}: known customer"


def test_written_off_is_never_billed(unpriced, admin_user) -> None:
    services.cdr_create_for_session(session_id=unpriced.pk)
    unpriced.refresh_from_db()
    with pytest.raises(ApplicationError, match="needs a reason"):
        services.session_write_off(session=unpriced, reason=" ", user=admin_user)
    services.session_write_off(session=unpriced, reason="test charge", user=admin_user)
    unpriced.refresh_from_db()
    assert unpriced.rating_status == Status.WRITTEN_OFF
    assert unpriced.rating_note == f"{admin_user.username}: test charge"
    assert services.cdrs_create_missing(older_than=dt.timedelta(0), limit=10) == 0
    assert services.cdr_create_for_session(session_id=unpriced.pk) is None
    assert not SessionReview.objects.exists()


def test_the_sweep_has_no_look_back_limit_and_retries_failures(station, monkeypatch) -> None:
    token = make_token(make_account("Old"))
    old = make_ended_session(
        station, token, make_tariff(), start=timezone.now() - dt.timedelta(days=40)
    )
    calls = {"n": 0}
    real = services._session_rate

    def flaky(session):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("the database went away")
        return real(session)

    monkeypatch.setattr(services, "_session_rate", flaky)
    assert services.cdrs_create_missing(older_than=dt.timedelta(minutes=10), limit=10) == 0
    old.refresh_from_db()
    assert old.rating_status == Status.FAILED
    assert old.rating_note == "rating failed: the database went away"
    assert old.rating_attempts == 1
    assert list(SessionReview.objects.values_list("pk", flat=True)) == [old.pk]
    # The next sweep rates it: forty days after it ended.
    assert services.cdrs_create_missing(older_than=dt.timedelta(minutes=10), limit=10) == 1
    old.refresh_from_db()
    assert old.rating_status == Status.RATED


def test_a_task_that_fails_for_good_marks_its_session(station, settings) -> None:
    token = make_token(make_account("Failing"))
    session = make_ended_session(
        station, token, make_tariff(), start=timezone.now() - dt.timedelta(hours=2)
    )
    RatingTask().on_failure(
        ValueError("bad usage"),
        "task-1",
        (session.pk,),
        {},
        None,  # type: ignore[arg-type]  # no traceback: the hook does not read it
    )
    session.refresh_from_db()
    assert (session.rating_status, session.rating_note) == (
        Status.FAILED,
        "rating failed: bad usage",
    )
    # Past the last attempt the sweep leaves it to finance.
    ChargingSession.objects.filter(pk=session.pk).update(
        rating_attempts=settings.BILLING_RATING_MAX_ATTEMPTS
    )
    assert services.cdrs_create_missing(older_than=dt.timedelta(0), limit=10) == 0


def test_a_billed_session_with_a_flag_is_in_the_queue_to_check(station) -> None:
    token = make_token(make_account("Flagged"))
    session = make_ended_session(
        station, token, make_tariff(), start=timezone.now() - dt.timedelta(hours=3)
    )
    ChargingSession.objects.filter(pk=session.pk).update(
        anomalies=["meter reset at 12:00: 5000 Wh -> 0 Wh, segments summed"]
    )
    assert services.cdr_create_for_session(session_id=session.pk) is not None
    # Billed, so nothing to decide: no alert, but listed for a look (and perhaps a credit).
    assert list(SessionReview.objects.values_list("pk", "rating_status")) == [
        (session.pk, Status.RATED)
    ]
    assert review_alerts()["counts"] == {"sessions_to_review": 0}

"""Two period-close runs at once, in two real Celery worker processes, on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import time
import uuid
from collections import Counter
from decimal import Decimal

import pytest
from django.db import connection
from django.utils import timezone

from billing.models import Cdr, Invoice, InvoiceLine
from cpo.lib.money import round_money
from tests.billing.conftest import make_account, make_cdr
from tests.conftest import start_celery_worker

ACCOUNTS = 40
CDRS_PER_ACCOUNT = 5


@pytest.mark.live
@pytest.mark.django_db(transaction=True)
def test_two_workers_closing_at_once_bill_each_cdr_once(station) -> None:
    if connection.vendor == "sqlite":
        pytest.skip(
            "SQLite serialises every writer (IMMEDIATE transactions): two workers "
            "cannot close at the same time; this runs on PostgreSQL"
        )
    from billing.tasks import billing_periods_close_due
    from cpo.celery import app

    # Ended in an earlier month: every account's last period is due.
    ended = timezone.now() - dt.timedelta(days=40)
    expected: dict[int, Decimal] = {}
    for n in range(ACCOUNTS):
        account = make_account(f"Concurrent {n}")
        cdrs = [
            make_cdr(account, station, end=ended + dt.timedelta(minutes=i), excl=f"{i + 1}.15")
            for i in range(CDRS_PER_ACCOUNT)
        ]
        # The invoice's VAT is 21 % of the summed base, rounded once (README, Billing).
        base = sum((c.total_cost_excl_vat for c in cdrs), Decimal(0))
        expected[account.pk] = base + round_money(base * Decimal("0.21"), "EUR")

    app.control.purge()
    tag = uuid.uuid4().hex[:6]
    workers = [start_celery_worker(f"close{i}-{tag}") for i in range(2)]
    try:
        queues = []
        for i in range(len(workers)):
            # A queue per worker, so that each run lands on its own process.
            queue = f"billing-close-{i}-{tag}"
            hostname = f"close{i}-{tag}@test-{os.getpid()}"
            assert app.control.add_consumer(queue, destination=[hostname], reply=True)
            queues.append(queue)
        # A worker listens on a new queue from its next broker poll (about a second).
        time.sleep(1.5)
        runs = [billing_periods_close_due.apply_async(queue=queue) for queue in queues]
        made = [run.get(timeout=120) for run in runs]
    finally:
        for worker in workers:
            worker.stop()

    # Between them, the two runs made exactly one invoice per account.
    assert sum(made) == ACCOUNTS, made
    for worker in workers:  # each process ran one of the two closes
        assert "billing.tasks.billing_periods_close_due" in worker.log.read_text()
    per_account = Counter(Invoice.objects.values_list("account_id", flat=True))
    assert per_account == dict.fromkeys(expected, 1)
    assert InvoiceLine.objects.count() == ACCOUNTS * CDRS_PER_ACCOUNT
    assert InvoiceLine.objects.values("cdr").distinct().count() == Cdr.objects.count()
    assert not Cdr.objects.billable().exists()
    for invoice in Invoice.objects.all():
        assert invoice.total_incl_vat == expected[invoice.account_id]

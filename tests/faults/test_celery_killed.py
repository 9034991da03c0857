"""The Celery worker killed (SIGKILL) with CDRs pending.

Chargers end 40 sessions over OCPP while no worker runs: daphne queues one rating task per
ended session (`billing.tasks.cdr_create_for_session`, acks_late). A worker starts on the
queue and is SIGKILLed as soon as its first CDR exists; a new worker takes the rest.

What the project does with the killed worker's tasks: acks_late keeps them unacknowledged in
the Redis transport's `unacked` hash, but kombu gives them back to the queue only after the
visibility timeout (one hour); the tasks the new worker can see are only those still queued.
Until then the rating sweep (`billing.tasks.cdrs_create_missing`, beat every 10 minutes,
sessions ended more than 10 minutes ago) is what rates them. This test therefore drives the
sweep task explicitly through the new worker, then forces the late redelivery of the killed
worker's messages (as kombu's restore after the visibility timeout would) to show that it
changes nothing: every ended session has exactly one CDR.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from typing import Any

import pytest
from django.utils import timezone
from ocpp.v16 import call

from tests.conftest import start_celery_worker
from tests.faults.conftest import PASSWORD, celery_popen, fresh_daphne, in_thread, sigkill
from tests.ocpp_client import station

pytestmark = [pytest.mark.fault, pytest.mark.live, pytest.mark.django_db(transaction=True)]

STATIONS = 4
SESSIONS_EACH = 10
TOTAL = STATIONS * SESSIONS_EACH


def ts(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@in_thread
def make_sites() -> list[tuple[str, str]]:
    """Stations on a site, each with a fleet card; one default tariff."""
    from tariffs.models import TariffAssignment
    from tests.billing.conftest import make_account, make_site, make_tariff, make_token

    sites = []
    for n in range(STATIONS):
        cs = make_site(f"CDR-{n}")
        cs.set_password(PASSWORD)
        cs.save()
        token = make_token(make_account(f"Fleet {n}"))
        sites.append((cs.identity, token.uid))
    TariffAssignment.objects.create(tariff=make_tariff())
    return sites


def broker(operation: Any) -> Any:
    from cpo.celery import app

    with app.connection_for_write() as connection:
        return operation(connection.default_channel)


def queued(channel: Any) -> int:
    return channel.client.llen("celery")


def unacked(channel: Any) -> int:
    return channel.client.hlen(channel.unacked_key)


def restore_unacked(channel: Any) -> int:
    """What kombu's restore_visible does once the visibility timeout has passed."""
    tags = channel.client.hkeys(channel.unacked_key)
    for tag in tags:
        channel.qos.restore_by_tag(tag, leftmost=True)
    return len(tags)


def cdr_count() -> int:
    from billing.models import Cdr

    return Cdr.objects.filter(credit=False).count()


def rating_tasks(log_path: Any) -> tuple[int, int]:
    """(received, finished) rating tasks in a worker's log."""
    received = finished = 0
    for line in log_path.read_text(errors="replace").splitlines():
        if "billing.tasks.cdr_create_for_session[" in line:
            received += line.endswith("received")
            finished += "succeeded" in line or "raised" in line
    return received, finished


def quiet(log_path: Any, timeout: float = 60.0) -> int:
    """Wait until the queue is empty and the worker has finished every rating task it took
    (for a second); returns how many it ran."""
    deadline = time.monotonic() + timeout
    settled = None
    while True:
        received, finished = rating_tasks(log_path)
        if received == finished and broker(queued) == 0:
            if settled is None:
                settled = time.monotonic()
            elif time.monotonic() - settled > 1.0:
                return finished
        else:
            settled = None
        if time.monotonic() > deadline:
            text = log_path.read_text(errors="replace")
            raise AssertionError(f"worker ran {finished} of {received} tasks: {text[-2000:]}")
        time.sleep(0.1)


async def test_celery_worker_sigkilled_with_cdrs_pending_every_session_rated_once(
    transactional_db,  # noqa: ARG001
):
    from billing.models import Cdr
    from billing.tasks import cdrs_create_missing
    from cpo.celery import app
    from sessions.models import ChargingSession

    await asyncio.to_thread(app.control.purge)
    sites = await make_sites()
    server = fresh_daphne("fault-cdr")
    start = timezone.now().replace(microsecond=0) - dt.timedelta(hours=4)

    async def charge(identity: str, uid: str) -> None:
        async with station(server.ws_url, identity, password=PASSWORD) as cp:
            for n in range(SESSIONS_EACH):
                began = start + n * dt.timedelta(minutes=10)
                started = await cp.cp.call(
                    call.StartTransaction(
                        connector_id=1, id_tag=uid, meter_start=n * 10_000, timestamp=ts(began)
                    )
                )
                assert started.id_tag_info["status"] == "Accepted"
                await cp.cp.call(
                    call.StopTransaction(
                        transaction_id=started.transaction_id,
                        meter_stop=n * 10_000 + 1000 * (n + 1),
                        timestamp=ts(began + dt.timedelta(minutes=5)),
                    )
                )

    workers: list[Any] = []
    try:
        await asyncio.gather(*(charge(identity, uid) for identity, uid in sites))
        server.stop()
        assert await asyncio.to_thread(broker, queued) == TOTAL  # one rating task per session
        assert await in_thread(cdr_count)() == 0

        first, first_log, _ = celery_popen("fault-w1")
        workers.append(first)
        deadline = time.monotonic() + 60
        while (at_kill := await in_thread(cdr_count)()) == 0:
            assert first.poll() is None, first_log.read_text()[-2000:]
            assert time.monotonic() < deadline, first_log.read_text()[-2000:]
            await asyncio.sleep(0.01)
        sigkill(first)
        held = await asyncio.to_thread(broker, unacked)
        left = await asyncio.to_thread(broker, queued)
        assert at_kill < TOTAL, "the first worker rated everything before it was killed"

        second = await asyncio.to_thread(start_celery_worker, "fault-w2")
        workers.append(second.process)
        ran = await asyncio.to_thread(quiet, second.log)
        after_restart = await in_thread(cdr_count)()
        missing = TOTAL - after_restart

        # The sweep, as beat runs it every 10 minutes, through the new worker.
        swept = await asyncio.to_thread(lambda: cdrs_create_missing.delay().get(timeout=60))
        assert swept == missing
        # An hour later kombu gives the killed worker's messages back to the queue.
        restored = await asyncio.to_thread(broker, restore_unacked)
        ran_late = await asyncio.to_thread(quiet, second.log) - ran
    finally:
        server.stop()
        for process in workers:
            sigkill(process)

    print(
        f"worker killed after {at_kill} CDRs with {left} tasks queued and {held} unacked; "
        f"the new worker ran {ran} and left {missing} unrated; the sweep rated {swept}; "
        f"{restored} late redeliveries ({ran_late} run) changed nothing"
    )

    @in_thread
    def per_session() -> list[tuple[int, int, str]]:
        return [
            (s.pk, Cdr.objects.filter(session=s, credit=False).count(), s.rating_status)
            for s in ChargingSession.objects.all()
        ]

    rows = await per_session()
    assert len(rows) == TOTAL
    assert all(count == 1 and status == "rated" for _, count, status in rows), rows
    assert await in_thread(Cdr.objects.count)() == TOTAL  # no credit notes either

"""Session integrity end to end: daphne on loopback, the `ocpp` library's charge point (1.6J
and 2.0.1), a real Celery worker rating each ended session into its CDR, and the billing
period closed into the invoice. Each case asserts the stored session, the CDR and the
invoice line (or that nothing was billed).

The daphne of this module rates sessions closed on an estimate after 2 s instead of 120 s
(CHARGING_ESTIMATE_RATING_DELAY_SECONDS), so that the delayed rating runs within the test.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.utils import timezone
from ocpp.v16 import call
from ocpp.v201 import call as call201
from ocpp.v201 import call_result as result201

from tests.conftest import DaphneServer, start_daphne
from tests.ocpp_client import station

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.live]

D = Decimal
PASSWORD = "integrity-secret-0001"
MINUTE = dt.timedelta(minutes=1)


@pytest.fixture(scope="module")
def server(django_db_setup, django_db_blocker) -> Iterator[DaphneServer]:  # noqa: ARG001
    daphne = start_daphne("integrity", CHARGING_ESTIMATE_RATING_DELAY_SECONDS="2")
    yield daphne
    daphne.stop()


def ts(moment: dt.datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Site:
    station_id: int
    identity: str
    account_id: int
    uid: str


@sync_to_async
def make(identity: str, protocol: str = "ocpp1.6", *, blocked: bool = False) -> Site:
    """A station on a site, a fleet account billed daily with its card, and a default tariff:
    0.30 EUR/kWh, 2.00 EUR/h parking (60 s steps), 21 % VAT."""
    from tariffs.models import TariffAssignment
    from tests.billing.conftest import make_account, make_site, make_tariff, make_token

    cs = make_site(identity)
    cs.protocol = protocol
    cs.set_password(PASSWORD)
    cs.save()
    account = make_account(f"Fleet {identity}", billing_period="daily")
    token = make_token(account)
    if blocked:
        token.blocked, token.blocked_reason = True, "reported lost"
        token.save()
    TariffAssignment.objects.create(tariff=make_tariff())
    return Site(cs.pk, identity, account.pk, token.uid)


def connect(server: DaphneServer, site: Site, protocol: str = "ocpp1.6") -> Any:
    return station(server.ws_url, site.identity, protocol=protocol, password=PASSWORD)


def session(site: Site, transaction_id: Any) -> Any:
    from sessions.models import ChargingSession

    return ChargingSession.objects.get(
        station_id=site.station_id, transaction_id=str(transaction_id)
    )


asession = sync_to_async(session)


async def until(predicate: Any, timeout: float = 30.0) -> Any:
    check = sync_to_async(predicate, thread_sensitive=False)
    deadline = time.monotonic() + timeout
    while True:
        value = await check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {timeout} s")
        await asyncio.sleep(0.1)


async def cdr_of(site: Site, transaction_id: Any) -> Any:
    """The CDR the worker rated the session into (waits for it)."""
    from billing.models import Cdr

    return await until(
        lambda: Cdr.objects.filter(
            session__station_id=site.station_id,
            session__transaction_id=str(transaction_id),
            credit=False,
        ).first()
    )


@sync_to_async
def charging_station(site: Site) -> Any:
    from stations.models import ChargingStation

    return ChargingStation.objects.get(pk=site.station_id)


def cdr_tasks_done(worker: Any) -> int:
    return sum(
        1
        for line in worker.log.read_text().splitlines()
        if "billing.tasks.cdr_create_for_session[" in line and "succeeded" in line
    )


async def rated_nothing(worker: Any, site: Site, transaction_id: Any, *, tasks: int = 1) -> None:
    """The worker ran the CDR tasks of the ended sessions (`tasks` of them), and this session
    got no CDR."""
    from billing.models import Cdr

    await until(lambda: cdr_tasks_done(worker) >= tasks)
    exists = await sync_to_async(
        Cdr.objects.filter(
            session__station_id=site.station_id, session__transaction_id=str(transaction_id)
        ).exists
    )()
    assert not exists


@sync_to_async
def invoice_lines(site: Site) -> list[Any]:
    """Close the account's billing period of its last session and return the invoice lines."""
    from billing.models import InvoiceLine
    from billing.services import billing_period_close, billing_period_ensure
    from sessions.models import ChargingSession, CustomerAccount

    account = CustomerAccount.objects.get(pk=site.account_id)
    last = (
        ChargingSession.objects.filter(station_id=site.station_id, ended_at__isnull=False)
        .order_by("-ended_at")
        .values_list("ended_at", flat=True)
        .first()
    )
    assert last is not None
    period, _ = billing_period_ensure(account=account, instant=last)
    invoices = billing_period_close(period_id=period.pk, now=period.end)
    return list(
        InvoiceLine.objects.filter(invoice__in=invoices).select_related("cdr").order_by("position")
    )


def energy_reading(at: dt.datetime, value: str, **fields: str) -> dict[str, Any]:
    return {"timestamp": ts(at), "sampledValue": [{"value": value, "unit": "Wh", **fields}]}


def event(
    kind: str,
    seq: int,
    at: dt.datetime,
    tx: str,
    *,
    readings: tuple[tuple[Any, str], ...] = (),
    state: str = "",
    token: str = "",
    evse: int = 1,
    reason: str = "",
    trigger: str = "",
) -> Any:
    """A 2.0.1 TransactionEvent; readings are (value, context) pairs of the energy register."""
    info: dict[str, Any] = {"transaction_id": tx}
    if state:
        info["charging_state"] = state
    if reason:
        info["stopped_reason"] = reason
    kwargs: dict[str, Any] = {
        "event_type": kind,
        "timestamp": ts(at),
        "trigger_reason": trigger
        or {"Started": "Authorized", "Updated": "MeterValuePeriodic", "Ended": "EVDeparted"}[kind],
        "seq_no": seq,
        "transaction_info": info,
    }
    if readings:
        kwargs["meter_value"] = [
            {
                "timestamp": ts(at),
                "sampled_value": [
                    {"value": value, **({"context": context} if context else {})}
                    for value, context in readings
                ],
            }
        ]
    if token:
        kwargs["id_token"] = {"id_token": token, "type": "ISO14443"}
    if kind == "Started":
        kwargs["evse"] = {"id": evse, "connector_id": 1}
    return call201.TransactionEvent(**kwargs)


def now() -> dt.datetime:
    return timezone.now().replace(microsecond=0)


# --- 1. one rule for session energy -----------------------------------------------------------


async def test_ocpp16_energy_is_meter_stop_against_meter_start(server, celery_worker):
    site = await make("E2E-ENERGY-16")
    start = now() - 45 * MINUTE
    async with connect(server, site) as cp:
        started = await cp.cp.call(
            call.StartTransaction(
                connector_id=1, id_tag=site.uid, meter_start=0, timestamp=ts(start)
            )
        )
        tx = started.transaction_id
        await cp.cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=tx,
                meter_value=[energy_reading(start + 20 * MINUTE, "74.48")],
            )
        )
        await cp.cp.call(
            call.StopTransaction(
                transaction_id=tx, meter_stop=74, timestamp=ts(start + 30 * MINUTE)
            )
        )
    stored = await asession(site, tx)
    assert stored.energy_wh == D(74)
    cdr = await cdr_of(site, tx)
    # Before: the CDR took the highest sample, 0.07448 kWh, against a session of 74 Wh.
    assert cdr.total_energy_kwh == D("0.074")
    assert (cdr.total_cost_excl_vat, cdr.total_cost_incl_vat) == (D("0.02"), D("0.03"))
    [line] = await invoice_lines(site)
    assert line.cdr_id == cdr.pk
    assert line.energy_kwh == D("0.074")
    # The invoice's VAT is the rate on the base, rounded once: 21 % of 0.02 is 0.00.
    assert (line.amount_excl_vat, line.amount_incl_vat) == (D("0.02"), D("0.02"))


async def test_ocpp201_energy_is_meter_stop_against_meter_start(server, celery_worker):
    site = await make("E2E-ENERGY-201", "ocpp2.0.1")
    start = now() - 45 * MINUTE
    async with connect(server, site, "ocpp2.0.1") as cp:
        await cp.cp.call(
            event("Started", 0, start, "E-1", readings=((0, "Transaction.Begin"),), token=site.uid)
        )
        await cp.cp.call(event("Updated", 1, start + 20 * MINUTE, "E-1", readings=((74.48, ""),)))
        await cp.cp.call(
            event("Ended", 2, start + 30 * MINUTE, "E-1", readings=((74, "Transaction.End"),))
        )
    assert (await asession(site, "E-1")).energy_wh == D(74)
    cdr = await cdr_of(site, "E-1")
    assert cdr.total_energy_kwh == D("0.074")
    [line] = await invoice_lines(site)
    assert line.energy_kwh == D("0.074")


# --- 2. samples after the stop ----------------------------------------------------------------


async def test_ocpp16_samples_after_the_stop_never_move_the_session(server, celery_worker):
    site = await make("E2E-LATE-16")
    start = now() - 45 * MINUTE
    async with connect(server, site) as cp:
        started = await cp.cp.call(
            call.StartTransaction(
                connector_id=1, id_tag=site.uid, meter_start=1000, timestamp=ts(start)
            )
        )
        tx = started.transaction_id
        await cp.cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=tx,
                meter_value=[energy_reading(start + 10 * MINUTE, "3000")],
            )
        )
        await cp.cp.call(
            call.StopTransaction(
                transaction_id=tx, meter_stop=5000, timestamp=ts(start + 30 * MINUTE)
            )
        )
        await cp.cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=tx,
                meter_value=[energy_reading(start + 40 * MINUTE, "9000")],
            )
        )

    @sync_to_async
    def stored() -> Any:
        row = session(site, tx)
        return row, list(row.samples.values_list("value", "after_stop").order_by("timestamp"))

    row, samples = await stored()
    assert (row.energy_wh, row.meter_last_wh, row.meter_stop_wh) == (D(4000), D(3000), D(5000))
    assert samples == [(D(3000), False), (D(9000), True)]
    assert any("after the stop" in anomaly for anomaly in row.anomalies)
    cdr = await cdr_of(site, tx)
    assert cdr.total_energy_kwh == D(4)
    [line] = await invoice_lines(site)
    assert (line.energy_kwh, line.amount_excl_vat) == (D(4), D("1.20"))


async def test_ocpp201_events_after_the_end_never_move_the_session(server, celery_worker):
    site = await make("E2E-LATE-201", "ocpp2.0.1")
    start = now() - 45 * MINUTE
    async with connect(server, site, "ocpp2.0.1") as cp:
        await cp.cp.call(
            event(
                "Started", 0, start, "L-1", readings=((1000, "Transaction.Begin"),), token=site.uid
            )
        )
        await cp.cp.call(
            event(
                "Ended",
                1,
                start + 30 * MINUTE,
                "L-1",
                readings=((5000, "Transaction.End"),),
                state="EVConnected",
            )
        )
        await cp.cp.call(
            event(
                "Updated", 2, start + 40 * MINUTE, "L-1", readings=((9000, ""),), state="Charging"
            )
        )
    row = await asession(site, "L-1")
    assert (row.energy_wh, row.charging_state) == (D(4000), "EVConnected")
    cdr = await cdr_of(site, "L-1")
    assert cdr.total_energy_kwh == D(4)
    [line] = await invoice_lines(site)
    assert line.energy_kwh == D(4)


# --- 3. a register that goes backwards --------------------------------------------------------


async def test_ocpp16_meter_reset_mid_session_sums_the_segments(server, celery_worker):
    site = await make("E2E-RESET-16")
    start = now() - 45 * MINUTE
    async with connect(server, site) as cp:
        started = await cp.cp.call(
            call.StartTransaction(
                connector_id=1, id_tag=site.uid, meter_start=12000, timestamp=ts(start)
            )
        )
        tx = started.transaction_id
        for minutes, value in ((5, "12030"), (10, "12061")):
            await cp.cp.call(
                call.MeterValues(
                    connector_id=1,
                    transaction_id=tx,
                    meter_value=[energy_reading(start + minutes * MINUTE, value)],
                )
            )
    # The station reboots mid-session; its register restarts at 0; it keeps the transaction.
    async with connect(server, site) as cp:
        boot = await cp.cp.call(
            call.BootNotification(charge_point_vendor="ACME", charge_point_model="Wallbox")
        )
        assert boot.status == "Accepted"
        for minutes, value in ((20, "1000"), (30, "3000")):
            await cp.cp.call(
                call.MeterValues(
                    connector_id=1,
                    transaction_id=tx,
                    meter_value=[energy_reading(start + minutes * MINUTE, value)],
                )
            )
        await cp.cp.call(
            call.StopTransaction(
                transaction_id=tx, meter_stop=4000, timestamp=ts(start + 40 * MINUTE)
            )
        )
    row = await asession(site, tx)
    # 61 Wh before the reset, 4000 Wh after it (from 0): before, 0 Wh and a 0.061 kWh CDR.
    assert row.energy_wh == D(4061)
    assert not row.is_estimated  # its MeterValues showed the station kept the transaction
    assert [a for a in row.anomalies if a.startswith("meter reset")] == [
        f"meter reset at {ts(start + 20 * MINUTE).replace('Z', '+00:00')}: register went back "
        "from 12061 to 1000 Wh; energy summed per segment (the new one counted from 0)"
    ]
    cdr = await cdr_of(site, tx)
    assert cdr.total_energy_kwh == D("4.061")
    [line] = await invoice_lines(site)
    assert line.energy_kwh == D("4.061")
    assert line.amount_excl_vat == D("1.22")  # 4.061 kWh x 0.30 = 1.2183


async def test_ocpp201_meter_reset_mid_session_sums_the_segments(server, celery_worker):
    site = await make("E2E-RESET-201", "ocpp2.0.1")
    start = now() - 45 * MINUTE
    async with connect(server, site, "ocpp2.0.1") as cp:
        await cp.cp.call(
            event(
                "Started", 0, start, "R-1", readings=((12000, "Transaction.Begin"),), token=site.uid
            )
        )
        await cp.cp.call(event("Updated", 1, start + 10 * MINUTE, "R-1", readings=((12061, ""),)))
    async with connect(server, site, "ocpp2.0.1") as cp:
        # Rebooted, and the transaction survived it: the station says so when asked.
        cp.cp.responses["GetTransactionStatus"] = result201.GetTransactionStatus(
            messages_in_queue=False, ongoing_indicator=True
        )
        await cp.cp.call(
            call201.BootNotification(
                charging_station={"model": "DC", "vendor_name": "ACME"}, reason="PowerUp"
            )
        )
        await until(lambda: any(a == "GetTransactionStatus" for a, _ in cp.cp.received_calls))
        await cp.cp.call(event("Updated", 2, start + 20 * MINUTE, "R-1", readings=((1000, ""),)))
        await cp.cp.call(
            event("Ended", 3, start + 40 * MINUTE, "R-1", readings=((4000, "Transaction.End"),))
        )
    row = await asession(site, "R-1")
    assert row.energy_wh == D(4061)
    assert not row.is_estimated
    assert any(a.startswith("meter reset") for a in row.anomalies)
    cdr = await cdr_of(site, "R-1")
    assert cdr.total_energy_kwh == D("4.061")
    [line] = await invoice_lines(site)
    assert line.energy_kwh == D("4.061")


# --- 4. a remote stop with a timestamp-less Finishing -----------------------------------------


async def test_ocpp16_remote_stop_with_a_timestamp_less_finishing_bills_no_parking(
    server, celery_worker
):
    from stations.commands.models import Command
    from tests.stations.conftest import acreate, until_final

    site = await make("E2E-FINISH-16")
    # The station's clock runs 5 minutes ahead of ours: its stop still bounds the Finishing,
    # which carries no timestamp and is stored at its receive time.
    ahead = 5 * MINUTE
    start = now() - 40 * MINUTE + ahead
    async with connect(server, site) as cp:
        status = call.StatusNotification(
            connector_id=1, error_code="NoError", status="Charging", timestamp=ts(start)
        )
        started = await cp.cp.call(
            call.StartTransaction(
                connector_id=1, id_tag=site.uid, meter_start=0, timestamp=ts(start)
            )
        )
        tx = started.transaction_id
        await cp.cp.call(status)
        await cp.cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=tx,
                meter_value=[energy_reading(start + 20 * MINUTE, "4000")],
            )
        )
        command = await acreate(
            await charging_station(site), verb="remote_stop", params={"transaction_id": str(tx)}
        )
        done = await until_final(command.pk)
        assert done.status == Command.Status.ACCEPTED
        # What the station does on RemoteStopTransaction: Finishing (no timestamp), then the
        # StopTransaction a few milliseconds later.
        await cp.cp.call(
            call.StatusNotification(connector_id=1, error_code="NoError", status="Finishing")
        )
        await cp.cp.call(
            call.StopTransaction(
                transaction_id=tx,
                meter_stop=8000,
                timestamp=ts(timezone.now() + ahead),
                reason="Remote",
            )
        )
    row = await asession(site, tx)
    assert (row.stop_reason, row.energy_wh) == ("Remote", D(8000))
    cdr = await cdr_of(site, tx)
    # Before: 1 minute of parking (60 s step) for the Finishing, or 5 with the clock ahead.
    assert cdr.total_parking_time_h == D(0)
    assert cdr.total_parking_cost_excl_vat == D(0)
    assert cdr.total_cost_excl_vat == D("2.40")
    [line] = await invoice_lines(site)
    assert line.amount_excl_vat == D("2.40")


async def test_ocpp201_remote_stop_with_a_brief_ev_connected_bills_no_parking(
    server, celery_worker
):
    site = await make("E2E-FINISH-201", "ocpp2.0.1")
    start = now() - 40 * MINUTE
    async with connect(server, site, "ocpp2.0.1") as cp:
        await cp.cp.call(
            event(
                "Started",
                0,
                start,
                "F-1",
                readings=((0, "Transaction.Begin"),),
                token=site.uid,
                state="Charging",
            )
        )
        stopped = timezone.now()
        await cp.cp.call(
            event("Updated", 1, stopped, "F-1", state="EVConnected", trigger="RemoteStop")
        )
        await cp.cp.call(
            event(
                "Ended",
                2,
                stopped + dt.timedelta(milliseconds=8),
                "F-1",
                readings=((8000, "Transaction.End"),),
                reason="Remote",
                trigger="RemoteStop",
            )
        )
    cdr = await cdr_of(site, "F-1")
    assert cdr.total_parking_time_h == D(0)
    assert cdr.total_cost_excl_vat == D("2.40")
    [line] = await invoice_lines(site)
    assert line.amount_excl_vat == D("2.40")


# --- 5. a station reboot that forgets transactions ---------------------------------------------


async def test_ocpp16_reboot_and_available_close_forgotten_sessions(server, celery_worker):
    site = await make("E2E-FORGET-16")
    start = now() - 45 * MINUTE
    async with connect(server, site) as cp:
        txs = []
        for connector, register in ((1, "3000"), (2, "5500")):
            started = await cp.cp.call(
                call.StartTransaction(
                    connector_id=connector, id_tag=site.uid, meter_start=1000, timestamp=ts(start)
                )
            )
            txs.append(started.transaction_id)
            await cp.cp.call(
                call.MeterValues(
                    connector_id=connector,
                    transaction_id=started.transaction_id,
                    meter_value=[energy_reading(start + 10 * MINUTE, register)],
                )
            )
        # Connector 2 is free again, and its StopTransaction never comes.
        await cp.cp.call(
            call.StatusNotification(connector_id=2, error_code="NoError", status="Available")
        )
    # Killed, booted again with no memory of the transaction on connector 1.
    async with connect(server, site) as cp:
        boot = await cp.cp.call(
            call.BootNotification(charge_point_vendor="ACME", charge_point_model="Wallbox")
        )
        assert boot.status == "Accepted"
        await cp.cp.call(
            call.StatusNotification(connector_id=1, error_code="NoError", status="Available")
        )
    first, second = [await asession(site, tx) for tx in txs]
    for row, reason, energy in (
        (first, "EstimatedReboot", 2000),
        (second, "EstimatedAvailable", 4500),
    ):
        assert (row.status, row.is_estimated, row.stop_reason) == ("completed", True, reason)
        # Closed at the last known meter reading and time.
        assert (row.ended_at, row.energy_wh) == (start + 10 * MINUTE, D(energy))
        assert row.anomalies[0].startswith("estimated: ")
    # Rated after the delay in which the station's own stop could still have come.
    cdrs = [await cdr_of(site, tx) for tx in txs]
    assert [c.total_energy_kwh for c in cdrs] == [D(2), D("4.5")]
    lines = await invoice_lines(site)
    assert sorted(line.energy_kwh for line in lines) == [D(2), D("4.5")]


async def test_ocpp16_a_new_transaction_closes_a_forgotten_one_on_its_connector(
    server, celery_worker
):
    site = await make("E2E-NEWTX-16")
    start = now() - 45 * MINUTE
    async with connect(server, site) as cp:
        old = await cp.cp.call(
            call.StartTransaction(
                connector_id=1, id_tag=site.uid, meter_start=0, timestamp=ts(start)
            )
        )
        await cp.cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=old.transaction_id,
                meter_value=[energy_reading(start + 5 * MINUTE, "1000")],
            )
        )
        new = await cp.cp.call(
            call.StartTransaction(
                connector_id=1, id_tag=site.uid, meter_start=1000, timestamp=ts(start + 15 * MINUTE)
            )
        )
        assert new.id_tag_info["status"] == "Accepted"
        await cp.cp.call(
            call.StopTransaction(
                transaction_id=new.transaction_id,
                meter_stop=4000,
                timestamp=ts(start + 30 * MINUTE),
            )
        )
    stale = await asession(site, old.transaction_id)
    assert (stale.status, stale.stop_reason, stale.energy_wh) == (
        "completed",
        "EstimatedNewTransaction",
        D(1000),
    )
    stale_cdr, new_cdr = (
        await cdr_of(site, old.transaction_id),
        await cdr_of(site, new.transaction_id),
    )
    assert (stale_cdr.total_energy_kwh, new_cdr.total_energy_kwh) == (D(1), D(3))
    assert sorted(line.energy_kwh for line in await invoice_lines(site)) == [D(1), D(3)]


async def test_ocpp201_forgotten_transactions_are_asked_about_then_closed(server, celery_worker):
    site = await make("E2E-FORGET-201", "ocpp2.0.1")
    start = now() - 45 * MINUTE
    async with connect(server, site, "ocpp2.0.1") as cp:
        for evse, tx, register in ((1, "G-1", 3000), (2, "G-2", 5500)):
            await cp.cp.call(
                event(
                    "Started",
                    0,
                    start,
                    tx,
                    readings=((1000, "Transaction.Begin"),),
                    token=site.uid,
                    evse=evse,
                )
            )
            await cp.cp.call(
                event("Updated", 1, start + 10 * MINUTE, tx, readings=((register, ""),))
            )
        # EVSE 2 reports Available with G-2 still open: the station is asked, and it knows
        # nothing of G-2 and has nothing queued.
        await cp.cp.call(
            call201.StatusNotification(
                timestamp=ts(timezone.now()),
                connector_status="Available",
                evse_id=2,
                connector_id=1,
            )
        )
        await until(lambda: session(site, "G-2").status == "completed")
    async with connect(server, site, "ocpp2.0.1") as cp:
        await cp.cp.call(
            call201.BootNotification(
                charging_station={"model": "DC", "vendor_name": "ACME"}, reason="PowerUp"
            )
        )
        await until(lambda: session(site, "G-1").status == "completed")
        asked = [
            p["transaction_id"] for a, p in cp.cp.received_calls if a == "GetTransactionStatus"
        ]
        assert asked == ["G-1"]
    for tx, energy in (("G-1", 2000), ("G-2", 4500)):
        row = await asession(site, tx)
        assert (row.is_estimated, row.stop_reason) == (True, "EstimatedNotOngoing")
        assert (row.ended_at, row.energy_wh) == (start + 10 * MINUTE, D(energy))
    cdrs = [await cdr_of(site, tx) for tx in ("G-1", "G-2")]
    assert [c.total_energy_kwh for c in cdrs] == [D(2), D("4.5")]
    assert sorted(line.energy_kwh for line in await invoice_lines(site)) == [D(2), D("4.5")]


# --- 6. Ended before Started ------------------------------------------------------------------


async def test_ocpp201_ended_before_started_is_rated_once_both_are_known(server, celery_worker):
    site = await make("E2E-LATESTART-201", "ocpp2.0.1")
    start = now() - 45 * MINUTE
    async with connect(server, site, "ocpp2.0.1") as cp:
        await cp.cp.call(
            event(
                "Ended",
                2,
                start + 40 * MINUTE,
                "S-1",
                readings=((9000, "Transaction.End"),),
                reason="EVDisconnected",
            )
        )
        await cp.cp.call(event("Updated", 1, start + 20 * MINUTE, "S-1", readings=((5000, ""),)))
        row = await asession(site, "S-1")
        assert (row.status, row.energy_wh) == ("incomplete", D(0))
        await asyncio.sleep(1)  # nothing is rated meanwhile (before: a CDR of 0 kWh)
        from billing.models import Cdr

        assert not await sync_to_async(Cdr.objects.filter(session=row).exists)()
        await cp.cp.call(
            event(
                "Started", 0, start, "S-1", readings=((1000, "Transaction.Begin"),), token=site.uid
            )
        )
    row = await asession(site, "S-1")
    assert (row.status, row.started_at, row.ended_at) == (
        "completed",
        start,
        start + 40 * MINUTE,
    )
    assert (row.meter_start_wh, row.meter_stop_wh, row.energy_wh) == (D(1000), D(9000), D(8000))
    cdr = await cdr_of(site, "S-1")
    assert cdr.total_energy_kwh == D(8)
    [line] = await invoice_lines(site)
    assert (line.energy_kwh, line.amount_excl_vat) == (D(8), D("2.40"))


# --- 7. concurrent starts ---------------------------------------------------------------------


async def test_concurrent_start_transaction_retries_get_one_session(server, celery_worker):
    site = await make("E2E-RETRY-16")
    start = now() - 30 * MINUTE
    request = call.StartTransaction(
        connector_id=1, id_tag=site.uid, meter_start=0, timestamp=ts(start)
    )
    async with connect(server, site) as first:
        # The connection drops as the station sends; it reconnects and retries at once, while
        # the first delivery is still being answered.
        pending = asyncio.ensure_future(first.cp.call(request))
        async with connect(server, site) as second:
            again = await second.cp.call(request)
            await second.cp.call(
                call.StopTransaction(
                    transaction_id=again.transaction_id,
                    meter_stop=3000,
                    timestamp=ts(start + 20 * MINUTE),
                )
            )
        try:
            answered = await asyncio.wait_for(pending, 3)
            assert answered.transaction_id == again.transaction_id
        except Exception:  # the replaced connection may close before its answer  # noqa: S110
            pass

    @sync_to_async
    def stored() -> list[Any]:
        from sessions.models import ChargingSession

        return list(ChargingSession.objects.filter(station_id=site.station_id))

    [row] = await stored()
    assert row.ocpp16_transaction_id == again.transaction_id
    cdr = await cdr_of(site, again.transaction_id)
    assert cdr.total_energy_kwh == D(3)
    [line] = await invoice_lines(site)
    assert line.energy_kwh == D(3)


async def test_concurrent_starts_of_two_stations_cannot_both_pass_a_limit(server, celery_worker):
    first = await make("E2E-LIMIT-A")
    other = await make("E2E-LIMIT-B")

    @sync_to_async
    def one_at_a_time() -> None:
        from sessions.models import IdToken, normalize_uid

        IdToken.objects.filter(uid_normalized=normalize_uid(first.uid)).update(
            max_concurrent_sessions=1
        )

    await one_at_a_time()  # the first site's card, at both stations
    start = now() - 30 * MINUTE
    async with connect(server, first) as a, connect(server, other) as b:
        answers = await asyncio.gather(
            *(
                cp.cp.call(
                    call.StartTransaction(
                        connector_id=1, id_tag=first.uid, meter_start=0, timestamp=ts(start)
                    )
                )
                for cp in (a, b)
            )
        )
        assert sorted(x.id_tag_info["status"] for x in answers) == ["Accepted", "ConcurrentTx"]
        for cp, answer in zip((a, b), answers, strict=True):
            await cp.cp.call(
                call.StopTransaction(
                    transaction_id=answer.transaction_id,
                    meter_stop=2000,
                    timestamp=ts(start + 20 * MINUTE),
                )
            )
    accepted, refused = sorted(answers, key=lambda x: x.id_tag_info["status"])
    accepted_site = first if accepted is answers[0] else other
    refused_site = other if accepted_site is first else first
    row = await asession(refused_site, refused.transaction_id)
    assert (row.auth_status, row.needs_review) == ("ConcurrentTx", True)
    cdr = await cdr_of(accepted_site, accepted.transaction_id)
    assert cdr.total_energy_kwh == D(2)
    await rated_nothing(celery_worker, refused_site, refused.transaction_id, tasks=2)
    [line] = await invoice_lines(first)
    assert line.cdr_id == cdr.pk


# --- 8. re-sent samples -----------------------------------------------------------------------


async def test_ocpp16_a_re_sent_sample_with_another_value_is_flagged(server, celery_worker):
    site = await make("E2E-RESEND-16")
    start = now() - 45 * MINUTE
    async with connect(server, site) as cp:
        started = await cp.cp.call(
            call.StartTransaction(
                connector_id=1, id_tag=site.uid, meter_start=1000, timestamp=ts(start)
            )
        )
        tx = started.transaction_id
        for value in ("2000", "2000", "2500"):  # sent, retried, re-sent with another value
            await cp.cp.call(
                call.MeterValues(
                    connector_id=1,
                    transaction_id=tx,
                    meter_value=[energy_reading(start + 10 * MINUTE, value)],
                )
            )
        await cp.cp.call(
            call.StopTransaction(
                transaction_id=tx, meter_stop=3000, timestamp=ts(start + 30 * MINUTE)
            )
        )
    row = await asession(site, tx)
    assert row.sample_conflicts == 1
    assert [a for a in row.anomalies if a.startswith("re-sent")] == [
        "re-sent meter sample with a different value: Energy.Active.Import.Register at "
        f"{(start + 10 * MINUTE).isoformat()} kept 2000 Wh, dropped 2500 Wh"
    ]
    assert row.energy_wh == D(2000)
    cdr = await cdr_of(site, tx)
    assert cdr.total_energy_kwh == D(2)
    [line] = await invoice_lines(site)
    assert line.energy_kwh == D(2)


async def test_ocpp201_a_re_sent_sample_with_another_value_is_flagged(server, celery_worker):
    site = await make("E2E-RESEND-201", "ocpp2.0.1")
    start = now() - 45 * MINUTE
    async with connect(server, site, "ocpp2.0.1") as cp:
        await cp.cp.call(
            event(
                "Started", 0, start, "C-1", readings=((1000, "Transaction.Begin"),), token=site.uid
            )
        )
        await cp.cp.call(event("Updated", 1, start + 10 * MINUTE, "C-1", readings=((2000, ""),)))
        # The same instant's sample again, in a later event, with another value.
        updated = event("Updated", 2, start + 20 * MINUTE, "C-1", readings=((2600, ""),))
        updated.meter_value.append(
            {"timestamp": ts(start + 10 * MINUTE), "sampled_value": [{"value": 2400}]}
        )
        await cp.cp.call(updated)
        await cp.cp.call(
            event("Ended", 3, start + 30 * MINUTE, "C-1", readings=((3000, "Transaction.End"),))
        )
    row = await asession(site, "C-1")
    assert row.sample_conflicts == 1
    assert any(a.startswith("re-sent meter sample") for a in row.anomalies)
    cdr = await cdr_of(site, "C-1")
    assert cdr.total_energy_kwh == D(2)
    [line] = await invoice_lines(site)
    assert line.energy_kwh == D(2)


# --- 9. a blocked card that charges anyway ----------------------------------------------------


async def test_ocpp16_blocked_but_charged_is_held_for_review_not_billed(server, celery_worker):
    site = await make("E2E-BLOCKED-16", blocked=True)
    start = now() - 45 * MINUTE
    async with connect(server, site) as cp:
        started = await cp.cp.call(
            call.StartTransaction(
                connector_id=1, id_tag=site.uid, meter_start=1000, timestamp=ts(start)
            )
        )
        assert started.id_tag_info["status"] == "Blocked"
        tx = started.transaction_id
        # A 1.6 station may charge anyway (StopTransactionOnInvalidId off).
        await cp.cp.call(
            call.MeterValues(
                connector_id=1,
                transaction_id=tx,
                meter_value=[energy_reading(start + 10 * MINUTE, "4000")],
            )
        )
        await cp.cp.call(
            call.StopTransaction(
                transaction_id=tx, meter_stop=7000, timestamp=ts(start + 30 * MINUTE)
            )
        )
    row = await asession(site, tx)
    assert (row.auth_status, row.needs_review, row.energy_wh) == ("Blocked", True, D(6000))
    assert row.anomalies == [
        "started with a Blocked token: held for review, not billed",
        "charged 6000 Wh although the start was answered Blocked",
    ]
    await rated_nothing(celery_worker, site, tx)
    assert await invoice_lines(site) == []


async def test_ocpp201_blocked_but_charged_is_held_for_review_not_billed(server, celery_worker):
    site = await make("E2E-BLOCKED-201", "ocpp2.0.1", blocked=True)
    start = now() - 45 * MINUTE
    async with connect(server, site, "ocpp2.0.1") as cp:
        started = await cp.cp.call(
            event(
                "Started", 0, start, "B-1", readings=((1000, "Transaction.Begin"),), token=site.uid
            )
        )
        assert started.id_token_info["status"] == "Blocked"
        await cp.cp.call(event("Updated", 1, start + 10 * MINUTE, "B-1", readings=((4000, ""),)))
        await cp.cp.call(
            event("Ended", 2, start + 30 * MINUTE, "B-1", readings=((7000, "Transaction.End"),))
        )
    row = await asession(site, "B-1")
    assert (row.auth_status, row.needs_review, row.energy_wh) == ("Blocked", True, D(6000))
    assert "charged 6000 Wh although the start was answered Blocked" in row.anomalies
    await rated_nothing(celery_worker, site, "B-1")
    assert await invoice_lines(site) == []

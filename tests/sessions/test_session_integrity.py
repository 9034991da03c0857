"""Session integrity at the service level: one energy rule, late and conflicting samples,
meter resets, forgotten and unfinished sessions, idempotent and locked starts.

The end-to-end versions over the websocket, with the CDR and the invoice line, are in
test_e2e_integrity.py.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from sessions import services
from sessions.models import ChargingSession, IdToken
from sessions.services import Sample, SampleBatch
from stations.models import ChargingStation
from tariffs.models import PriceComponent, Tariff, TariffAssignment, TariffElement
from tariffs.services import session_rate, tariff_version_publish

pytestmark = pytest.mark.django_db

D = Decimal
T0 = dt.datetime(2026, 10, 1, 10, 0, tzinfo=dt.UTC)


def at(minutes: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=minutes)


@pytest.fixture
def station() -> ChargingStation:
    return ChargingStation.objects.create(identity="CP-INTEGRITY", protocol="ocpp1.6")


@pytest.fixture
def card() -> IdToken:
    return IdToken.objects.create(uid="04AABBCCDD")


@pytest.fixture
def energy_tariff() -> Tariff:
    tariff = Tariff.objects.create(tariff_id="E", name="Energy", currency="EUR")
    element = TariffElement.objects.create(tariff=tariff, position=0)
    PriceComponent.objects.create(
        element=element, type="ENERGY", price=D("0.30"), vat=D(21), step_size=1
    )
    TariffAssignment.objects.create(tariff=tariff)
    # Its first version, in force long before the sessions of these tests.
    tariff_version_publish(tariff=tariff, effective_from=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    return tariff


def start(station: ChargingStation, meter_start: int, **fields: Any) -> int:
    return services.session_start(
        station_id=station.pk,
        evse_id=fields.pop("evse_id", 1),
        connector_id=1,
        id_tag=fields.pop("id_tag", "04AABBCCDD"),
        meter_start_wh=D(meter_start),
        timestamp=fields.pop("timestamp", T0),
        **fields,
    ).transaction_id


def meter(station: ChargingStation, tx: int, *readings: tuple[float, str], **fields: Any) -> None:
    services.session_meter_samples(
        station_id=station.pk,
        batch=SampleBatch(
            1, 1, [Sample(timestamp=at(m), value=v, unit="Wh", **fields) for m, v in readings]
        ),
        transaction_id=tx,
    )


def stop(station: ChargingStation, tx: int, meter_stop: int, minutes: float = 60) -> None:
    services.session_stop(
        station_id=station.pk,
        transaction_id=tx,
        meter_stop_wh=D(meter_stop),
        timestamp=at(minutes),
    )


def session_of(tx: int) -> ChargingSession:
    return ChargingSession.objects.select_related("station").get(ocpp16_transaction_id=tx)


# --- 1. one rule for session energy -----------------------------------------------------------


def test_session_energy_rating_and_cdr_energy_agree_on_meter_stop(station, card, energy_tariff):
    tx = start(station, 0)
    meter(station, tx, (30, "74.48"))
    assert session_of(tx).energy_wh == D("74.48")  # live: what the meter says so far
    stop(station, tx, 74)
    session = session_of(tx)
    assert session.energy_wh == D(74)
    rating = session_rate(session=session)
    # Before: the engine's curve peaked at the 74.48 Wh sample.
    assert rating.total_energy_kwh == D("0.074")


# --- 3. a register that goes backwards --------------------------------------------------------


def test_a_meter_reset_mid_session_is_flagged_and_summed_per_segment(station, card, energy_tariff):
    tx = start(station, 12000)
    meter(station, tx, (10, "12030"), (20, "12061"))
    meter(station, tx, (30, "20"))
    live = session_of(tx)
    assert live.energy_wh == D(61 + 20)
    assert any("meter reset" in anomaly for anomaly in live.anomalies)
    meter(station, tx, (40, "35"))
    stop(station, tx, 40)
    session = session_of(tx)
    assert session.energy_wh == D(101)
    assert len([a for a in session.anomalies if a.startswith("meter reset")]) == 1
    rating = session_rate(session=session)
    assert rating.total_energy_kwh == D("0.101")
    assert rating.total_cost.excl_vat == D("0.03")


# --- 2. samples after the stop ----------------------------------------------------------------


def test_samples_after_the_stop_are_kept_flagged_and_never_move_the_session(
    station, card, energy_tariff
):
    tx = start(station, 1000)
    meter(station, tx, (30, "3000"))
    stop(station, tx, 5000)
    before = session_of(tx)
    meter(station, tx, (70, "9000"))
    meter(station, tx, (75, "9500"), measurand="Power.Active.Import")
    session = session_of(tx)
    assert (session.energy_wh, session.meter_last_wh, session.last_power_w) == (
        before.energy_wh,
        before.meter_last_wh,
        before.last_power_w,
    )
    assert session.energy_wh == D(4000)
    assert services.AFTER_STOP in session.anomalies
    late = session.samples.filter(after_stop=True)
    assert sorted(late.values_list("measurand", flat=True)) == [
        "Energy.Active.Import.Register",
        "Power.Active.Import",
    ]
    assert session.samples.filter(after_stop=False).count() == 1
    assert session_rate(session=session).total_energy_kwh == D(4)


def test_events_after_the_end_never_move_a_closed_2_0_1_session(station, card):
    def event(kind: str, seq: int, minutes: int, value: int, state: str = "Charging") -> Any:
        return services.session_transaction_event(
            station_id=station.pk,
            event=services.TransactionEvent(
                event_type=kind,
                timestamp=at(minutes),
                trigger_reason="MeterValuePeriodic",
                seq_no=seq,
                transaction_id="TX-LATE",
                charging_state=state,
                evse_id=1,
                connector_id=1,
                samples=[
                    Sample(
                        timestamp=at(minutes),
                        value=str(value),
                        context="Transaction.End" if kind == "Ended" else "",
                    )
                ],
            ),
        )

    event("Started", 0, 0, 1000)
    event("Ended", 1, 30, 3000, state="EVConnected")
    event("Updated", 2, 40, 8000, state="Charging")
    session = ChargingSession.objects.get(transaction_id="TX-LATE")
    assert session.status == "completed"
    assert (session.energy_wh, session.charging_state) == (D(2000), "EVConnected")
    assert session.samples.get(after_stop=True).value == D(8000)
    assert services.AFTER_STOP in session.anomalies


# --- 8. re-sent samples -----------------------------------------------------------------------


def test_a_re_sent_sample_with_another_value_is_counted_flagged_and_logged(
    station, card, caplog, django_assert_num_queries
):
    tx = start(station, 1000)
    meter(station, tx, (10, "2000"), (20, "3000"))
    # An identical re-send (a retry) is harmless: nothing flagged, nothing counted.
    meter(station, tx, (10, "2000"), (20, "3000"))
    session = session_of(tx)
    assert (session.sample_conflicts, session.anomalies) == (0, [])
    # The same instants again with other values: the stored values stay, the re-send counts.
    with caplog.at_level("WARNING", logger="sessions.services"):
        meter(station, tx, (10, "2500"), (20, "3000"), (30, "4000"))
    session = session_of(tx)
    assert session.sample_conflicts == 1
    assert session.anomalies == [
        "re-sent meter sample with a different value: Energy.Active.Import.Register at "
        f"{at(10).isoformat()} kept 2000 Wh, dropped 2500 Wh"
    ]
    assert "differ from the stored ones" in caplog.text
    assert session.samples.get(timestamp=at(10)).value == D(2000)
    assert session.samples.count() == 3
    assert session.energy_wh == D(3000)


def test_a_batch_without_duplicates_costs_no_check(station, card, django_assert_num_queries):
    tx = start(station, 1000)
    # In the test's transaction: SAVEPOINT; SELECT the session; INSERT; SELECT its tariff
    # version (its first meter value only: none here); UPDATE; RELEASE.
    with django_assert_num_queries(6):
        meter(station, tx, (10, "2000"))
    # A duplicate costs one SELECT of the stored rows, to tell a retry from a conflict (and
    # no UPDATE: an old reading does not move the session).
    with django_assert_num_queries(5) as captured:
        meter(station, tx, (10, "2000"))
    assert 'SELECT "charging_metersample"' in captured.captured_queries[3]["sql"]


# --- 9. a refused start that the station charges anyway ---------------------------------------


def test_a_refused_start_charged_anyway_is_recorded_and_held_for_review(station):
    IdToken.objects.create(uid="04BADBAD01", blocked=True, blocked_reason="reported lost")
    result = services.session_start(
        station_id=station.pk,
        evse_id=1,
        connector_id=1,
        id_tag="04BADBAD01",
        meter_start_wh=D(500),
        timestamp=T0,
    )
    assert result.authorization.status == "Blocked"
    tx = result.transaction_id
    meter(station, tx, (10, "1500"))
    stop(station, tx, 2500)
    session = session_of(tx)
    assert session.needs_review
    assert session.energy_wh == D(2000)
    assert session.anomalies == [
        "started with a Blocked token: held for review, not billed",
        "charged 2000 Wh although the start was answered Blocked",
    ]


# --- 6. Ended before Started ------------------------------------------------------------------


def transaction_event(station, kind, seq, minutes, value=None, context="", **fields):
    samples = []
    if value is not None:
        samples = [Sample(timestamp=at(minutes), value=str(value), context=context)]
    return services.session_transaction_event(
        station_id=station.pk,
        event=services.TransactionEvent(
            event_type=kind,
            timestamp=at(minutes),
            trigger_reason="Trigger",
            seq_no=seq,
            transaction_id=fields.pop("transaction_id", "TX-LATE-START"),
            evse_id=fields.pop("evse_id", 1),
            connector_id=1,
            samples=samples,
            **fields,
        ),
    )


def test_an_ended_before_its_started_is_rated_only_once_both_ends_are_known(
    station, energy_tariff, django_capture_on_commit_callbacks
):
    from sessions.signals import session_ended

    ended_ids: list[int] = []

    def record(sender: Any, session_id: int, **kwargs: Any) -> None:
        ended_ids.append(session_id)

    session_ended.connect(record, weak=False)
    try:
        with django_capture_on_commit_callbacks(execute=True):
            transaction_event(
                station, "Ended", 2, 45, 9000, "Transaction.End", stopped_reason="EVDisconnected"
            )
        session = ChargingSession.objects.get(transaction_id="TX-LATE-START")
        assert session.status == "incomplete"
        assert session.ended_at == at(45)
        assert ended_ids == []  # not rated: no CDR with energy 0
        with django_capture_on_commit_callbacks(execute=True):
            transaction_event(station, "Started", 0, 0, 1000, "Transaction.Begin")
        session.refresh_from_db()
        assert session.status == "completed"
        assert (session.started_at, session.ended_at) == (at(0), at(45))
        assert (session.meter_start_wh, session.meter_stop_wh) == (D(1000), D(9000))
        assert session.energy_wh == D(8000)
        assert not session.is_orphan
        assert ended_ids == [session.pk]
        assert session_rate(session=session).total_energy_kwh == D(8)
    finally:
        session_ended.disconnect(record)


# --- 5. sessions a station no longer knows ----------------------------------------------------


class Announced:
    """The session ids announced on a signal (after commit)."""

    def __init__(self, signal: Any) -> None:
        self.signal = signal
        self.ids: list[int] = []

    def __call__(self, sender: Any, session_id: int, **kwargs: Any) -> None:
        self.ids.append(session_id)

    def __enter__(self) -> Announced:
        self.signal.connect(self, weak=False)
        return self

    def __exit__(self, *exc: Any) -> None:
        self.signal.disconnect(self)


@pytest.fixture
def announced() -> Any:
    from sessions.signals import session_ended, session_estimated

    with Announced(session_ended) as ended, Announced(session_estimated) as estimated:
        yield ended, estimated


def test_a_reboot_closes_open_1_6_sessions_on_an_estimate_rated_later(
    station, card, announced, django_capture_on_commit_callbacks
):
    ended, estimated = announced
    tx = start(station, 1000)
    meter(station, tx, (10, "1800"), (20, "2600"))
    with django_capture_on_commit_callbacks(execute=True):
        assert services.sessions_station_restarted(station_id=station.pk) == 1
    session = session_of(tx)
    assert (session.status, session.is_estimated, session.stop_reason) == (
        "completed",
        True,
        "EstimatedReboot",
    )
    # The last known meter reading and time.
    assert (session.ended_at, session.meter_stop_wh, session.energy_wh) == (
        at(20),
        D(2600),
        D(1600),
    )
    assert session.anomalies[0].startswith("estimated: the station booted again")
    # Not rated yet: the station's queued StopTransaction may still come.
    assert (ended.ids, estimated.ids) == ([], [session.pk])
    with django_capture_on_commit_callbacks(execute=True):
        assert services.session_estimate_rate(session_id=session.pk)
    assert ended.ids == [session.pk]
    assert services.ESTIMATE_RATED in session_of(tx).anomalies
    with django_capture_on_commit_callbacks(execute=True):
        assert not services.session_estimate_rate(session_id=session.pk)  # once
    assert ended.ids == [session.pk]


def test_the_stations_own_stop_replaces_an_estimate_not_yet_rated(
    station, card, announced, django_capture_on_commit_callbacks
):
    ended, estimated = announced
    tx = start(station, 1000)
    meter(station, tx, (10, "1800"))
    services.sessions_station_restarted(station_id=station.pk)
    with django_capture_on_commit_callbacks(execute=True):
        stop(station, tx, 3000, minutes=25)  # the StopTransaction it had queued
    session = session_of(tx)
    assert (session.is_estimated, session.ended_at, session.energy_wh) == (False, at(25), D(2000))
    assert session.stop_reason == "Local"
    assert session.anomalies == []  # the estimate leaves no trace
    assert ended.ids == [session.pk]
    assert not services.session_estimate_rate(session_id=session.pk)


def test_an_available_connector_closes_only_sessions_started_before_it(station, card):
    tx = start(station, 1000, timestamp=at(0))
    # A report queued from before this session started says nothing about it.
    assert services.sessions_connector_available(station_id=station.pk, evse_id=1, at=at(-5)) == 0
    assert services.sessions_connector_available(station_id=station.pk, evse_id=2, at=at(5)) == 0
    assert session_of(tx).status == "active"
    assert services.sessions_connector_available(station_id=station.pk, evse_id=1, at=at(5)) == 1
    session = session_of(tx)
    assert (session.status, session.stop_reason) == ("completed", "EstimatedAvailable")


def test_a_new_transaction_never_runs_beside_a_forgotten_one(
    station, card, announced, django_capture_on_commit_callbacks
):
    ended, _ = announced
    IdToken.objects.filter(pk=card.pk).update(max_concurrent_sessions=1)
    old = start(station, 1000, timestamp=at(0))
    meter(station, old, (10, "1500"))
    with django_capture_on_commit_callbacks(execute=True):
        result = services.session_start(
            station_id=station.pk,
            evse_id=1,
            connector_id=1,
            id_tag="04AABBCCDD",
            meter_start_wh=D(0),
            timestamp=at(30),
        )
    # The forgotten session no longer counts against the card's limit.
    assert result.authorization.status == "Accepted"
    stale = session_of(old)
    assert (stale.status, stale.stop_reason, stale.ended_at) == (
        "completed",
        "EstimatedNewTransaction",
        at(10),
    )
    # Rated at once: the new transaction proves the old one is over.
    assert ended.ids == [stale.pk]
    assert ChargingSession.objects.filter(station=station, status="active").count() == 1


def test_a_2_0_1_station_is_asked_and_its_answer_decides(
    announced, django_capture_on_commit_callbacks
):
    from stations.commands.models import Command

    ended, _ = announced
    station = ChargingStation.objects.create(identity="CP-ASK", protocol="ocpp2.0.1")
    for evse, tx, value in ((1, "TX-A", 1000), (2, "TX-B", 5000)):
        for kind, seq, minutes, reading, context in (
            ("Started", 0, 0, value, "Transaction.Begin"),
            ("Updated", 1, 10, value + 700, ""),
        ):
            transaction_event(
                station, kind, seq, minutes, reading, context, transaction_id=tx, evse_id=evse
            )
    with django_capture_on_commit_callbacks(execute=True):
        assert services.sessions_station_restarted(station_id=station.pk) == 0
        # Asked once per transaction, however often the question comes up.
        services.sessions_station_restarted(station_id=station.pk)
    commands = Command.objects.filter(station=station, action="GetTransactionStatus")
    assert sorted(c.payload["transactionId"] for c in commands) == ["TX-A", "TX-B"]
    assert ChargingSession.objects.filter(station=station, status="active").count() == 2
    with django_capture_on_commit_callbacks(execute=True):
        assert not services.session_transaction_status_answered(
            station_id=station.pk, transaction_id="TX-A", ongoing=False, messages_in_queue=True
        )
        assert not services.session_transaction_status_answered(
            station_id=station.pk, transaction_id="TX-A", ongoing=True, messages_in_queue=False
        )
        assert services.session_transaction_status_answered(
            station_id=station.pk, transaction_id="TX-B", ongoing=False, messages_in_queue=False
        )
    forgotten = ChargingSession.objects.get(transaction_id="TX-B")
    assert (forgotten.status, forgotten.stop_reason, forgotten.energy_wh) == (
        "completed",
        "EstimatedNotOngoing",
        D(700),
    )
    assert ended.ids == [forgotten.pk]  # the station said so: rated at once
    assert ChargingSession.objects.get(transaction_id="TX-A").status == "active"


# --- 4. short parking and status reports without a timestamp ---------------------------------


@pytest.fixture
def parking_tariff() -> Tariff:
    tariff = Tariff.objects.create(tariff_id="EP", name="Energy and parking", currency="EUR")
    element = TariffElement.objects.create(tariff=tariff, position=0)
    PriceComponent.objects.create(
        element=element, type="ENERGY", price=D("0.30"), vat=D(21), step_size=1
    )
    PriceComponent.objects.create(
        element=element, type="PARKING_TIME", price=D("2.00"), vat=D(21), step_size=60
    )
    TariffAssignment.objects.create(tariff=tariff)
    # Its first version, in force long before the sessions of these tests.
    tariff_version_publish(tariff=tariff, effective_from=dt.datetime(2000, 1, 1, tzinfo=dt.UTC))
    return tariff


def status(station: ChargingStation, value: str, timestamp: dt.datetime | None) -> None:
    from stations.services import connector_status_changed

    connector_status_changed(
        station_id=station.pk, evse_id=1, connector_id=1, status=value, timestamp=timestamp
    )


@pytest.mark.parametrize("station_clock_ahead", [dt.timedelta(0), dt.timedelta(minutes=5)])
def test_a_timestamp_less_finishing_just_before_the_stop_is_no_parking(
    station, card, parking_tariff, monkeypatch, station_clock_ahead
):
    from django.utils import timezone

    # Our clock: the remote stop's Finishing (no timestamp) arrives 8 ms before the
    # StopTransaction; the station's own clock may run ahead of ours.
    received = T0 + dt.timedelta(minutes=40)
    tx = start(station, 0, timestamp=T0 + station_clock_ahead)
    status(station, "Charging", T0 + station_clock_ahead)
    monkeypatch.setattr(timezone, "now", lambda: received)
    status(station, "Finishing", None)
    eight_ms = dt.timedelta(milliseconds=8)
    monkeypatch.setattr(timezone, "now", lambda: received + eight_ms)
    services.session_stop(
        station_id=station.pk,
        transaction_id=tx,
        meter_stop_wh=D(8000),
        timestamp=received + eight_ms + station_clock_ahead,
        reason="Remote",
    )
    monkeypatch.undo()
    rating = session_rate(session=session_of(tx))
    assert rating.total_parking_time_h == D(0)
    # 8 kWh x 0.30 only: no minute of parking for 8 ms of Finishing.
    assert rating.total_cost.excl_vat == D("2.40")


def test_parking_longer_than_the_grace_is_billed(station, card, parking_tariff):
    tx = start(station, 0)
    status(station, "Charging", T0)
    status(station, "SuspendedEV", at(30))
    stop(station, tx, 8000, minutes=40)
    rating = session_rate(session=session_of(tx))
    assert rating.total_parking_time_h * 60 == D(10)
    assert rating.total_cost.excl_vat == D("2.40") + D("0.33")


def test_short_parking_runs_are_charging_time_and_long_ones_parking(station, card, parking_tariff):
    tx = start(station, 0)
    # 90 s of SuspendedEV mid-session (the car paused), then 5 min of SuspendedEV and
    # Finishing together before the stop: only the last run is parking.
    for minute, value in ((0, "Charging"), (10, "SuspendedEV"), (11.5, "Charging")):
        status(station, value, at(minute))
    status(station, "SuspendedEV", at(35))
    status(station, "Finishing", at(37))
    stop(station, tx, 8000, minutes=40)
    rating = session_rate(session=session_of(tx))
    assert rating.total_parking_time_h * 60 == D(5)


def test_meter_values_after_an_estimated_close_show_the_station_still_knows_it(station, card):
    tx = start(station, 1000)
    meter(station, tx, (10, "1800"))
    services.sessions_station_restarted(station_id=station.pk)
    assert session_of(tx).is_estimated
    meter(station, tx, (20, "2600"))  # it kept the transaction through the reboot
    session = session_of(tx)
    assert (session.status, session.is_estimated, session.ended_at) == ("active", False, None)
    assert (session.energy_wh, session.anomalies) == (D(1600), [])
    assert not session.samples.filter(after_stop=True).exists()
    stop(station, tx, 3000)
    assert session_of(tx).energy_wh == D(2000)


def test_a_boot_notification_we_asked_for_is_no_reboot(station, card):
    from stations.commands.models import Command

    tx = start(station, 1000)
    assert services.sessions_station_restarted(station_id=station.pk, boot_reason="Triggered") == 0
    Command.objects.create(
        station=station,
        protocol="ocpp1.6",
        verb="trigger_message",
        action="TriggerMessage",
        payload={"requestedMessage": "BootNotification"},
        expires_at=T0,
    )
    assert services.sessions_station_restarted(station_id=station.pk) == 0
    assert session_of(tx).status == "active"

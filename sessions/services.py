"""Writes of the charging domain: authorization decisions and the life of a charging session.

Version-neutral: the OCPP edge translates 1.6J and 2.0.1 messages into these calls. The rules
that a charger depends on hold for every function here:
- transaction messages are always answered and stored, whatever their content;
- retries are idempotent (the same message twice gives one session and one set of samples);
- charger timestamps are kept; messages queued offline arrive late and are accepted;
- session energy comes from the meter registers and is never negative.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q, Sum
from django.utils import timezone

from sessions.models import (
    AuthorizationDecision,
    ChargingSession,
    IdToken,
    MeterSample,
    Ocpp16TransactionIdSequence,
    TransactionEventRecord,
)
from sessions.signals import session_ended, session_started
from stations.models import ChargingStation

logger = logging.getLogger(__name__)

ENERGY_REGISTER = "Energy.Active.Import.Register"


# --- Authorization --------------------------------------------------------------------------


class AuthStatus:
    """Version-neutral authorization statuses (2.0.1 names; the 1.6 edge maps the extra ones)."""

    ACCEPTED = "Accepted"
    BLOCKED = "Blocked"
    EXPIRED = "Expired"
    INVALID = "Invalid"
    CONCURRENT_TX = "ConcurrentTx"
    NOT_AT_THIS_LOCATION = "NotAtThisLocation"
    NOT_AT_THIS_TIME = "NotAtThisTime"
    NO_CREDIT = "NoCredit"
    UNKNOWN = "Unknown"


@dataclass(frozen=True)
class AuthorizationResult:
    status: str
    reason: str
    token_id: int | None = None
    account_id: int | None = None
    group_uid: str = ""
    expiry: datetime | None = None

    @property
    def accepted(self) -> bool:
        return self.status == AuthStatus.ACCEPTED


def _budget_start(period: str, now: datetime) -> datetime:
    start = now.replace(hour=0, minute=0, second=0, microsecond=0)
    if period == IdToken.BudgetPeriod.WEEK:
        return start - timedelta(days=start.weekday())
    if period == IdToken.BudgetPeriod.MONTH:
        return start.replace(day=1)
    return start


def token_find(*, uid: str, token_type: str | None = None) -> IdToken | None:
    """Find a token by uid; uids compare case-insensitively (ISO 14443 hex may come either way)."""
    tokens = IdToken.objects.select_related("group").filter(uid_normalized=uid.lower())
    if token_type:
        typed = [t for t in tokens if t.type == token_type]
        if typed:
            return typed[0]
    return tokens.first()


def _decide(
    token: IdToken | None, *, station: ChargingStation | None, now: datetime,
    exclude_session_id: int | None,
) -> tuple[str, str]:
    if token is None:
        # Roaming real-time authorization plugs in here once OCPI tokens exist.
        return AuthStatus.INVALID, "unknown token"
    candidates = [("token", token)]
    if token.group_id:
        candidates.append(("group", token.group))
    for label, candidate in candidates:
        if candidate.blocked:
            return AuthStatus.BLOCKED, f"{label} blocked"
        if candidate.valid_until and candidate.valid_until <= now:
            return AuthStatus.EXPIRED, f"{label} expired {candidate.valid_until.isoformat()}"
        if candidate.valid_from and candidate.valid_from > now:
            return AuthStatus.NOT_AT_THIS_TIME, f"{label} valid from {candidate.valid_from.isoformat()}"
    if station is not None:
        allowed_stations = set(token.allowed_stations.values_list("pk", flat=True))
        allowed_locations = set(token.allowed_locations.values_list("pk", flat=True))
        if allowed_stations or allowed_locations:
            if station.pk not in allowed_stations and station.location_id not in allowed_locations:
                return AuthStatus.NOT_AT_THIS_LOCATION, "not allowed at this station or site"
    if token.max_concurrent_sessions is not None:
        active = ChargingSession.objects.filter(
            id_token=token, status=ChargingSession.Status.ACTIVE
        )
        if exclude_session_id:
            active = active.exclude(pk=exclude_session_id)
        if active.count() >= token.max_concurrent_sessions:
            return AuthStatus.CONCURRENT_TX, f"{token.max_concurrent_sessions} session(s) already active"
    if token.budget_energy_wh is not None or token.budget_cost is not None:
        since = _budget_start(token.budget_period, now)
        used = ChargingSession.objects.filter(id_token=token, started_at__gte=since).aggregate(
            energy=Sum("energy_wh"), cost=Sum("live_cost")
        )
        if token.budget_energy_wh is not None and (used["energy"] or 0) >= token.budget_energy_wh:
            return AuthStatus.NO_CREDIT, "energy budget used up"
        if token.budget_cost is not None and (used["cost"] or 0) >= token.budget_cost:
            return AuthStatus.NO_CREDIT, "cost budget used up"
    return AuthStatus.ACCEPTED, "valid"


def authorization_decide(
    *, uid: str, context: str, station_id: int | None = None, token_type: str | None = None,
    exclude_session_id: int | None = None, now: datetime | None = None,
) -> AuthorizationResult:
    """Decide whether `uid` may charge here and now, and record the decision with its reason.

    1. Unknown token: Invalid.
    2. The token, then its group: Blocked, Expired (valid_until passed), NotAtThisTime
       (valid_from ahead).
    3. Restricted to stations or sites: NotAtThisLocation elsewhere.
    4. Concurrency limit reached: ConcurrentTx.
    5. Energy or cost budget of the period used up: NoCredit.
    """
    now = now or timezone.now()
    token = token_find(uid=uid, token_type=token_type)
    station = ChargingStation.objects.filter(pk=station_id).first() if station_id else None
    status, reason = _decide(token, station=station, now=now, exclude_session_id=exclude_session_id)
    AuthorizationDecision.objects.create(
        station=station, id_token=token, uid=uid[:36], context=context, status=status,
        reason=reason[:255], created_at=now,
    )
    expiry = None
    if token is not None:
        expiry = token.valid_until
        if token.group_id and token.group.valid_until:
            expiry = min(filter(None, [expiry, token.group.valid_until]))
    return AuthorizationResult(
        status=status,
        reason=reason,
        token_id=token.pk if token else None,
        account_id=token.account_id if token else None,
        group_uid=token.group.uid if token and token.group_id else "",
        expiry=expiry,
    )


# --- Meter samples ----------------------------------------------------------------------------


@dataclass
class Sample:
    """One sampled value, version-neutral."""

    timestamp: datetime
    value: str
    measurand: str = ENERGY_REGISTER
    phase: str = ""
    location: str = ""
    context: str = ""
    unit: str = ""
    format: str = ""
    signed_data: str = ""
    signing_method: str = ""
    encoding_method: str = ""
    public_key: str = ""

    def decimal_value(self) -> Decimal | None:
        if self.format == "SignedData":
            return None
        try:
            value = Decimal(str(self.value))
        except (InvalidOperation, ValueError):
            return None
        return value if value.is_finite() else None

    def energy_wh(self) -> Decimal | None:
        """The value in Wh when this is the active import energy register, else None."""
        if self.measurand != ENERGY_REGISTER or self.phase:
            return None
        value = self.decimal_value()
        if value is None:
            return None
        return value * 1000 if self.unit == "kWh" else value


@dataclass
class SampleBatch:
    evse_id: int
    connector_id: int
    samples: list[Sample] = field(default_factory=list)


def _samples_store(*, session: ChargingSession | None, station_id: int, batch: SampleBatch) -> None:
    """Insert a batch in one statement; a retried message hits the unique key and is ignored."""
    if not batch.samples:
        return
    rows = [
        MeterSample(
            session=session, station_id=station_id, evse_id=batch.evse_id,
            connector_id=batch.connector_id, timestamp=s.timestamp, measurand=s.measurand[:50],
            phase=s.phase[:8], location=s.location[:8], context=s.context[:32], unit=s.unit[:16],
            value=s.decimal_value(), raw_value=str(s.value)[:64] if not s.signed_data else "",
            format=s.format[:16], signed_data=s.signed_data, signing_method=s.signing_method[:50],
            encoding_method=s.encoding_method[:50], public_key=s.public_key,
        )
        for s in batch.samples
    ]
    MeterSample.objects.bulk_create(rows, ignore_conflicts=True)


def _apply_live_values(session: ChargingSession, samples: list[Sample]) -> list[str]:
    """Move the session's running energy/power/SoC forward from new samples; returns the
    changed field names."""
    changed: list[str] = []
    latest_power: tuple[datetime, Decimal] | None = None
    for sample in samples:
        energy = sample.energy_wh()
        if energy is not None and (session.meter_last_wh is None or energy > session.meter_last_wh):
            session.meter_last_wh = energy
            changed.append("meter_last_wh")
        if sample.measurand == "Power.Active.Import" and not sample.phase:
            value = sample.decimal_value()
            if value is not None and (latest_power is None or sample.timestamp >= latest_power[0]):
                latest_power = (sample.timestamp, value * 1000 if sample.unit == "kW" else value)
        if sample.measurand == "SoC":
            value = sample.decimal_value()
            if value is not None:
                session.last_soc = value
                changed.append("last_soc")
    if latest_power is not None:
        session.last_power_w = latest_power[1]
        changed.append("last_power_w")
    if session.meter_start_wh is not None and session.meter_last_wh is not None:
        energy = max(Decimal(0), session.meter_last_wh - session.meter_start_wh)
        if session.status == ChargingSession.Status.ACTIVE and energy != session.energy_wh:
            session.energy_wh = energy
            changed.append("energy_wh")
    return sorted(set(changed))


def _session_flag(session: ChargingSession, anomaly: str) -> None:
    if anomaly not in session.anomalies:
        session.anomalies = [*session.anomalies, anomaly]


def _finish(session: ChargingSession, *, ended_at: datetime, meter_stop_wh: Decimal | None,
            reason: str) -> None:
    session.status = ChargingSession.Status.COMPLETED
    session.ended_at = ended_at
    session.stop_reason = reason[:32]
    if meter_stop_wh is not None:
        session.meter_stop_wh = meter_stop_wh
    stop = session.meter_stop_wh if session.meter_stop_wh is not None else session.meter_last_wh
    if session.meter_start_wh is not None and stop is not None:
        if stop < session.meter_start_wh:
            _session_flag(session, "meter stop below meter start")
        session.energy_wh = max(Decimal(0), stop - session.meter_start_wh)
    if ended_at < session.started_at:
        _session_flag(session, "ended before it started")


def _announce(signal: Any, session_id: int) -> None:
    transaction.on_commit(lambda: signal.send(sender=ChargingSession, session_id=session_id))


# --- OCPP 1.6-style transactions (CSMS issues the transactionId) --------------------------------


@dataclass(frozen=True)
class StartResult:
    transaction_id: int
    authorization: AuthorizationResult
    session_id: int


def _next_ocpp16_transaction_id() -> int:
    return Ocpp16TransactionIdSequence.objects.create().pk


@transaction.atomic
def session_start(
    *, station_id: int, connector_id: int, id_tag: str, meter_start_wh: Decimal,
    timestamp: datetime, reservation_id: int | None = None,
) -> StartResult:
    """Start a session for a 1.6 StartTransaction; always returns a transactionId.

    Idempotent on (station, connector, timestamp, idTag): a retried StartTransaction gets the
    transactionId it got the first time. The tag is re-validated (the charger may have
    authorized offline or from a stale cache), but a refused tag still gets its session stored.
    """
    existing = ChargingSession.objects.filter(
        station_id=station_id, connector_id=connector_id, started_at=timestamp,
        id_tag=id_tag, ocpp16_transaction_id__isnull=False,
    ).first()
    if existing is not None:
        auth = AuthorizationResult(
            status=existing.auth_status or AuthStatus.ACCEPTED, reason="retry",
            token_id=existing.id_token_id, account_id=existing.account_id,
        )
        return StartResult(existing.ocpp16_transaction_id, auth, existing.pk)
    auth = authorization_decide(
        uid=id_tag, context=AuthorizationDecision.Context.START, station_id=station_id
    )
    transaction_id = _next_ocpp16_transaction_id()
    session = ChargingSession.objects.create(
        station_id=station_id, evse_id=connector_id, connector_id=connector_id,
        transaction_id=str(transaction_id), ocpp16_transaction_id=transaction_id,
        id_token_id=auth.token_id, id_tag=id_tag, account_id=auth.account_id,
        auth_status=auth.status, started_at=timestamp, meter_start_wh=meter_start_wh,
        meter_last_wh=meter_start_wh, reservation_id=reservation_id,
        charging_state="Charging",
    )
    if not auth.accepted:
        _session_flag(session, f"started with a {auth.status} token")
        session.save(update_fields=["anomalies"])
    _announce(session_started, session.pk)
    return StartResult(transaction_id, auth, session.pk)


def _session_by_ocpp16_id(station_id: int, transaction_id: int) -> ChargingSession | None:
    return (
        ChargingSession.objects.select_for_update()
        .filter(station_id=station_id)
        .filter(Q(ocpp16_transaction_id=transaction_id) | Q(transaction_id=str(transaction_id)))
        .first()
    )


@transaction.atomic
def session_meter_samples(
    *, station_id: int, batch: SampleBatch, transaction_id: str | int | None = None,
) -> None:
    """Store a MeterValues message: one batched insert, then the session's running values.

    Samples of an unknown transaction are stored without a session and never refused.
    """
    session = None
    if transaction_id is not None:
        if isinstance(transaction_id, int):
            session = _session_by_ocpp16_id(station_id, transaction_id)
        else:
            session = ChargingSession.objects.select_for_update().filter(
                station_id=station_id, transaction_id=transaction_id
            ).first()
    _samples_store(session=session, station_id=station_id, batch=batch)
    if session is not None:
        changed = _apply_live_values(session, batch.samples)
        if changed:
            session.save(update_fields=[*changed, "updated_at"])


@transaction.atomic
def session_stop(
    *, station_id: int, transaction_id: int, meter_stop_wh: Decimal, timestamp: datetime,
    reason: str = "Local", id_tag: str = "", transaction_data: SampleBatch | None = None,
) -> AuthorizationResult | None:
    """End a session for a 1.6 StopTransaction. The CSMS cannot refuse a stop.

    A stop for a transaction never seen creates a flagged orphan session. A retried stop
    changes nothing.
    """
    session = _session_by_ocpp16_id(station_id, transaction_id)
    if session is None:
        session = ChargingSession.objects.create(
            station_id=station_id, transaction_id=str(transaction_id), id_tag=id_tag,
            started_at=timestamp, meter_start_wh=None, is_orphan=True,
            anomalies=["stop for an unknown transaction"],
        )
    if transaction_data is not None:
        transaction_data.evse_id = transaction_data.evse_id or session.evse_id
        transaction_data.connector_id = transaction_data.connector_id or session.connector_id
        _samples_store(session=session, station_id=station_id, batch=transaction_data)
        _apply_live_values(session, transaction_data.samples)
        if session.is_orphan and session.meter_start_wh is None:
            begin = [s.energy_wh() for s in transaction_data.samples
                     if s.energy_wh() is not None and s.context == "Transaction.Begin"]
            if begin:
                session.meter_start_wh = begin[0]
                session.started_at = min(
                    s.timestamp for s in transaction_data.samples if s.context == "Transaction.Begin"
                )
    auth = None
    if id_tag:
        auth = authorization_decide(
            uid=id_tag, context=AuthorizationDecision.Context.START, station_id=station_id
        )
    if session.status == ChargingSession.Status.COMPLETED:
        return auth
    _finish(session, ended_at=timestamp, meter_stop_wh=meter_stop_wh, reason=reason or "Local")
    session.save()
    _announce(session_ended, session.pk)
    return auth


# --- OCPP 2.0.1-style transactions (the station issues the transactionId) ----------------------


@dataclass
class TransactionEvent:
    event_type: str  # Started, Updated, Ended
    timestamp: datetime
    trigger_reason: str
    seq_no: int
    transaction_id: str
    charging_state: str = ""
    stopped_reason: str = ""
    remote_start_id: int | None = None
    reservation_id: int | None = None
    offline: bool = False
    evse_id: int = 0
    connector_id: int = 0
    id_token: str = ""
    id_token_type: str = ""
    samples: list[Sample] = field(default_factory=list)
    payload: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TransactionEventResult:
    session_id: int
    duplicate: bool
    authorization: AuthorizationResult | None


@transaction.atomic
def session_transaction_event(*, station_id: int, event: TransactionEvent) -> TransactionEventResult:
    """Apply one TransactionEvent.

    1. The (station, transactionId) session is found or created; an Updated/Ended for a
       transaction never seen starts a flagged orphan that a late Started later completes.
    2. The event is recorded once by seqNo: a retry changes nothing more. A gap in seqNo is
       flagged on the session.
    3. Samples are stored in one batch; live energy, power and SoC move forward.
    4. An idToken is authorized (and its decision returned for idTokenInfo).
    5. Ended closes the session with the charger's timestamp and reason.
    """
    session = (
        ChargingSession.objects.select_for_update()
        .filter(station_id=station_id, transaction_id=event.transaction_id)
        .first()
    )
    created = False
    if session is None:
        session = ChargingSession(
            station_id=station_id, transaction_id=event.transaction_id,
            started_at=event.timestamp, evse_id=event.evse_id, connector_id=event.connector_id,
            is_orphan=event.event_type != "Started",
        )
        if session.is_orphan:
            _session_flag(session, f"{event.event_type} for a transaction never started")
        session.save()
        created = True
    try:
        with transaction.atomic():
            TransactionEventRecord.objects.create(
                session=session, station_id=station_id, transaction_id=event.transaction_id,
                seq_no=event.seq_no, event_type=event.event_type,
                trigger_reason=event.trigger_reason, timestamp=event.timestamp,
                charging_state=event.charging_state, offline=event.offline, payload=event.payload,
            )
    except IntegrityError:
        authorization = None
        if event.id_token:
            token = token_find(uid=event.id_token, token_type=event.id_token_type)
            authorization = AuthorizationResult(
                status=session.auth_status or AuthStatus.ACCEPTED, reason="retry",
                token_id=token.pk if token else None,
                group_uid=token.group.uid if token and token.group_id else "",
            )
        return TransactionEventResult(session.pk, True, authorization)

    seq_numbers = sorted(
        TransactionEventRecord.objects.filter(session=session).values_list("seq_no", flat=True)
    )
    gap = any(b - a > 1 for a, b in zip(seq_numbers, seq_numbers[1:], strict=False))
    if gap != session.seq_no_gap:
        session.seq_no_gap = gap
    session.last_seq_no = max(seq_numbers)
    if event.evse_id and not session.evse_id:
        session.evse_id = event.evse_id
    if event.connector_id and not session.connector_id:
        session.connector_id = event.connector_id
    if event.event_type == "Started" or (created and event.timestamp < session.started_at):
        session.started_at = min(session.started_at, event.timestamp)
    if event.event_type == "Started" and session.is_orphan:
        session.is_orphan = False
        session.started_at = event.timestamp
    if event.remote_start_id is not None:
        session.remote_start_id = event.remote_start_id
    if event.reservation_id is not None:
        session.reservation_id = event.reservation_id
    latest_state = (
        TransactionEventRecord.objects.filter(session=session).exclude(charging_state="")
        .order_by("-timestamp", "-seq_no").values_list("charging_state", flat=True).first()
    )
    if latest_state:
        session.charging_state = latest_state

    batch = SampleBatch(session.evse_id, session.connector_id, event.samples)
    _samples_store(session=session, station_id=station_id, batch=batch)
    begin = [s for s in event.samples if s.energy_wh() is not None
             and s.context in ("Transaction.Begin", "")]
    if session.meter_start_wh is None and event.event_type == "Started":
        readings = [s.energy_wh() for s in event.samples if s.energy_wh() is not None]
        if readings:
            session.meter_start_wh = min(readings)
    elif session.meter_start_wh is None and begin and any(
        s.context == "Transaction.Begin" for s in begin
    ):
        session.meter_start_wh = next(
            s.energy_wh() for s in begin if s.context == "Transaction.Begin"
        )
    _apply_live_values(session, event.samples)

    authorization = None
    if event.id_token:
        authorization = authorization_decide(
            uid=event.id_token, token_type=event.id_token_type,
            context=AuthorizationDecision.Context.TRANSACTION_EVENT, station_id=station_id,
            exclude_session_id=session.pk,
        )
        if not session.id_tag or event.event_type == "Started":
            session.id_tag = event.id_token[:36]
            session.id_token_type = event.id_token_type[:20]
            session.id_token_id = authorization.token_id
            session.account_id = authorization.account_id
            session.auth_status = authorization.status

    if event.event_type == "Ended":
        end_readings = [s.energy_wh() for s in event.samples
                        if s.energy_wh() is not None and s.context == "Transaction.End"]
        _finish(
            session, ended_at=event.timestamp,
            meter_stop_wh=end_readings[-1] if end_readings else None,
            reason=event.stopped_reason or "Local",
        )
    session.save()
    if event.event_type == "Started" or created:
        _announce(session_started, session.pk)
    if event.event_type == "Ended":
        _announce(session_ended, session.pk)
    return TransactionEventResult(session.pk, False, authorization)

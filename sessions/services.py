"""Writes of the charging domain: authorization decisions and the life of a charging session.

Version-neutral: the OCPP edge translates 1.6J and 2.0.1 messages into these calls. The rules
that a charger depends on hold for every function here:
- transaction messages are always answered and stored, whatever their content;
- retries are idempotent (the same message twice gives one session and one set of samples);
- charger timestamps are kept; messages queued offline arrive late and are accepted;
- session energy is one rule (sessions.energy): meter stop against meter start, samples only
  fill the curve, a register reset is summed per segment and flagged; never negative.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from django.conf import settings
from django.db import IntegrityError, connection, transaction
from django.db.models import Exists, Max, OuterRef, Q, Sum, prefetch_related_objects
from django.utils import timezone

from cpo.outbox import webhooks
from sessions.authorizers import external_authorizer
from sessions.energy import RegisterWalk, energy_curve, register_readings
from sessions.models import (
    AuthorizationDecision,
    ChargingSession,
    CustomerAccount,
    Driver,
    IdToken,
    MeterSample,
    Ocpp16TransactionIdSequence,
    TransactionEventRecord,
    normalize_uid,
)
from sessions.pricing import session_cost_advance, session_price_fix
from sessions.selectors import open_session_ids
from sessions.signals import (
    id_token_changed,
    session_changed,
    session_ended,
    session_estimated,
    session_started,
)
from stations.commands.codec import codec
from stations.commands.models import Command
from stations.commands.services import command_create
from stations.models import ChargingStation, Location
from stations.services import BootResult, connector_status_changed, station_booted

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
    # The group token's own type, for 2.0.1 groupIdToken.
    group_type: str = ""
    # A roaming eMSP's reference for this authorization (OCPI), stored on the session.
    authorization_reference: str = ""

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


def _one(queryset: Any) -> Any:
    """The single row of a lookup by unique key, or None.

    Not .first(): that orders the query, and on the OCPP hot path Django's compilation of the
    ordering alone cost about a tenth of the server's CPU (benchmark profile).
    """
    return next(iter(queryset.order_by()[:1]), None)


def token_find(*, uid: str, token_type: str | None = None) -> IdToken | None:
    """Find a token by uid; uids compare case-insensitively (ISO 14443 hex may come either way)."""
    stations = IdToken.allowed_stations.through.objects.filter(idtoken_id=OuterRef("pk"))
    locations = IdToken.allowed_locations.through.objects.filter(idtoken_id=OuterRef("pk"))
    # One query: the restrictions are loaded only for the rare token that has any.
    tokens = sorted(
        IdToken.objects.select_related("group", "account", "driver")
        .filter(uid_normalized=normalize_uid(uid))
        .annotate(station_limited=Exists(stations), location_limited=Exists(locations))
        .order_by(),
        key=lambda token: token.pk,
    )
    if not tokens:
        return None
    typed = [t for t in tokens if t.type == token_type] if token_type else []
    token = typed[0] if typed else tokens[0]
    lookups = [
        name
        for name, limited in (
            ("allowed_stations", token.station_limited),
            ("allowed_locations", token.location_limited),
        )
        if limited
    ]
    if lookups:
        prefetch_related_objects([token], *lookups)
    return token


@transaction.atomic
def id_token_roaming_upsert(
    *,
    uid: str,
    token_type: str,
    issuer_country_code: str,
    issuer_party_id: str,
    contract_id: str = "",
    visual_number: str = "",
    group_uid: str = "",
) -> IdToken:
    """The local twin of a roaming partner's token (keyed by uid, type and issuing party),
    created or brought up to date, so that the local rules (an operator's block, concurrency,
    the group's limits, budgets) apply to it like to our own tokens. What an operator set on
    the twin (blocked, limits, restrictions) is kept; it never goes to local lists (the eMSP's
    whitelist decides how it is authorized)."""
    country, party = issuer_country_code.upper(), issuer_party_id.upper()
    group = None
    if group_uid:
        group, _ = IdToken.objects.get_or_create(
            uid_normalized=normalize_uid(group_uid),
            type=token_type,
            issuer_country_code=country,
            issuer_party_id=party,
            defaults={"uid": group_uid[:36], "in_local_list": False},
        )
    token = (
        IdToken.objects.select_for_update()
        .filter(
            uid_normalized=normalize_uid(uid),
            type=token_type,
            issuer_country_code=country,
            issuer_party_id=party,
        )
        .first()
    )
    if token is None:
        token = IdToken(
            uid=uid[:36],
            type=token_type,
            issuer_country_code=country,
            issuer_party_id=party,
            in_local_list=False,
        )
    token.contract_id = contract_id[:36]
    token.visual_number = visual_number[:64]
    token.group = group if group is not None and group.pk != token.pk else None
    token.save()
    return token


def _active_sessions(token: IdToken, exclude_session_id: int | None) -> int:
    active = ChargingSession.objects.filter(status=ChargingSession.Status.ACTIVE)
    if exclude_session_id:
        active = active.exclude(pk=exclude_session_id)
    return active.filter(id_token=token).count()


def _active_group_sessions(group: IdToken, exclude_session_id: int | None) -> int:
    active = ChargingSession.objects.filter(status=ChargingSession.Status.ACTIVE)
    if exclude_session_id:
        active = active.exclude(pk=exclude_session_id)
    return active.filter(Q(id_token=group) | Q(id_token__group=group)).count()


def _limits_lock(token: IdToken) -> None:
    """Lock the rows of the token and of its group whose limits are about to be counted.

    Two stations starting at once with one card (or two cards of one fleet group) would each
    count the other's session as not there yet and both pass max_concurrent_sessions. Under
    the row lock the second start waits until the first has committed its session, then
    counts it. Tokens without limits or budgets (most) take no lock and no query; the rows
    are locked in primary-key order, so two starts never wait for each other crosswise.
    """
    limited = [
        candidate.pk
        for candidate in (token, token.group if token.group_id else None)
        if candidate is not None
        and (
            candidate.max_concurrent_sessions is not None
            or candidate.budget_energy_wh is not None
            or candidate.budget_cost is not None
        )
    ]
    if limited:
        list(
            IdToken.objects.select_for_update()
            .filter(pk__in=limited)
            .order_by("pk")
            .values_list("pk", flat=True)
        )


def _decide(
    token: IdToken | None,
    *,
    station_id: int | None,
    now: datetime,
    exclude_session_id: int | None,
    lock: bool = False,
) -> tuple[str, str]:
    if token is None:
        return AuthStatus.INVALID, "unknown token"
    candidates = [("token", token)]
    if token.group:
        candidates.append(("group", token.group))
    for label, candidate in candidates:
        if candidate.blocked:
            why = f": {candidate.blocked_reason}" if candidate.blocked_reason else ""
            return AuthStatus.BLOCKED, f"{label} blocked{why}"
        if candidate.valid_until and candidate.valid_until <= now:
            return AuthStatus.EXPIRED, f"{label} expired {candidate.valid_until.isoformat()}"
        if candidate.valid_from and candidate.valid_from > now:
            return (
                AuthStatus.NOT_AT_THIS_TIME,
                f"{label} valid from {candidate.valid_from.isoformat()}",
            )
    if token.account and not token.account.is_active:
        return AuthStatus.BLOCKED, f"account {token.account_id} inactive"
    if token.driver and not token.driver.is_active:
        return AuthStatus.BLOCKED, f"driver {token.driver_id} inactive"
    if station_id is not None:
        allowed_stations = (
            {s.pk for s in token.allowed_stations.all()}
            if getattr(token, "station_limited", True)
            else set()
        )
        allowed_locations = (
            {loc.pk for loc in token.allowed_locations.all()}
            if getattr(token, "location_limited", True)
            else set()
        )
        # Only a restricted token needs the station's site: most tokens skip this query.
        if allowed_stations or allowed_locations:
            station = ChargingStation.objects.only("identity", "location_id").get(pk=station_id)
            if station.pk not in allowed_stations and station.location_id not in allowed_locations:
                return AuthStatus.NOT_AT_THIS_LOCATION, (
                    f"not allowed at station {station.identity} or its site"
                )
    if lock:
        _limits_lock(token)
    if token.max_concurrent_sessions is not None:
        if _active_sessions(token, exclude_session_id) >= token.max_concurrent_sessions:
            return (
                AuthStatus.CONCURRENT_TX,
                f"{token.max_concurrent_sessions} session(s) already active",
            )
    group = token.group if token.group_id else None
    if group is not None and group.max_concurrent_sessions is not None:
        # A group's limit caps the sessions of all its members together (a fleet's cards).
        if _active_group_sessions(group, exclude_session_id) >= group.max_concurrent_sessions:
            return AuthStatus.CONCURRENT_TX, (
                f"group {group.uid}: {group.max_concurrent_sessions} session(s) already active"
            )
    if token.budget_energy_wh is not None or token.budget_cost is not None:
        since = _budget_start(token.budget_period, now)
        used = ChargingSession.objects.filter(id_token=token, started_at__gte=since).aggregate(
            energy=Sum("energy_wh"), cost=Sum("live_cost")
        )
        if token.budget_energy_wh is not None and (used["energy"] or 0) >= token.budget_energy_wh:
            return AuthStatus.NO_CREDIT, (
                f"energy budget used up: {used['energy'] or 0} of {token.budget_energy_wh} Wh "
                f"since {since.date().isoformat()}"
            )
        if token.budget_cost is not None and (used["cost"] or 0) >= token.budget_cost:
            return AuthStatus.NO_CREDIT, (
                f"cost budget used up: {used['cost'] or 0} of {token.budget_cost} "
                f"since {since.date().isoformat()}"
            )
    return AuthStatus.ACCEPTED, "valid"


def authorization_decide(
    *,
    uid: str,
    context: str,
    station_id: int | None = None,
    token_type: str | None = None,
    exclude_session_id: int | None = None,
    now: datetime | None = None,
    lock: bool = False,
) -> AuthorizationResult:
    """Decide whether `uid` may charge here and now, and record the decision with its reason.

    1. Unknown token: Invalid.
    2. The token, then its group: Blocked, Expired (valid_until passed), NotAtThisTime
       (valid_from ahead).
    2b. The paying account or the driver deactivated: Blocked.
    3. Restricted to stations or sites: NotAtThisLocation elsewhere.
    4. Concurrency limit of the token, or of its group for all members together: ConcurrentTx.
    5. Energy or cost budget of the period (UTC calendar) used up: NoCredit.

    With `lock` (a start, inside its transaction), 4 and 5 are decided with the token's and
    its group's rows locked (`_limits_lock`), so concurrent starts are counted one by one.

    The expiry returned (1.6 expiryDate, 2.0.1 cacheExpiryDateTime) is the earlier of the
    token's and its group's valid_until, so that no charger caches a token past its validity.
    """
    now = now or timezone.now()
    token = token_find(uid=uid, token_type=token_type)
    external = None
    authorizer = external_authorizer()
    if authorizer is not None and (token is None or token.issuer_party_id):
        external = authorizer(
            uid=uid,
            token_type=token_type,
            station_id=station_id,
            token=token,
            context=context,
            now=now,
        )
    if external is not None and external.token is not None:
        token = external.token
    if external is not None and external.status != AuthStatus.ACCEPTED:
        status, reason = external.status, external.reason
    else:
        status, reason = _decide(
            token, station_id=station_id, now=now, exclude_session_id=exclude_session_id, lock=lock
        )
        if external is not None and token is None:
            # Accepted by a partner for a token we keep no twin of (OCPI 2.1.1 real time).
            status, reason = AuthStatus.ACCEPTED, external.reason
        elif external is not None and status == AuthStatus.ACCEPTED:
            reason = external.reason
    AuthorizationDecision.objects.create(
        station_id=station_id,
        id_token=token,
        uid=uid[:36],
        context=context,
        status=status,
        reason=reason[:255],
        created_at=now,
    )
    expiry = None
    if token is not None:
        expiry = token.valid_until
        if token.group and token.group.valid_until:
            expiry = min(filter(None, [expiry, token.group.valid_until]))
    if external is not None and external.expiry is not None:
        expiry = min(filter(None, [expiry, external.expiry]))
    return AuthorizationResult(
        status=status,
        reason=reason,
        token_id=token.pk if token else None,
        account_id=token.account_id if token else None,
        group_uid=token.group.uid if token and token.group else "",
        expiry=expiry,
        group_type=token.group.type if token and token.group else "",
        authorization_reference=external.authorization_reference if external else "",
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


AFTER_STOP = "meter samples arrived after the stop: kept, flagged after_stop, not counted"


def _samples_store(*, session: ChargingSession | None, station_id: int, batch: SampleBatch) -> None:
    """Insert a batch in one statement; a retried message hits the unique key and is ignored.

    Samples that arrive for a closed session are kept, marked `after_stop`, and flagged on
    the session: they never move it (its energy, its live values) nor its rating.
    """
    if not batch.samples:
        return
    after_stop = session is not None and session.status == ChargingSession.Status.COMPLETED
    rows = [
        MeterSample(
            session=session,
            station_id=station_id,
            evse_id=batch.evse_id,
            connector_id=batch.connector_id,
            timestamp=s.timestamp,
            measurand=s.measurand[:50],
            phase=s.phase[:8],
            location=s.location[:8],
            context=s.context[:32],
            unit=s.unit[:16],
            value=s.decimal_value(),
            raw_value=str(s.value)[:64] if not s.signed_data else "",
            format=s.format[:16],
            signed_data=s.signed_data,
            signing_method=s.signing_method[:50],
            encoding_method=s.encoding_method[:50],
            public_key=s.public_key,
            after_stop=after_stop,
        )
        for s in batch.samples
    ]
    inserted = _InsertCounter()
    with connection.execute_wrapper(inserted):
        MeterSample.objects.bulk_create(rows, ignore_conflicts=True)
    if after_stop and inserted.rows:
        _session_flag(session, AFTER_STOP)  # type: ignore[arg-type]
    if inserted.rows < len(rows):
        # Some rows hit the unique key: a retried message, or a re-send with other values.
        _samples_conflicts(session=session, station_id=station_id, rows=rows)


class _InsertCounter:
    """Counts the rows the INSERTs really wrote (the database's rowcount), so that a batch
    without duplicates costs no query to check for them."""

    def __init__(self) -> None:
        self.rows = 0

    def __call__(self, execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        result = execute(sql, params, many, context)
        if sql.lstrip().upper().startswith("INSERT"):
            self.rows += max(context["cursor"].rowcount or 0, 0)
        return result


SAMPLE_CONFLICT_FLAGS = 10


def _samples_conflicts(
    *, session: ChargingSession | None, station_id: int, rows: list[MeterSample]
) -> None:
    """Compare a batch whose rows partly existed with what is stored under their keys.

    An identical re-send is harmless. A re-send with a different value is dropped (the first
    value stored stays, as the unique key wants), but counted on the session
    (`sample_conflicts`), flagged there with what differed, and logged.
    """
    fields = ("evse_id", "connector_id", "timestamp", "measurand", "phase", "location", "context")

    def key(row: Any) -> tuple[Any, ...]:
        return tuple(getattr(row, name) for name in fields)

    stored = {
        key(row): row
        for row in MeterSample.objects.filter(
            station_id=station_id,
            evse_id__in={r.evse_id for r in rows},
            timestamp__in={r.timestamp for r in rows},
            measurand__in={r.measurand for r in rows},
        ).only(*fields, "value", "raw_value", "signed_data", "unit")
    }
    conflicts = []
    for row in rows:
        kept = stored.get(key(row))
        if kept is None or kept is row:
            continue
        same_value = (
            kept.value == row.value
            if kept.value is not None and row.value is not None
            else kept.raw_value == row.raw_value
        )
        if not same_value or kept.signed_data != row.signed_data or kept.unit != row.unit:
            conflicts.append((row, kept))
    if not conflicts:
        return
    logger.warning(
        "station %s: %d re-sent meter sample(s) differ from the stored ones and were dropped: %s",
        station_id,
        len(conflicts),
        "; ".join(
            f"{row.measurand} at {row.timestamp.isoformat()}: kept {kept.raw_value or kept.value}"
            f" {kept.unit}, re-sent {row.raw_value or row.value} {row.unit}"
            for row, kept in conflicts
        ),
    )
    if session is None:
        return
    session.sample_conflicts += len(conflicts)
    for row, kept in conflicts:
        if (
            sum(1 for a in session.anomalies if a.startswith("re-sent meter sample"))
            >= SAMPLE_CONFLICT_FLAGS
        ):
            break
        _session_flag(
            session,
            f"re-sent meter sample with a different value: {row.measurand}"
            f"{' ' + row.phase if row.phase else ''} at {row.timestamp.isoformat()} kept "
            f"{kept.raw_value or kept.value} {kept.unit}, dropped {row.raw_value or row.value} "
            f"{row.unit}",
        )


def _reset_threshold() -> Decimal:
    return Decimal(settings.CHARGING_METER_RESET_THRESHOLD_WH)


def _register_rows(samples: list[Sample]) -> list[tuple[datetime, str, str, Decimal | None]]:
    return [
        (s.timestamp, s.location, s.unit, s.decimal_value())
        for s in samples
        if s.measurand == ENERGY_REGISTER and not s.phase
    ]


def _apply_live_values(session: ChargingSession, samples: list[Sample]) -> list[str]:
    """Move a running session's energy, power and SoC forward from new samples; returns the
    changed field names. A closed session never moves.

    Energy walks on from the session's state (`meter_last_wh`: the highest reading of the
    current register segment; `energy_wh`: delivered so far) by the rule of sessions.energy,
    so a register reset is flagged as soon as it is seen; the stop settles the total.
    """
    if session.status != ChargingSession.Status.ACTIVE:
        return []
    changed: list[str] = []
    walk = RegisterWalk(
        _reset_threshold(),
        last=session.meter_last_wh if session.meter_last_wh is not None else session.meter_start_wh,
        delivered=session.energy_wh,
    )
    # Only readings past the last one walked: a retried or late batch (stored, and counted
    # when the stop settles the energy in time order) must not look like a register reset.
    for at, value in register_readings(_register_rows(samples)):
        if session.meter_last_at is not None and at <= session.meter_last_at:
            continue
        walk.read(at, value)
        session.meter_last_at = at
        changed.append("meter_last_at")
    if walk.last is not None and walk.last != session.meter_last_wh:
        session.meter_last_wh = walk.last
        changed.append("meter_last_wh")
    if walk.delivered != session.energy_wh:
        session.energy_wh = walk.delivered
        changed.append("energy_wh")
    for reset in walk.resets:
        if _session_flag(session, reset.describe()):
            changed.append("anomalies")
    latest_power: tuple[datetime, Decimal] | None = None
    for sample in samples:
        if sample.measurand == "Power.Active.Import" and not sample.phase:
            power = sample.decimal_value()
            if power is not None and (latest_power is None or sample.timestamp >= latest_power[0]):
                latest_power = (sample.timestamp, power * 1000 if sample.unit == "kW" else power)
        if sample.measurand == "SoC":
            soc = sample.decimal_value()
            if soc is not None and soc != session.last_soc:
                session.last_soc = soc
                changed.append("last_soc")
    if latest_power is not None and latest_power[1] != session.last_power_w:
        session.last_power_w = latest_power[1]
        changed.append("last_power_w")
    return sorted(set(changed))


def _energy_settle(session: ChargingSession) -> None:
    """The session's energy by the one rule (sessions.energy.energy_curve), from its meter
    start and stop and every energy register sample it stored: what its rating reads too."""
    rows = MeterSample.objects.filter(
        session=session,
        measurand=ENERGY_REGISTER,
        phase="",
        value__isnull=False,
        after_stop=False,
    ).values_list("timestamp", "location", "unit", "value")
    curve = energy_curve(
        readings=register_readings(rows),
        start=session.started_at,
        end=max(session.ended_at or session.started_at, session.started_at),
        meter_start=session.meter_start_wh,
        meter_stop=session.meter_stop_wh,
        threshold=_reset_threshold(),
    )
    if curve is None:
        return
    session.energy_wh = curve.total
    for reset in curve.resets:
        _session_flag(session, reset.describe())


def _session_flag(session: ChargingSession, anomaly: str) -> bool:
    """Add an anomaly an operator sees on the session; returns whether it is new."""
    if anomaly in session.anomalies:
        return False
    session.anomalies = [*session.anomalies, anomaly]
    return True


ABSURD = "absurd values from the station, "
# How the OCPP edge (stations.ocpp.bounds) says it replaced an absurd time by the time of receipt.
TIME_REPLACED = "replaced by the time of receipt: "


def _session_flag_dropped(session: ChargingSession, dropped: tuple[str, ...]) -> None:
    """Flag what the OCPP edge dropped from a transaction message (absurd values)."""
    for what in dropped:
        _session_flag(session, f"{ABSURD}{what}")


def _finish(
    session: ChargingSession,
    *,
    ended_at: datetime,
    meter_stop_wh: Decimal | None,
    reason: str,
    status: str = ChargingSession.Status.COMPLETED,
) -> None:
    session.status = status
    session.ended_at = ended_at
    session.stop_reason = reason[:32]
    if meter_stop_wh is not None:
        session.meter_stop_wh = meter_stop_wh
    if (
        session.meter_start_wh is not None
        and session.meter_stop_wh is not None
        and session.meter_stop_wh < session.meter_start_wh
    ):
        _session_flag(session, "meter stop below meter start")
    _energy_settle(session)
    _charged_despite_refusal(session)
    if ended_at < session.started_at:
        _session_flag(session, "ended before it started")


def _hold_for_review(session: ChargingSession, status: str) -> None:
    """A start we refused (Blocked, Invalid, Expired, ...) that the station may charge anyway
    (1.6 chargers are allowed to): recorded and flagged, and held for review: billing leaves
    a session that needs review off every invoice until finance decides."""
    note = f"started with a {status} token: held for review, not billed"
    session.rating_status = ChargingSession.RatingStatus.NEEDS_REVIEW
    session.rating_note = note
    _session_flag(session, note)


def _charged_despite_refusal(session: ChargingSession) -> None:
    if session.needs_review and session.auth_status not in ("", AuthStatus.ACCEPTED):
        if session.energy_wh > 0:
            _session_flag(
                session,
                f"charged {session.energy_wh.normalize():f} Wh although the start was answered "
                f"{session.auth_status}",
            )


# The webhook event each announcement is to integrators (session_estimated is not one: the
# session's end is announced when the estimate is rated or the station's own stop comes).
_WEBHOOK_EVENTS = {session_started: "session.started", session_ended: "session.ended"}
_CHANGE_EVENTS = {
    session_started: "started",
    session_ended: "ended",
    session_estimated: "estimated",
}


def _webhook_payload(session: ChargingSession) -> dict[str, Any]:
    def text(value: Decimal | None) -> str | None:
        return None if value is None else f"{value.normalize():f}"

    return {
        "session": str(session.uid),
        "transaction_id": session.transaction_id,
        "station": ChargingStation.objects.values_list("identity", flat=True).get(
            pk=session.station_id
        ),
        "evse_id": session.evse_id,
        "connector_id": session.connector_id,
        "id_tag": session.id_tag,
        "status": session.status,
        "started_at": webhooks.iso(session.started_at),
        "ended_at": webhooks.iso(session.ended_at),
        "meter_start_wh": text(session.meter_start_wh),
        "meter_stop_wh": text(session.meter_stop_wh),
        "energy_wh": text(session.energy_wh),
        "stop_reason": session.stop_reason,
        "is_estimated": session.is_estimated,
    }


def _announce(signal: Any, session: ChargingSession) -> None:
    session_id = session.pk
    event = _WEBHOOK_EVENTS.get(signal)
    if event is not None:
        # In this transaction: the event is sent if and only if the session's change commits.
        webhooks.event_publish(
            type=event,
            payload=lambda: _webhook_payload(session),
            subject=f"session:{session.pk}",
            dedupe_key=str(session.uid),
        )
    session_changed.send(
        sender=ChargingSession, session=session, event=_CHANGE_EVENTS.get(signal, "changed")
    )
    station_id = session.station_id
    transaction.on_commit(
        lambda: signal.send(sender=ChargingSession, session_id=session_id, station_id=station_id)
    )


# --- OCPP 1.6-style transactions (CSMS issues the transactionId) --------------------------------


@dataclass(frozen=True)
class StartResult:
    transaction_id: int
    authorization: AuthorizationResult
    session_id: int


def _next_ocpp16_transaction_id() -> int:
    return Ocpp16TransactionIdSequence.objects.create().pk


def _ocpp16_start_of(
    *, station_id: int, evse_id: int, connector_id: int, timestamp: datetime, id_tag: str
) -> ChargingSession | None:
    """The session of a 1.6 StartTransaction, by what makes it the same start (the unique
    key `session_unique_ocpp16_start`)."""
    return _one(
        ChargingSession.objects.filter(
            station_id=station_id,
            evse_id=evse_id,
            connector_id=connector_id,
            started_at=timestamp,
            id_tag=id_tag,
            ocpp16_transaction_id__isnull=False,
        )
    )


def _retry_answer(existing: ChargingSession) -> StartResult:
    auth = AuthorizationResult(
        status=existing.auth_status or AuthStatus.ACCEPTED,
        reason="retry",
        token_id=existing.id_token_id,
        account_id=existing.account_id,
    )
    return StartResult(existing.ocpp16_transaction_id, auth, existing.pk)  # type: ignore[arg-type]


def _retry_of_replaced_start(
    here: list[ChargingSession],
    *,
    connector_id: int,
    id_tag: str,
    meter_start_wh: Decimal | None,
) -> ChargingSession | None:
    """The first delivery of a StartTransaction whose absurd time the edge replaced by the time
    of receipt: a retry carries another receipt time, so the open session on this connector
    with the same tag and meter start, its own start time replaced too, is this start."""
    flag = f"{ABSURD}{TIME_REPLACED}"
    return next(
        (
            s
            for s in here
            if s.status == ChargingSession.Status.ACTIVE
            and s.ocpp16_transaction_id is not None
            and (s.connector_id, s.id_tag, s.meter_start_wh)
            == (connector_id, id_tag, meter_start_wh)
            and any(a.startswith(flag) for a in s.anomalies)
        ),
        None,
    )


def _first_answer_on_conflict(start: Callable[..., StartResult]) -> Callable[..., StartResult]:
    """The unique backstop of StartTransaction's idempotency.

    A station that retries a StartTransaction while the first is still being processed (a
    reconnect, two nodes) races the retry check: both find no session and both insert. The
    unique start key lets one insert win; the other's transaction fails and rolls back (its
    decision and transactionId with it) and it answers what the first one answered.
    """

    @functools.wraps(start)
    def guarded(**kwargs: Any) -> StartResult:
        try:
            return start(**kwargs)
        except IntegrityError:
            existing = _ocpp16_start_of(
                station_id=kwargs["station_id"],
                evse_id=kwargs["evse_id"],
                connector_id=kwargs["connector_id"],
                timestamp=kwargs["timestamp"],
                id_tag=kwargs["id_tag"],
            )
            if existing is None:
                raise
            return _retry_answer(existing)

    return guarded


@_first_answer_on_conflict
@transaction.atomic
def session_start(
    *,
    station_id: int,
    evse_id: int,
    connector_id: int,
    id_tag: str,
    meter_start_wh: Decimal | None,
    timestamp: datetime,
    reservation_id: int | None = None,
    anomalies: tuple[str, ...] = (),
) -> StartResult:
    """Start a session for a 1.6 StartTransaction; always returns a transactionId.

    Idempotent on (station, EVSE, connector, timestamp, idTag): a retried StartTransaction gets
    the transactionId it got the first time, also when the retry runs concurrently with the
    first (a unique key backs the check, `_first_answer_on_conflict`). Concurrency limits are
    counted with the token's rows locked. The tag is re-validated (the charger may have
    authorized offline or from a stale cache), but a refused tag still gets its session stored.
    """
    # One query: this start's session (a retry) and any session still open on this EVSE.
    here = list(
        ChargingSession.objects.select_for_update()
        .filter(station_id=station_id, evse_id=evse_id)
        .filter(
            Q(
                connector_id=connector_id,
                started_at=timestamp,
                id_tag=id_tag,
                ocpp16_transaction_id__isnull=False,
            )
            | Q(status=ChargingSession.Status.ACTIVE)
        )
        .order_by()
    )
    existing = next(
        (
            s
            for s in here
            if s.ocpp16_transaction_id is not None
            and (s.connector_id, s.started_at, s.id_tag) == (connector_id, timestamp, id_tag)
        ),
        None,
    )
    if existing is None and any(a.startswith(TIME_REPLACED) for a in anomalies):
        existing = _retry_of_replaced_start(
            here, connector_id=connector_id, id_tag=id_tag, meter_start_wh=meter_start_wh
        )
    if existing is not None:
        return _retry_answer(existing)
    # A connector runs one transaction: one still open here is one the station forgot (its
    # stop would have arrived first: transaction messages are delivered in order).
    for stale in here:
        _close_estimated(stale, forgotten=FORGOTTEN_NEW_TRANSACTION, confirmed=True)
    auth = authorization_decide(
        uid=id_tag, context=AuthorizationDecision.Context.START, station_id=station_id, lock=True
    )
    transaction_id = _next_ocpp16_transaction_id()
    session = ChargingSession(
        station_id=station_id,
        evse_id=evse_id,
        connector_id=connector_id,
        transaction_id=str(transaction_id),
        ocpp16_transaction_id=transaction_id,
        id_token_id=auth.token_id,
        id_tag=id_tag,
        account_id=auth.account_id,
        auth_status=auth.status,
        authorization_reference=auth.authorization_reference,
        started_at=timestamp,
        meter_start_wh=meter_start_wh,
        meter_last_wh=meter_start_wh,
        meter_last_at=timestamp,
        reservation_id=reservation_id,
        charging_state="Charging",
    )
    if not auth.accepted:
        _hold_for_review(session, auth.status)
    _session_flag_dropped(session, anomalies)
    session.save(force_insert=True)
    session_price_fix(session)
    _announce(session_started, session)
    return StartResult(transaction_id, auth, session.pk)


def _session_by_ocpp16_id(station_id: int, transaction_id: int) -> ChargingSession | None:
    return _one(
        ChargingSession.objects.select_for_update()
        .filter(station_id=station_id)
        .filter(Q(ocpp16_transaction_id=transaction_id) | Q(transaction_id=str(transaction_id)))
    )


@transaction.atomic
def session_meter_samples(
    *,
    station_id: int,
    batch: SampleBatch,
    transaction_id: str | int | None = None,
    anomalies: tuple[str, ...] = (),
) -> None:
    """Store a MeterValues message: one batched insert, then the session's running values.

    Samples of an unknown transaction are stored without a session and never refused.
    """
    session = None
    if transaction_id is not None:
        if isinstance(transaction_id, int):
            session = _session_by_ocpp16_id(station_id, transaction_id)
        else:
            session = _one(
                ChargingSession.objects.select_for_update().filter(
                    station_id=station_id, transaction_id=transaction_id
                )
            )
    reopened = _still_known(session)
    flags = list(session.anomalies) if session is not None else []
    conflicts = session.sample_conflicts if session is not None else 0
    if session is not None:
        _session_flag_dropped(session, anomalies)
    _samples_store(session=session, station_id=station_id, batch=batch)
    if session is not None and reopened:
        _apply_live_values(session, batch.samples)
        session.save()
    elif session is not None:
        changed = _apply_live_values(session, batch.samples)
        if session.anomalies != flags:
            changed = sorted({*changed, "anomalies"})
        if session.sample_conflicts != conflicts:
            changed = sorted({*changed, "sample_conflicts"})
        if batch.samples and session.status == ChargingSession.Status.ACTIVE:
            latest = max(sample.timestamp for sample in batch.samples)
            changed += session_cost_advance(session, until=latest)
        if changed:
            session.save(update_fields=[*changed, "updated_at"])


@transaction.atomic
def session_stop(
    *,
    station_id: int,
    transaction_id: int,
    meter_stop_wh: Decimal | None,
    timestamp: datetime,
    reason: str = "Local",
    id_tag: str = "",
    transaction_data: SampleBatch | None = None,
    anomalies: tuple[str, ...] = (),
) -> AuthorizationResult | None:
    """End a session for a 1.6 StopTransaction. The CSMS cannot refuse a stop.

    A stop for a transaction never seen creates a flagged orphan session. A retried stop
    changes nothing. The stop of a session closed on an estimate (`sessions_forgotten_close`)
    replaces the estimate: the station's own values win.
    """
    session = _session_by_ocpp16_id(station_id, transaction_id)
    if session is not None and session.is_estimated:
        _estimate_superseded(session)
    flags = (list(session.anomalies), session.sample_conflicts) if session is not None else None
    if session is None:
        session = ChargingSession.objects.create(
            station_id=station_id,
            transaction_id=str(transaction_id),
            id_tag=id_tag,
            started_at=timestamp,
            meter_start_wh=None,
            is_orphan=True,
            anomalies=["stop for an unknown transaction"],
        )
        session_price_fix(session)
    _session_flag_dropped(session, anomalies)
    if transaction_data is not None:
        transaction_data.evse_id = transaction_data.evse_id or session.evse_id
        transaction_data.connector_id = transaction_data.connector_id or session.connector_id
        _samples_store(session=session, station_id=station_id, batch=transaction_data)
        _apply_live_values(session, transaction_data.samples)
        if session.is_orphan and session.meter_start_wh is None:
            begin = [
                s.energy_wh()
                for s in transaction_data.samples
                if s.energy_wh() is not None and s.context == "Transaction.Begin"
            ]
            if begin:
                session.meter_start_wh = begin[0]
                session.started_at = min(
                    s.timestamp
                    for s in transaction_data.samples
                    if s.context == "Transaction.Begin"
                )
    auth = None
    if id_tag:
        auth = authorization_decide(
            uid=id_tag, context=AuthorizationDecision.Context.STOP, station_id=station_id
        )
    if session.status == ChargingSession.Status.COMPLETED:
        if flags != (session.anomalies, session.sample_conflicts):
            session.save(update_fields=["anomalies", "sample_conflicts", "updated_at"])
        return auth
    session.stop_received_at = timezone.now()
    _finish(session, ended_at=timestamp, meter_stop_wh=meter_stop_wh, reason=reason or "Local")
    session.save()
    _announce(session_ended, session)
    return auth


# --- Sessions a station no longer knows ---------------------------------------------------------
#
# A station killed mid-transaction may boot again with no memory of it, and report the connector
# Available; its session would stay active for ever and a new transaction would run beside it.
# Where the station can be asked (GetTransactionStatus, through the command queue), it is asked
# and its answer decides. Where it cannot (1.6), the session is closed on an estimate at once
# (the connector is free for the next start, limits count it no more), but rated only after
# CHARGING_ESTIMATE_RATING_DELAY_SECONDS: a station that did keep the transaction sends its
# queued StopTransaction right after it boots (and StatusNotification may overtake the queue),
# and the station's own stop then simply replaces the estimate before any CDR exists.

TRANSACTION_STATUS_VERB = "get_transaction_status"
ESTIMATED = "estimated: "
ESTIMATE_RATED = "estimated close rated: the station sent no stop for it"


@dataclass(frozen=True)
class Forgotten:
    """Why a session is closed on an estimate: its stop reason and the words of its flag."""

    reason: str
    why: str


FORGOTTEN_REBOOT = Forgotten(
    "EstimatedReboot", "the station booted again and did not report this transaction's stop"
)
FORGOTTEN_AVAILABLE = Forgotten(
    "EstimatedAvailable", "the connector reported Available while this transaction was open"
)
FORGOTTEN_NEW_TRANSACTION = Forgotten(
    "EstimatedNewTransaction", "a new transaction started on the same connector"
)
FORGOTTEN_NOT_ONGOING = Forgotten(
    "EstimatedNotOngoing",
    "the station answered GetTransactionStatus: not ongoing, no messages queued",
)


def _close_estimated(session: ChargingSession, *, forgotten: Forgotten, confirmed: bool) -> None:
    """Close a session the station no longer knows at its last known meter reading and time,
    flagged estimated. Rated at once when `confirmed` (the station said so, or a newer
    transaction on the connector proves it: transaction messages arrive in order), else after
    the delay in which the station's own stop may still come."""
    last_sample = MeterSample.objects.filter(session=session, after_stop=False).aggregate(
        at=Max("timestamp")
    )["at"]
    last_event = TransactionEventRecord.objects.filter(session=session).aggregate(
        at=Max("timestamp")
    )["at"]
    ended_at = max(at for at in (session.started_at, last_sample, last_event) if at is not None)
    meter = session.meter_last_wh if session.meter_last_wh is not None else session.meter_start_wh
    session.is_estimated = True
    reading = f"{meter.normalize():f} Wh" if meter is not None else "no reading"
    _session_flag(
        session,
        f"{ESTIMATED}{forgotten.why}; closed at the last known meter reading ({reading}) and "
        f"time ({ended_at.isoformat()})",
    )
    _finish(session, ended_at=ended_at, meter_stop_wh=meter, reason=forgotten.reason)
    delay = settings.CHARGING_ESTIMATE_RATING_DELAY_SECONDS
    if confirmed or delay <= 0:
        _session_flag(session, ESTIMATE_RATED)
        session.save()
        _announce(session_ended, session)
    else:
        session.save()
        _announce(session_estimated, session)


def _estimate_superseded(session: ChargingSession) -> None:
    """The station's own stop arrived for a session closed on an estimate: reopen it for that
    stop to close it. Not rated yet: the estimate leaves no trace. Rated already: its CDR holds
    the estimate, which the session says."""
    if ESTIMATE_RATED in session.anomalies:
        _session_flag(
            session,
            "the station's stop arrived after the estimated close was rated: its CDR holds the "
            "estimate (re-rate it)",
        )
    else:
        session.anomalies = [a for a in session.anomalies if not a.startswith(ESTIMATED)]
    session.is_estimated = False
    session.status = ChargingSession.Status.ACTIVE
    session.ended_at = None
    session.meter_stop_wh = None
    session.stop_reason = ""


def _still_known(session: ChargingSession | None) -> bool:
    """A message of the transaction for a session closed on an estimate, not yet rated: the
    station did not forget it after all. The session goes on (`_estimate_superseded`)."""
    if session is None or not session.is_estimated or ESTIMATE_RATED in session.anomalies:
        return False
    _estimate_superseded(session)
    return True


@transaction.atomic
def session_estimate_rate(*, session_id: int) -> bool:
    """Rate a session closed on an estimate once the station had its time to send the stop
    (the delayed task after `sessions_forgotten_close`). Returns whether it was announced."""
    session = _one(ChargingSession.objects.select_for_update().filter(pk=session_id))
    if (
        session is None
        or not session.is_estimated
        or session.status != ChargingSession.Status.COMPLETED
        or ESTIMATE_RATED in session.anomalies
    ):
        return False
    _session_flag(session, ESTIMATE_RATED)
    session.save(update_fields=["anomalies", "updated_at"])
    _announce(session_ended, session)
    return True


@transaction.atomic
def sessions_forgotten_close(
    *, station_id: int, session_ids: list[int], forgotten: Forgotten
) -> int:
    """Sessions of a station that may no longer know them: ask the station where its protocol
    can be asked (GetTransactionStatus through the command queue; the answer goes to
    `session_transaction_status_answered`), else close them on an estimate. Returns the
    number closed."""
    station = ChargingStation.objects.get(pk=station_id)
    sessions = list(
        ChargingSession.objects.select_for_update()
        .filter(pk__in=session_ids, station_id=station_id, status=ChargingSession.Status.ACTIVE)
        .order_by("pk")
    )
    if station.protocol and codec().supports(station.protocol, TRANSACTION_STATUS_VERB):
        asked = set(
            Command.objects.filter(
                station=station,
                verb=TRANSACTION_STATUS_VERB,
                status__in=(Command.Status.QUEUED, Command.Status.SENT),
            ).values_list("payload__transactionId", flat=True)
        )
        for session in sessions:
            if session.transaction_id not in asked:
                command_create(
                    station=station,
                    verb=TRANSACTION_STATUS_VERB,
                    params={"transaction_id": session.transaction_id},
                )
        return 0
    for session in sessions:
        _close_estimated(session, forgotten=forgotten, confirmed=False)
    return len(sessions)


def sessions_station_restarted(*, station_id: int, boot_reason: str = "") -> int:
    """A station booted: its open sessions may be ones it no longer knows (see above).

    One query when it has none, the usual case; the closing runs only for those it has. A
    BootNotification we asked for (TriggerMessage; 2.0.1 says so in its reason) is no reboot.
    """
    if boot_reason == "Triggered":
        return 0
    ids = open_session_ids(station_id=station_id)
    if not ids:
        return 0
    triggered = Command.objects.filter(
        station_id=station_id,
        action__in=("TriggerMessage", "ExtendedTriggerMessage"),
        payload__requestedMessage="BootNotification",
        created_at__gte=timezone.now() - timedelta(minutes=10),
    )
    if triggered.exists():
        return 0
    return sessions_forgotten_close(
        station_id=station_id, session_ids=ids, forgotten=FORGOTTEN_REBOOT
    )


def station_boot_record(*, station_id: int, reason: str = "", **boot: Any) -> BootResult:
    """A BootNotification: the station's boot data (`station_booted`) and, once it is
    accepted, the open sessions it may have lost in the reboot (`sessions_station_restarted`),
    in one trip from the OCPP edge to the database thread (a boot storm is thousands)."""
    result = station_booted(station_id=station_id, reason=reason, **boot)
    if result.status == ChargingStation.RegistrationStatus.ACCEPTED:
        sessions_station_restarted(station_id=station_id, boot_reason=reason)
    return result


def connector_status_record(
    *,
    station_id: int,
    evse_id: int,
    connector_id: int,
    status: str,
    timestamp: datetime | None,
    available: bool,
    **details: Any,
) -> None:
    """A connector's status report, and, when it says Available, the sessions there that the
    station no longer knows (`sessions_connector_available`): one trip from the OCPP edge to
    the database thread for what is most of a network's traffic."""
    connector_status_changed(
        station_id=station_id,
        evse_id=evse_id,
        connector_id=connector_id,
        status=status,
        timestamp=timestamp,
        **details,
    )
    if available and evse_id:
        sessions_connector_available(
            station_id=station_id, evse_id=evse_id, at=timestamp or timezone.now()
        )


def sessions_connector_available(*, station_id: int, evse_id: int, at: datetime) -> int:
    """A connector reported Available: no transaction runs on it, so a session still open
    there that started before the report is one the station no longer knows. One query when
    there is none."""
    ids = open_session_ids(station_id=station_id, evse_id=evse_id, started_by=at)
    if not ids:
        return 0
    return sessions_forgotten_close(
        station_id=station_id, session_ids=ids, forgotten=FORGOTTEN_AVAILABLE
    )


@transaction.atomic
def session_transaction_status_answered(
    *,
    station_id: int,
    transaction_id: str,
    ongoing: bool | None,
    messages_in_queue: bool,
) -> bool:
    """The station's answer to GetTransactionStatus for one of its open sessions: not ongoing
    and nothing queued means it forgot the transaction: closed on an estimate and rated.
    Queued messages will tell the rest themselves; ongoing means it is still running."""
    session = _one(
        ChargingSession.objects.select_for_update().filter(
            station_id=station_id,
            transaction_id=transaction_id,
            status=ChargingSession.Status.ACTIVE,
        )
    )
    if session is None or messages_in_queue or ongoing is not False:
        return False
    _close_estimated(session, forgotten=FORGOTTEN_NOT_ONGOING, confirmed=True)
    return True


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
    # What the OCPP edge dropped from the message as absurd: flagged on the session.
    anomalies: tuple[str, ...] = ()


@dataclass(frozen=True)
class TransactionEventResult:
    session_id: int
    duplicate: bool
    authorization: AuthorizationResult | None
    # The session's cost so far incl. VAT (None: no tariff, or no meter value yet).
    cost: Decimal | None = None


def _once_more_on_conflict(
    apply: Callable[..., TransactionEventResult],
) -> Callable[..., TransactionEventResult]:
    """A TransactionEvent retried while the first delivery is still being processed: both
    find no session and both insert it; the unique (station, transactionId) lets one win and
    the other's transaction roll back. Applied again, the loser finds the session and the
    recorded seqNo: a duplicate, answered as one."""

    @functools.wraps(apply)
    def guarded(**kwargs: Any) -> TransactionEventResult:
        try:
            return apply(**kwargs)
        except IntegrityError:
            return apply(**kwargs)

    return guarded


@_once_more_on_conflict
@transaction.atomic
def session_transaction_event(
    *, station_id: int, event: TransactionEvent
) -> TransactionEventResult:
    """Apply one TransactionEvent.

    1. The (station, transactionId) session is found or created; an Updated/Ended for a
       transaction never seen starts a flagged orphan that a late Started later completes.
    2. The event is recorded once by seqNo: a retry changes nothing more. A gap in seqNo is
       flagged on the session.
    3. Samples are stored in one batch; live energy, power and SoC move forward.
    4. An idToken is authorized (and its decision returned for idTokenInfo).
    5. Ended closes the session with the charger's timestamp and reason, and announces it
       for rating. An Ended before its Started leaves the session incomplete (not rated); the
       late Started completes it, settles its energy and announces it then.
    """
    lookup = Q(transaction_id=event.transaction_id)
    if event.event_type == "Started" and event.evse_id:
        # One query: this transaction's session and any other still open on its EVSE.
        lookup |= Q(status=ChargingSession.Status.ACTIVE, evse_id=event.evse_id)
    here = list(
        ChargingSession.objects.select_for_update()
        .filter(station_id=station_id)
        .filter(lookup)
        .order_by()
    )
    session = next((s for s in here if s.transaction_id == event.transaction_id), None)
    for stale in here:
        if stale is not session:
            _close_estimated(stale, forgotten=FORGOTTEN_NEW_TRANSACTION, confirmed=True)
    if not _still_known(session) and session is not None and session.is_estimated:
        if event.event_type == "Ended":
            _estimate_superseded(session)
    created = False
    if session is None:
        session = ChargingSession(
            station_id=station_id,
            transaction_id=event.transaction_id,
            started_at=event.timestamp,
            evse_id=event.evse_id,
            connector_id=event.connector_id,
            is_orphan=event.event_type != "Started",
        )
        if session.is_orphan:
            _session_flag(session, f"{event.event_type} for a transaction never started")
        session.save()
        created = True
    try:
        with transaction.atomic():
            TransactionEventRecord.objects.create(
                session=session,
                station_id=station_id,
                transaction_id=event.transaction_id,
                seq_no=event.seq_no,
                event_type=event.event_type,
                trigger_reason=event.trigger_reason,
                timestamp=event.timestamp,
                charging_state=event.charging_state,
                offline=event.offline,
                payload=event.payload,
            )
    except IntegrityError:
        authorization = None
        if event.id_token:
            token = token_find(uid=event.id_token, token_type=event.id_token_type)
            authorization = AuthorizationResult(
                status=session.auth_status or AuthStatus.ACCEPTED,
                reason="retry",
                token_id=token.pk if token else None,
                group_uid=token.group.uid if token and token.group else "",
            )
        return TransactionEventResult(session.pk, True, authorization, session.live_cost)

    _session_flag_dropped(session, event.anomalies)
    # The usual case is the next seqNo: nothing to re-read. Out-of-order or first events
    # recompute from every recorded seqNo.
    in_sequence = session.last_seq_no is not None and event.seq_no == session.last_seq_no + 1
    if in_sequence:
        session.last_seq_no = event.seq_no
    else:
        seq_numbers = sorted(
            TransactionEventRecord.objects.filter(session=session).values_list("seq_no", flat=True)
        )
        session.seq_no_gap = any(
            b - a > 1 for a, b in zip(seq_numbers, seq_numbers[1:], strict=False)
        )
        session.last_seq_no = seq_numbers[-1]
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
    closed = session.status == ChargingSession.Status.COMPLETED
    if closed:
        pass  # a closed session keeps its last state: events after the stop never move it
    elif in_sequence or created:
        if event.charging_state:
            session.charging_state = event.charging_state
    else:
        latest_state = (
            TransactionEventRecord.objects.filter(session=session)
            .exclude(charging_state="")
            .order_by("-timestamp", "-seq_no")
            .values_list("charging_state", flat=True)
            .first()
        )
        if latest_state:
            session.charging_state = latest_state

    batch = SampleBatch(session.evse_id, session.connector_id, event.samples)
    _samples_store(session=session, station_id=station_id, batch=batch)
    begin = [
        s
        for s in event.samples
        if s.energy_wh() is not None and s.context in ("Transaction.Begin", "")
    ]
    if session.meter_start_wh is None and event.event_type == "Started":
        readings = [e for s in event.samples if (e := s.energy_wh()) is not None]
        if readings:
            session.meter_start_wh = min(readings)
    elif (
        session.meter_start_wh is None
        and begin
        and any(s.context == "Transaction.Begin" for s in begin)
    ):
        session.meter_start_wh = next(
            s.energy_wh() for s in begin if s.context == "Transaction.Begin"
        )
    _apply_live_values(session, event.samples)

    authorization = None
    if event.id_token:
        authorization = authorization_decide(
            uid=event.id_token,
            token_type=event.id_token_type,
            context=AuthorizationDecision.Context.TRANSACTION_EVENT,
            station_id=station_id,
            exclude_session_id=session.pk,
            lock=event.event_type == "Started",
        )
        if not session.id_tag or event.event_type == "Started":
            session.id_tag = event.id_token[:36]
            session.id_token_type = event.id_token_type[:20]
            session.id_token_id = authorization.token_id
            session.account_id = authorization.account_id
            session.auth_status = authorization.status
            session.authorization_reference = authorization.authorization_reference
            if not authorization.accepted:
                _hold_for_review(session, authorization.status)

    ended = False
    if event.event_type == "Ended" and not closed:
        end_readings = [
            s.energy_wh()
            for s in event.samples
            if s.energy_wh() is not None and s.context == "Transaction.End"
        ]
        # An Ended before its Started (offline queues, retries) leaves the session incomplete:
        # its start and meter start are not known yet, and an immutable CDR rated now would
        # be wrong for good. The late Started completes it (below).
        session.stop_received_at = timezone.now()
        _finish(
            session,
            ended_at=event.timestamp,
            meter_stop_wh=end_readings[-1] if end_readings else None,
            reason=event.stopped_reason or "Local",
            status=(
                ChargingSession.Status.INCOMPLETE
                if session.is_orphan
                else ChargingSession.Status.COMPLETED
            ),
        )
        ended = session.status == ChargingSession.Status.COMPLETED
    elif session.status == ChargingSession.Status.INCOMPLETE and not session.is_orphan:
        # The Started of an ended session has arrived: both ends are known now.
        session.status = ChargingSession.Status.COMPLETED
        _energy_settle(session)
        _charged_despite_refusal(session)
        _session_flag(session, "Ended arrived before Started: completed and rated once both")
        ended = True
    if created:
        # Priced once its payer is known: the first event's token was authorized above.
        session_price_fix(session)
    if event.samples and (
        session.status == ChargingSession.Status.ACTIVE or event.event_type == "Ended"
    ):
        # Up to the end too: a station that shows the cost shows the total at Ended.
        session_cost_advance(session, until=max(sample.timestamp for sample in event.samples))
    session.save()
    if event.event_type == "Started" or created:
        _announce(session_started, session)
    if ended:
        _announce(session_ended, session)
    return TransactionEventResult(session.pk, False, authorization, session.live_cost)


# --- Accounts, drivers and tokens --------------------------------------------------------------
#
# Every change that can alter what a station's local authorization list holds for a token
# (its existence, uid, status, validity, group, restrictions, owner's standing) announces
# `id_token_changed` after commit; the local-list sync computes the differences from the
# database then. A group token's change also concerns its members: their entries carry the
# group as parentIdTag / groupIdToken and inherit its status.

ACCOUNT_FIELDS = (
    "name",
    "reference",
    "kind",
    "legal_name",
    "address",
    "postal_code",
    "city",
    "country",
    "vat_id",
    "email",
    "currency",
    "billing_period",
    "time_zone",
    "country_code",
    "party_id",
    "is_active",
)
DRIVER_FIELDS = ("account", "name", "reference", "email", "phone", "is_active")
TOKEN_FIELDS = (
    "uid",
    "type",
    "visual_number",
    "driver",
    "account",
    "group",
    "valid_from",
    "valid_until",
    "blocked",
    "blocked_reason",
    "max_concurrent_sessions",
    "budget_energy_wh",
    "budget_cost",
    "budget_period",
    "issuer_country_code",
    "issuer_party_id",
    "contract_id",
    "in_local_list",
)
# Fields a station's local list entry depends on (the rest are billing and display details).
TOKEN_LOCAL_LIST_FIELDS = frozenset(
    {
        "uid",
        "type",
        "group",
        "valid_from",
        "valid_until",
        "blocked",
        "in_local_list",
        "account",
        "driver",
    }
)


def _tokens_changed(token_ids: list[int] | set[int]) -> None:
    """Announce, after commit, that these tokens' local list entries may differ now."""
    ids = set(token_ids)
    if not ids:
        return
    ids |= set(IdToken.objects.filter(group_id__in=ids).values_list("pk", flat=True))
    ordered = sorted(ids)
    transaction.on_commit(lambda: id_token_changed.send(sender=IdToken, token_ids=ordered))


def _assign(instance: Any, data: dict[str, Any], allowed: tuple[str, ...]) -> set[str]:
    """Set the given fields; returns the names of those whose value actually changed."""
    unknown = set(data) - set(allowed)
    if unknown:
        raise ValueError(f"not updatable: {', '.join(sorted(unknown))}")
    changed = set()
    for name, value in data.items():
        if getattr(instance, name) != value:
            setattr(instance, name, value)
            changed.add(name)
    return changed


@transaction.atomic
def account_create(*, name: str, **fields: Any) -> CustomerAccount:
    """Create a customer account (a person, a company / fleet, or a roaming partner)."""
    account = CustomerAccount(name=name)
    _assign(account, fields, ACCOUNT_FIELDS)
    account.full_clean()
    account.save()
    return account


@transaction.atomic
def account_update(*, account: CustomerAccount, data: dict[str, Any]) -> CustomerAccount:
    """Change an account; (de)activating it changes what its tokens may do."""
    changed = _assign(account, data, ACCOUNT_FIELDS)
    if not changed:
        return account
    account.full_clean()
    account.save()
    if "is_active" in changed:
        _tokens_changed(set(account.tokens.values_list("pk", flat=True)))
    return account


@transaction.atomic
def driver_create(*, account: CustomerAccount, name: str, **fields: Any) -> Driver:
    driver = Driver(account=account, name=name)
    _assign(driver, fields, DRIVER_FIELDS)
    driver.full_clean()
    driver.save()
    return driver


@transaction.atomic
def driver_update(*, driver: Driver, data: dict[str, Any]) -> Driver:
    """Change a driver. A driver moving to another account takes their tokens along: a token
    is always paid by its driver's account."""
    changed = _assign(driver, data, DRIVER_FIELDS)
    if not changed:
        return driver
    driver.full_clean()
    driver.save()
    token_ids = set(driver.tokens.values_list("pk", flat=True))
    if "account" in changed:
        IdToken.objects.filter(pk__in=token_ids).update(
            account=driver.account, updated_at=timezone.now()
        )
    if changed & {"account", "is_active"}:
        _tokens_changed(token_ids)
    return driver


def id_token_default_account(token: IdToken) -> None:
    """A token without an account is paid by its driver's account, else by its group's (the
    fleet card group)."""
    if token.account_id:
        return
    if token.driver:
        token.account_id = token.driver.account_id
    elif token.group:
        token.account_id = token.group.account_id


@transaction.atomic
def id_token_create(
    *,
    uid: str,
    type: str = IdToken.Type.ISO14443,
    allowed_locations: list[Location] | None = None,
    allowed_stations: list[ChargingStation] | None = None,
    **fields: Any,
) -> IdToken:
    """Create a token. The account defaults to the driver's, then the group's."""
    token = IdToken(uid=uid, type=type)
    _assign(token, fields, TOKEN_FIELDS)
    id_token_default_account(token)
    token.full_clean()
    token.save()
    if allowed_locations:
        token.allowed_locations.set(allowed_locations)
    if allowed_stations:
        token.allowed_stations.set(allowed_stations)
    _tokens_changed({token.pk})
    return token


@transaction.atomic
def id_token_update(*, token: IdToken, data: dict[str, Any]) -> IdToken:
    """Change a token's fields; blocking goes through id_token_block (it keeps a reason)."""
    changed = _assign(token, data, TOKEN_FIELDS)
    if "driver" in changed and "account" not in data:
        token.account = token.driver.account if token.driver else token.account
    if not changed:
        return token
    token.full_clean()
    token.save()
    if changed & TOKEN_LOCAL_LIST_FIELDS:
        _tokens_changed({token.pk})
    return token


@transaction.atomic
def id_token_set_restrictions(
    *,
    token: IdToken,
    locations: list[Location],
    stations: list[ChargingStation],
) -> bool:
    """Restrict a token to these sites and stations (both empty: anywhere). Returns whether
    anything changed: the stations whose local lists hold the token change with it."""
    before = (
        set(token.allowed_locations.values_list("pk", flat=True)),
        set(token.allowed_stations.values_list("pk", flat=True)),
    )
    after = ({loc.pk for loc in locations}, {st.pk for st in stations})
    if before == after:
        return False
    token.allowed_locations.set(locations)
    token.allowed_stations.set(stations)
    IdToken.objects.filter(pk=token.pk).update(updated_at=timezone.now())
    _tokens_changed({token.pk})
    return True


@transaction.atomic
def id_token_block(*, token: IdToken, reason: str = "") -> bool:
    """Block a token (a lost card, an unpaid account). Returns False when it already was."""
    updated = IdToken.objects.filter(pk=token.pk, blocked=False).update(
        blocked=True, blocked_reason=reason[:255], updated_at=timezone.now()
    )
    token.refresh_from_db(fields=["blocked", "blocked_reason", "updated_at"])
    if updated:
        _tokens_changed({token.pk})
    return bool(updated)


@transaction.atomic
def id_token_unblock(*, token: IdToken) -> bool:
    """Unblock a token. Returns False when it was not blocked."""
    updated = IdToken.objects.filter(pk=token.pk, blocked=True).update(
        blocked=False, blocked_reason="", updated_at=timezone.now()
    )
    token.refresh_from_db(fields=["blocked", "blocked_reason", "updated_at"])
    if updated:
        _tokens_changed({token.pk})
    return bool(updated)


@transaction.atomic
def id_token_delete(*, token: IdToken) -> None:
    """Delete a token. Its sessions and decisions keep the uid as presented; stations' local
    lists drop it (the announced id no longer exists)."""
    token_id = token.pk
    member_ids = set(token.members.values_list("pk", flat=True))
    token.delete()
    ordered = sorted({token_id} | member_ids)
    transaction.on_commit(lambda: id_token_changed.send(sender=IdToken, token_ids=ordered))


def id_tokens_imported(*, token_ids: list[int]) -> None:
    """Announce tokens written by a batch import (the import's own transaction commits them)."""
    _tokens_changed(set(token_ids))


@transaction.atomic
def id_token_change(*, token: IdToken, data: dict[str, Any]) -> IdToken:
    """Change a token's fields and, when given, its allowed sites and stations, in one
    transaction (the API's PATCH)."""
    data = dict(data)
    restrictions = {
        key: data.pop(key) for key in ("allowed_locations", "allowed_stations") if key in data
    }
    id_token_update(token=token, data=data)
    if restrictions:
        id_token_set_restrictions(
            token=token,
            locations=list(restrictions.get("allowed_locations", token.allowed_locations.all())),
            stations=list(restrictions.get("allowed_stations", token.allowed_stations.all())),
        )
    token.refresh_from_db()
    return token

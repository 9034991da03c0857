"""Charging profiles from allocations, through the durable command queue, in a safe order.

Rules (README "Energy management", dispatch):
1. A connector's allocation becomes a TxProfile on its EVSE: amperes per phase with the
   number of phases (2.0.1: and phaseToUse for a single-phase allocation), stack level 1.
2. Every schedule carries its own dead-man: a second period at `deadman_s` with the safe share
   (or, on a station that keeps one period, a `duration` after which its TxDefaultProfile, the
   safe share, applies). A station that loses the back office limits itself.
3. Decreases are queued at once; increases wait (`WAITING`) until no decrease of the site is
   unanswered, then go out (`profile_dispatch_answered`).
4. An increase below max(0.5 A, 5 %) is not sent (a decrease always is); increases to one
   station respect its minimum interval (decreases never wait).
5. The station's limits are respected: stack level capped at ChargeProfileMaxStackLevel, one
   period when ChargingScheduleMaxPeriods is 1, watts when it only takes watts.
6. A station that refuses profiles three times in a row is unmanaged (counted at its worst
   case by the allocator) and an incident is opened.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_DOWN, Decimal
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from stations.commands.models import Command
from stations.commands.services import command_create
from stations.commands.verbs import CommandError
from stations.energy.models import (
    AllocationRun,
    ConnectorEnergy,
    EnergySite,
    ProfileDispatch,
    StationEnergy,
)
from stations.models import ChargingStation

logger = logging.getLogger(__name__)

REJECTIONS_UNMANAGED = 3
HYSTERESIS_MIN_A = Decimal("0.5")
HYSTERESIS_FRACTION = Decimal("0.05")
# Profile ids: one TxProfile per connector (a newer one with the same id replaces it), one
# TxDefaultProfile and one station maximum per station.
DEFAULT_PROFILE_ID = 1
STATION_MAX_PROFILE_ID = 2
TX_PROFILE_BASE = 1000
# A profile command not delivered within this many seconds expires: the next run decides anew.
COMMAND_EXPIRY = timedelta(seconds=60)
OPEN = (ProfileDispatch.State.WAITING, ProfileDispatch.State.QUEUED)


@dataclass(frozen=True)
class Target:
    """What one connector should get: amperes per phase on `phases` phases (0 = paused)."""

    connector: ConnectorEnergy
    current_a: Decimal
    phases: int
    phase_to_use: int | None = None
    transaction_id: str = ""


def quantize(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.1"), rounding=ROUND_DOWN)


def worth_sending(old: Decimal | None, new: Decimal) -> bool:
    """Hysteresis: an increase smaller than max(0.5 A, 5 %) is not sent; pausing or resuming
    always is, and so is every decrease: the allocator gave what it took off to others, and a
    decrease left unsent would let their increases overshoot the node."""
    if old is None or new < old:
        return True
    if (old == 0) != (new == 0):
        return True
    return abs(new - old) >= max(HYSTERESIS_MIN_A, old * HYSTERESIS_FRACTION)


def station_energy(station: ChargingStation) -> StationEnergy:
    row, _ = StationEnergy.objects.get_or_create(station=station)
    return row


def _rate(
    limits: StationEnergy, current_a: Decimal, phases: int, voltage: int
) -> tuple[str, float]:
    if limits.rate_unit == StationEnergy.RateUnit.WATTS:
        return "W", float(quantize(current_a * voltage * phases))
    return "A", float(current_a)


def schedule(
    *,
    limits: StationEnergy,
    current_a: Decimal,
    phases: int,
    safe_a: Decimal,
    deadman_s: int,
    start: datetime,
    voltage: int = 230,
    phase_to_use: int | None = None,
) -> dict[str, Any]:
    """The neutral chargingSchedule of one allocation, with its dead-man fall to the safe share."""
    unit, limit = _rate(limits, current_a, phases, voltage)
    first: dict[str, Any] = {"start": 0, "limit": limit, "phases": phases}
    if phase_to_use is not None and phases == 1:
        first["phase_to_use"] = phase_to_use
    if limits.max_periods >= 2:
        _, safe = _rate(limits, min(safe_a, current_a) if current_a else safe_a, phases, voltage)
        return {
            "rate_unit": unit,
            "start": start,
            "periods": [first, {"start": deadman_s, "limit": safe, "phases": phases}],
        }
    # One period only: the profile ends at the dead-man time and the TxDefaultProfile (the
    # safe share) applies.
    return {"rate_unit": unit, "start": start, "duration": deadman_s, "periods": [first]}


def tx_profile(
    *, target: Target, limits: StationEnergy, safe_a: Decimal, deadman_s: int, now: datetime
) -> dict[str, Any]:
    connector = target.connector
    profile: dict[str, Any] = {
        "id": TX_PROFILE_BASE + connector.pk,
        "stack_level": min(1, limits.max_stack_level),
        "purpose": "TxProfile",
        "kind": "Absolute",
        "schedule": schedule(
            limits=limits,
            current_a=target.current_a,
            phases=target.phases,
            safe_a=safe_a,
            deadman_s=deadman_s,
            start=now,
            voltage=connector.node.voltage_v,
            phase_to_use=target.phase_to_use,
        ),
    }
    if target.transaction_id:
        profile["transaction_id"] = target.transaction_id
    return profile


def default_profile(
    *, limits: StationEnergy, safe_a: Decimal, deadman_s: int, now: datetime, phases: int = 3
) -> dict[str, Any]:
    """The station-wide TxDefaultProfile: 0 A for twice the dead-man period (a new session
    waits for its own allocation, which comes within seconds), then the safe share. Refreshed
    every half dead-man period, it outlives every TxProfile's dead-man: with the back office
    gone, every connector ends at its safe share, new vehicles included."""
    unit, limit = _rate(limits, safe_a, phases, 230)
    periods: list[dict[str, Any]] = [{"start": 0, "limit": 0.0}]
    if limits.max_periods >= 2:
        periods.append({"start": 2 * deadman_s, "limit": limit})
        sched: dict[str, Any] = {"rate_unit": unit, "start": now, "periods": periods}
    else:
        # One period only: the safe share itself (a new session may start at it).
        sched = {"rate_unit": unit, "periods": [{"start": 0, "limit": limit}]}
    return {
        "id": DEFAULT_PROFILE_ID,
        "stack_level": 0,
        "purpose": "TxDefaultProfile",
        "kind": "Absolute",
        "schedule": sched,
    }


def station_max_profile(*, limits: StationEnergy) -> dict[str, Any]:
    assert limits.station_max_a is not None
    unit, limit = _rate(limits, limits.station_max_a, 3, 230)
    return {
        "id": STATION_MAX_PROFILE_ID,
        "stack_level": 0,
        "purpose": "ChargingStationMaxProfile",
        "kind": "Absolute",
        "schedule": {"rate_unit": unit, "periods": [{"start": 0, "limit": limit}]},
    }


def _queue(dispatch: ProfileDispatch) -> None:
    """Create the command of a dispatch row (inside the caller's transaction)."""
    station = dispatch.station
    try:
        command = command_create(
            station=station,
            verb="set_charging_profile",
            params=dispatch.params,
            origin=Command.Origin.SYSTEM,
            expires_in=COMMAND_EXPIRY,
        )
    except CommandError as error:
        # Not encodable for this station (its protocol): a refusal, counted like one.
        logger.warning("energy profile for %s not encodable: %s", station.pk, error.message)
        dispatch.state = ProfileDispatch.State.REFUSED
        dispatch.answered_at = timezone.now()
        dispatch.save(update_fields=["state", "answered_at"])
        return
    dispatch.command = command
    dispatch.state = ProfileDispatch.State.QUEUED
    dispatch.save(update_fields=["command", "state"])


def decreases_open(site_id: int) -> bool:
    return ProfileDispatch.objects.filter(
        site_id=site_id,
        kind=ProfileDispatch.Kind.DECREASE,
        state=ProfileDispatch.State.QUEUED,
    ).exists()


def release_increases(*, site_id: int, now: datetime | None = None) -> int:
    """Queue the waiting increases of a site once none of its decreases is unanswered."""
    if decreases_open(site_id):
        return 0
    waiting = list(
        ProfileDispatch.objects.filter(site_id=site_id, state=ProfileDispatch.State.WAITING)
        .select_related("station")
        .order_by("id")
    )
    now = now or timezone.now()
    for dispatch in waiting:
        _queue(dispatch)
    stations = {d.station_id for d in waiting if d.kind == ProfileDispatch.Kind.INCREASE}
    if stations:
        StationEnergy.objects.filter(station_id__in=stations).update(last_increase_at=now)
    return len(waiting)


def profiles_dispatch(
    *,
    run: AllocationRun,
    site: EnergySite,
    targets: list[Target],
    safe_shares: dict[int, Decimal],
    online: set[int],
    now: datetime,
) -> tuple[int, float | None]:
    """Turn a run's targets into dispatch rows and commands (rules 1-5 above).

    Returns (profiles to send, seconds until a deferred increase may go, or None)."""
    # What earlier runs still meant to send is replaced by this run's view.
    ProfileDispatch.objects.filter(site=site, state=ProfileDispatch.State.WAITING).update(
        state=ProfileDispatch.State.SUPERSEDED
    )
    ProfileDispatch.objects.filter(site=site, state=ProfileDispatch.State.QUEUED).exclude(
        station_id__in=online
    ).update(state=ProfileDispatch.State.SUPERSEDED)
    in_flight: dict[int, Decimal] = {}
    for row in ProfileDispatch.objects.filter(
        site=site, state=ProfileDispatch.State.QUEUED, connector__isnull=False
    ).values("connector_id", "limit_a"):
        in_flight[row["connector_id"]] = max(
            row["limit_a"], in_flight.get(row["connector_id"], Decimal(0))
        )
    limits_of: dict[int, StationEnergy] = {
        row.station_id: row
        for row in StationEnergy.objects.filter(
            station_id__in={t.connector.connector.station_id for t in targets}
        )
    }
    deferred: float | None = None
    rows: list[ProfileDispatch] = []
    for target in targets:
        connector = target.connector
        station = connector.connector.station
        if station.pk not in online:
            continue  # counted at its last allocation until its dead-man time
        limits = limits_of.get(station.pk) or station_energy(station)
        limits_of[station.pk] = limits
        if limits.unmanaged:
            continue
        new = quantize(target.current_a)
        baseline = connector.limit_a
        if connector.pk in in_flight:
            baseline = max(baseline or Decimal(0), in_flight[connector.pk])
        due_refresh = (
            connector.limit_until is not None
            and connector.limit_until - now <= timedelta(seconds=site.deadman_s / 2)
        )
        if not worth_sending(baseline, new) and connector.limit_phases in (None, target.phases):
            if not due_refresh:
                continue
            kind = ProfileDispatch.Kind.REFRESH
        elif baseline is not None and new < baseline:
            kind = ProfileDispatch.Kind.DECREASE
        else:
            kind = ProfileDispatch.Kind.INCREASE
        if kind == ProfileDispatch.Kind.INCREASE and limits.last_increase_at is not None:
            wait = (
                limits.last_increase_at + timedelta(seconds=site.min_interval_s) - now
            ).total_seconds()
            if wait > 0:
                deferred = wait if deferred is None else min(deferred, wait)
                continue
        safe = safe_shares.get(connector.pk, Decimal(0))
        profile = tx_profile(
            target=Target(
                connector, new, target.phases, target.phase_to_use, target.transaction_id
            ),
            limits=limits,
            safe_a=safe,
            deadman_s=site.deadman_s,
            now=now,
        )
        rows.append(
            ProfileDispatch(
                run=run,
                site=site,
                station=station,
                connector=connector,
                kind=kind,
                state=ProfileDispatch.State.WAITING,
                limit_a=new,
                phases=target.phases,
                params={
                    "evse_id": connector.connector.evse.evse_id,
                    "charging_profile": _jsonable(profile),
                },
            )
        )
    ProfileDispatch.objects.bulk_create(rows)
    saved = list(
        ProfileDispatch.objects.filter(run=run, state=ProfileDispatch.State.WAITING)
        .select_related("station")
        .order_by("id")
    )
    for dispatch in saved:
        if dispatch.kind in (ProfileDispatch.Kind.DECREASE, ProfileDispatch.Kind.REFRESH):
            _queue(dispatch)
    release_increases(site_id=site.pk, now=now)
    return len(saved), deferred


def safe_share_dispatch(
    *,
    run: AllocationRun,
    site: EnergySite,
    station: ChargingStation,
    safe_a: Decimal,
    now: datetime,
) -> bool:
    """Send the station's TxDefaultProfile (and its station maximum where configured) when
    the safe share changed, was never accepted, or is due for its refresh."""
    limits = station_energy(station)
    if limits.unmanaged:
        return False
    due = limits.default_until is None or limits.default_until - now <= timedelta(
        seconds=1.5 * site.deadman_s
    )
    if (
        limits.safe_share_a is not None
        and not due
        and not worth_sending(limits.safe_share_a, safe_a)
    ):
        return False
    if ProfileDispatch.objects.filter(
        station=station, kind=ProfileDispatch.Kind.DEFAULT, state__in=OPEN
    ).exists():
        return False
    queued = []
    for kind, profile in (
        (
            ProfileDispatch.Kind.DEFAULT,
            default_profile(limits=limits, safe_a=safe_a, deadman_s=site.deadman_s, now=now),
        ),
        *(
            [(ProfileDispatch.Kind.STATION_MAX, station_max_profile(limits=limits))]
            if limits.station_max_a is not None
            else []
        ),
    ):
        dispatch = ProfileDispatch.objects.create(
            run=run,
            site=site,
            station=station,
            kind=kind,
            state=ProfileDispatch.State.WAITING,
            limit_a=safe_a
            if kind == ProfileDispatch.Kind.DEFAULT
            else (limits.station_max_a or Decimal(0)),
            params={"evse_id": 0, "charging_profile": _jsonable(profile)},
        )
        queued.append(dispatch)
        _queue(dispatch)
    return bool(queued)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


@transaction.atomic
def profile_dispatch_answered(
    *, command_id: int, status: str, result: str, error_code: str = ""
) -> bool:
    """A profile command became final: record it, count refusals, release waiting increases.

    Runs inside the transaction that stores the station's answer. Returns True when the site
    needs a new allocation run (a refusal changes what the allocator may count on)."""
    dispatch = (
        ProfileDispatch.objects.filter(command_id=command_id).select_related("connector").first()
    )
    if dispatch is None:
        return False
    # One site at a time: two answers committing together must not both see the other's
    # decrease as still open (the increases would then wait for the next pass).
    EnergySite.objects.select_for_update().filter(pk=dispatch.site_id).first()
    now = timezone.now()
    accepted = status == Command.Status.ACCEPTED
    # Not delivered (expired, or the connection closed first): no refusal by the station.
    expired = status == Command.Status.EXPIRED or error_code == "ConnectionLost"
    if dispatch.state == ProfileDispatch.State.QUEUED:
        dispatch.state = (
            ProfileDispatch.State.ACCEPTED if accepted else ProfileDispatch.State.REFUSED
        )
    dispatch.answered_at = now
    dispatch.save(update_fields=["state", "answered_at"])
    reallocate = False
    limits = (
        StationEnergy.objects.select_for_update().filter(station_id=dispatch.station_id).first()
    )
    if accepted:
        if dispatch.connector_id is not None:
            site = EnergySite.objects.get(pk=dispatch.site_id)
            ConnectorEnergy.objects.filter(pk=dispatch.connector_id).update(
                limit_a=dispatch.limit_a,
                limit_phases=dispatch.phases,
                limit_sent_at=dispatch.created_at,
                limit_until=dispatch.created_at + timedelta(seconds=site.deadman_s),
                profile_id=TX_PROFILE_BASE + dispatch.connector_id,
            )
        elif dispatch.kind == ProfileDispatch.Kind.DEFAULT and limits is not None:
            site = EnergySite.objects.get(pk=dispatch.site_id)
            limits.safe_share_a = dispatch.limit_a
            limits.safe_share_sent_at = dispatch.created_at
            limits.default_until = dispatch.created_at + timedelta(seconds=2 * site.deadman_s)
            limits.save(update_fields=["safe_share_a", "safe_share_sent_at", "default_until"])
        if limits is not None and limits.rejections:
            limits.rejections = 0
            limits.save(update_fields=["rejections"])
    elif not expired and limits is not None:
        # Refused, a CALLERROR or no answer on a live socket: the station did not obey.
        limits.rejections += 1
        fields = ["rejections"]
        if limits.rejections >= REJECTIONS_UNMANAGED and not limits.unmanaged:
            limits.unmanaged = True
            limits.unmanaged_since = now
            fields += ["unmanaged", "unmanaged_since"]
            _incident_open(limits, result)
        limits.save(update_fields=fields)
        reallocate = True
    else:
        reallocate = True
    released = release_increases(site_id=dispatch.site_id, now=now)
    return reallocate or (released == 0 and not accepted)


def _incident_open(limits: StationEnergy, result: str) -> None:
    from stations.monitoring.models import Incident, IncidentType
    from stations.monitoring.services import incident_open_or_touch

    station = limits.station
    incident_open_or_touch(
        type=IncidentType.ENERGY_UNMANAGED,
        fingerprint=f"{IncidentType.ENERGY_UNMANAGED}:{station.pk}",
        station_id=station.pk,
        severity=Incident.Severity.ERROR,
        title=f"{station.identity} refuses charging profiles: no longer load-managed",
        details={"rejections": limits.rejections, "last_answer": result},
    )


def open_dispatches(site_id: int) -> Q:
    return Q(site_id=site_id, state__in=OPEN)

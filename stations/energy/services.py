"""Writes of energy management: the grid tree, external limits, and the allocation run.

An allocation run of a site (`site_allocate`):
1. Lock the site row: one run per site at a time, across every worker.
2. Read the tree, the external limits (a stale push falls to its fail-safe value), the
   unmanaged loads (a stale measurement falls to the static value), the active sessions with
   their priority tier and measured current, and each station's state (offline: counted at its
   last allocation until its dead-man time, then at its safe share; refusing profiles: at its
   worst case).
3. Call the pure allocator (`stations.energy.allocator.allocate`).
4. Store the run, each session's allocation and "why", each node's load, and hand the targets
   to `dispatch.profiles_dispatch` (decreases first, hysteresis, dead-man schedule).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from sessions.models import ChargingSession, MeterSample
from stations.energy import allocator as alloc
from stations.energy import dispatch, feedback, signals
from stations.energy.models import (
    PHASES,
    AllocationRun,
    ConnectorEnergy,
    EnergySite,
    ExternalLimit,
    GridNode,
    NodeLoad,
    PriorityRule,
    SessionAllocation,
    StationEnergy,
)
from stations.models import ChargingStation, Connector, Location

logger = logging.getLogger(__name__)

# Measured currents older than this are not used.
MEASURED_FRESH = timedelta(minutes=3)


class EnergyError(Exception):
    """A change energy management refuses; `message` is safe to show."""

    def __init__(self, message: str, *, field: str = ""):
        super().__init__(message)
        self.message = message
        self.field = field


def _announce(site_id: int, reason: str) -> None:
    signals.energy_changed.send(sender=EnergySite, site_id=site_id, reason=reason)


# --- topology ----------------------------------------------------------------------------------


@transaction.atomic
def energy_site_enable(*, location: Location, **fields: Any) -> EnergySite:
    site, _ = EnergySite.objects.get_or_create(location=location)
    for name, value in fields.items():
        setattr(site, name, value)
    site.enabled = fields.get("enabled", True)
    site.updated_at = timezone.now()
    site.full_clean()
    site.save()
    _announce(site.pk, "site")
    return site


def _check_minimums(node: GridNode) -> None:
    """A limit below what must keep running is refused: the unmanaged loads and the stations
    that refuse profiles (at their worst case) of the node and below it."""
    voltage = node.voltage_v
    phases = node.phase_list()
    below = _subtree_ids(node)
    fixed_kw = sum(
        (_unmanaged_kw(n, timezone.now()) for n in GridNode.objects.filter(pk__in=below)),
        Decimal(0),
    )
    fixed_a = fixed_kw * 1000 / (voltage * max(len(phases), 1))
    worst = Decimal(0)
    for ce in ConnectorEnergy.objects.filter(
        node_id__in=below, connector__station__energy__unmanaged=True
    ):
        worst += ce.max_current_a
    margin = 1 - node.safety_margin_pct / 100
    for phase, value in node.limits_a().items():
        if value is None or phase not in phases:
            continue
        if value * margin < fixed_a + worst:
            raise EnergyError(
                f"{phase} limit {value} A is below what must keep running on {node.name}: "
                f"{(fixed_a + worst).quantize(Decimal('0.1'))} A of unmanaged loads and "
                "stations that refuse profiles",
                field=f"limit_{phase.lower()}_a",
            )
    if node.limit_kw is not None:
        worst_kw = worst * voltage * len(phases) / 1000
        if node.limit_kw * margin < fixed_kw + worst_kw:
            raise EnergyError(
                f"power limit {node.limit_kw} kW is below the unmanaged loads of {node.name} "
                f"({(fixed_kw + worst_kw).quantize(Decimal('0.1'))} kW)",
                field="limit_kw",
            )


def _subtree_ids(node: GridNode) -> list[int]:
    ids = [node.pk] if node.pk else []
    frontier = list(ids)
    while frontier:
        children = list(
            GridNode.objects.filter(parent_id__in=frontier).values_list("pk", flat=True)
        )
        children = [c for c in children if c not in ids]
        ids += children
        frontier = children
    return ids


@transaction.atomic
def grid_node_save(*, node: GridNode) -> GridNode:
    """Create or change a node: no cycle, a parent of the same site, limits that can hold."""
    try:
        node.full_clean()
    except ValidationError as error:
        field, messages = next(iter(error.message_dict.items()))
        raise EnergyError(f"{field}: {' '.join(messages)}", field=field) from error
    _check_minimums(node)
    node.save()
    EnergySite.objects.filter(pk=node.site_id).update(updated_at=timezone.now())
    _announce(node.site_id, "node")
    return node


@transaction.atomic
def grid_node_delete(*, node: GridNode) -> None:
    if node.children.exists() or node.connectors.exists():
        raise EnergyError("move or delete its children and connectors first")
    site_id = node.site_id
    node.delete()
    _announce(site_id, "node")


@transaction.atomic
def connector_energy_set(
    *,
    connector: Connector,
    node: GridNode,
    rotation: str = ConnectorEnergy.Rotation.UNKNOWN,
    phases: int | None = None,
    max_current_a: Decimal | None = None,
    min_current_a: Decimal | None = None,
) -> ConnectorEnergy:
    """Hang a connector on a node (a connector without phase data counts on every phase)."""
    location_id = connector.station.location_id
    if location_id != node.site.location_id:
        raise EnergyError("the connector's station is not at this site", field="node")
    row = ConnectorEnergy.objects.filter(connector=connector).first() or ConnectorEnergy(
        connector=connector
    )
    row.node = node
    row.rotation = rotation
    row.phases = phases
    if max_current_a is not None:
        row.max_current_a = max_current_a
    row.min_current_a = min_current_a
    try:
        row.full_clean()
    except ValidationError as error:
        field, messages = next(iter(error.message_dict.items()))
        raise EnergyError(f"{field}: {' '.join(messages)}", field=field) from error
    row.save()
    StationEnergy.objects.get_or_create(station=connector.station)
    _announce(node.site_id, "connector")
    return row


@transaction.atomic
def station_energy_manage(*, station: ChargingStation) -> StationEnergy:
    """Take a station that refused profiles back into management (an operator's decision)."""
    row, _ = StationEnergy.objects.select_for_update().get_or_create(station=station)
    row.unmanaged = False
    row.unmanaged_since = None
    row.rejections = 0
    row.safe_share_a = None  # sent again on the next run
    row.save(update_fields=["unmanaged", "unmanaged_since", "rejections", "safe_share_a"])
    site_id = (
        EnergySite.objects.filter(location_id=station.location_id or 0)
        .values_list("pk", flat=True)
        .first()
    )
    if site_id:
        _announce(site_id, "station")
    return row


@transaction.atomic
def external_limit_push(
    *,
    node: GridNode,
    source: str = ExternalLimit.Source.API,
    limit_a: Decimal | None = None,
    limit_kw: Decimal | None = None,
    fresh_for_s: int | None = None,
    name: str = "",
    station: ChargingStation | None = None,
    now: datetime | None = None,
) -> ExternalLimit:
    """A building meter, the grid operator or a station caps a node until its push goes stale."""
    if limit_a is None and limit_kw is None:
        raise EnergyError("give limit_a or limit_kw", field="limit_a")
    if (limit_a is not None and limit_a < 0) or (limit_kw is not None and limit_kw < 0):
        raise EnergyError("a limit cannot be negative", field="limit_a")
    now = now or timezone.now()
    row = (
        ExternalLimit.objects.select_for_update()
        .filter(node=node, source=source, name=name, station=station)
        .first()
    ) or ExternalLimit(node=node, source=source, name=name, station=station)
    row.limit_a = limit_a
    row.limit_kw = limit_kw
    row.received_at = now
    if fresh_for_s is not None:
        if fresh_for_s <= 0:
            raise EnergyError("fresh_for_s must be positive", field="fresh_for_s")
        row.fresh_for_s = fresh_for_s
    row.save()
    _announce(node.site_id, "limit")
    return row


@transaction.atomic
def unmanaged_load_measure(*, node: GridNode, kw: Decimal, at: datetime | None = None) -> GridNode:
    if kw < 0:
        raise EnergyError("a load cannot be negative", field="kw")
    node.unmanaged_measured_kw = kw
    node.unmanaged_measured_at = at or timezone.now()
    node.save(update_fields=["unmanaged_measured_kw", "unmanaged_measured_at"])
    _announce(node.site_id, "load")
    return node


# --- the allocation run ------------------------------------------------------------------------


def _unmanaged_kw(node: GridNode, now: datetime) -> Decimal:
    if (
        node.unmanaged_measured_kw is not None
        and node.unmanaged_measured_at is not None
        and now - node.unmanaged_measured_at <= timedelta(seconds=node.unmanaged_timeout_s)
    ):
        return node.unmanaged_measured_kw
    return node.unmanaged_kw


def _window_applies(window: dict[str, Any], local: datetime) -> bool:
    start, end = str(window.get("from", "00:00")), str(window.get("to", "24:00"))
    at = local.strftime("%H:%M")
    return start <= at < end if start <= end else at >= start or at < end


def external_caps(
    limits: list[ExternalLimit], now: datetime, tz: Any
) -> tuple[Decimal | None, Decimal | None, list[str]]:
    """The lowest per-phase A and kW cap of a node's external limits now, and notes of stale
    ones (which count at their fail-safe value)."""
    amps: list[Decimal] = []
    kws: list[Decimal] = []
    notes: list[str] = []
    for limit in limits:
        if limit.source == ExternalLimit.Source.SCHEDULE:
            local = now.astimezone(tz)
            for window in limit.windows or []:
                if _window_applies(window, local):
                    if window.get("limit_a") is not None:
                        amps.append(Decimal(str(window["limit_a"])))
                    if window.get("limit_kw") is not None:
                        kws.append(Decimal(str(window["limit_kw"])))
            continue
        stale = limit.received_at is None or now - limit.received_at > timedelta(
            seconds=limit.fresh_for_s
        )
        if stale:
            notes.append(f"{limit}: stale, fail-safe applies")
            amps.append(limit.failsafe_a if limit.failsafe_a is not None else Decimal(0))
            if limit.failsafe_kw is not None:
                kws.append(limit.failsafe_kw)
            continue
        if limit.limit_a is not None:
            amps.append(limit.limit_a)
        if limit.limit_kw is not None:
            kws.append(limit.limit_kw)
    return (min(amps) if amps else None), (min(kws) if kws else None), notes


def _da(value: Decimal | None) -> int | None:
    return None if value is None else alloc.to_deci_amps(value)


@dataclass
class SiteInputs:
    problem: Any
    connectors: dict[int, ConnectorEnergy]
    sessions: dict[int, ChargingSession]
    nodes: dict[int, GridNode]
    online: set[int]
    safe_shares: dict[int, Decimal]
    station_safe: dict[int, Decimal]
    notes: list[str]
    feedback: dict[int, tuple[feedback.FeedbackState, datetime | None]]


def _path(nodes: dict[int, GridNode], node_id: int) -> list[int]:
    """The node and its ancestors up to the connection; a cycle is a TopologyError."""
    path: list[int] = []
    current: int | None = node_id
    while current is not None:
        if current in path:
            raise alloc.TopologyError(f"node {node_id}: its parents form a cycle")
        path.append(current)
        current = nodes[current].parent_id
    return path


def site_inputs(*, site: EnergySite, now: datetime) -> SiteInputs:
    from zoneinfo import ZoneInfo

    tz = ZoneInfo(site.location.time_zone or "UTC")
    nodes = {n.pk: n for n in GridNode.objects.filter(site=site)}
    externals: dict[int, list[ExternalLimit]] = {}
    for limit in ExternalLimit.objects.filter(node__site=site):
        externals.setdefault(limit.node_id, []).append(limit)
    notes: list[str] = []
    alloc_nodes = []
    for node in nodes.values():
        ext_a, ext_kw, stale = external_caps(externals.get(node.pk, []), now, tz)
        notes += stale
        phase_limits: list[int | None] = []
        for phase in PHASES:
            value = node.limits_a()[phase]
            if ext_a is not None:
                value = ext_a if value is None else min(value, ext_a)
            phase_limits.append(_da(value))
        power_kw = node.limit_kw
        if ext_kw is not None:
            power_kw = ext_kw if power_kw is None else min(power_kw, ext_kw)
        node_phases = frozenset(i + 1 for i, p in enumerate(PHASES) if p in node.phase_list())
        unmanaged_a = _unmanaged_kw(node, now) * 1000 / (node.voltage_v * len(node_phases))
        unmanaged = tuple(
            alloc.to_deci_amps(unmanaged_a) if i + 1 in node_phases else 0 for i in range(3)
        )
        alloc_nodes.append(
            alloc.Node(
                id=node.pk,
                parent_id=node.parent_id,
                phase_limits_da=tuple(phase_limits),  # type: ignore[arg-type]
                power_limit_w=None if power_kw is None else int(power_kw * 1000),
                nominal_voltage_v=node.voltage_v,
                safety_margin_pct=node.safety_margin_pct,
                phases=node_phases,
                unmanaged_da=unmanaged,  # type: ignore[arg-type]
            )
        )
    connectors = {
        ce.pk: ce
        for ce in ConnectorEnergy.objects.filter(node__site=site).select_related(
            "connector__station__energy", "connector__evse", "node"
        )
    }
    by_address = {
        (ce.connector.station_id, ce.connector.evse.evse_id, ce.connector.connector_id): ce
        for ce in connectors.values()
    }
    by_evse = {
        (ce.connector.station_id, ce.connector.evse.evse_id): ce for ce in connectors.values()
    }
    station_ids = {ce.connector.station_id for ce in connectors.values()}
    online = set(
        ChargingStation.objects.filter(pk__in=station_ids, is_online=True).values_list(
            "pk", flat=True
        )
    )
    minimum = site.default_min_current_a
    for each in connectors.values():
        _path(nodes, each.node_id)  # a cycle written around the services: TopologyError
    # The safe share: each connector's current with every connector drawing at once
    # (unmanaged loads and margins counted); under the vehicle minimum it is 0.
    shares = alloc.safe_shares(
        alloc_nodes,
        [
            alloc.Connector(id=ce.pk, node_id=ce.node_id, rotation=ce.rotation)
            for ce in connectors.values()
        ],
        max_da=max(
            (alloc.to_deci_amps(ce.max_current_a) for ce in connectors.values()), default=320
        ),
    )
    safe: dict[int, Decimal] = {}
    for each in connectors.values():
        share = min(alloc.to_amps(shares.get(each.pk, 0)), each.max_current_a)
        safe[each.pk] = dispatch.quantize(share) if share >= minimum else Decimal(0)
    station_safe: dict[int, Decimal] = {}
    for each in connectors.values():
        sid = each.connector.station_id
        station_safe[sid] = min(station_safe.get(sid, safe[each.pk]), safe[each.pk])
    sessions = {
        s.pk: s
        for s in ChargingSession.objects.filter(
            station_id__in=station_ids, status=ChargingSession.Status.ACTIVE
        ).select_related("id_token")
    }
    tiers = _tiers(site, list(sessions.values()))
    measured = _measured(list(sessions))
    rows = {
        r.session_id: r for r in SessionAllocation.objects.filter(session_id__in=list(sessions))
    }
    previous: dict[alloc.Id, alloc.SessionState] = {
        sid: alloc.SessionState(running=not row.paused, since=row.state_since)
        for sid, row in rows.items()
    }
    states: dict[int, tuple[feedback.FeedbackState, datetime | None]] = {}
    alloc_sessions = []
    used: set[int] = set()
    for session in sessions.values():
        ce = by_address.get(
            (session.station_id, session.evse_id, session.connector_id)
        ) or by_evse.get((session.station_id, session.evse_id))
        if ce is None or ce.pk in used:
            continue
        used.add(ce.pk)
        limits = getattr(ce.connector.station, "energy", None)
        fixed: int | None = None
        if limits is not None and limits.unmanaged:
            fixed = alloc.to_deci_amps(ce.max_current_a)  # refuses profiles: worst case
        elif ce.connector.station_id not in online:
            if ce.limit_a is not None and ce.limit_until is not None and now < ce.limit_until:
                fixed = alloc.to_deci_amps(ce.limit_a)  # its last allocation still holds
            elif limits is not None and limits.safe_share_a is not None:
                # Its own dead-man fell to the safe share (or the default's, later).
                fixed = alloc.to_deci_amps(limits.safe_share_a)
            else:
                fixed = alloc.to_deci_amps(ce.max_current_a)
        min_da = alloc.to_deci_amps(ce.min_current_a or minimum)
        max_da = alloc.to_deci_amps(ce.max_current_a)
        # Feedback: each new reading moves the session's cap and the phases seen in use.
        row = rows.get(session.pk)
        state = feedback.FeedbackState()
        seen_at = None
        if row is not None:
            state = feedback.FeedbackState(
                cap_da=_da(row.cap_a), low_samples=row.low_samples, phases=row.detected_phases
            )
            seen_at = row.sample_at
        reading = measured.get(session.pk)
        if reading is not None and (seen_at is None or reading.at > seen_at):
            state = feedback.observe(
                state,
                feedback.MeterSample(current_da=reading.current_da, power_w=reading.power_w),
                allocated_da=alloc.to_deci_amps(row.current_a) if row is not None else 0,
                vehicle_max_da=max_da,
            )
            seen_at = reading.at
        states[session.pk] = (state, seen_at)
        alloc_sessions.append(
            alloc.Session(
                id=session.pk,
                connector_id=ce.pk,
                arrival=session.started_at,
                tier=tiers.get(session.pk, 0),
                min_da=min_da,
                max_da=feedback.capped_max_da(state, min_da=min_da, max_da=max_da),
                # The connector's own phases, else those seen in use (unknown: three).
                phases=ce.phases if ce.phases is not None else state.phases,
                fixed_da=fixed,
                measured_da=reading.current_da if reading is not None else None,
            )
        )
    # Idle connectors of an offline station: a vehicle may arrive there unseen. It starts at
    # 0 A until the station's TxDefaultProfile falls to the safe share; from then on the
    # connector is counted at it.
    for ce in connectors.values():
        station = ce.connector.station
        limits = getattr(station, "energy", None)
        if ce.pk in used or limits is None:
            continue
        if limits.unmanaged:  # it refuses profiles: a vehicle there draws its maximum
            fixed_idle = alloc.to_deci_amps(ce.max_current_a)
        elif station.pk in online:
            continue
        elif limits.default_until is not None and now < limits.default_until:
            continue
        else:
            fixed_idle = alloc.to_deci_amps(safe[ce.pk] or ce.max_current_a)
        alloc_sessions.append(
            alloc.Session(
                id=f"idle-{ce.pk}",
                connector_id=ce.pk,
                arrival=now,
                min_da=0,
                max_da=fixed_idle,
                phases=ce.phases,
                fixed_da=fixed_idle,
            )
        )
    problem = alloc.Problem(
        nodes=alloc_nodes,
        connectors=[
            alloc.Connector(id=ce.pk, node_id=ce.node_id, rotation=ce.rotation)
            for ce in connectors.values()
        ],
        sessions=alloc_sessions,
        now=now,
        strategy=alloc.Strategy(site.strategy),
        fairness_window=timedelta(seconds=max(site.fairness_window_s, 1)),
        previous=previous,
    )
    return SiteInputs(
        problem, connectors, sessions, nodes, online, safe, station_safe, notes, states
    )


def _tiers(site: EnergySite, sessions: list[ChargingSession]) -> dict[int, int]:
    rules = list(
        PriorityRule.objects.filter(site__in=[site, None])
        | PriorityRule.objects.filter(site__isnull=True)
    )
    if not rules:
        return {}
    tiers: dict[int, int] = {}
    for session in sessions:
        token = session.id_token
        for rule in rules:
            hit = (
                rule.id_token_id is not None
                and token is not None
                and rule.id_token_id in (token.pk, token.group_id)
            ) or (rule.account_id is not None and rule.account_id == session.account_id)
            if hit:
                tiers[session.pk] = max(tiers.get(session.pk, rule.tier), rule.tier)
    return tiers


@dataclass(frozen=True)
class Measured:
    at: datetime
    current_da: tuple[int, int, int]
    power_w: int | None


def _measured(session_ids: list[int]) -> dict[int, Measured]:
    """The latest meter reading of each session: current per phase (Current.Import) and
    active power, from the last sample time of each."""
    if not session_ids:
        return {}
    since = timezone.now() - MEASURED_FRESH
    rows = MeterSample.objects.filter(
        session_id__in=session_ids,
        measurand__in=("Current.Import", "Power.Active.Import"),
        timestamp__gte=since,
    ).values_list("session_id", "measurand", "phase", "timestamp", "value")
    last: dict[int, datetime] = {}
    for sid, _, _, at, _ in rows:
        last[sid] = max(at, last.get(sid, at))
    current: dict[int, list[int]] = {}
    power: dict[int, int] = {}
    for sid, measurand, phase, at, value in rows:
        if value is None or at != last[sid]:
            continue
        if measurand == "Power.Active.Import":
            power[sid] = int(value)
            continue
        index = {"L1": 0, "L2": 1, "L3": 2}.get((phase or "L1")[:2])
        if index is not None:
            current.setdefault(sid, [0, 0, 0])[index] = max(0, alloc.to_deci_amps(value))
    return {
        sid: Measured(
            at,
            tuple(current[sid]) if sid in current else (0, 0, 0),  # type: ignore[arg-type]
            power.get(sid),
        )
        for sid, at in last.items()
    }


@transaction.atomic
def site_allocate(
    *, site_id: int, trigger: str = "manual", now: datetime | None = None
) -> AllocationRun | None:
    """One allocation run of a site (the steps in the module's docstring)."""
    site = (
        EnergySite.objects.select_for_update()
        .select_related("location")
        .filter(pk=site_id, enabled=True)
        .first()
    )
    if site is None:
        return None
    now = now or timezone.now()
    started = time.perf_counter()
    try:
        inputs = site_inputs(site=site, now=now)
        started = time.perf_counter()  # the figure is the allocator's own time
        result = alloc.allocate(inputs.problem)
    except alloc.InvalidInput as error:
        # The tree was changed around the services (a cycle written directly): nothing is
        # sent; every profile falls to its safe share by its own dead-man schedule.
        logger.error("site %s cannot be allocated: %s", site.pk, error)
        return AllocationRun.objects.create(
            site=site, trigger=trigger, strategy=site.strategy, started_at=now, notes=[str(error)]
        )
    compute_ms = (time.perf_counter() - started) * 1000
    run = AllocationRun.objects.create(
        site=site,
        trigger=trigger[:40],
        started_at=now,
        compute_ms=compute_ms,
        strategy=site.strategy,
        sessions=len(inputs.problem.sessions),
        notes=inputs.notes
        + [
            f"overload on node {o.node_id} phase {o.phase or 'power'}: {o.over_da / 10} A"
            for o in result.overloads
        ],
    )
    targets: list[dispatch.Target] = []
    explained: dict[str, Any] = {}
    fixed = {s.id for s in inputs.problem.sessions if s.fixed_da is not None}
    existing = {
        r.session_id: r
        for r in SessionAllocation.objects.filter(session_id__in=list(inputs.sessions))
    }
    for item in result.sessions:
        if isinstance(item.session_id, str):
            continue  # an idle connector counted at its worst case, no session
        session = inputs.sessions[int(item.session_id)]
        ce = inputs.connectors[int(item.connector_id)]
        current = item.current_a
        explained[str(ce.pk)] = {
            "session": session.pk,
            "a": float(current),
            "phases": item.number_phases,
            "rule": str(item.rule),
            "node": item.node_id,
            "phase": item.phase,
            "paused": item.paused,
        }
        row = existing.get(session.pk) or SessionAllocation(session=session)
        row.run = run
        row.current_a = current
        row.phases = item.number_phases
        row.paused = item.paused
        row.binding_node_id = int(item.node_id) if item.node_id is not None else None
        row.binding_phase = f"L{item.phase}" if item.phase else ""
        row.rule = str(item.rule)
        row.explanation = _explain(item, inputs.nodes)[:255]
        row.state_since = item.state.since
        state, seen_at = inputs.feedback.get(session.pk, (feedback.FeedbackState(), None))
        row.cap_a = alloc.to_amps(state.cap_da) if state.cap_da is not None else None
        row.low_samples = state.low_samples
        row.detected_phases = state.phases
        row.sample_at = seen_at
        row.updated_at = now
        row.save()
        if item.session_id in fixed:
            continue
        targets.append(
            dispatch.Target(
                connector=ce,
                current_a=current,
                phases=item.number_phases,
                transaction_id=str(session.ocpp16_transaction_id or session.transaction_id)
                if session.station.protocol == "ocpp1.6"
                else session.transaction_id,
            )
        )
    # Connectors without a session: back to nothing to send (their safe share covers them).
    loads = {}
    node_rows = []
    for load in result.nodes:
        node_id = int(load.node_id)
        allocated = {p: load.phase_load_da[i] / 10 for i, p in enumerate(PHASES)}
        limit = {
            p: (None if cap is None else cap / 10)
            for p, cap in zip(PHASES, load.phase_limit_da, strict=True)
        }
        loads[str(node_id)] = {
            "allocated": allocated,
            "limit": limit,
            "power_w": load.power_load_w,
            "power_limit_w": load.power_limit_w,
        }
        node_rows.append(NodeLoad(node_id=node_id, at=now, allocated=allocated, limit=limit))
    NodeLoad.objects.bulk_create(node_rows)
    run.result = explained
    run.loads = loads
    for station_id, safe in inputs.station_safe.items():
        if station_id in inputs.online:
            station = next(
                ce.connector.station
                for ce in inputs.connectors.values()
                if ce.connector.station_id == station_id
            )
            dispatch.safe_share_dispatch(run=run, site=site, station=station, safe_a=safe, now=now)
    changed, deferred = dispatch.profiles_dispatch(
        run=run,
        site=site,
        targets=targets,
        safe_shares=inputs.safe_shares,
        online=inputs.online,
        now=now,
    )
    run.changed = changed
    run.save(update_fields=["result", "loads", "changed"])
    # The next run at a known time: an increase deferred by the minimum interval, a profile's
    # refresh before its dead-man, an offline station's dead-man (counted at its safe share
    # from then on).
    times = [deferred] if deferred is not None else []
    busy = {
        int(item.connector_id) for item in result.sessions if not isinstance(item.session_id, str)
    }
    # A TxProfile ends with its transaction: connectors without a session start from nothing.
    ConnectorEnergy.objects.filter(
        pk__in=set(inputs.connectors) - busy, limit_a__isnull=False
    ).update(limit_a=None, limit_phases=None, limit_until=None)
    if any(inputs.connectors[pk].connector.station_id in inputs.online for pk in busy):
        # Profiles sent now are refreshed at half their dead-man period.
        times.append(site.deadman_s / 2)
    for ce in inputs.connectors.values():
        if ce.pk not in busy or ce.limit_until is None or ce.limit_until <= now:
            continue
        left = (ce.limit_until - now).total_seconds()
        online = ce.connector.station_id in inputs.online
        times.append(left - site.deadman_s / 2 if online else left + 0.5)
    deferred = min((max(t, 1.0) for t in times), default=None)
    if deferred is not None:
        site_id_ = site.pk
        transaction.on_commit(
            lambda: signals.energy_changed.send(
                sender=EnergySite, site_id=site_id_, reason="deferred", countdown=deferred
            )
        )
    return run


def _explain(item: Any, nodes: dict[int, GridNode]) -> str:
    node = nodes.get(int(item.node_id)) if item.node_id is not None else None
    amps = f"{item.current_a} A"
    where = node.name if node is not None else ""
    if str(item.rule) == alloc.Rule.FIXED:
        return f"counted at {amps}: the station is offline or refuses profiles"
    if str(item.rule) == alloc.Rule.VEHICLE_MAX:
        return f"{amps}: the vehicle's (or connector's) own maximum"
    binding = f"{where} {'L' + str(item.phase) if item.phase else 'power'} limit".strip()
    if item.paused:
        return f"paused: no room for the minimum current on {binding}"
    return f"{amps}: {binding} is full"


@transaction.atomic
def station_charging_limit_record(*, station_id: int, action: str, payload: dict[str, Any]) -> None:
    """A 2.0.1 NotifyChargingLimit (or ClearedChargingLimit) of a managed station: a limit
    from outside (an EMS, the grid operator) on the node its connectors hang on."""
    node_ids = set(
        ConnectorEnergy.objects.filter(connector__station_id=station_id).values_list(
            "node_id", flat=True
        )
    )
    if not node_ids:
        return
    station = ChargingStation.objects.get(pk=station_id)
    name = f"{station.identity} {payload.get('chargingLimit', {}).get('chargingLimitSource', '')}"
    if action == "ClearedChargingLimit":
        for node_id in node_ids:
            ExternalLimit.objects.filter(
                node_id=node_id, source=ExternalLimit.Source.STATION, station=station
            ).delete()
            _announce(GridNode.objects.get(pk=node_id).site_id, "limit")
        return
    limit_a = limit_kw = None
    for item in payload.get("chargingSchedule") or []:
        periods = item.get("chargingSchedulePeriod") or []
        if not periods:
            continue
        value = Decimal(str(periods[0]["limit"]))
        if item.get("chargingRateUnit") == "W":
            limit_kw = value / 1000 if limit_kw is None else min(limit_kw, value / 1000)
        else:
            limit_a = value if limit_a is None else min(limit_a, value)
    if limit_a is None and limit_kw is None:
        return
    for node in GridNode.objects.filter(pk__in=node_ids):
        external_limit_push(
            node=node,
            source=ExternalLimit.Source.STATION,
            limit_a=limit_a,
            limit_kw=limit_kw,
            name=name[:100],
            station=station,
        )

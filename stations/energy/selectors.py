"""Reads of energy management: a site's tree with each node's load against its limits, its
load over time, and why a session gets what it gets."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.utils import timezone

from stations.energy.models import (
    PHASES,
    AllocationRun,
    ConnectorEnergy,
    EnergySite,
    GridNode,
    NodeLoad,
    SessionAllocation,
    StationEnergy,
)


def site_energy(*, site: EnergySite) -> dict[str, Any]:
    """The tree (nested), each node with its limits, its counted load per phase at the last
    run, and the connectors on it; the last run; stations that refuse profiles."""
    run = AllocationRun.objects.filter(site=site).order_by("-id").first()
    loads = run.loads if run is not None else {}
    results = run.result if run is not None else {}
    nodes = list(GridNode.objects.filter(site=site).order_by("name"))
    connectors: dict[int, list[dict[str, Any]]] = {}
    for ce in ConnectorEnergy.objects.filter(node__site=site).select_related(
        "connector__station", "connector__evse"
    ):
        given = results.get(str(ce.pk))
        connectors.setdefault(ce.node_id, []).append(
            {
                "id": ce.pk,
                "label": f"{ce.connector.station.identity} {ce.connector.evse.evse_id}",
                "station_id": ce.connector.station_id,
                "rotation": ce.rotation,
                "phases": ce.phases,
                "limit_a": float(ce.limit_a) if ce.limit_a is not None else None,
                "allocated_a": given["a"] if given else None,
                "paused": bool(given and given["paused"]),
                "rule": given["rule"] if given else "",
            }
        )

    def view(node: GridNode, depth: int) -> dict[str, Any]:
        load = loads.get(str(node.pk), {})
        limit = load.get("limit") or {}
        allocated = load.get("allocated") or {}
        phases = []
        for phase in PHASES:
            value = allocated.get(phase, 0.0)
            cap = limit.get(phase)
            phases.append(
                {
                    "phase": phase,
                    "load": value,
                    "limit": cap,
                    "percent": min(100, round(100 * value / cap)) if cap else None,
                    "used": phase in node.phase_list(),
                }
            )
        return {
            "id": node.pk,
            "name": node.name,
            "kind": node.get_kind_display(),
            "depth": depth,
            "limit_kw": float(node.limit_kw) if node.limit_kw is not None else None,
            "power_kw": round(load.get("power_w", 0) / 1000, 1),
            "margin": float(node.safety_margin_pct),
            "phases": phases,
            "connectors": connectors.get(node.pk, []),
            "children": [view(child, depth + 1) for child in nodes if child.parent_id == node.pk],
        }

    roots = [view(node, 0) for node in nodes if node.parent_id is None]
    flat: list[dict[str, Any]] = []

    def walk(items: list[dict[str, Any]]) -> None:
        for item in items:
            flat.append(item)
            walk(item["children"])

    walk(roots)
    unmanaged = StationEnergy.objects.filter(
        station__location_id=site.location_id, unmanaged=True
    ).select_related("station")
    return {
        "site": site,
        "tree": roots,
        "nodes": flat,
        "run": run,
        "unmanaged": list(unmanaged),
    }


def node_load_series(*, node_id: int, minutes: int = 60) -> dict[str, Any]:
    """A node's counted load per phase over the last `minutes`, with its limit (the chart)."""
    since = timezone.now() - timedelta(minutes=minutes)
    rows = NodeLoad.objects.filter(node_id=node_id, at__gte=since).order_by("at")[:2000]
    series: dict[str, Any] = {"at": [], "L1": [], "L2": [], "L3": [], "limit": []}
    for row in rows:
        series["at"].append(row.at.isoformat())
        for phase in PHASES:
            series[phase].append(row.allocated.get(phase))
        caps = [v for v in (row.limit or {}).values() if v is not None]
        series["limit"].append(min(caps) if caps else None)
    return series


def session_energy(*, session_id: int) -> dict[str, Any] | None:
    """Why a session gets what it gets: current, phases, paused, binding node/phase, rule."""
    row = (
        SessionAllocation.objects.filter(session_id=session_id)
        .select_related("binding_node")
        .first()
    )
    if row is None:
        return None
    return {
        "current_a": row.current_a,
        "phases": row.phases,
        "paused": row.paused,
        "rule": row.rule,
        "binding_node": row.binding_node.name if row.binding_node is not None else None,
        "binding_phase": row.binding_phase or None,
        "explanation": row.explanation,
        "capped_at_a": row.cap_a,
        "updated_at": row.updated_at,
    }

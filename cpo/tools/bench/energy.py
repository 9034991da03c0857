"""Energy management on a simulated fleet: a site's grid tree for the fleet's stations, and
what the benchmark (and the end-to-end tests) sample: drawn current and profile limits per
node, second by second, from the simulated stations themselves."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from django.db import transaction

from cpo.tools.simulator import SimulatedStation
from stations.energy import services as energy
from stations.energy.models import ConnectorEnergy, EnergySite, GridNode
from stations.models import ChargingStation, Connector

ROTATIONS = ("RST", "STR", "TRS")


@dataclass
class SiteLayout:
    site_id: int
    connection_id: int
    circuit_ids: list[int]
    # station identity -> circuit id
    circuit_of: dict[str, int] = field(default_factory=dict)


@transaction.atomic
def energy_site_create(
    *,
    identities: list[str],
    circuits: int = 1,
    circuit_limit_a: Decimal = Decimal(32),
    connection_limit_a: Decimal | None = None,
    deadman_s: int = 300,
    min_interval_s: int = 0,
    rotate: bool = False,
    phases: int | None = 3,
    max_current_a: Decimal = Decimal(32),
) -> SiteLayout:
    """A connection with `circuits` circuits below it; the stations (in identity order) are
    spread over the circuits round-robin (with rotated phases when `rotate`)."""
    stations = list(ChargingStation.objects.filter(identity__in=identities).order_by("identity"))
    location = stations[0].location
    assert location is not None
    site = energy.energy_site_enable(
        location=location, deadman_s=deadman_s, min_interval_s=min_interval_s
    )
    connection = energy.grid_node_save(
        node=GridNode(
            site=site,
            name="Grid connection",
            kind=GridNode.Kind.CONNECTION,
            limit_l1_a=connection_limit_a,
            limit_l2_a=connection_limit_a,
            limit_l3_a=connection_limit_a,
        )
    )
    nodes = [
        energy.grid_node_save(
            node=GridNode(
                site=site,
                parent=connection,
                name=f"Circuit {n + 1}",
                limit_l1_a=circuit_limit_a,
                limit_l2_a=circuit_limit_a,
                limit_l3_a=circuit_limit_a,
            )
        )
        for n in range(circuits)
    ]
    layout = SiteLayout(site.pk, connection.pk, [n.pk for n in nodes])
    # A station's connectors hang on one circuit, with one rotation (it is wired once).
    for index, station in enumerate(stations):
        node = nodes[index % circuits]
        for connector in Connector.objects.filter(station=station).select_related("station"):
            energy.connector_energy_set(
                connector=connector,
                node=node,
                rotation=ROTATIONS[index % 3] if rotate else "RST",
                phases=phases,
                max_current_a=max_current_a,
            )
        layout.circuit_of[station.identity] = node.pk
    return layout


def energy_site_remove(*, site_id: int) -> None:
    ConnectorEnergy.objects.filter(node__site_id=site_id).delete()
    GridNode.objects.filter(site_id=site_id, parent__isnull=False).delete()
    GridNode.objects.filter(site_id=site_id).delete()
    EnergySite.objects.filter(pk=site_id).delete()


@dataclass
class Sample:
    """One instant of a node: current drawn and limits set, summed per phase."""

    drawn: tuple[float, float, float]
    limited: tuple[float, float, float]


def node_sample(stations: list[SimulatedStation], rotation: dict[str, str] | None = None) -> Sample:
    """Sum the stations' drawn current and profile limits per grid phase (connectors with a
    session; a limit-less connector counts at its vehicle maximum)."""
    drawn = [0.0, 0.0, 0.0]
    limited = [0.0, 0.0, 0.0]
    order = {"RST": (0, 1, 2), "STR": (1, 2, 0), "TRS": (2, 0, 1)}
    for station in stations:
        grid = order[(rotation or {}).get(station.spec.identity, "RST")]
        for connector in station.connectors:
            if connector.session is None:
                continue
            currents = connector.phase_currents()
            amps, allowed = connector.limit_a()
            limit = connector.vehicle_max_a if amps is None else amps
            phases = min(connector.vehicle_phases, allowed or 3)
            for position in range(3):
                drawn[grid[position]] += currents[position]
                if position < phases and limit >= 6:
                    limited[grid[position]] += min(limit, connector.vehicle_max_a)
    return Sample((drawn[0], drawn[1], drawn[2]), (limited[0], limited[1], limited[2]))


def profile_calls(station: SimulatedStation) -> list[dict[str, Any]]:
    """The SetChargingProfile calls a station answered: times, purpose, limit of period 1."""
    out = []
    for received, answered, action, payload in station.calls_log or []:
        if action != "SetChargingProfile":
            continue
        profile = payload.get("csChargingProfiles") or payload.get("chargingProfile") or {}
        schedule = profile.get("chargingSchedule") or {}
        if isinstance(schedule, list):
            schedule = schedule[0]
        periods = schedule.get("chargingSchedulePeriod") or [{}]
        out.append(
            {
                "received": received,
                "answered": answered,
                "purpose": profile.get("chargingProfilePurpose"),
                "limit": periods[0].get("limit"),
                "periods": periods,
                "duration": schedule.get("duration"),
            }
        )
    return out

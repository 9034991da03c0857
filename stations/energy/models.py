"""Energy management: a site's tree of grid nodes with their limits, which connector hangs on
which node with which phase rotation, external limits, priority rules, and what each allocation
run decided and sent.

The allocation itself is pure (`stations.energy.allocator`); these rows are its inputs and the
record of its outputs. Limits are amperes per phase (L1, L2, L3) and/or a total in kW; every
current stored here is amperes per phase.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils import timezone
from django.utils.translation import gettext_lazy as _

from stations.commands.models import Command
from stations.models import ChargingStation, Connector, Location

PHASES = ("L1", "L2", "L3")


class Strategy(models.TextChoices):
    EQUAL = "equal_share", _("Equal share")
    PRIORITY = "priority", _("Priority tiers, then equal share")
    FIFO = "first_come", _("First come, first served")
    DEPARTURE = "departure", _("Departure-aware (least slack first)")


class EnergySite(models.Model):
    """Energy management switched on for a site, with how it shares and how it dispatches."""

    location = models.OneToOneField(Location, on_delete=models.CASCADE, related_name="energy")
    enabled = models.BooleanField(default=True)
    strategy = models.CharField(max_length=16, choices=Strategy.choices, default=Strategy.EQUAL)
    fairness_window_s = models.PositiveIntegerField(
        default=900, help_text=_("Seconds a paused session waits before pauses rotate.")
    )
    # Dead-man: every profile falls to the safe share this many seconds after it was sent
    # unless a newer one replaces it; the periodic pass refreshes profiles well before.
    deadman_s = models.PositiveIntegerField(
        default=300, validators=[MinValueValidator(5), MaxValueValidator(86400)]
    )
    min_interval_s = models.PositiveIntegerField(
        default=5, help_text=_("Shortest time between two increases sent to one station.")
    )
    default_min_current_a = models.DecimalField(
        max_digits=6, decimal_places=2, default=Decimal(6), validators=[MinValueValidator(0)]
    )
    updated_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name = _("energy-managed site")

    def __str__(self) -> str:
        return f"energy of {self.location}"


class GridNode(models.Model):
    """One node of the site's grid: the connection, a panel, a circuit; any depth."""

    class Kind(models.TextChoices):
        CONNECTION = "connection", _("Grid connection")
        PANEL = "panel", _("Panel")
        CIRCUIT = "circuit", _("Circuit")

    site = models.ForeignKey(EnergySite, on_delete=models.CASCADE, related_name="nodes")
    parent = models.ForeignKey(
        "self", on_delete=models.PROTECT, null=True, blank=True, related_name="children"
    )
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=12, choices=Kind.choices, default=Kind.CIRCUIT)
    limit_l1_a = models.DecimalField(max_digits=8, decimal_places=2, null=True, blank=True)
    limit_l2_a = models.DecimalField(max_digits=8, decimal_places=2, null=True, blank=True)
    limit_l3_a = models.DecimalField(max_digits=8, decimal_places=2, null=True, blank=True)
    limit_kw = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    safety_margin_pct = models.DecimalField(
        max_digits=5,
        decimal_places=2,
        default=Decimal(0),
        validators=[MinValueValidator(0), MaxValueValidator(50)],
        help_text=_("Kept free below every limit of this node."),
    )
    # Which phases of the supply this node carries (a single-phase circuit carries one).
    phases = models.CharField(max_length=8, default="L1L2L3")
    # Loads the back office does not steer (a building, a heat pump): a static worst case, or
    # a measured value pushed by a meter while fresh (older than its timeout: the static one).
    unmanaged_kw = models.DecimalField(
        max_digits=10, decimal_places=2, default=Decimal(0), validators=[MinValueValidator(0)]
    )
    unmanaged_measured_kw = models.DecimalField(
        max_digits=10, decimal_places=2, null=True, blank=True
    )
    unmanaged_measured_at = models.DateTimeField(null=True, blank=True)
    unmanaged_timeout_s = models.PositiveIntegerField(default=120)
    voltage_v = models.PositiveIntegerField(default=230, help_text=_("Phase-to-neutral."))

    class Meta:
        ordering = ["site", "parent_id", "name"]
        constraints = [
            models.UniqueConstraint(fields=["site", "name"], name="energy_node_name_unique"),
            models.CheckConstraint(
                condition=~models.Q(parent=models.F("id")), name="energy_node_not_own_parent"
            ),
        ]

    def __str__(self) -> str:
        return self.name

    def phase_list(self) -> tuple[str, ...]:
        return tuple(p for p in PHASES if p in self.phases)

    def limits_a(self) -> dict[str, Decimal | None]:
        return {"L1": self.limit_l1_a, "L2": self.limit_l2_a, "L3": self.limit_l3_a}

    def clean(self) -> None:
        errors: dict[str, Any] = {}
        if not self.phase_list() or set(self.phases) - set("L123"):
            errors["phases"] = _("Name the phases the node carries, e.g. L1L2L3 or L2.")
        for phase, value in self.limits_a().items():
            if value is not None and value < 0:
                errors[f"limit_{phase.lower()}_a"] = _("A limit cannot be negative.")
        if self.limit_kw is not None and self.limit_kw < 0:
            errors["limit_kw"] = _("A limit cannot be negative.")
        if self.parent_id is not None:
            parent = self.parent
            if parent is not None and parent.site_id != self.site_id:
                errors["parent"] = _("The parent belongs to another site.")
            # Walk up from the parent: meeting this node again is a cycle.
            seen: set[int] = set()
            node = parent
            while node is not None:
                if self.pk is not None and node.pk == self.pk:
                    errors["parent"] = _("This parent would make a cycle in the grid tree.")
                    break
                if node.pk in seen:
                    errors["parent"] = _("The grid tree already has a cycle above this parent.")
                    break
                seen.add(node.pk)
                node = node.parent
        if errors:
            raise ValidationError(errors)


class ConnectorEnergy(models.Model):
    """Where a connector hangs in the grid, how its phases are wired, and what it was told."""

    class Rotation(models.TextChoices):
        # OCPP 1.6 ConnectorPhaseRotation: the grid phases wired to the connector's L1, L2, L3.
        RST = "RST", "RST (L1 L2 L3)"
        RTS = "RTS", "RTS (L1 L3 L2)"
        SRT = "SRT", "SRT (L2 L1 L3)"
        STR = "STR", "STR (L2 L3 L1)"
        TRS = "TRS", "TRS (L3 L1 L2)"
        TSR = "TSR", "TSR (L3 L2 L1)"
        UNKNOWN = "Unknown", _("Unknown (counted on every phase)")

    connector = models.OneToOneField(Connector, on_delete=models.CASCADE, related_name="energy")
    node = models.ForeignKey(GridNode, on_delete=models.PROTECT, related_name="connectors")
    rotation = models.CharField(max_length=8, choices=Rotation.choices, default=Rotation.UNKNOWN)
    # Phases the connector can deliver: 1 or 3; empty when unknown (counted as three).
    phases = models.PositiveSmallIntegerField(
        null=True, blank=True, validators=[MinValueValidator(1), MaxValueValidator(3)]
    )
    min_current_a = models.DecimalField(
        max_digits=6, decimal_places=2, null=True, blank=True, help_text=_("Site default if empty.")
    )
    max_current_a = models.DecimalField(max_digits=6, decimal_places=2, default=Decimal(32))
    # What the station was last told for this connector, and until when the profile holds
    # before its schedule falls to the safe share (the dead-man time).
    limit_a = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    limit_phases = models.PositiveSmallIntegerField(null=True, blank=True)
    limit_sent_at = models.DateTimeField(null=True, blank=True)
    limit_until = models.DateTimeField(null=True, blank=True)
    profile_id = models.PositiveIntegerField(null=True, blank=True)

    class Meta:
        verbose_name = _("connector in the grid")
        verbose_name_plural = _("connectors in the grid")

    def __str__(self) -> str:
        return f"{self.connector} on {self.node}"


class StationEnergy(models.Model):
    """A station's part in energy management: its profile limits and whether it obeys."""

    class RateUnit(models.TextChoices):
        AMPS = "A", _("Amperes")
        WATTS = "W", _("Watts")

    station = models.OneToOneField(ChargingStation, on_delete=models.CASCADE, related_name="energy")
    # ChargeProfileMaxStackLevel, ChargingScheduleMaxPeriods and
    # ChargingScheduleAllowedChargingRateUnit of the station.
    max_stack_level = models.PositiveSmallIntegerField(default=8)
    max_periods = models.PositiveSmallIntegerField(default=24, validators=[MinValueValidator(1)])
    rate_unit = models.CharField(max_length=1, choices=RateUnit.choices, default=RateUnit.AMPS)
    # A ChargePointMaxProfile for the whole station, where configured.
    station_max_a = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    # The TxDefaultProfile last accepted: 0 A (a new session waits for its allocation) until
    # `default_until`, then the safe share, so that with the back office gone every connector
    # ends at its safe share and a new vehicle never starts above it.
    safe_share_a = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    safe_share_sent_at = models.DateTimeField(null=True, blank=True)
    default_until = models.DateTimeField(null=True, blank=True)
    rejections = models.PositiveSmallIntegerField(default=0)
    unmanaged = models.BooleanField(
        default=False, help_text=_("It refused profiles: counted at its worst case.")
    )
    unmanaged_since = models.DateTimeField(null=True, blank=True)
    last_increase_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = _("station in energy management")
        verbose_name_plural = _("stations in energy management")

    def __str__(self) -> str:
        return f"energy of {self.station}"


class ExternalLimit(models.Model):
    """A cap on a node from outside: a peak/off-peak schedule, a push from a building meter or
    the grid operator, or a 2.0.1 NotifyChargingLimit. A push that is not renewed within its
    freshness timeout falls to its fail-safe value."""

    class Source(models.TextChoices):
        SCHEDULE = "schedule", _("Schedule (peak / off-peak)")
        API = "api", _("API push (building meter, grid operator)")
        STATION = "station", _("Station (NotifyChargingLimit)")

    node = models.ForeignKey(GridNode, on_delete=models.CASCADE, related_name="external_limits")
    source = models.CharField(max_length=10, choices=Source.choices)
    name = models.CharField(max_length=100, blank=True)
    limit_a = models.DecimalField(
        max_digits=8, decimal_places=2, null=True, blank=True, help_text=_("Per phase.")
    )
    limit_kw = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    # Schedule: [{"from": "HH:MM", "to": "HH:MM", "limit_a": .., "limit_kw": ..}] in the
    # site's time zone; outside every window the schedule does not cap.
    windows = models.JSONField(default=list, blank=True)
    received_at = models.DateTimeField(null=True, blank=True)
    fresh_for_s = models.PositiveIntegerField(default=900)
    failsafe_a = models.DecimalField(max_digits=8, decimal_places=2, null=True, blank=True)
    failsafe_kw = models.DecimalField(max_digits=10, decimal_places=2, null=True, blank=True)
    station = models.ForeignKey(
        ChargingStation, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering = ["node", "id"]

    def __str__(self) -> str:
        return self.name or f"{self.get_source_display()} on {self.node}"


class PriorityRule(models.Model):
    """Sessions of a token, of a token group or of an account get a priority tier (fleet,
    VIP); the highest tier is served first under the priority strategy."""

    site = models.ForeignKey(
        EnergySite, on_delete=models.CASCADE, null=True, blank=True, related_name="priority_rules"
    )
    label = models.CharField(max_length=50, help_text=_("e.g. Fleet, VIP"))
    tier = models.SmallIntegerField(default=1, help_text=_("Higher is served first; default 0."))
    id_token = models.ForeignKey(
        "charging.IdToken", on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    account = models.ForeignKey(
        "charging.CustomerAccount",
        on_delete=models.CASCADE,
        null=True,
        blank=True,
        related_name="+",
    )

    class Meta:
        ordering = ["-tier", "label"]
        constraints = [
            models.CheckConstraint(
                condition=models.Q(id_token__isnull=False) | models.Q(account__isnull=False),
                name="energy_priority_has_target",
            )
        ]

    def __str__(self) -> str:
        return f"{self.label} (tier {self.tier})"


class AllocationRun(models.Model):
    """One allocation of a site: what triggered it, how long it took, what it decided."""

    site = models.ForeignKey(EnergySite, on_delete=models.CASCADE, related_name="runs")
    trigger = models.CharField(max_length=40)
    started_at = models.DateTimeField(default=timezone.now)
    compute_ms = models.FloatField(default=0)
    strategy = models.CharField(max_length=16)
    sessions = models.PositiveIntegerField(default=0)
    changed = models.PositiveIntegerField(default=0)
    # {connector_energy_id: {"a": .., "phases": .., "session": .., "rule": ..}}
    result = models.JSONField(default=dict)
    # {node_id: {"L1": allocated A, "L2": .., "L3": .., "limit": {"L1": ..}}}
    loads = models.JSONField(default=dict)
    notes = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-id"]
        indexes = [models.Index(fields=["site", "started_at"], name="energy_run_site_time_idx")]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.site_id} ({self.trigger})"


class SessionAllocation(models.Model):
    """Why a charging session gets the current it gets: the binding node, phase and rule."""

    session = models.OneToOneField(
        "charging.ChargingSession", on_delete=models.CASCADE, related_name="energy_allocation"
    )
    run = models.ForeignKey(AllocationRun, on_delete=models.SET_NULL, null=True, related_name="+")
    current_a = models.DecimalField(max_digits=6, decimal_places=2)
    phases = models.PositiveSmallIntegerField(default=3)
    paused = models.BooleanField(default=False)
    binding_node = models.ForeignKey(
        GridNode, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    binding_phase = models.CharField(max_length=2, blank=True)
    rule = models.CharField(max_length=40, blank=True)
    explanation = models.CharField(max_length=255, blank=True)
    # Running or paused since when: the fairness rotation's memory between runs.
    state_since = models.DateTimeField(default=timezone.now)
    # Meter feedback (stations.energy.feedback): capped at what it draws plus a buffer, the
    # samples in a row below its share, the phases seen in use, the last sample looked at.
    cap_a = models.DecimalField(max_digits=6, decimal_places=2, null=True, blank=True)
    low_samples = models.PositiveSmallIntegerField(default=0)
    detected_phases = models.PositiveSmallIntegerField(null=True, blank=True)
    sample_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        return f"{self.session_id}: {self.current_a} A"


class ProfileDispatch(models.Model):
    """One charging profile an allocation run wants a station to have, in dispatch order:
    decreases are queued at once, increases wait until no decrease of the site is unanswered."""

    class Kind(models.TextChoices):
        DECREASE = "decrease", _("Decrease")
        INCREASE = "increase", _("Increase")
        REFRESH = "refresh", _("Refresh")
        DEFAULT = "default", _("Safe share (TxDefaultProfile)")
        STATION_MAX = "station_max", _("Station maximum")

    class State(models.TextChoices):
        WAITING = "waiting", _("Waiting for decreases")
        QUEUED = "queued", _("Queued")
        ACCEPTED = "accepted", _("Accepted")
        REFUSED = "refused", _("Refused")
        SUPERSEDED = "superseded", _("Superseded")

    run = models.ForeignKey(AllocationRun, on_delete=models.CASCADE, related_name="dispatches")
    site = models.ForeignKey(EnergySite, on_delete=models.CASCADE, related_name="+")
    station = models.ForeignKey(ChargingStation, on_delete=models.CASCADE, related_name="+")
    connector = models.ForeignKey(
        ConnectorEnergy, on_delete=models.CASCADE, null=True, blank=True, related_name="+"
    )
    kind = models.CharField(max_length=12, choices=Kind.choices)
    state = models.CharField(max_length=12, choices=State.choices)
    limit_a = models.DecimalField(max_digits=6, decimal_places=2)
    phases = models.PositiveSmallIntegerField(default=3)
    params = models.JSONField(default=dict)
    command = models.OneToOneField(
        Command, on_delete=models.SET_NULL, null=True, blank=True, related_name="energy_dispatch"
    )
    created_at = models.DateTimeField(default=timezone.now)
    answered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["id"]
        indexes = [
            # "Is any decrease of this site unanswered?" and "the waiting increases of a site".
            models.Index(
                fields=["site", "kind"],
                name="energy_dispatch_open_idx",
                condition=models.Q(state__in=["waiting", "queued"]),
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.limit_a} A → {self.station_id} ({self.state})"


class NodeLoad(models.Model):
    """A node's allocated and measured load per phase at one run: the site page's chart."""

    node = models.ForeignKey(GridNode, on_delete=models.CASCADE, related_name="loads")
    at = models.DateTimeField(default=timezone.now)
    allocated = models.JSONField(default=dict)  # {"L1": A, "L2": A, "L3": A}
    measured = models.JSONField(default=dict)
    limit = models.JSONField(default=dict)

    class Meta:
        ordering = ["node", "at"]
        indexes = [models.Index(fields=["node", "at"], name="energy_node_load_idx")]

    def __str__(self) -> str:
        return f"{self.node_id} @ {self.at}"

"""Writes of the tariffs domain: fixing a session's tariff version at its start, publishing
tariff versions, rating sessions, live cost, and the price components of tariff elements.

Rating itself is pure (`tariffs.rating`); this module feeds it a session's data and keeps the
results where the rest of the system reads them.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
import zoneinfo
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from django.core.exceptions import ValidationError
from django.db import transaction
from django.utils import timezone

from sessions.models import ChargingSession
from tariffs import rating, selectors
from tariffs.models import PriceComponent, SessionTariff, Tariff, TariffElement, TariffVersion
from tariffs.signals import tariff_version_published

logger = logging.getLogger(__name__)


class TariffNotFound(Exception):  # noqa: N818 - a domain outcome, not a programming error
    """No tariff version is fixed on the session: none applied at its start."""


def _session_for_rating(session_id: int) -> ChargingSession | None:
    return (
        ChargingSession.objects.select_related("station__location", "id_token__group")
        .filter(pk=session_id)
        .first()
    )


def session_tariff_fix(session: ChargingSession) -> None:
    """Fix the tariff version a session is priced with, in the transaction that creates it.

    Registered with the charging domain as its session pricer (TariffsConfig.ready).

    1. Called when the session is created; a version already fixed is kept.
    2. The most specific assignment for the session's place and payer, valid at its start,
       and the version of its tariff in force then (`selectors.tariff_version_select`: one
       query, no JSON).
    3. No tariff applies: nothing is written; the session is rated "no tariff" when it ends
       and waits in finance's queue.
    """
    account_id = session.account_id or (
        selectors.session_account_id(session=session) if session.id_token_id else None
    )
    chosen = selectors.tariff_version_select(
        station_id=session.station_id,
        evse_id=session.evse_id,
        connector_id=session.connector_id,
        account_id=account_id,
        at=session.started_at,
    )
    if chosen is not None:
        # A second call (a retried start that got this far) keeps the version fixed first.
        SessionTariff.objects.bulk_create(
            [SessionTariff(session_id=session.pk, version_id=chosen[0])], ignore_conflicts=True
        )


def session_rating_tariff(*, session: ChargingSession) -> tuple[TariffVersion, rating.Tariff]:
    """The version a session is rated with and its engine form; TariffNotFound when none was
    fixed at its start. Nothing is ever re-priced at another (today's) tariff."""
    version = selectors.session_tariff_version(session=session)
    if version is None:
        raise TariffNotFound(f"no tariff for session {session.pk}")
    return version, rating.tariff_from_ocpi(version.ocpi)


def session_rate(*, session: ChargingSession, now: dt.datetime | None = None) -> rating.Rating:
    """Price a session, live or ended, from what its charger reported. Writes nothing.

    1. Tariff: the version fixed at the session's start; raises TariffNotFound when none.
    2. Usage: meter samples, meter start/stop, charging state (`selectors.session_usage`);
       a live session is rated up to `now` (default: the current time).
    3. Time zone of the session's site (UTC when unknown), then the rating engine.
    """
    _, tariff = session_rating_tariff(session=session)
    usage = selectors.session_usage(session=session, now=now)
    return rating.rate_session(tariff, usage, selectors.session_time_zone(session=session))


# Versions never change: their engine form is parsed once per process.
_ENGINES: dict[int, rating.Tariff] = {}
_ENGINES_MAX = 1024
# 2.0.1 chargingState (and 1.6 sessions, which say "Charging") -> requesting power or not.
_NOT_CHARGING = frozenset({"SuspendedEV", "EVConnected", "Idle"})


def _engine(version_id: int) -> rating.Tariff:
    engine = _ENGINES.get(version_id)
    if engine is None:
        ocpi = TariffVersion.objects.values_list("ocpi", flat=True).get(pk=version_id)
        engine = rating.tariff_from_ocpi(ocpi)
        if len(_ENGINES) >= _ENGINES_MAX:
            _ENGINES.clear()
        _ENGINES[version_id] = engine
    return engine


def session_cost_advance(session: ChargingSession, *, until: dt.datetime) -> list[str]:
    """Extend a live session's cost so far to its meter value at `until`, incrementally.

    Registered with the charging domain (TariffsConfig.ready) and called in the transaction
    that stores the meter value; it changes the session object only, and returns the fields
    for the caller's save.
    1. The state of the running cost is on the session (`live_cost_state`); the first meter
       value starts it from the session's tariff version (one query) and its site's zone.
    2. `rating.running_cost_advance` prices [last reading, until) with the session's energy,
       charging state and power: work bounded by the interval, never by the history.
    3. The cost so far, incl. VAT, rounded, max_price applied (min_price only at the end), is
       `live_cost`: the panel, the API, budgets and 2.0.1 stations with cost display read it.
    No tariff: nothing. A failure is logged and leaves the previous cost: the charger must
    get its answer, and the CDR is rated from scratch at the end anyway.
    """
    try:
        saved = session.live_cost_state
        if saved is not None and saved.get("tariff_version") is None:
            return []  # no tariff: looked up once, at the first meter value
        if saved is None:
            link = (
                SessionTariff.objects.filter(session_id=session.pk)
                .values_list("version_id", "session__station__location__time_zone")
                .first()
            )
            if link is None:
                session.live_cost_state = {"tariff_version": None}
                return ["live_cost_state"]
            version_id, zone = link[0], link[1] or "UTC"
            tariff = _engine(version_id)
            tz = zoneinfo.ZoneInfo(zone)
            state = rating.running_cost_start(tariff, start=session.started_at, tz=tz)
        else:
            version_id, zone = int(saved["tariff_version"]), str(saved["time_zone"])
            tariff = _engine(version_id)
            tz = zoneinfo.ZoneInfo(zone)
            state = rating.RunningCost.from_json(saved["state"])
        power = session.last_power_w / 1000 if session.last_power_w is not None else None
        state = rating.running_cost_advance(
            tariff,
            state,
            until=max(until, session.started_at),
            energy_wh=max(session.energy_wh, state.energy_wh),
            charging=session.charging_state not in _NOT_CHARGING,
            power_kw=power,
            tz=tz,
        )
        total = rating.running_cost_total(tariff, state)
    except (ValueError, TypeError, KeyError, ArithmeticError, zoneinfo.ZoneInfoNotFoundError):
        logger.exception("running cost of session %s failed", session.pk)
        return []
    session.live_cost_state = {
        "tariff_version": version_id,
        "time_zone": zone,
        "state": state.to_json(),
    }
    session.live_cost = total.incl_vat
    session.live_cost_currency = tariff.currency
    return ["live_cost", "live_cost_currency", "live_cost_state"]


class SessionPricer:
    """The tariffs app's `sessions.pricing.SessionPricer`."""

    def fix(self, session: ChargingSession) -> None:
        session_tariff_fix(session)

    def advance(self, session: ChargingSession, *, until: dt.datetime) -> list[str]:
        return session_cost_advance(session, until=until)


# --- Tariff versions ------------------------------------------------------------------------


class TariffNotPublishable(Exception):  # noqa: N818 - a refusal shown to the operator
    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _flatten(value: Any, path: str = "") -> dict[str, Any]:
    """OCPI JSON as path -> leaf value; elements keyed by position, components by type."""
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for key, item in value.items():
            if key == "last_updated":
                continue
            out.update(_flatten(item, f"{path}.{key}" if path else key))
        return out
    if isinstance(value, list):
        out = {}
        for index, item in enumerate(value):
            name = item.get("type", index) if isinstance(item, dict) and "price" in item else index
            out.update(_flatten(item, f"{path}[{name}]"))
        return out
    return {path: value}


def tariff_changes(before: dict[str, Any] | None, after: dict[str, Any]) -> str:
    """What changed between two OCPI states of a tariff, one line per changed value."""
    if before is None:
        return "first version"
    old, new = _flatten(before), _flatten(after)
    lines = []
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            was = old.get(key, "—") if key in old else "—"
            now = new.get(key, "—") if key in new else "—"
            lines.append(f"{key}: {was} → {now}")
    return "\n".join(lines)


@transaction.atomic
def tariff_version_publish(
    *, tariff: Tariff, created_by: Any = None, effective_from: dt.datetime | None = None
) -> TariffVersion | None:
    """Publish the tariff's working copy as a new immutable version; None when nothing changed.

    1. The working copy must rate: a version that the engine cannot read is refused
       (TariffNotPublishable), so no session can ever get an unreadable price.
    2. `effective_from` is now or later (scheduled); never earlier once a version exists:
       sessions already started keep the version fixed at their start, and history does not
       lie about when a price applied. A new tariff's first version may be dated back (it
       prices nothing that already started: such sessions had no tariff).
    3. The version records who, when, and what changed against the latest version.
    """
    now = timezone.now()
    effective = effective_from or now
    locked = Tariff.objects.select_for_update().get(pk=tariff.pk)
    latest = locked.versions.order_by("-number").first()
    if latest is not None and effective < now - dt.timedelta(seconds=5):
        raise TariffNotPublishable("a new price cannot take effect in the past")
    ocpi = locked.to_ocpi()
    try:
        rating.tariff_from_ocpi(ocpi)
    except (ValueError, TypeError, KeyError, ArithmeticError) as exc:
        raise TariffNotPublishable(f"the tariff cannot be rated: {exc}") from exc
    if latest is not None and _flatten(latest.ocpi) == _flatten(ocpi):
        if latest.effective_from <= effective:
            return None
    version = TariffVersion.objects.create(
        tariff=locked,
        number=(latest.number + 1) if latest is not None else 1,
        ocpi=ocpi,
        effective_from=effective,
        currency=locked.currency,
        type=locked.type,
        start_date_time=locked.start_date_time,
        end_date_time=locked.end_date_time,
        changes=tariff_changes(latest.ocpi if latest is not None else None, ocpi),
        created_by=created_by if getattr(created_by, "pk", None) else None,
        created_at=now,
    )
    tariff_version_published.send(sender=TariffVersion, version=version)
    return version


@transaction.atomic
def session_tariff_assign(
    *, session: ChargingSession, tariff: Tariff, assigned_by: Any, correction: bool = False
) -> SessionTariff:
    """Finance prices a session with `tariff`: the version in force at the session's start
    (or its first version, if it took effect later).

    A session that has a version keeps it (its price was fixed when it started), unless this is
    a `correction`: finance replaces a wrong tariff before re-rating (billing refuses to re-rate
    an invoiced CDR that is not credited).
    """
    existing = SessionTariff.objects.select_for_update().filter(session=session).first()
    if existing is not None and not correction:
        raise TariffNotPublishable("this session's tariff was fixed when it started")
    version = selectors.tariff_version_in_force(tariff=tariff, at=session.started_at)
    if version is None:
        version = tariff.versions.order_by("number").first()
    if version is None:
        raise TariffNotPublishable(f"{tariff} has no published version")
    link, _ = SessionTariff.objects.update_or_create(
        session=session,
        defaults={
            "version": version,
            "chosen_at": timezone.now(),
            "assigned_by": assigned_by if getattr(assigned_by, "pk", None) else None,
        },
    )
    return link


# --- Tariff editing -------------------------------------------------------------------------------


@dataclass(frozen=True)
class ComponentInput:
    type: str
    price: Decimal
    vat: Decimal | None = None
    step_size: int = 1


@transaction.atomic
def tariff_element_components_set(
    *, element: TariffElement, components: list[ComponentInput]
) -> None:
    """Make the element's price components exactly `components` (one per type, OCPI's rule).

    Components whose values did not change keep their rows.
    """
    wanted = {c.type: c for c in components}
    if len(wanted) != len(components):
        raise ValueError("one price component per type")
    existing = {pc.type: pc for pc in element.price_components.all()}
    for type_, pc in existing.items():
        if type_ not in wanted:
            pc.delete()
    for type_, spec in wanted.items():
        step = 1 if type_ == PriceComponent.Type.FLAT else spec.step_size
        pc = existing.get(type_) or PriceComponent(element=element, type=type_)
        if pc.pk and (pc.price, pc.vat, pc.step_size) == (spec.price, spec.vat, step):
            continue
        pc.price, pc.vat, pc.step_size = spec.price, spec.vat, step
        pc.full_clean()
        pc.save()


# --- Tariffs written whole (the API): the working copy and its published version -----------------

TARIFF_FIELDS = (
    "tariff_id",
    "name",
    "currency",
    "type",
    "display_text",
    "min_price_excl_vat",
    "min_price_incl_vat",
    "max_price_excl_vat",
    "max_price_incl_vat",
    "start_date_time",
    "end_date_time",
)
ELEMENT_FIELDS = (
    "start_time",
    "end_time",
    "start_date",
    "end_date",
    "min_kwh",
    "max_kwh",
    "min_current",
    "max_current",
    "min_power",
    "max_power",
    "min_duration",
    "max_duration",
    "day_of_week",
    "reservation",
)


def _elements_replace(*, tariff: Tariff, elements: list[dict[str, Any]]) -> None:
    """Make the tariff's elements exactly `elements`, in order (position = index)."""
    tariff.elements.all().delete()
    for position, spec in enumerate(elements):
        spec = dict(spec)
        components = [ComponentInput(**c) for c in spec.pop("price_components", [])]
        unknown = set(spec) - set(ELEMENT_FIELDS)
        if unknown:
            raise ValueError(f"unknown element fields: {sorted(unknown)}")
        element = TariffElement(tariff=tariff, position=position, **spec)
        try:
            element.full_clean()
        except ValidationError as exc:
            raise ValidationError(
                {f"elements.{position}.{k}": v for k, v in exc.message_dict.items()}
            ) from None
        element.save()
        try:
            tariff_element_components_set(element=element, components=components)
        except ValidationError as exc:
            raise ValidationError(
                {
                    f"elements.{position}.price_components.{k}": v
                    for k, v in exc.message_dict.items()
                }
            ) from None
        except ValueError as exc:
            raise ValidationError({f"elements.{position}.price_components": str(exc)}) from None


def _tariff_write(
    *,
    tariff: Tariff,
    data: dict[str, Any],
    elements: list[dict[str, Any]] | None,
    created_by: Any,
    effective_from: dt.datetime | None,
) -> tuple[Tariff, TariffVersion | None]:
    unknown = set(data) - set(TARIFF_FIELDS)
    if unknown:
        raise ValueError(f"unknown tariff fields: {sorted(unknown)}")
    for name, value in data.items():
        setattr(tariff, name, value)
    tariff.full_clean()
    tariff.save()
    if elements is not None:
        _elements_replace(tariff=tariff, elements=elements)
    if not tariff.elements.exists():
        raise TariffNotPublishable("a tariff needs at least one element with a price")
    version = tariff_version_publish(
        tariff=tariff, created_by=created_by, effective_from=effective_from
    )
    return tariff, version


@transaction.atomic
def tariff_create(
    *,
    data: dict[str, Any],
    elements: list[dict[str, Any]],
    created_by: Any = None,
    effective_from: dt.datetime | None = None,
) -> tuple[Tariff, TariffVersion | None]:
    """A new tariff with its elements, published as version 1 (all or nothing)."""
    data = {"tariff_id": str(uuid.uuid4()), **data}
    return _tariff_write(
        tariff=Tariff(),
        data=data,
        elements=elements,
        created_by=created_by,
        effective_from=effective_from,
    )


@transaction.atomic
def tariff_update(
    *,
    tariff: Tariff,
    data: dict[str, Any],
    elements: list[dict[str, Any]] | None = None,
    created_by: Any = None,
    effective_from: dt.datetime | None = None,
) -> tuple[Tariff, TariffVersion | None]:
    """Change a tariff (its elements replaced when given) and publish the result as a new
    version; the version is None when nothing changed. A change that cannot be published
    (tariff_version_publish's rules) leaves the tariff as it was."""
    locked = Tariff.objects.select_for_update().get(pk=tariff.pk)
    if "tariff_id" in data and data["tariff_id"] != locked.tariff_id:
        raise ValidationError(
            {"tariff_id": ValidationError("A tariff's OCPI id never changes.", code="immutable")}
        )
    return _tariff_write(
        tariff=locked,
        data=data,
        elements=elements,
        created_by=created_by,
        effective_from=effective_from,
    )

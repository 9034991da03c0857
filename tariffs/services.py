"""Writes of the tariffs domain: freezing a session's tariff, rating sessions, live cost, and
the price components of tariff elements.

Rating itself is pure (`tariffs.rating`); this module feeds it a session's data and keeps the
results where the rest of the system reads them.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from sessions.models import ChargingSession
from tariffs import rating, selectors
from tariffs.models import PriceComponent, TariffElement

logger = logging.getLogger(__name__)


class TariffNotFound(Exception):  # noqa: N818 - a domain outcome, not a programming error
    """No tariff is frozen on the session and no assignment covers it."""


def _session_for_rating(session_id: int) -> ChargingSession | None:
    return (
        ChargingSession.objects.select_related("station__location", "id_token__group")
        .filter(pk=session_id)
        .first()
    )


@transaction.atomic
def session_tariff_freeze(*, session_id: int) -> None:
    """Freeze the tariff that applies at the session's start onto the session.

    1. A session that already has a snapshot keeps it: calling this again (a retried start,
       a second caller) changes nothing.
    2. The most specific assignment for the session's connector and payer, valid at the
       session's start, gives the tariff (`selectors.tariff_for_session`).
    3. Its OCPI JSON goes to `tariff_snapshot` and its OCPI id to `tariff_ref`; later edits of
       the tariff never change what this session costs. No tariff: nothing is written.
    """
    session = _session_for_rating(session_id)
    if session is None or session.tariff_snapshot is not None:
        return
    choice = selectors.tariff_for_session(session=session)
    if choice is None:
        logger.warning("no tariff applies to session %s", session_id)
        return
    # Conditional on "still empty": two concurrent freezes cannot overwrite each other.
    ChargingSession.objects.filter(pk=session_id, tariff_snapshot__isnull=True).update(
        tariff_snapshot=choice.ocpi, tariff_ref=choice.tariff.tariff_id
    )


def session_rating_tariff(
    *, session: ChargingSession, now: dt.datetime | None = None
) -> rating.Tariff:
    """The tariff a session is rated with: its frozen snapshot, else the one that applied at
    its start, else the one that applies now. Raises TariffNotFound."""
    frozen = selectors.session_frozen_tariff(session=session)
    if frozen is not None:
        return frozen
    for at in (session.started_at, now or timezone.now()):
        choice = selectors.tariff_for_session(session=session, at=at)
        if choice is not None:
            return choice.engine
    raise TariffNotFound(f"no tariff for session {session.pk}")


def session_rate(*, session: ChargingSession, now: dt.datetime | None = None) -> rating.Rating:
    """Price a session, live or ended, from what its charger reported. Writes nothing.

    1. Tariff: the frozen snapshot (fallback: selection at the session's start, then now);
       raises TariffNotFound when none exists.
    2. Usage: meter samples, meter start/stop, charging state (`selectors.session_usage`);
       a live session is rated up to `now` (default: the current time).
    3. Time zone of the session's site (UTC when unknown), then the rating engine.
    """
    tariff = session_rating_tariff(session=session, now=now)
    usage = selectors.session_usage(session=session, now=now)
    return rating.rate_session(tariff, usage, selectors.session_time_zone(session=session))


def session_live_cost_update(*, session_id: int, now: dt.datetime | None = None) -> Decimal | None:
    """Rate a (live) session and store its running cost incl. VAT, rounded to the currency.

    Returns the cost, or None when no tariff applies. Freezes the tariff first when that has
    not happened yet. The cost is display only (panel, OCPP 2.0.1 totalCost): a failure is
    logged and gives None, so that the charger still gets its answer.
    """
    try:
        with transaction.atomic():
            session = _session_for_rating(session_id)
            if session is None:
                return None
            if session.tariff_snapshot is None:
                session_tariff_freeze(session_id=session_id)
                session.refresh_from_db(fields=["tariff_snapshot", "tariff_ref"])
            cost = session_rate(session=session, now=now).total_cost.incl_vat
            # One column only: the OCPP edge may be writing the session's other fields.
            ChargingSession.objects.filter(pk=session_id).update(live_cost=cost)
    except TariffNotFound:
        return None
    except Exception:
        # The savepoint above is rolled back; the caller's transaction stays usable.
        logger.exception("live cost of session %s failed", session_id)
        return None
    return cost


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

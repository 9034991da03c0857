"""Writes of billing: CDRs from ended sessions, billing periods, invoices and credit notes.

Rules every function here keeps:
- CDRs and issued invoices are never changed: corrections are credit CDRs and credit notes.
- A CDR lands on exactly one invoice: `InvoiceLine.cdr` is unique, and the period close locks
  the CDRs it bills (select_for_update) and re-checks them under the lock.
- Invoice numbers come from a per-series counter row, read and advanced under a row lock in
  the issuing transaction: gapless and never duplicated, whatever the number of workers.
- Money is Decimal with its currency; only totals are rounded (to the currency's minor unit).
- An invoice's VAT is computed per rate on the rate's base, rounded once (`billing.vat`); its
  lines carry their share of it and add up to the totals to the cent.
"""

from __future__ import annotations

import datetime as dt
import logging
import uuid
import zoneinfo
from collections import defaultdict
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import F, Q
from django.utils import timezone

from billing.models import (
    AdHocPayment,
    BillingAuditEntry,
    BillingPeriod,
    BillingProfile,
    Cdr,
    Invoice,
    InvoiceLine,
    InvoiceSeries,
    InvoiceVatLine,
    SettlementLine,
    SettlementStatement,
)
from billing.signals import cdr_created
from billing.vat import VatPart, vat_per_rate
from cpo.lib.api import ApplicationError
from cpo.lib.formatting import add_months
from cpo.outbox import webhooks
from sessions.models import ChargingSession, CustomerAccount, MeterSample
from stations.models import Connector, Evse
from tariffs.models import Tariff, TariffVersion
from tariffs.rating import Amount, Rating, round_money
from tariffs.services import (
    TariffNotFound,
    TariffNotPublishable,
    session_rate,
    session_rating_tariff,
    session_tariff_assign,
)

if TYPE_CHECKING:
    from cpo.models import User

logger = logging.getLogger(__name__)

ZERO = Decimal(0)
UTC = dt.UTC


def _audit(action: str, obj: Any, *, user: User | None = None, **data: Any) -> None:
    BillingAuditEntry.objects.create(
        action=action,
        object_type=type(obj).__name__,
        object_id=obj.pk,
        user=user if user is not None and user.is_authenticated else None,
        data=data,
    )


def _str(value: Decimal | None) -> str | None:
    return None if value is None else format(value, "f")


# --- CDRs ---------------------------------------------------------------------------------------


def _session_rate(session: ChargingSession) -> tuple[TariffVersion, Rating]:
    # The tariffs app owns rating: usage from the samples, the version fixed at the session's
    # start, the site's time zone.
    version, _ = session_rating_tariff(session=session)
    return version, session_rate(session=session)


def vat_split(rating: Rating) -> list[dict[str, str | None]]:
    """The rounded totals split per VAT rate, so that the parts add up exactly to the totals.

    1. Each rate's share is its part of the unrounded subtotal, scaled to the clamped total
       (min/max price applies to the whole session, so it applies pro rata to every rate).
    2. Each share is rounded; the rounding difference goes to the largest share.
    """
    total = rating.total_cost
    lines = list(rating.vat_breakdown)
    if not lines:
        if total.excl_vat == 0 and total.incl_vat == 0:
            return []
        return [
            {
                "rate": None,
                "excl_vat": _str(total.excl_vat),
                "vat": _str(total.incl_vat - total.excl_vat),
            }
        ]
    sub = rating.subtotal

    def shares(parts: list[Decimal], whole: Decimal, target: Decimal) -> list[Decimal]:
        if whole == 0:
            raw = [target if i == 0 else ZERO for i in range(len(parts))]
        else:
            raw = [part * target / whole for part in parts]
        rounded = [round_money(x, rating.currency) for x in raw]
        diff = target - sum(rounded, ZERO)
        if diff:
            largest = max(range(len(raw)), key=lambda i: abs(raw[i]))
            rounded[largest] += diff
        return rounded

    excl = shares([v.excl_vat for v in lines], sub.excl_vat, total.excl_vat)
    incl = shares([v.incl_vat for v in lines], sub.incl_vat, total.incl_vat)
    return [
        {"rate": _str(v.rate), "excl_vat": _str(e), "vat": _str(i - e)}
        for v, e, i in zip(lines, excl, incl, strict=True)
        if e or i
    ]


def _amount(value: Amount) -> dict[str, str]:
    return {"excl_vat": format(value.excl_vat, "f"), "incl_vat": format(value.incl_vat, "f")}


def _rating_audit(rating: Rating) -> dict[str, Any]:
    return {
        "tariff_id": rating.tariff_id,
        "subtotal": _amount(rating.subtotal),
        "total_exact": _amount(rating.total_exact),
        "clamp_excl_vat": rating.clamp_excl_vat,
        "clamp_incl_vat": rating.clamp_incl_vat,
        "vat_breakdown": [
            {"rate": _str(v.rate), "excl_vat": _str(v.excl_vat), "incl_vat": _str(v.incl_vat)}
            for v in rating.vat_breakdown
        ],
        "lines": [
            {
                "dimension": line.dimension,
                "period_index": line.period_index,
                "element_index": line.element_index,
                "price": _str(line.price),
                "vat": _str(line.vat),
                "step_size": line.step_size,
                "volume": _str(line.volume),
                "billed_volume": _str(line.billed_volume),
                **_amount(line.cost),
            }
            for line in rating.lines
        ],
    }


def _json_numbers(value: Any) -> Any:
    """OCPI volumes are JSON numbers; the engine hands out Decimals (already quantized)."""
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dict):
        return {k: _json_numbers(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_json_numbers(v) for v in value]
    return value


def _site_snapshot(session: ChargingSession) -> tuple[dict[str, Any], str]:
    station = session.station
    location = station.location
    evse = Evse.objects.filter(station=station, evse_id=session.evse_id).first()
    connector = None
    if evse is not None:
        connectors = list(Connector.objects.filter(evse=evse))
        connector = next((c for c in connectors if c.connector_id == session.connector_id), None)
        if connector is None and session.connector_id == 0 and len(connectors) == 1:
            # A session that named only its EVSE (2.0.1 without connectorId) used its one plug.
            connector = connectors[0]
    snapshot: dict[str, Any] = {
        "station_identity": station.identity,
        "evse_id": session.evse_id,
        "evse_uid": evse.uid if evse else "",
        "evse_emi3_id": evse.emi3_id if evse else "",
        "connector_id": session.connector_id,
    }
    if connector is not None:
        snapshot.update(
            connector_standard=connector.standard,
            connector_format=connector.format,
            connector_power_type=connector.power_type,
        )
    if location is not None:
        snapshot.update(
            location_id=str(location.pk),
            name=location.name,
            address=location.address,
            postal_code=location.postal_code,
            city=location.city,
            country=location.country,
            time_zone=location.time_zone,
            coordinates={
                "latitude": _str(location.latitude),
                "longitude": _str(location.longitude),
            },
        )
    return snapshot, snapshot["evse_uid"]


def _token_snapshot(session: ChargingSession) -> dict[str, Any]:
    token = session.id_token
    if token is None:
        return {
            "uid": session.id_tag,
            "type": session.id_token_type or "OTHER",
            "contract_id": "",
            "visual_number": "",
        }
    return {
        "uid": token.uid,
        "type": token.type,
        "contract_id": token.contract_id,
        "visual_number": token.visual_number,
        "issuer_country_code": token.issuer_country_code,
        "issuer_party_id": token.issuer_party_id,
    }


def _signed_data(session: ChargingSession) -> dict[str, Any] | None:
    """Signed meter values exactly as the charger sent them (OCMF and others), OCPI-shaped."""
    samples = list(
        MeterSample.objects.filter(session=session).exclude(signed_data="").order_by("timestamp")
    )
    if not samples:
        return None
    nature = {"Transaction.Begin": "Start", "Transaction.End": "End"}
    return {
        "encoding_method": samples[0].encoding_method or "OCMF",
        "public_key": next((s.public_key for s in samples if s.public_key), ""),
        "signed_values": [
            {
                "nature": nature.get(s.context, "Intermediate"),
                "plain_data": "",
                "signed_data": s.signed_data,
                "signing_method": s.signing_method,
            }
            for s in samples
        ],
    }


def _cdr_from_rating(
    session: ChargingSession, version: TariffVersion, rating: Rating, *, revision: int
) -> Cdr:
    site, evse_uid = _site_snapshot(session)
    token = _token_snapshot(session)
    total = rating.total_cost
    periods = _json_numbers(rating.to_ocpi_charging_periods())
    cdr = Cdr(
        uid=str(uuid.uuid4()),
        session=session,
        revision=revision,
        account_id=session.account_id,
        id_token_id=session.id_token_id,
        location_id=session.station.location_id,
        start=session.started_at,
        end=session.ended_at or rating.end,
        site_name=site.get("name", ""),
        station_identity=session.station.identity,
        evse_uid=evse_uid,
        connector_id=session.connector_id,
        token_uid=token["uid"][:36],
        token_visual_number=token["visual_number"][:64],
        site_snapshot=site,
        token_snapshot=token,
        tariff_snapshot=version.ocpi,
        tariff_version=version,
        charging_periods=periods,
        signed_data=_signed_data(session),
        currency=rating.currency,
        total_energy_kwh=rating.total_energy_kwh.quantize(Decimal("0.000001")),
        total_time_h=rating.total_time_h.quantize(Decimal("0.000001")),
        total_parking_time_h=rating.total_parking_time_h.quantize(Decimal("0.000001")),
        total_cost_excl_vat=total.excl_vat,
        total_cost_incl_vat=total.incl_vat,
        total_vat=total.incl_vat - total.excl_vat,
        vat_breakdown=vat_split(rating),
        rating_audit=_rating_audit(rating),
    )
    for name in ("fixed", "energy", "time", "parking", "reservation"):
        amount: Amount = getattr(rating, f"total_{name}_cost")
        setattr(cdr, f"total_{name}_cost_excl_vat", amount.excl_vat)
        setattr(cdr, f"total_{name}_cost_incl_vat", amount.incl_vat)
    cdr.full_clean(exclude=["session", "account", "id_token", "location"])
    cdr.save()
    _cdr_announce(cdr)
    return cdr


def _cdr_announce(cdr: Cdr) -> None:
    """cdr.created to the webhook endpoints that want it, in the CDR's transaction; after the
    session's own events (same subject)."""

    def payload() -> dict[str, Any]:
        session_uid = ChargingSession.objects.values_list("uid", flat=True).get(pk=cdr.session_id)
        credit_of = cdr.credit_of.uid if cdr.credit_of is not None else None
        return {
            "cdr": cdr.uid,
            "session": str(session_uid),
            "revision": cdr.revision,
            "credit": cdr.credit,
            "credit_of": credit_of,
            "station": cdr.station_identity,
            "evse_uid": cdr.evse_uid,
            "connector_id": cdr.connector_id,
            "start": webhooks.iso(cdr.start),
            "end": webhooks.iso(cdr.end),
            "currency": cdr.currency,
            "total_energy_kwh": _str(cdr.total_energy_kwh),
            "total_cost_excl_vat": _str(cdr.total_cost_excl_vat),
            "total_vat": _str(cdr.total_vat),
            "total_cost_incl_vat": _str(cdr.total_cost_incl_vat),
        }

    webhooks.event_publish(
        type="cdr.created", payload=payload, subject=f"session:{cdr.session_id}", dedupe_key=cdr.uid
    )
    cdr_created.send(sender=Cdr, cdr=cdr)


def _invoice_announce(invoice: Invoice) -> None:
    def payload() -> dict[str, Any]:
        credit_of = invoice.credit_of.number if invoice.credit_of is not None else None
        return {
            "invoice": invoice.number,
            "kind": invoice.kind,
            "account": invoice.account.name,
            "currency": invoice.currency,
            "issue_date": invoice.issue_date.isoformat() if invoice.issue_date else None,
            "due_date": invoice.due_date.isoformat() if invoice.due_date else None,
            "total_excl_vat": _str(invoice.total_excl_vat),
            "total_vat": _str(invoice.total_vat),
            "total_incl_vat": _str(invoice.total_incl_vat),
            "credit_of": credit_of,
        }

    webhooks.event_publish(type="invoice.issued", payload=payload, dedupe_key=str(invoice.number))


def _live_cdr(session: ChargingSession, *, lock: bool = False) -> Cdr | None:
    qs = Cdr.objects.filter(session=session, credit=False, credit_cdr__isnull=True)
    if lock:
        qs = qs.select_for_update(of=("self",))
    return qs.order_by("-revision").first()


def _next_revision(session: ChargingSession) -> int:
    last = (
        Cdr.objects.filter(session=session, credit=False)
        .order_by("-revision")
        .values_list("revision", flat=True)
        .first()
    )
    return (last or 0) + 1


def _rating_set(
    session: ChargingSession, status: str, note: str = "", *, cdr: Cdr | None = None
) -> None:
    fields: dict[str, Any] = {"rating_status": status, "rating_note": note[:255]}
    if cdr is not None:
        # The session's cost is its CDR's from now on: budgets count it, the panel shows it.
        fields.update(live_cost=cdr.total_cost_incl_vat, live_cost_currency=cdr.currency)
    ChargingSession.objects.filter(pk=session.pk).update(**fields)
    for name, value in fields.items():
        setattr(session, name, value)


def cdr_create_for_session(*, session_id: int, bill_anyway: bool = False) -> Cdr | None:
    """Rate an ended session and store its CDR; idempotent (a second call returns the first CDR).

    The session's rating status says what happened:
    1. still active: nothing (None);
    2. written off by finance, or held for review (a token refused at start that charged
       anyway, ...) unless `bill_anyway`: nothing, the session waits in finance's queue;
    3. no tariff version fixed at its start: "no tariff", in the queue;
    4. rated: the CDR, status "rated".
    A failure raises, and the task's failure hook marks the session "failed"
    (`session_rating_failed`). The session row is locked so that two deliveries of the same
    task wait for each other instead of rating twice; the unique (session, revision)
    constraint backs that up.
    """
    try:
        with transaction.atomic():
            session = (
                ChargingSession.objects.select_for_update(of=("self",))
                .select_related("station__location", "id_token")
                .get(pk=session_id)
            )
            if session.status != ChargingSession.Status.COMPLETED:
                return None
            existing = Cdr.objects.filter(session=session, credit=False).order_by("-revision")
            if existing.exists():
                # Already rated once: later revisions come only from an explicit re-rate.
                return _live_cdr(session) or existing.first()
            held = ChargingSession.RatingStatus.NEEDS_REVIEW
            if session.rating_status == ChargingSession.RatingStatus.WRITTEN_OFF or (
                session.rating_status == held and not bill_anyway
            ):
                return None
            try:
                version, rating = _session_rate(session)
            except TariffNotFound:
                _rating_set(
                    session,
                    ChargingSession.RatingStatus.NO_TARIFF,
                    "no tariff applied at the session's start",
                )
                return None
            cdr = _cdr_from_rating(session, version, rating, revision=1)
            # Payments the station's terminal settled before the CDR existed.
            AdHocPayment.objects.filter(session=session, cdr=None).update(cdr=cdr)
            _rating_set(
                session,
                ChargingSession.RatingStatus.RATED,
                session.rating_note if bill_anyway else "",
                cdr=cdr,
            )
            _audit(
                "cdr_created",
                cdr,
                total_incl_vat=_str(cdr.total_cost_incl_vat),
                currency=cdr.currency,
            )
            return cdr
    except IntegrityError:
        return Cdr.objects.filter(session_id=session_id, credit=False).order_by("revision").first()


def session_rating_failed(*, session_id: int, error: str) -> None:
    """Rating raised: the session is "failed" with the reason, and the sweep tries again
    (up to BILLING_RATING_MAX_ATTEMPTS) before it waits for finance."""
    ChargingSession.objects.filter(
        pk=session_id, status=ChargingSession.Status.COMPLETED, cdrs__isnull=True
    ).exclude(rating_status=ChargingSession.RatingStatus.WRITTEN_OFF).update(
        rating_status=ChargingSession.RatingStatus.FAILED,
        rating_note=f"rating failed: {error}"[:255],
        rating_attempts=F("rating_attempts") + 1,
    )


@transaction.atomic
def session_write_off(*, session: ChargingSession, reason: str, user: User | None) -> None:
    """Finance decides a session is not billed (a test charge, a goodwill gesture, a
    refused token that charged): no CDR is made for it, now or later."""
    if not reason.strip():
        raise ApplicationError("A write-off needs a reason.")
    locked = ChargingSession.objects.select_for_update(of=("self",)).get(pk=session.pk)
    if Cdr.objects.filter(session=locked, credit=False).exists():
        raise ApplicationError("The session is rated: credit its CDR instead.")
    who = user.get_username() if user is not None else "system"
    _rating_set(locked, ChargingSession.RatingStatus.WRITTEN_OFF, f"{who}: {reason.strip()}")
    _audit("session_written_off", locked, user=user, reason=reason.strip())


def session_bill_anyway(*, session: ChargingSession, reason: str, user: User | None) -> Cdr:
    """Finance releases a session held for review: it is rated and billed like any other."""
    if session.rating_status != ChargingSession.RatingStatus.NEEDS_REVIEW:
        raise ApplicationError("Only a session held for review is billed anyway.")
    who = user.get_username() if user is not None else "system"
    with transaction.atomic():
        _rating_set(session, session.rating_status, f"billed anyway by {who}: {reason.strip()}")
        cdr = cdr_create_for_session(session_id=session.pk, bill_anyway=True)
        if cdr is None:
            raise ApplicationError("The session could not be rated: see its rating status.")
        _audit("session_billed_anyway", cdr, user=user, reason=reason.strip())
    return cdr


def session_tariff_assign_and_rate(
    *, session: ChargingSession, tariff: Tariff, user: User | None
) -> Cdr:
    """Finance prices a session that had no tariff with `tariff` (its version in force at the
    session's start) and rates it."""
    if session.rating_status != ChargingSession.RatingStatus.NO_TARIFF:
        raise ApplicationError("Only a session without tariff gets one assigned.")
    with transaction.atomic():
        try:
            session_tariff_assign(session=session, tariff=tariff, assigned_by=user)
        except TariffNotPublishable as refused:
            raise ApplicationError(refused.message) from None
        _rating_set(session, ChargingSession.RatingStatus.PENDING, "")
        cdr = cdr_create_for_session(session_id=session.pk)
        if cdr is None:
            raise ApplicationError("The session could not be rated: see its rating status.")
        _audit("session_tariff_assigned", cdr, user=user, tariff=tariff.tariff_id)
    return cdr


def _credit_row(cdr: Cdr, *, reason: str) -> Cdr:
    """The credit CDR of `cdr`: the same data with negated amounts (OCPI's credit CDR)."""
    credit = Cdr(
        uid=f"{cdr.uid[:36]}-C",
        session_id=cdr.session_id,
        revision=cdr.revision,
        account_id=cdr.account_id,
        id_token_id=cdr.id_token_id,
        location_id=cdr.location_id,
        credit=True,
        credit_of=cdr,
        credit_reason=reason[:255],
        start=cdr.start,
        end=cdr.end,
        site_name=cdr.site_name,
        station_identity=cdr.station_identity,
        evse_uid=cdr.evse_uid,
        connector_id=cdr.connector_id,
        token_uid=cdr.token_uid,
        token_visual_number=cdr.token_visual_number,
        site_snapshot=cdr.site_snapshot,
        token_snapshot=cdr.token_snapshot,
        tariff_snapshot=cdr.tariff_snapshot,
        tariff_version_id=cdr.tariff_version_id,
        charging_periods=cdr.charging_periods,
        signed_data=cdr.signed_data,
        currency=cdr.currency,
        total_energy_kwh=cdr.total_energy_kwh,
        total_time_h=cdr.total_time_h,
        total_parking_time_h=cdr.total_parking_time_h,
        vat_breakdown=[
            {
                "rate": v["rate"],
                "excl_vat": _str(-Decimal(v["excl_vat"])),
                "vat": _str(-Decimal(v["vat"])),
            }
            for v in cdr.vat_breakdown
        ],
        rating_audit={"credit_of": cdr.uid},
    )
    for field in Cdr._meta.concrete_fields:
        if field.name.startswith("total_") and field.name.endswith(("_vat",)):
            setattr(credit, field.name, -getattr(cdr, field.name))
    credit.save()
    _cdr_announce(credit)
    _audit(
        "cdr_credited",
        credit,
        credit_of=cdr.uid,
        reason=reason,
        total_incl_vat=_str(credit.total_cost_incl_vat),
    )
    return credit


def cdr_credit(*, cdr_id: int, reason: str, user: User | None = None) -> Cdr:
    """Credit one CDR (a reason is required). An invoiced CDR's credit is billed with the next
    period (a negative line); an uninvoiced CDR and its credit cancel out and are billed to
    nobody."""
    if not (reason or "").strip():
        raise ApplicationError("A credit needs a reason.")
    with transaction.atomic(durable=True):
        cdr = Cdr.objects.select_for_update(of=("self",)).get(pk=cdr_id)
        if cdr.credit:
            raise ApplicationError("A credit CDR cannot be credited.")
        if Cdr.objects.filter(credit_of=cdr).exists():
            raise ApplicationError(f"CDR {cdr.uid} is already credited.")
        credit = _credit_row(cdr, reason=reason)
        if user is not None:
            _audit("cdr_credit_requested", cdr, user=user, reason=reason)
        return credit


def cdr_rerate(*, session_id: int, reason: str = "re-rated", user: User | None = None) -> Cdr:
    """Rate a session again. Its current CDR, if any, must not be invoiced: it is credited
    (the pair cancels out) and a new revision takes its place."""
    with transaction.atomic(durable=True):
        session = (
            ChargingSession.objects.select_for_update(of=("self",))
            .select_related("station__location", "id_token")
            .get(pk=session_id)
        )
        if session.status != ChargingSession.Status.COMPLETED:
            raise ApplicationError("The session has not ended yet.")
        current = _live_cdr(session, lock=True)
        if current is not None:
            if InvoiceLine.objects.filter(cdr=current).exists():
                raise ApplicationError(
                    f"CDR {current.uid} is invoiced: credit its invoice before re-rating."
                )
            _credit_row(current, reason=reason)
        version, rating = _session_rate(session)
        cdr = _cdr_from_rating(session, version, rating, revision=_next_revision(session))
        _rating_set(session, ChargingSession.RatingStatus.RATED, cdr=cdr)
        _audit(
            "cdr_rerated",
            cdr,
            user=user,
            reason=reason,
            total_incl_vat=_str(cdr.total_cost_incl_vat),
        )
        return cdr


def cdrs_create_missing(*, older_than: dt.timedelta, limit: int) -> int:
    """Rate ended sessions that have no CDR yet: a lost task, a worker that was down, a failure
    worth another try. No look-back limit: a session waits until it is rated, written off or
    given a tariff by finance; "no tariff" and "needs review" sessions wait in the queue."""
    now = timezone.now()
    ids = list(
        ChargingSession.objects.filter(
            status=ChargingSession.Status.COMPLETED,
            ended_at__lt=now - older_than,
            cdrs__isnull=True,
        )
        .filter(
            Q(rating_status=ChargingSession.RatingStatus.PENDING)
            | Q(
                rating_status=ChargingSession.RatingStatus.FAILED,
                rating_attempts__lt=settings.BILLING_RATING_MAX_ATTEMPTS,
            )
        )
        .order_by("ended_at")
        .values_list("pk", flat=True)[:limit]
    )
    made = 0
    for session_id in ids:
        try:
            made += cdr_create_for_session(session_id=session_id) is not None
        except Exception as error:  # one broken session must not block the rest of the sweep
            logger.exception("rating session %s failed", session_id)
            session_rating_failed(session_id=session_id, error=str(error) or type(error).__name__)
    return made


# --- Billing periods ----------------------------------------------------------------------------


def billing_time_zone(account: CustomerAccount) -> zoneinfo.ZoneInfo:
    """The zone of the account's periods and invoice dates: its own, else the seller's."""
    return zoneinfo.ZoneInfo(account.time_zone or settings.BILLING_TIME_ZONE)


def period_bounds(
    kind: str, instant: dt.datetime, tz: dt.tzinfo = UTC
) -> tuple[dt.datetime, dt.datetime]:
    """The [start, end), in UTC, of the period of `kind` that contains `instant`, its days
    counted in `tz` (midnight to midnight local time, whatever the offset does between)."""
    day = instant.astimezone(tz).date()
    if kind == CustomerAccount.BillingPeriod.DAILY:
        first, after = day, day + dt.timedelta(days=1)
    elif kind == CustomerAccount.BillingPeriod.WEEKLY:
        first = day - dt.timedelta(days=day.weekday())
        after = first + dt.timedelta(days=7)
    else:
        first, after = day.replace(day=1), add_months(day, 1)
    return (
        dt.datetime.combine(first, dt.time.min, tzinfo=tz).astimezone(UTC),
        dt.datetime.combine(after, dt.time.min, tzinfo=tz).astimezone(UTC),
    )


def billing_period_ensure(
    *, account: CustomerAccount, instant: dt.datetime
) -> tuple[BillingPeriod, bool]:
    """The account's period that contains `instant`, opened when missing.

    1. The bounds are the account's kind of period in its time zone (`billing_time_zone`).
    2. An existing period of the account that contains `instant` is the answer, whatever its
       bounds: after a change of zone or kind, the periods already opened stand.
    3. A new period is clipped to its neighbours, so that periods never overlap (a CDR still
       lands in one period only, the first that closes after its start).
    4. Race-safe: the unique (account, start) turns a concurrent second insert into a get.
    """
    tz = billing_time_zone(account)
    start, end = period_bounds(account.billing_period, instant, tz)
    periods = BillingPeriod.objects.filter(account=account)
    containing = periods.filter(start__lte=instant, end__gt=instant).order_by("start").first()
    if containing is not None:
        return containing, False
    before = periods.filter(end__lte=instant, end__gt=start).order_by("-end").first()
    after = periods.filter(start__gt=instant, start__lt=end).order_by("start").first()
    start = before.end if before is not None else start
    end = after.start if after is not None else end
    return BillingPeriod.objects.get_or_create(
        account=account,
        start=start,
        defaults={"end": end, "kind": account.billing_period, "time_zone": str(tz)},
    )


def billing_periods_ensure(*, now: dt.datetime | None = None) -> int:
    """Open the current and the previous period of every active account (idempotent)."""
    now = now or timezone.now()
    made = 0
    for account in CustomerAccount.objects.filter(is_active=True).order_by("pk"):
        current, created = billing_period_ensure(account=account, instant=now)
        previous = current.start - dt.timedelta(microseconds=1)
        made += created + billing_period_ensure(account=account, instant=previous)[1]
    return made


def _seller() -> dict[str, Any]:
    return dict(settings.BILLING_SELLER)


def _billing_profile(account: CustomerAccount) -> BillingProfile | None:
    return BillingProfile.objects.filter(account=account).first()


def _buyer(account: CustomerAccount) -> dict[str, Any]:
    profile = _billing_profile(account)
    return {
        "account_id": account.pk,
        "reference": account.reference,
        "registration_number": profile.registration_number if profile else "",
        # The language its invoices print in (billing.pdf), frozen with the buyer.
        "language": profile.language if profile else "",
        "name": account.legal_name or account.name,
        "address": account.address,
        "postal_code": account.postal_code,
        "city": account.city,
        "country": account.country,
        "vat_id": account.vat_id,
        "email": account.email,
        "kind": account.kind,
    }


def _cdr_vat_parts(cdr: Cdr) -> list[dict[str, str | None]]:
    """The CDR's rounded base per VAT rate, as the invoice rule takes them."""
    return [
        {"rate": part["rate"], "base": part["excl_vat"], "stated_vat": part["vat"]}
        for part in cdr.vat_breakdown
    ]


def _tariff_version(cdr: Cdr) -> str:
    """The number of the tariff version the CDR was priced with ("" for CDRs made before
    tariff versions existed)."""
    return str(cdr.tariff_version.number) if cdr.tariff_version is not None else ""


def _tariff_id(cdr: Cdr) -> str:
    snapshot = cdr.tariff_snapshot if isinstance(cdr.tariff_snapshot, dict) else {}
    tariff_id = snapshot.get("id") or cdr.rating_audit.get("tariff_id") or ""
    return str(tariff_id)[:64]


def _site_time_zone(cdr: Cdr) -> str:
    """The zone of the CDR's site as rated (its snapshot), else its site's or, for older CDRs
    without one, its station's site's today; empty (UTC) when there is none."""
    zone = (cdr.site_snapshot or {}).get("time_zone")
    if not zone:
        location = cdr.location if cdr.location_id is not None else cdr.session.station.location
        zone = location.time_zone if location is not None else ""
    return str(zone or "")


def _line_from_cdr(invoice: Invoice, position: int, cdr: Cdr) -> InvoiceLine:
    parts = _cdr_vat_parts(cdr)
    rates = {v["rate"] for v in parts}
    rate = next(iter(rates)) if len(rates) == 1 else None
    minutes = Decimal((cdr.end - cdr.start).total_seconds()) / 60
    kind = "Credit of session" if cdr.credit else "Charging session"
    return InvoiceLine(
        invoice=invoice,
        cdr=cdr,
        position=position,
        currency=cdr.currency,
        session_start=cdr.start,
        session_end=cdr.end,
        site_name=cdr.site_name,
        site_time_zone=_site_time_zone(cdr),
        station_identity=cdr.station_identity,
        evse_uid=cdr.evse_uid,
        token_visual_number=cdr.token_visual_number or cdr.token_uid,
        tariff_id=_tariff_id(cdr),
        tariff_version=_tariff_version(cdr),
        energy_kwh=cdr.total_energy_kwh.quantize(Decimal("0.001")),
        duration_minutes=minutes.quantize(Decimal("0.01")),
        description=f"{kind} {cdr.uid}"[:255],
        vat_rate=Decimal(rate) if rate is not None else None,
        amount_excl_vat=cdr.total_cost_excl_vat,
        vat_amount=ZERO,  # set by _invoice_fill_lines, per rate
        amount_incl_vat=ZERO,
        vat_breakdown=parts,
    )


def _invoice_fill(invoice: Invoice, cdrs: list[Cdr]) -> None:
    """A line per CDR, then the VAT table and totals (`_invoice_fill_lines`)."""
    _invoice_fill_lines(
        invoice, [_line_from_cdr(invoice, i, cdr) for i, cdr in enumerate(cdrs, start=1)]
    )


def _invoice_fill_lines(invoice: Invoice, lines: list[InvoiceLine]) -> None:
    """VAT per rate on the rate's base (`billing.vat`), each line's share of it, the VAT table
    and the totals of a draft.

    1. Each line's `vat_breakdown` holds its rounded base per rate; per rate the base is the
       sum of those, and the VAT is rate x base rounded once (half up) to the minor unit.
    2. Each line part gets its share of its rate's VAT (within one minor unit of rate x part
       base, the shares adding up to the rate's VAT); line incl. = line base + line VAT.
    3. The totals are the sums of the VAT table, and equal the sums of the lines to the cent.
    """
    currency = invoice.currency
    parts: list[VatPart] = []
    for index, line in enumerate(lines):
        for part in line.vat_breakdown:
            parts.append(
                VatPart(
                    line=index,
                    rate=Decimal(part["rate"]) if part["rate"] is not None else None,
                    base=Decimal(part["base"]),
                    stated_vat=Decimal(part.get("stated_vat") or 0),
                )
            )
    result = vat_per_rate(parts, currency)
    shares: dict[int, list[tuple[VatPart, Decimal]]] = defaultdict(list)
    for part, vat in zip(parts, result.part_vat, strict=True):
        shares[part.line].append((part, vat))
    for index, line in enumerate(lines):
        line.vat_breakdown = [
            {"rate": _str(part.rate), "base": _str(part.base), "vat": _str(vat)}
            for part, vat in shares[index]
        ]
        line.amount_excl_vat = sum((part.base for part, _ in shares[index]), ZERO)
        line.vat_amount = sum((vat for _, vat in shares[index]), ZERO)
        line.amount_incl_vat = line.amount_excl_vat + line.vat_amount
    InvoiceLine.objects.bulk_create(lines)
    InvoiceVatLine.objects.bulk_create(
        InvoiceVatLine(
            invoice=invoice,
            rate=rate,
            base_excl_vat=base,
            vat_amount=vat,
            total_incl_vat=base + vat,
        )
        for rate, (base, vat) in result.per_rate.items()
    )
    invoice.total_excl_vat = sum((base for base, _ in result.per_rate.values()), ZERO)
    invoice.total_vat = sum((vat for _, vat in result.per_rate.values()), ZERO)
    invoice.total_incl_vat = invoice.total_excl_vat + invoice.total_vat
    if (
        sum((line.amount_excl_vat for line in lines), ZERO) != invoice.total_excl_vat
        or sum((line.vat_amount for line in lines), ZERO) != invoice.total_vat
        or sum((line.amount_incl_vat for line in lines), ZERO) != invoice.total_incl_vat
    ):
        raise ApplicationError("Invoice lines do not add up.")  # a bug, never a user error
    invoice.save(update_fields=["total_excl_vat", "total_vat", "total_incl_vat"])


def _settlement_statement(period: BillingPeriod, currency: str, cdrs: list[Cdr]) -> None:
    statement = SettlementStatement.objects.create(
        account=period.account,
        period=period,
        currency=currency,
        cdr_count=len(cdrs),
        total_energy_kwh=sum((c.total_energy_kwh * (-1 if c.credit else 1) for c in cdrs), ZERO),
        total_excl_vat=sum((c.total_cost_excl_vat for c in cdrs), ZERO),
        total_vat=sum((c.total_vat for c in cdrs), ZERO),
        total_incl_vat=sum((c.total_cost_incl_vat for c in cdrs), ZERO),
    )
    SettlementLine.objects.bulk_create(SettlementLine(statement=statement, cdr=c) for c in cdrs)


def billing_period_close(
    *, period_id: int, user: User | None = None, now: dt.datetime | None = None
) -> list[Invoice]:
    """Close one billing period (see `_period_close`); returns the period's invoices."""
    return _period_close(period_id=period_id, user=user, now=now)[0]


def _period_close(
    *, period_id: int, user: User | None, now: dt.datetime | None
) -> tuple[list[Invoice], bool]:
    """Close one billing period: one invoice per currency with a line per CDR not yet invoiced.

    1. Lock the period row; a closed period returns its invoices unchanged (idempotent: a
       second run, concurrent or later, bills nothing).
    2. Find the account's billable CDRs whose session started before the period's end (older
       ones that arrived late included: a session that ran past the close), lock them in
       primary-key order (no deadlocks between two overlapping closes), and re-check them
       under the lock: a CDR invoiced or credited meanwhile is left out. `InvoiceLine.cdr`
       being unique is the last line of defence.
    3. One draft invoice per currency; nothing to bill, no invoice.
    4. Roaming partner accounts also get a settlement statement of those CDRs.
    5. Mark the period closed; with BILLING_AUTO_ISSUE the drafts are issued at once.
    """
    now = now or timezone.now()
    with transaction.atomic(durable=True):
        period = (
            BillingPeriod.objects.select_for_update(of=("self",))
            .select_related("account")
            .get(pk=period_id)
        )
        if period.status == BillingPeriod.Status.CLOSED:
            return list(period.invoices.filter(kind=Invoice.Kind.INVOICE).order_by("pk")), False
        if period.end > now:
            raise ApplicationError("This period has not ended yet.")
        account = period.account
        candidate_ids = list(
            Cdr.objects.billable()
            .filter(account=account, start__lt=period.end)
            .values_list("pk", flat=True)
        )
        list(
            Cdr.objects.select_for_update()
            .filter(pk__in=candidate_ids)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        # Under the lock, with a fresh snapshot: only what is still billable.
        cdrs = list(
            Cdr.objects.billable()
            .select_related("tariff_version")
            .filter(pk__in=candidate_ids)
            .order_by("start", "pk")
        )
        by_currency: dict[str, list[Cdr]] = defaultdict(list)
        for cdr in cdrs:
            by_currency[cdr.currency].append(cdr)
        invoices = []
        for currency in sorted(by_currency):
            invoice = Invoice.objects.create(
                account=account,
                period=period,
                kind=Invoice.Kind.INVOICE,
                currency=currency,
                period_start=period.start,
                period_end=period.end,
                time_zone=period.time_zone or str(billing_time_zone(account)),
                seller=_seller(),
                buyer=_buyer(account),
            )
            _invoice_fill(invoice, by_currency[currency])
            _audit(
                "invoice_drafted",
                invoice,
                user=user,
                period=period.pk,
                total_incl_vat=_str(invoice.total_incl_vat),
                currency=currency,
            )
            invoices.append(invoice)
            if account.kind == CustomerAccount.Kind.ROAMING_PARTNER:
                _settlement_statement(period, currency, by_currency[currency])
        period.status = BillingPeriod.Status.CLOSED
        period.closed_at = now
        period.save(update_fields=["status", "closed_at"])
        _audit(
            "period_closed", period, user=user, invoices=[i.pk for i in invoices], cdrs=len(cdrs)
        )
        if settings.BILLING_AUTO_ISSUE:
            invoices = [_invoice_issue(invoice_id=i.pk, user=user, now=now) for i in invoices]
        return invoices, True


def billing_periods_close_due(*, now: dt.datetime | None = None, limit: int | None = None) -> int:
    """Open the periods that are due and close every open period that has ended.

    Each period closes in its own transaction: one account's failure leaves the others billed.
    Returns the number of invoices made by this run.
    """
    now = now or timezone.now()
    billing_periods_ensure(now=now)
    limit = limit or settings.BILLING_CLOSE_BATCH_SIZE
    due = list(
        BillingPeriod.objects.filter(status=BillingPeriod.Status.OPEN, end__lte=now)
        .order_by("end", "pk")
        .values_list("pk", flat=True)[:limit]
    )
    made = 0
    for period_id in due:
        invoices, closed_now = _period_close(period_id=period_id, user=None, now=now)
        if closed_now:  # another run may have closed it first: its invoices are not ours
            made += len(invoices)
    return made


# --- Invoices -----------------------------------------------------------------------------------


def _series_code(kind: str, issue_date: dt.date) -> str:
    """One gapless series per kind and year of the issue date: INV-2025, CN-2025."""
    prefix = "CN" if kind == Invoice.Kind.CREDIT_NOTE else "INV"
    return f"{prefix}-{issue_date.year}"


def _invoice_issue(*, invoice_id: int, user: User | None, now: dt.datetime) -> Invoice:
    invoice = (
        Invoice.objects.select_for_update(of=("self",)).select_related("account").get(pk=invoice_id)
    )
    if invoice.is_issued:
        return invoice
    if not invoice.lines.exists():
        raise ApplicationError("An invoice without lines cannot be issued.")
    # One zone per invoice: its period's, named on it (the account's when it has no period).
    tz = (
        zoneinfo.ZoneInfo(invoice.time_zone)
        if invoice.time_zone
        else billing_time_zone(invoice.account)
    )
    issue_date = now.astimezone(tz).date()
    code = _series_code(invoice.kind, issue_date)
    # get_or_create survives two workers creating the same new series (IntegrityError, then
    # get); the lock that follows is what serialises the numbering.
    series_id = InvoiceSeries.objects.get_or_create(code=code)[0].pk
    series = InvoiceSeries.objects.select_for_update().get(pk=series_id)
    sequence = series.next_number
    series.next_number = sequence + 1
    series.save(update_fields=["next_number"])
    invoice.series = series
    invoice.sequence = sequence
    invoice.number = f"{code}-{sequence:06d}"
    invoice.status = Invoice.Status.ISSUED
    invoice.issued_at = now
    invoice.issue_date = issue_date
    invoice.time_zone = str(tz)
    if invoice.kind == Invoice.Kind.INVOICE:
        profile = _billing_profile(invoice.account)
        terms = profile.payment_terms_days if profile else None
        invoice.payment_terms_days = settings.BILLING_PAYMENT_TERMS_DAYS if terms is None else terms
        invoice.due_date = issue_date + dt.timedelta(days=invoice.payment_terms_days)
    invoice.issued_by = user if user is not None and user.is_authenticated else None
    invoice.seller = _seller()
    invoice.buyer = _buyer(invoice.account)
    invoice.full_clean(exclude=["account", "period", "series", "credit_of", "issued_by"])
    invoice.save()
    _invoice_announce(invoice)
    _audit(
        "invoice_issued",
        invoice,
        user=user,
        number=invoice.number,
        total_incl_vat=_str(invoice.total_incl_vat),
        currency=invoice.currency,
    )
    return invoice


def invoice_issue(
    *, invoice_id: int, user: User | None = None, now: dt.datetime | None = None
) -> Invoice:
    """Issue a draft: give it the next number of its series (gapless, per year and kind) and
    freeze it. Issuing an issued invoice returns it unchanged."""
    with transaction.atomic(durable=True):
        return _invoice_issue(invoice_id=invoice_id, user=user, now=now or timezone.now())


def _credit_lock(invoice_id: int) -> Invoice:
    """The issued invoice to credit, locked: credit notes of one invoice are made one at a
    time, so that two of them can never credit the same line or more than was billed."""
    original = (
        Invoice.objects.select_for_update(of=("self",)).select_related("account").get(pk=invoice_id)
    )
    if not original.is_issued or original.kind != Invoice.Kind.INVOICE:
        raise ApplicationError("Only issued invoices can be credited.")
    return original


def _credited_base(original: Invoice) -> dict[Decimal | None, Decimal]:
    """Per VAT rate, the base still creditable: what the invoice billed less its credit notes."""
    left: dict[Decimal | None, Decimal] = {
        v.rate: v.base_excl_vat for v in original.vat_lines.all()
    }
    for vat in InvoiceVatLine.objects.filter(invoice__credit_of=original):
        left[vat.rate] = left.get(vat.rate, ZERO) + vat.base_excl_vat  # credit bases are < 0
    return left


def _credit_note(
    original: Invoice,
    *,
    reason: str,
    lines: list[InvoiceLine],
    user: User | None,
    issue: bool,
    now: dt.datetime,
    audit: dict[str, Any],
) -> Invoice:
    """Draft (and issue) the credit note of `lines` (its own, already negative lines).

    Refused when it would credit, at any VAT rate, more than the invoice billed at that rate
    less what earlier credit notes credited.
    """
    note = Invoice.objects.create(
        account=original.account,
        period=original.period,
        kind=Invoice.Kind.CREDIT_NOTE,
        currency=original.currency,
        period_start=original.period_start,
        period_end=original.period_end,
        time_zone=original.time_zone,
        credit_of=original,
        reason=reason[:255],
        seller=_seller(),
        buyer=_buyer(original.account),
    )
    left = _credited_base(original)
    for line in lines:
        line.invoice = note
    _invoice_fill_lines(note, lines)
    for vat in note.vat_lines.all():
        if -vat.base_excl_vat > left.get(vat.rate, ZERO):
            rate = "no VAT" if vat.rate is None else f"{vat.rate.normalize():f} %"
            remaining = max(left.get(vat.rate, ZERO), ZERO)
            raise ApplicationError(
                f"That credits {round_money(-vat.base_excl_vat, note.currency):f} excl. VAT at "
                f"{rate}; invoice {original.number} has "
                f"{round_money(remaining, note.currency):f} left to credit there."
            )
    _audit(
        "credit_note_drafted",
        note,
        user=user,
        credit_of=original.number,
        reason=reason,
        total_incl_vat=_str(note.total_incl_vat),
        **audit,
    )
    if issue:
        note = _invoice_issue(invoice_id=note.pk, user=user, now=now)
    return note


def _credit_lines_of(original: Invoice, lines: list[InvoiceLine], reason: str) -> list[InvoiceLine]:
    """The credit note's lines for `lines` of the invoice: each line's CDR gets its credit CDR
    (so the session can be re-rated and billed again), on a negative line."""
    cdrs = list(
        Cdr.objects.select_for_update()
        .filter(pk__in=[line.cdr_id for line in lines if line.cdr_id is not None])
        .order_by("pk")
    )
    by_id = {cdr.pk: cdr for cdr in cdrs}
    already = set(Cdr.objects.filter(credit_of__in=cdrs).values_list("credit_of_id", flat=True))
    credited = [str(line.position) for line in lines if line.cdr_id in already]
    if credited:
        raise ApplicationError(
            f"Invoice {original.number}: lines already credited: {', '.join(credited)}"
        )
    for line in lines:
        cdr = by_id.get(line.cdr_id) if line.cdr_id is not None else None
        if cdr is None or cdr.credit:
            raise ApplicationError(
                f"Line {line.position} of invoice {original.number} is itself a credit: "
                "credit an amount instead."
            )
    return [
        _line_from_cdr(original, position, _credit_row(by_id[line.cdr_id], reason=reason))
        for position, line in enumerate(lines, start=1)
        if line.cdr_id is not None
    ]


def _reason(reason: str) -> str:
    reason = (reason or "").strip()
    if not reason:
        raise ApplicationError("A credit note needs a reason.")
    return reason


def invoice_credit(
    *,
    invoice_id: int,
    reason: str,
    user: User | None = None,
    issue: bool = True,
    now: dt.datetime | None = None,
) -> Invoice:
    """Credit an issued invoice in full (what is left of it after earlier partial credit
    notes) with a credit note that references it; a reason is required.

    Every CDR of the invoice not yet credited gets its credit CDR, on a line of the credit
    note; the sessions can then be re-rated and billed again with a later period.
    """
    now = now or timezone.now()
    reason = _reason(reason)
    with transaction.atomic(durable=True):
        original = _credit_lock(invoice_id)
        lines = list(original.lines.filter(cdr__credit_cdr__isnull=True).order_by("position"))
        if not lines:
            raise ApplicationError(f"Invoice {original.number} is already credited.")
        first = not original.credit_notes.exists()
        note = _credit_note(
            original,
            reason=reason,
            lines=_credit_lines_of(original, lines, reason),
            user=user,
            issue=issue,
            now=now,
            audit={"lines": [line.position for line in lines]},
        )
        if first and note.total_incl_vat != -original.total_incl_vat:
            raise ApplicationError("The credit note does not mirror the invoice.")
        return note


def invoice_credit_lines(
    *,
    invoice_id: int,
    line_ids: list[int],
    reason: str,
    user: User | None = None,
    issue: bool = True,
    now: dt.datetime | None = None,
) -> Invoice:
    """Credit some lines of an issued invoice (a partial credit note); a reason is required.

    Each line's CDR gets its credit CDR; a line is credited once, ever.
    """
    now = now or timezone.now()
    reason = _reason(reason)
    with transaction.atomic(durable=True):
        original = _credit_lock(invoice_id)
        lines = list(original.lines.filter(pk__in=line_ids).order_by("position"))
        if not lines or len(lines) != len(set(line_ids)):
            raise ApplicationError(f"Choose lines of invoice {original.number} to credit.")
        return _credit_note(
            original,
            reason=reason,
            lines=_credit_lines_of(original, lines, reason),
            user=user,
            issue=issue,
            now=now,
            audit={"lines": [line.position for line in lines]},
        )


def invoice_credit_amount(
    *,
    invoice_id: int,
    amount_excl_vat: Decimal,
    vat_rate: Decimal | None,
    reason: str,
    user: User | None = None,
    issue: bool = True,
    now: dt.datetime | None = None,
) -> Invoice:
    """Credit an amount of an issued invoice (excl. VAT, at one of its VAT rates), e.g. a
    goodwill gesture; its VAT follows the invoice rule. No CDR is touched. A reason is
    required, and the amount may not exceed what is left to credit at that rate."""
    now = now or timezone.now()
    reason = _reason(reason)
    with transaction.atomic(durable=True):
        original = _credit_lock(invoice_id)
        amount = round_money(Decimal(amount_excl_vat), original.currency)
        if amount <= 0:
            raise ApplicationError("The amount to credit must be more than zero.")
        rates = set(original.vat_lines.values_list("rate", flat=True))
        if vat_rate not in rates:
            raise ApplicationError(
                f"Invoice {original.number} has no VAT rate {vat_rate}: choose one of its own."
            )
        rate = _str(Decimal(vat_rate).normalize()) if vat_rate is not None else None
        line = InvoiceLine(
            invoice=original,
            cdr=None,
            position=1,
            currency=original.currency,
            description=f"Credit: {reason}"[:255],
            vat_rate=vat_rate,
            amount_excl_vat=-amount,
            vat_amount=ZERO,
            amount_incl_vat=ZERO,
            vat_breakdown=[{"rate": rate, "base": _str(-amount), "stated_vat": "0"}],
        )
        return _credit_note(
            original,
            reason=reason,
            lines=[line],
            user=user,
            issue=issue,
            now=now,
            audit={"amount_excl_vat": _str(amount), "vat_rate": rate},
        )


def invoice_draft_discard(*, invoice_id: int, user: User | None = None) -> int:
    """Throw away a draft; its CDRs go back to billable and join the next period's invoice.
    Returns how many CDRs it released."""
    with transaction.atomic(durable=True):
        invoice = Invoice.objects.select_for_update(of=("self",)).get(pk=invoice_id)
        if invoice.is_issued:
            raise ApplicationError("Issued invoices are never deleted; credit them instead.")
        if invoice.kind == Invoice.Kind.CREDIT_NOTE:
            raise ApplicationError("Draft credit notes are issued, not discarded.")
        _audit(
            "invoice_discarded",
            invoice,
            user=user,
            period=invoice.period_id,
            total_incl_vat=_str(invoice.total_incl_vat),
        )
        released = invoice.lines.count()
        invoice.delete()
        return released


@transaction.atomic
def adhoc_payment_record(
    *,
    station_id: int,
    transaction_id: str,
    psp_ref: str,
    status: str,
    amount: Decimal,
    settled_at: dt.datetime,
    receipt_id: str = "",
    receipt_url: str = "",
    payload: dict[str, Any],
) -> AdHocPayment:
    """A payment settled at the station (OCPP 2.1 NotifySettlement): recorded against its
    session and the session's CDR (or the CDR made later); a re-sent one is recorded once."""
    if status not in AdHocPayment.Status.values:
        raise ApplicationError(f"unknown settlement status {status!r}")
    # The session row locked, as cdr_create_for_session locks it: either the CDR is made
    # first and is found here, or it is made after and finds this payment.
    session = (
        ChargingSession.objects.select_for_update(of=("self",))
        .filter(station_id=station_id, transaction_id=transaction_id)
        .order_by("-id")
        .first()
        if transaction_id
        else None
    )
    payment, created = AdHocPayment.objects.get_or_create(
        station_id=station_id,
        psp_ref=psp_ref[:255],
        status=status,
        defaults={
            "session": session,
            "cdr": _live_cdr(session) if session is not None else None,
            "transaction_id": transaction_id[:36],
            "amount": amount,
            "currency": session.live_cost_currency if session is not None else "",
            "settled_at": settled_at,
            "receipt_id": receipt_id[:50],
            "receipt_url": receipt_url[:2000],
            "payload": payload,
        },
    )
    if created:
        _audit(
            "adhoc_payment_recorded",
            payment,
            psp_ref=payment.psp_ref,
            status=status,
            amount=str(amount),
            session_id=session.pk if session is not None else None,
        )
    return payment

"""Writes of billing: CDRs from ended sessions, billing periods, invoices and credit notes.

Rules every function here keeps:
- CDRs and issued invoices are never changed: corrections are credit CDRs and credit notes.
- A CDR lands on exactly one invoice: `InvoiceLine.cdr` is unique, and the period close locks
  the CDRs it bills (select_for_update) and re-checks them under the lock.
- Invoice numbers come from a per-series counter row, read and advanced under a row lock in
  the issuing transaction: gapless and never duplicated, whatever the number of workers.
- Money is Decimal with its currency; only totals are rounded (to the currency's minor unit).
"""

from __future__ import annotations

import calendar
import datetime as dt
import logging
import uuid
from collections import defaultdict
from collections.abc import Iterable
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.utils import timezone

from billing.models import (
    BillingAuditEntry,
    BillingPeriod,
    Cdr,
    Invoice,
    InvoiceLine,
    InvoiceSeries,
    InvoiceVatLine,
    SettlementLine,
    SettlementStatement,
)
from cpo.lib.api import ApplicationError
from sessions.models import ChargingSession, CustomerAccount, MeterSample
from stations.models import Connector, Evse
from tariffs.rating import Amount, Rating, round_money
from tariffs.services import TariffNotFound, session_rate

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


def _session_rate(session: ChargingSession) -> Rating:
    # The tariffs app owns rating: usage from the samples, the frozen tariff, the site's zone.
    return session_rate(session=session)


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


def _tariff_snapshot(session: ChargingSession, rating: Rating) -> dict[str, Any] | None:
    if session.tariff_snapshot:
        return session.tariff_snapshot
    from tariffs.models import Tariff

    tariff = Tariff.objects.filter(tariff_id=rating.tariff_id).first()
    return tariff.to_ocpi() if tariff is not None else None


def _cdr_from_rating(session: ChargingSession, rating: Rating, *, revision: int) -> Cdr:
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
        tariff_snapshot=_tariff_snapshot(session, rating),
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
    return cdr


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


def cdr_create_for_session(*, session_id: int) -> Cdr | None:
    """Rate an ended session and store its CDR; idempotent (a second call returns the first CDR).

    A session that is still active, or held for review (`needs_review`), gets no CDR (None).
    The session row is locked so that two deliveries of the same task wait for each other
    instead of rating twice; the unique (session, revision) constraint backs that up.
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
            if session.needs_review:
                # Held for review (a refused start charged anyway): no CDR, so no invoice
                # line, until finance decides.
                logger.info("session %s needs review: no CDR", session_id)
                return None
            existing = Cdr.objects.filter(session=session, credit=False).order_by("-revision")
            if existing.exists():
                # Already rated once: later revisions come only from an explicit re-rate.
                return _live_cdr(session) or existing.first()
            try:
                rating = _session_rate(session)
            except TariffNotFound:
                logger.warning("session %s has no tariff: no CDR", session_id)
                return None
            cdr = _cdr_from_rating(session, rating, revision=1)
            _audit(
                "cdr_created",
                cdr,
                total_incl_vat=_str(cdr.total_cost_incl_vat),
                currency=cdr.currency,
            )
            return cdr
    except IntegrityError:
        return Cdr.objects.filter(session_id=session_id, credit=False).order_by("revision").first()


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
    _audit(
        "cdr_credited",
        credit,
        credit_of=cdr.uid,
        reason=reason,
        total_incl_vat=_str(credit.total_cost_incl_vat),
    )
    return credit


def cdr_credit(*, cdr_id: int, reason: str, user: User | None = None) -> Cdr:
    """Credit one CDR. An invoiced CDR's credit is billed with the next period (a negative
    line); an uninvoiced CDR and its credit cancel out and are billed to nobody."""
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
        cdr = _cdr_from_rating(session, _session_rate(session), revision=_next_revision(session))
        _audit(
            "cdr_rerated",
            cdr,
            user=user,
            reason=reason,
            total_incl_vat=_str(cdr.total_cost_incl_vat),
        )
        return cdr


def cdrs_create_missing(*, older_than: dt.timedelta, limit: int) -> int:
    """Rate ended sessions that have no CDR (a lost task, a worker that was down)."""
    now = timezone.now()
    # A bounded look-back: a session that can never be rated (no tariff at all) must not hold
    # the sweep's batch forever.
    ids = list(
        ChargingSession.objects.filter(
            status=ChargingSession.Status.COMPLETED,
            ended_at__lt=now - older_than,
            ended_at__gte=now - dt.timedelta(days=2),
            cdrs__isnull=True,
        )
        .order_by("ended_at")
        .values_list("pk", flat=True)[:limit]
    )
    made = 0
    for session_id in ids:
        try:
            made += cdr_create_for_session(session_id=session_id) is not None
        except Exception:  # one broken session must not block the rest of the sweep
            logger.exception("rating session %s failed", session_id)
    return made


# --- Billing periods ----------------------------------------------------------------------------


def period_bounds(kind: str, instant: dt.datetime) -> tuple[dt.datetime, dt.datetime]:
    """The [start, end) in UTC of the period of `kind` that contains `instant`."""
    day = instant.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    if kind == CustomerAccount.BillingPeriod.DAILY:
        return day, day + dt.timedelta(days=1)
    if kind == CustomerAccount.BillingPeriod.WEEKLY:
        start = day - dt.timedelta(days=day.weekday())
        return start, start + dt.timedelta(days=7)
    start = day.replace(day=1)
    days = calendar.monthrange(start.year, start.month)[1]
    return start, start + dt.timedelta(days=days)


def billing_period_ensure(
    *, account: CustomerAccount, instant: dt.datetime
) -> tuple[BillingPeriod, bool]:
    """The account's period that contains `instant`, opened when missing (race-safe: the
    unique (account, start) turns a concurrent second insert into a get)."""
    start, end = period_bounds(account.billing_period, instant)
    return BillingPeriod.objects.get_or_create(
        account=account, start=start, defaults={"end": end, "kind": account.billing_period}
    )


def billing_periods_ensure(*, now: dt.datetime | None = None) -> int:
    """Open the current and the previous period of every active account (idempotent)."""
    now = now or timezone.now()
    made = 0
    for account in CustomerAccount.objects.filter(is_active=True).order_by("pk"):
        current_start, _ = period_bounds(account.billing_period, now)
        for instant in (current_start - dt.timedelta(microseconds=1), now):
            made += billing_period_ensure(account=account, instant=instant)[1]
    return made


def _seller() -> dict[str, Any]:
    return dict(settings.BILLING_SELLER)


def _buyer(account: CustomerAccount) -> dict[str, Any]:
    return {
        "account_id": account.pk,
        "name": account.legal_name or account.name,
        "address": account.address,
        "postal_code": account.postal_code,
        "city": account.city,
        "country": account.country,
        "vat_id": account.vat_id,
        "email": account.email,
        "kind": account.kind,
    }


def _line_from_cdr(invoice: Invoice, position: int, cdr: Cdr) -> InvoiceLine:
    rates = {v["rate"] for v in cdr.vat_breakdown}
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
        station_identity=cdr.station_identity,
        evse_uid=cdr.evse_uid,
        token_visual_number=cdr.token_visual_number or cdr.token_uid,
        energy_kwh=cdr.total_energy_kwh.quantize(Decimal("0.001")),
        duration_minutes=minutes.quantize(Decimal("0.01")),
        description=f"{kind} {cdr.uid}"[:255],
        vat_rate=Decimal(rate) if rate is not None else None,
        amount_excl_vat=cdr.total_cost_excl_vat,
        vat_amount=cdr.total_vat,
        amount_incl_vat=cdr.total_cost_incl_vat,
    )


def _vat_table(cdrs: Iterable[Cdr]) -> dict[Decimal | None, tuple[Decimal, Decimal]]:
    table: dict[Decimal | None, tuple[Decimal, Decimal]] = defaultdict(lambda: (ZERO, ZERO))
    for cdr in cdrs:
        for part in cdr.vat_breakdown:
            rate = Decimal(part["rate"]) if part["rate"] is not None else None
            base, vat = table[rate]
            table[rate] = (base + Decimal(part["excl_vat"]), vat + Decimal(part["vat"]))
    return dict(table)


def _invoice_fill(invoice: Invoice, cdrs: list[Cdr]) -> None:
    """Lines, VAT table and totals of a draft; the totals are the sums of the lines."""
    lines = [_line_from_cdr(invoice, i, cdr) for i, cdr in enumerate(cdrs, start=1)]
    InvoiceLine.objects.bulk_create(lines)
    table = _vat_table(cdrs)
    InvoiceVatLine.objects.bulk_create(
        InvoiceVatLine(
            invoice=invoice,
            rate=rate,
            base_excl_vat=base,
            vat_amount=vat,
            total_incl_vat=base + vat,
        )
        for rate, (base, vat) in sorted(table.items(), key=lambda kv: (kv[0] is None, kv[0] or 0))
    )
    invoice.total_excl_vat = sum((line.amount_excl_vat for line in lines), ZERO)
    invoice.total_vat = sum((line.vat_amount for line in lines), ZERO)
    invoice.total_incl_vat = sum((line.amount_incl_vat for line in lines), ZERO)
    if invoice.total_excl_vat + invoice.total_vat != invoice.total_incl_vat:
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
    2. Find the account's billable CDRs that ended before the period's end (older ones that
       arrived late included), lock them in primary-key order (no deadlocks between two
       overlapping closes), and re-check them under the lock: a CDR invoiced or credited
       meanwhile is left out. `InvoiceLine.cdr` being unique is the last line of defence.
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
            .filter(account=account, end__lt=period.end)
            .values_list("pk", flat=True)
        )
        list(
            Cdr.objects.select_for_update()
            .filter(pk__in=candidate_ids)
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        # Under the lock, with a fresh snapshot: only what is still billable.
        cdrs = list(Cdr.objects.billable().filter(pk__in=candidate_ids).order_by("start", "pk"))
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


def _series_code(kind: str, when: dt.datetime) -> str:
    prefix = "CN" if kind == Invoice.Kind.CREDIT_NOTE else "INV"
    return f"{prefix}-{when.astimezone(UTC).year}"


def _invoice_issue(*, invoice_id: int, user: User | None, now: dt.datetime) -> Invoice:
    invoice = (
        Invoice.objects.select_for_update(of=("self",)).select_related("account").get(pk=invoice_id)
    )
    if invoice.is_issued:
        return invoice
    if not invoice.lines.exists():
        raise ApplicationError("An invoice without lines cannot be issued.")
    code = _series_code(invoice.kind, now)
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
    invoice.issue_date = now.astimezone(UTC).date()
    invoice.issued_by = user if user is not None and user.is_authenticated else None
    invoice.seller = _seller()
    invoice.buyer = _buyer(invoice.account)
    invoice.full_clean(exclude=["account", "period", "series", "credit_of", "issued_by"])
    invoice.save()
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


def invoice_credit(
    *,
    invoice_id: int,
    reason: str,
    user: User | None = None,
    issue: bool = True,
    now: dt.datetime | None = None,
) -> Invoice:
    """Credit an issued invoice in full with a credit note that references it.

    Every CDR of the invoice gets its credit CDR, on a line of the credit note; the sessions
    can then be re-rated and billed again with a later period.
    """
    now = now or timezone.now()
    if not reason.strip():
        raise ApplicationError("A credit note needs a reason.")
    with transaction.atomic(durable=True):
        original = (
            Invoice.objects.select_for_update(of=("self",))
            .select_related("account")
            .get(pk=invoice_id)
        )
        if not original.is_issued or original.kind != Invoice.Kind.INVOICE:
            raise ApplicationError("Only issued invoices can be credited.")
        if Invoice.objects.filter(credit_of=original).exists():
            raise ApplicationError(f"Invoice {original.number} is already credited.")
        cdrs = list(
            Cdr.objects.select_for_update()
            .filter(invoice_line__invoice=original)
            .order_by("invoice_line__position")
        )
        credited = [c.uid for c in cdrs if Cdr.objects.filter(credit_of=c).exists()]
        if credited:
            raise ApplicationError(f"CDRs already credited: {', '.join(credited)}")
        note = Invoice.objects.create(
            account=original.account,
            period=original.period,
            kind=Invoice.Kind.CREDIT_NOTE,
            currency=original.currency,
            period_start=original.period_start,
            period_end=original.period_end,
            credit_of=original,
            reason=reason[:255],
            seller=_seller(),
            buyer=_buyer(original.account),
        )
        _invoice_fill(note, [_credit_row(cdr, reason=reason) for cdr in cdrs])
        if note.total_incl_vat != -original.total_incl_vat:
            raise ApplicationError("The credit note does not mirror the invoice.")
        _audit("credit_note_drafted", note, user=user, credit_of=original.number, reason=reason)
        if issue:
            note = _invoice_issue(invoice_id=note.pk, user=user, now=now)
        return note


def invoice_draft_discard(*, invoice_id: int, user: User | None = None) -> int:
    """Throw away a draft; its CDRs go back to billable and join the next period's invoice."""
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
        invoice.delete()

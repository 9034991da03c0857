"""The VAT of an invoice: per rate, on the rate's base, rounded once. Plain Python.

The rule (README, Billing; `billing.services._invoice_fill`):

1. Every line brings its base per VAT rate: the CDR's amount excl. VAT, already rounded to the
   currency's minor unit (a CDR priced at several rates brings one rounded part per rate, the
   parts adding up to the CDR's rounded total).
2. Per rate: base = the sum of those rounded line parts; VAT = rate x base, rounded once to the
   minor unit, half up (away from zero, so a credit note mirrors its invoice exactly).
3. Each line part gets its share of its rate's VAT: rate x part base, rounded to a neighbouring
   minor unit so that the shares add up exactly to the rate's VAT (largest remainder: every
   share is within one minor unit of its exact value, ties go to the earlier line).
4. Line incl. VAT = line base + line VAT; invoice totals = sums of the per-rate bases and VATs,
   which are also the sums of the lines, to the cent.

A part without a rate (the tariff stated no VAT) keeps the VAT its CDR states (nothing to
compute it from; zero for every tariff without VAT).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal

from cpo.lib.money import currency_exponent, round_money

ZERO = Decimal(0)
HUNDRED = Decimal(100)

Rate = Decimal | None


@dataclass(frozen=True)
class VatPart:
    """One line's base at one rate; `stated_vat` is used only when `rate` is None."""

    line: int
    rate: Rate
    base: Decimal
    stated_vat: Decimal = ZERO


@dataclass(frozen=True)
class VatResult:
    per_rate: dict[Rate, tuple[Decimal, Decimal]]  # rate -> (base, VAT)
    part_vat: tuple[Decimal, ...]  # the VAT share of each part, in the order given


def rate_key(rate: Rate) -> tuple[bool, Decimal]:
    """Sort order of a VAT table: rates ascending, "no VAT" last."""
    return (rate is None, rate if rate is not None else ZERO)


def allocate(exact: Sequence[Decimal], total: Decimal, currency: str) -> list[Decimal]:
    """Round `exact` amounts to the minor unit so that they add up to `total` exactly.

    Largest remainder, computed on the side of `total`'s sign so that negating every amount
    negates every share (a full credit note mirrors its invoice line by line).
    """
    unit = Decimal(1).scaleb(-currency_exponent(currency))
    sign = -1 if total < 0 or (total == 0 and sum(exact, ZERO) < 0) else 1
    signed = [e * sign for e in exact]
    floors = [(e / unit).to_integral_value(rounding=ROUND_FLOOR) * unit for e in signed]
    extra = int((total * sign - sum(floors, ZERO)) / unit)
    if not 0 <= extra <= len(exact):  # impossible when total is the rounded sum of exact
        raise ValueError("total is not the rounded sum of the amounts")
    by_remainder = sorted(range(len(exact)), key=lambda i: (-(signed[i] - floors[i]), i))
    for i in by_remainder[:extra]:
        floors[i] += unit
    return [f * sign for f in floors]


def vat_per_rate(parts: Sequence[VatPart], currency: str) -> VatResult:
    """The VAT table and each part's VAT share under the rule above."""
    groups: dict[Rate, list[int]] = defaultdict(list)
    for index, part in enumerate(parts):
        groups[part.rate].append(index)
    shares: list[Decimal] = [ZERO] * len(parts)
    per_rate: dict[Rate, tuple[Decimal, Decimal]] = {}
    for rate in sorted(groups, key=rate_key):
        members = groups[rate]
        base = sum((round_money(parts[i].base, currency) for i in members), ZERO)
        if rate is None:
            for i in members:
                shares[i] = parts[i].stated_vat
            per_rate[rate] = (base, sum((parts[i].stated_vat for i in members), ZERO))
            continue
        vat = round_money(rate * base / HUNDRED, currency)
        exact = [rate * round_money(parts[i].base, currency) / HUNDRED for i in members]
        for i, share in zip(members, allocate(exact, vat, currency), strict=True):
            shares[i] = share
        per_rate[rate] = (base, vat)
    return VatResult(per_rate=per_rate, part_vat=tuple(shares))

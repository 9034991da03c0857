"""Money amounts in their ISO 4217 currency: the one table of minor units and rounding.

Plain Python (no Django), so the pure tariff engine can use it as well as every app's reads.
Round only totals, to the currency's minor unit; keep unrounded values for audit.
"""

from __future__ import annotations

import types
from collections.abc import Iterable, Mapping
from decimal import ROUND_HALF_UP, Decimal

ZERO = Decimal(0)

# ISO 4217 minor units that differ from 2. Everything else rounds to cents.
MINOR_UNITS: Mapping[str, int] = types.MappingProxyType(
    {
        "BHD": 3,
        "BIF": 0,
        "CLF": 4,
        "CLP": 0,
        "DJF": 0,
        "GNF": 0,
        "IQD": 3,
        "ISK": 0,
        "JOD": 3,
        "JPY": 0,
        "KMF": 0,
        "KRW": 0,
        "KWD": 3,
        "LYD": 3,
        "OMR": 3,
        "PYG": 0,
        "RWF": 0,
        "TND": 3,
        "UGX": 0,
        "UYI": 0,
        "UYW": 4,
        "VND": 0,
        "VUV": 0,
        "XAF": 0,
        "XOF": 0,
        "XPF": 0,
    }
)


def currency_exponent(currency: str) -> int:
    """Number of minor-unit digits of an ISO 4217 currency (2 unless listed otherwise)."""
    return MINOR_UNITS.get(currency.upper(), 2)


def round_money(amount: Decimal, currency: str) -> Decimal:
    """Round a money amount to the currency's minor unit, half up."""
    return amount.quantize(Decimal(1).scaleb(-currency_exponent(currency)), rounding=ROUND_HALF_UP)


def sum_by_currency(pairs: Iterable[tuple[str, Decimal | None]]) -> dict[str, Decimal]:
    """Unrounded totals per currency; an amount without a currency counts under "?"."""
    totals: dict[str, Decimal] = {}
    for currency, amount in pairs:
        if amount is not None:
            key = currency or "?"
            totals[key] = totals.get(key, ZERO) + amount
    return totals

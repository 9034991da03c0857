"""The VAT rule of invoices, as plain arithmetic: per rate, on the rate's base, rounded once."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from hypothesis import given
from hypothesis import strategies as st

from billing.vat import VatPart, allocate, vat_per_rate

D = Decimal
CENT = D("0.01")

cents = st.integers(min_value=-50_000, max_value=500_000).map(lambda n: D(n) / 100)
rates = st.sampled_from([D("21"), D("9"), D("19"), D("8.1"), D("0"), None])


@given(st.lists(st.tuples(rates, cents), min_size=1, max_size=60))
def test_each_rate_is_rounded_once_and_the_lines_add_up(parts: list) -> None:
    vat_parts = [VatPart(line=i, rate=rate, base=base) for i, (rate, base) in enumerate(parts)]
    result = vat_per_rate(vat_parts, "EUR")
    for rate, (base, vat) in result.per_rate.items():
        members = [i for i, p in enumerate(vat_parts) if p.rate == rate]
        assert base == sum((vat_parts[i].base for i in members), D(0))
        shares = [result.part_vat[i] for i in members]
        assert sum(shares, D(0)) == vat
        if rate is None:
            assert vat == 0
            continue
        assert vat == (rate * base / 100).quantize(CENT, rounding=ROUND_HALF_UP)
        for i, share in zip(members, shares, strict=True):
            assert abs(share - rate * vat_parts[i].base / 100) < CENT


@given(st.lists(st.tuples(st.sampled_from([D("21"), D("9")]), cents), min_size=1, max_size=40))
def test_negating_every_line_negates_every_share(parts: list) -> None:
    """A full credit note mirrors its invoice line by line, VAT included."""
    invoice = vat_per_rate([VatPart(i, r, b) for i, (r, b) in enumerate(parts)], "EUR")
    credit = vat_per_rate([VatPart(i, r, -b) for i, (r, b) in enumerate(parts)], "EUR")
    assert credit.part_vat == tuple(-v for v in invoice.part_vat)
    assert credit.per_rate == {r: (-b, -v) for r, (b, v) in invoice.per_rate.items()}


def test_the_reported_invoice() -> None:
    """Twenty-six lines of 2.03 whose CDRs say 0.42 VAT (2.45 incl., rounded on its own)."""
    bases = [D("2.03")] * 26 + [D("1.81")] * 272 + [D("1.60"), D("2.09")]
    result = vat_per_rate([VatPart(i, D("21"), b) for i, b in enumerate(bases)], "EUR")
    assert result.per_rate == {D("21"): (D("548.79"), D("115.25"))}
    assert sum(result.part_vat, D(0)) == D("115.25")
    # 21 % of 2.03 is 0.4263: the shares are 0.43 (or 0.42 where the rounding is carried).
    assert {result.part_vat[i] for i in range(26)} <= {D("0.42"), D("0.43")}


def test_allocate_keeps_zero_decimal_currencies_whole() -> None:
    assert allocate([D("10.5"), D("10.5"), D("10.5")], D("32"), "JPY") == [D(11), D(11), D(10)]

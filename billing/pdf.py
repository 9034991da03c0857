"""The PDF of an issued invoice or credit note (reportlab): seller and buyer with their
registration numbers, VAT ids and bank details, dates, payment terms and period, a line per
session (site, station, local start and stop, kWh, duration, tariff), the VAT table, totals.
Built from the frozen invoice only, so the same invoice always prints the same."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from typing import Any

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from billing.models import Invoice, InvoiceLine
from tariffs.rating import round_money


def _money(value: Decimal, currency: str) -> str:
    return f"{round_money(value, currency):f}"


def _party(data: dict[str, Any], heading: str) -> str:
    lines = [f"<b>{heading}</b>", _escape(data.get("name", ""))]
    lines.append(_escape(data.get("address", "")))
    lines.append(
        _escape(" ".join(filter(None, [data.get("postal_code", ""), data.get("city", "")])))
    )
    lines.append(_escape(data.get("country", "")))
    for key, label in (
        ("registration_number", "Reg. no."),
        ("vat_id", "VAT ID"),
        ("iban", "IBAN"),
        ("bic", "BIC"),
        ("email", "E-mail"),
        ("reference", "Customer no."),
    ):
        if data.get(key):
            lines.append(f"{label}: {_escape(data[key])}")
    return "<br/>".join(line for line in lines if line)


def _escape(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _local(moment: dt.datetime | None) -> str:
    return f"{moment:%Y-%m-%d %H:%M}" if moment is not None else ""


def _rate(rate: Decimal | None) -> str:
    return f"{rate.normalize():f} %" if rate is not None else "no VAT"


def _line_rate(line: InvoiceLine) -> str:
    if line.vat_rate is not None:
        return f"{line.vat_rate.normalize():f}"
    return "mixed" if len(line.vat_breakdown) > 1 else "none"


RULE = (
    "VAT is calculated once per rate on that rate's base (the sum of the line amounts excl. "
    "VAT) and rounded half up to the minor unit; each line shows its share of that VAT. "
    "Session times are local to the site, in the time zone shown on each line."
)


def invoice_pdf(invoice: Invoice) -> bytes:
    """Render an issued invoice; drafts have no number and no PDF."""
    if not invoice.is_issued:
        raise ValueError("only issued invoices have a PDF")
    styles = getSampleStyleSheet()
    small = styles["BodyText"].clone("small", fontSize=7, leading=8.5)
    currency = invoice.currency
    credit_note = invoice.kind == Invoice.Kind.CREDIT_NOTE
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=12 * mm,
        rightMargin=12 * mm,
        topMargin=15 * mm,
        bottomMargin=15 * mm,
        title=str(invoice.number),
        author=invoice.seller.get("name", ""),
    )
    title = "Credit note" if credit_note else "Invoice"
    story: list[Any] = [Paragraph(f"{title} {_escape(invoice.number or '')}", styles["Title"])]
    zone = invoice.time_zone or "UTC"
    facts = [f"Issue date: {invoice.issue_date.isoformat() if invoice.issue_date else ''}"]
    if invoice.due_date:
        facts.append(
            f"Due date: {invoice.due_date.isoformat()} "
            f"(payment terms: {invoice.payment_terms_days} days)"
        )
    dates = invoice.period_local_dates
    if dates is not None:
        facts.append(f"Period: {dates[0]:%Y-%m-%d} to {dates[1]:%Y-%m-%d} ({_escape(zone)})")
    if invoice.credit_of:
        facts.append(f"Credits invoice {_escape(invoice.credit_of.number or '')}")
    if invoice.reason:
        facts.append(f"Reason: {_escape(invoice.reason)}")
    facts.append(f"Currency: {currency}")
    story.append(Paragraph("<br/>".join(facts), styles["BodyText"]))
    story.append(Spacer(1, 6 * mm))
    parties = Table(
        [
            [
                Paragraph(_party(invoice.seller, "Seller"), styles["BodyText"]),
                Paragraph(_party(invoice.buyer, "Buyer"), styles["BodyText"]),
            ]
        ],
        colWidths=[93 * mm, 93 * mm],
    )
    story += [parties, Spacer(1, 6 * mm)]

    rows: list[list[Any]] = [
        [
            "#",
            "Start / stop (site time)",
            "Site / station",
            "Token",
            "Tariff",
            "kWh",
            "h:mm",
            "VAT %",
            "Excl. VAT",
            "VAT",
            "Incl. VAT",
        ]
    ]
    for line in invoice.lines.all():
        if line.session_start is not None:
            when = (
                f"{_local(line.local_start)}<br/>{_local(line.local_end)}"
                f"<br/>{_escape(line.site_time_zone or 'UTC')}"
            )
            site = f"{line.site_name} / {line.station_identity}"
        else:  # an amount credited, not a session
            when, site = "", line.description
        rows.append(
            [
                str(line.position),
                Paragraph(when, small),
                Paragraph(_escape(site), small),
                Paragraph(_escape(line.token_visual_number), small),
                Paragraph(_escape(line.tariff_label), small),
                f"{line.energy_kwh:f}",
                line.duration_label,
                _line_rate(line),
                _money(line.amount_excl_vat, currency),
                _money(line.vat_amount, currency),
                _money(line.amount_incl_vat, currency),
            ]
        )
    widths = [7, 27, 33, 22, 20, 13, 10, 10, 15, 13, 15]
    table = Table(rows, colWidths=[w * mm for w in widths], repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("FONTSIZE", (0, 0), (-1, -1), 7),
                ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                ("ALIGN", (5, 1), (-1, -1), "RIGHT"),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("LINEBELOW", (0, 0), (-1, 0), 0.5, colors.black),
            ]
        )
    )
    story += [table, Spacer(1, 6 * mm)]

    vat_rows = [["VAT rate", "Base", "VAT", "Total"]]
    for vat in invoice.vat_lines.all():
        vat_rows.append(
            [
                _rate(vat.rate),
                _money(vat.base_excl_vat, currency),
                _money(vat.vat_amount, currency),
                _money(vat.total_incl_vat, currency),
            ]
        )
    vat_rows.append(
        [
            "Total",
            _money(invoice.total_excl_vat, currency),
            _money(invoice.total_vat, currency),
            _money(invoice.total_incl_vat, currency),
        ]
    )
    vat_table = Table(vat_rows, colWidths=[30 * mm, 30 * mm, 30 * mm, 30 * mm], hAlign="RIGHT")
    vat_table.setStyle(
        TableStyle(
            [
                ("FONTSIZE", (0, 0), (-1, -1), 9),
                ("ALIGN", (1, 0), (-1, -1), "RIGHT"),
                ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                ("LINEABOVE", (0, -1), (-1, -1), 0.8, colors.black),
                ("FONTNAME", (0, -1), (-1, -1), "Helvetica-Bold"),
            ]
        )
    )
    story += [vat_table, Spacer(1, 4 * mm)]
    amount = f"{currency} {_money(abs(invoice.total_incl_vat), currency)}"
    story.append(
        Paragraph(
            f"<b>Amount {'credited' if credit_note else 'due'}: {amount}</b>", styles["Heading3"]
        )
    )
    seller = invoice.seller
    if not credit_note and invoice.due_date:
        payment = (
            f"Please pay {amount} by {invoice.due_date.isoformat()} to IBAN "
            f"{_escape(seller.get('iban', ''))}"
        )
        if seller.get("bic"):
            payment += f" (BIC {_escape(seller['bic'])})"
        payment += f", quoting {_escape(invoice.number or '')}."
        story.append(Paragraph(payment, styles["BodyText"]))
    story += [Spacer(1, 3 * mm), Paragraph(RULE, small)]
    doc.build(story)
    return buffer.getvalue()

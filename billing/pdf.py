"""The PDF of an issued invoice or credit note (reportlab): seller and buyer, lines, VAT table,
totals. Built from the frozen invoice only, so the same invoice always prints the same."""

from __future__ import annotations

import io
from decimal import Decimal

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from billing.models import Invoice
from tariffs.rating import round_money


def _money(value: Decimal, currency: str) -> str:
    return f"{round_money(value, currency):f}"


def _party(data: dict[str, str], heading: str) -> str:
    lines = [f"<b>{heading}</b>", data.get("name", "")]
    lines.append(data.get("address", ""))
    lines.append(" ".join(filter(None, [data.get("postal_code", ""), data.get("city", "")])))
    lines.append(data.get("country", ""))
    if data.get("vat_id"):
        lines.append(f"VAT ID: {data['vat_id']}")
    if data.get("iban"):
        lines.append(f"IBAN: {data['iban']}")
    return "<br/>".join(_escape(line) if i else line for i, line in enumerate(lines) if line)


def _escape(text: str) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def invoice_pdf(invoice: Invoice) -> bytes:
    """Render an issued invoice; drafts have no number and no PDF."""
    if not invoice.is_issued:
        raise ValueError("only issued invoices have a PDF")
    styles = getSampleStyleSheet()
    small = styles["BodyText"].clone("small", fontSize=8, leading=10)
    currency = invoice.currency
    buffer = io.BytesIO()
    doc = SimpleDocTemplate(
        buffer,
        pagesize=A4,
        leftMargin=15 * mm,
        rightMargin=15 * mm,
        topMargin=15 * mm,
        bottomMargin=15 * mm,
        title=str(invoice.number),
        author=invoice.seller.get("name", ""),
    )
    title = "Credit note" if invoice.kind == Invoice.Kind.CREDIT_NOTE else "Invoice"
    story: list = [Paragraph(f"{title} {_escape(invoice.number or '')}", styles["Title"])]
    facts = [f"Issue date: {invoice.issue_date.isoformat() if invoice.issue_date else ''}"]
    dates = invoice.period_local_dates
    if dates is not None:
        facts.append(
            f"Period: {dates[0]:%Y-%m-%d} to {dates[1]:%Y-%m-%d} ({invoice.time_zone or 'UTC'})"
        )
    if invoice.credit_of_id:
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
        colWidths=[90 * mm, 90 * mm],
    )
    story += [parties, Spacer(1, 6 * mm)]

    rows = [
        [
            "#",
            "Date (UTC)",
            "Site / station",
            "Token",
            "kWh",
            "Min",
            "VAT %",
            "Excl. VAT",
            "VAT",
            "Incl. VAT",
        ]
    ]
    for line in invoice.lines.all():
        rows.append(
            [
                str(line.position),
                f"{line.session_start:%Y-%m-%d %H:%M}",
                Paragraph(_escape(f"{line.site_name} / {line.station_identity}"), small),
                Paragraph(_escape(line.token_visual_number), small),
                f"{line.energy_kwh:f}",
                f"{line.duration_minutes:f}",
                f"{line.vat_rate.normalize():f}" if line.vat_rate is not None else "mixed",
                _money(line.amount_excl_vat, currency),
                _money(line.vat_amount, currency),
                _money(line.amount_incl_vat, currency),
            ]
        )
    widths = [8, 26, 40, 24, 14, 12, 12, 16, 14, 16]
    table = Table(rows, colWidths=[w * mm for w in widths], repeatRows=1)
    table.setStyle(
        TableStyle(
            [
                ("FONTSIZE", (0, 0), (-1, -1), 7.5),
                ("BACKGROUND", (0, 0), (-1, 0), colors.lightgrey),
                ("ALIGN", (4, 1), (-1, -1), "RIGHT"),
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
                f"{vat.rate.normalize():f} %" if vat.rate is not None else "no VAT",
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
    story.append(
        Paragraph(
            f"<b>Amount {'credited' if invoice.kind == Invoice.Kind.CREDIT_NOTE else 'due'}: "
            f"{currency} {_money(abs(invoice.total_incl_vat), currency)}</b>",
            styles["Heading3"],
        )
    )
    doc.build(story)
    return buffer.getvalue()

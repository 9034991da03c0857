"""The PDF of an issued invoice or credit note (reportlab): seller and buyer with their
registration numbers, VAT ids and bank details, dates, payment terms and period, a line per
session (site, station, local start and stop, kWh, duration, tariff), the VAT table, totals.
Built from the frozen invoice only, so the same invoice always prints the same: in the language
frozen with the buyer when it was issued (the billing profile's, else LANGUAGE_CODE), with that
language's labels, dates and decimal separator."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from typing import Any

from django.conf import settings
from django.utils import translation
from django.utils.formats import date_format, number_format
from django.utils.translation import gettext as _
from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.platypus import Paragraph, SimpleDocTemplate, Spacer, Table, TableStyle

from billing.models import Invoice, InvoiceLine
from tariffs.rating import round_money


def _number(value: Decimal) -> str:
    """A Decimal with its own decimals, in the active language's way (1,5 in nl and de)."""
    exponent = value.as_tuple().exponent
    return number_format(
        value, decimal_pos=-exponent if isinstance(exponent, int) and exponent < 0 else 0
    )


def _money(value: Decimal, currency: str) -> str:
    return _number(round_money(value, currency))


def _date(day: dt.date | None) -> str:
    return date_format(day, "SHORT_DATE_FORMAT") if day is not None else ""


def _party(data: dict[str, Any], heading: str) -> str:
    lines = [f"<b>{heading}</b>", _escape(data.get("name", ""))]
    lines.append(_escape(data.get("address", "")))
    lines.append(
        _escape(" ".join(filter(None, [data.get("postal_code", ""), data.get("city", "")])))
    )
    lines.append(_escape(data.get("country", "")))
    for key, label in (
        ("registration_number", _("Reg. no.")),
        ("vat_id", _("VAT ID")),
        ("iban", _("IBAN")),
        ("bic", _("BIC")),
        ("email", _("E-mail")),
        ("reference", _("Customer no.")),
    ):
        if data.get(key):
            lines.append(f"{label}: {_escape(data[key])}")
    return "<br/>".join(line for line in lines if line)


def _escape(text: Any) -> str:
    return str(text).replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _local(moment: dt.datetime | None) -> str:
    return date_format(moment, "SHORT_DATETIME_FORMAT") if moment is not None else ""


def _rate(rate: Decimal | None) -> str:
    return f"{_number(rate.normalize())} %" if rate is not None else _("no VAT")


def _line_rate(line: InvoiceLine) -> str:
    if line.vat_rate is not None:
        return _number(line.vat_rate.normalize())
    return _("mixed") if len(line.vat_breakdown) > 1 else _("none")


def invoice_language(invoice: Invoice) -> str:
    """The language the invoice prints in: the buyer's, frozen at issue, if the back office
    still has it; else LANGUAGE_CODE."""
    language = str(invoice.buyer.get("language") or "")
    return language if language in dict(settings.LANGUAGES) else settings.LANGUAGE_CODE


def invoice_pdf(invoice: Invoice) -> bytes:
    """Render an issued invoice; drafts have no number and no PDF."""
    if not invoice.is_issued:
        raise ValueError("only issued invoices have a PDF")
    with translation.override(invoice_language(invoice)):
        return _render(invoice)


def _render(invoice: Invoice) -> bytes:
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
    title = _("Credit note") if credit_note else _("Invoice")
    story: list[Any] = [Paragraph(f"{title} {_escape(invoice.number or '')}", styles["Title"])]
    zone = invoice.time_zone or "UTC"
    facts = [_("Issue date: %(date)s") % {"date": _date(invoice.issue_date)}]
    if invoice.due_date:
        facts.append(
            _("Due date: %(date)s (payment terms: %(days)s days)")
            % {"date": _date(invoice.due_date), "days": invoice.payment_terms_days}
        )
    dates = invoice.period_local_dates
    if dates is not None:
        facts.append(
            _("Period: %(first)s to %(last)s (%(zone)s)")
            % {"first": _date(dates[0]), "last": _date(dates[1]), "zone": _escape(zone)}
        )
    if invoice.credit_of:
        facts.append(
            _("Credits invoice %(number)s") % {"number": _escape(invoice.credit_of.number or "")}
        )
    if invoice.reason:
        facts.append(_("Reason: %(reason)s") % {"reason": _escape(invoice.reason)})
    facts.append(_("Currency: %(currency)s") % {"currency": currency})
    story.append(Paragraph("<br/>".join(facts), styles["BodyText"]))
    story.append(Spacer(1, 6 * mm))
    parties = Table(
        [
            [
                Paragraph(_party(invoice.seller, _("Seller")), styles["BodyText"]),
                Paragraph(_party(invoice.buyer, _("Buyer")), styles["BodyText"]),
            ]
        ],
        colWidths=[93 * mm, 93 * mm],
    )
    story += [parties, Spacer(1, 6 * mm)]

    rows: list[list[Any]] = [
        [
            "#",
            _("Start / stop (site time)"),
            _("Site / station"),
            _("Token"),
            _("Tariff"),
            "kWh",
            "h:mm",
            _("VAT %"),
            _("Excl. VAT"),
            _("VAT"),
            _("Incl. VAT"),
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
                _number(line.energy_kwh),
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

    vat_rows = [[_("VAT rate"), _("Base"), _("VAT"), _("Total")]]
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
            _("Total"),
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
    summary = _("Amount credited: %(amount)s") if credit_note else _("Amount due: %(amount)s")
    story.append(Paragraph(f"<b>{summary % {'amount': amount}}</b>", styles["Heading3"]))
    seller = invoice.seller
    if not credit_note and invoice.due_date:
        values = {
            "amount": amount,
            "date": _date(invoice.due_date),
            "iban": _escape(seller.get("iban", "")),
            "bic": _escape(seller.get("bic", "")),
            "number": _escape(invoice.number or ""),
        }
        if seller.get("bic"):
            payment = (
                _(
                    "Please pay %(amount)s by %(date)s to IBAN %(iban)s (BIC %(bic)s), "
                    "quoting %(number)s."
                )
                % values
            )
        else:
            payment = (
                _("Please pay %(amount)s by %(date)s to IBAN %(iban)s, quoting %(number)s.")
                % values
            )
        story.append(Paragraph(payment, styles["BodyText"]))
    rule = _(
        "VAT is calculated once per rate on that rate's base (the sum of the line amounts excl. "
        "VAT) and rounded half up to the minor unit; each line shows its share of that VAT. "
        "Session times are local to the site, in the time zone shown on each line."
    )
    story += [Spacer(1, 3 * mm), Paragraph(rule, small)]
    doc.build(story)
    return buffer.getvalue()

"""Finance exports (django-import-export): invoices, invoice lines and CDRs, CSV and XLSX.

The columns are fixed and locale-free, so a spreadsheet or an accounting import reads them the
same everywhere:

- CSV: ISO 8601 dates, UTC times with their offset (and local times with the zone named in
  a column beside them), a decimal point and no thousands separator, money rounded to the
  currency's minor unit, a currency column on every row. Formula-like text is escaped by the
  project's one rule (`cpo.lib.spreadsheets.formula_escape`); numbers, negative ones included,
  are left as they are.
- XLSX: real dates and date-times (UTC columns in UTC, local columns in local time: Excel
  has no time zones), money as numbers with a money number format of the row's currency, a
  sheet named after what it holds; no cell is ever a formula (`xlsx_cell_set`).
- The invoice-lines export has one row per line (`row_type` "line") and, per currency, a
  totals row (`row_type` "total") that sums the money and energy columns above it.
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from decimal import Decimal
from typing import Any

import tablib
from import_export import fields, resources, widgets

from billing.models import Cdr, Invoice, InvoiceLine, SettlementLine
from cpo.lib.money import currency_exponent
from cpo.lib.spreadsheets import SafeCSV, SafeXLSX, xlsx_cell_set
from tariffs.rating import round_money


class IsoDateTimeWidget(widgets.Widget):
    """UTC date-times and dates: ISO 8601 text in CSV, real (naive UTC) values in XLSX."""

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> Any:
        if value is None:
            return ""
        if isinstance(value, dt.datetime):
            value = value.astimezone(dt.UTC)
            return (
                value.replace(tzinfo=None) if kwargs.get("force_native_type") else value.isoformat()
            )
        return value if kwargs.get("force_native_type") else value.isoformat()


class PlainDecimalWidget(widgets.Widget):
    """A decimal point, no grouping, whatever the locale; numbers stay numbers in XLSX."""

    def __init__(self, places: int | None = None) -> None:
        super().__init__()
        self.places = places

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> Any:
        if value is None:
            return ""
        value = Decimal(value)
        if self.places is not None:
            value = value.quantize(Decimal(1).scaleb(-self.places))
        if kwargs.get("force_native_type"):
            return value
        return format(value, "f")


class MoneyField(fields.Field):
    """Money rounded to the minor unit of the row's own currency."""

    def __init__(self, attribute: str, column_name: str, currency: str = "currency") -> None:
        super().__init__(attribute=attribute, column_name=column_name)
        self.currency = currency

    def export(self, instance: Any, **kwargs: Any) -> Any:
        value = self.get_value(instance)
        if value is None:
            return ""
        currency = instance
        for part in self.currency.split("__"):
            currency = getattr(currency, part)
        rounded = round_money(Decimal(value), str(currency))
        return rounded if kwargs.get("force_native_type") else format(rounded, "f")


class LocalTimeField(fields.Field):
    """A UTC instant shown in the zone named by another attribute (UTC when empty)."""

    def __init__(self, attribute: str, column_name: str, zone: str) -> None:
        super().__init__(attribute=attribute, column_name=column_name)
        self.zone = zone

    def export(self, instance: Any, **kwargs: Any) -> Any:
        value = self.get_value(instance)
        if value is None:
            return ""
        zone = getattr(instance, self.zone) or "UTC"
        local = value.astimezone(zoneinfo.ZoneInfo(zone))
        if kwargs.get("force_native_type"):
            return local.replace(tzinfo=None)
        return local.isoformat()


class PeriodDayField(fields.Field):
    """The first (index 0) or last (1) local day of an invoice's period, as a date."""

    def __init__(self, column_name: str, index: int, invoice: str = "") -> None:
        super().__init__(column_name=column_name)
        self.index = index
        self.invoice = invoice

    def export(self, instance: Any, **kwargs: Any) -> Any:
        invoice = getattr(instance, self.invoice) if self.invoice else instance
        days = invoice.period_local_dates
        if days is None:
            return ""
        day = days[self.index]
        return day if kwargs.get("force_native_type") else day.isoformat()


def _field(attribute: str, column: str, widget: widgets.Widget | None = None) -> fields.Field:
    return fields.Field(attribute=attribute, column_name=column, widget=widget or widgets.Widget())


def _money(attribute: str, column: str, currency: str = "currency") -> fields.Field:
    return MoneyField(attribute, column, currency)


def _date(attribute: str, column: str) -> fields.Field:
    return _field(attribute, column, IsoDateTimeWidget())


class FinanceResource(resources.ModelResource):
    """An export with a readable sheet name, whose money columns the XLSX writer formats, and
    (when `total_columns` is set) a totals row per currency."""

    sheet_title = "Export"
    currency_column = "currency"
    total_columns: tuple[str, ...] = ()  # column names summed in the totals rows
    row_type_column = "row_type"

    def money_columns(self) -> list[str]:
        return [str(f.column_name) for f in self.get_export_fields() if isinstance(f, MoneyField)]

    def after_export(self, queryset: Any, dataset: tablib.Dataset, **kwargs: Any) -> None:
        super().after_export(queryset, dataset, **kwargs)
        dataset.title = self.sheet_title
        # Read by the XLSX format: which columns are money, and in which currency.
        dataset.money_columns = self.money_columns()
        dataset.currency_column = self.currency_column
        if self.total_columns:
            self._append_totals(dataset, native=bool(kwargs.get("force_native_type")))

    def _append_totals(self, dataset: tablib.Dataset, *, native: bool) -> None:
        headers = list(dataset.headers or [])
        currency_at = headers.index(self.currency_column)
        sums: dict[str, dict[str, Decimal]] = {}
        for row in list(dataset):
            totals = sums.setdefault(str(row[currency_at]), {})
            for column in self.total_columns:
                cell = row[headers.index(column)]
                totals[column] = totals.get(column, Decimal(0)) + Decimal(str(cell or 0))
        for currency, totals in sorted(sums.items()):
            row = ["" for _ in headers]
            row[headers.index(self.row_type_column)] = "total"
            row[currency_at] = currency
            for column, total in totals.items():
                row[headers.index(column)] = total if native else format(total, "f")
            dataset.append(row)


class InvoiceResource(FinanceResource):
    sheet_title = "Invoices"
    number = _field("number", "number")
    kind = _field("kind", "kind")
    status = _field("status", "status")
    credit_of = _field("credit_of__number", "credit_of")
    reason = _field("reason", "reason")
    issue_date = _date("issue_date", "issue_date")
    payment_terms_days = _field("payment_terms_days", "payment_terms_days")
    due_date = _date("due_date", "due_date")
    account_id = _field("account_id", "account_id")
    account = fields.Field(column_name="account")
    account_vat_id = fields.Field(column_name="account_vat_id")
    account_registration_number = fields.Field(column_name="account_registration_number")
    period_first_day = PeriodDayField("period_first_day", 0)
    period_last_day = PeriodDayField("period_last_day", 1)
    time_zone = _field("time_zone", "time_zone")
    period_start = _date("period_start", "period_start")
    period_end = _date("period_end", "period_end")
    currency = _field("currency", "currency")
    total_excl_vat = _money("total_excl_vat", "total_excl_vat")
    total_vat = _money("total_vat", "total_vat")
    total_incl_vat = _money("total_incl_vat", "total_incl_vat")

    class Meta:
        model = Invoice
        fields = export_order = (
            "number",
            "kind",
            "status",
            "credit_of",
            "reason",
            "issue_date",
            "payment_terms_days",
            "due_date",
            "account_id",
            "account",
            "account_vat_id",
            "account_registration_number",
            "period_first_day",
            "period_last_day",
            "time_zone",
            "period_start",
            "period_end",
            "currency",
            "total_excl_vat",
            "total_vat",
            "total_incl_vat",
        )

    def dehydrate_account_registration_number(self, invoice: Invoice) -> str:
        return str(invoice.buyer.get("registration_number", ""))

    # The buyer as issued (frozen on the invoice), not as the account reads today.
    def dehydrate_account(self, invoice: Invoice) -> str:
        return str(invoice.buyer.get("name", ""))

    def dehydrate_account_vat_id(self, invoice: Invoice) -> str:
        return str(invoice.buyer.get("vat_id", ""))


class InvoiceLineResource(FinanceResource):
    sheet_title = "Invoice lines"
    total_columns = ("energy_kwh", "amount_excl_vat", "vat_amount", "amount_incl_vat")
    row_type = fields.Field(column_name="row_type")
    invoice_number = _field("invoice__number", "invoice_number")
    invoice_kind = _field("invoice__kind", "invoice_kind")
    issue_date = _date("invoice__issue_date", "issue_date")
    due_date = _date("invoice__due_date", "due_date")
    account_id = _field("invoice__account_id", "account_id")
    account = fields.Field(column_name="account")
    period_first_day = PeriodDayField("period_first_day", 0, invoice="invoice")
    period_last_day = PeriodDayField("period_last_day", 1, invoice="invoice")
    position = _field("position", "line")
    description = _field("description", "description")
    session_start = _date("session_start", "session_start")
    session_end = _date("session_end", "session_end")
    session_start_local = LocalTimeField("session_start", "session_start_local", "site_time_zone")
    session_end_local = LocalTimeField("session_end", "session_end_local", "site_time_zone")
    site_time_zone = _field("site_time_zone", "site_time_zone")
    site = _field("site_name", "site")
    station = _field("station_identity", "station")
    evse = _field("evse_uid", "evse")
    token = _field("token_visual_number", "token_visual_number")
    tariff_id = _field("tariff_id", "tariff_id")
    tariff_version = _field("tariff_version", "tariff_version")
    energy_kwh = _field("energy_kwh", "energy_kwh", PlainDecimalWidget(3))
    duration_minutes = _field("duration_minutes", "duration_minutes", PlainDecimalWidget(2))
    vat_rate = _field("vat_rate", "vat_rate", PlainDecimalWidget())
    currency = _field("currency", "currency")
    amount_excl_vat = _money("amount_excl_vat", "amount_excl_vat")
    vat_amount = _money("vat_amount", "vat_amount")
    amount_incl_vat = _money("amount_incl_vat", "amount_incl_vat")
    cdr = _field("cdr__uid", "cdr")

    class Meta:
        model = InvoiceLine
        fields = export_order = (
            "row_type",
            "invoice_number",
            "invoice_kind",
            "issue_date",
            "due_date",
            "account_id",
            "account",
            "period_first_day",
            "period_last_day",
            "position",
            "description",
            "session_start",
            "session_end",
            "session_start_local",
            "session_end_local",
            "site_time_zone",
            "site",
            "station",
            "evse",
            "token",
            "tariff_id",
            "tariff_version",
            "energy_kwh",
            "duration_minutes",
            "vat_rate",
            "currency",
            "amount_excl_vat",
            "vat_amount",
            "amount_incl_vat",
            "cdr",
        )

    def dehydrate_account(self, line: InvoiceLine) -> str:
        return str(line.invoice.buyer.get("name", ""))

    def dehydrate_row_type(self, line: InvoiceLine) -> str:
        return "line"


class CdrResource(FinanceResource):
    sheet_title = "CDRs"
    uid = _field("uid", "cdr")
    credit = _field("credit", "credit")
    credit_of = _field("credit_of__uid", "credit_of")
    session = _field("session__uid", "session")
    account_id = _field("account_id", "account_id")
    account = _field("account__name", "account")
    start = _date("start", "start")
    end = _date("end", "end")
    site = _field("site_name", "site")
    station = _field("station_identity", "station")
    evse = _field("evse_uid", "evse")
    connector = _field("connector_id", "connector")
    token_uid = _field("token_uid", "token_uid")
    token_visual_number = _field("token_visual_number", "token_visual_number")
    energy_kwh = _field("total_energy_kwh", "energy_kwh", PlainDecimalWidget(6))
    time_h = _field("total_time_h", "time_h", PlainDecimalWidget(6))
    parking_time_h = _field("total_parking_time_h", "parking_time_h", PlainDecimalWidget(6))
    currency = _field("currency", "currency")
    fixed_cost = _money("total_fixed_cost_excl_vat", "fixed_cost_excl_vat")
    energy_cost = _money("total_energy_cost_excl_vat", "energy_cost_excl_vat")
    time_cost = _money("total_time_cost_excl_vat", "time_cost_excl_vat")
    parking_cost = _money("total_parking_cost_excl_vat", "parking_cost_excl_vat")
    reservation_cost = _money("total_reservation_cost_excl_vat", "reservation_cost_excl_vat")
    total_excl_vat = _money("total_cost_excl_vat", "total_excl_vat")
    total_vat = _money("total_vat", "total_vat")
    total_incl_vat = _money("total_cost_incl_vat", "total_incl_vat")
    invoice = fields.Field(column_name="invoice_number")

    class Meta:
        model = Cdr
        fields = export_order = (
            "uid",
            "credit",
            "credit_of",
            "session",
            "account_id",
            "account",
            "start",
            "end",
            "site",
            "station",
            "evse",
            "connector",
            "token_uid",
            "token_visual_number",
            "energy_kwh",
            "time_h",
            "parking_time_h",
            "currency",
            "fixed_cost",
            "energy_cost",
            "time_cost",
            "parking_cost",
            "reservation_cost",
            "total_excl_vat",
            "total_vat",
            "total_incl_vat",
            "invoice",
        )

    def dehydrate_invoice(self, cdr: Cdr) -> str:
        line = getattr(cdr, "invoice_line", None)
        return (line.invoice.number or "") if line is not None else ""


class SettlementLineResource(FinanceResource):
    sheet_title = "Settlement lines"
    currency_column = "currency"
    partner = _field("statement__account__name", "partner")
    period_start = _date("statement__period__start", "period_start")
    period_end = _date("statement__period__end", "period_end")
    cdr = _field("cdr__uid", "cdr")
    credit = _field("cdr__credit", "credit")
    token_uid = _field("cdr__token_uid", "token_uid")
    contract_id = fields.Field(column_name="contract_id")
    start = _date("cdr__start", "start")
    end = _date("cdr__end", "end")
    station = _field("cdr__station_identity", "station")
    energy_kwh = _field("cdr__total_energy_kwh", "energy_kwh", PlainDecimalWidget(6))
    currency = _field("cdr__currency", "currency")
    total_excl_vat = _money("cdr__total_cost_excl_vat", "total_excl_vat", "cdr__currency")
    total_incl_vat = _money("cdr__total_cost_incl_vat", "total_incl_vat", "cdr__currency")

    class Meta:
        model = SettlementLine
        fields = export_order = (
            "partner",
            "period_start",
            "period_end",
            "cdr",
            "credit",
            "token_uid",
            "contract_id",
            "start",
            "end",
            "station",
            "energy_kwh",
            "currency",
            "total_excl_vat",
            "total_incl_vat",
        )

    def dehydrate_contract_id(self, line: SettlementLine) -> str:
        return str(line.cdr.token_snapshot.get("contract_id", ""))


class FinanceCSV(SafeCSV):
    """CSV with formula injection escaped (OWASP's CSV injection rule, `formula_escape`)."""


class FinanceXLSX(SafeXLSX):
    """XLSX written cell by cell: a named sheet, bold frozen header, dates and date-times as
    such, money with the number format of its row's currency, and text always text (a value
    starting with "=" is never stored as a formula)."""

    def export_data(self, dataset: tablib.Dataset, **kwargs: Any) -> bytes:
        from openpyxl.utils import get_column_letter

        book, sheet = self.sheet_start(dataset)
        headers = list(dataset.headers or [])
        money = set(getattr(dataset, "money_columns", []))
        currency_column = getattr(dataset, "currency_column", "currency")
        currency_at = headers.index(currency_column) if currency_column in headers else None
        for r, row in enumerate(dataset, start=2):
            places = currency_exponent(str(row[currency_at])) if currency_at is not None else 2
            money_format = "#,##0" + ("." + "0" * places if places else "")
            for c, value in enumerate(row, start=1):
                cell = sheet.cell(row=r, column=c)
                if value == "" or value is None:
                    continue
                xlsx_cell_set(cell, value)
                if isinstance(value, dt.datetime):
                    cell.number_format = "yyyy-mm-dd hh:mm:ss"
                elif isinstance(value, dt.date):
                    cell.number_format = "yyyy-mm-dd"
                elif headers[c - 1] in money:
                    cell.number_format = money_format
        for c, header in enumerate(headers, start=1):
            sheet.column_dimensions[get_column_letter(c)].width = max(12, len(str(header)) + 2)
        return self.book_bytes(book)

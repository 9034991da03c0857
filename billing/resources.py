"""Finance exports (django-import-export): invoices, invoice lines and CDRs, CSV and XLSX.

The columns are fixed and locale-free, so a spreadsheet or an accounting import reads them the
same everywhere: ISO 8601 dates and UTC times, a decimal point and no thousands separator,
money rounded to the currency's minor unit, and a currency column on every row.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any, cast

from import_export import fields, resources, widgets

from billing.models import Cdr, Invoice, InvoiceLine, SettlementLine
from tariffs.rating import round_money


class IsoDateTimeWidget(widgets.Widget):
    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> str:
        if value is None:
            return ""
        if isinstance(value, dt.datetime):
            return value.astimezone(dt.UTC).isoformat()
        return cast(str, value.isoformat())


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


def _field(attribute: str, column: str, widget: widgets.Widget | None = None) -> fields.Field:
    return fields.Field(attribute=attribute, column_name=column, widget=widget or widgets.Widget())


def _money(attribute: str, column: str, currency: str = "currency") -> fields.Field:
    return MoneyField(attribute, column, currency)


def _date(attribute: str, column: str) -> fields.Field:
    return _field(attribute, column, IsoDateTimeWidget())


class InvoiceResource(resources.ModelResource):
    number = _field("number", "number")
    kind = _field("kind", "kind")
    status = _field("status", "status")
    credit_of = _field("credit_of__number", "credit_of")
    issue_date = _date("issue_date", "issue_date")
    account_id = _field("account_id", "account_id")
    account = fields.Field(column_name="account")
    account_vat_id = fields.Field(column_name="account_vat_id")
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
            "issue_date",
            "account_id",
            "account",
            "account_vat_id",
            "period_start",
            "period_end",
            "currency",
            "total_excl_vat",
            "total_vat",
            "total_incl_vat",
        )

    # The buyer as issued (frozen on the invoice), not as the account reads today.
    def dehydrate_account(self, invoice: Invoice) -> str:
        return str(invoice.buyer.get("name", ""))

    def dehydrate_account_vat_id(self, invoice: Invoice) -> str:
        return str(invoice.buyer.get("vat_id", ""))


class InvoiceLineResource(resources.ModelResource):
    invoice_number = _field("invoice__number", "invoice_number")
    invoice_kind = _field("invoice__kind", "invoice_kind")
    issue_date = _date("invoice__issue_date", "issue_date")
    account_id = _field("invoice__account_id", "account_id")
    account = fields.Field(column_name="account")
    position = _field("position", "line")
    session_start = _date("session_start", "session_start")
    session_end = _date("session_end", "session_end")
    site = _field("site_name", "site")
    station = _field("station_identity", "station")
    evse = _field("evse_uid", "evse")
    token = _field("token_visual_number", "token_visual_number")
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
            "invoice_number",
            "invoice_kind",
            "issue_date",
            "account_id",
            "account",
            "position",
            "session_start",
            "session_end",
            "site",
            "station",
            "evse",
            "token",
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


class CdrResource(resources.ModelResource):
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


class SettlementLineResource(resources.ModelResource):
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

"""Forms of the billing panel: the credit note of one invoice, and the reason of a bulk credit."""

from __future__ import annotations

from decimal import Decimal
from typing import Any, cast

from django import forms

from billing.models import Invoice, InvoiceLine

NO_VAT = "none"


class CreditReasonForm(forms.Form):
    reason = forms.CharField(max_length=255, help_text="Printed on the credit note.")


class InvoiceCreditForm(forms.Form):
    """What to credit of one issued invoice: everything left, some lines, or an amount."""

    MODES = [
        ("all", "Everything not credited yet"),
        ("lines", "The selected lines"),
        ("amount", "An amount"),
    ]

    reason = forms.CharField(max_length=255, help_text="Printed on the credit note.")
    mode = forms.ChoiceField(choices=MODES, widget=forms.RadioSelect, initial="all")
    lines = forms.ModelMultipleChoiceField(
        queryset=InvoiceLine.objects.none(),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    amount_excl_vat = forms.DecimalField(
        required=False, min_value=Decimal("0.01"), max_digits=14, decimal_places=2
    )
    vat_rate = forms.ChoiceField(required=False)

    def __init__(self, *args: Any, invoice: Invoice, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.invoice = invoice
        lines = self.fields["lines"]
        lines.queryset = invoice.lines.filter(  # type: ignore[attr-defined]
            cdr__isnull=False, cdr__credit=False, cdr__credit_cdr__isnull=True
        ).order_by("position")
        lines.label_from_instance = self._line_label  # type: ignore[attr-defined]
        rates = list(invoice.vat_lines.values_list("rate", flat=True))
        vat_rate = cast(forms.ChoiceField, self.fields["vat_rate"])
        vat_rate.choices = [
            (
                NO_VAT if r is None else f"{r.normalize():f}",
                "no VAT" if r is None else f"{r.normalize():f} %",
            )
            for r in rates
        ]
        if len(rates) == 1:
            vat_rate.initial = list(vat_rate.choices)[0][0]

    @staticmethod
    def _line_label(line: InvoiceLine) -> str:
        start = line.local_start
        when = f"{start:%Y-%m-%d %H:%M}" if start is not None else ""
        return (
            f"#{line.position} {when} {line.site_name} / {line.station_identity}: "
            f"{line.currency} {line.amount_incl_vat:.2f}"
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        mode = data.get("mode")
        if mode == "lines" and not data.get("lines"):
            self.add_error("lines", "Select the lines to credit.")
        if mode == "amount":
            if data.get("amount_excl_vat") is None:
                self.add_error("amount_excl_vat", "Give the amount to credit, excl. VAT.")
            if not data.get("vat_rate"):
                self.add_error("vat_rate", "Choose the VAT rate of the amount.")
        return data

    @property
    def rate(self) -> Decimal | None:
        value = self.cleaned_data.get("vat_rate")
        return None if value in (None, "", NO_VAT) else Decimal(str(value))

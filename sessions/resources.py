"""Import and export of tokens, drivers and accounts (CSV and XLSX, django-import-export).

Drivers and accounts: an import is all or nothing: every row is validated (model `full_clean`,
uniqueness included, so a reference twice in one file is caught on its second row), and one
invalid row rolls the whole file back. Accounts and drivers are referred to by their reference
(customer / driver number), or by `#<id>` when they have none; group tokens by uid.

Tokens: `IdTokenResource` defines the columns of the export and how each column of an imported
file is read; files of tokens (tens of thousands of cards) are imported by a Celery task in
chunks (`sessions.token_import`), not in one transaction.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time
from typing import Any

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime
from import_export import fields, resources, widgets
from import_export.results import RowResult

from sessions.models import CustomerAccount, Driver, IdToken, normalize_uid
from sessions.services import ACCOUNT_FIELDS, id_tokens_imported


class ReferenceWidget(widgets.Widget):
    """An account or driver by its reference, or `#<id>` for one without a reference."""

    def __init__(self, model: type[CustomerAccount] | type[Driver], label: str):
        super().__init__()
        self.model = model
        self.label = label

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> Any:
        text = str(value).strip() if value is not None else ""
        if not text:
            return None
        if text.startswith("#") and text[1:].isdigit():
            found = self.model.objects.filter(pk=int(text[1:])).first()
        else:
            found = self.model.objects.filter(reference=text).first()
        if found is None:
            raise ValueError(f"no {self.label} {text!r}")
        return found

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> str:
        if value is None:
            return ""
        return value.reference or f"#{value.pk}"


class GroupTokenWidget(widgets.Widget):
    """The group token (1.6 parentIdTag / 2.0.1 groupIdToken) by its uid, in any case."""

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> IdToken | None:
        text = str(value).strip() if value is not None else ""
        if not text:
            return None
        found = IdToken.objects.filter(uid_normalized=normalize_uid(text)).order_by("pk")
        group = found.first()
        if group is None:
            raise ValueError(f"no group token {text!r}")
        return group

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> str:
        return value.uid if value is not None else ""


class StrictBooleanWidget(widgets.Widget):
    """Yes/no columns: an unreadable value is an error, not silently "no"."""

    TRUE = {"1", "true", "yes", "y"}
    FALSE = {"0", "false", "no", "n"}

    def __init__(self, default: bool):
        super().__init__()
        self.default = default

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> bool:
        if isinstance(value, bool):
            return value
        text = str(value).strip().lower() if value is not None else ""
        if not text:
            return self.default
        if text in self.TRUE:
            return True
        if text in self.FALSE:
            return False
        raise ValueError(f"{value!r} is not yes/no (1/0, true/false)")

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> str:
        return "1" if value else "0"


class UtcDateTimeWidget(widgets.Widget):
    """ISO 8601 date or date-time; one without an offset is UTC, a bare date is its midnight."""

    def clean(self, value: Any, row: Any = None, **kwargs: Any) -> datetime | None:
        if value is None or (isinstance(value, str) and not value.strip()):
            return None
        parsed: datetime | None
        if isinstance(value, datetime):
            parsed = value
        elif isinstance(value, date):
            parsed = datetime.combine(value, time.min)
        else:
            text = str(value).strip()
            try:
                parsed = parse_datetime(text.replace(" ", "T", 1))
                if parsed is None:
                    day = parse_date(text)
                    parsed = datetime.combine(day, time.min) if day else None
            except ValueError:
                parsed = None
            if parsed is None:
                raise ValueError(f"{text!r} is not a date (YYYY-MM-DD or ISO 8601 date-time)")
        if timezone.is_naive(parsed):
            parsed = timezone.make_aware(parsed, UTC)
        return parsed

    def render(self, value: Any, obj: Any = None, **kwargs: Any) -> str:
        if value is None:
            return ""
        return value.astimezone(UTC).isoformat().replace("+00:00", "Z")


class AllOrNothingResource(resources.ModelResource):
    """Every import runs in one transaction and is rolled back by any invalid row."""

    def import_data(
        self,
        dataset: Any,
        dry_run: bool = False,
        raise_errors: bool = False,
        use_transactions: bool | None = None,
        collect_failed_rows: bool = False,
        rollback_on_validation_errors: bool = False,
        **kwargs: Any,
    ) -> Any:
        return super().import_data(
            dataset,
            dry_run=dry_run,
            raise_errors=raise_errors,
            use_transactions=True,
            collect_failed_rows=collect_failed_rows,
            rollback_on_validation_errors=True,
            **kwargs,
        )

    @staticmethod
    def written_ids(result: Any) -> list[int]:
        kinds = {RowResult.IMPORT_TYPE_NEW, RowResult.IMPORT_TYPE_UPDATE}
        return [
            row.object_id
            for row in result.rows
            if row.import_type in kinds and row.object_id is not None
        ]

    @staticmethod
    def committed(result: Any, dry_run: bool) -> bool:
        return not dry_run and not result.has_errors() and not result.has_validation_errors()


class IdTokenResource(resources.ModelResource):
    account = fields.Field(
        attribute="account",
        column_name="account",
        widget=ReferenceWidget(CustomerAccount, "account"),
    )
    driver = fields.Field(
        attribute="driver", column_name="driver", widget=ReferenceWidget(Driver, "driver")
    )
    group = fields.Field(attribute="group", column_name="group", widget=GroupTokenWidget())
    valid_from = fields.Field(
        attribute="valid_from", column_name="valid_from", widget=UtcDateTimeWidget()
    )
    valid_until = fields.Field(
        attribute="valid_until", column_name="valid_until", widget=UtcDateTimeWidget()
    )
    blocked = fields.Field(
        attribute="blocked", column_name="blocked", widget=StrictBooleanWidget(False)
    )
    in_local_list = fields.Field(
        attribute="in_local_list", column_name="in_local_list", widget=StrictBooleanWidget(True)
    )

    class Meta:
        model = IdToken
        fields = (
            "id",
            "uid",
            "type",
            "visual_number",
            "account",
            "driver",
            "group",
            "valid_from",
            "valid_until",
            "blocked",
            "blocked_reason",
            "max_concurrent_sessions",
            "budget_energy_wh",
            "budget_cost",
            "budget_period",
            "issuer_country_code",
            "issuer_party_id",
            "contract_id",
            "in_local_list",
        )
        export_order = fields
        import_id_fields = ["id"]


class DriverResource(AllOrNothingResource):
    account = fields.Field(
        attribute="account",
        column_name="account",
        widget=ReferenceWidget(CustomerAccount, "account"),
    )
    is_active = fields.Field(
        attribute="is_active", column_name="is_active", widget=StrictBooleanWidget(True)
    )

    class Meta:
        model = Driver
        fields = ("id", "reference", "name", "account", "email", "phone", "is_active")
        export_order = fields
        import_id_fields = ["id"]
        clean_model_instances = True
        store_row_values = True

    def after_import(self, dataset: Any, result: Any, **kwargs: Any) -> None:
        super().after_import(dataset, result, **kwargs)
        if self.committed(result, kwargs.get("dry_run", False)):
            # A driver (de)activated or moved changes what their tokens may do.
            ids = IdToken.objects.filter(driver_id__in=self.written_ids(result))
            id_tokens_imported(token_ids=list(ids.values_list("pk", flat=True)))


class CustomerAccountResource(AllOrNothingResource):
    is_active = fields.Field(
        attribute="is_active", column_name="is_active", widget=StrictBooleanWidget(True)
    )

    class Meta:
        model = CustomerAccount
        fields = ("id", *ACCOUNT_FIELDS)
        export_order = fields
        import_id_fields = ["id"]
        clean_model_instances = True
        store_row_values = True

    def after_import(self, dataset: Any, result: Any, **kwargs: Any) -> None:
        super().after_import(dataset, result, **kwargs)
        if self.committed(result, kwargs.get("dry_run", False)):
            ids = IdToken.objects.filter(account_id__in=self.written_ids(result))
            id_tokens_imported(token_ids=list(ids.values_list("pk", flat=True)))

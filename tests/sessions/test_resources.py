"""Batch import of RFID cards: previewed, refused as a whole with each bad row named, and
imported in full once fixed; export and re-import in CSV and XLSX."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
import tablib
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from sessions import services
from sessions.models import IdToken
from sessions.resources import CustomerAccountResource, DriverResource, IdTokenResource

pytestmark = pytest.mark.django_db

HEADERS = ["uid", "type", "visual_number", "account", "driver", "valid_until", "blocked"]


def card_rows(count: int) -> list[list[str]]:
    return [
        [f"{0x04000000 + n:08X}", "ISO14443", f"NL-ACM-{n:06d}", "ACME", "", "2031-12-31", "0"]
        for n in range(1, count + 1)
    ]


def as_csv(rows: list[list[str]]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(HEADERS)
    writer.writerows(rows)
    return out.getvalue().encode()


def upload(client: Any, data: bytes, name: str = "cards.csv") -> Any:
    url = reverse("admin:charging_idtoken_import")
    return client.post(
        url,
        {
            "resource": "0",
            "format": "0",  # CSV is the first of the admin's formats
            "import_file": SimpleUploadedFile(name, data, content_type="text/csv"),
        },
    )


def test_thousand_cards_with_two_bad_rows_refused_then_imported(
    client: Any,
    operator: Any,
    account: Any,
    token_changes: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    client.force_login(operator)
    rows = card_rows(1000)
    rows[136][1] = "ISO1443"  # row 137: a type that does not exist
    rows[841][3] = "ACNE"  # row 842: an account that does not exist

    preview = upload(client, as_csv(rows))

    assert preview.status_code == 200
    result = preview.context["result"]
    assert [row.number for row in result.invalid_rows] == [137, 842]
    errors = {row.number: row.field_specific_errors for row in result.invalid_rows}
    assert "type" in errors[137]
    assert errors[842]["account"] == ["no account 'ACNE'"]
    html = preview.content.decode()
    assert "Some rows failed to validate" in html
    assert "<td>137 </td>" in html
    assert "<td>842 </td>" in html
    assert "confirm_form" not in preview.context or preview.context["confirm_form"] is None
    assert IdToken.objects.count() == 0

    rows[136][1] = "ISO14443"
    rows[841][3] = "ACME"
    preview = upload(client, as_csv(rows))
    assert not preview.context["result"].has_validation_errors()
    assert preview.context["result"].totals["new"] == 1000
    assert IdToken.objects.count() == 0  # a preview writes nothing

    confirm = preview.context["confirm_form"]
    with django_capture_on_commit_callbacks(execute=True):
        done = client.post(reverse("admin:charging_idtoken_process_import"), confirm.initial)

    assert done.status_code == 302
    assert IdToken.objects.count() == 1000
    assert IdToken.objects.filter(account=account, blocked=False).count() == 1000
    card = IdToken.objects.get(visual_number="NL-ACM-000137")
    assert card.uid == "04000089"
    assert card.uid_normalized == "04000089"
    assert card.valid_until is not None
    assert card.valid_until.isoformat() == "2031-12-31T00:00:00+00:00"
    # The local-list sync hears about every imported card, once.
    assert token_changes.token_ids == set(IdToken.objects.values_list("pk", flat=True))


def test_import_needs_add_and_change_permissions(client: Any, support: Any) -> None:
    client.force_login(support)
    assert client.get(reverse("admin:charging_idtoken_changelist")).status_code == 200
    assert upload(client, as_csv(card_rows(1))).status_code == 403


@pytest.mark.parametrize(
    ("column", "value", "field", "message"),
    [
        ("type", "RFID-CARD", "type", "is not a valid choice"),
        ("account", "NOBODY", "account", "no account 'NOBODY'"),
        ("driver", "D-404", "driver", "no driver 'D-404'"),
        ("valid_until", "31/12/2031", "valid_until", "is not a date"),
        ("blocked", "perhaps", "blocked", "is not yes/no"),
        ("uid", "04XYZ123", "uid", "UID in hex"),
        # The same card twice, once in lower case: 2.0.1 compares uids case-insensitively.
        ("uid", "04000001".lower(), "__all__", "already exists"),
    ],
)
def test_a_bad_row_is_named_and_nothing_is_imported(
    account: Any,
    token_changes: Any,
    django_capture_on_commit_callbacks: Any,
    column: str,
    value: str,
    field: str,
    message: str,
) -> None:
    rows = card_rows(5)
    rows[3][HEADERS.index(column)] = value
    dataset = tablib.Dataset(*rows, headers=HEADERS)

    with django_capture_on_commit_callbacks(execute=True):
        result = IdTokenResource().import_data(dataset, dry_run=False)

    assert [row.number for row in result.invalid_rows] == [4]
    errors = result.invalid_rows[0].error_dict
    assert any(message in str(error) for error in errors[field]), errors
    assert IdToken.objects.count() == 0
    assert token_changes.calls == []


def test_a_card_already_in_the_database_is_refused(account: Any) -> None:
    services.id_token_create(uid="04000003", account=account)
    dataset = tablib.Dataset(*card_rows(4), headers=HEADERS)

    result = IdTokenResource().import_data(dataset, dry_run=False)

    assert [row.number for row in result.invalid_rows] == [3]
    assert IdToken.objects.count() == 1


def test_export_then_reimport_in_xlsx_updates_in_place(
    account: Any,
    token_changes: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    driver = services.driver_create(account=account, name="Dana", reference="D-1")
    group = services.id_token_create(uid="0A0B0C0D", account=account)
    services.id_token_create(uid="04A1B2C3", driver=driver, group=group, visual_number="V-1")
    exported = IdTokenResource().export()
    rows = {row["uid"]: row for row in exported.dict}
    assert rows["04A1B2C3"]["account"] == "ACME"
    assert rows["04A1B2C3"]["driver"] == "D-1"
    assert rows["04A1B2C3"]["group"] == "0A0B0C0D"

    exported_xlsx = exported.export("xlsx")
    dataset = tablib.Dataset().load(exported_xlsx, format="xlsx")
    blocked = ["1" if uid == "04A1B2C3" else "0" for uid in dataset["uid"]]
    del dataset["blocked"]
    dataset.append_col(blocked, header="blocked")
    with django_capture_on_commit_callbacks(execute=True):
        result = IdTokenResource().import_data(dataset, dry_run=False)

    assert not result.has_validation_errors()
    assert not result.has_errors()
    assert result.totals["update"] == 2
    assert IdToken.objects.count() == 2
    assert IdToken.objects.get(uid="04A1B2C3").blocked is True
    assert token_changes.calls, "an import that blocks a card reaches the local lists"


def test_accounts_and_drivers_round_trip(account: Any) -> None:
    services.driver_create(account=account, name="Dana", reference="D-1")
    accounts = CustomerAccountResource().export()
    drivers = DriverResource().export()
    assert accounts.dict[0]["vat_id"] == "NL123456789B01"
    assert drivers.dict[0]["account"] == "ACME"

    new_drivers = tablib.Dataset(
        ["D-2", "Eve", "ACME", "eve@acme.invalid", "", "1"],
        ["D-3", "Finn", "#999999", "", "", "1"],
        headers=["reference", "name", "account", "email", "phone", "is_active"],
    )
    result = DriverResource().import_data(new_drivers, dry_run=False)
    assert [row.number for row in result.invalid_rows] == [2]
    assert account.drivers.count() == 1


def test_admin_exports_csv(client: Any, operator: Any, account: Any) -> None:
    services.id_token_create(uid="04A1B2C3", account=account, visual_number="V-1")
    client.force_login(operator)
    response = client.post(
        reverse("admin:charging_idtoken_export"),
        {
            "format": "0",
            "resource": "0",
            **{f"idtokenresource_{name}": "on" for name in ("uid", "visual_number", "account")},
        },
    )
    assert response.status_code == 200
    lines = response.content.decode().splitlines()
    assert lines[0] == "uid,visual_number,account"
    assert lines[1] == "04A1B2C3,V-1,ACME"


FORMULA_UID = "=cmd|' /C calc'!A0"


def export(client: Any, file_format: str) -> Any:
    return client.post(
        reverse("admin:charging_idtoken_export"),
        {
            "format": {"csv": "0", "xlsx": "1"}[file_format],
            "resource": "0",
            **{
                f"idtokenresource_{name}": "on"
                for name in ("id", "uid", "type", "visual_number", "account")
            },
        },
    )


def test_token_export_escapes_formulas_and_imports_back_unchanged(
    client: Any, operator: Any, account: Any
) -> None:
    """Finding 10 of issue 20: a uid like `=cmd|' /C calc'!A0` was exported verbatim."""
    token = services.id_token_create(
        uid=FORMULA_UID, type="Central", account=account, visual_number="@SUM(A1)"
    )
    plain = services.id_token_create(uid="04A1B2C3", account=account, visual_number="-42")
    client.force_login(operator)

    response = export(client, "csv")
    assert response.status_code == 200
    rows = {row["id"]: row for row in csv.DictReader(io.StringIO(response.content.decode()))}
    assert rows[str(token.pk)]["uid"] == "'" + FORMULA_UID
    assert rows[str(token.pk)]["visual_number"] == "'@SUM(A1)"
    # A number, negative or not, stays a number; plain text stays as it is.
    assert rows[str(plain.pk)]["uid"] == "04A1B2C3"
    assert rows[str(plain.pk)]["visual_number"] == "-42"

    # The exported file, imported again: the same cards, nothing new, the uid unescaped.
    preview = upload(client, response.content)
    assert preview.status_code == 200
    confirm = preview.context["confirm_form"]
    done = client.post(reverse("admin:charging_idtoken_process_import"), confirm.initial)
    assert done.status_code == 302
    assert IdToken.objects.count() == 2
    token.refresh_from_db()
    assert token.uid == FORMULA_UID
    assert token.visual_number == "@SUM(A1)"


def test_token_export_to_xlsx_stores_formula_like_text_as_text(
    client: Any, operator: Any, account: Any
) -> None:
    from openpyxl import load_workbook

    services.id_token_create(uid=FORMULA_UID, type="Central", account=account)
    client.force_login(operator)
    response = export(client, "xlsx")
    assert response.status_code == 200
    sheet = load_workbook(io.BytesIO(response.content)).active
    headers = [cell.value for cell in sheet[1]]
    cell = sheet.cell(row=2, column=headers.index("uid") + 1)
    assert cell.value == FORMULA_UID
    assert cell.data_type == "s"  # text, never a formula
    assert cell.quotePrefix


def test_support_may_look_tokens_up_but_not_export_them(client: Any, support: Any) -> None:
    client.force_login(support)
    assert client.get(reverse("admin:charging_idtoken_changelist")).status_code == 200
    assert export(client, "csv").status_code == 403

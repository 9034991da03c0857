"""Batch import of RFID cards: refused as a whole with each bad row named, and imported in full
once fixed (the Celery task's work, `sessions.token_import`, run here in the test process);
export and re-import in CSV and XLSX."""

from __future__ import annotations

import csv
import io
from typing import Any

import pytest
import tablib
from django.core.files.uploadedfile import SimpleUploadedFile
from django.urls import reverse

from sessions import services
from sessions.models import IdToken, TokenImport
from sessions.resources import CustomerAccountResource, DriverResource, IdTokenResource
from sessions.token_import import token_import_process

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
        url, {"import_file": SimpleUploadedFile(name, data, content_type="text/csv")}
    )


def run_import(data: bytes, name: str = "cards.csv", *, user: Any = None) -> TokenImport:
    """What the Celery task does with an uploaded file, run here."""
    token_import = TokenImport.objects.create(
        content=data, file_name=name, file_format=name.rsplit(".", 1)[-1], created_by=user
    )
    return token_import_process(token_import_id=token_import.pk)


def test_thousand_cards_with_two_bad_rows_refused_then_imported(
    client: Any,
    operator: Any,
    account: Any,
    token_changes: Any,
    django_capture_on_commit_callbacks: Any,
    monkeypatch: Any,
) -> None:
    client.force_login(operator)
    queued: list[int] = []
    monkeypatch.setattr("sessions.tasks.token_import_run.delay", queued.append)
    rows = card_rows(1000)
    rows[136][1] = "ISO1443"  # row 137: a type that does not exist
    rows[841][3] = "ACNE"  # row 842: an account that does not exist

    with django_capture_on_commit_callbacks(execute=True):
        response = upload(client, as_csv(rows))

    token_import = TokenImport.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse(
        "admin:charging_tokenimport_change", args=[token_import.pk]
    )
    assert queued == [token_import.pk]  # the worker's task, queued after commit
    assert token_import.created_by == operator
    assert token_import.status == TokenImport.Status.QUEUED

    refused = token_import_process(token_import_id=token_import.pk)
    assert refused.status == TokenImport.Status.INVALID
    assert refused.error_count == 2
    errors = {(e["row"], e["field"]): e["message"] for e in refused.errors}
    assert set(errors) == {(137, "type"), (842, "account")}
    assert errors[(842, "account")] == "no account 'ACNE'"
    page = client.get(reverse("admin:charging_tokenimport_change", args=[refused.pk]))
    html = page.content.decode()
    assert "<td>137</td><td>type</td>" in html
    assert "<td>842</td><td>account</td><td>no account &#x27;ACNE&#x27;</td>" in html
    assert "refused: 2 invalid row(s) of 1,000" in html
    assert IdToken.objects.count() == 0

    rows[136][1] = "ISO14443"
    rows[841][3] = "ACME"
    with django_capture_on_commit_callbacks(execute=True):
        done = run_import(as_csv(rows), user=operator)

    assert done.status == TokenImport.Status.DONE
    assert (done.rows_total, done.rows_written, done.created_count) == (1000, 1000, 1000)
    assert done.updated_count == 0
    assert IdToken.objects.count() == 1000
    assert IdToken.objects.filter(account=account, blocked=False).count() == 1000
    card = IdToken.objects.get(visual_number="NL-ACM-000137")
    assert card.uid == "04000089"
    assert card.uid_normalized == "04000089"
    assert card.valid_until is not None
    assert card.valid_until.isoformat() == "2031-12-31T00:00:00+00:00"
    assert card.created_at is not None
    # The local-list sync hears about every imported card, once.
    assert token_changes.token_ids == set(IdToken.objects.values_list("pk", flat=True))
    assert len(token_changes.calls) == 2  # one announcement per chunk of 500
    page = client.get(reverse("admin:charging_tokenimport_change", args=[done.pk]))
    assert "100 % &middot; done: 1,000 rows, 1,000 created, 0 updated" in page.content.decode()


def test_import_needs_add_and_change_permissions(client: Any, support: Any) -> None:
    client.force_login(support)
    assert client.get(reverse("admin:charging_idtoken_changelist")).status_code == 200
    assert upload(client, as_csv(card_rows(1))).status_code == 403
    assert TokenImport.objects.count() == 0


def test_a_file_that_is_no_table_is_refused_at_upload(client: Any, operator: Any) -> None:
    client.force_login(operator)
    response = upload(client, b"uid,type\n", name="cards.pdf")
    assert response.status_code == 200
    assert "a token file is CSV (.csv) or XLSX (.xlsx)" in response.content.decode()
    assert TokenImport.objects.count() == 0


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
        ("uid", "04000001".lower(), "__all__", "the same card (uid and type) as row 1"),
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

    with django_capture_on_commit_callbacks(execute=True):
        result = run_import(as_csv(rows))

    assert result.status == TokenImport.Status.INVALID
    assert {e["row"] for e in result.errors} == {4}
    assert any(message in e["message"] for e in result.errors if e["field"] == field), result.errors
    assert result.rows_written == 0
    assert IdToken.objects.count() == 0
    assert token_changes.calls == []


def test_duplicates_inside_the_file_are_named_with_both_rows(account: Any) -> None:
    rows = card_rows(1200)
    rows[700][0] = rows[2][0]  # row 701 is row 3's card, in another chunk
    rows[1100][0] = rows[1099][0].lower()  # row 1101 is row 1100's card, in lower case

    result = run_import(as_csv(rows))

    assert result.status == TokenImport.Status.INVALID
    assert [(e["row"], e["message"]) for e in result.errors] == [
        (701, "the same card (uid and type) as row 3 of this file"),
        (1101, "the same card (uid and type) as row 1100 of this file"),
    ]
    assert IdToken.objects.count() == 0


def test_a_card_already_in_the_database_is_refused(account: Any) -> None:
    services.id_token_create(uid="04000003", account=account)

    result = run_import(as_csv(card_rows(4)))

    assert [(e["row"], e["field"]) for e in result.errors] == [(3, "__all__")]
    assert "already exists" in result.errors[0]["message"]
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
        result = run_import(dataset.export("xlsx"), name="cards.xlsx")

    assert result.status == TokenImport.Status.DONE, result.errors
    assert (result.created_count, result.updated_count) == (0, 2)
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
    done = run_import(response.content)
    assert done.status == TokenImport.Status.DONE, done.errors
    assert (done.created_count, done.updated_count) == (0, 2)
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

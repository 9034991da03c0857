"""A token import that stops half way: resumed at the first row not written, never writing a
row twice; and the bounds of what an import keeps (sessions.token_import)."""

from __future__ import annotations

from typing import Any

import pytest
from django.urls import reverse

from sessions import token_import as importer
from sessions.models import IdToken, TokenImport
from tests.sessions.test_resources import as_csv, card_rows, run_import

pytestmark = pytest.mark.django_db


def test_a_crash_mid_write_is_reported_and_resumed_without_writing_a_row_twice(
    account: Any,
    client: Any,
    operator: Any,
    monkeypatch: Any,
    django_capture_on_commit_callbacks: Any,
) -> None:
    real_chunk = importer._write_chunk
    calls: list[int] = []

    def crash_on_the_third_chunk(**kwargs: Any) -> None:
        calls.append(kwargs["first_row"])
        if kwargs["first_row"] == 1001:
            raise OSError("disk I/O error")
        real_chunk(**kwargs)

    monkeypatch.setattr(importer, "_write_chunk", crash_on_the_third_chunk)
    with pytest.raises(OSError, match="disk I/O error"):
        run_import(as_csv(card_rows(1800)))

    stopped = TokenImport.objects.get()
    assert stopped.status == TokenImport.Status.FAILED
    assert (stopped.rows_written, stopped.created_count) == (1000, 1000)
    assert stopped.failure == (
        "Stopped after 1000 rows written: OSError: disk I/O error. "
        "Rows 1-1000 are imported; resuming continues at row 1001."
    )
    assert IdToken.objects.count() == 1000
    # A stray run of the task (a redelivery) leaves a stopped import alone.
    assert importer.token_import_process(token_import_id=stopped.pk).rows_written == 1000

    # The operator resumes it on the imports' list.
    monkeypatch.setattr(importer, "_write_chunk", real_chunk)
    queued: list[int] = []
    monkeypatch.setattr("sessions.tasks.token_import_run.delay", queued.append)
    client.force_login(operator)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(
            reverse("admin:charging_tokenimport_changelist"),
            {"action": "resume_imports", "_selected_action": [str(stopped.pk)]},
            follow=True,
        )
    assert "Queued 1 import(s) again" in response.content.decode()
    assert queued == [stopped.pk]
    assert TokenImport.objects.get().status == TokenImport.Status.WRITING

    done = importer.token_import_process(token_import_id=stopped.pk)
    assert done.status == TokenImport.Status.DONE
    assert (done.rows_written, done.created_count, done.failure) == (1800, 1800, "")
    assert IdToken.objects.count() == 1800
    assert calls == [1, 501, 1001]  # the crashed run; the resumed one is not patched


def test_an_import_stopped_while_validating_is_validated_again_when_resumed(
    account: Any, monkeypatch: Any
) -> None:
    rows = card_rows(800)
    rows[650][1] = "ISO1443"
    token_import = TokenImport.objects.create(
        content=as_csv(rows), file_name="c.csv", file_format="csv"
    )
    monkeypatch.setattr(importer, "_batch_duplicates", lambda batch: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        importer.token_import_process(token_import_id=token_import.pk)
    token_import.refresh_from_db()
    assert token_import.status == TokenImport.Status.FAILED
    assert "Stopped before any row was written" in token_import.failure

    monkeypatch.undo()
    monkeypatch.setattr("sessions.tasks.token_import_run.delay", lambda pk: None)
    assert importer.token_import_resume(token_import=token_import)
    token_import.refresh_from_db()
    assert token_import.status == TokenImport.Status.QUEUED
    refused = importer.token_import_process(token_import_id=token_import.pk)
    assert refused.status == TokenImport.Status.INVALID
    assert [e["row"] for e in refused.errors] == [651]
    assert IdToken.objects.count() == 0


def test_a_worker_killed_while_writing_is_resumed_where_it_stopped(account: Any) -> None:
    """A worker SIGKILLed leaves the import `writing`: its committed chunks are in, and the
    next run (the resume action, or the broker's redelivery of the task) writes the rest."""
    rows = card_rows(1200)
    first = run_import(as_csv(rows[:500]))  # what the killed worker committed
    IdToken.objects.filter(pk__in=IdToken.objects.values("pk")).update(visual_number="kept")
    killed = TokenImport.objects.create(
        content=as_csv(rows),
        file_name="cards.csv",
        file_format="csv",
        status=TokenImport.Status.WRITING,
        rows_total=1200,
        rows_validated=1200,
        rows_written=500,
        created_count=500,
    )
    first.delete()

    done = importer.token_import_process(token_import_id=killed.pk)

    assert done.status == TokenImport.Status.DONE
    assert (done.rows_written, done.created_count) == (1200, 1200)
    assert IdToken.objects.count() == 1200
    assert IdToken.objects.filter(visual_number="kept").count() == 500


def test_a_chunk_another_run_wrote_is_not_written_again(account: Any) -> None:
    token_import = TokenImport.objects.create(
        content=as_csv(card_rows(2)), file_name="c.csv", file_format="csv", rows_written=500
    )
    tokens = [IdToken(uid="04AA0001", account=account)]
    importer._write_chunk(token_import_id=token_import.pk, first_row=1, tokens=tokens)
    assert IdToken.objects.count() == 0
    token_import.refresh_from_db()
    assert token_import.rows_written == 500


def test_a_row_that_changed_since_validation_stops_the_import_naming_it(
    account: Any, monkeypatch: Any
) -> None:
    from sessions import services

    real_validate = importer._validate

    def validate_then_someone_adds_a_card(token_import: TokenImport) -> bool:
        valid = real_validate(token_import)
        services.id_token_create(uid="04000258", account=account)  # row 600's card
        return valid

    monkeypatch.setattr(importer, "_validate", validate_then_someone_adds_a_card)
    with pytest.raises(importer.RowChangedSinceValidation):
        run_import(as_csv(card_rows(900)))

    stopped = TokenImport.objects.get()
    assert stopped.status == TokenImport.Status.FAILED
    assert stopped.rows_written == 500
    assert "row 600 is not valid any more" in stopped.failure
    assert "already exists" in stopped.failure
    assert IdToken.objects.count() == 501


def test_the_first_thousand_errors_are_kept_and_all_are_counted(account: Any) -> None:
    rows = card_rows(1500)
    for row in rows[:1200]:
        row[1] = "ISO1443"
    result = run_import(as_csv(rows))
    assert result.status == TokenImport.Status.INVALID
    assert result.error_count == 1200
    assert len(result.errors) == TokenImport.ERRORS_KEPT
    assert IdToken.objects.count() == 0


def test_a_file_without_rows_or_not_utf8_is_refused(account: Any) -> None:
    empty = run_import(b"uid,type\r\n")
    assert empty.status == TokenImport.Status.INVALID
    assert empty.errors == [{"row": 0, "field": "file", "message": "no rows"}]
    latin = run_import("uid,visual_number\r\n04A1B2C3,Jos\xe9\r\n".encode("latin-1"))
    assert latin.status == TokenImport.Status.INVALID
    assert "not UTF-8" in latin.errors[0]["message"]


def test_a_finished_import_is_left_as_it_is(account: Any) -> None:
    done = run_import(as_csv(card_rows(3)))
    assert importer.token_import_resume(token_import=done) is False
    again = importer.token_import_process(token_import_id=done.pk)
    assert (again.status, again.created_count) == (TokenImport.Status.DONE, 3)
    assert IdToken.objects.count() == 3

"""Token files (CSV, XLSX) imported by a Celery task, in two passes over the stored file.

1. **Validate** every row without a write transaction: each row is parsed by the columns of
   `IdTokenResource` (the export's columns, so an exported file imports back), checked by the
   model's own validation and check constraints, and its card (uid, type, issuer) is looked up
   in the database and among the earlier rows of the file (a uid twice in one file is caught on
   its second row). Any invalid row: nothing is imported, and every bad row is named with its
   number, column and message on the import's page.
2. **Write** in chunks of `CHUNK_ROWS` rows, each in a short transaction of its own (bulk
   insert and update), so that on SQLite the chargers' writes (heartbeats, sessions) wait for
   one chunk at most, not for the whole file. Each chunk's transaction also advances
   `TokenImport.rows_written`: an import that stops half way (a crashed worker, a row whose
   account was deleted since validation) is resumed from there, and no row is written twice.

Rows are streamed: what stays in memory for the whole file is the set of cards seen (for the
duplicate check) and the first `TokenImport.ERRORS_KEPT` errors, never a diff per row.
"""

from __future__ import annotations

import csv
import io
import logging
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from django.core.exceptions import ValidationError
from django.db import IntegrityError, models, transaction
from django.utils import timezone

from cpo.lib.spreadsheets import formula_unescape
from sessions.models import IdToken, TokenImport, normalize_uid
from sessions.resources import GroupTokenWidget, IdTokenResource, ReferenceWidget
from sessions.services import id_token_default_account, id_tokens_imported
from sessions.signals import token_import_queued

logger = logging.getLogger(__name__)

CHUNK_ROWS = 500
# Files bigger than this are refused at upload (a 50,000-row CSV is about 4 MB).
MAX_FILE_BYTES = 50 * 1024 * 1024

CardKey = tuple[str, str, str, str]


class TokenFileError(ValueError):
    """A file that cannot be read as a table of tokens at all."""


@dataclass
class CleanRow:
    number: int
    token: IdToken | None = None
    errors: dict[str, list[str]] = field(default_factory=dict)


def card_key(token: IdToken) -> CardKey:
    """What makes a card unique (the model's `idtoken_unique_uid` constraint)."""
    return (
        token.uid_normalized,
        token.type,
        token.issuer_country_code or "",
        token.issuer_party_id or "",
    )


# --- reading the file -----------------------------------------------------------------------


def _cell(value: Any) -> Any:
    if isinstance(value, str):
        return formula_unescape(value)
    return "" if value is None else value


def file_rows(*, content: bytes, file_format: str) -> Iterator[dict[str, Any]]:
    """The data rows of a token file as {column: value}, one at a time, unescaped as the
    export escaped them (`cpo.lib.spreadsheets`)."""
    if file_format == TokenImport.Format.CSV:
        try:
            text = content.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise TokenFileError(f"the file is not UTF-8 text: {exc}") from exc
        reader = csv.reader(io.StringIO(text, newline=""))
        headers = next(reader, None)
        rows: Iterator[Any] = reader
    elif file_format == TokenImport.Format.XLSX:
        from openpyxl import load_workbook

        try:
            book = load_workbook(io.BytesIO(content), read_only=True, data_only=True)
        except Exception as exc:  # openpyxl raises anything from zipfile to KeyError
            raise TokenFileError(f"the file is not an XLSX workbook: {exc}") from exc
        sheet = book.worksheets[0]
        values = sheet.iter_rows(values_only=True)
        first = next(values, None)
        headers = [str(h) if h is not None else "" for h in first] if first else None
        rows = values
    else:
        raise TokenFileError(f"unknown format {file_format!r}")
    if not headers or not any(str(h).strip() for h in headers):
        raise TokenFileError("the file has no header row")
    names = [str(h).strip() for h in headers]
    for raw in rows:
        cells = list(raw)
        if not any(c not in (None, "") for c in cells):
            continue  # a blank line, as spreadsheets leave at the end
        cells += [""] * (len(names) - len(cells))
        yield {name: _cell(value) for name, value in zip(names, cells, strict=False) if name}


def file_row_count(*, content: bytes, file_format: str) -> int:
    return sum(1 for _ in file_rows(content=content, file_format=file_format))


# --- checking a row -------------------------------------------------------------------------


class _RowCleaner:
    """Turns a file row into an unsaved IdToken with the resource's columns and widgets, or
    into its errors. Lookups of accounts, drivers and groups are cached for the run: a file of
    50,000 cards of one fleet asks for its account once."""

    def __init__(self) -> None:
        self.resource = IdTokenResource()
        for import_field in self.resource.get_import_fields():
            widget = import_field.widget
            if isinstance(widget, ReferenceWidget | GroupTokenWidget):
                widget.clean = self._cached(widget.clean)  # type: ignore[method-assign]

    @staticmethod
    def _cached(clean: Any) -> Any:
        @lru_cache(maxsize=10_000)
        def lookup(text: str) -> Any:
            return clean(text)

        def cached(value: Any, row: Any = None, **kwargs: Any) -> Any:
            return lookup(str(value).strip() if value is not None else "")

        return cached

    def clean(self, number: int, row: dict[str, Any], *, full: bool = True) -> CleanRow:
        """`full`: every field's validation too (the validation pass); otherwise only the
        model's rules across fields and rows (the writing pass, which the database's own
        constraints back)."""
        result = CleanRow(number=number)
        token = self._instance(row, result)
        if token is None:
            return result
        try:
            self.resource.import_instance(token, row)
        except ValidationError as exc:
            self._add(result, exc)
        if not token.type:
            # An empty type column means the common case of a batch file: RFID cards.
            token.type = IdToken.Type.ISO14443
        try:
            id_token_default_account(token)
        except models.ObjectDoesNotExist:
            pass
        try:
            if full:
                # The check constraints' rules are in IdToken.clean (a query each otherwise);
                # uniqueness is checked per batch (_batch_duplicates).
                token.full_clean(
                    exclude=list(result.errors), validate_unique=False, validate_constraints=False
                )
            elif not result.errors:
                token.clean()
        except ValidationError as exc:
            self._add(result, exc)
        if not result.errors:
            result.token = token
        return result

    def _instance(self, row: dict[str, Any], result: CleanRow) -> IdToken | None:
        text = str(row.get("id", "") or "").strip()
        if not text:
            return IdToken()
        if text.endswith(".0"):  # a spreadsheet's number
            text = text[:-2]
        if not text.isdigit():
            result.errors["id"] = [f"{text!r} is not a token id"]
            return None
        token = IdToken.objects.filter(pk=int(text)).first()
        if token is None:
            result.errors["id"] = [f"no token with id {text}"]
        return token

    @staticmethod
    def _add(result: CleanRow, exc: ValidationError) -> None:
        if hasattr(exc, "error_dict"):
            for name, errors in exc.message_dict.items():
                result.errors.setdefault(name, []).extend(errors)
        else:
            result.errors.setdefault("__all__", []).extend(exc.messages)


def _existing_cards(tokens: list[IdToken]) -> dict[CardKey, int]:
    """The cards among these that the database holds already, with their token's pk."""
    uids = {t.uid_normalized for t in tokens}
    found = IdToken.objects.filter(uid_normalized__in=uids).values_list(
        "pk", "uid_normalized", "type", "issuer_country_code", "issuer_party_id"
    )
    return {(u, t, c or "", p or ""): pk for pk, u, t, c, p in found}


ALREADY_EXISTS = "A token with this uid and type already exists."


def _batch_duplicates(batch: list[CleanRow]) -> None:
    """A card that another token of the database already is (not the row's own token)."""
    tokens = [r.token for r in batch if r.token is not None]
    if not tokens:
        return
    existing = _existing_cards(tokens)
    for row in batch:
        token = row.token
        if token is None:
            continue
        other = existing.get(card_key(token))
        if other is not None and other != token.pk:
            row.errors.setdefault("__all__", []).append(ALREADY_EXISTS)
            row.token = None


def cleaned_rows(
    *,
    content: bytes,
    file_format: str,
    start: int = 0,
    full: bool = True,
    batch_rows: int = CHUNK_ROWS,
) -> Iterator[list[CleanRow]]:
    """The file's rows from row `start` + 1 on, checked, in batches (the validation pass
    reports its progress and the writing pass writes a chunk per batch); the database lookups
    for duplicates are made once per batch."""
    cleaner = _RowCleaner()
    batch: list[CleanRow] = []
    for number, row in enumerate(file_rows(content=content, file_format=file_format), start=1):
        if number <= start:
            continue
        batch.append(cleaner.clean(number, row, full=full))
        if len(batch) >= batch_rows:
            _batch_duplicates(batch)
            yield batch
            batch = []
    if batch:
        _batch_duplicates(batch)
        yield batch


# --- the service ----------------------------------------------------------------------------


def _format_of(file_name: str) -> str:
    name = file_name.lower()
    if name.endswith(".xlsx"):
        return TokenImport.Format.XLSX
    if name.endswith(".csv") or name.endswith(".txt"):
        return TokenImport.Format.CSV
    raise TokenFileError("a token file is CSV (.csv) or XLSX (.xlsx)")


@transaction.atomic
def token_import_create(
    *, content: bytes, file_name: str, created_by: Any, file_format: str | None = None
) -> TokenImport:
    """Store an uploaded token file and queue its import (after commit)."""
    file_format = file_format or _format_of(file_name)
    if len(content) > MAX_FILE_BYTES:
        raise TokenFileError(f"the file is larger than {MAX_FILE_BYTES // (1024 * 1024)} MB")
    if not content:
        raise TokenFileError("the file is empty")
    token_import = TokenImport.objects.create(
        content=content,
        file_name=file_name[:255],
        file_format=file_format,
        created_by=created_by,
    )
    _enqueue(token_import.pk)
    return token_import


def _enqueue(token_import_id: int) -> None:
    """Announced after commit; the receiver queues the Celery task (sessions.receivers)."""
    transaction.on_commit(
        lambda: token_import_queued.send(sender=TokenImport, token_import_id=token_import_id)
    )


@transaction.atomic
def token_import_resume(*, token_import: TokenImport) -> bool:
    """Queue a stopped or stuck import again: validation again if it had not finished, else
    writing from the first row not yet written. False for a finished import."""
    current = TokenImport.objects.select_for_update().get(pk=token_import.pk)
    if current.is_finished:
        return False
    if current.status == TokenImport.Status.FAILED:
        was_writing = current.rows_written > 0 or current.rows_validated == current.rows_total
        current.status = TokenImport.Status.WRITING if was_writing else TokenImport.Status.QUEUED
        current.failure = ""
        current.save(update_fields=["status", "failure", "updated_at"])
    _enqueue(current.pk)
    return True


def _set(token_import_id: int, **values: Any) -> None:
    """One short write of the import's progress (never inside a long transaction)."""
    values["updated_at"] = timezone.now()
    TokenImport.objects.filter(pk=token_import_id).update(**values)


def token_import_process(*, token_import_id: int) -> TokenImport:
    """Run an import: validate (unless validation is done), then write the rows not yet
    written. Idempotent: a finished or stopped import is left as it is."""
    token_import = TokenImport.objects.get(pk=token_import_id)
    if token_import.is_finished or token_import.status == TokenImport.Status.FAILED:
        # A stopped import runs again only when resumed (token_import_resume), which says
        # whether it still needs its validation: a stray run must not skip it.
        return token_import
    try:
        if token_import.status in (TokenImport.Status.QUEUED, TokenImport.Status.VALIDATING):
            if not _validate(token_import):
                return TokenImport.objects.get(pk=token_import_id)
        _write(token_import)
    except Exception as exc:
        token_import.refresh_from_db(fields=["rows_written"])
        where = token_import.rows_written
        logger.exception("token import %s stopped after %s rows", token_import_id, where)
        _set(
            token_import_id,
            status=TokenImport.Status.FAILED,
            failure=(
                f"Stopped after {where} rows written: {type(exc).__name__}: {exc}. "
                f"Rows 1-{where} are imported; resuming continues at row {where + 1}."
                if where
                else f"Stopped before any row was written: {type(exc).__name__}: {exc}."
            ),
        )
        raise
    return TokenImport.objects.get(pk=token_import_id)


def _validate(token_import: TokenImport) -> bool:
    """The first pass: True when every row is valid. Writes nothing but the import's own
    progress, each in its own short transaction."""
    pk = token_import.pk
    content = bytes(token_import.content)
    try:
        total = file_row_count(content=content, file_format=token_import.file_format)
    except TokenFileError as exc:
        _finish_invalid(pk, [{"row": 0, "field": "file", "message": str(exc)}], 1, 0)
        return False
    _set(
        pk,
        status=TokenImport.Status.VALIDATING,
        rows_total=total,
        rows_validated=0,
        started_at=timezone.now(),
    )
    seen: dict[CardKey, int] = {}
    errors: list[dict[str, Any]] = []
    error_count = 0
    checked = 0
    for batch in cleaned_rows(content=content, file_format=token_import.file_format):
        for row in batch:
            if row.token is not None:
                key = card_key(row.token)
                first = seen.get(key)
                if first is not None:
                    row.errors["__all__"] = [
                        f"the same card (uid and type) as row {first} of this file"
                    ]
                else:
                    seen[key] = row.number
            if row.errors:
                error_count += 1
                for name, messages in row.errors.items():
                    for message in messages:
                        if len(errors) < TokenImport.ERRORS_KEPT:
                            errors.append({"row": row.number, "field": name, "message": message})
        checked += len(batch)
        _set(pk, rows_validated=checked, error_count=error_count)
    if total == 0:
        _finish_invalid(pk, [{"row": 0, "field": "file", "message": "no rows"}], 1, 0)
        return False
    if error_count:
        _finish_invalid(pk, errors, error_count, checked)
        logger.info("token import %s refused: %s invalid rows of %s", pk, error_count, checked)
        return False
    _set(pk, status=TokenImport.Status.WRITING, rows_validated=checked, error_count=0)
    return True


def _finish_invalid(pk: int, errors: list[dict[str, Any]], count: int, checked: int) -> None:
    _set(
        pk,
        status=TokenImport.Status.INVALID,
        errors=errors,
        error_count=count,
        rows_validated=checked,
        finished_at=timezone.now(),
    )


class RowChangedSinceValidation(Exception):
    """A row valid in the first pass is not any more (the database changed meanwhile)."""


WRITTEN_FIELDS = [
    *(name for name in IdTokenResource.Meta.fields if name != "id"),
    "uid_normalized",
    "updated_at",
]


def _write(token_import: TokenImport) -> None:
    """The second pass: chunks of rows, each built outside and written inside a short
    transaction that also advances `rows_written`."""
    pk = token_import.pk
    content = bytes(token_import.content)
    start = TokenImport.objects.get(pk=pk).rows_written
    _set(pk, status=TokenImport.Status.WRITING)
    rows = cleaned_rows(
        content=content, file_format=token_import.file_format, start=start, full=False
    )
    for batch in rows:
        bad = [row for row in batch if row.errors]
        if bad:
            first = bad[0]
            text = "; ".join(f"{k}: {' '.join(v)}" for k, v in first.errors.items())
            raise RowChangedSinceValidation(f"row {first.number} is not valid any more ({text})")
        _write_chunk(
            token_import_id=pk,
            first_row=batch[0].number,
            tokens=[row.token for row in batch if row.token is not None],
        )
    _set(pk, status=TokenImport.Status.DONE, finished_at=timezone.now())
    done = TokenImport.objects.get(pk=pk)
    logger.info(
        "token import %s done: %s rows, %s created, %s updated",
        pk,
        done.rows_written,
        done.created_count,
        done.updated_count,
    )


@transaction.atomic
def _write_chunk(*, token_import_id: int, first_row: int, tokens: list[IdToken]) -> None:
    """Write one chunk, unless another run of the same import wrote it already."""
    current = TokenImport.objects.select_for_update().get(pk=token_import_id)
    if current.rows_written != first_row - 1:
        return
    now = timezone.now()
    new = [t for t in tokens if t.pk is None]
    old = [t for t in tokens if t.pk is not None]
    for token in tokens:
        token.uid_normalized = normalize_uid(token.uid)
        token.updated_at = now
    try:
        with transaction.atomic():
            IdToken.objects.bulk_create(new)
            if old:
                IdToken.objects.bulk_update(old, WRITTEN_FIELDS)
    except IntegrityError as exc:
        # A card created by someone else since validation: nothing of this chunk is written.
        raise RowChangedSinceValidation(
            f"rows {first_row}-{first_row + len(tokens) - 1}: {exc}"
        ) from exc
    id_tokens_imported(token_ids=[t.pk for t in tokens])
    TokenImport.objects.filter(pk=token_import_id).update(
        rows_written=models.F("rows_written") + len(tokens),
        created_count=models.F("created_count") + len(new),
        updated_count=models.F("updated_count") + len(old),
        updated_at=now,
    )

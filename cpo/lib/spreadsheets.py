"""Spreadsheet-safe exports: the one rule for formula injection in every CSV and XLSX file.

A spreadsheet runs a cell that starts with `=`, `+`, `-`, `@`, a tab or a carriage return as a
formula (`=cmd|' /C calc'!A0` starts a program on some desktops), so every export of the
project goes through `formula_escape`:

- CSV (`SafeCSV`, `csv_rows`): such a text cell gets a leading apostrophe (OWASP's rule); a
  text cell that already starts with an apostrophe gets one more, so that importing the file
  again (`formula_unescape`, done by `SafeCSV` on import) gives back exactly what was exported.
  Numbers, negative ones included, are left as they are.
- XLSX (`SafeXLSX`, `xlsx_cell_set`): text is always stored as text, never as a formula, and a
  formula-like text cell is marked quote-prefixed, as Excel does for a typed `'=...`, so editing
  the cell does not turn it into a formula either.
"""

from __future__ import annotations

import io
from decimal import Decimal, InvalidOperation
from typing import Any

import tablib
from import_export.formats.base_formats import CSV, XLSX

FORMULA_START = ("=", "+", "-", "@", "\t", "\r")
ESCAPE = "'"


def _is_number(text: str) -> bool:
    try:
        return Decimal(text).is_finite()
    except (InvalidOperation, ValueError):
        return False


def is_formula_like(value: Any) -> bool:
    """A text a spreadsheet would run as a formula (a number is not one, even "-1")."""
    return isinstance(value, str) and value.startswith(FORMULA_START) and not _is_number(value)


def formula_escape(value: Any) -> Any:
    """The CSV cell for `value`: formula-like text (and text already starting with the
    apostrophe) prefixed with an apostrophe; everything else unchanged."""
    if is_formula_like(value) or (isinstance(value, str) and value.startswith(ESCAPE)):
        return ESCAPE + value
    return value


def formula_unescape(value: Any) -> Any:
    """The inverse of `formula_escape`, for a CSV cell read back in an import."""
    if (
        isinstance(value, str)
        and value.startswith(ESCAPE)
        and (is_formula_like(value[1:]) or value[1:].startswith(ESCAPE))
    ):
        return value[1:]
    return value


def csv_rows(rows: Any) -> Any:
    """Rows (iterables of cells) with every cell escaped, for csv.writer."""
    for row in rows:
        yield [formula_escape(cell) for cell in row]


def xlsx_cell_set(cell: Any, value: Any) -> None:
    """Put `value` into an openpyxl cell: text as text (never a formula), quote-prefixed when
    a spreadsheet would otherwise take it for one."""
    cell.value = value
    if isinstance(value, str):
        cell.data_type = "s"
        if is_formula_like(value):
            cell.quotePrefix = True


class SafeCSV(CSV):
    """import-export's CSV with formulas escaped on export and unescaped on import."""

    def export_data(self, dataset: tablib.Dataset, **kwargs: Any) -> Any:
        safe = tablib.Dataset(headers=dataset.headers, title=dataset.title)
        for row in dataset:
            safe.append([formula_escape(cell) for cell in row])
        return safe.export("csv", **kwargs)

    def create_dataset(self, in_stream: Any, **kwargs: Any) -> tablib.Dataset:
        dataset = super().create_dataset(in_stream, **kwargs)
        plain = tablib.Dataset(headers=dataset.headers, title=dataset.title)
        for row in dataset:
            plain.append([formula_unescape(cell) for cell in row])
        return plain


class SafeXLSX(XLSX):
    """import-export's XLSX written cell by cell (`xlsx_cell_set`): a named sheet, a bold
    frozen header, and no text ever stored as a formula."""

    def export_data(self, dataset: tablib.Dataset, **kwargs: Any) -> bytes:
        book, sheet = self.sheet_start(dataset)
        for r, row in enumerate(dataset, start=2):
            for c, value in enumerate(row, start=1):
                if value is None or value == "":
                    continue
                xlsx_cell_set(sheet.cell(row=r, column=c), value)
        return self.book_bytes(book)

    @staticmethod
    def sheet_start(dataset: tablib.Dataset) -> tuple[Any, Any]:
        """A workbook of one sheet named for the dataset, with its bold frozen header row."""
        from openpyxl import Workbook
        from openpyxl.styles import Font

        book = Workbook()
        sheet = book.create_sheet(index=0)
        book.remove(book.worksheets[1])  # the empty default sheet
        sheet.title = (dataset.title or "Export")[:31]
        sheet.append(list(dataset.headers or []))
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        sheet.freeze_panes = "A2"
        return book, sheet

    @staticmethod
    def book_bytes(book: Any) -> bytes:
        out = io.BytesIO()
        book.save(out)
        return out.getvalue()

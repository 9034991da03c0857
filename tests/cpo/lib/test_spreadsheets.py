"""The one formula-escaping rule of every CSV and XLSX export."""

from __future__ import annotations

import io

import tablib
from hypothesis import given
from hypothesis import strategies as st

from cpo.lib.spreadsheets import (
    SafeCSV,
    SafeXLSX,
    formula_escape,
    formula_unescape,
    is_formula_like,
)


def test_formula_like_text_is_escaped_and_numbers_are_not() -> None:
    assert formula_escape("=cmd|' /C calc'!A0") == "'=cmd|' /C calc'!A0"
    for text in ("+31 20", "-x", "@SUM(A1)", "\tx", "\rx"):
        assert formula_escape(text) == "'" + text
    for value in ("-12.50", "+3", "12", "plain", "", 7, None):
        assert formula_escape(value) == value
    # Text already starting with the apostrophe gets one more: the file reads back exactly.
    assert formula_escape("'=x") == "''=x"


@given(st.text())
def test_escaping_reads_back_exactly(text: str) -> None:
    assert formula_unescape(formula_escape(text)) == text
    assert not is_formula_like(formula_escape(text))


def test_csv_format_escapes_on_export_and_unescapes_on_import() -> None:
    data = tablib.Dataset(["=1+1", "-5", "'quoted"], headers=["a", "b", "c"])
    exported = SafeCSV().export_data(data)
    assert exported.splitlines()[1] == "'=1+1,-5,''quoted"
    assert SafeCSV().create_dataset(exported)[0] == ("=1+1", "-5", "'quoted")


def test_xlsx_format_never_writes_a_formula() -> None:
    from openpyxl import load_workbook

    data = tablib.Dataset(["=1+1", 3], headers=["a", "b"], title="Tokens")
    sheet = load_workbook(io.BytesIO(SafeXLSX().export_data(data))).active
    assert sheet.title == "Tokens"
    assert sheet["A2"].value == "=1+1"
    assert sheet["A2"].data_type == "s"
    assert sheet["B2"].value == 3

"""Reading what exports are made of: CSV, Parquet and Excel files, and text values.

A CSV is read all text, nothing guessed (the loaders type every column themselves); a workbook
(``.xlsx``, ``.xlsm``, ``.xls``) keeps its typed cells as they are (a number cell is a number, a
date cell a datetime); a file that cannot be read is a ``SourceError`` naming it. Text tokens
that mean empty, true or false are defined once here, for the loaders and the presets alike.

Example
-------
>>> as_text(pd.Series([" a ", "NULL", ""])).tolist()
['a', <NA>, <NA>]
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from kpi_lib.data.schema import TABLES
from kpi_lib.errors import SourceError

NULL_TEXT = {"", "na", "n/a", "null", "none", "nan", "nat"}


TRUE = {"true", "t", "yes", "y", "1", "1.0"}


FALSE = {"false", "f", "no", "n", "0", "0.0"}


WORKBOOKS = (".xlsx", ".xlsm", ".xls")
TABLE_FILES = (".csv", ".parquet", *WORKBOOKS)
"""The file kinds a table is read from."""


def read_table_file(file: Path, table: str, sheet: str | None = None) -> pd.DataFrame:
    """One CSV (all text, nothing guessed), Parquet file or workbook sheet (``read_workbook``);
    unreadable files are a SourceError naming the file and the table it was read as."""
    if file.suffix.lower() in WORKBOOKS:
        return read_workbook(file, table, sheet)
    try:
        if file.suffix.lower() == ".parquet":
            return pd.read_parquet(file)
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # ragged rows lose data
            df = pd.read_csv(
                file,
                dtype=str,
                keep_default_na=False,
                skipinitialspace=True,
                encoding="utf-8-sig",
                index_col=False,
            )
    except (
        ValueError,
        OSError,
        pd.errors.ParserError,
        pd.errors.ParserWarning,
        UnicodeDecodeError,
    ) as exc:
        hint = " (save or export it as UTF-8)" if isinstance(exc, UnicodeDecodeError) else ""
        raise SourceError(f"{file}: cannot read table '{table}': {exc}{hint}") from exc
    _refuse_duplicate_columns(df, file, table)
    return df


def _refuse_duplicate_columns(df: pd.DataFrame, file: Path, table: str) -> None:
    dup = [
        c
        for c in df.columns
        if "." in str(c)
        and str(c).rsplit(".", 1)[0] in df.columns
        and str(c).rsplit(".", 1)[1].isdigit()
    ]
    if dup:
        raise SourceError(
            f"{file}: table '{table}': column '{dup[0].rsplit('.', 1)[0]}' appears twice"
        )


def read_workbook(file: Path, table: str | None, sheet: str | None = None) -> pd.DataFrame:
    """One sheet of a workbook as a table: the first row names the columns. One row per sheet
    row below it.

    Parameters
    ----------
    file
        An ``.xlsx`` / ``.xlsm`` (read with openpyxl) or ``.xls`` file (xlrd).
    table
        What the sheet is read as, for messages (``"opportunities"``); None while it is read to
        tell which export it is.
    sheet
        The sheet's name; None: the first sheet. ``sheet="Deals"`` in a workbook without that
        sheet is a SourceError listing the sheets it has.

    Cells keep their type: text, a number (a whole number an ``int``, so record ids stay
    ``5001``), a ``datetime`` for a date cell, a bool. A number cell formatted as a percent
    reads as the text it shows (``0.8`` shown ``80%`` is ``"80%"``), so that it is not taken
    for a number on another scale. The empty rows after the last value are not rows.
    """
    try:
        if file.suffix.lower() == ".xls":
            rows = _xls_rows(file, sheet)
        else:
            rows = _xlsx_rows(file, sheet)
    except SourceError:
        raise
    except Exception as exc:  # a corrupt or mislabelled file fails in many ways, all the same
        what = f"table '{table}'" if table else "it (to tell which export it is)"
        raise SourceError(
            f"{file}: cannot read {what}: not a readable {file.suffix.lower()} "
            f"workbook ({type(exc).__name__}: {exc}); export it again as XLSX or CSV"
        ) from exc
    table = table or "an export"
    while rows and all(_empty(v) for v in rows[-1]):
        rows.pop()
    if not rows:
        raise SourceError(f"{file}: cannot read table '{table}': the sheet is empty")
    header = [None if _empty(v) else str(v).strip() for v in rows[0]]
    width = max(len(r) for r in rows)
    header += [None] * (width - len(header))
    body = [list(r) + [None] * (width - len(r)) for r in rows[1:]]
    keep = [i for i, name in enumerate(header) if name is not None]
    for i, name in enumerate(header):
        if name is None and any(not _empty(r[i]) for r in body):
            raise SourceError(
                f"{file}: table '{table}': column {i + 1} holds values but has no header"
            )
    names = [header[i] for i in keep]
    seen = {n for n in names if names.count(n) > 1}
    if seen:
        raise SourceError(f"{file}: table '{table}': column '{sorted(seen)[0]}' appears twice")
    data = {name: [r[i] for r in body] for name, i in zip(names, keep, strict=True)}
    return pd.DataFrame(data, columns=names, dtype=object)


def _empty(value) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def _pick_sheet(names: list[str], sheet: str | None, file: Path) -> str:
    if sheet is None:
        return names[0]
    if sheet not in names:
        raise SourceError(
            f"{file}: no sheet '{sheet}' (the workbook has {', '.join(repr(n) for n in names)})"
        )
    return sheet


def _xlsx_rows(file: Path, sheet: str | None) -> list[list]:
    import openpyxl

    book = openpyxl.load_workbook(file, read_only=True, data_only=True)
    try:
        ws = book[_pick_sheet(book.sheetnames, sheet, file)]
        rows = []
        for row in ws.iter_rows():
            rows.append([_xlsx_value(c) for c in row])
        return rows
    finally:
        book.close()


def _xlsx_value(cell):
    value = getattr(cell, "value", None)
    fmt = getattr(cell, "number_format", "") or ""
    if isinstance(value, int | float) and not isinstance(value, bool) and "%" in fmt:
        return f"{round(value * 100, 10):g}%"
    return value


def _xls_rows(file: Path, sheet: str | None) -> list[list]:
    import xlrd

    book = xlrd.open_workbook(file, formatting_info=True)
    ws = book.sheet_by_name(_pick_sheet(book.sheet_names(), sheet, file))
    rows = []
    for r in range(ws.nrows):
        row = []
        for c in range(ws.ncols):
            cell = ws.cell(r, c)
            if cell.ctype in (xlrd.XL_CELL_EMPTY, xlrd.XL_CELL_BLANK):
                row.append(None)
            elif cell.ctype == xlrd.XL_CELL_DATE:
                row.append(xlrd.xldate_as_datetime(cell.value, book.datemode))
            elif cell.ctype == xlrd.XL_CELL_BOOLEAN:
                row.append(bool(cell.value))
            elif cell.ctype == xlrd.XL_CELL_NUMBER:
                fmt = book.format_map[book.xf_list[cell.xf_index].format_key].format_str
                number = int(cell.value) if float(cell.value).is_integer() else cell.value
                row.append(f"{round(cell.value * 100, 10):g}%" if "%" in fmt else number)
            elif cell.ctype == xlrd.XL_CELL_ERROR:
                row.append(xlrd.error_text_from_code.get(cell.value, "#ERROR"))
            else:
                row.append(cell.value)
        rows.append(row)
    return rows


def read_header(file: Path, sheet: str | None = None) -> list[str]:
    """The column names of a table file, read without its rows (CSV, Parquet) or with them
    (a workbook has no cheaper way). A file that cannot be read is a SourceError naming it."""
    suffix = file.suffix.lower()
    if suffix in WORKBOOKS:
        return [str(c) for c in read_workbook(file, None, sheet).columns]
    try:
        if suffix == ".parquet":
            import pyarrow.parquet as pq

            return list(pq.read_schema(file).names)
        return [
            str(c)
            for c in pd.read_csv(
                file, nrows=0, dtype=str, encoding="utf-8-sig", skipinitialspace=True
            ).columns
        ]
    except (ValueError, OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        hint = " (save or export it as UTF-8)" if isinstance(exc, UnicodeDecodeError) else ""
        raise SourceError(f"{file}: cannot read its header: {exc}{hint}") from exc


def read_folder(path: Path) -> dict[str, tuple[pd.DataFrame, str]]:
    raw: dict[str, tuple[pd.DataFrame, str]] = {}
    for name in TABLES:
        csv, parquet = path / f"{name}.csv", path / f"{name}.parquet"
        if csv.exists() and parquet.exists():
            raise SourceError(f"{path}: both {csv.name} and {parquet.name} exist; keep one")
        for file in (csv, parquet):
            if file.exists():
                raw[name] = (read_table_file(file, name), str(file))
    return raw


def as_text(series: pd.Series) -> pd.Series:
    text = series.astype("string").str.strip()
    return text.mask(text.str.lower().isin(NULL_TEXT))

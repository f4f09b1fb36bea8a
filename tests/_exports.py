"""Files written the way the CRMs' Export buttons write them, byte for byte where it matters.

- ``salesforce_report_csv``: a Salesforce report exported as CSV ("Export" > "Details Only" >
  "Comma Delimited .csv", UTF-8): a UTF-8 byte-order mark, every field in double quotes, CRLF
  line ends, values as the user's locale shows them (``"USD 1,000.00"``, ``"1/15/2026"``),
  and in Salesforce Classic the trailer block after the rows: ``""``, ``"Total"``, ``""``,
  ``"Confidential Information - Do Not Distribute"``, ``""``, ``"Copyright (c) 2000-2026
  salesforce.com, inc. All rights reserved."``. The file is named by the report's id and the
  export's time (``report1765500000000.csv``).
- ``hubspot_csv``: HubSpot's Export of a view as CSV (``hubspot-crm-exports-all-deals-...csv``):
  a BOM, UI labels as the header, every field quoted, CRLF.
- ``workbook``: an XLSX as either CRM writes it, header in row 1 and typed cells (a number is a
  number cell, a datetime a date cell with a date format), through openpyxl; ``xls`` the same
  as a BIFF8 ``.xls`` through xlwt.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

SALESFORCE_TRAILER = [
    "",
    "Total",
    "",
    "Confidential Information - Do Not Distribute",
    "",
    "Copyright (c) 2000-2026 salesforce.com, inc. All rights reserved.",
]
"""The lines a Salesforce Classic report export ends with, one quoted field each."""


def _quoted(values) -> str:
    return ",".join('"' + str(v).replace('"', '""') + '"' for v in values)


def salesforce_report_csv(
    path: Path, header: list[str], rows: list[list], trailer: bool = True
) -> Path:
    """A Salesforce report export; ``trailer`` adds the Classic trailer block."""
    lines = [_quoted(header)] + [_quoted(r) for r in rows]
    if trailer:
        lines += [_quoted([t]) for t in SALESFORCE_TRAILER]
    path.write_bytes(b"\xef\xbb\xbf" + ("\r\n".join(lines) + "\r\n").encode("utf-8"))
    return path


def hubspot_csv(path: Path, header: list[str], rows: list[list]) -> Path:
    """A HubSpot view export as CSV."""
    lines = [_quoted(header)] + [_quoted("" if v is None else v for v in r) for r in rows]
    path.write_bytes(b"\xef\xbb\xbf" + ("\r\n".join(lines) + "\r\n").encode("utf-8"))
    return path


def workbook(path: Path, sheets: dict[str, tuple[list[str], list[list]]]) -> Path:
    """An XLSX with one sheet per entry ``{name: (header, rows)}``, typed cells: datetimes
    get a date format (``m/d/yy h:mm``), floats a two-decimal number format, text stays text."""
    import openpyxl

    book = openpyxl.Workbook()
    book.remove(book.active)
    for name, (header, rows) in sheets.items():
        ws = book.create_sheet(name)
        ws.append(header)
        for row in rows:
            ws.append(row)
        for row in ws.iter_rows(min_row=2):
            for cell in row:
                if isinstance(cell.value, dt.datetime):
                    cell.number_format = "m/d/yy h:mm"
                elif isinstance(cell.value, float):
                    cell.number_format = "#,##0.00"
    book.save(path)
    return path


def xls(path: Path, header: list[str], rows: list[list], sheet: str = "Sheet1") -> Path:
    """A BIFF8 ``.xls`` workbook of one sheet, typed cells as ``workbook`` writes them."""
    import xlwt

    book = xlwt.Workbook()
    ws = book.add_sheet(sheet)
    date = xlwt.easyxf(num_format_str="M/D/YY h:mm")
    money = xlwt.easyxf(num_format_str="#,##0.00")
    for c, name in enumerate(header):
        ws.write(0, c, name)
    for r, row in enumerate(rows, start=1):
        for c, value in enumerate(row):
            if value is None:
                continue
            if isinstance(value, dt.datetime):
                ws.write(r, c, value, date)
            elif isinstance(value, float):
                ws.write(r, c, value, money)
            else:
                ws.write(r, c, value)
    book.save(str(path))
    return path

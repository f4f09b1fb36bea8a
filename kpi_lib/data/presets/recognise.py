"""Which export each file of a folder is, by its name or else by its columns, and which rows
of a report export are not records (its trailer, totals and subtotals).

CRMs name downloaded files after the report (``report1765500000000.csv``) or the view
(``hubspot-crm-exports-all-deals-2026-04-01.xlsx``), so a file is recognised by its header:
each preset lists its exports (``ExportKind``) with the columns that tell them apart. A file
named like an export (``Opportunity.csv``, ``deals.csv``) is that export whatever its header.

Example
-------
>>> kind = ExportKind("deals", "opportunities", names=("deals",),
...                   needs=(("dealstage", "Deal Stage"), ("Record ID", "dealname", "Deal Name")))
>>> kind.matches(["Record ID", "Deal Name", "Deal Stage", "Amount"])
True
>>> trailer_rows(pd.DataFrame({"Owner": ["Ana", "", "Total"], "Id": ["1", "", ""]}), ["Id"]).tolist()
[False, True, True]
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from kpi_lib.data.files import TABLE_FILES, WORKBOOKS, as_text, read_header, read_workbook
from kpi_lib.errors import SourceError


def norm(name: str) -> str:
    """A column or file name compared ignoring case, spaces and punctuation."""
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


def _alternative(pattern: str) -> re.Pattern:
    """``"Deal Stage"`` matches the column ``dealstage`` / ``Deal stage``; ``"re:hscall.*"``
    is a regular expression over the normalised name."""
    if pattern.startswith("re:"):
        return re.compile(pattern[3:])
    return re.compile(re.escape(norm(pattern)))


@dataclass(frozen=True)
class ExportKind:
    """One export a preset reads, and how to tell it.

    ``name`` is the preset's word for it (``"opportunities"``), ``table`` the canonical table
    its rows feed (for messages), ``names`` the file names that are this export, ``needs``
    groups of columns of which the header must hold one each, ``lacks`` columns it must not
    hold (an Opportunity export has an owner, OpportunityHistory none), ``ids`` the columns
    holding a record's id (a row with one is never a trailer).
    """

    name: str
    table: str
    names: tuple[str, ...] = ()
    needs: tuple[tuple[str, ...], ...] = ()
    lacks: tuple[str, ...] = ()
    ids: tuple[str, ...] = ()

    def _has(self, columns: set[str], group: tuple[str, ...]) -> bool:
        return any(_alternative(p).fullmatch(c) for p in group for c in columns)

    def matches(self, header: list[str]) -> bool:
        columns = {norm(c) for c in header}
        return all(self._has(columns, g) for g in self.needs) and not any(
            self._has(columns, (p,)) for p in self.lacks
        )

    def missing(self, header: list[str]) -> list[tuple[str, ...]]:
        columns = {norm(c) for c in header}
        return [g for g in self.needs if not self._has(columns, g)]


@dataclass
class Recognised:
    """The files of one folder: which export each is, and the files not read.

    ``files`` maps an export's name to its file; ``listing`` says for every file what it was
    read as and how it was recognised (``validate`` prints it); ``frames`` keeps the
    workbooks read while recognising them (read once).
    """

    files: dict[str, Path] = field(default_factory=dict)
    listing: list[dict] = field(default_factory=list)
    frames: dict[Path, pd.DataFrame] = field(default_factory=dict)


def recognise(folder: Path, kinds: list[ExportKind], preset: str, sheet=None) -> Recognised:
    """Match every file of ``folder`` to one of ``kinds``: by name, else by header.

    Files named like an export are matched first; the other files by their header, kinds tried
    in their order (the most specific first). A header that matches an export already read by
    its name is listed as not read (a Data Export folder holds many objects). Two files that
    are the same export, both by name or both by header, are a SourceError naming both; files
    that are no export are listed as not recognised, with the nearest export and the columns
    it lacks where one comes close. Hidden files and Excel's lock files (``~$deals.xlsx``) are
    not looked at.
    """
    found = Recognised()
    how: dict[str, str] = {}
    paths = [
        p for p in sorted(folder.iterdir()) if p.is_file() and not p.name.startswith((".", "~$"))
    ]
    by_name = {norm(n): k for k in kinds for n in k.names}
    named = {p for p in paths if p.suffix.lower() in TABLE_FILES and norm(p.stem) in by_name}
    for path in sorted(named):
        _claim(found, how, by_name[norm(path.stem)], path, "by its name")
    for path in paths:
        if path in named:
            continue
        if path.suffix.lower() not in TABLE_FILES:
            found.listing.append(
                {"file": path.name, "read_as": None, "how": "not a CSV, Parquet or Excel file"}
            )
            continue
        header = _header(found, path, sheet)
        kind = next((k for k in kinds if k.matches(header)), None)
        if kind is not None and how.get(kind.name) == "by its name":
            other = found.files[kind.name].name
            why = f"has the columns of {kind.name}, which {other} gives (read by its name)"
            found.listing.append({"file": path.name, "read_as": None, "how": why})
        elif kind is not None:
            _claim(found, how, kind, path, "by its columns")
        else:
            found.listing.append(
                {"file": path.name, "read_as": None, "how": _nearest(kinds, header, preset)}
            )
    found.listing.sort(key=lambda i: i["file"])
    return found


def sheet_of(sheet, path: Path) -> str | None:
    """The sheet the ``sheet`` option names for ``path``: one name for every workbook, or a
    mapping from file name to sheet."""
    if isinstance(sheet, dict):
        return sheet.get(path.name)
    return sheet


def _header(found: Recognised, path: Path, sheet) -> list[str]:
    if path.suffix.lower() in WORKBOOKS:
        frame = read_workbook(path, None, sheet_of(sheet, path))
        found.frames[path] = frame
        return [str(c) for c in frame.columns]
    return read_header(path)


def _claim(found: Recognised, how: dict, kind: ExportKind, path: Path, why: str) -> None:
    if kind.name in found.files:
        other = found.files[kind.name]
        raise SourceError(
            f"{path.parent}: both {other.name} ({how[kind.name]}) and {path.name} ({why}) are "
            f"{kind.name} exports; keep one"
        )
    found.files[kind.name] = path
    how[kind.name] = why
    found.listing.append({"file": path.name, "read_as": kind.name, "how": why})


def _nearest(kinds: list[ExportKind], header: list[str], preset: str) -> str:
    """Why a file is no export: the nearest kind and the columns it lacks, where one is near."""
    best = None
    for kind in kinds:
        missing = kind.missing(header)
        excluded = any(kind._has({norm(c) for c in header}, (p,)) for p in kind.lacks)
        near = 0 < len(missing) <= len(kind.needs) / 2 and not excluded
        if near and (best is None or len(missing) < len(best[1])):
            best = (kind, missing)
    shown = ", ".join(map(str, header[:6])) + (", ..." if len(header) > 6 else "")
    if best is None:
        return f"its columns ({shown}) match no {preset} export"
    lacks = "; ".join(" / ".join(g[:3]) for g in best[1])
    return f"looks like {best[0].name} but has no {lacks} column (columns: {shown})"


# ---------------------------------------------------------------------------------------------
# Report trailers, totals and subtotals
# ---------------------------------------------------------------------------------------------

TRAILER_REASON = "report trailer: a blank line, a total or subtotal, the confidentiality notice"
"""The row accounting's reason for the rows ``trailer_rows`` sets aside."""

_TRAILER = re.compile(
    r"(grand\s+)?(sub\s*)?totals?(\s*\(\d[\d,.]*\s+records?\))?\s*:?"
    r"|(count|sum|average|min|max)(\s+of\s+.*)?\s*:?"
    r"|.*\(\d[\d,.]*\s+records?\)"
    r"|confidential information.*"
    r"|copyright\s*(\(c\)|©).*salesforce\.com.*"
    r"|generated by .*",
    re.IGNORECASE,
)


def trailer_rows(df: pd.DataFrame, ids: list[str]) -> pd.Series:
    """The rows of a report export that are not records. One value per row.

    A row is not a record when it is blank, or when it holds no record id (``ids``: the id
    columns the file has) and its first value is a report's total, subtotal or footer:
    ``Total``, ``Grand Totals (57 records)``, ``Subtotal``, a group line ``Ana Silva (3
    records)``, ``Confidential Information - Do Not Distribute``, ``Copyright (c) 2000-2026
    salesforce.com, inc. All rights reserved.`` Any other row is a record, checked as one.
    """
    if df.empty:
        return pd.Series(False, index=df.index)
    text = df.apply(as_text)
    blank = text.isna().all(axis=1)
    first = text.bfill(axis=1).iloc[:, 0]
    labelled = first.fillna("").map(lambda v: bool(_TRAILER.fullmatch(v.strip())))
    no_id = text[ids].isna().all(axis=1) if ids else pd.Series(True, index=df.index)
    return (blank | (labelled & no_id)).astype(bool)

"""The kit's exceptions: one base class, a few subclasses, each a clear one-line message.

The CLI turns any ``KpiKitError`` into its message on stderr and exit code 2.
"""

from __future__ import annotations

import pandas as pd


class KpiKitError(Exception):
    """Raised when input (data, parameters, configuration) is wrong; the message says where."""


class PeriodError(KpiKitError):
    """Raised when a period or period range cannot be parsed (``2026-13``, ``2026-Q5``)."""


class SourceError(KpiKitError):
    """Raised when a source cannot be read: missing path, unreadable file, missing table."""


class DataError(KpiKitError):
    """Raised when a canonical table breaks the data contract (column, type, key, reference).

    The message names the file, table, column and a few offending rows.
    """

    def __init__(
        self,
        table: str,
        problem: str,
        *,
        column: str | None = None,
        rows: pd.DataFrame | None = None,
        file: str | None = None,
        count: int | None = None,
    ):
        self.table, self.column, self.file, self.problem = table, column, file, problem
        where = f"table '{table}'"
        if file:
            where = f"{file}: {where}"
        if column:
            where += f", column '{column}'"
        message = f"{where}: {problem}"
        if rows is not None and len(rows):
            total = count if count is not None else len(rows)
            shown = rows.head(5)
            lines = [
                f"  {_row_label(i, file)}: " + ", ".join(f"{k}={_show(v)}" for k, v in r.items())
                for i, r in zip(shown.index, shown.to_dict("records"), strict=True)
            ]
            more = f"\n  ... and {total - len(shown)} more" if total > len(shown) else ""
            message += f" ({total} row{'s' if total != 1 else ''})\n" + "\n".join(lines) + more
        super().__init__(message)


def _row_label(index, file: str | None) -> str:
    """Rows as a user finds them: data row 0 is row 1, and line 2 of a CSV file."""
    try:
        number = int(index)
    except (TypeError, ValueError):
        return f"row {index}"
    if file and file.lower().endswith(".csv"):
        return f"line {number + 2}"
    return f"row {number + 1}"


def _show(value) -> str:
    if value is None or (isinstance(value, float) and value != value) or value is pd.NaT:
        return "<empty>"
    return repr(value) if isinstance(value, str) else str(value)


class ParamsError(KpiKitError):
    """Raised when a parameter is wrong: a YAML file under ``params/`` (unknown KPIs, scopes,
    periods) or an option such as ``--scale`` or ``--format``."""


class UnknownScopeError(KpiKitError):
    """Raised when a ``scope_id`` names no team or rep of the source."""

"""The data-quality report of a source: what was loaded, over which dates, and what looks wrong.

Hard errors (missing column, wrong type, duplicate key, unknown owner) raise ``DataError`` while
loading; what is left are findings, quarantined rows (kept out of the KPIs, with the reason) and
the row accounting: every input row is used, quarantined, or "not a row" with a reason.
The date ranges are computed where the tables live (in the warehouse for a SQL source).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from kpi_lib.data.load import load_source
from kpi_lib.data.rules import Finding
from kpi_lib.data.schema import TABLES
from kpi_lib.data.source import Source


@dataclass
class ValidationReport:
    """Row counts and date ranges per canonical table, the findings, and the row accounting.

    Example
    -------
    >>> print(validation_report("data/demo.duckdb").text())    # doctest: +SKIP
    source: data/demo.duckdb (fingerprint 3f2a...)
    table          rows  quarantined  from        to
    teams             6            0
    ...
    """

    location: str
    fingerprint: str
    tables: pd.DataFrame
    findings: list[Finding]
    accounting: pd.DataFrame
    inputs: list[dict] = field(default_factory=list)
    """What each file of a folder of exports was read as (``Source.inputs``)."""

    @property
    def quarantined(self) -> int:
        """Rows kept out of the KPIs."""
        return int(self.accounting.loc[self.accounting["status"] == "quarantined", "rows"].sum())

    def text(self) -> str:
        lines = [f"source: {self.location} (fingerprint {self.fingerprint})", ""]
        read = [i for i in self.inputs if i["read_as"]]
        skipped = [i for i in self.inputs if not i["read_as"]]
        if read:
            width = max(len(i["file"]) for i in read)
            lines.append("files read:")
            lines += [f"  {i['file']:<{width}}  as {i['read_as']} ({i['how']})" for i in read]
        if skipped:
            lines.append("files not recognised (not read):")
            lines += [f"  {i['file']}: {i['how']}" for i in skipped]
        if self.inputs:
            lines.append("")
        lines.append(self.tables.to_string(index=False))
        lines.append("")
        if self.findings:
            lines.append(f"{len(self.findings)} finding(s):")
            lines += [f"  - {f}" for f in self.findings]
        else:
            lines.append("no findings: every check passed")
        other = self.accounting[self.accounting["status"] != "used"]
        if len(other):
            lines += ["", "rows not used in the KPIs:"]
            lines += [
                f"  - {r.table}: {r.rows} {r.status} ({r.reason})" for r in other.itertuples()
            ]
        return "\n".join(lines)


def validation_report(
    source: str | Path | dict | Source,
    preset: str | None = None,
    *,
    options=None,
    colmap=None,
    fx=None,
    as_of=None,
) -> ValidationReport:
    """Load ``source`` (raising on hard errors) and describe it. One row per canonical table.

    Parameters are those of ``load_source``.
    """
    src = load_source(source, preset, options=options, colmap=colmap, fx=fx, as_of=as_of)
    accounting = src.row_accounting()
    rows = []
    for name, spec in TABLES.items():
        if not src.has(name):
            rows.append({"table": name, "rows": "absent", "quarantined": "", "from": "", "to": ""})
            continue
        mine = accounting[accounting["table"] == name]
        # the dates things happened: an expected close date is a plan, often in the future
        dates = [
            c
            for c, kind in spec.columns.items()
            if kind == "ts" and c != "expected_close_at" and src.has_column(name, c)
        ]
        low = high = None
        if dates:
            t = src.table(name)
            aggs = {f"min_{c}": t[c].min() for c in dates} | {f"max_{c}": t[c].max() for c in dates}
            stats = t.aggregate(**aggs).to_pandas().iloc[0]
            lows = [stats[f"min_{c}"] for c in dates if pd.notna(stats[f"min_{c}"])]
            highs = [stats[f"max_{c}"] for c in dates if pd.notna(stats[f"max_{c}"])]
            low, high = (min(lows), max(highs)) if lows else (None, None)
        rows.append(
            {
                "table": name,
                "rows": str(int(mine.loc[mine["status"] == "used", "rows"].sum())),
                "quarantined": str(int(mine.loc[mine["status"] == "quarantined", "rows"].sum())),
                "from": "" if low is None else str(pd.Timestamp(low).date()),
                "to": "" if high is None else str(pd.Timestamp(high).date()),
            }
        )
    return ValidationReport(
        src.location,
        src.fingerprint,
        pd.DataFrame(rows),
        list(src.findings),
        accounting,
        list(src.inputs),
    )

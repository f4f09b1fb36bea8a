"""The data-quality report of a source: what was loaded, over which dates, and what looks wrong.

Hard errors (missing column, wrong type, duplicate key, unknown owner) raise ``DataError`` while
loading; what is left are findings that do not stop the KPIs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kpi_lib.schema import TABLES
from kpi_lib.sources import Finding, Source, load_source


@dataclass
class ValidationReport:
    """Row counts and date ranges per canonical table, and the findings.

    Example
    -------
    >>> print(validation_report("data/demo.duckdb").text())    # doctest: +SKIP
    source: data/demo.duckdb (fingerprint 3f2a...)
    table          rows  dates
    teams             6
    ...
    """

    location: str
    fingerprint: str
    tables: pd.DataFrame
    findings: list[Finding]

    def text(self) -> str:
        lines = [f"source: {self.location} (fingerprint {self.fingerprint})", ""]
        lines.append(self.tables.to_string(index=False))
        lines.append("")
        if self.findings:
            lines.append(f"{len(self.findings)} finding(s):")
            lines += [f"  - {f}" for f in self.findings]
        else:
            lines.append("no findings: every check passed")
        return "\n".join(lines)


def validation_report(source: str | Path | dict | Source) -> ValidationReport:
    """Load ``source`` (raising on hard errors) and describe it. One row per canonical table."""
    src = load_source(source)
    rows = []
    for name, spec in TABLES.items():
        if not src.has(name):
            rows.append({"table": name, "rows": "absent", "from": "", "to": ""})
            continue
        df = src.frame(name)
        dates = [c for c, kind in spec.columns.items() if kind == "ts" and src.has_column(name, c)]
        stamps = pd.concat([df[c] for c in dates]).dropna() if dates else pd.Series([], dtype="datetime64[us]")
        rows.append({
            "table": name,
            "rows": str(len(df)),
            "from": "" if stamps.empty else str(stamps.min().date()),
            "to": "" if stamps.empty else str(stamps.max().date()),
        })
    return ValidationReport(src.location, src.fingerprint, pd.DataFrame(rows), list(src.findings))

"""Guards before anything is sent: does the source look right for the period?

A run renders whatever the source holds. When the nightly export stopped in June, November's
reports show revenue 0 and activities 0, and the digests would tell the CEO so. The guards
read what every render records about its source in ``manifest.json`` (``source_stats``: rows
per canonical table and the newest opportunity and activity up to the report date) and hold
the sending back when:

- **stale**: the newest opportunity (created or closed) or activity is older than the
  period's start, less ``max_lag_days``; in the first days of a month to date, older than the
  report date less ``WEEKEND_DAYS`` (a month that began on a Saturday has no row yet on the
  2nd, and that is not news);
- **missing table**: a table the last batch had is gone;
- **shrunken table**: a table's row count fell by more than ``max_row_drop`` (a share) against
  the last batch, the most recent other render in the reports folder before this one (or the
  render of this period that this one replaced, whose figures the manifest keeps). A batch the
  guards held back is never the last batch (``record_verdict`` notes it in its manifest): a
  shrunken export rendered twice is still compared with the batch before it.

``send --force-send`` (and ``monthly`` / ``mtd`` with it) sends anyway and the ledger records
that it was forced and why. A manifest without source figures (rendered by an older version, or
a batch put together by hand) is not judged.

Example
-------
>>> stats = {"tables": {"opportunities": 900, "activities": 4000},
...          "newest": {"opportunities": "2026-06-30", "activities": "2026-06-30"}}
>>> last = {"tables": {"opportunities": 1200, "activities": 4100}, "period": "2026-10"}
>>> for finding in judge(stats, Period.parse("2026-11"), last, GuardPolicy()):
...     print(finding)
stale source: the newest activity is from 2026-06-30, before 2026-11-01 when 2026-11 starts
stale source: the newest opportunity is from 2026-06-30, before 2026-11-01 when 2026-11 starts
shrunken table: opportunities has 900 rows, 1,200 in the last batch (2026-10): -25%, more than the 20% allowed
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import date, timedelta
from pathlib import Path

import pandas as pd

from kpi_lib.errors import ParamsError
from kpi_lib.paths import write_atomic
from kpi_lib.periods import Period

NEWEST = {"opportunities": ("created_at", "closed_at"), "activities": ("occurred_at",)}
"""The tables whose newest row says how recent a source is, and the dates that count."""
SINGULAR = {"opportunities": "opportunity", "activities": "activity"}
WEEKEND_DAYS = 3
"""How far behind its report date a month to date's source may be in the month's first days."""


@dataclass(frozen=True)
class GuardPolicy:
    """How much a source may look wrong before a run holds its sending back.

    ``max_lag_days``: how many days before the period's start the newest opportunity or
    activity may be (0: it must fall in the period). ``max_row_drop``: the share by which a
    table's row count may fall against the last batch (0.2: a table may lose a fifth of its
    rows; a missing table always counts).

    Example
    -------
    >>> GuardPolicy(max_lag_days=3).stale_before(Period.parse("2026-11"))
    datetime.date(2026, 10, 29)
    """

    max_lag_days: int = 0
    max_row_drop: float = 0.2

    def __post_init__(self):
        if self.max_lag_days < 0:
            raise ParamsError(f"--max-lag-days {self.max_lag_days} must be 0 or more")
        if not 0 <= self.max_row_drop < 1:
            raise ParamsError(
                f"--max-row-drop {self.max_row_drop} must be a share from 0 to below 1 "
                "(0.2: a table may lose a fifth of its rows)"
            )

    def stale_before(self, period: Period) -> date:
        return period.start.date() - timedelta(days=self.max_lag_days)


@dataclass
class Verdict:
    """What the guards found for one batch: ``findings`` (empty: send), and what was compared."""

    findings: list[str] = field(default_factory=list)
    compared_with: str | None = None
    """The last batch the row counts were compared with, or None (no earlier batch)."""
    judged: bool = True
    """False when the manifest records no source figures (nothing could be checked)."""

    @property
    def hold(self) -> bool:
        return bool(self.findings)

    def reason(self) -> str:
        return "; ".join(self.findings)


def source_stats(src, until=None) -> dict:
    """What the guards need from a loaded source: rows per table and the newest dates.

    ``until``: the end of the report date (rows dated later, such as meetings planned ahead,
    do not make a stale source look fresh). Returns ``{"tables": {table: rows}, "newest":
    {"opportunities": "2026-11-28", "activities": "2026-11-30"}}`` (a table without a
    dated row has None).
    """
    tables = {str(k): int(v) for k, v in sorted(src.row_counts().items())}
    newest: dict[str, str | None] = {}
    limit = None if until is None else pd.Timestamp(until)
    for table, columns in NEWEST.items():
        if not src.has(table):
            continue
        t = src.table(table)
        found = []
        for column in columns:
            if not src.has_column(table, column):
                continue
            col = t[column]
            kept = t if limit is None else t.filter(col.cast("timestamp") < limit.to_pydatetime())
            expr = kept[column].max()
            try:
                value = expr.execute()
            except Exception:  # noqa: BLE001 - a figure the guard cannot read is not judged
                value = None
            if value is not None and not pd.isna(value):
                found.append(pd.Timestamp(value))
        newest[table] = max(found).date().isoformat() if found else None
    return {"tables": tables, "newest": newest}


def judge(
    stats: dict, period: Period, last: dict | None, policy: GuardPolicy, as_of=None
) -> list[str]:
    """The findings for a batch whose source showed ``stats``, against the ``last`` batch's.

    ``last``: ``{"tables": ..., "period": ...}`` of the batch before, or None; ``as_of``: the
    batch's last day of data (a month to date's is inside the period).
    """
    findings = []
    start = period.start.date()
    cutoff = policy.stale_before(period)
    if as_of is not None:
        cutoff = min(cutoff, date.fromisoformat(str(as_of)[:10]) - timedelta(days=WEEKEND_DAYS))
    for table, newest in sorted((stats.get("newest") or {}).items()):
        what = SINGULAR.get(table, table)
        if newest is None:
            findings.append(f"stale source: {table} holds no dated row up to the report date")
        elif date.fromisoformat(newest) < cutoff:
            when = (
                f"when {period.label} starts"
                if cutoff == start
                else f"({period.label} starts on {start}; {(start - cutoff).days} days allowed)"
            )
            findings.append(
                f"stale source: the newest {what} is from {newest}, before {cutoff} {when}"
            )
    if last:
        now, before = stats.get("tables") or {}, last.get("tables") or {}
        where = f"the last batch ({last.get('period', '?')})"
        for table, rows in sorted(before.items()):
            if table not in now:
                findings.append(f"missing table: {table} ({rows:,} rows in {where}) is gone")
            elif rows and now[table] < rows * (1 - policy.max_row_drop):
                drop = now[table] / rows - 1
                findings.append(
                    f"shrunken table: {table} has {now[table]:,} rows, {rows:,} in {where}: "
                    f"{drop:.0%}, more than the {policy.max_row_drop:.0%} allowed"
                )
    return findings


def check_batch(period_dir: str | Path, policy: GuardPolicy = GuardPolicy()) -> Verdict:
    """The guards' verdict on the rendered batch in ``period_dir`` (``reports/2026-11``).

    Reads its ``manifest.json`` and those of the other batches in the reports folder (the
    parent of ``period_dir``); see the module docstring for the rules.
    """
    period_dir = Path(period_dir)
    manifest = _manifest(period_dir / "manifest.json")
    stats = manifest.get("source") if manifest else None
    if not stats:
        return Verdict(judged=False)
    period = Period.parse(str(manifest.get("period") or period_dir.name))
    last = last_batch(period_dir, manifest)
    return Verdict(
        judge(stats, period, last, policy, manifest.get("as_of")),
        None if last is None else str(last.get("period")),
    )


def record_verdict(period_dir: str | Path, verdict: Verdict, forced: bool = False) -> None:
    """Note the verdict in the batch's ``manifest.json`` (``"guard"``): a batch held back is
    never the last batch a later one is compared with, so rendering it again cannot make a
    shrunken table its own yardstick. Nothing is written for an unjudged batch, or when the
    note is already there."""
    if not verdict.judged:
        return
    path = Path(period_dir) / "manifest.json"
    data = _manifest(path)
    if data is None:
        return
    note = {
        "held": verdict.hold and not forced,
        "forced": verdict.hold and forced,
        "findings": verdict.findings,
        "compared_with": verdict.compared_with,
    }
    if data.get("guard") != note:
        data["guard"] = note
        write_atomic(path, json.dumps(data, indent=2, default=str) + "\n")


def accepted_source(manifest: dict) -> dict | None:
    """The source figures a manifest offers as a yardstick: its own, unless the guards held it
    back; then those of the render it replaced (``previous_source``), if any."""
    if (manifest.get("guard") or {}).get("held"):
        previous = manifest.get("previous_source")
        return previous if previous and previous.get("tables") else None
    source = manifest.get("source")
    if not source or not source.get("tables"):
        return None
    return {**source, "finished_at": manifest.get("finished_at")}


def last_batch(period_dir: Path, manifest: dict) -> dict | None:
    """The source figures of the batch rendered last before this one and not held back:
    another period's manifest, or the render of this period that this one replaced
    (``previous_source``)."""
    started = str(manifest.get("started_at") or "")
    candidates = []
    previous = manifest.get("previous_source")
    if previous and previous.get("tables"):
        candidates.append({**previous, "period": manifest.get("period")})
    for other in Path(period_dir).parent.glob("*/manifest.json"):
        if other.parent == Path(period_dir):
            continue
        data = _manifest(other)
        offered = accepted_source(data) if data else None
        if offered:
            candidates.append({**offered, "period": data.get("period") or other.parent.name})
    earlier = [c for c in candidates if str(c.get("finished_at") or "") < started]
    return max(earlier, key=lambda c: str(c.get("finished_at") or ""), default=None)


def _manifest(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None

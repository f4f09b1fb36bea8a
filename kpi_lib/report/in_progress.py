"""A report period that has not ended yet: what a month-to-date report compares and projects.

``partial_period`` says whether a batch's ``as_of`` (the last day with data) falls before the
end of its period. For a month it also fetches ``kpi_lib.metrics.month_to_date.mtd_comparison``: every KPI to
date against the same days of the previous month, with the run-rate projection to month end.
That table is read from ``mtd.csv`` beside the batch when one with the same ``as_of`` exists,
else computed (two single-period cubes, a few seconds on the demo data).

Example
-------
>>> p = partial_period(Period.parse("2026-10"), "2026-10-14", comparison=False)
>>> p.headline
'October 2026 to date: 1-14 Oct, 14 of 31 days'
>>> partial_period(Period.parse("2026-10"), "2026-10-31") is None
True
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kpi_lib.metrics.month_to_date import (
    MTD_COLUMNS,
    is_partial,
    mtd_comparison,
    same_days_previous,
)
from kpi_lib.periods import Period
from kpi_lib.report import theme

FLOW_KPIS_NOT_PROJECTED = frozenset({"pipeline_amount", "weighted_pipeline", "open_at_start"})
"""Additive KPIs that are stocks at a date, not flows over the period: never projected."""


@dataclass(frozen=True)
class PartialPeriod:
    """A period seen part-way through: its window so far and, for a month, the MTD comparison.

    ``comparison`` holds one row per scope x scope_id x KPI (``kpi_lib.metrics.month_to_date.MTD_COLUMNS``),
    indexed by ``(scope, scope_id, kpi)``; None for quarters and years.
    """

    period: Period
    as_of: pd.Timestamp
    comparison: pd.DataFrame | None = None

    @property
    def days_elapsed(self) -> int:
        return int((self.as_of - self.period.start).days) + 1

    @property
    def days_in_period(self) -> int:
        return int((self.period.end - self.period.start).days)

    @property
    def days_left(self) -> int:
        return self.days_in_period - self.days_elapsed

    @property
    def last_day(self) -> pd.Timestamp:
        return self.period.end - pd.Timedelta(days=1)

    @property
    def window(self) -> str:
        """``'1-14 Oct'`` (a month) or ``'1 Oct-14 Nov'`` (a longer period)."""
        start = self.period.start
        if start.month == self.as_of.month and start.year == self.as_of.year:
            return f"{start.day}-{self.as_of.day} {self.as_of.strftime('%b')}"
        return f"{start.day} {start.strftime('%b')}-{self.as_of.day} {self.as_of.strftime('%b')}"

    @property
    def previous_window(self) -> str:
        """``'1-14 Sep'``: the same days of the previous month (capped at its last day)."""
        day = same_days_previous(self.as_of)
        return f"1-{day.day} {day.strftime('%b')}"

    @property
    def headline(self) -> str:
        """``'October 2026 to date: 1-14 Oct, 14 of 31 days'``."""
        return (
            f"{theme.month_name(self.period.label)} to date: {self.window}, "
            f"{self.days_elapsed} of {self.days_in_period} days"
        )

    @property
    def end_label(self) -> str:
        """``'31 Oct'``: the day a projection runs to."""
        return f"{self.last_day.day} {self.last_day.strftime('%b')}"

    def figure(self, scope: str, scope_id: str, kpi: str, field: str) -> float:
        """One field of the MTD comparison (``previous_same_days``, ``projection``, ...)."""
        if self.comparison is None:
            return math.nan
        try:
            v = self.comparison.loc[(scope, str(scope_id), kpi), field]
        except KeyError:
            return math.nan
        if isinstance(v, pd.Series):
            v = v.iloc[0]
        return math.nan if pd.isna(v) else float(v)

    def projection(self, scope: str, scope_id: str, kpi: str) -> float:
        """The run rate to the period's end of a flow KPI (NaN for rates and stocks)."""
        if kpi in FLOW_KPIS_NOT_PROJECTED:
            return math.nan
        return self.figure(scope, scope_id, kpi, "projection")


def partial_period(
    period: Period,
    as_of: str | pd.Timestamp | None,
    *,
    comparison: bool = True,
    source=None,
    targets=None,
    search: tuple[Path, ...] = (),
) -> PartialPeriod | None:
    """The partial view of ``period`` with data through ``as_of``; None when it is complete.

    Parameters
    ----------
    as_of
        The last day with data (``Batch.as_of``: ``'2026-10-14'``).
    comparison
        False: no comparison (the window only). True: read ``mtd.csv`` from the ``search``
        folders (a batch's ``_data`` and its period folder) when its ``as_of`` matches, else
        ``mtd_comparison(source, as_of, targets)``.
    source
        A source for ``mtd_comparison``, or a function returning one: called only when no
        ``mtd.csv`` answers (a report of a scheduled batch never loads the source).
    """
    if as_of is None or not is_partial(period, as_of):
        return None
    day = pd.Timestamp(as_of).normalize()
    if day < period.start:
        return None  # no day of the period has data yet: nothing partial to show
    table = None
    if comparison and period.grain == "month":
        table = _read_cached(search, day)
        if table is None:
            table = mtd_comparison(source() if callable(source) else source, day, targets=targets)
        table = (
            table.assign(scope_id=table["scope_id"].astype(str))
            .set_index(["scope", "scope_id", "kpi"])
            .sort_index()
        )
    return PartialPeriod(period, day, table)


def _read_cached(folders: tuple[Path, ...], day: pd.Timestamp) -> pd.DataFrame | None:
    for folder in folders:
        path = Path(folder) / "mtd.csv"
        if not path.is_file():
            continue
        table = pd.read_csv(path, dtype={"scope_id": str, "as_of": str})
        fresh = (table["as_of"] == day.date().isoformat()).all()
        if set(MTD_COLUMNS) <= set(table.columns) and fresh:
            return table
    return None


__all__ = ["PartialPeriod", "partial_period"]

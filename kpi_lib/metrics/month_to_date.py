"""Month to date: a partial month compared fairly, and projected to its end.

A month-to-date report on day D covers the 1st to D of the month. Comparing it with the whole
previous month would flatter nobody, so every figure is set against the *same days* of the
previous month (the 1st to D, capped at that month's last day), each side computed as it was
known then (``compute_cube`` with ``as_of``). Additive KPIs (counts and sums: revenue, leads,
activities) also get a run-rate projection to the end of the month:
``value x days_in_month / days_elapsed``; rates and averages are not projected.
"""

from __future__ import annotations

from datetime import date, datetime

import pandas as pd

from kpi_lib.data.load import load_source
from kpi_lib.data.source import Source
from kpi_lib.metrics.compare import attainment, change
from kpi_lib.metrics.cube import compute_cube
from kpi_lib.metrics.registry import REGISTRY
from kpi_lib.periods import Period

MTD_COLUMNS = [
    "period",
    "as_of",
    "days_elapsed",
    "days_in_period",
    "previous_as_of",
    "scope",
    "scope_id",
    "kpi",
    "value",
    "previous_same_days",
    "change",
    "projection",
    "target",
    "projected_attainment",
]


def month_of(day: date | datetime | str) -> Period:
    """The calendar month that contains ``day``: ``'2027-01-15'`` -> ``2027-01``."""
    ts = pd.Timestamp(day)
    return Period(pd.Timestamp(ts.year, ts.month, 1), "month")


def same_days_previous(as_of: date | datetime | str) -> pd.Timestamp:
    """The day of the previous month that matches ``as_of``, capped at that month's end.

    Example
    -------
    >>> same_days_previous("2026-03-31").date(), same_days_previous("2027-01-15").date()
    (datetime.date(2026, 2, 28), datetime.date(2026, 12, 15))
    """
    ts = pd.Timestamp(as_of).normalize()
    previous = month_of(ts).previous
    last = previous.end - pd.Timedelta(days=1)
    return min(previous.start + pd.Timedelta(days=ts.day - 1), last)


def mtd_comparison(
    source: str | Source,
    as_of: date | datetime | str,
    targets=None,
) -> pd.DataFrame:
    """Every KPI of the month containing ``as_of``, to date, against the same days a month ago.

    Parameters
    ----------
    source
        Where the canonical tables live (``'data/demo.duckdb'``) or a loaded ``Source``.
    as_of
        The last day with data (``'2026-11-14'``: the 1st to the 14th of November 2026).
    targets
        A targets file (default: the org's own; ``""``: none); ``target`` is the full
        month's target.

    Returns
    -------
    DataFrame
        One row per scope x scope_id x KPI: ``value`` to date, ``previous_same_days`` (the 1st
        to the same day of the previous month), ``change`` (``compare.change``: points for
        ratios, relative otherwise), ``projection`` (additive KPIs: run rate to month end,
        else NaN), the month's ``target`` and ``projected_attainment`` (projection, or the
        to-date value for rates, against the target).

    Example
    -------
    >>> m = mtd_comparison("data/demo.duckdb", "2026-10-14")                   # doctest: +SKIP
    >>> revenue = m.query("scope == 'company' and kpi == 'revenue'")          # doctest: +SKIP
    >>> revenue[["value", "previous_same_days", "projection"]]                 # doctest: +SKIP
    """
    day = pd.Timestamp(as_of).normalize()
    period = month_of(day)
    previous_day = same_days_previous(day)
    src = load_source(source)
    now = compute_cube(src, [period], as_of=day.date().isoformat(), targets=targets)
    before = compute_cube(
        src, [period.previous], as_of=previous_day.date().isoformat(), targets=targets
    )
    keys = ["scope", "scope_id", "kpi"]
    merged = now[[*keys, "value", "target"]].merge(
        before[[*keys, "value"]].rename(columns={"value": "previous_same_days"}),
        on=keys,
        how="left",
    )
    elapsed = int(day.day)
    days_in = int((period.end - period.start).days)
    units = merged["kpi"].map(lambda k: _meta(k, "unit", "count"))
    additive = merged["kpi"].map(lambda k: _meta(k, "additive", False)).astype(bool)
    better = merged["kpi"].map(lambda k: _meta(k, "higher_is_better", True)).astype(bool)
    merged["change"] = [
        change(v, p, u)
        for v, p, u in zip(merged["value"], merged["previous_same_days"], units, strict=True)
    ]
    merged["projection"] = merged["value"].where(additive) * days_in / elapsed
    basis = merged["projection"].where(additive, merged["value"])
    merged["projected_attainment"] = [
        attainment(b, t, h) for b, t, h in zip(basis, merged["target"], better, strict=True)
    ]
    merged["period"] = period.label
    merged["as_of"] = day.date().isoformat()
    merged["previous_as_of"] = previous_day.date().isoformat()
    merged["days_elapsed"], merged["days_in_period"] = elapsed, days_in
    return merged[MTD_COLUMNS].reset_index(drop=True)


def is_partial(period: Period, as_of: str | date | None) -> bool:
    """Whether data ``as_of`` (the last day with data) ends before ``period`` does."""
    if as_of is None:
        return False
    return pd.Timestamp(as_of).normalize() < period.end - pd.Timedelta(days=1)


def _meta(kpi: str, attr: str, default):
    base = kpi.split(":", 1)[0]
    meta = REGISTRY.get(kpi) or REGISTRY.get(base)
    return default if meta is None else getattr(meta, attr)


def days_label(row_or_frame) -> str:
    """``'1-14 Nov'`` style label of the to-date window, for tile and chart captions."""
    frame = row_or_frame
    as_of = pd.Timestamp(frame["as_of"] if isinstance(frame, dict) else frame["as_of"].iloc[0])
    return f"1-{as_of.day} {as_of.strftime('%b')}"


__all__ = [
    "MTD_COLUMNS",
    "days_label",
    "is_partial",
    "month_of",
    "mtd_comparison",
    "same_days_previous",
]

"""How two figures compare: n/a, the change between periods, attainment of a target.

The arithmetic every view of a KPI shares (report tiles, digests, the month-to-date table), so
that a change or an attainment is computed one way everywhere; formatting is the report's.

Example
-------
>>> change(0.31, 0.25, "ratio"), change(110, 100, "currency"), attainment(90, 100)
(0.06, 0.10000000000000009, 0.9)
"""

from __future__ import annotations

import math

import pandas as pd


def is_missing(value) -> bool:
    """Whether ``value`` is n/a (None, NaN, NA)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    try:
        return bool(math.isnan(float(value)))
    except (TypeError, ValueError):
        return False


def change(now, before, unit: str) -> float:
    """The change of a KPI between two periods, in the unit people compare it in.

    Ratios (win rate, retention) change in percentage points (``now - before``); everything
    else in relative terms (``now / before - 1``). n/a (NaN) when either side is n/a or the
    base is 0.
    """
    if is_missing(now) or is_missing(before):
        return math.nan
    now, before = float(now), float(before)
    if unit == "ratio":
        return now - before
    if before == 0:
        return math.nan
    return now / before - 1


def attainment(value, target, higher_is_better: bool = True) -> float:
    """How far a KPI is towards its target: ``value / target`` (``target / value`` when lower is
    better, e.g. CAC). n/a without a target or with a zero side."""
    if is_missing(value) or is_missing(target):
        return math.nan
    value, target = float(value), float(target)
    if higher_is_better:
        return value / target if target else math.nan
    return target / value if value else math.nan

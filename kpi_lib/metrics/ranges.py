"""Whether a figure moved for real: normal ranges, and noise in a rate's change.

The arithmetic behind ``kpis.csv``'s ``band_low``, ``band_high``, ``unusual`` and
``change_significant`` columns and a rate's confidence interval; the cube applies it over its
whole grid (``cube.compute_cube``), the reports read the columns.

- **Normal range** of a KPI in month M: the median of its values in the 12 months before M, plus
  or minus ``2 x 1.4826 x`` their median absolute deviation (MAD), when at least 6 of those
  months have a value. 1.4826 x MAD estimates a standard deviation that one odd month cannot
  drag, so the range is about +/- 2 standard deviations of an ordinary month.
- **Significant change** of a rate (win rate, lead conversion, retention, churn) against the
  previous period: a two-proportion z-test on the two periods' numerators and denominators,
  pooled, two-sided, significant when p < 0.05.
- **Wilson interval**: the 95% interval of a rate ``x / n``, which stays inside [0, 1] for small n.

Example
-------
>>> low, high = normal_range([10, 12, 11, 13, 9, 10, 12, 11, 10, 14, 11, 12])
>>> round(float(low), 2), round(float(high), 2)
(8.03, 13.97)
>>> round(two_proportion_p(30, 100, 15, 100), 4)
0.0111
>>> [round(v, 4) for v in wilson_interval(8, 10)]
[0.4902, 0.9433]
"""

from __future__ import annotations

import math

import numpy as np

BAND_MONTHS = 12
"""How many months before M a normal range looks at."""
BAND_MIN_MONTHS = 6
"""How many of them must have a value for a range."""
BAND_WIDTH = 2 * 1.4826
"""The half-width of a range in MADs: two robust standard deviations."""
SIGNIFICANCE = 0.05
"""A rate's change is significant when the z-test's p-value is below this."""
TESTED_RATES = ("win_rate", "lead_conversion_rate", "retention_rate", "churn_rate")
"""The rates whose change is tested for noise: each a count of successes over a count of cases."""
STEADY_DIGITS = 12
"""Significant digits a value keeps before a range is computed or judged (``steady``)."""
Z_95 = 1.959963984540054
"""The standard normal's 97.5% quantile (a two-sided 95% interval)."""


def normal_range(history) -> tuple[float, float]:
    """The normal range ``(low, high)`` of the values in ``history`` (the 12 months before M;
    NaN: no value), or ``(nan, nan)`` with fewer than ``BAND_MIN_MONTHS`` values.

    Example: ``normal_range([5.0] * 6)`` is ``(5.0, 5.0)``: a KPI that never moved has a range
    of one value, and any other value is unusual.
    """
    low, high = normal_ranges(np.asarray(history, dtype="float64")[None, :])
    return float(low[0]), float(high[0])


def normal_ranges(windows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``normal_range`` of every row of ``windows`` (one row per KPI x scope x month, one column
    per earlier month, NaN where no value): two arrays of the rows' lows and highs."""
    windows = steady(np.asarray(windows, dtype="float64"))
    low = np.full(windows.shape[0], np.nan)
    high = np.full(windows.shape[0], np.nan)
    enough = np.count_nonzero(~np.isnan(windows), axis=1) >= BAND_MIN_MONTHS
    if enough.any():
        rows = windows[enough]
        median = _row_medians(rows)
        mad = _row_medians(np.abs(rows - median[:, None]))
        low[enough] = median - BAND_WIDTH * mad
        high[enough] = median + BAND_WIDTH * mad
    return low, high


def steady(values: np.ndarray, digits: int = STEADY_DIGITS) -> np.ndarray:
    """``values`` rounded to ``digits`` significant digits (NaN, 0 and infinities as they are).

    The database sums floats in parallel, in no fixed order: twelve months of a rate that is
    the same on paper can differ in their last bits, which would give a range a width of
    1e-17 instead of 0 and make a value "unusual" by noise. Rounded first, equal is equal.

    Example: ``steady(np.array([0.1 + 0.2]))`` is ``array([0.3])``.
    """
    values = np.asarray(values, dtype="float64")
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        scale = 10.0 ** (digits - 1 - np.floor(np.log10(np.abs(values))))
        rounded = np.round(values * scale) / scale
    return np.where(np.isfinite(rounded), rounded, values)


def _row_medians(rows: np.ndarray) -> np.ndarray:
    """The median of each row's values, NaN left out (``np.nanmedian`` by sorting once)."""
    ordered = np.sort(rows, axis=1)  # NaN sorts last
    count = np.count_nonzero(~np.isnan(rows), axis=1)
    at = np.arange(len(rows))
    return (ordered[at, (count - 1) // 2] + ordered[at, count // 2]) / 2


def is_unusual(value, low, high) -> np.ndarray:
    """Whether ``value`` lies outside ``[low, high]``; False without a value or a range."""
    value, low, high = (steady(np.asarray(a, dtype="float64")) for a in (value, low, high))
    with np.errstate(invalid="ignore"):
        return (value < low) | (value > high)


def two_proportion_p(x1, n1, x0, n0):
    """The two-sided p-value of a pooled two-proportion z-test of ``x1 / n1`` against
    ``x0 / n0`` (arrays or numbers); NaN where either count of cases is 0 or missing.

    ``z = (x1/n1 - x0/n0) / sqrt(p (1 - p) (1/n1 + 1/n0))`` with ``p = (x1 + x0) / (n1 + n0)``;
    when ``p`` is 0 or 1 both rates are equal and p-value is 1.

    Example: 30 of 100 won against 15 of 100 gives z = 2.54 and p = 0.011.
    """
    x1, n1, x0, n0 = (np.asarray(a, dtype="float64") for a in (x1, n1, x0, n0))
    with np.errstate(invalid="ignore", divide="ignore"):
        tested = (n1 > 0) & (n0 > 0)
        pooled = (x1 + x0) / (n1 + n0)
        spread = np.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
        z = np.where(spread > 0, (x1 / n1 - x0 / n0) / spread, 0.0)
        p = _erfc(np.abs(z) / math.sqrt(2))
    p = np.where(tested, p, np.nan)
    return float(p) if p.ndim == 0 else p


_erfc = np.vectorize(math.erfc, otypes=["float64"])


def wilson_interval(x: float, n: float, z: float = Z_95) -> tuple[float, float]:
    """The Wilson score interval of the rate ``x / n`` (95% by default); ``(nan, nan)`` for
    ``n = 0``. Example: 8 won of 10 closed -> (0.49, 0.94)."""
    if not n or n != n or x != x:
        return math.nan, math.nan
    rate = x / n
    centre = (rate + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(rate * (1 - rate) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)

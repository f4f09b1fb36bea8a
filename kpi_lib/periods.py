"""Reporting periods: half-open calendar ranges ``[start, next start)``.

A period is a month (``2026-10``), a quarter (``2026-Q3``) or a year (``2026``). A range
``A:B`` lists every period of one grain from ``A`` to ``B`` inclusive.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd

from kpi_lib.errors import PeriodError

_MONTH = re.compile(r"^(\d{4})-(\d{2})$")
_QUARTER = re.compile(r"^(\d{4})-[Qq]([1-4])$")
_YEAR = re.compile(r"^(\d{4})$")
GRAIN_MONTHS = {"month": 1, "quarter": 3, "year": 12}


@dataclass(frozen=True, order=True)
class Period:
    """One calendar period.

    Parameters
    ----------
    start
        First instant of the period (midnight).
    grain
        ``"month"``, ``"quarter"`` or ``"year"``.

    Example
    -------
    >>> p = Period.parse("2026-Q3")
    >>> p.start, p.end
    (Timestamp('2026-07-01 00:00:00'), Timestamp('2026-10-01 00:00:00'))
    """

    start: pd.Timestamp
    grain: str

    @classmethod
    def parse(cls, text: str) -> Period:
        """Parse ``YYYY-MM``, ``YYYY-Qn`` or ``YYYY``; raise ``PeriodError`` otherwise."""
        text = str(text).strip()
        if m := _MONTH.match(text):
            year, month = int(m[1]), int(m[2])
            if not 1 <= month <= 12:
                raise PeriodError(f"period '{text}': month must be 01-12")
            return cls(pd.Timestamp(year, month, 1), "month")
        if m := _QUARTER.match(text):
            return cls(pd.Timestamp(int(m[1]), 3 * int(m[2]) - 2, 1), "quarter")
        if m := _YEAR.match(text):
            return cls(pd.Timestamp(int(m[1]), 1, 1), "year")
        raise PeriodError(
            f"period '{text}' is not a month (2026-10), a quarter (2026-Q3) or a year (2026)"
        )

    @property
    def months(self) -> int:
        return GRAIN_MONTHS[self.grain]

    @property
    def end(self) -> pd.Timestamp:
        """First instant after the period (exclusive bound)."""
        return self.start + pd.DateOffset(months=self.months)

    @property
    def label(self) -> str:
        if self.grain == "month":
            return f"{self.start.year}-{self.start.month:02d}"
        if self.grain == "quarter":
            return f"{self.start.year}-Q{(self.start.month - 1) // 3 + 1}"
        return f"{self.start.year}"

    def shift(self, n: int) -> Period:
        """The period ``n`` steps of the same grain later (negative: earlier)."""
        return Period(self.start + pd.DateOffset(months=n * self.months), self.grain)

    @property
    def previous(self) -> Period:
        """``P-1``: the previous period of the same grain."""
        return self.shift(-1)

    @property
    def year_ago(self) -> Period:
        """``P-1y``: the same period a year earlier."""
        return Period(self.start - pd.DateOffset(years=1), self.grain)

    def months_in(self) -> list[Period]:
        """The months this period covers (one for a month)."""
        return [Period(self.start + pd.DateOffset(months=i), "month") for i in range(self.months)]

    def parts(self) -> list[Period]:
        """The periods one grain finer that make up this one: a year's quarters, a quarter's
        months; none for a month.

        Example: ``Period.parse("2026-Q4").parts()`` -> 2026-10, 2026-11, 2026-12.
        """
        finer = {"year": ("quarter", 4), "quarter": ("month", 3)}.get(self.grain)
        if finer is None:
            return []
        grain, n = finer
        step = GRAIN_MONTHS[grain]
        return [Period(self.start + pd.DateOffset(months=i * step), grain) for i in range(n)]

    def __str__(self) -> str:
        return self.label


def parse_periods(text: str) -> list[Period]:
    """Parse a period or a range ``A:B`` into the list of periods it covers, in order.

    Example
    -------
    >>> [p.label for p in parse_periods("2026-11:2027-02")]
    ['2026-11', '2026-12', '2027-01', '2027-02']
    """
    text = str(text).strip()
    if ":" not in text:
        return [Period.parse(text)]
    first_text, _, last_text = text.partition(":")
    first, last = Period.parse(first_text), Period.parse(last_text)
    if first.grain != last.grain:
        raise PeriodError(f"period range '{text}': both ends must be of one grain")
    if last < first:
        raise PeriodError(f"period range '{text}': the end comes before the start")
    periods = [first]
    while periods[-1] < last:
        periods.append(periods[-1].shift(1))
    return periods


def last_complete_month(today: date | datetime | None = None) -> Period:
    """The last calendar month that has fully ended before ``today`` (default: now).

    Example
    -------
    >>> last_complete_month(date(2027, 1, 1)).label
    '2026-12'
    """
    today = pd.Timestamp(today or datetime.now()).normalize()
    return Period(pd.Timestamp(today.year, today.month, 1), "month").previous


def parse_day(text: str, what: str = "--as-of") -> date:
    """A day given as text (``2026-10-31``); ``PeriodError`` naming ``what`` when it is none.

    Example
    -------
    >>> parse_day("2026-10-31")
    datetime.date(2026, 10, 31)
    """
    try:
        day = pd.Timestamp(str(text).strip())
    except (ValueError, TypeError) as exc:
        raise PeriodError(f"{what} '{text}' is not a date (YYYY-MM-DD)") from exc
    if pd.isna(day):
        raise PeriodError(f"{what} '{text}' is not a date (YYYY-MM-DD)")
    return day.date()


def parse_as_of(text: str | date | datetime | None) -> pd.Timestamp:
    """The report date as the first instant *after* it: data up to the end of that day counts.

    ``None`` means today. ``'2026-10-31'`` -> ``Timestamp('2026-11-01 00:00')``.
    """
    if text is None:
        day = pd.Timestamp(datetime.now()).normalize()
    else:
        try:
            day = pd.Timestamp(text).normalize()
        except (ValueError, TypeError) as exc:
            raise PeriodError(f"--as-of '{text}' is not a date (YYYY-MM-DD)") from exc
        if pd.isna(day):
            raise PeriodError(f"--as-of '{text}' is not a date (YYYY-MM-DD)")
    return day.tz_localize(None) + pd.Timedelta(days=1)

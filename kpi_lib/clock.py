"""The run's clock: what "today" is for every command.

``--today YYYY-MM-DD`` where a command takes it, else the ``KPI_TODAY`` environment variable
(so a test, or a rerun of a missed day, can set the date for everything a run starts), else the
real date.

Example
-------
>>> today("2027-01-01")
datetime.date(2027, 1, 1)
"""

from __future__ import annotations

import os
from datetime import date, datetime

from kpi_lib.errors import PeriodError

TODAY_ENV = "KPI_TODAY"


def today(text: str | None = None) -> date:
    """The run's date: ``text`` (``--today``), else ``$KPI_TODAY``, else the real date.

    Raises ``PeriodError`` naming the option or variable when the date is malformed.
    """
    value = text or os.environ.get(TODAY_ENV)
    if not value:
        return date.today()
    try:
        return datetime.strptime(value.strip(), "%Y-%m-%d").date()
    except ValueError as exc:
        origin = "--today" if text else TODAY_ENV
        raise PeriodError(f"{origin} '{value}' is not a date (YYYY-MM-DD)") from exc

"""The rules of the data contract beyond types: what is quarantined, what is a finding.

Each rule is written once and works on a pandas frame (files, frames) and an Ibis table (a DuckDB
file, a warehouse) alike: references that must resolve (hard errors), softer references
(findings), rows that would corrupt a KPI (quarantine), odd rows that stay in (findings), and
dates after the load date.

Example
-------
>>> str(Finding("opportunities", "amount", 2, "have a negative amount", "quarantine"))
'opportunities.amount: 2 rows have a negative amount [quarantined]'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import ibis
import pandas as pd


@dataclass
class Finding:
    """One data-quality observation: which table and column, how many rows, what it means.

    ``severity`` is ``"warning"`` (the rows are used) or ``"quarantine"`` (the rows are kept out
    of every KPI).
    """

    table: str
    column: str | None
    count: int
    message: str
    severity: str = "warning"

    def __str__(self) -> str:
        where = self.table + (f".{self.column}" if self.column else "")
        text = f"{where}: {self.count} row{'s' if self.count != 1 else ''} {self.message}"
        return text + (" [quarantined]" if self.severity == "quarantine" else "")


# (table, column) -> (referenced table, referenced key): an unknown owner or team would silently
# drop out of team and rep KPIs, so these are hard errors.
REFERENCES = [
    ("reps", "team_id", "teams", "team_id"),
    ("opportunities", "owner_rep_id", "reps", "rep_id"),
    ("leads", "owner_rep_id", "reps", "rep_id"),
    ("activities", "rep_id", "reps", "rep_id"),
    ("accounts", "owner_rep_id", "reps", "rep_id"),
    ("spend", "team_id", "teams", "team_id"),
]


SOFT_REFERENCES = [
    (
        "leads",
        "opportunity_id",
        "opportunities",
        "opportunity_id",
        "point to an opportunity that is not in 'opportunities' (counted as not won)",
    ),
    (
        "revenue",
        "account_id",
        "accounts",
        "account_id",
        "belong to an account that is not in 'accounts' (company figures only)",
    ),
    (
        "activities",
        "opportunity_id",
        "opportunities",
        "opportunity_id",
        "point to an opportunity that is not in 'opportunities' (still counted as activities)",
    ),
    (
        "activities",
        "lead_id",
        "leads",
        "lead_id",
        "point to a lead that is not in 'leads' (still counted as activities)",
    ),
    (
        "opportunities",
        "account_id",
        "accounts",
        "account_id",
        "belong to an account that is not in 'accounts'",
    ),
]


@dataclass(frozen=True)
class Rule:
    """A row-level data-quality rule. ``test(t)`` works on a pandas frame and an Ibis table."""

    table: str
    column: str
    message: str
    test: Callable
    quarantine: bool


def holds(value):
    """A rule's result with nulls as False, for pandas Series and Ibis columns alike."""
    if isinstance(value, ibis.Value):
        return value.fill_null(False)
    return value.fillna(False).astype(bool)


QUARANTINE_RULES = [
    Rule(
        "opportunities",
        "closed_at",
        "closed before they were created",
        lambda t: t.is_closed & (t.closed_at < t.created_at),
        quarantine=True,
    ),
    Rule(
        "opportunities", "amount", "have a negative amount", lambda t: t.amount < 0, quarantine=True
    ),
]


FINDING_RULES = [
    Rule(
        "opportunities",
        "amount",
        "are won without an amount (in win rate, not in revenue or deal size)",
        lambda t: t.is_won & t.amount.isnull(),
        quarantine=False,
    ),
    Rule(
        "leads",
        "qualified_at",
        "were qualified before they were created",
        lambda t: t.qualified_at < t.created_at,
        quarantine=False,
    ),
    Rule(
        "leads",
        "converted_at",
        "were converted before they were created",
        lambda t: t.converted_at < t.created_at,
        quarantine=False,
    ),
    Rule(
        "reps",
        "end_at",
        "left before they started (never counted as active)",
        lambda t: t.end_at < t.start_at,
        quarantine=False,
    ),
    Rule(
        "revenue",
        "amount",
        "have a negative amount (credits; they reduce revenue)",
        lambda t: t.amount < 0,
        quarantine=False,
    ),
    Rule(
        "spend",
        "amount",
        "have a negative amount (they reduce spend)",
        lambda t: t.amount < 0,
        quarantine=False,
    ),
]


# Dates after the report date are not counted until then (DESIGN 4); after the load date they
# are most likely typos, so they are named.
FUTURE_COLUMNS = [
    ("opportunities", "created_at"),
    ("opportunities", "closed_at"),
    ("leads", "created_at"),
    ("leads", "qualified_at"),
    ("activities", "occurred_at"),
    ("revenue", "recognized_at"),
    ("spend", "spent_at"),
    ("stage_history", "entered_at"),
]


def load_day(as_of) -> pd.Timestamp:
    """The first instant after the load date."""
    from kpi_lib.periods import parse_as_of

    return pd.Timestamp(parse_as_of(as_of))

"""Tiny canonical CRMs for the KPI specification tests.

The default world: two teams (``east``: reps ``r1``, ``r2``; ``west``: rep ``r3``), every rep
quota-carrying and always active. Tests add the rows they need with ``opp``/``won``/``lost``
and read one figure with ``value``.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest

import kpi_lib
from kpi_lib.data.demo import generate_demo_tables

AS_OF = "2026-11-28"

COLUMNS = {
    "teams": ["team_id", "team_name"],
    "reps": ["rep_id", "rep_name", "team_id"],
    "opportunities": [
        "opportunity_id",
        "owner_rep_id",
        "created_at",
        "stage",
        "is_closed",
        "is_won",
        "account_id",
        "lead_id",
        "closed_at",
        "amount",
    ],
    "leads": ["lead_id", "owner_rep_id", "created_at", "qualified_at", "opportunity_id"],
    "activities": ["activity_id", "rep_id", "occurred_at", "activity_type"],
    "accounts": ["account_id", "account_name", "owner_rep_id"],
    "revenue": ["account_id", "recognized_at", "amount"],
    "spend": ["spent_at", "category", "amount"],
}


def frame(name: str, rows) -> pd.DataFrame:
    """One canonical table from dicts; columns in the contract's order, amounts as floats."""
    rows = list(rows)
    columns = list(COLUMNS[name])
    for r in rows:
        columns += [c for c in r if c not in columns]
    df = pd.DataFrame(rows, columns=columns)
    if "amount" in df:
        df["amount"] = df["amount"].astype("float64")
    return df


CONTRACT_COLUMNS = [
    "period",
    "scope",
    "scope_id",
    "kpi",
    "value",
    "numerator",
    "denominator",
    "target",
]
"""The cube's columns in DESIGN.md section 5, in order."""
RANGE_COLUMNS = ["band_low", "band_high", "unusual", "change_significant"]
"""What kpis.csv and the cube add after them: the normal range and significance."""
TEAMS = [{"team_id": "east", "team_name": "East"}, {"team_id": "west", "team_name": "West"}]
REPS = [
    {"rep_id": "r1", "rep_name": "Ann", "team_id": "east"},
    {"rep_id": "r2", "rep_name": "Bob", "team_id": "east"},
    {"rep_id": "r3", "rep_name": "Cy", "team_id": "west"},
]


def opp(
    opportunity_id,
    owner_rep_id="r1",
    *,
    created_at=None,
    closed_at=None,
    is_won=False,
    amount=None,
    account_id=None,
    lead_id=None,
    is_closed=None,
    stage=None,
):
    """One opportunity row; closed exactly when ``closed_at`` is given.

    Created on 2026-09-01 when open, ten days before ``closed_at`` when closed, unless given.
    """
    if created_at is None:
        created_at = (
            str(pd.Timestamp(closed_at) - pd.Timedelta(days=10)) if closed_at else "2026-09-01"
        )
    is_closed = closed_at is not None if is_closed is None else is_closed
    stage = stage or ("closed_won" if is_won else "closed_lost" if is_closed else "proposal")
    return {
        "opportunity_id": opportunity_id,
        "owner_rep_id": owner_rep_id,
        "created_at": created_at,
        "stage": stage,
        "is_closed": is_closed,
        "is_won": is_won,
        "account_id": account_id,
        "lead_id": lead_id,
        "closed_at": closed_at,
        "amount": amount,
    }


def won(opportunity_id, closed_at, amount=None, owner_rep_id="r1", **kw):
    return opp(opportunity_id, owner_rep_id, closed_at=closed_at, is_won=True, amount=amount, **kw)


def lost(opportunity_id, closed_at, amount=None, owner_rep_id="r1", **kw):
    return opp(opportunity_id, owner_rep_id, closed_at=closed_at, amount=amount, **kw)


def source(opportunities=(), *, teams=TEAMS, reps=REPS, **tables):
    """A source from row lists (``leads=[...]``); a DataFrame is passed through as it is."""
    given = {"teams": teams, "reps": reps, "opportunities": opportunities, **tables}
    return kpi_lib.load_source(
        {
            name: rows if isinstance(rows, pd.DataFrame) else frame(name, rows)
            for name, rows in given.items()
        }
    )


def cube(period, opportunities=(), *, as_of=AS_OF, targets=None, settings=None, **tables):
    """The cube of a tiny CRM on the contract's defaults: no targets, gross margin 1.0.

    Explicit empty targets and settings keep the repository's params/*.yaml out of the tests.
    """
    return kpi_lib.compute_cube(
        source(opportunities, **tables),
        period,
        as_of=as_of,
        targets=targets if targets is not None else {},
        settings=settings if settings is not None else {},
    )


def row(cube, kpi, period, scope="company", scope_id="all") -> pd.Series:
    hit = cube[
        (cube["kpi"] == kpi)
        & (cube["period"] == period)
        & (cube["scope"] == scope)
        & (cube["scope_id"] == scope_id)
    ]
    assert len(hit) == 1, f"{len(hit)} cube rows for {kpi} {period} {scope}/{scope_id}"
    return hit.iloc[0]


def _float(x) -> float:
    return math.nan if pd.isna(x) else float(x)


def value(cube, kpi, period, scope="company", scope_id="all") -> float:
    """The cube's value of one KPI in one period and scope (NaN = n/a)."""
    return _float(row(cube, kpi, period, scope, scope_id)["value"])


def parts(cube, kpi, period, scope="company", scope_id="all") -> tuple[float, float]:
    """(numerator, denominator) of one cube row."""
    r = row(cube, kpi, period, scope, scope_id)
    return _float(r["numerator"]), _float(r["denominator"])


def same(expected):
    """Equality for KPI figures: float tolerance, and NaN equals NaN (n/a is an answer)."""
    return pytest.approx(expected, rel=1e-9, abs=1e-9, nan_ok=True)


# A small demo CRM (a third of the demo org) and its cube: the reference the loaders compare with.
DEMO_PERIODS = "2026-09:2026-10"


@pytest.fixture(scope="module")
def demo_tables():
    """The demo org at a third of its size, 2026-10 the last month, stage ties one second apart."""
    tables = generate_demo_tables(end="2026-10", seed=5, scale=0.34)
    # The demo enters skipped stages at the same instant; "the stage a deal was in" at a period
    # end is then a tie that each engine breaks its own way (weighted_pipeline differed between
    # DuckDB and PostgreSQL). One second apart, in file order, the data means one thing.
    sh = tables["stage_history"]
    tied = sh.groupby(["opportunity_id", "entered_at"]).cumcount()
    sh["entered_at"] = sh["entered_at"] + pd.to_timedelta(tied, unit="s")
    return tables


@pytest.fixture(scope="module")
def duckdb_cube(demo_tables):
    """The cube of ``demo_tables`` loaded as frames, for ``DEMO_PERIODS``, no targets."""
    return kpi_lib.compute_cube(
        kpi_lib.load_source(demo_tables), DEMO_PERIODS, as_of=AS_OF, targets={}
    )

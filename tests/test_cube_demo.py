"""Accounting identities of the cube on the demo CRM: the parts add up to the whole."""

import numpy as np
import pandas as pd
import pytest

from kpi_lib import REGISTRY, compute_cube, load_source
from kpi_lib.data.demo import generate_demo_tables

# Flows (counts, sums) and balances (open deals, pipeline) both add up from teams to the company.
ADDITIVE = [k.name for k in REGISTRY.values() if k.additive and not k.per_stage] + [
    "open_at_start",
    "pipeline_amount",
    "weighted_pipeline",
]


@pytest.fixture(scope="module")
def demo():
    return load_source(generate_demo_tables(end="2026-10", seed=11))


@pytest.fixture(scope="module", params=["2026-04:2026-10", "2025-Q3:2026-Q3", "2025"])
def cube(request, demo):
    return compute_cube(demo, request.param, as_of="2026-11-28")


def wide(cube, scope):
    part = cube[cube["scope"] == scope]
    return part.pivot_table(
        index=["period", "scope_id"], columns="kpi", values="value", dropna=False
    )


def test_cube_has_every_kpi_for_every_scope_and_period(cube, demo):
    periods = cube["period"].unique()
    scopes = 1 + len(demo.frame("teams")) + len(demo.frame("reps"))
    kpis = cube["kpi"].unique()
    assert set(REGISTRY) - {"time_in_stage_days", "stage_conversion"} <= set(kpis)
    assert any(k.startswith("time_in_stage_days:") for k in kpis)
    assert len(cube) == len(periods) * scopes * len(kpis)
    assert not cube.duplicated(["period", "scope", "scope_id", "kpi"]).any()


def test_every_kpi_has_a_value_at_company_scope(cube):
    company = cube[cube["scope"] == "company"]
    empty = company.groupby("kpi")["value"].apply(lambda v: v.isna().all())
    # Only target-based KPIs may lack a value (the demo data has targets only in params/).
    assert set(empty[empty].index) <= {"quota_attainment", "deals_needed"}


@pytest.mark.parametrize("kpi", ADDITIVE)
def test_team_figures_add_up_to_the_company(cube, kpi):
    company = wide(cube, "company")[kpi].droplevel("scope_id")
    teams = wide(cube, "team")[kpi].groupby(level="period").sum()
    assert company.sum() > 0
    assert np.allclose(teams.reindex(company.index), company)


@pytest.mark.parametrize(
    "kpi", ["activities", "activities_call", "revenue", "deals_won", "qualified_leads"]
)
def test_rep_figures_add_up_to_their_team(cube, demo, kpi):
    team_of = demo.frame("reps").set_index("rep_id")["team_id"]
    reps = wide(cube, "rep")[kpi].reset_index()
    reps["team"] = reps["scope_id"].map(team_of)
    summed = reps.groupby(["period", "team"])[kpi].sum()
    teams = wide(cube, "team")[kpi]
    teams.index = teams.index.set_names(["period", "team"])
    pd.testing.assert_series_equal(
        summed.sort_index(), teams.sort_index(), check_names=False, check_index_type=False
    )


@pytest.mark.parametrize("scope", ["company", "team", "rep"])
def test_churn_is_one_minus_retention(cube, scope):
    w = wide(cube, scope)
    both = w[["retention_rate", "churn_rate"]].dropna()
    assert len(both) > 0
    assert np.allclose(both["churn_rate"], 1 - both["retention_rate"])
    assert (w["retention_rate"].isna() == w["churn_rate"].isna()).all()


def test_rates_are_shares_and_nothing_is_infinite(cube):
    values = cube["value"].dropna()
    assert np.isfinite(values).all()
    rates = cube[
        cube["kpi"].isin(["win_rate", "lead_conversion_rate", "retention_rate", "churn_rate"])
        | cube["kpi"].str.startswith("stage_conversion:")
    ]["value"].dropna()
    assert rates.between(0, 1).all()

"""Targets resolve as documented, checked through the cube (``python -m kpi_lib kpis --targets``).

Precedence, most specific first: period + scope_id, period + scope, scope_id, scope default.
An override with ``scope`` and no ``scope_id`` applies to that kind of scope only. Additive
KPIs add up a quarter from its months and a year from its quarters unless an override names
that quarter or year; ratios take the target as given. Every expected figure below is worked
out by hand from ``TARGETS``.

The world: teams ``east`` (reps ``r1``, ``r2``) and ``west`` (rep ``r3``).
"""

from __future__ import annotations

import io

import pandas as pd
import pytest
from conftest import REPS, TEAMS, frame, won

from kpi_lib.cli import main

TARGETS = """
revenue:
  company: 100
  team: 40
  rep: 10
  overrides:
    - {period: "2026-11", scope: company, value: 230}   # period + scope: the company only
    - {period: "2026-11", scope: team, value: 45}       # period + scope: every team, no rep
    - {period: "2026-11", scope_id: west, value: 31}    # period + scope_id beats period + scope
    - {period: "2026-12", scope_id: east, value: 70}    # period + scope_id
    - {scope_id: west, value: 30}                       # scope_id, every period
    - {scope_id: r2, value: 15}
    - {period: "2026-Q4", scope_id: r1, value: 33}      # names the quarter itself
    - {period: "2027", scope: rep, value: 99}           # names a year
win_rate:
  company: 0.25
  team: 0.2
  overrides:
    - {period: "2026-11", scope: company, value: 0.3}
"""

REVENUE = [
    # month: company 100 (Nov 230); east 40 (Nov 45, Dec 70); west 30 (Nov 31); r1, r3 10; r2 15
    ("2026-10", "company", "all", 100),
    ("2026-10", "team", "east", 40),
    ("2026-10", "team", "west", 30),
    ("2026-10", "rep", "r1", 10),
    ("2026-10", "rep", "r2", 15),
    ("2026-10", "rep", "r3", 10),
    ("2026-11", "company", "all", 230),
    ("2026-11", "team", "east", 45),
    ("2026-11", "team", "west", 31),
    ("2026-11", "rep", "r1", 10),  # the teams' November override does not reach reps
    ("2026-11", "rep", "r2", 15),
    ("2026-11", "rep", "r3", 10),
    ("2026-12", "company", "all", 100),
    ("2026-12", "team", "east", 70),
    ("2026-12", "team", "west", 30),
    # quarter: the sum of its months, unless an override names it
    ("2026-Q4", "company", "all", 100 + 230 + 100),
    ("2026-Q4", "team", "east", 40 + 45 + 70),
    ("2026-Q4", "team", "west", 30 + 31 + 30),
    ("2026-Q4", "rep", "r1", 33),
    ("2026-Q4", "rep", "r2", 3 * 15),
    ("2026-Q3", "rep", "r1", 3 * 10),
    # year: the sum of its quarters
    ("2026", "company", "all", 9 * 100 + 430),
    ("2026", "team", "east", 9 * 40 + 155),
    ("2026", "team", "west", 12 * 30 + 1),
    ("2026", "rep", "r1", 9 * 10 + 33),
    ("2026", "rep", "r3", 12 * 10),
    ("2027", "rep", "r2", 99),
    ("2027", "team", "east", 12 * 40),
]

WIN_RATE = [
    ("2026-11", "company", "all", 0.3),
    ("2026-11", "team", "east", 0.2),  # the company's November override stays the company's
    ("2026-10", "company", "all", 0.25),
    ("2026-Q4", "company", "all", 0.25),  # a ratio is not summed, and no override names Q4
    ("2026-Q4", "team", "west", 0.2),
]


@pytest.fixture(scope="module")
def source_dir(tmp_path_factory):
    folder = tmp_path_factory.mktemp("targets") / "crm"
    folder.mkdir()
    tables = {
        "teams": TEAMS,
        "reps": REPS,
        "opportunities": [won("O1", "2026-10-05", 1000, "r1")],
    }
    for name, rows in tables.items():
        frame(name, rows).to_csv(folder / f"{name}.csv", index=False)
    (folder.parent / "targets.yaml").write_text(TARGETS)
    return folder


def kpis(source_dir, period: str, capsys, targets=None) -> pd.DataFrame:
    targets = targets or source_dir.parent / "targets.yaml"
    args = ["kpis", "--source", str(source_dir), "--period", period, "--as-of", "2028-01-31"]
    assert main([*args, "--targets", str(targets)]) == 0
    return pd.read_csv(io.StringIO(capsys.readouterr().out), dtype={"scope_id": str})


def target_of(cube: pd.DataFrame, kpi, period, scope, scope_id) -> float:
    hit = cube[
        (cube["kpi"] == kpi)
        & (cube["period"].astype(str) == period)
        & (cube["scope"] == scope)
        & (cube["scope_id"] == scope_id)
    ]
    assert len(hit) == 1
    return float(hit["target"].iloc[0])


@pytest.mark.parametrize(("period", "scope", "scope_id", "expected"), REVENUE)
def test_revenue_targets_resolve_by_precedence_and_add_up_over_quarters_and_years(
    source_dir, capsys, period, scope, scope_id, expected
):
    cube = kpis(source_dir, period, capsys)
    assert target_of(cube, "revenue", period, scope, scope_id) == pytest.approx(expected)


@pytest.mark.parametrize(("period", "scope", "scope_id", "expected"), WIN_RATE)
def test_ratio_targets_apply_as_given_and_a_company_override_stays_the_companys(
    source_dir, capsys, period, scope, scope_id, expected
):
    cube = kpis(source_dir, period, capsys)
    assert target_of(cube, "win_rate", period, scope, scope_id) == pytest.approx(expected)


def test_a_period_and_scope_override_changes_that_scope_kind_only(source_dir, capsys):
    cube = kpis(source_dir, "2026-11", capsys)
    revenue = cube[(cube["kpi"] == "revenue")].set_index(["scope", "scope_id"])["target"]
    assert revenue[("company", "all")] == 230
    assert sorted(revenue.xs("team").tolist()) == [31, 45]
    assert revenue.xs("rep").tolist() == [10, 15, 10]
    assert not (cube.loc[cube["scope"] != "company", "target"] == 230).any()


def test_an_override_naming_a_scope_kind_and_id_does_not_reach_a_team_of_the_same_id(
    tmp_path, capsys
):
    """A rep whose id is also a team's id (a one-person team named after its rep)."""
    folder = tmp_path / "crm"
    folder.mkdir()
    frame("teams", [{"team_id": "Ana Silva", "team_name": "Ana Silva"}]).to_csv(
        folder / "teams.csv", index=False
    )
    frame("reps", [{"rep_id": "Ana Silva", "rep_name": "Ana", "team_id": "Ana Silva"}]).to_csv(
        folder / "reps.csv", index=False
    )
    frame("opportunities", [won("O1", "2026-10-05", 10, "Ana Silva")]).to_csv(
        folder / "opportunities.csv", index=False
    )
    targets = tmp_path / "targets.yaml"
    targets.write_text(
        "revenue:\n  team: 50\n  rep: 20\n"
        "  overrides:\n    - {scope: rep, scope_id: Ana Silva, value: 7}\n"
    )
    cube = kpis(folder, "2026-10", capsys, targets=targets)
    assert target_of(cube, "revenue", "2026-10", "rep", "Ana Silva") == 7
    assert target_of(cube, "revenue", "2026-10", "team", "Ana Silva") == 50

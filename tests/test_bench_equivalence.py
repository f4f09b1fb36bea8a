"""The benchmark's peers compute the cube's figures, so its timings compare like with like.

``bench/cube.py`` times the cube against a hand-written DuckDB SQL script and a pandas groupby.
On a small demo CRM (scale 0.2, twelve months) both peers must give every figure they compute,
at company, team and rep scope, equal to the cube's to 1e-6 relative.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import duckdb
import pandas as pd
import pytest

import kpi_lib
from kpi_lib.data.demo import generate_demo_tables

BENCH = Path(__file__).resolve().parent.parent / "bench" / "cube.py"
PERIODS = "2025-11:2026-10"


def _load_bench():
    spec = importlib.util.spec_from_file_location("bench_cube", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bench = _load_bench()


@pytest.fixture(scope="module")
def tables() -> dict[str, pd.DataFrame]:
    tables = generate_demo_tables(end="2026-10", seed=7, scale=0.2)
    # The demo has deals that skip a stage within one second: two stages entered at the same
    # instant, so "the stage at the end of the month" is ambiguous. One microsecond apart, in
    # table order, every implementation sees the same sequence.
    sh = tables["stage_history"]
    step = pd.to_timedelta(sh.groupby("opportunity_id").cumcount(), unit="us")
    sh["entered_at"] = sh["entered_at"] + step
    return tables


@pytest.fixture(scope="module")
def ours(tables) -> pd.DataFrame:
    cube = kpi_lib.compute_cube(tables, PERIODS, as_of=bench.AS_OF)
    return bench.ours_long(cube)


def _assert_same(ours: pd.DataFrame, peer: pd.DataFrame) -> None:
    diff = bench.compare(ours, peer)
    assert set(bench.PEER_KPIS) | set(bench.STAGE_KPIS) <= set(diff.index)
    # 12 months x (company + 6 teams + 6 reps) for every figure that exists at every scope
    assert diff.loc["revenue", "rows"] == 12 * 13
    assert diff[diff["mismatches"] > 0].empty, diff[diff["mismatches"] > 0]


def test_the_comparison_catches_a_wrong_figure(ours):
    wrong = ours.copy()
    row = (wrong["kpi"] == "win_rate") & (wrong["scope"] == "team")
    wrong.loc[row.idxmax(), "value"] += 0.01
    diff = bench.compare(ours, wrong)
    assert diff.loc["win_rate", "mismatches"] == 1
    assert diff["mismatches"].sum() == 1


def test_hand_written_sql_gives_the_figures_of_the_cube(tables, ours):
    con = duckdb.connect()
    for name, df in tables.items():
        con.register(name, df)
    wide, stages = bench.sql_cube(con, PERIODS)
    assert wide.loc[wide["scope"] == "company", "revenue"].sum() > 0
    _assert_same(ours, bench.peer_long(wide, stages))


def test_pandas_groupby_gives_the_figures_of_the_cube(tables, ours):
    wide, stages = bench.pandas_cube(tables, PERIODS)
    assert wide.loc[wide["scope"] == "company", "activities"].sum() > 0
    _assert_same(ours, bench.peer_long(wide, stages))

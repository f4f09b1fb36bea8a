"""The same forecast.csv and risks.csv from a DuckDB file and from PostgreSQL 15.

The demo org at a third of its size (``conftest.demo_tables``, stage ties one second apart) is
written into a DuckDB file and into a throwaway PostgreSQL 15 cluster; the backtest of
October 2026 (May to October, with November's projections) and its deals at risk, computed
from each, must be the same rows, written the same way.
"""

from __future__ import annotations

import pandas as pd
import pytest
from _postgres import load_tables, throwaway_postgres
from test_duckdb_source import to_duckdb

import kpi_lib
from kpi_lib.metrics.cube import load_settings
from kpi_lib.metrics.deals import open_deals_table, snapshot_at
from kpi_lib.metrics.forecast import compute_forecast
from kpi_lib.metrics.risks import deals_at_risk
from kpi_lib.periods import Period
from kpi_lib.publish.index import write_forecast_csv, write_risks_csv

pytestmark = pytest.mark.slow

OCT = Period.parse("2026-10")
AS_OF = "2026-11-28"


@pytest.fixture(scope="module")
def postgres(demo_tables):
    with throwaway_postgres() as url:
        load_tables(url, demo_tables)
        yield url


@pytest.fixture(scope="module")
def duckdb_file(demo_tables, tmp_path_factory):
    return to_duckdb(None, tmp_path_factory.mktemp("duckdb") / "crm.duckdb", demo_tables)


def files(location, folder) -> tuple[pd.DataFrame, pd.DataFrame, object]:
    """forecast.csv and risks.csv of October from ``location``, read back as text."""
    src = kpi_lib.load_source(str(location))
    settings = load_settings("params/kpis.yaml")
    f = compute_forecast(src, OCT, AS_OF, settings["stage_probabilities"])
    r = deals_at_risk(
        src,
        open_deals_table(src, OCT, AS_OF),
        snapshot_at(OCT, AS_OF),
        OCT.label,
        settings["risks"],
    )
    folder.mkdir()
    write_forecast_csv(f.backtest, folder / "forecast.csv")
    write_risks_csv(r, folder / "risks.csv")
    read = {"dtype": {"scope_id": str, "opportunity_id": str, "owner_rep_id": str}}
    return (
        pd.read_csv(folder / "forecast.csv", **read),
        pd.read_csv(folder / "risks.csv", **read),
        f,
    )


@pytest.fixture(scope="module")
def both(duckdb_file, postgres, tmp_path_factory):
    root = tmp_path_factory.mktemp("files")
    return files(duckdb_file, root / "duckdb"), files(postgres, root / "postgres")


def test_postgresql_gives_the_duckdb_files_forecast_csv(both):
    (duck, _, fd), (pg, _, fp) = both
    pd.testing.assert_frame_equal(pg, duck, check_exact=False, rtol=1e-9, atol=1e-6)
    pd.testing.assert_frame_equal(fp.ahead, fd.ahead, check_exact=False, rtol=1e-9)
    # not vacuous: three methods, six months, the company and every team, errors both ways
    assert set(duck["method"]) == {"run_rate", "weighted_pipeline", "stage_win_rates"}
    assert sorted(set(duck["month"])) == [f"2026-{m:02d}" for m in range(5, 11)]
    assert (duck["scope"] == "team").sum() > (duck["scope"] == "company").sum() > 0
    assert (duck["error"] < 0).any() and (duck["error"] > 0).any()


def test_postgresql_gives_the_duckdb_files_risks_csv(both):
    (_, duck, _), (_, pg, _) = both
    pd.testing.assert_frame_equal(pg, duck, check_exact=False, rtol=1e-9)
    codes = set(";".join(duck["reasons"]).split(";"))
    assert {"past_expected_close", "no_recent_activity", "stuck_in_stage"} <= codes
    assert len(duck) > 20

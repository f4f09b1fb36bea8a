"""The same normal ranges, significance and drivers from a DuckDB file and from PostgreSQL 15.

The demo org at a third of its size (``conftest.demo_tables``) is written into a DuckDB file
and into a throwaway PostgreSQL 15 cluster (``_postgres``); the cube of October 2026's drivers
(2025-10, 2026-09, 2026-10, whose bands read two years back) and the drivers must agree.
"""

from __future__ import annotations

import pandas as pd
import pytest
from _postgres import load_tables, throwaway_postgres
from conftest import AS_OF, RANGE_COLUMNS
from test_duckdb_source import to_duckdb
from test_warehouse import assert_same_cube

import kpi_lib
from kpi_lib.cli import main
from kpi_lib.metrics.drivers import compute_drivers, drivers_periods
from kpi_lib.periods import Period

pytestmark = pytest.mark.slow

OCT = Period.parse("2026-10")


@pytest.fixture(scope="module")
def postgres(demo_tables):
    """A PostgreSQL 15 server holding ``demo_tables``: the URL of its database ``crm``."""
    with throwaway_postgres() as url:
        load_tables(url, demo_tables)
        yield url


@pytest.fixture(scope="module")
def duckdb_file(demo_tables, tmp_path_factory):
    return to_duckdb(None, tmp_path_factory.mktemp("duckdb") / "crm.duckdb", demo_tables)


def cube_and_drivers(location) -> tuple[pd.DataFrame, pd.DataFrame]:
    src = kpi_lib.load_source(str(location))
    cube = kpi_lib.compute_cube(src, drivers_periods(OCT), as_of=AS_OF, targets={})
    return cube, compute_drivers(cube, OCT, src.frame("reps"))


@pytest.fixture(scope="module")
def both(duckdb_file, postgres):
    return cube_and_drivers(duckdb_file), cube_and_drivers(postgres)


def test_postgresql_gives_the_duckdb_files_normal_ranges_and_significance(both):
    (duck, _), (pg, _) = both
    keys = ["period", "scope", "scope_id", "kpi", "value"]
    assert_same_cube(pg[keys + RANGE_COLUMNS], duck[keys + RANGE_COLUMNS])
    # not vacuous: the demo has bands, unusual months and tested rates of both outcomes
    october = duck[duck["period"] == OCT.label]
    assert october["band_low"].notna().sum() > 100
    assert october["unusual"].any() and not october["unusual"].all()
    tested = october["change_significant"].dropna()
    assert tested.any() and not tested.all()


def test_postgresql_gives_the_duckdb_files_drivers(both):
    (_, duck), (_, pg) = both
    pd.testing.assert_frame_equal(pg, duck, check_exact=False, rtol=1e-9, atol=1e-6)
    # every kind of row is there: revenue bridge, teams, reps, velocity factors, both comparisons
    revenue = set(duck.loc[duck["kpi"] == "revenue", "driver"])
    velocity = set(duck.loc[duck["kpi"] == "sales_velocity", "driver"])
    assert {"deals_won", "deal_size"} <= revenue
    assert {"open_deals", "win_rate", "deal_size", "cycle_time"} <= velocity
    assert duck["driver"].str.startswith("team:").any()
    assert duck["driver"].str.startswith("rep:").any()
    assert set(duck["compared_with"]) == {"previous", "year_ago"}


def test_drivers_command_on_postgresql_writes_the_libraries_drivers(both, postgres, tmp_path):
    (_, duck), _ = both
    out = tmp_path / "drivers.csv"
    argv = ["drivers", "--source", postgres, "--period", OCT.label, "--as-of", AS_OF]
    assert main([*argv, "--out", str(out)]) == 0
    written = pd.read_csv(out, dtype={"scope_id": str, "driver": str, "note": str})
    written[["driver", "note"]] = written[["driver", "note"]].fillna("")
    pd.testing.assert_frame_equal(
        written, duck, check_exact=False, rtol=1e-9, atol=1e-6, check_dtype=False
    )

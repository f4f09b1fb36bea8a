"""A warehouse as source: the same demo data in CSV, Parquet, DuckDB, PostgreSQL (and Spark)
gives identical cubes, and the SQL source is checked with SQL, not by downloading tables.

PostgreSQL 15 is started by the test (initdb + pg_ctl on 127.0.0.1, a free port, a temporary
folder, run as the unprivileged user ``nobody`` when the tests run as root) and stopped by PID.
"""

from __future__ import annotations

import os

import pandas as pd
import pytest
from _postgres import load_tables, throwaway_postgres
from conftest import AS_OF
from conftest import DEMO_PERIODS as PERIODS

import kpi_lib
from kpi_lib.data.validate import validation_report


def assert_same_cube(got: pd.DataFrame, want: pd.DataFrame, rtol: float = 1e-9) -> None:
    pd.testing.assert_frame_equal(
        got.reset_index(drop=True),
        want.reset_index(drop=True),
        check_exact=False,
        rtol=rtol,
        atol=1e-6,
    )


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_csv_and_parquet_folders_give_the_duckdb_cube(tmp_path, demo_tables, duckdb_cube, fmt):
    for name, df in demo_tables.items():
        if fmt == "csv":
            df.to_csv(tmp_path / f"{name}.csv", index=False)
        else:
            df.to_parquet(tmp_path / f"{name}.parquet", index=False)
    got = kpi_lib.compute_cube(tmp_path, PERIODS, as_of=AS_OF, targets={})
    assert_same_cube(got, duckdb_cube)


@pytest.fixture(scope="module")
def postgres():
    """A PostgreSQL 15 server for this module: URL of an empty database ``crm``."""
    with throwaway_postgres() as url:
        yield url


@pytest.mark.slow
def test_postgresql_source_gives_the_duckdb_cube(postgres, demo_tables, duckdb_cube):
    load_tables(postgres, demo_tables)
    src = kpi_lib.load_source(postgres)
    assert src.is_remote
    assert set(src.frames) == {"teams", "reps"}  # only the small tables were fetched
    got = kpi_lib.compute_cube(src, PERIODS, as_of=AS_OF, targets={})
    assert_same_cube(got, duckdb_cube)
    report = validation_report(postgres)
    assert report.tables.set_index("table").loc["opportunities", "rows"] == str(
        len(demo_tables["opportunities"])
    )


@pytest.mark.slow
def test_postgresql_source_is_checked_with_sql_and_quarantines_there(postgres, demo_tables):
    import ibis

    from kpi_lib.errors import DataError

    con = ibis.connect(postgres)
    opps = demo_tables["opportunities"].copy()
    opps.loc[opps.index[0], "amount"] = -5.0
    con.create_table("opportunities", opps, overwrite=True)
    src = kpi_lib.load_source(postgres)
    assert any(f.severity == "quarantine" and "negative amount" in f.message for f in src.findings)
    assert int(src.table("opportunities").count().to_pandas()) == len(opps) - 1
    opps.loc[opps.index[1], "owner_rep_id"] = "nobody-here"
    con.create_table("opportunities", opps, overwrite=True)
    with pytest.raises(DataError, match="nobody-here"):
        kpi_lib.load_source(postgres)
    con.create_table("opportunities", demo_tables["opportunities"], overwrite=True)
    con.disconnect()


@pytest.mark.slow
@pytest.mark.spark
def test_spark_source_gives_the_duckdb_cube(tmp_path, demo_tables, duckdb_cube):
    if not os.environ.get("CI"):  # CI installs the spark extra, so there this leg always runs
        pytest.importorskip("pyspark", reason="the Spark leg needs `pip install -e '.[spark]'`")
    import ibis
    from pyspark.sql import SparkSession

    session = (
        SparkSession.builder.master("local[2]")
        .appName("kpi-kit-test")
        .config("spark.sql.session.timeZone", "UTC")
        .config("spark.ui.enabled", "false")
        .config("spark.sql.warehouse.dir", str(tmp_path / "spark-warehouse"))
        .config("spark.driver.extraJavaOptions", f"-Dderby.system.home={tmp_path}")
        .getOrCreate()
    )
    try:
        con = ibis.pyspark.connect(session)
        for name, df in demo_tables.items():
            # Spark turns pandas' missing strings into the text 'NaN'; hand it real nulls
            con.create_table(name, df.astype(object).where(df.notna(), None), overwrite=True)
        got = kpi_lib.compute_cube(kpi_lib.load_source(con), PERIODS, as_of=AS_OF, targets={})
        # Spark's epoch seconds drop the microseconds: day-based KPIs agree to ~1e-9, not exactly
        assert_same_cube(got, duckdb_cube, rtol=1e-6)
    finally:
        session.stop()

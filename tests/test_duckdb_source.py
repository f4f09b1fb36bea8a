"""A DuckDB file as source: checked with SQL in one scan per table, copied into memory, and
held to the same contract as a folder of CSV files.

The catalogue of malformed inputs (``test_bad_inputs.CASES``) is written into DuckDB files, all
columns as text, so every cast and rule runs in SQL; each case must end as it does from CSV
(same exit code, same words, less the CSV line numbers).
"""

from __future__ import annotations

import subprocess
import sys

import duckdb
import pandas as pd
import pytest
from conftest import AS_OF, DEMO_PERIODS
from test_bad_inputs import CASES, run, write
from test_warehouse import assert_same_cube

import kpi_lib
from kpi_lib.data.files import read_table_file
from kpi_lib.errors import DataError

# Faults of the CSV format itself (a file cannot hold them as a DuckDB table).
CSV_ONLY = {"csv-and-parquet-both", "empty-file", "duplicate-header", "ragged-row", "not-utf8"}


def to_duckdb(folder, path, tables: dict[str, pd.DataFrame] | None = None):
    """Every ``<table>.csv`` of ``folder`` (or ``tables``) as a table of the DuckDB file ``path``."""
    if tables is None:
        tables = {f.stem: read_table_file(f, f.stem) for f in sorted(folder.glob("*.csv"))}
    con = duckdb.connect(str(path))
    for name, df in tables.items():
        con.register("frame", df)
        con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM frame')
        con.unregister("frame")
    con.close()
    return path


@pytest.mark.parametrize(
    ("files", "code", "words"),
    [c[1:] for c in CASES if c[0] not in CSV_ONLY],
    ids=[c[0] for c in CASES if c[0] not in CSV_ONLY],
)
def test_malformed_tables_in_a_duckdb_file_end_as_they_do_in_csv(
    tmp_path, capsys, files, code, words
):
    source = to_duckdb(write(tmp_path / "src", files), tmp_path / "crm.duckdb")
    got, output = run(["validate", "--source", str(source), "--as-of", AS_OF], capsys)
    assert got == code, output
    assert "Traceback" not in output and "internal error" not in output, output
    for word in words:
        if not word.startswith("line "):
            assert word in output, (word, output)


def test_the_duckdb_catalogue_covers_every_table_rule(tmp_path):
    assert len([c for c in CASES if c[0] not in CSV_ONLY]) >= 20


def test_a_duckdb_file_gives_the_cube_of_the_same_frames(tmp_path, demo_tables, duckdb_cube):
    source = to_duckdb(None, tmp_path / "crm.duckdb", demo_tables)
    src = kpi_lib.load_source(source)
    assert not src.is_remote
    got = kpi_lib.compute_cube(src, DEMO_PERIODS, as_of=AS_OF, targets={})
    assert_same_cube(got, duckdb_cube)


def test_untidy_text_in_a_typed_file_is_trimmed_like_csv(tmp_path):
    """Ids with spaces around them still match their team and rep; 'Call ' counts as a call."""
    tables = {
        "teams": pd.DataFrame({"team_id": [" east"], "team_name": ["East"]}),
        "reps": pd.DataFrame(
            {"rep_id": ["r1 ", "r2"], "rep_name": ["Ann", "Bob"], "team_id": ["east", "east\t"]}
        ),  # fmt: skip
        "opportunities": pd.DataFrame(
            {
                "opportunity_id": ["O1", "O2"],
                "owner_rep_id": [" r1", "r2"],
                "created_at": pd.to_datetime(["2026-09-01", "2026-09-02"]),
                "stage": ["Closed Won", "Closed Lost"],
                "is_closed": [True, True],
                "is_won": [True, False],
                "closed_at": pd.to_datetime(["2026-10-05", "2026-10-06"]),
                "amount": [1000.0, 500.0],
            }
        ),
        "activities": pd.DataFrame(
            {
                "activity_id": ["A1", "A2", "A3"],
                "rep_id": ["r1", " r1", "r2"],
                "occurred_at": pd.to_datetime(["2026-10-01", "2026-10-02", "2026-10-03"]),
                "activity_type": ["Call ", "call", "fax"],
            }
        ),
    }
    src = kpi_lib.load_source(to_duckdb(None, tmp_path / "crm.duckdb", tables))
    cube = kpi_lib.compute_cube(src, "2026-10", as_of=AS_OF, targets={})
    value = cube.set_index(["scope", "scope_id", "kpi"])["value"]
    assert value[("rep", "r1", "revenue")] == 1000.0
    assert value[("rep", "r1", "activities_call")] == 2  # "Call " and " r1" both count
    assert value[("team", "east", "activities")] == 3
    assert value[("rep", "r2", "activities")] == 1  # 'fax', counted as other
    assert any("(fax)" in str(f) for f in src.findings)


def test_a_duckdb_file_is_not_held_open_after_loading(tmp_path, demo_tables):
    path = to_duckdb(None, tmp_path / "crm.duckdb", demo_tables)
    src = kpi_lib.load_source(path)
    # this process and another one can write to the file while the source is in use
    con = duckdb.connect(str(path))
    con.execute("CREATE TABLE note AS SELECT 1 AS x")
    con.close()
    child = subprocess.run(
        [
            sys.executable,
            "-c",
            f"import duckdb; duckdb.connect({str(path)!r}).execute('DROP TABLE note')",
        ],
        capture_output=True,
        text=True,
    )
    assert child.returncode == 0, child.stderr
    assert int(src.table("opportunities").count().to_pandas()) == len(demo_tables["opportunities"])


def test_the_fingerprint_follows_the_contents_of_a_duckdb_file(tmp_path, demo_tables):
    first = to_duckdb(None, tmp_path / "a.duckdb", demo_tables)
    same = to_duckdb(None, tmp_path / "b.duckdb", demo_tables)
    changed = dict(demo_tables)
    opps = demo_tables["opportunities"].copy()
    opps.loc[opps.index[3], "owner_rep_id"] = opps.loc[opps.index[4], "owner_rep_id"] + ""
    opps.loc[opps.index[4], "owner_rep_id"] = demo_tables["opportunities"].loc[
        opps.index[3], "owner_rep_id"
    ]  # two owners swapped: every count and sum stays the same
    changed["opportunities"] = opps
    other = to_duckdb(None, tmp_path / "c.duckdb", changed)
    fingerprints = [kpi_lib.load_source(p).fingerprint for p in (first, same, other)]
    assert fingerprints[0] == fingerprints[1]
    assert fingerprints[0] != fingerprints[2]


def test_a_duplicate_key_in_a_duckdb_file_names_the_key_and_count(tmp_path, demo_tables):
    tables = dict(demo_tables)
    tables["leads"] = pd.concat([demo_tables["leads"], demo_tables["leads"].head(2)])
    path = to_duckdb(None, tmp_path / "crm.duckdb", tables)
    with pytest.raises(DataError) as caught:
        kpi_lib.load_source(path)
    message = str(caught.value)
    assert "crm.duckdb:leads" in message and "duplicate lead_id" in message
    assert "(4 rows)" in message  # both copies of each key, as from CSV
    for lead in demo_tables["leads"]["lead_id"].head(2):
        assert lead in message


def test_a_file_that_is_not_a_duckdb_database_is_a_source_error(tmp_path, capsys):
    path = tmp_path / "crm.duckdb"
    path.write_text("not a database")
    code, output = run(["validate", "--source", str(path)], capsys)
    assert code == 2 and "cannot open as a DuckDB database" in output, output


def test_a_local_table_goes_into_a_duckdb_files_copy_but_never_into_a_warehouse(
    tmp_path, demo_tables
):
    from kpi_lib.errors import SourceError

    path = to_duckdb(None, tmp_path / "crm.duckdb", demo_tables)
    history = demo_tables["stage_history"].head(3)
    src = kpi_lib.load_source(path)
    added = src.with_table("stage_history", history, src.accounting)
    assert int(added.table("stage_history").count().to_pandas()) == 3
    assert int(src.table("stage_history").count().to_pandas()) == len(demo_tables["stage_history"])
    warehouse = kpi_lib.load_source(f"duckdb://{path}")
    with pytest.raises(SourceError, match="takes no local table"):
        warehouse.with_table("stage_history", history, warehouse.accounting)

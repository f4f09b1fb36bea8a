"""The query engine under the cube: the runner that overlaps compiling with executing, and the
pipeline order of stages that it asks for first.

Pipeline order (``stage_order``): a stage's position is the mean place at which deals enter it
(1 = a deal's first stage), ties broken by name.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import duckdb
import ibis
import pandas as pd
import pytest
from conftest import opp, source

import kpi_lib
from kpi_lib.data.queries import Runner, fetch_all


def run_script(code: str) -> list[int]:
    """The integers ``code`` prints, run in a fresh interpreter: a connection used from two
    threads at once can hang an interpreter for good, and a timeout fails the test instead."""
    done = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=Path(__file__).resolve().parent.parent,
    )
    assert done.returncode == 0, done.stderr
    return [int(word) for word in done.stdout.split()]


def history(rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["opportunity_id", "stage", "entered_at"])


def test_stage_order_is_by_mean_entry_place_then_by_name():
    """d1 enters A, B, C; d2 enters A, C; d3 enters B, then C and D at the same instant (the
    tie broken by name: C 2nd, D 3rd).

    A: places 1, 1 -> 1.0; B: 2, 1 -> 1.5; C: 3, 2, 2 -> 2.33; D: 3 -> 3.0. E is in no deal's
    history: asked for, it comes last."""
    src = source(
        [opp("d1"), opp("d2"), opp("d3")],
        stage_history=history(
            [
                ("d1", "A", "2026-09-01"),
                ("d1", "B", "2026-09-02"),
                ("d1", "C", "2026-09-03"),
                ("d2", "A", "2026-09-01"),
                ("d2", "C", "2026-09-05"),
                ("d3", "B", "2026-09-01"),
                ("d3", "D", "2026-09-04"),
                ("d3", "C", "2026-09-04"),
            ]
        ),
    )
    assert kpi_lib.stage_order(src) == ["A", "B", "C", "D"]
    assert kpi_lib.stage_order(src, ["E", "C", "A"]) == ["A", "C", "E"]


def test_stage_order_ties_in_mean_place_are_broken_by_name():
    """d1 enters Y then X, d2 enters X then Y: both stages average 1.5."""
    src = source(
        [opp("d1"), opp("d2")],
        stage_history=history(
            [
                ("d1", "Y", "2026-09-01"),
                ("d1", "X", "2026-09-02"),
                ("d2", "X", "2026-09-01"),
                ("d2", "Y", "2026-09-02"),
            ]
        ),
    )
    assert kpi_lib.stage_order(src) == ["X", "Y"]


_SUBMIT_WHILE_RUNNING = """
import ibis, pandas as pd
from kpi_lib.data.queries import Runner
con = ibis.duckdb.connect()
con.raw_sql("CREATE TABLE numbers AS SELECT range AS n FROM range(3000000)")
numbers = con.table("numbers")
slow = numbers.aggregate(distinct=(numbers.n * 7 % 1000003).nunique())
with Runner(con) as runner:
    first = runner.submit(slow)
    rest = []
    for k in range(20):
        keys = ibis.memtable(pd.DataFrame({"n": [k, k + 1, 10**9]}))
        joined = numbers.join(keys, "n")
        rest.append(runner.submit(joined.aggregate(total=joined.n.sum())))
print(first()["distinct"].tolist()[0], *[int(read()["total"].iloc[0]) for read in rest])
"""


def test_queries_submitted_while_another_runs_each_get_their_own_in_memory_table():
    """A slow query runs while twenty more are compiled and submitted, each joining an
    in-memory table of its own. The connection runs one query at a time, so the worker
    registers each table between two queries: registered from the caller's thread, it waited
    on the running query while holding the interpreter, for good (so: in a subprocess)."""
    first, *rest = run_script(_SUBMIT_WHILE_RUNNING)
    assert first == 1000003  # n -> 7n mod the prime 1000003 reaches every residue
    assert rest == [2 * k + 1 for k in range(20)]


def test_a_failing_query_raises_when_read_and_the_queries_after_it_still_run():
    con = ibis.duckdb.connect()
    t = ibis.memtable(pd.DataFrame({"x": ["1", "2", "three"]}))
    bad = t.aggregate(total=t.x.cast("int64").sum())
    good = t.aggregate(n=t.count())
    with Runner(con) as runner:
        read_bad, read_good = runner.submit(bad), runner.submit(good)
    with pytest.raises(duckdb.ConversionException, match="three"):
        read_bad()
    assert read_good()["n"].tolist() == [3]


_FAIL_THEN_QUERY = """
import duckdb, ibis, pandas as pd
from kpi_lib.data.queries import Runner
con = ibis.duckdb.connect()
con.raw_sql("CREATE TABLE numbers AS SELECT range AS n FROM range(3000000)")
numbers = con.table("numbers")
text = ibis.memtable(pd.DataFrame({"x": ["1", "three"]}))
slow = numbers.aggregate(distinct=(numbers.n * 7 % 1000003).nunique())
with Runner(con) as runner:
    results = [runner.submit(text.aggregate(s=text.x.cast("int64").sum()))]
    results += [runner.submit(slow) for _ in range(3)]
try:
    list(runner.read(results))
except duckdb.ConversionException:
    pass
print(sum(f.cancelled() for f in runner._futures), con.con.sql("SELECT 42").fetchall()[0][0])
"""


def test_a_failed_read_stops_the_queued_queries_and_frees_the_connection():
    """The first of four queries fails: reading it cancels the slow ones still queued and waits
    for the one running, so the caller can use the connection at once (in a subprocess: a
    connection used from two threads at once can hang the interpreter)."""
    cancelled, answer = run_script(_FAIL_THEN_QUERY)
    assert cancelled >= 2 and answer == 42


def test_results_are_typed_by_the_ibis_schema_and_come_back_in_order():
    con = ibis.duckdb.connect()
    t = ibis.memtable(pd.DataFrame({"x": [1, 2, 3]}))
    a, b = fetch_all(con, [t.aggregate(s=t.x.sum()), t.aggregate(m=t.x.mean(), n=t.count())])
    assert a["s"].tolist() == [6] and str(a["s"].dtype) == "int64"
    assert b["m"].tolist() == [2.0] and b["n"].tolist() == [3]

"""Run many Ibis queries on one backend, as fast as the backend allows.

On DuckDB a second thread executes each query while the main thread compiles the next (DuckDB
releases the GIL while it computes, and compiling an Ibis expression is pure Python); on any
other backend the queries run one after the other.

Example
-------
>>> fetch_all(src.con, [t.count().as_table(), t.aggregate(n=t.count())])   # doctest: +SKIP
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import ibis
import pandas as pd
import pyarrow as pa


def fetch_all(backend, exprs: list[ibis.Table]) -> list[pd.DataFrame]:
    """Each expression's result as a DataFrame typed by its Ibis schema, in order."""
    if backend.name != "duckdb":
        return [expr.to_pyarrow().to_pandas() for expr in exprs]
    for expr in exprs:  # in-memory tables (periods, probabilities) registered before any query runs
        backend._run_pre_execute_hooks(expr)

    def run(sql: str, schema: pa.Schema) -> pd.DataFrame:
        return backend.con.sql(sql).to_arrow_table().cast(schema).to_pandas()

    with ThreadPoolExecutor(max_workers=1) as pool:
        futures = [
            pool.submit(run, backend.compile(expr), expr.schema().to_pyarrow()) for expr in exprs
        ]
        return [future.result() for future in futures]

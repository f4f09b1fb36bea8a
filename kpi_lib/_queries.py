"""Run many Ibis queries on one backend, as fast as the backend allows.

On DuckDB a second thread executes each query while the main thread compiles the next (DuckDB
releases the GIL while it computes, and compiling an Ibis expression is pure Python); once all
are compiled, the caller's thread is free for other work until it asks for the results. On any
other backend the queries run one after the other, as the results are asked for.

Example
-------
>>> fetch_all(src.con, [t.count().as_table(), t.aggregate(n=t.count())])   # doctest: +SKIP
>>> results = fetch_each(src.con, exprs)   # every query started   # doctest: +SKIP
>>> for df in results: ...                 # each as soon as it is ready, in order
"""

from __future__ import annotations

from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import ibis
import pandas as pd
import pyarrow as pa


def fetch_each(backend, exprs: list[ibis.Table]) -> Iterator[pd.DataFrame]:
    """Start every query now; iterate for each result, a DataFrame typed by its Ibis schema,
    in the order of ``exprs`` and as soon as it is ready."""
    if backend.name != "duckdb":
        return (expr.to_pyarrow().to_pandas() for expr in exprs)
    for expr in exprs:  # in-memory tables (periods, probabilities) registered before any query runs
        backend._run_pre_execute_hooks(expr)

    def run(sql: str, schema: pa.Schema) -> pd.DataFrame:
        return backend.con.sql(sql).to_arrow_table().cast(schema).to_pandas()

    pool = ThreadPoolExecutor(max_workers=1)
    futures = [pool.submit(run, backend.compile(expr), expr.schema().to_pyarrow()) for expr in exprs]
    pool.shutdown(wait=False)  # the worker still runs every query submitted, then exits
    return (future.result() for future in futures)


def fetch_all(backend, exprs: list[ibis.Table]) -> list[pd.DataFrame]:
    """Each expression's result as a DataFrame typed by its Ibis schema, in order."""
    return list(fetch_each(backend, exprs))

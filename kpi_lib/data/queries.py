"""Run many Ibis queries on one backend, as fast as the backend allows.

On DuckDB a worker thread executes the queries one after the other, in the order submitted,
while the caller's thread compiles the next (DuckDB releases the GIL while it computes, and
compiling an Ibis expression is pure Python) or does other work until it asks for a result. On
any other backend a query runs when its result is asked for.

Example
-------
>>> fetch_all(src.con, [t.count().as_table(), t.aggregate(n=t.count())])   # doctest: +SKIP
>>> with Runner(src.con) as runner:                                        # doctest: +SKIP
...     first = runner.submit(expr)    # running now
...     second = runner.submit(other)  # runs next
...     first()                        # the first result, once it is ready
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor, wait

import ibis
import pandas as pd


class Runner:
    """Queries on one backend, each started when submitted (DuckDB) and read when called.

    The connection is the worker's until the last result is read: the caller must not run
    other queries on it meanwhile (a DuckDB connection runs one query at a time).
    """

    def __init__(self, backend):
        self.backend = backend
        self._pool = ThreadPoolExecutor(max_workers=1) if backend.name == "duckdb" else None
        self._futures: list[Future] = []

    def submit(self, expr: ibis.Table) -> Callable[[], pd.DataFrame]:
        """Start ``expr``; call the result for its DataFrame, typed by its Ibis schema."""
        if self._pool is None:
            return lambda: expr.to_pyarrow().to_pandas()
        future = self._pool.submit(self._run, expr, self.backend.compile(expr), expr.schema())
        self._futures.append(future)
        return future.result

    def _run(self, expr: ibis.Table, sql: str, schema: ibis.Schema) -> pd.DataFrame:
        # The worker alone uses the connection: it registers the query's in-memory tables
        # (periods, probabilities) itself, between two queries.
        self.backend._run_pre_execute_hooks(expr)
        table = self.backend.con.sql(sql).to_arrow_table()
        return table.cast(schema.to_pyarrow()).to_pandas()

    def cancel(self) -> None:
        """Drop the queries not started and wait for the one running: the connection is free."""
        for future in self._futures:
            future.cancel()
        wait(self._futures)

    def close(self) -> None:
        """No more queries: the worker still runs every query submitted, then exits."""
        if self._pool is not None:
            self._pool.shutdown(wait=False)

    def read(self, results: list[Callable[[], pd.DataFrame]]) -> Iterator[pd.DataFrame]:
        """Each result in turn; when one fails or the reader stops early, ``cancel`` the rest."""
        try:
            for result in results:
                yield result()
        finally:
            self.cancel()

    def __enter__(self) -> Runner:
        return self

    def __exit__(self, kind, *_) -> None:
        if kind is not None:  # the caller failed while queries were queued: stop them first
            self.cancel()
        self.close()


def fetch_each(backend, exprs: list[ibis.Table]) -> Iterator[pd.DataFrame]:
    """Start every query now; iterate for each result in the order of ``exprs``, as soon as
    it is ready."""
    with Runner(backend) as runner:
        results = [runner.submit(expr) for expr in exprs]
    return runner.read(results)


def fetch_all(backend, exprs: list[ibis.Table]) -> list[pd.DataFrame]:
    """Each expression's result as a DataFrame typed by its Ibis schema, in order."""
    return list(fetch_each(backend, exprs))

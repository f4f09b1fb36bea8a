"""Canonical tables that live in a database: checked with SQL, the KPIs computed there.

Two sources load this way:

- a warehouse, ``load_source("postgresql://kpi@db.internal/crm")`` (any URL ``ibis.connect``
  takes, or a connected Ibis backend such as ``ibis.pyspark.connect(session)``): the tables stay
  in the warehouse; only counts, a few offending rows, ``teams`` and ``reps`` come back, and the
  KPI measures run there;
- a DuckDB file, ``load_source("data/demo.duckdb")``: attached read-only to an embedded DuckDB,
  checked the same way, and the checked canonical tables copied into memory (the file is not
  held open, and the KPI queries read native tables).

Every check of the contract (types, empty required values, duplicate keys, references, the
quarantine rules and the findings) is a count in one aggregate query per table, so a table is
scanned once however many rules it has. Only when a hard rule fails are its rows fetched, to
name them in the ``DataError``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import ibis
import ibis.expr.datatypes as dt
import pandas as pd

from kpi_lib.data.files import FALSE, TRUE
from kpi_lib.data.queries import fetch_all
from kpi_lib.data.rules import (
    FINDING_RULES,
    FUTURE_COLUMNS,
    QUARANTINE_RULES,
    REFERENCES,
    SOFT_REFERENCES,
    Finding,
    holds,
    load_day,
)
from kpi_lib.data.schema import ACTIVITY_TYPES, SPEND_CATEGORIES, TABLES, TableSpec
from kpi_lib.data.source import Source
from kpi_lib.errors import DataError, SourceError
from kpi_lib.redact import redact, reveal

_IBIS_TYPE = {
    "id": "string",
    "str": "string",
    "ts": "timestamp",
    "bool": "boolean",
    "num": "float64",
}
SAMPLE = 5
_ORPHAN_HISTORY = "belong to an opportunity that is not in 'opportunities' (or was quarantined)"


def load_remote(source, fx: dict | None, as_of=None) -> Source:
    """Check the canonical tables of a warehouse with SQL and wrap them in a ``Source``.

    Parameters
    ----------
    source
        A URL for ``ibis.connect`` (``postgresql://user@127.0.0.1:5432/crm``,
        ``duckdb:///data/demo.duckdb``) or a connected Ibis backend.
    fx
        Exchange rates (``kpi_lib.data.fx.load_fx``); the conversion runs in the warehouse.

    Returns
    -------
    Source
        ``is_remote`` is true; ``table(name)`` is the checked, quarantine-filtered expression on
        the warehouse table.
    """
    if isinstance(source, ibis.BaseBackend):
        con, location = source, f"{source.name} backend"
    else:
        location = redact(source)
        try:
            con = ibis.connect(reveal(source))
        except Exception as exc:  # drivers raise their own types; all mean "cannot connect"
            raise SourceError(
                redact(f"cannot connect to {location}: {type(exc).__name__}: {exc}")
            ) from None
    try:
        present = set(con.list_tables())
    except Exception as exc:
        raise SourceError(redact(f"{location}: cannot list tables: {exc}")) from None
    raw = {name: con.table(name) for name in TABLES if name in present}
    src = check_tables(con, raw, location, fx, as_of)
    for small in ("teams", "reps"):
        src.frame(small)
    return src


def load_duckdb_file(path: Path, fx: dict | None, as_of=None) -> Source:
    """A DuckDB file's canonical tables, checked in SQL and copied into an embedded DuckDB.

    Example
    -------
    >>> src = load_duckdb_file(Path("data/demo.duckdb"), fx=None)     # doctest: +SKIP
    >>> src.is_remote, int(src.table("reps").count().to_pandas())      # doctest: +SKIP
    (False, 36)
    """
    import duckdb

    con = ibis.duckdb.connect()
    quoted = str(path).replace("'", "''")
    try:
        con.raw_sql(f"ATTACH '{quoted}' AS crm (READ_ONLY)")
    except duckdb.Error as exc:
        raise SourceError(f"{path}: cannot open as a DuckDB database: {exc}") from None
    try:
        present = set(con.list_tables(database=("crm", "main")))
        raw = {n: con.table(n, database=("crm", "main")) for n in TABLES if n in present}
        src = check_tables(con, raw, str(path), fx, as_of)
        for name, expr in src._tables.items():
            con.create_table(name, expr)
    finally:
        con.raw_sql("DETACH crm")
    copies = {name: con.table(name) for name in src._tables}
    return dataclasses.replace(src, _tables=copies, _embedded=True)


# ---------------------------------------------------------------------------------------------
# The checks: each a condition on one table, counted in that table's one aggregate query
# ---------------------------------------------------------------------------------------------


@dataclass
class _Check:
    """One rule on one table: ``error`` raises, ``warning`` is a finding, ``quarantine`` both
    a finding and the rows left out, ``count`` only a figure for the loader."""

    kind: str
    column: str | None
    problem: str
    condition: ibis.Value
    show: list[str] = field(default_factory=list)


@dataclass
class _Table:
    """A raw table, its columns as canonical expressions, and the checks on it."""

    spec: TableSpec
    raw: ibis.Table
    where: str
    cols: dict[str, ibis.Value]
    absent: list[str]
    checks: dict[str, _Check] = field(default_factory=dict)
    joined: ibis.Table | None = None
    """``raw`` left-joined to the key sets its references look up (``missing_in``)."""

    @property
    def t(self) -> SimpleNamespace:
        """The canonical columns by attribute, for the ``Rule`` tests (``t.amount < 0``)."""
        return SimpleNamespace(**self.cols)

    def canonical(self) -> ibis.Table:
        return self.raw.select(**self.cols)

    @property
    def rows(self) -> ibis.Table:
        """The relation the checks count over: ``raw``, with its reference lookups."""
        return self.raw if self.joined is None else self.joined

    def look_up(self, column: str, keys: ibis.Table, key: str) -> str:
        """Join the distinct ``keys[key]`` to the rows on ``column``; the name of the match.

        A left join, not ``NOT IN (subquery)``, which PostgreSQL rescans per row once the
        keys outgrow ``work_mem``. Make every lookup before ``missing`` reads any of them.
        """
        alias = f"_found_{column}"
        found = keys.select(**{alias: keys[key]}).distinct()
        self.joined = self.rows.left_join(found, self.cols[column] == found[alias])
        return alias

    def missing(self, column: str, alias: str) -> ibis.Value:
        """Rows whose ``column`` is set but found no key in the lookup ``alias``."""
        return self.cols[column].notnull() & self.joined[alias].isnull()

    def add(self, name: str, kind: str, column, problem: str, condition, show=()) -> None:
        shown = [c for c in dict.fromkeys(show) if c and c in self.raw.columns]
        self.checks[name] = _Check(kind, column, problem, condition, shown)

    def quarantined(self) -> ibis.Value:
        conditions = [holds(c.condition) for c in self.checks.values() if c.kind == "quarantine"]
        out = ibis.literal(False)
        for condition in conditions:
            out = out | condition
        return out


def check_tables(con, raw: dict[str, ibis.Table], location: str, fx, as_of) -> Source:
    """Check raw tables ``{name: Ibis table}`` against the contract; the ``Source`` they make.

    Raises ``SourceError`` for a missing required table and ``DataError`` (with a few offending
    rows) for a broken rule; quarantines and findings are recorded in the ``Source``.
    """
    for spec in TABLES.values():
        if spec.name not in raw and spec.is_required:
            raise SourceError(f"{location}: required table '{spec.name}' is missing")
        if spec.name in raw:
            _check_columns(spec, raw[spec.name], f"{location}:{spec.name}")
    text = {name: _untidy_counts(TABLES[name], t) for name, t in raw.items()}
    names = [name for name, aggs in text.items() if aggs]
    results = fetch_all(con, [raw[name].aggregate(**text[name]) for name in names])
    untidy = dict.fromkeys(raw, {}) | {
        name: _as_counts(result) for name, result in zip(names, results, strict=True)
    }
    tables, counts = _count_checks(con, raw, untidy, location, as_of)
    for name, tab in tables.items():
        _raise_errors(tab, counts[name], local=True)
    if "opportunities" in tables:
        opps = tables["opportunities"]
        opps.cols = _fx(opps, fx, location, counts["opportunities"].get("n_currencies", 0))
    for name, tab in tables.items():
        _raise_errors(tab, counts[name], local=False)

    findings: list[Finding] = []
    accounting: list[dict] = []
    if counts.get("activities", {}).get("type_unknown"):
        tab = tables["activities"]
        odd = tab.rows.filter(tab.checks["type_unknown"].condition).select("activity_type")
        values = sorted(odd.distinct().limit(SAMPLE).to_pandas()["activity_type"].astype(str))
        findings.append(
            Finding(
                "activities",
                "activity_type",
                counts["activities"]["type_unknown"],
                f"have a type outside {'/'.join(ACTIVITY_TYPES)} ({', '.join(values)}); "
                "counted as 'other'",
            )
        )
    order = ["soft_", "q_", "rule", "future_"]
    for prefix in order:
        for name, tab in tables.items():
            for key, check in tab.checks.items():
                n = counts[name][key]
                if check.kind in ("warning", "quarantine") and key.startswith(prefix) and n:
                    findings.append(Finding(name, check.column, n, check.problem, check.kind))
    final: dict[str, ibis.Table] = {}
    for name, tab in tables.items():
        c = counts[name]
        accounting.append({"table": name, "status": "used", "reason": "", "rows": c["kept"]})
        for key, check in tab.checks.items():
            if check.kind == "quarantine" and c[key]:
                accounting.append(
                    {
                        "table": name,
                        "status": "quarantined",
                        "reason": check.problem,
                        "rows": c[key],
                    }
                )
        rows = tab.raw
        if any(check.kind == "quarantine" and c[key] for key, check in tab.checks.items()):
            rows = tab.rows.filter(~tab.quarantined())
        if list(tab.cols) == rows.columns and all(
            expr.equals(rows[column]) for column, expr in tab.cols.items()
        ):
            final[name] = rows
        else:
            final[name] = rows.select(**tab.cols)
    return Source(
        frames={},
        location=location,
        findings=findings,
        accounting=accounting,
        fingerprint_tables=fingerprint_tables,
        _con=con,
        _tables=final,
        _absent={name: tab.absent for name, tab in tables.items()},
    )


def _count_checks(con, raw: dict[str, ibis.Table], untidy: dict, location: str, as_of):
    """Every check of every table, and their counts: one aggregate query per table.

    ``untidy``: per table, per text column, the values that need trimming (0: used as they are).
    """
    tables = {
        spec.name: _table(spec, raw[spec.name], f"{location}:{spec.name}", untidy[spec.name])
        for spec in TABLES.values()
        if spec.name in raw
    }
    canonical = {name: tab.canonical() for name, tab in tables.items()}
    hard = [r for r in REFERENCES if r[0] in tables and r[2] in tables]
    soft = [r for r in SOFT_REFERENCES if r[0] in tables and r[2] in tables]
    found: dict[tuple[str, str], str] = {}
    for table, column, target, key, *_ in [*hard, *soft]:
        if column not in tables[table].absent:
            found[table, column] = tables[table].look_up(column, canonical[target], key)
    quarantine = [
        (rule, tables[rule.table], holds(rule.test(tables[rule.table].t)))
        for rule in QUARANTINE_RULES
        if rule.table in tables
    ]
    if "stage_history" in tables:
        gone = ibis.literal(False)
        for rule, _, condition in quarantine:
            if rule.table == "opportunities":
                gone = gone | condition
        kept = canonical["opportunities"].filter(~gone)
        found["stage_history", "opportunity_id"] = tables["stage_history"].look_up(
            "opportunity_id", kept, "opportunity_id"
        )
    for table, column, target, key in hard:
        if (table, column) in found:
            tab = tables[table]
            tab.add(
                f"ref_{column}",
                "error",
                column,
                f"refers to a {key} that is not in '{target}'",
                tab.missing(column, found[table, column]),
                [tab.spec.key, column],
            )
    for table, column, _, _, message in soft:
        if (table, column) in found:
            tab = tables[table]
            condition = tab.missing(column, found[table, column])
            tab.add(f"soft_{column}", "warning", column, message, condition)
    for rule, tab, condition in quarantine:
        first = condition & ~tab.quarantined()  # counted under one rule
        tab.add(f"q_{rule.column}", "quarantine", rule.column, rule.message, first)
    if "stage_history" in tables:
        sh = tables["stage_history"]
        orphan = sh.missing("opportunity_id", found["stage_history", "opportunity_id"])
        sh.add("q_orphan", "quarantine", "opportunity_id", _ORPHAN_HISTORY, orphan)
    today = load_day(as_of)
    for name, tab in tables.items():
        kept = ~tab.quarantined()
        for i, rule in enumerate(r for r in FINDING_RULES if r.table == name):
            tab.add(
                f"rule{i}", "warning", rule.column, rule.message, holds(rule.test(tab.t)) & kept
            )
        for table, column in FUTURE_COLUMNS:
            if table == name and column not in tab.absent:
                tab.add(
                    f"future_{column}",
                    "warning",
                    column,
                    f"are dated after {(today - pd.Timedelta(days=1)).date()} (the load date); "
                    "not counted in any report before that date",
                    (tab.cols[column] >= today).fill_null(False) & kept,
                )
        tab.add("kept", "count", None, "", kept)

    results = fetch_all(con, [_counts_query(tab) for tab in tables.values()])
    counts = {name: _as_counts(row) for name, row in zip(tables, results, strict=True)}
    return tables, counts


def _check_columns(spec: TableSpec, t: ibis.Table, where: str) -> None:
    missing = [c for c in spec.required if c not in t.columns]
    if missing:
        raise DataError(
            spec.name,
            f"required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} missing (found: {', '.join(t.columns)})",
            column=missing[0],
            file=where,
        )


def _table(spec: TableSpec, t: ibis.Table, where: str, untidy: dict[str, int]) -> _Table:
    """The canonical columns of ``t`` and the checks that stay within the table.

    ``untidy``: per text column, the values that need trimming (``_untidy_query``).
    """
    tab = _Table(spec, t, where, cols={}, absent=[])
    for column, kind in spec.columns.items():
        if column in t.columns:
            tab.cols[column] = _cast(tab, column, kind, untidy.get(column, 1))
        else:
            tab.cols[column] = ibis.null(_IBIS_TYPE[kind])
            tab.absent.append(column)
    cols = tab.cols
    for column in spec.required:
        tab.add(f"null_{column}", "error", column, "must not be empty", cols[column].isnull(),
                [spec.key, column])  # fmt: skip
    if spec.key:
        tab.add("dup", "error", spec.key, "", cols[spec.key].count() - cols[spec.key].nunique())
    if spec.name == "reps":
        cols["is_quota_carrying"] = cols["is_quota_carrying"].fill_null(True)
    if spec.name == "opportunities":
        tab.add(
            "closed_without_date",
            "error",
            "closed_at",
            "is required when is_closed is true",
            cols["is_closed"] & cols["closed_at"].isnull(),
            ["opportunity_id", "is_closed", "closed_at"],
        )
        tab.add(
            "won_not_closed",
            "error",
            "is_won",
            "is true on an opportunity that is not closed (is_closed false)",
            cols["is_won"] & ~cols["is_closed"],
            ["opportunity_id", "is_closed", "is_won"],
        )
        if "currency" not in tab.absent:
            currency = cols["currency"].strip().upper()
            tab.add("n_currencies", "count", "currency", "", currency.nunique())
    if spec.name == "activities":
        kind = cols["activity_type"].lower().strip()
        known = kind.isin(ACTIVITY_TYPES)
        tab.add("type_unknown", "warning", "activity_type", "", ~known)
        if untidy.get("activity_type:kind", 1):
            cols["activity_type"] = ibis.ifelse(known, kind, "other")
    if spec.name == "spend":
        category = cols["category"].lower().strip()
        tab.add(
            "category",
            "error",
            "category",
            f"must be one of {', '.join(SPEND_CATEGORIES)}",
            ~category.isin(SPEND_CATEGORIES),
            ["category"],
        )
        cols["category"] = category
    return tab


def _untidy_counts(spec: TableSpec, t: ibis.Table) -> dict[str, ibis.Value]:
    """Per text column, the count of values that may need trimming: empty, or starting or
    ending with a space or a control character (a superset of what trimming removes, and two
    character codes per value instead of a regular expression).

    A tidy column is used as it is, so that neither the checks nor the KPI queries trim every
    value of a big table. ``activity_type:kind`` counts activity types not already in canonical
    form (lower case, a known type).
    """
    aggs = {
        column: holds((t[column].ascii_str() <= 32) | (t[column].right(1).ascii_str() <= 32)).sum()
        for column, kind in spec.columns.items()
        if kind in ("id", "str") and column in t.columns and t[column].type().is_string()
    }
    if spec.name == "activities" and "activity_type" in aggs:
        aggs["activity_type:kind"] = holds(~t.activity_type.isin(ACTIVITY_TYPES)).sum()
    return aggs


def _cast(tab: _Table, column: str, kind: str, untidy: int) -> ibis.Value:
    """One column cast to its canonical kind; text that is not of that kind is an ``error`` check.

    ``untidy``: the values of a text column that need trimming (0: used as it is).
    """
    t, spec = tab.raw, tab.spec
    col = t[column]
    dtype = col.type()
    if kind in ("id", "str"):
        if not dtype.is_string():
            return col.cast("string").strip().nullif("") if kind == "str" else col.cast("string")
        return col.strip().nullif("") if untidy else col
    if kind == "ts":
        if dtype.is_timestamp() and dtype.timezone is not None:
            return col.cast(dt.Timestamp(timezone="UTC")).cast("timestamp")
        if dtype.is_timestamp() or dtype.is_date():
            return col.cast("timestamp")
        text = col.cast("string").strip().nullif("")
        value = text.try_cast("timestamp")
        problem = "is not a date or timestamp (expected e.g. 2026-10-31 or 2026-10-31 14:05)"
    elif kind == "num":
        if dtype.is_numeric() and not dtype.is_boolean():
            return _finite(tab, column, col.cast("float64"))
        text = col.cast("string").strip().nullif("")
        value = _finite(tab, column, text.try_cast("float64"))
        problem = "is not a number (no currency symbols or thousands separators)"
    else:
        if dtype.is_boolean():
            return col
        text = col.cast("string").strip().lower()
        value = ibis.cases(
            (text.isin(sorted(TRUE)), True),
            (text.isin(sorted(FALSE)), False),
            else_=ibis.null("boolean"),
        )
        problem = "is not a boolean (expected true/false, 1/0 or yes/no)"
    tab.add(f"cast_{column}", "error", column, problem, text.notnull() & value.isnull(),
            [spec.key, column])  # fmt: skip
    return value


def _finite(tab: _Table, column: str, value: ibis.Value) -> ibis.Value:
    """``value``, with an ``error`` check for infinite numbers (a sum of them means nothing)."""
    tab.add(f"cast_{column}:finite", "error", column, "is not a finite number", value.isinf(),
            [tab.spec.key, column])  # fmt: skip
    return value


def _counts_query(tab: _Table) -> ibis.Table:
    """Every check of the table counted in one aggregate query (one scan)."""
    aggs = {"rows": tab.rows.count()}
    for key, check in tab.checks.items():
        if isinstance(check.condition, ibis.expr.types.BooleanScalar):  # a constant: all or none
            aggs[key] = tab.rows.count() * ibis.ifelse(holds(check.condition), 1, 0)
        elif check.condition.type().is_boolean():
            aggs[key] = holds(check.condition).sum()
        else:
            aggs[key] = check.condition
    return tab.rows.aggregate(**aggs)


def _as_counts(result: pd.DataFrame) -> dict[str, int]:
    row = result.iloc[0]
    return {key: int(value) if pd.notna(value) else 0 for key, value in row.items()}


_LOCAL = ("cast_", "null_", "dup", "closed_without_date", "won_not_closed", "category")


def _raise_errors(tab: _Table, counts: dict[str, int], local: bool) -> None:
    """Raise a ``DataError`` for the first failed hard rule: the table's own rules first
    (``local``), then its references to other tables."""
    for key, check in tab.checks.items():
        if check.kind != "error" or key.startswith(_LOCAL) != local or not counts[key]:
            continue
        if key == "dup":
            _raise_duplicates(tab)
        rows = tab.rows.filter(check.condition).select(*check.show).limit(SAMPLE).to_pandas()
        raise DataError(
            tab.spec.name,
            check.problem,
            column=check.column,
            rows=rows,
            count=counts[key],
            file=tab.where,
        )


def _raise_duplicates(tab: _Table) -> None:
    key = tab.spec.key
    t = tab.canonical()
    dups = t.group_by(key).aggregate(n=t.count()).filter(lambda d: d.n > 1)
    n = int(dups.n.sum().fill_null(0).to_pandas())
    rows = t.filter(t[key].isin(dups[key])).order_by(key).limit(SAMPLE)
    raise DataError(
        tab.spec.name,
        f"duplicate {key} (the key must be unique)",
        column=key,
        rows=rows.select(key).to_pandas(),
        count=n,
        file=tab.where,
    )


def _fx(opps: _Table, fx: dict | None, location: str, n_currencies: int) -> dict[str, ibis.Value]:
    """The opportunity columns in one currency; mixed currencies without FX are refused."""
    if fx is None and n_currencies <= 1:
        return opps.cols
    currency = opps.cols["currency"].strip().upper()
    codes = (
        opps.raw.select(code=currency)
        .distinct()
        .filter(lambda d: d.code.notnull())
        .to_pandas()["code"]
    )
    if fx is None:
        raise DataError(
            "opportunities",
            f"holds amounts in {len(codes)} currencies "
            f"({', '.join(sorted(codes))}); give an FX table (fx=...)",
            column="currency",
            file=f"{location}:opportunities",
        )
    missing = sorted(set(codes) - set(fx["rates"]))
    if missing:
        raise DataError(
            "opportunities",
            f"has currencies without a rate in the FX table ({', '.join(missing)})",
            column="currency",
            file=f"{location}:opportunities",
        )
    rate = currency.substitute(fx["rates"], else_=ibis.literal(1.0)).cast("float64")
    cols = dict(opps.cols, amount=opps.cols["amount"] * rate)
    if fx["currency"]:
        cols["currency"] = ibis.ifelse(
            opps.cols["currency"].isnull(), ibis.null("string"), fx["currency"]
        )
    return cols


def fingerprint_tables(src: Source) -> str:
    """The tables' contents as one string, computed where they live.

    On DuckDB: rows and the sum of a hash of every row per table (equal contents, equal string;
    any changed value changes it). Elsewhere: per-table aggregates (rows, sums, date ranges,
    distinct counts), which every SQL engine computes alike.
    """
    parts = []
    for name in sorted(src._tables):
        t = src._tables[name]
        if src.con.name == "duckdb":
            sql = src.con.compile(t)
            n, digest = src.con.con.execute(
                f"SELECT count(*), sum(hash(r)) FROM ({sql}) r"
            ).fetchone()
            parts.append(f"{name}|{','.join(t.columns)}|n={n}|hash={digest}")
            continue
        spec = TABLES[name]
        aggs = {"n": t.count()}
        for column, kind in spec.columns.items():
            if kind == "num":
                aggs[f"sum_{column}"] = t[column].sum()
            elif kind == "ts":
                aggs[f"min_{column}"] = t[column].min()
                aggs[f"max_{column}"] = t[column].max()
            else:
                aggs[f"nd_{column}"] = t[column].nunique()
        row = t.aggregate(**aggs).to_pandas().iloc[0]
        parts.append(name + "|" + "|".join(f"{k}={row[k]}" for k in sorted(aggs)))
    return "\n".join(parts)

"""A warehouse as source: the canonical tables stay in the database, the KPIs run there.

``load_source("postgresql://kpi@db.internal/crm")`` (any URL ``ibis.connect`` takes, or a
connected Ibis backend such as ``ibis.pyspark.connect(session)``) finds the canonical tables by
name, casts their columns to the contract's kinds, and checks them with SQL queries: only counts
and a few offending rows come back, never the tables. ``teams`` and ``reps`` are small and are
fetched (scopes are built from them); the KPI measures are Ibis expressions that run in the
warehouse, so only the aggregates of the cube leave it.
"""

from __future__ import annotations

import ibis
import ibis.expr.datatypes as dt
import pandas as pd

from kpi_lib.errors import DataError, SourceError
from kpi_lib.redact import redact, reveal
from kpi_lib.schema import ACTIVITY_TYPES, SPEND_CATEGORIES, TABLES, TableSpec
from kpi_lib.sources import (
    _FALSE,
    _TRUE,
    FINDING_RULES,
    FUTURE_COLUMNS,
    QUARANTINE_RULES,
    REFERENCES,
    SOFT_REFERENCES,
    Finding,
    Source,
    _today,
    holds,
)

_IBIS_TYPE = {
    "id": "string",
    "str": "string",
    "ts": "timestamp",
    "bool": "boolean",
    "num": "float64",
}
SAMPLE = 5


def load_remote(source, fx: dict | None, as_of=None) -> Source:
    """Check the canonical tables of a warehouse with SQL and wrap them in a ``Source``.

    Parameters
    ----------
    source
        A URL for ``ibis.connect`` (``postgresql://user@127.0.0.1:5432/crm``,
        ``duckdb:///data/demo.duckdb``) or a connected Ibis backend.
    fx
        Exchange rates (``kpi_lib.sources.load_fx``); the conversion runs in the warehouse.

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
    findings: list[Finding] = []
    accounting: list[dict] = []
    tables: dict[str, ibis.Table] = {}
    absent: dict[str, list[str]] = {}
    for spec in TABLES.values():
        if spec.name not in present:
            if spec.is_required:
                raise SourceError(f"{location}: required table '{spec.name}' is missing")
            continue
        where = f"{location}:{spec.name}"
        tables[spec.name], absent[spec.name] = _canonical(
            spec, con.table(spec.name), where, findings
        )
    if "opportunities" in tables:
        tables["opportunities"] = _fx(tables["opportunities"], fx, location)
    for table, column, target, key in REFERENCES:
        if table in tables and target in tables and column not in absent[table]:
            t, ref = tables[table], tables[target]
            bad = t[column].notnull() & ~t[column].isin(ref[key])
            _raise_if(
                t,
                bad,
                table,
                column,
                f"refers to a {key} that is not in '{target}'",
                f"{location}:{table}",
                [c for c in (TABLES[table].key, column) if c],
            )
    for table, column, target, key, message in SOFT_REFERENCES:
        if table in tables and target in tables and column not in absent[table]:
            t = tables[table]
            n = _count(t, t[column].notnull() & ~t[column].isin(tables[target][key]))
            if n:
                findings.append(Finding(table, column, n, message))
    quarantined: dict[str, list[tuple[str, int]]] = {}
    for rule in QUARANTINE_RULES:
        if rule.table in tables:
            t = tables[rule.table]
            bad = holds(rule.test(t))
            n = _count(t, bad)
            if n:
                findings.append(Finding(rule.table, rule.column, n, rule.message, "quarantine"))
                quarantined.setdefault(rule.table, []).append((rule.message, n))
                tables[rule.table] = t.filter(~bad)
    if "stage_history" in tables:
        sh = tables["stage_history"]
        orphan = ~sh.opportunity_id.isin(tables["opportunities"].opportunity_id)
        n = _count(sh, orphan)
        if n:
            message = "belong to an opportunity that is not in 'opportunities' (or was quarantined)"
            findings.append(Finding("stage_history", "opportunity_id", n, message, "quarantine"))
            quarantined.setdefault("stage_history", []).append((message, n))
            tables["stage_history"] = sh.filter(~orphan)
    today = _today(as_of)
    for name, t in tables.items():
        rules = [r for r in FINDING_RULES if r.table == name]
        future = [c for table, c in FUTURE_COLUMNS if table == name and c not in absent[name]]
        aggs = {"rows": t.count()}
        aggs |= {f"rule{i}": holds(r.test(t)).sum() for i, r in enumerate(rules)}
        aggs |= {f"future_{c}": (t[c] >= today).fill_null(False).sum() for c in future}
        counts = t.aggregate(**aggs).to_pandas().iloc[0].fillna(0)
        for i, rule in enumerate(rules):
            if counts[f"rule{i}"]:
                findings.append(Finding(name, rule.column, int(counts[f"rule{i}"]), rule.message))
        for c in future:
            if counts[f"future_{c}"]:
                findings.append(
                    Finding(
                        name,
                        c,
                        int(counts[f"future_{c}"]),
                        f"are dated after {(today - pd.Timedelta(days=1)).date()} (the load date); "
                        "not counted in any report before that date",
                    )
                )
        accounting.append(
            {"table": name, "status": "used", "reason": "", "rows": int(counts["rows"])}
        )
        for reason, n in quarantined.get(name, []):
            accounting.append({"table": name, "status": "quarantined", "reason": reason, "rows": n})
    src = Source(
        frames={},
        location=location,
        findings=findings,
        accounting=accounting,
        _con=con,
        _remote=tables,
        _absent=absent,
    )
    for small in ("teams", "reps"):
        src.frame(small)
    return src


def _canonical(spec: TableSpec, t: ibis.Table, where: str, findings: list[Finding]):
    """The warehouse table as the canonical table: columns cast, hard rules checked in SQL."""
    missing = [c for c in spec.required if c not in t.columns]
    if missing:
        raise DataError(
            spec.name,
            f"required column{'s' if len(missing) > 1 else ''} "
            f"{', '.join(missing)} missing (found: {', '.join(t.columns)})",
            column=missing[0],
            file=where,
        )
    cols, absent = {}, []
    for column, kind in spec.columns.items():
        if column in t.columns:
            cols[column] = _cast(t, column, kind, spec, where)
        else:
            cols[column] = ibis.null(_IBIS_TYPE[kind])
            absent.append(column)
    out = t.select(**cols)
    show = [c for c in (spec.key,) if c]
    for column in spec.required:
        _raise_if(
            out,
            out[column].isnull(),
            spec.name,
            column,
            "must not be empty",
            where,
            [*show, column] if column not in show else show,
        )
    if spec.key:
        dups = out.group_by(spec.key).aggregate(n=out.count()).filter(lambda d: d.n > 1)
        n = int(dups.n.sum().fill_null(0).to_pandas())
        if n:
            rows = dups.limit(SAMPLE).to_pandas()
            raise DataError(
                spec.name,
                f"duplicate {spec.key} (the key must be unique)",
                column=spec.key,
                rows=rows,
                count=n,
                file=where,
            )
    if spec.name == "reps":
        out = out.mutate(is_quota_carrying=out.is_quota_carrying.fill_null(True))
    if spec.name == "opportunities":
        _raise_if(
            out,
            out.is_closed & out.closed_at.isnull(),
            spec.name,
            "closed_at",
            "is required when is_closed is true",
            where,
            ["opportunity_id", "is_closed", "closed_at"],
        )
        _raise_if(
            out,
            out.is_won & ~out.is_closed,
            spec.name,
            "is_won",
            "is true on an opportunity that is not closed (is_closed false)",
            where,
            ["opportunity_id", "is_closed", "is_won"],
        )
    if spec.name == "activities":
        kind = out.activity_type.lower().strip()
        known = kind.isin(ACTIVITY_TYPES)
        n = _count(out, ~known)
        if n:
            findings.append(
                Finding(
                    spec.name,
                    "activity_type",
                    n,
                    f"have a type outside {'/'.join(ACTIVITY_TYPES)}; counted as 'other'",
                )
            )
        out = out.mutate(activity_type=ibis.ifelse(known, kind, "other"))
    if spec.name == "spend":
        category = out.category.lower().strip()
        _raise_if(
            out,
            ~category.isin(SPEND_CATEGORIES),
            spec.name,
            "category",
            f"must be one of {', '.join(SPEND_CATEGORIES)}",
            where,
            ["category"],
        )
        out = out.mutate(category=category)
    return out, absent


def _cast(t: ibis.Table, column: str, kind: str, spec: TableSpec, where: str) -> ibis.Value:
    """One column cast to its canonical kind; text that is not of that kind is a DataError."""
    col = t[column]
    dtype = col.type()
    if kind in ("id", "str"):
        value = col.cast("string") if not dtype.is_string() else col
        return value.strip().nullif("") if kind == "str" or dtype.is_string() else value
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
            return col.cast("float64")
        text = col.cast("string").strip().nullif("")
        value = text.try_cast("float64")
        problem = "is not a number (no currency symbols or thousands separators)"
    else:
        if dtype.is_boolean():
            return col
        text = col.cast("string").strip().lower()
        value = ibis.cases(
            (text.isin(sorted(_TRUE)), True),
            (text.isin(sorted(_FALSE)), False),
            else_=ibis.null("boolean"),
        )
        problem = "is not a boolean (expected true/false, 1/0 or yes/no)"
    _raise_if(
        t,
        text.notnull() & value.isnull(),
        spec.name,
        column,
        problem,
        where,
        [c for c in (spec.key, column) if c and c in t.columns],
    )
    return value


def _fx(opps: ibis.Table, fx: dict | None, location: str) -> ibis.Table:
    currency = opps.currency.strip().upper()
    codes = (
        opps.select(code=currency).distinct().filter(lambda d: d.code.notnull()).to_pandas()["code"]
    )
    if fx is None:
        if len(codes) > 1:
            raise DataError(
                "opportunities",
                f"holds amounts in {len(codes)} currencies "
                f"({', '.join(sorted(codes))}); give an FX table (fx=...)",
                column="currency",
                file=f"{location}:opportunities",
            )
        return opps
    missing = sorted(set(codes) - set(fx["rates"]))
    if missing:
        raise DataError(
            "opportunities",
            f"has currencies without a rate in the FX table ({', '.join(missing)})",
            column="currency",
            file=f"{location}:opportunities",
        )
    rate = currency.substitute(fx["rates"], else_=ibis.literal(1.0)).cast("float64")
    converted = opps.mutate(amount=opps.amount * rate)
    if fx["currency"]:
        converted = converted.mutate(
            currency=ibis.ifelse(opps.currency.isnull(), ibis.null("string"), fx["currency"])
        )
    return converted


def _count(t: ibis.Table, condition: ibis.Value) -> int:
    return int(t.filter(condition).count().to_pandas())


def _raise_if(t, condition, table, column, problem, where, show) -> None:
    """Raise a DataError with the count and a few offending rows when ``condition`` holds anywhere."""
    n = _count(t, condition)
    if n:
        rows = t.filter(condition).select(*show).limit(SAMPLE).to_pandas()
        raise DataError(table, problem, column=column, rows=rows, count=n, file=where)


def remote_fingerprint(src: Source) -> str:
    """Per-table aggregates (rows, sums, date ranges) computed in the warehouse, as one string."""
    parts = []
    for name in sorted(src._remote):
        t = src._remote[name]
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

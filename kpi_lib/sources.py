"""Load a source into the canonical tables, typed and validated.

A source is a folder of ``<table>.csv`` / ``<table>.parquet``, a DuckDB file, or a dict of
pandas DataFrames (tests, notebooks). Whatever the source, the result is a ``Source``: the
canonical tables as pandas frames, checked against the data contract, and the same tables
registered in an Ibis backend (embedded DuckDB) where the KPI expressions run.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import ibis
import pandas as pd

from kpi_lib.errors import DataError, SourceError
from kpi_lib.schema import ACTIVITY_TYPES, SPEND_CATEGORIES, TABLES, TableSpec

_NULL_TEXT = {"", "na", "n/a", "null", "none", "nan", "nat"}
_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}


@dataclass
class Finding:
    """One data-quality observation: which table and column, how many rows, what it means."""

    table: str
    column: str | None
    count: int
    message: str
    severity: str = "warning"

    def __str__(self) -> str:
        where = self.table + (f".{self.column}" if self.column else "")
        return f"{where}: {self.count} row{'s' if self.count != 1 else ''} {self.message}"


@dataclass
class Source:
    """The canonical tables of one source, validated, and the Ibis backend that holds them.

    Example
    -------
    >>> src = load_source("data/demo.duckdb")          # doctest: +SKIP
    >>> src.has("revenue"), src.frame("teams").shape   # doctest: +SKIP
    (True, (6, 3))
    """

    frames: dict[str, pd.DataFrame]
    location: str
    findings: list[Finding] = field(default_factory=list)
    _con: object | None = None
    _fingerprint: str | None = None

    def has(self, table: str) -> bool:
        """Whether the source provides ``table`` (the required ones always do)."""
        return table in self.frames

    def frame(self, table: str) -> pd.DataFrame:
        """The canonical table as a pandas DataFrame (do not modify it)."""
        if table not in self.frames:
            raise SourceError(f"{self.location}: the source has no '{table}' table")
        return self.frames[table]

    @property
    def con(self):
        """The Ibis backend holding the canonical tables (embedded DuckDB, created on first use)."""
        if self._con is None:
            con = ibis.duckdb.connect()
            for name, df in self.frames.items():
                con.create_table(name, df)
            self._con = con
        return self._con

    def table(self, name: str) -> ibis.Table:
        """The canonical table as an Ibis table expression."""
        self.frame(name)
        return self.con.table(name)

    @property
    def fingerprint(self) -> str:
        """A short hash of the canonical tables' contents: equal data, equal fingerprint."""
        if self._fingerprint is None:
            digest = hashlib.sha256()
            for name in sorted(self.frames):
                df = self.frames[name]
                digest.update(name.encode() + b"|" + ",".join(df.columns).encode())
                digest.update(pd.util.hash_pandas_object(df, index=False).values.tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def has_column(self, table: str, column: str) -> bool:
        """Whether the source provides ``table.column`` (absent optional columns are all null)."""
        return self.has(table) and column not in self.frames[table].attrs.get("absent", [])

    def row_counts(self) -> dict[str, int]:
        return {name: len(df) for name, df in self.frames.items()}


def load_source(source: str | Path | dict[str, pd.DataFrame] | Source) -> Source:
    """Load and validate a source into the canonical tables.

    Parameters
    ----------
    source
        A folder of ``<table>.csv`` / ``<table>.parquet`` files, a DuckDB file
        (``data/demo.duckdb``), a dict ``{table name: DataFrame}``, or an already loaded
        ``Source`` (returned as is).

    Returns
    -------
    Source
        Only ``teams``, ``reps`` and ``opportunities`` are required; optional tables that
        are absent stay absent, and the KPIs that need them are reported unavailable.

    Raises
    ------
    SourceError
        The path does not exist, a file cannot be read, a required table is missing.
    DataError
        A table breaks the contract; the message names file, table, column and rows.
    """
    if isinstance(source, Source):
        return source
    if isinstance(source, dict):
        raw = {name: (df, None) for name, df in source.items()}
        location = "<frames>"
    else:
        path = Path(source)
        location = str(path)
        if not path.exists():
            raise SourceError(f"source '{path}' does not exist")
        if path.is_dir():
            raw = _read_folder(path)
        elif path.suffix.lower() in {".duckdb", ".db", ".ddb"}:
            raw = _read_duckdb(path)
        else:
            raise SourceError(
                f"source '{path}': expected a folder of <table>.csv/.parquet files "
                "or a DuckDB file (.duckdb)"
            )
    unknown = sorted(set(raw) - set(TABLES))
    if unknown and isinstance(source, dict):
        raise SourceError(f"unknown table(s) {unknown}; canonical tables are {list(TABLES)}")
    frames: dict[str, pd.DataFrame] = {}
    findings: list[Finding] = []
    for spec in TABLES.values():
        if spec.name not in raw:
            if spec.is_required:
                raise SourceError(
                    f"{location}: required table '{spec.name}' is missing "
                    f"(expected {spec.name}.csv, {spec.name}.parquet or a '{spec.name}' table)"
                )
            continue
        df, file = raw[spec.name]
        frames[spec.name] = _coerce(spec, df, file, findings)
    _check_references(frames, {name: file for name, (_, file) in raw.items()}, findings)
    return Source(frames=frames, location=location, findings=findings)


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def _read_folder(path: Path) -> dict[str, tuple[pd.DataFrame, str]]:
    raw: dict[str, tuple[pd.DataFrame, str]] = {}
    for name in TABLES:
        csv, parquet = path / f"{name}.csv", path / f"{name}.parquet"
        if csv.exists() and parquet.exists():
            raise SourceError(f"{path}: both {csv.name} and {parquet.name} exist; keep one")
        try:
            if csv.exists():
                raw[name] = (
                    pd.read_csv(csv, dtype=str, keep_default_na=False, skipinitialspace=True),
                    str(csv),
                )
            elif parquet.exists():
                raw[name] = (pd.read_parquet(parquet), str(parquet))
        except (ValueError, OSError, pd.errors.ParserError) as exc:
            file = csv if csv.exists() else parquet
            raise SourceError(f"{file}: cannot read table '{name}': {exc}") from exc
    return raw


def _read_duckdb(path: Path) -> dict[str, tuple[pd.DataFrame, str]]:
    import duckdb

    try:
        con = duckdb.connect(str(path), read_only=True)
    except duckdb.Error as exc:
        raise SourceError(f"{path}: cannot open as a DuckDB database: {exc}") from exc
    try:
        present = {row[0] for row in con.execute("SELECT table_name FROM information_schema.tables").fetchall()}
        return {
            name: (con.execute(f'SELECT * FROM "{name}"').df(), f"{path}:{name}")
            for name in TABLES
            if name in present
        }
    finally:
        con.close()


# ---------------------------------------------------------------------------------------------
# Typing and validation
# ---------------------------------------------------------------------------------------------


def _coerce(spec: TableSpec, df: pd.DataFrame, file: str | None, findings: list[Finding]) -> pd.DataFrame:
    """One canonical table: required columns present, every column typed, keys unique."""
    df = df.rename(columns=lambda c: str(c).strip()).reset_index(drop=True)
    missing = [c for c in spec.required if c not in df.columns]
    if missing:
        raise DataError(
            spec.name,
            f"required column{'s' if len(missing) > 1 else ''} {', '.join(missing)} missing "
            f"(found: {', '.join(map(str, df.columns)) or 'no columns'})",
            column=missing[0],
            file=file,
        )
    out = pd.DataFrame(index=df.index)
    for column, kind in spec.columns.items():
        if column in df.columns:
            try:
                out[column] = _COERCE[kind](df[column])
            except _BadValues as bad:
                raise DataError(
                    spec.name, bad.problem, column=column, file=file,
                    rows=df.loc[bad.mask, _show_columns(spec, df, column)], count=int(bad.mask.sum()),
                ) from None
        else:
            out[column] = pd.Series(pd.NA, index=df.index, dtype=_NULL_DTYPE[kind])
            out.attrs.setdefault("absent", []).append(column)
    for column in spec.required:
        nulls = out[column].isna()
        if nulls.any():
            raise DataError(
                spec.name, "must not be empty", column=column,
                rows=df.loc[nulls, _show_columns(spec, df, column)], count=int(nulls.sum()), file=file,
            )
    if spec.key:
        dup = out[spec.key].duplicated(keep=False)
        if dup.any():
            raise DataError(
                spec.name, f"duplicate {spec.key} (the key must be unique)", column=spec.key,
                rows=df.loc[dup, _show_columns(spec, df, spec.key)], count=int(dup.sum()), file=file,
            )
    _check_table(spec.name, out, df, file, findings)
    return out


def _show_columns(spec: TableSpec, df: pd.DataFrame, column: str) -> list[str]:
    cols = [c for c in (spec.key, column) if c and c in df.columns]
    return list(dict.fromkeys(cols))


class _BadValues(Exception):
    """Raised by a column coercer: which rows hold values of the wrong kind, and what is expected."""

    def __init__(self, mask: pd.Series, problem: str):
        super().__init__(problem)
        self.mask, self.problem = mask, problem


def _as_text(series: pd.Series) -> pd.Series:
    text = series.astype("string").str.strip()
    return text.mask(text.str.lower().isin(_NULL_TEXT))


def _to_id(series: pd.Series) -> pd.Series:
    if pd.api.types.is_float_dtype(series):
        whole = series.dropna()
        if (whole == whole.round()).all():
            series = series.astype("Int64")
    if pd.api.types.is_string_dtype(series) or series.dtype == object:
        text = series.astype("string").str.strip()
        return text.mask(text == "").astype("string")
    return series.astype("string")


def _to_str(series: pd.Series) -> pd.Series:
    return _as_text(series).astype("string")


def _to_ts(series: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(series):
        parsed = series
    else:
        text = _as_text(series)
        try:
            parsed = pd.to_datetime(text, format="ISO8601")
        except (ValueError, TypeError):
            parsed = pd.to_datetime(text, format="mixed", errors="coerce")
        bad = parsed.isna() & text.notna()
        if bad.any():
            raise _BadValues(bad, "is not a date or timestamp (expected e.g. 2026-10-31 or 2026-10-31 14:05)")
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[us]")


def _to_bool(series: pd.Series) -> pd.Series:
    if pd.api.types.is_bool_dtype(series):
        return series.astype("boolean")
    text = _as_text(series).str.lower()
    result = pd.Series(pd.NA, index=series.index, dtype="boolean")
    result[text.isin(_TRUE)] = True
    result[text.isin(_FALSE)] = False
    bad = text.notna() & ~text.isin(_TRUE | _FALSE)
    if bad.any():
        raise _BadValues(bad, "is not a boolean (expected true/false, 1/0 or yes/no)")
    return result


def _to_num(series: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        return series.astype("float64")
    text = _as_text(series)
    parsed = pd.to_numeric(text, errors="coerce")
    bad = parsed.isna() & text.notna()
    if bad.any():
        raise _BadValues(bad, "is not a number")
    return parsed.astype("float64")


_NULL_DTYPE = {"id": "string", "str": "string", "ts": "datetime64[us]", "bool": "boolean", "num": "float64"}
_COERCE = {"id": _to_id, "str": _to_str, "ts": _to_ts, "bool": _to_bool, "num": _to_num}


def _check_table(
    name: str, out: pd.DataFrame, raw: pd.DataFrame, file: str | None, findings: list[Finding]
) -> None:
    """Rules of one table beyond types: closed deals have a close date, values in their domain."""
    if name == "reps":
        out["is_quota_carrying"] = out["is_quota_carrying"].fillna(True).astype(bool)
    if name == "opportunities":
        for column in ("is_closed", "is_won"):
            out[column] = out[column].astype(bool)
        bad = out["is_closed"] & out["closed_at"].isna()
        if bad.any():
            raise DataError(
                name, "is required when is_closed is true", column="closed_at",
                rows=raw.loc[bad, [c for c in ("opportunity_id", "is_closed", "closed_at") if c in raw]],
                count=int(bad.sum()), file=file,
            )
        bad = out["is_won"] & ~out["is_closed"]
        if bad.any():
            raise DataError(
                name, "is true on an opportunity that is not closed (is_closed false)", column="is_won",
                rows=raw.loc[bad, ["opportunity_id", "is_closed", "is_won"]], count=int(bad.sum()), file=file,
            )
        negative = out["amount"] < 0
        if negative.any():
            findings.append(Finding(name, "amount", int(negative.sum()), "have a negative amount"))
        backwards = out["closed_at"] < out["created_at"]
        if backwards.any():
            findings.append(Finding(name, "closed_at", int(backwards.sum()), "closed before they were created"))
    if name == "activities":
        kind = out["activity_type"].str.lower()
        unknown = ~kind.isin(ACTIVITY_TYPES)
        if unknown.any():
            values = ", ".join(sorted(set(out.loc[unknown, "activity_type"].astype(str)))[:5])
            findings.append(Finding(
                name, "activity_type", int(unknown.sum()),
                f"have a type outside {'/'.join(ACTIVITY_TYPES)} ({values}); counted as 'other'",
            ))
        out["activity_type"] = kind.where(~unknown, "other")
    if name == "spend":
        category = out["category"].str.lower()
        bad = ~category.isin(SPEND_CATEGORIES)
        if bad.any():
            raise DataError(
                name, f"must be one of {', '.join(SPEND_CATEGORIES)}", column="category",
                rows=raw.loc[bad, ["category"]], count=int(bad.sum()), file=file,
            )
        out["category"] = category


# (table, column) -> (referenced table, referenced key)
_REFERENCES = [
    ("reps", "team_id", "teams", "team_id"),
    ("opportunities", "owner_rep_id", "reps", "rep_id"),
    ("leads", "owner_rep_id", "reps", "rep_id"),
    ("activities", "rep_id", "reps", "rep_id"),
    ("accounts", "owner_rep_id", "reps", "rep_id"),
    ("spend", "team_id", "teams", "team_id"),
]


def _check_references(frames: dict[str, pd.DataFrame], files: dict[str, str | None], findings: list[Finding]) -> None:
    """Owners and teams must exist: an unknown one would silently drop out of team and rep KPIs."""
    for table, column, target, key in _REFERENCES:
        if table not in frames or column not in frames[table]:
            continue
        values = frames[table][column]
        bad = values.notna() & ~values.isin(frames[target][key])
        if bad.any():
            df = frames[table]
            spec = TABLES[table]
            cols = [c for c in (spec.key, column) if c]
            raise DataError(
                table, f"refers to a {key} that is not in '{target}'", column=column,
                rows=df.loc[bad, cols], count=int(bad.sum()), file=files.get(table),
            )
    if "leads" in frames and "opportunity_id" in frames["leads"]:
        leads = frames["leads"]
        orphan = leads["opportunity_id"].notna() & ~leads["opportunity_id"].isin(
            frames["opportunities"]["opportunity_id"]
        )
        if orphan.any():
            findings.append(Finding(
                "leads", "opportunity_id", int(orphan.sum()),
                "point to an opportunity that is not in 'opportunities' (counted as not won)",
            ))
    if "revenue" in frames and "accounts" in frames:
        revenue = frames["revenue"]
        orphan = ~revenue["account_id"].isin(frames["accounts"]["account_id"])
        if orphan.any():
            findings.append(Finding(
                "revenue", "account_id", int(orphan.sum()),
                "belong to an account that is not in 'accounts' (company figures only)",
            ))

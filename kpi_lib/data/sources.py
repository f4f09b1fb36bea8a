"""Load a source into the canonical tables, typed, validated, with every row accounted for.

A source is a folder of ``<table>.csv`` / ``<table>.parquet``, a DuckDB file, a SQL URL
(``postgresql://...``, any Ibis backend), a dict of pandas DataFrames (tests, notebooks), a
folder of CRM exports read through a preset (``preset="salesforce"`` / ``"hubspot"``,
``kpi_lib.data.presets``), or anything read through a YAML column map (``kpi_lib.data.colmap``).

Whatever the source, the result is a ``Source``: the canonical tables checked against the data
contract (DESIGN.md section 3), the rows that would corrupt a KPI set aside in quarantine with a
reason, the data-quality findings, and the tables as Ibis expressions where the KPIs run
(embedded DuckDB for files and frames; the warehouse itself for a SQL URL).

Three outcomes for a problem in the data:

- hard error (``DataError``, exit code 2): the contract is broken (missing column, wrong type,
  duplicate key, unknown owner, closed deal without close date, mixed currencies without FX);
- quarantine: the row is kept out of the KPIs and counted with its reason (a deal closed before
  it was created, a negative deal amount, stage history of an unknown deal);
- finding: the row is used and the oddity is reported (won deals without amount, dates after
  the load date, activities pointing at unknown leads or deals).
"""

from __future__ import annotations

import dataclasses
import hashlib
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ibis
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import yaml

from kpi_lib.data.schema import ACTIVITY_TYPES, SPEND_CATEGORIES, TABLES, TableSpec
from kpi_lib.errors import DataError, SourceError

_NULL_TEXT = {"", "na", "n/a", "null", "none", "nan", "nat"}
_TRUE = {"true", "t", "yes", "y", "1", "1.0"}
_FALSE = {"false", "f", "no", "n", "0", "0.0"}
_READ_KEYS = ("preset", "options", "colmap", "fx")
CONFIG_KEYS = ("targets", "kpis", "recipients")
"""The org's configuration a source file may name: its targets, KPI settings and recipients."""
_SOURCE_FILE_KEYS = {"path", "url", *_READ_KEYS, *CONFIG_KEYS}


@dataclass
class Finding:
    """One data-quality observation: which table and column, how many rows, what it means.

    ``severity`` is ``"warning"`` (the rows are used) or ``"quarantine"`` (the rows are kept out
    of every KPI).
    """

    table: str
    column: str | None
    count: int
    message: str
    severity: str = "warning"

    def __str__(self) -> str:
        where = self.table + (f".{self.column}" if self.column else "")
        text = f"{where}: {self.count} row{'s' if self.count != 1 else ''} {self.message}"
        return text + (" [quarantined]" if self.severity == "quarantine" else "")


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
    quarantine: dict[str, pd.DataFrame] = field(default_factory=dict)
    accounting: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)
    config_files: dict[str, str] = field(default_factory=dict)
    """The org's configuration files its source file names (``CONFIG_KEYS``), absolute paths."""
    _con: object | None = None
    _fingerprint: str | None = None
    _tables: dict[str, ibis.Table] | None = None
    _absent: dict[str, list[str]] = field(default_factory=dict)
    _embedded: bool = False

    @property
    def is_remote(self) -> bool:
        """Whether the tables live in a warehouse (SQL URL): KPIs run there, rows stay there."""
        return self._tables is not None and not self._embedded

    def has(self, table: str) -> bool:
        """Whether the source provides ``table`` (the required ones always do)."""
        return table in self.frames or (self._tables is not None and table in self._tables)

    def frame(self, table: str) -> pd.DataFrame:
        """The canonical table as a pandas DataFrame (do not modify it).

        For a source whose tables live in a database (a warehouse, a DuckDB file) this fetches
        the table: fine for ``teams`` and ``reps``; KPI code uses ``table()`` instead.
        """
        if table not in self.frames:
            if not self.has(table):
                raise SourceError(f"{self.location}: the source has no '{table}' table")
            df = self._tables[table].to_pandas()
            for column, kind in TABLES[table].columns.items():
                df[column] = _COERCE[kind](df[column])
            self.frames[table] = df
        return self.frames[table]

    @property
    def con(self):
        """The Ibis backend holding the canonical tables (embedded DuckDB, created on first use)."""
        if self._con is None:
            con = ibis.duckdb.connect()
            for name, df in self.frames.items():
                # A view over the Arrow data: no copy (create_table copied every frame).
                con.con.register(name, pa.Table.from_pandas(df, preserve_index=False))
            self._con = con
        return self._con

    def table(self, name: str) -> ibis.Table:
        """The canonical table as an Ibis table expression (quarantined rows left out)."""
        if self._tables is not None and name in self._tables:
            return self._tables[name]
        self.frame(name)
        return self.con.table(name)

    @property
    def fingerprint(self) -> str:
        """A short hash of the canonical tables' contents: equal data, equal fingerprint.

        For tables in a database: computed there (``kpi_lib.data.warehouse.fingerprint_tables``).
        """
        if self._fingerprint is None:
            digest = hashlib.sha256()
            if self._tables is not None:
                from kpi_lib.data.warehouse import fingerprint_tables

                digest.update(fingerprint_tables(self).encode())
            else:
                for name in sorted(self.frames):
                    df = self.frames[name]
                    digest.update(name.encode() + b"|" + ",".join(df.columns).encode())
                    digest.update(pd.util.hash_pandas_object(df, index=False).values.tobytes())
            self._fingerprint = digest.hexdigest()[:16]
        return self._fingerprint

    def with_table(self, name: str, df: pd.DataFrame, accounting: list[dict]) -> Source:
        """This source with the canonical table ``name`` given by ``df`` (added or replaced).

        The frames of a frames source; a new table of the embedded DuckDB of a DuckDB file. A
        warehouse is never written to: ``SourceError``.
        """
        if self.is_remote:
            raise SourceError(f"{self.location}: a warehouse source takes no local table")
        if self._tables is None:
            frames = {**self.frames, name: df}
            return dataclasses.replace(
                self, frames=frames, accounting=accounting, _con=None, _fingerprint=None
            )
        self.con.create_table(f"added_{name}", df, overwrite=True)
        tables = {**self._tables, name: self.con.table(f"added_{name}")}
        return dataclasses.replace(self, accounting=accounting, _tables=tables, _fingerprint=None)

    def has_column(self, table: str, column: str) -> bool:
        """Whether the source provides ``table.column`` (absent optional columns are all null)."""
        if not self.has(table):
            return False
        if table in self._absent:
            return column not in self._absent[table]
        return column not in self.frames[table].attrs.get("absent", [])

    def row_counts(self) -> dict[str, int]:
        """Rows used per canonical table (quarantined rows not included)."""
        if self._tables is not None:
            return {
                e["table"]: e["rows"]
                for e in self.accounting
                if e["status"] == "used" and e["table"] in TABLES
            }
        return {name: len(df) for name, df in self.frames.items()}

    def row_accounting(self) -> pd.DataFrame:
        """Where every input row went. One row per table x status x reason.

        ``status`` is ``used`` (in the KPIs), ``quarantined`` (kept out, with the reason) or
        ``not a row`` (a preset's raw row that holds no canonical row, with the reason: e.g. an
        OpportunityHistory row that changed the amount, not the stage). Per table, the rows add up
        to the rows read.

        Example
        -------
        >>> load_source("data/demo.duckdb").row_accounting().head(2)   # doctest: +SKIP
                table status reason  rows
        0       teams   used            6
        1        reps   used           36
        """
        columns = ["table", "status", "reason", "rows"]
        return pd.DataFrame(self.accounting, columns=columns)


@dataclass(frozen=True)
class SourceSpec:
    """Where a source is, how to read it, and which configuration belongs to its org.

    What the source options of every command (``--source``, ``--preset``, ``--options``,
    ``--colmap``, ``--fx``) and a source file say, in one value: ``load_source`` reads it, and
    ``to_yaml`` writes it as a source file for processes that take a path (the report
    notebooks). Paths are absolute; ``location`` is a folder, a file or a SQL URL.

    Example
    -------
    >>> spec = source_spec("exports/", preset="salesforce")          # doctest: +SKIP
    >>> print(spec.to_yaml())                                         # doctest: +SKIP
    path: /srv/kpi-kit/exports
    preset: salesforce
    """

    location: str
    preset: str | None = None
    options: str | None = None
    colmap: str | None = None
    fx: str | None = None
    targets: str | None = None
    kpis: str | None = None
    recipients: str | None = None
    origin: str | None = None
    """The source file this was read from, if any (named in messages)."""

    @property
    def is_url(self) -> bool:
        return "://" in self.location and not Path(self.location).exists()

    @property
    def config_files(self) -> dict[str, str]:
        return {k: getattr(self, k) for k in CONFIG_KEYS if getattr(self, k)}

    def to_yaml(self) -> str:
        """The source file of this spec (``path:`` or ``url:``, then what is set)."""
        data = {"url" if self.is_url else "path": self.location}
        data |= {k: getattr(self, k) for k in (*_READ_KEYS, *CONFIG_KEYS) if getattr(self, k)}
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)

    def __str__(self) -> str:
        read = ", ".join(
            f"{k} {Path(str(getattr(self, k))).name}" for k in _READ_KEYS[1:] if getattr(self, k)
        )
        how = (
            f" ({self.preset} preset{', ' + read if read else ''})"
            if self.preset
            else (f" ({read})" if read else "")
        )
        return f"{self.origin or self.location}{how}"


def source_spec(
    source,
    preset: str | None = None,
    *,
    options=None,
    colmap=None,
    fx=None,
):
    """The source the options describe: a ``SourceSpec`` when a source file or an option is
    given, else ``source`` as it is (a path, a URL, frames, a loaded ``Source``).

    Options given here override the source file's. Relative paths in a source file are relative
    to it; relative paths given here, to the working directory.

    Example
    -------
    >>> source_spec("data/demo.duckdb")
    'data/demo.duckdb'
    >>> source_spec("crm/", preset="hubspot").preset                  # doctest: +SKIP
    'hubspot'
    """
    given = {"preset": preset, "options": options, "colmap": colmap, "fx": fx}
    if isinstance(source, SourceSpec):
        return dataclasses.replace(source, **_absolute_options(given))
    if _is_source_file(source):
        spec = read_source_file(Path(source))
        return dataclasses.replace(spec, **_absolute_options(given))
    if not any(v is not None for v in given.values()):
        return source
    if not isinstance(source, str | Path):
        raise SourceError("presets, column maps and FX tables read files; give a folder or a file")
    location = str(source) if _is_remote(str(source)) else str(Path(source).resolve())
    return SourceSpec(location, **_absolute_options(given))


def _absolute_options(given: dict) -> dict:
    out = {}
    for key, value in given.items():
        if value is None:
            continue
        if key != "preset" and isinstance(value, str | Path):
            value = str(Path(value).resolve())
        out[key] = value
    return out


def read_source_file(path: Path) -> SourceSpec:
    """The ``SourceSpec`` of a YAML source file; a column map YAML reads the files beside it.

    Raises ``SourceError`` naming the file for a missing file, bad YAML or unknown keys.
    """
    path = Path(path)
    data = _read_yaml(path, "source file")
    origin = str(path)
    if "tables" in data:  # a column map whose files are relative to it
        return SourceSpec(str(path.parent.resolve()), colmap=str(path.resolve()), origin=origin)
    unknown = set(data) - _SOURCE_FILE_KEYS
    if unknown or ("path" in data) == ("url" in data):
        raise SourceError(
            f"{path}: a source file needs exactly one of 'path' or 'url', and may add "
            f"{', '.join(repr(k) for k in (*_READ_KEYS, *CONFIG_KEYS))} "
            f"(unknown keys: {sorted(unknown) or 'none'})"
        )

    def near(value):
        if value is None or isinstance(value, dict):
            return value
        p = Path(str(value)).expanduser()
        return str((p if p.is_absolute() else path.parent / p).resolve())

    location = str(data["url"]) if "url" in data else near(data["path"])
    preset = data.get("preset")
    if preset is not None:
        preset = str(preset)
    return SourceSpec(
        location,
        preset,
        **{k: near(data.get(k)) for k in (*_READ_KEYS[1:], *CONFIG_KEYS)},
        origin=origin,
    )


def load_source(
    source: str | Path | dict[str, pd.DataFrame] | Source,
    preset: str | None = None,
    *,
    options: str | Path | dict | None = None,
    colmap: str | Path | dict | None = None,
    fx: str | Path | dict | None = None,
    as_of=None,
) -> Source:
    """Load and validate a source into the canonical tables.

    Parameters
    ----------
    source
        A folder of ``<table>.csv`` / ``<table>.parquet`` files, a DuckDB file
        (``data/demo.duckdb``), a SQL URL (``postgresql://kpi@db.internal/crm``; any URL
        ``ibis.connect`` takes) or a connected Ibis backend, a dict ``{table name: DataFrame}``,
        a source file (YAML with ``path`` or ``url`` and optionally ``preset``, ``options``,
        ``colmap``, ``fx``), or an already loaded ``Source`` (returned as is).
    preset
        ``"salesforce"`` or ``"hubspot"``: ``source`` is a folder of that CRM's exports
        (``kpi_lib.data.presets``).
    options
        Preset options (stage map, qualified-lead rule, team mapping, probability scale), a
        YAML file or a dict; see ``docs/data-sources.md``.
    colmap
        A column map (YAML file or dict) from the files or tables of ``source`` onto the
        canonical tables (``kpi_lib.data.colmap``).
    fx
        Exchange rates to one reporting currency, ``{"currency": "USD", "rates": {"EUR": 1.08}}``
        or a YAML/CSV file (``currency,rate``). Without it, opportunities in more than one
        currency are refused.
    as_of
        Rows dated after this day are reported as future-dated (default: today).

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
    if isinstance(source, SourceSpec) or _is_source_file(source):
        spec = source_spec(source, preset, options=options, colmap=colmap, fx=fx)
        src = load_source(
            spec.location,
            spec.preset,
            options=spec.options,
            colmap=spec.colmap,
            fx=spec.fx,
            as_of=as_of,
        )
        return dataclasses.replace(src, config_files=spec.config_files)
    rates = load_fx(fx)
    if _is_remote(source):
        from kpi_lib.data.warehouse import load_remote

        return load_remote(source, rates, as_of=as_of)
    accounting: list[dict] = []
    findings: list[Finding] = []
    settings: dict = {}
    if preset is not None and colmap is not None:
        raise SourceError("give a preset or a column map, not both")
    if isinstance(source, dict):
        if preset or colmap:
            raise SourceError("presets and column maps read files; give a folder")
        raw = {name: (df, None) for name, df in source.items()}
        location = "<frames>"
        unknown = sorted(set(raw) - set(TABLES))
        if unknown:
            raise SourceError(f"unknown table(s) {unknown}; canonical tables are {list(TABLES)}")
    else:
        path = Path(source)
        location = str(path)
        if not path.exists():
            raise SourceError(f"source '{path}' does not exist")
        if preset is not None:
            from kpi_lib.data.presets import read_preset

            result = read_preset(preset, path, options)
            raw, settings = result.tables, result.settings
            findings += result.findings
            accounting += result.accounting
            location = f"{path} ({preset} preset)"
        elif colmap is not None:
            from kpi_lib.data.colmap import read_colmap

            raw, skipped = read_colmap(colmap, path)
            accounting += skipped
            location = f"{path} (column map)"
        elif path.is_dir():
            raw = _read_folder(path)
        elif path.suffix.lower() in {".duckdb", ".db", ".ddb"}:
            from kpi_lib.data.warehouse import load_duckdb_file

            return load_duckdb_file(path, rates, as_of=as_of)
        else:
            raise SourceError(
                f"source '{path}': expected a folder of <table>.csv/.parquet files, "
                "a DuckDB file (.duckdb), a source file (.yaml) or a SQL URL"
            )
    return build_source(
        raw,
        location,
        findings=findings,
        accounting=accounting,
        settings=settings,
        fx=rates,
        as_of=as_of,
    )


def build_source(
    raw: dict[str, tuple[pd.DataFrame, str | None]],
    location: str,
    *,
    findings: list[Finding] | None = None,
    accounting: list[dict] | None = None,
    settings: dict | None = None,
    fx: dict | None = None,
    as_of=None,
) -> Source:
    """Type, check and quarantine raw canonical tables ``{name: (frame, file)}`` into a Source."""
    findings = list(findings or [])
    accounting = list(accounting or [])
    frames: dict[str, pd.DataFrame] = {}
    files = {name: file for name, (_, file) in raw.items()}
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
    if "opportunities" in frames:
        frames["opportunities"] = _apply_fx(frames["opportunities"], fx, files.get("opportunities"))
    _check_references(frames, files, findings)
    frames, quarantine = _quarantine(frames, findings)
    _observe(frames, findings, _today(as_of))
    for name, df in frames.items():
        accounting.append({"table": name, "status": "used", "reason": "", "rows": len(df)})
        if name in quarantine:
            for reason, rows in quarantine[name]["reason"].value_counts(sort=False).items():
                accounting.append(
                    {"table": name, "status": "quarantined", "reason": reason, "rows": int(rows)}
                )
    return Source(
        frames=frames,
        location=location,
        findings=findings,
        quarantine=quarantine,
        accounting=accounting,
        settings=dict(settings or {}),
    )


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


def _is_remote(source) -> bool:
    if isinstance(source, ibis.BaseBackend):
        return True
    return isinstance(source, str) and "://" in source and not Path(source).exists()


def _is_source_file(source) -> bool:
    return isinstance(source, str | Path) and Path(source).suffix.lower() in {".yaml", ".yml"}


def _read_yaml(path: Path, what: str) -> dict:
    if not path.exists():
        raise SourceError(f"{what} '{path}' does not exist")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise SourceError(f"{path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise SourceError(f"{path}: expected a mapping at the top of the {what}")
    return data


def read_table_file(file: Path, table: str) -> pd.DataFrame:
    """One CSV (all text, nothing guessed) or Parquet file; unreadable files are a SourceError."""
    try:
        if file.suffix.lower() == ".parquet":
            return pd.read_parquet(file)
        with warnings.catch_warnings():
            warnings.simplefilter("error", pd.errors.ParserWarning)  # ragged rows lose data
            df = pd.read_csv(
                file,
                dtype=str,
                keep_default_na=False,
                skipinitialspace=True,
                encoding="utf-8-sig",
                index_col=False,
            )
    except (
        ValueError,
        OSError,
        pd.errors.ParserError,
        pd.errors.ParserWarning,
        UnicodeDecodeError,
    ) as exc:
        raise SourceError(f"{file}: cannot read table '{table}': {exc}") from exc
    dup = [
        c
        for c in df.columns
        if "." in str(c)
        and str(c).rsplit(".", 1)[0] in df.columns
        and str(c).rsplit(".", 1)[1].isdigit()
    ]
    if dup:
        raise SourceError(
            f"{file}: table '{table}': column '{dup[0].rsplit('.', 1)[0]}' appears twice"
        )
    return df


def _read_folder(path: Path) -> dict[str, tuple[pd.DataFrame, str]]:
    raw: dict[str, tuple[pd.DataFrame, str]] = {}
    for name in TABLES:
        csv, parquet = path / f"{name}.csv", path / f"{name}.parquet"
        if csv.exists() and parquet.exists():
            raise SourceError(f"{path}: both {csv.name} and {parquet.name} exist; keep one")
        for file in (csv, parquet):
            if file.exists():
                raw[name] = (read_table_file(file, name), str(file))
    return raw


def load_fx(fx: str | Path | dict | None) -> dict | None:
    """Exchange rates ``{"currency": "USD", "rates": {"EUR": 1.08, ...}}`` or None.

    A rate converts one unit of the deal's currency into the reporting currency. A CSV file has
    the columns ``currency,rate``; a YAML file the shape above (``rates`` alone is enough).
    """
    if fx is None:
        return None
    if isinstance(fx, str | Path):
        path = Path(fx)
        if path.suffix.lower() == ".csv":
            if not path.exists():
                raise SourceError(f"FX table '{path}' does not exist")
            df = read_table_file(path, "fx")
            if not {"currency", "rate"} <= set(df.columns):
                raise SourceError(f"{path}: an FX table needs the columns currency,rate")
            fx = {"rates": dict(zip(df["currency"], df["rate"], strict=True))}
        else:
            fx = _read_yaml(path, "FX table")
    if "rates" not in fx:
        fx = {"rates": fx}
    rates = {}
    for code, rate in (fx.get("rates") or {}).items():
        try:
            rates[str(code).strip().upper()] = float(rate)
        except (TypeError, ValueError):
            raise SourceError(f"FX table: rate of {code} is not a number ({rate!r})") from None
        if not rates[str(code).strip().upper()] > 0:
            raise SourceError(f"FX table: rate of {code} must be positive ({rate!r})")
    currency = str(fx.get("currency", "")).strip().upper() or None
    if currency:
        rates.setdefault(currency, 1.0)
    return {"currency": currency, "rates": rates}


def _apply_fx(opps: pd.DataFrame, fx: dict | None, file: str | None) -> pd.DataFrame:
    """One currency, or amounts converted to the reporting currency; mixed without FX is refused."""
    currency = opps["currency"].str.strip().str.upper()
    codes = currency.dropna().unique()
    if fx is None:
        if len(codes) > 1:
            counts = currency.value_counts()
            main = counts.index[0]
            odd = currency.notna() & (currency != main)
            raise DataError(
                "opportunities",
                f"holds amounts in {len(codes)} currencies ({', '.join(counts.index)}); sums "
                f"would mix them. Give an FX table (fx=... / --fx, see docs/data-sources.md) "
                f"or export one currency",
                column="currency",
                rows=opps.loc[odd, ["opportunity_id", "currency", "amount"]],
                count=int(odd.sum()),
                file=file,
            )
        return opps
    missing = currency.notna() & ~currency.isin(list(fx["rates"]))
    if missing.any():
        raise DataError(
            "opportunities",
            f"has currencies without a rate in the FX table "
            f"({', '.join(sorted(set(currency[missing])))})",
            column="currency",
            rows=opps.loc[missing, ["opportunity_id", "currency", "amount"]],
            count=int(missing.sum()),
            file=file,
        )
    out = opps.copy()
    rate = currency.map(fx["rates"]).astype("float64").fillna(1.0)
    out["amount"] = out["amount"] * rate
    if fx["currency"]:
        out["currency"] = out["currency"].where(out["currency"].isna(), fx["currency"])
    out.attrs = dict(opps.attrs)
    return out


# ---------------------------------------------------------------------------------------------
# Typing and validation
# ---------------------------------------------------------------------------------------------


def _coerce(
    spec: TableSpec, df: pd.DataFrame, file: str | None, findings: list[Finding]
) -> pd.DataFrame:
    """One canonical table: required columns present, every column typed, keys unique."""
    df = df.rename(columns=lambda c: str(c).strip())
    if not df.index.is_unique or not pd.api.types.is_integer_dtype(df.index):
        df = df.reset_index(drop=True)  # else keep it: row numbers of the file for messages
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
                    spec.name,
                    bad.problem,
                    column=column,
                    file=file,
                    rows=df.loc[bad.mask, _show_columns(spec, df, column)],
                    count=int(bad.mask.sum()),
                ) from None
        else:
            out[column] = pd.Series(pd.NA, index=df.index, dtype=_NULL_DTYPE[kind])
            out.attrs.setdefault("absent", []).append(column)
    for column in spec.required:
        nulls = out[column].isna()
        if nulls.any():
            raise DataError(
                spec.name,
                "must not be empty",
                column=column,
                rows=df.loc[nulls, _show_columns(spec, df, column)],
                count=int(nulls.sum()),
                file=file,
            )
    if spec.key:
        dup = out[spec.key].duplicated(keep=False)
        if dup.any():
            raise DataError(
                spec.name,
                f"duplicate {spec.key} (the key must be unique)",
                column=spec.key,
                rows=df.loc[dup, _show_columns(spec, df, spec.key)],
                count=int(dup.sum()),
                file=file,
            )
    _check_table(spec.name, out, df, file, findings)
    return _keep(out, pd.Series(True, index=out.index))


def _show_columns(spec: TableSpec, df: pd.DataFrame, column: str) -> list[str]:
    cols = [c for c in (spec.key, column) if c and c in df.columns]
    return list(dict.fromkeys(cols))


class _BadValues(Exception):
    """Raised by a column coercer: which rows hold values of the wrong kind, and what is expected."""

    def __init__(self, mask: pd.Series, problem: str):
        super().__init__(problem)
        self.mask, self.problem = mask, problem


def _isin(values: pd.Series, allowed: pd.Series) -> pd.Series:
    """``values.isin(allowed)`` through Arrow (pandas 3's string isin loops in Python)."""
    found = pc.is_in(
        pa.array(values.astype("string"), type=pa.string()),
        value_set=pa.array(allowed.dropna().astype("string").unique(), type=pa.string()),
    )
    return (
        pd.Series(found.to_numpy(zero_copy_only=False), index=values.index)
        .fillna(False)
        .astype(bool)
    )


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
            parsed = _parse_dates(text)
        except ValueError:  # mixed UTC offsets (or offsets and naive stamps): all to UTC
            parsed = _parse_dates(text, utc=True)
        bad = parsed.isna() & text.notna()
        if bad.any():
            raise _BadValues(
                bad, "is not a date or timestamp (expected e.g. 2026-10-31 or 2026-10-31 14:05)"
            )
    if getattr(parsed.dt, "tz", None) is not None:
        parsed = parsed.dt.tz_convert("UTC").dt.tz_localize(None)
    return parsed.astype("datetime64[us]")


def _parse_dates(text: pd.Series, **kwargs) -> pd.Series:
    try:
        return pd.to_datetime(text, format="ISO8601", **kwargs)
    except (ValueError, TypeError, OverflowError):
        return pd.to_datetime(text, format="mixed", errors="coerce", **kwargs)


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
        parsed = series.astype("float64")
    else:
        text = _as_text(series)
        parsed = pd.to_numeric(text, errors="coerce")
        bad = parsed.isna() & text.notna()
        if bad.any():
            raise _BadValues(bad, "is not a number (no currency symbols or thousands separators)")
        parsed = parsed.astype("float64")
    infinite = parsed.abs() == float("inf")
    if infinite.any():
        raise _BadValues(infinite, "is not a finite number")
    return parsed


_NULL_DTYPE = {
    "id": "string",
    "str": "string",
    "ts": "datetime64[us]",
    "bool": "boolean",
    "num": "float64",
}
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
                name,
                "is required when is_closed is true",
                column="closed_at",
                rows=raw.loc[
                    bad, [c for c in ("opportunity_id", "is_closed", "closed_at") if c in raw]
                ],
                count=int(bad.sum()),
                file=file,
            )
        bad = out["is_won"] & ~out["is_closed"]
        if bad.any():
            raise DataError(
                name,
                "is true on an opportunity that is not closed (is_closed false)",
                column="is_won",
                rows=raw.loc[bad, ["opportunity_id", "is_closed", "is_won"]],
                count=int(bad.sum()),
                file=file,
            )
    if name == "activities":
        kind = out["activity_type"].str.lower()
        unknown = ~kind.isin(ACTIVITY_TYPES)
        if unknown.any():
            values = ", ".join(sorted(set(out.loc[unknown, "activity_type"].astype(str)))[:5])
            findings.append(
                Finding(
                    name,
                    "activity_type",
                    int(unknown.sum()),
                    f"have a type outside {'/'.join(ACTIVITY_TYPES)} ({values}); counted as 'other'",
                )
            )
        out["activity_type"] = kind.where(~unknown, "other")
    if name == "spend":
        category = out["category"].str.lower()
        bad = ~category.isin(SPEND_CATEGORIES)
        if bad.any():
            raise DataError(
                name,
                f"must be one of {', '.join(SPEND_CATEGORIES)}",
                column="category",
                rows=raw.loc[bad, ["category"]],
                count=int(bad.sum()),
                file=file,
            )
        out["category"] = category


# (table, column) -> (referenced table, referenced key): an unknown owner or team would silently
# drop out of team and rep KPIs, so these are hard errors.
REFERENCES = [
    ("reps", "team_id", "teams", "team_id"),
    ("opportunities", "owner_rep_id", "reps", "rep_id"),
    ("leads", "owner_rep_id", "reps", "rep_id"),
    ("activities", "rep_id", "reps", "rep_id"),
    ("accounts", "owner_rep_id", "reps", "rep_id"),
    ("spend", "team_id", "teams", "team_id"),
]


def _check_references(
    frames: dict[str, pd.DataFrame], files: dict[str, str | None], findings: list[Finding]
) -> None:
    """Owners and teams must exist; softer references are findings."""
    for table, column, target, key in REFERENCES:
        if table not in frames or column not in frames[table]:
            continue
        values = frames[table][column]
        bad = values.notna() & ~_isin(values, frames[target][key])
        if bad.any():
            df = frames[table]
            spec = TABLES[table]
            cols = [c for c in (spec.key, column) if c]
            raise DataError(
                table,
                f"refers to a {key} that is not in '{target}'",
                column=column,
                rows=df.loc[bad, cols],
                count=int(bad.sum()),
                file=files.get(table),
            )
    for table, column, target, key, message in SOFT_REFERENCES:
        if table not in frames or target not in frames:
            continue
        values = frames[table][column]
        orphan = values.notna() & ~_isin(values, frames[target][key])
        if orphan.any():
            findings.append(Finding(table, column, int(orphan.sum()), message))


SOFT_REFERENCES = [
    (
        "leads",
        "opportunity_id",
        "opportunities",
        "opportunity_id",
        "point to an opportunity that is not in 'opportunities' (counted as not won)",
    ),
    (
        "revenue",
        "account_id",
        "accounts",
        "account_id",
        "belong to an account that is not in 'accounts' (company figures only)",
    ),
    (
        "activities",
        "opportunity_id",
        "opportunities",
        "opportunity_id",
        "point to an opportunity that is not in 'opportunities' (still counted as activities)",
    ),
    (
        "activities",
        "lead_id",
        "leads",
        "lead_id",
        "point to a lead that is not in 'leads' (still counted as activities)",
    ),
    (
        "opportunities",
        "account_id",
        "accounts",
        "account_id",
        "belong to an account that is not in 'accounts'",
    ),
]


# ---------------------------------------------------------------------------------------------
# Quarantine and findings: the same rules for frames (pandas) and warehouse tables (Ibis)
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """A row-level data-quality rule. ``test(t)`` works on a pandas frame and an Ibis table."""

    table: str
    column: str
    message: str
    test: Callable
    quarantine: bool


def holds(value):
    """A rule's result with nulls as False, for pandas Series and Ibis columns alike."""
    if isinstance(value, ibis.Value):
        return value.fill_null(False)
    return value.fillna(False).astype(bool)


QUARANTINE_RULES = [
    Rule(
        "opportunities",
        "closed_at",
        "closed before they were created",
        lambda t: t.is_closed & (t.closed_at < t.created_at),
        quarantine=True,
    ),
    Rule(
        "opportunities", "amount", "have a negative amount", lambda t: t.amount < 0, quarantine=True
    ),
]

FINDING_RULES = [
    Rule(
        "opportunities",
        "amount",
        "are won without an amount (in win rate, not in revenue or deal size)",
        lambda t: t.is_won & t.amount.isnull(),
        quarantine=False,
    ),
    Rule(
        "leads",
        "qualified_at",
        "were qualified before they were created",
        lambda t: t.qualified_at < t.created_at,
        quarantine=False,
    ),
    Rule(
        "leads",
        "converted_at",
        "were converted before they were created",
        lambda t: t.converted_at < t.created_at,
        quarantine=False,
    ),
    Rule(
        "reps",
        "end_at",
        "left before they started (never counted as active)",
        lambda t: t.end_at < t.start_at,
        quarantine=False,
    ),
    Rule(
        "revenue",
        "amount",
        "have a negative amount (credits; they reduce revenue)",
        lambda t: t.amount < 0,
        quarantine=False,
    ),
    Rule(
        "spend",
        "amount",
        "have a negative amount (they reduce spend)",
        lambda t: t.amount < 0,
        quarantine=False,
    ),
]

# Dates after the report date are not counted until then (DESIGN 4); after the load date they
# are most likely typos, so they are named.
FUTURE_COLUMNS = [
    ("opportunities", "created_at"),
    ("opportunities", "closed_at"),
    ("leads", "created_at"),
    ("leads", "qualified_at"),
    ("activities", "occurred_at"),
    ("revenue", "recognized_at"),
    ("spend", "spent_at"),
    ("stage_history", "entered_at"),
]


def _quarantine(frames: dict[str, pd.DataFrame], findings: list[Finding]):
    """Set aside the rows that would corrupt a KPI; one finding per rule, rows kept with reason."""
    quarantine: dict[str, list[pd.DataFrame]] = {}
    for rule in QUARANTINE_RULES:
        if rule.table not in frames:
            continue
        df = frames[rule.table]
        bad = holds(rule.test(df))
        if bad.any():
            findings.append(
                Finding(rule.table, rule.column, int(bad.sum()), rule.message, "quarantine")
            )
            quarantine.setdefault(rule.table, []).append(df[bad].assign(reason=rule.message))
            frames[rule.table] = _keep(df, ~bad)
    if "stage_history" in frames:
        sh = frames["stage_history"]
        orphan = ~_isin(sh["opportunity_id"], frames["opportunities"]["opportunity_id"])
        if orphan.any():
            message = "belong to an opportunity that is not in 'opportunities' (or was quarantined)"
            findings.append(
                Finding("stage_history", "opportunity_id", int(orphan.sum()), message, "quarantine")
            )
            quarantine.setdefault("stage_history", []).append(sh[orphan].assign(reason=message))
            frames["stage_history"] = _keep(sh, ~orphan)
    return frames, {name: pd.concat(parts) for name, parts in quarantine.items()}


def _keep(df: pd.DataFrame, mask: pd.Series) -> pd.DataFrame:
    kept = df[mask].reset_index(drop=True)
    kept.attrs = dict(df.attrs)
    return kept


def _observe(frames: dict[str, pd.DataFrame], findings: list[Finding], today: pd.Timestamp) -> None:
    """Findings on rows that stay in: odd but not corrupting."""
    for rule in FINDING_RULES:
        if rule.table in frames:
            n = int(holds(rule.test(frames[rule.table])).sum())
            if n:
                findings.append(Finding(rule.table, rule.column, n, rule.message))
    for table, column in FUTURE_COLUMNS:
        if table in frames:
            n = int((frames[table][column] >= today).sum())
            if n:
                findings.append(
                    Finding(
                        table,
                        column,
                        n,
                        f"are dated after {(today - pd.Timedelta(days=1)).date()} (the load date); "
                        "not counted in any report before that date",
                    )
                )


def _today(as_of) -> pd.Timestamp:
    """The first instant after the load date."""
    from kpi_lib.periods import parse_as_of

    return pd.Timestamp(parse_as_of(as_of))

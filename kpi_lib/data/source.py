"""What a source is: ``Source`` (the canonical tables of one source, checked) and
``SourceSpec`` (where a source is, how to read it, and which configuration belongs to it).

``kpi_lib.data.load.load_source`` makes a ``Source`` from anything; a ``SourceSpec`` is what the
source options of every command and a source file say, in one value.

Example
-------
>>> source_spec("data/demo.duckdb")
'data/demo.duckdb'
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import ibis
import pandas as pd
import pyarrow as pa
import yaml

from kpi_lib.data.checks import COERCE
from kpi_lib.data.rules import Finding
from kpi_lib.data.schema import TABLES
from kpi_lib.errors import SourceError
from kpi_lib.paths import read_yaml

READ_KEYS = ("preset", "options", "colmap", "fx")


CONFIG_KEYS = ("targets", "kpis", "recipients")
"""The org's configuration a source file may name: its targets, KPI settings and recipients."""


_SOURCE_FILE_KEYS = {"path", "url", *READ_KEYS, *CONFIG_KEYS}


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
    inputs: list[dict] = field(default_factory=list)
    """A folder of exports: every file, what it was read as (None: not recognised) and how
    (``{"file": "report1765500000000.csv", "read_as": "opportunities", "how": "by its
    columns"}``)."""
    config_files: dict[str, str] = field(default_factory=dict)
    """The org's configuration files its source file names (``CONFIG_KEYS``), absolute paths."""
    fingerprint_tables: Callable[[Source], str] | None = field(default=None, repr=False)
    """For tables in a database: how to fingerprint them there (set by their loader)."""
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
                df[column] = COERCE[kind](df[column])
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

        For tables in a database: computed there, by the ``fingerprint_tables`` its loader gives
        (``kpi_lib.data.warehouse.fingerprint_tables``).
        """
        if self._fingerprint is None:
            digest = hashlib.sha256()
            if self._tables is not None:
                digest.update(self.fingerprint_tables(self).encode())
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
        data |= {k: getattr(self, k) for k in (*READ_KEYS, *CONFIG_KEYS) if getattr(self, k)}
        return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)

    def __str__(self) -> str:
        read = ", ".join(
            f"{k} {Path(str(getattr(self, k))).name}" for k in READ_KEYS[1:] if getattr(self, k)
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
    if is_source_file(source):
        spec = read_source_file(Path(source))
        return dataclasses.replace(spec, **_absolute_options(given))
    if not any(v is not None for v in given.values()):
        return source
    if not isinstance(source, str | Path):
        raise SourceError("presets, column maps and FX tables read files; give a folder or a file")
    location = str(source) if is_remote(str(source)) else str(Path(source).resolve())
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
    data = read_yaml(path, "source file", SourceError, empty_ok=False)
    origin = str(path)
    if "tables" in data:  # a column map whose files are relative to it
        return SourceSpec(str(path.parent.resolve()), colmap=str(path.resolve()), origin=origin)
    unknown = set(data) - _SOURCE_FILE_KEYS
    if unknown or ("path" in data) == ("url" in data):
        raise SourceError(
            f"{path}: a source file needs exactly one of 'path' or 'url', and may add "
            f"{', '.join(repr(k) for k in (*READ_KEYS, *CONFIG_KEYS))} "
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
        **{k: near(data.get(k)) for k in (*READ_KEYS[1:], *CONFIG_KEYS)},
        origin=origin,
    )


def is_remote(source) -> bool:
    if isinstance(source, ibis.BaseBackend):
        return True
    return isinstance(source, str) and "://" in source and not Path(source).exists()


def is_source_file(source) -> bool:
    return isinstance(source, str | Path) and Path(source).suffix.lower() in {".yaml", ".yml"}

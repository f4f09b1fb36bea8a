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
from pathlib import Path

import pandas as pd

from kpi_lib.data.checks import check_references, coerce_table, observe, quarantine_rows
from kpi_lib.data.files import read_folder
from kpi_lib.data.fx import apply_fx, load_fx
from kpi_lib.data.rules import Finding, load_day
from kpi_lib.data.schema import TABLES
from kpi_lib.data.source import Source, SourceSpec, is_remote, is_source_file, source_spec
from kpi_lib.errors import SourceError


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
    if isinstance(source, SourceSpec) or is_source_file(source):
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
    if is_remote(source):
        from kpi_lib.data.warehouse import load_remote

        return load_remote(source, rates, as_of=as_of)
    accounting: list[dict] = []
    findings: list[Finding] = []
    settings: dict = {}
    inputs: list[dict] = []
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
            raw, settings, inputs = result.tables, result.settings, result.inputs
            findings += result.findings
            accounting += result.accounting
            location = f"{path} ({preset} preset)"
        elif colmap is not None:
            from kpi_lib.data.colmap import read_colmap

            raw, skipped = read_colmap(colmap, path)
            accounting += skipped
            location = f"{path} (column map)"
        elif path.is_dir():
            raw = read_folder(path)
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
        inputs=inputs,
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
    inputs: list[dict] | None = None,
) -> Source:
    """Type, check and quarantine raw canonical tables ``{name: (frame, file)}`` into a Source.

    ``inputs`` says what each file of a folder of exports was read as (``Source.inputs``)."""
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
        frames[spec.name] = coerce_table(spec, df, file, findings)
    if "opportunities" in frames:
        frames["opportunities"] = apply_fx(frames["opportunities"], fx, files.get("opportunities"))
    check_references(frames, files, findings)
    frames, quarantine = quarantine_rows(frames, findings)
    observe(frames, findings, load_day(as_of))
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
        inputs=list(inputs or []),
    )


# ---------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Typing and validation
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Quarantine and findings: the same rules for frames (pandas) and warehouse tables (Ibis)
# ---------------------------------------------------------------------------------------------

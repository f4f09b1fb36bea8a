"""Column maps: any folder of files (or DuckDB file) mapped onto the canonical tables with YAML.

One entry per canonical table says which file holds it, which source column gives each canonical
column, and how values translate (a stage name to won / lost / open). The mapped tables then go
through the same typing, checks and quarantine as canonical files.

Example (``docs/data-sources.md`` has the full reference)::

    tables:
      teams:
        file: sales_team.csv
        columns: {team_id: regional_office, team_name: regional_office}
        distinct: true                  # one row per distinct value
      reps:
        file: sales_team.csv
        columns: {rep_id: sales_agent, rep_name: sales_agent, team_id: regional_office}
      opportunities:
        file: sales_pipeline.csv
        columns: {opportunity_id: opportunity_id, owner_rep_id: sales_agent,
                  created_at: engage_date, closed_at: close_date, stage: deal_stage,
                  amount: close_value, account_id: account}
        outcome: {from: deal_stage, won: [Won], lost: [Lost]}   # gives is_closed, is_won
        constants: {currency: USD}
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kpi_lib.data.files import read_table_file
from kpi_lib.data.schema import TABLES
from kpi_lib.errors import ParamsError, SourceError
from kpi_lib.paths import read_yaml

_ENTRY_KEYS = {
    "file",
    "table",
    "columns",
    "values",
    "outcome",
    "constants",
    "distinct",
    "skip_empty",
}


def load_colmap(colmap: str | Path | dict) -> tuple[dict, str]:
    """The column map as a dict, checked against the canonical tables, and where it came from."""
    origin = "column map"
    if not isinstance(colmap, dict):
        path = Path(colmap)
        origin = str(path)
        colmap = read_yaml(path, "column map")
    tables = colmap.get("tables") if isinstance(colmap, dict) else None
    if not isinstance(tables, dict) or not tables:
        raise ParamsError(f"{origin}: expected 'tables:' mapping canonical table names to entries")
    for name, entry in tables.items():
        if name not in TABLES:
            raise ParamsError(
                f"{origin}: unknown table '{name}'; canonical tables: {', '.join(TABLES)}"
            )
        if not isinstance(entry, dict) or ("file" in entry) == ("table" in entry):
            raise ParamsError(f"{origin}: tables.{name} needs exactly one of 'file' or 'table'")
        unknown = set(entry) - _ENTRY_KEYS
        if unknown:
            raise ParamsError(
                f"{origin}: tables.{name}: unknown key(s) {sorted(unknown)}; "
                f"known: {sorted(_ENTRY_KEYS)}"
            )
        targets = (
            set(entry.get("columns") or {})
            | set(entry.get("values") or {})
            | set(entry.get("constants") or {})
        )
        if "outcome" in entry:
            targets |= {"is_closed", "is_won"}
        bad = sorted(targets - set(TABLES[name].columns))
        if bad:
            raise ParamsError(
                f"{origin}: tables.{name}: {bad} are not columns of '{name}' "
                f"(columns: {', '.join(TABLES[name].columns)})"
            )
    return colmap, origin


def read_colmap(
    colmap: str | Path | dict, source: Path
) -> tuple[dict[str, tuple[pd.DataFrame, str]], list[dict]]:
    """Read the mapped tables of ``source`` (a folder, or a DuckDB file for ``table:`` entries).

    Returns
    -------
    tuple
        ``{canonical table: (frame with canonical column names, file)}``, untyped (the loader
        types and checks it), and the row accounting of rows skipped by ``skip_empty``.
    """
    spec, origin = load_colmap(colmap)
    raw, accounting = {}, []
    for name, entry in spec["tables"].items():
        df, file = _read(entry, source, origin, name)
        out = map_table(df, entry, f"{origin}: tables.{name}", file)
        for column in entry.get("skip_empty") or []:
            if column not in out:
                raise ParamsError(
                    f"{origin}: tables.{name}: skip_empty names '{column}', not mapped"
                )
            empty = out[column].isna() | out[column].astype("string").str.strip().eq("").fillna(
                False
            )
            if empty.any():
                accounting.append(
                    {
                        "table": Path(file).name,
                        "status": "not a row",
                        "reason": f"empty {column} (skip_empty in the column map)",
                        "rows": int(empty.sum()),
                    }
                )
                out = out[~empty.astype(bool)]
        raw[name] = (out, file)
    return raw, accounting


def _read(entry: dict, source: Path, origin: str, name: str) -> tuple[pd.DataFrame, str]:
    if "file" in entry:
        folder = source if source.is_dir() else source.parent
        path = folder / entry["file"]
        if not path.exists():
            raise SourceError(f"{origin}: tables.{name}: file '{path}' does not exist")
        return read_table_file(path, name), str(path)
    import duckdb

    try:
        con = duckdb.connect(str(source), read_only=True)
        try:
            return con.execute(
                f'SELECT * FROM "{entry["table"]}"'
            ).df(), f"{source}:{entry['table']}"
        finally:
            con.close()
    except duckdb.Error as exc:
        raise SourceError(
            f"{origin}: tables.{name}: cannot read table '{entry['table']}' from {source}: {exc}"
        ) from exc


def map_table(df: pd.DataFrame, entry: dict, where: str, file: str) -> pd.DataFrame:
    """One source table renamed and translated to canonical columns (still untyped)."""
    out = pd.DataFrame(index=df.index)

    def source_column(column: str, role: str) -> pd.Series:
        if column not in df.columns:
            raise SourceError(
                f"{file}: {where}: {role} names column '{column}', which the file "
                f"lacks (found: {', '.join(map(str, df.columns))})"
            )
        return df[column]

    for canonical, column in (entry.get("columns") or {}).items():
        out[canonical] = source_column(str(column), f"columns.{canonical}")
    for canonical, rule in (entry.get("values") or {}).items():
        if not isinstance(rule, dict) or "from" not in rule or "map" not in rule:
            raise ParamsError(f"{where}: values.{canonical} needs 'from' and 'map'")
        raw = (
            source_column(str(rule["from"]), f"values.{canonical}.from")
            .astype("string")
            .str.strip()
        )
        mapping = {str(k): v for k, v in rule["map"].items()}
        mapped = raw.map(mapping)
        unmapped = raw.notna() & ~raw.isin(list(mapping))
        if "default" in rule:
            mapped = mapped.where(~unmapped, rule["default"])
        elif unmapped.any():
            raise SourceError(
                f"{file}: {where}: values.{canonical}: no mapping for "
                f"{sorted(set(raw[unmapped]))[:5]} (add them or a 'default')"
            )
        out[canonical] = mapped
    if "outcome" in entry:
        rule = entry["outcome"]
        raw = source_column(str(rule["from"]), "outcome.from").astype("string").str.strip()
        won, lost = {str(s) for s in rule.get("won", [])}, {str(s) for s in rule.get("lost", [])}
        if not won:
            raise ParamsError(f"{where}: outcome needs a 'won' list of values")
        out["is_won"] = raw.isin(won).fillna(False).astype(bool)
        out["is_closed"] = raw.isin(won | lost).fillna(False).astype(bool)
        if "closed_at" in out:  # an open deal's close date is an expected date, not a close
            out["closed_at"] = out["closed_at"].where(out["is_closed"], None)
    for canonical, value in (entry.get("constants") or {}).items():
        out[canonical] = value
    if entry.get("distinct"):
        out = out.drop_duplicates().dropna(how="all").reset_index(drop=True)
    return out

"""Typing and checking canonical tables held as pandas frames (files, presets, column maps).

Every column is cast to its kind (``id``, ``str``, ``ts``, ``bool``, ``num``) or the table is
refused naming the rows at fault; then the contract's rules (``kpi_lib.data.rules``) quarantine
rows and record findings. DuckDB files and warehouses are checked in SQL instead
(``kpi_lib.data.warehouse``), by the same rules.
"""

from __future__ import annotations

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from kpi_lib.data.files import FALSE, TRUE, as_text
from kpi_lib.data.rules import (
    FINDING_RULES,
    FUTURE_COLUMNS,
    QUARANTINE_RULES,
    REFERENCES,
    SOFT_REFERENCES,
    Finding,
    holds,
)
from kpi_lib.data.schema import ACTIVITY_TYPES, SPEND_CATEGORIES, TABLES, TableSpec
from kpi_lib.errors import DataError


def coerce_table(
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
                out[column] = COERCE[kind](df[column])
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
            out[column] = pd.Series(None, index=df.index, dtype=NULL_DTYPE[kind])
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
    return keep_rows(out, pd.Series(True, index=out.index))


def _show_columns(spec: TableSpec, df: pd.DataFrame, column: str) -> list[str]:
    cols = [c for c in (spec.key, column) if c and c in df.columns]
    return list(dict.fromkeys(cols))


class _BadValues(Exception):
    """Raised by a column coercer: which rows hold values of the wrong kind, and what is expected."""

    def __init__(self, mask: pd.Series, problem: str):
        super().__init__(problem)
        self.mask, self.problem = mask, problem


def isin(values: pd.Series, allowed: pd.Series) -> pd.Series:
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
    return as_text(series).astype("string")


def _to_ts(series: pd.Series) -> pd.Series:
    if pd.api.types.is_datetime64_any_dtype(series):
        parsed = series
    else:
        text = as_text(series)
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
    text = as_text(series).str.lower()
    result = pd.Series(pd.NA, index=series.index, dtype="boolean")
    result[text.isin(TRUE)] = True
    result[text.isin(FALSE)] = False
    bad = text.notna() & ~text.isin(TRUE | FALSE)
    if bad.any():
        raise _BadValues(bad, "is not a boolean (expected true/false, 1/0 or yes/no)")
    return result


def _to_num(series: pd.Series) -> pd.Series:
    if pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series):
        parsed = series.astype("float64")
    else:
        text = as_text(series)
        parsed = pd.to_numeric(text, errors="coerce")
        bad = parsed.isna() & text.notna()
        if bad.any():
            raise _BadValues(bad, "is not a number (no currency symbols or thousands separators)")
        parsed = parsed.astype("float64")
    infinite = parsed.abs() == float("inf")
    if infinite.any():
        raise _BadValues(infinite, "is not a finite number")
    return parsed


NULL_DTYPE = {
    "id": "string",
    "str": "string",
    "ts": "datetime64[us]",
    "bool": "boolean",
    "num": "float64",
}


COERCE = {"id": _to_id, "str": _to_str, "ts": _to_ts, "bool": _to_bool, "num": _to_num}


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


def check_references(
    frames: dict[str, pd.DataFrame], files: dict[str, str | None], findings: list[Finding]
) -> None:
    """Owners and teams must exist; softer references are findings."""
    for table, column, target, key in REFERENCES:
        if table not in frames or column not in frames[table]:
            continue
        values = frames[table][column]
        bad = values.notna() & ~isin(values, frames[target][key])
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
        orphan = values.notna() & ~isin(values, frames[target][key])
        if orphan.any():
            findings.append(Finding(table, column, int(orphan.sum()), message))


def quarantine_rows(frames: dict[str, pd.DataFrame], findings: list[Finding]):
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
            frames[rule.table] = keep_rows(df, ~bad)
    if "stage_history" in frames:
        sh = frames["stage_history"]
        orphan = ~isin(sh["opportunity_id"], frames["opportunities"]["opportunity_id"])
        if orphan.any():
            message = "belong to an opportunity that is not in 'opportunities' (or was quarantined)"
            findings.append(
                Finding("stage_history", "opportunity_id", int(orphan.sum()), message, "quarantine")
            )
            quarantine.setdefault("stage_history", []).append(sh[orphan].assign(reason=message))
            frames["stage_history"] = keep_rows(sh, ~orphan)
    return frames, {name: pd.concat(parts) for name, parts in quarantine.items()}


def keep_rows(df: pd.DataFrame, mask: pd.Series) -> pd.DataFrame:
    kept = df[mask].reset_index(drop=True)
    kept.attrs = dict(df.attrs)
    return kept


def observe(frames: dict[str, pd.DataFrame], findings: list[Finding], today: pd.Timestamp) -> None:
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

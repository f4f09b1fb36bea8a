"""Reading what exports are made of: CSV and Parquet files, YAML files, and text values.

A CSV is read all text, nothing guessed (the loaders type every column themselves); a file that
cannot be read is a ``SourceError`` naming it. Text tokens that mean empty, true or false are
defined once here, for the loaders and the presets alike.

Example
-------
>>> as_text(pd.Series([" a ", "NULL", ""])).tolist()
['a', <NA>, <NA>]
"""

from __future__ import annotations

import warnings
from pathlib import Path

import pandas as pd

from kpi_lib.data.schema import TABLES
from kpi_lib.errors import SourceError

NULL_TEXT = {"", "na", "n/a", "null", "none", "nan", "nat"}


TRUE = {"true", "t", "yes", "y", "1", "1.0"}


FALSE = {"false", "f", "no", "n", "0", "0.0"}


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


def read_folder(path: Path) -> dict[str, tuple[pd.DataFrame, str]]:
    raw: dict[str, tuple[pd.DataFrame, str]] = {}
    for name in TABLES:
        csv, parquet = path / f"{name}.csv", path / f"{name}.parquet"
        if csv.exists() and parquet.exists():
            raise SourceError(f"{path}: both {csv.name} and {parquet.name} exist; keep one")
        for file in (csv, parquet):
            if file.exists():
                raw[name] = (read_table_file(file, name), str(file))
    return raw


def as_text(series: pd.Series) -> pd.Series:
    text = series.astype("string").str.strip()
    return text.mask(text.str.lower().isin(NULL_TEXT))

"""Currencies: one per source, or amounts converted to one reporting currency by an FX table.

Sums never mix currencies: opportunities in more than one are refused unless an FX table gives a
rate for each (``docs/data-sources.md``, Currencies).

Example
-------
>>> load_fx({"currency": "USD", "rates": {"EUR": 1.08}})["rates"]["EUR"]
1.08
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kpi_lib.data.files import read_table_file
from kpi_lib.errors import DataError, SourceError
from kpi_lib.paths import read_yaml


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
            fx = read_yaml(path, "FX table", SourceError, empty_ok=False)
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


def apply_fx(opps: pd.DataFrame, fx: dict | None, file: str | None) -> pd.DataFrame:
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

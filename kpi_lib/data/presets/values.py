"""Formatted values as a CRM's Export button writes them, read into plain numbers and dates.

Report exports print values the way a person reads them: ``"USD 1,000.00"``, ``"(500.00)"``,
``"€1.234,56"``, ``"80%"``, dates in the user's locale (``1/15/2026``, ``15/01/2026``,
``15.01.2026 14:30``), and a workbook opened and saved again may hold Excel serial dates
(``46037``). The presets read every amount, percentage and date through this module; typed
cells of a workbook (a number, a datetime) are kept as they are.

Two rules keep it honest. A value that is none of these is an error naming it, never a null.
A date whose day and month could be swapped (``10/5/2026``) is read in the order the file's
own values decide (one date with a day above 12 is enough); when none decides, the preset
option ``date_order`` does; without it, the file is refused as ambiguous.

Example
-------
>>> numbers = parse_numbers(pd.Series(["USD 1,000.00", "(500.00)", "80%", None]))
>>> numbers.value.tolist(), numbers.currency.tolist(), numbers.percent.tolist()
([1000.0, -500.0, 0.8, nan], ['USD', <NA>, <NA>, <NA>], [False, False, True, False])
>>> dates = LocaleDates([pd.Series(["10/5/2026", "10/21/2026 3:45 PM"])], option=None)
>>> dates.order, dates.to_iso(pd.Series(["10/5/2026", "10/21/2026 3:45 PM"])).tolist()
('MDY', ['2026-10-05', '2026-10-21 15:45:00'])
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

# ---------------------------------------------------------------------------------------------
# Numbers: thousands separators, currency codes and symbols, accounting negatives, percentages
# ---------------------------------------------------------------------------------------------

SYMBOLS = {
    "US$": "USD",
    "CA$": "CAD",
    "C$": "CAD",
    "AU$": "AUD",
    "A$": "AUD",
    "NZ$": "NZD",
    "HK$": "HKD",
    "S$": "SGD",
    "R$": "BRL",
    "MX$": "MXN",
    "€": "EUR",
    "£": "GBP",
    "₹": "INR",
    "₩": "KRW",
    "₺": "TRY",
    "₪": "ILS",
    "₱": "PHP",
    "₫": "VND",
    "฿": "THB",
    "zł": "PLN",
    "Kč": "CZK",
    "Fr.": "CHF",
    "$": None,  # a dollar of which country? the currency column, or none
    "¥": None,  # yen or yuan
    "kr": None,  # Swedish, Danish, Norwegian or Icelandic krona
}
"""Currency symbols an amount may carry, and the ISO code each one names (None: it names no
single currency, so the row's currency comes from the currency column, if any)."""

_SYMBOL = "|".join(re.escape(s) for s in sorted(SYMBOLS, key=len, reverse=True))
_SPACES = "\u00a0\u202f\u2009 "
_AMOUNT = re.compile(
    rf"^(?P<neg1>-)?\s*(?P<code1>[A-Z]{{3}})?\s*(?P<sym1>{_SYMBOL})?\s*(?P<neg2>-)?\s*"
    rf"(?P<num>\d[\d.,'{_SPACES}]*|[.,]\d+)\s*(?P<pct>%)?\s*(?P<sym2>{_SYMBOL})?\s*"
    rf"(?P<code2>[A-Z]{{3}})?(?P<neg3>-)?$"
)
_PARENS = re.compile(r"^(?P<before>[^()]*)\((?P<inner>[^()]+)\)(?P<after>[^()]*)$")
_POINT = re.compile(rf"^\d{{1,3}}([,'{_SPACES}]\d{{3}})*(\.\d+)?$|^\d+(\.\d+)?$|^\.\d+$")
_COMMA = re.compile(rf"^\d{{1,3}}([.'{_SPACES}]\d{{3}})*(,\d+)?$|^\d+(,\d+)?$|^,\d+$")
_DOT_THOUSANDS = re.compile(r"^\d{1,3}(\.\d{3})+$")


class ValuesError(ValueError):
    """Raised when a column's values cannot be read without a guess: a day/month order or a
    decimal mark the file does not settle, or dates in two orders. ``rows`` marks the values
    at fault; the message says what to do."""

    def __init__(self, message: str, rows: pd.Series):
        super().__init__(message)
        self.rows = rows


@dataclass
class Numbers:
    """A column of formatted numbers, parsed. One row per input value.

    ``value`` is a float (NaN where the input is empty or ``bad``); a percentage is a fraction
    (``"80%"`` is 0.8, so is a workbook cell formatted as a percent); ``currency`` the ISO
    code the value carried (``"USD 1,000.00"``, ``"€12"``), else NA; ``bad`` marks values that
    are no number at all.
    """

    value: pd.Series
    currency: pd.Series
    percent: pd.Series
    bad: pd.Series


def parse_numbers(cells: pd.Series, decimal: str | None = None) -> Numbers:
    """Read a column of numbers as exports format them.

    Parameters
    ----------
    cells
        Raw cells: text (``"USD 1,000.00"``, ``"(500.00)"``, ``"1.234,56 €"``, ``"80%"``), or
        numbers already typed by a workbook (kept as they are).
    decimal
        ``"."`` or ``","``: the decimal mark. None: the column's values decide (``1.234,56``
        or ``0,5`` say comma, ``1,234.56`` or ``0.5`` say point); a column whose values
        decide nothing (``1,000``) reads the comma as a thousands separator, as the exports
        of English-language locales write it.

    Returns
    -------
    Numbers
        ``parse_numbers(pd.Series(["(1,500.00)"])).value[0] == -1500.0``
    """
    n = len(cells)
    value = np.full(n, np.nan)
    currency: list[object] = [pd.NA] * n
    percent = np.zeros(n, dtype=bool)
    bad = np.zeros(n, dtype=bool)
    parsed: list[tuple[int, re.Match, bool, str]] = []
    votes = {".": 0, ",": 0}
    for i, cell in enumerate(cells.tolist()):
        if cell is None or cell is pd.NA or (isinstance(cell, float) and np.isnan(cell)):
            continue
        if isinstance(cell, bool | np.bool_):
            bad[i] = True
            continue
        if isinstance(cell, int | float | np.integer | np.floating):
            value[i] = float(cell)
            continue
        text = str(cell).strip()
        if text == "" or text.lower() in {"na", "n/a", "null", "none", "nan", "-", "--"}:
            continue
        wrapped = _PARENS.match(text)  # accounting negative: (500.00), USD (500.00), (€12)
        negative = wrapped is not None
        if wrapped:
            text = f"{wrapped['before']}{wrapped['inner']}{wrapped['after']}".strip()
        m = _AMOUNT.match(text)
        if m is None or (m["code1"] and m["code2"]) or (m["sym1"] and m["sym2"]):
            bad[i] = True
            continue
        negative ^= bool(m["neg1"] or m["neg2"] or m["neg3"])
        digits = m["num"].rstrip(_SPACES)
        point, comma = bool(_POINT.match(digits)), bool(_COMMA.match(digits))
        if point and not comma:
            votes["."] += 1
        elif comma and not point:
            votes[","] += 1
        parsed.append((i, m, negative, digits))
    if decimal is None:
        if not any(votes.values()):
            dotted = [(i, d) for i, _, _, d in parsed if _DOT_THOUSANDS.match(d)]
            if dotted:
                rows = pd.Series(False, index=cells.index)
                rows.iloc[[i for i, _ in dotted]] = True
                example = dotted[0][1]
                raise ValuesError(
                    f"numbers such as '{example}' may hold a thousands separator or a decimal "
                    "point, and no value of the column tells which. Set the preset option "
                    "decimal: ',' (1.234,56) or decimal: '.' (1,234.56)",
                    rows,
                )
        decimal = "," if votes[","] and not votes["."] else "."
    pattern = _COMMA if decimal == "," else _POINT
    for i, m, negative, digits in parsed:
        if not pattern.match(digits):
            bad[i] = True
            continue
        plain = re.sub(rf"[{_SPACES}'{'.' if decimal == ',' else ','}]", "", digits)
        number = float(plain.replace(",", "."))
        if m["pct"]:
            number /= 100
            percent[i] = True
        value[i] = -number if negative else number
        code = m["code1"] or m["code2"] or SYMBOLS.get(m["sym1"] or m["sym2"] or "")
        if code:
            currency[i] = code
    index = cells.index
    return Numbers(
        pd.Series(value, index=index),
        pd.Series(currency, index=index, dtype="string"),
        pd.Series(percent, index=index),
        pd.Series(bad, index=index),
    )


# ---------------------------------------------------------------------------------------------
# Dates: locale orders, Excel serials, epoch milliseconds
# ---------------------------------------------------------------------------------------------

ORDERS = ("MDY", "DMY")
"""The orders a locale date may have: month first (US) or day first (most other locales)."""

_LOCALE_DATE = re.compile(
    r"^(?P<a>\d{1,2})(?P<sep>[/.\-])(?P<b>\d{1,2})(?P=sep)(?P<y>\d{4}|\d{2})"
    r"(?:[ ,T]+(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2}))?\s*(?P<ampm>[AaPp]\.?[Mm]\.?)?)?$"
)
_SERIAL = re.compile(r"^\d{5}(\.\d+)?$")
_EPOCH_MS = re.compile(r"^\d{12,13}$")
_EXCEL_EPOCH = dt.datetime(1899, 12, 30)


def _split(text: pd.Series) -> pd.DataFrame:
    """The parts of the locale dates of ``text`` (other values: NaN parts)."""
    return text.astype("string").str.strip().str.extract(_LOCALE_DATE)


@dataclass
class LocaleDates:
    """The day/month order of one file's dates, and reading its date columns as ISO text.

    ``columns`` are the file's columns (raw cells); every value shaped like a locale date
    votes. A date with its first number above 12 (``15/1/2026``) says day first; a date with
    its second number above 12 (``1/15/2026``) says month first; dots (``15.01.2026``) are
    day first in every locale that writes them. ``option`` (``"MDY"`` / ``"DMY"``, the preset
    option ``date_order``) decides a file whose values do not.

    Example
    -------
    >>> LocaleDates([pd.Series(["15/1/2026"])], option=None).order
    'DMY'
    """

    columns: list[pd.Series]
    option: str | None

    def __post_init__(self):
        day_first = month_first = None
        for column in self.columns:
            parts = _split(column.astype("string")).dropna(subset=["a"])
            if parts.empty:
                continue
            a, b = parts["a"].astype(int), parts["b"].astype(int)
            dmy = (a > 12) | (parts["sep"] == ".")
            mdy = b > 12
            if dmy.any() and day_first is None:
                day_first = str(column.loc[dmy[dmy].index[0]])
            if mdy.any() and month_first is None:
                month_first = str(column.loc[mdy[mdy].index[0]])
        self.examples = (day_first, month_first)
        if day_first and month_first:
            self.order = "conflict"
        elif day_first or month_first:
            self.order = "DMY" if day_first else "MDY"
        else:
            self.order = self.option

    def to_iso(self, cells: pd.Series) -> pd.Series:
        """``cells`` with locale dates, Excel serials and epoch milliseconds as ISO text.

        Other values are left as they are (ISO dates with or without offsets, which the
        loader reads, and anything else, which it refuses naming the row). Raises
        ``ValuesError`` for a locale date the file's order does not settle.
        """
        text = cells.astype("string").str.strip()
        out = text.copy()
        serial = text.str.fullmatch(_SERIAL.pattern).fillna(False).astype(bool)
        if serial.any():
            days = text[serial].astype(float)  # to the second: 0.1 day is 2:24:00, not 2:23:59.99
            out[serial] = [
                _iso(_EXCEL_EPOCH + dt.timedelta(seconds=round(d * 86400))) for d in days
            ]
        epoch = text.str.fullmatch(_EPOCH_MS.pattern).fillna(False).astype(bool)
        if epoch.any():
            out[epoch] = pd.to_datetime(text[epoch].astype("int64"), unit="ms").dt.strftime(
                "%Y-%m-%d %H:%M:%S"
            )
        parts = _split(text).dropna(subset=["a"])
        if parts.empty:
            return out
        a, b = parts["a"].astype(int), parts["b"].astype(int)
        if self.order == "conflict":
            day, month = self.examples
            raise ValuesError(
                f"holds dates day first ('{day}') and month first ('{month}') in one file; "
                "export it again in one locale",
                rows=((a > 12) | (b > 12)).reindex(text.index, fill_value=False),
            )
        ambiguous = (a <= 12) & (b <= 12) & (a != b) & (parts["sep"] != ".")
        if self.order is None and ambiguous.any():
            first = text[ambiguous[ambiguous].index[0]]
            raise ValuesError(
                f"dates such as '{first}' read as month/day or as day/month, and no date in "
                "the file has a day above 12 to tell which: the file is ambiguous. Set the "
                "preset option date_order: MDY (month first, US) or DMY (day first)",
                rows=ambiguous.reindex(text.index, fill_value=False),
            )
        day_first = (self.order == "DMY") | (parts["sep"] == ".")
        day = a.where(day_first, b)
        month = b.where(day_first, a)
        year = parts["y"].astype(int)
        year = year.where(parts["y"].str.len() == 4, 2000 + year)
        hour = parts["H"].fillna("0").astype(int)
        pm = parts["ampm"].fillna("").str.lower().str.startswith("p")
        am = parts["ampm"].fillna("").str.lower().str.startswith("a")
        hour = hour.where(~(pm & (hour < 12)), hour + 12).where(~(am & (hour == 12)), 0)
        timed = parts["H"].notna()
        for i in parts.index:
            try:
                when = dt.datetime(
                    int(year[i]),
                    int(month[i]),
                    int(day[i]),
                    int(hour[i]),
                    int(parts.at[i, "M"] if timed[i] else 0),
                    int(parts.at[i, "S"]) if isinstance(parts.at[i, "S"], str) else 0,
                )
            except ValueError:
                continue  # 31/2/2026: left as it is, refused by the loader naming it
            out[i] = _iso(when) if timed[i] else when.strftime("%Y-%m-%d")
        return out


def _iso(when: dt.datetime) -> str:
    if when.time() == dt.time(0):
        return when.strftime("%Y-%m-%d")
    return when.strftime("%Y-%m-%d %H:%M:%S")

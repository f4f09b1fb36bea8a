"""One place for the reports' look: colours, number formats by registry unit, chart theme.

Every report, chart and digest takes its colours and formats from here, so a change of
currency symbol or brand colour is one edit. The palette is Okabe-Ito, which stays
distinguishable for the common forms of colour blindness; status colours are always paired
with an arrow or a word, never colour alone.

Example
-------
>>> format_value(1234567, "currency")
'$1.23M'
>>> format_value(0.4234, "ratio")
'42.3%'
>>> format_change(0.021, "ratio")
'+2.1 pts'
"""

from __future__ import annotations

import sys

import matplotlib
import pandas as pd

# Headless everywhere but a live Jupyter kernel, where the analyst's inline plots keep working;
# the kit's own charts are built without pyplot and do not depend on the backend.
if "ipykernel" not in sys.modules:
    matplotlib.use("Agg")
from matplotlib.ticker import FuncFormatter, PercentFormatter  # noqa: E402

from kpi_lib.metrics.compare import is_missing  # noqa: E402

# Okabe-Ito (Okabe & Ito 2008): colour-blind-safe categorical palette.
OKABE_ITO: dict[str, str] = {
    "blue": "#0072B2",
    "orange": "#E69F00",
    "sky": "#56B4E9",
    "green": "#009E73",
    "yellow": "#F0E442",
    "vermillion": "#D55E00",
    "purple": "#CC79A7",
    "black": "#000000",
}
PALETTE: list[str] = [
    OKABE_ITO[k] for k in ("blue", "orange", "green", "sky", "vermillion", "purple", "yellow")
]

COLORS: dict[str, str] = {
    "primary": OKABE_ITO["blue"],
    "secondary": OKABE_ITO["orange"],
    "target": "#3b3b3b",
    "good": OKABE_ITO["green"],
    "warn": OKABE_ITO["orange"],
    "bad": OKABE_ITO["vermillion"],
    "neutral": "#6b7280",
    "ink": "#111827",
    "muted": "#6b7280",
    "grid": "#e5e7eb",
    "surface": "#ffffff",
    "page": "#f3f5f8",
    "band": "#0b2545",
    "band_accent": "#13315c",
}

# Status text colours with enough contrast on white (WCAG AA for small text).
STATUS_TEXT: dict[str, str] = {
    "good": "#00704f",
    "warn": "#9a5b00",
    "bad": "#b04400",
    "neutral": "#4b5563",
}

CURRENCY_SYMBOLS = {
    "USD": "$",
    "EUR": "€",
    "GBP": "£",
    "JPY": "¥",
    "CNY": "CN¥",
    "INR": "₹",
    "KRW": "₩",
    "BRL": "R$",
    "CAD": "CA$",
    "AUD": "A$",
    "NZD": "NZ$",
    "MXN": "MX$",
    "HKD": "HK$",
    "SGD": "S$",
    "ILS": "₪",
}
"""Symbols read without a code; any other currency shows its code (``CHF 1.2M``)."""
_CURRENCY = {"symbol": "$"}
NA = "n/a"

#: Attainment at or above this is on track (green); at or above WARN_AT amber; below: red.
GOOD_AT = 1.0
WARN_AT = 0.9

FONT_STACK = (
    '-apple-system, BlinkMacSystemFont, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif'
)


def use_currency(code: str | None) -> str:
    """Show amounts in the org's currency from now on (``None``: US dollars); returns its
    symbol. Reports and digests call it once with the batch's currency.

    Example
    -------
    >>> use_currency("EUR"), format_value(1500, "currency"), use_currency(None)
    ('€', '€1.5K', '$')
    """
    code = (code or "USD").strip().upper()
    _CURRENCY["symbol"] = CURRENCY_SYMBOLS.get(code, f"{code}\u00a0")
    return _CURRENCY["symbol"]


def _compact(value: float) -> str:
    """``1234567`` -> ``1.23M``; ``84500`` -> ``84.5K``; ``950`` -> ``950``."""
    sign, size = ("-" if value < 0 else ""), abs(value)
    for bound, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if size >= bound * 0.9995:  # 999,960 reads as 1M, not 1000K
            scaled = size / bound
            decimals = 2 if scaled < 10 else 1 if scaled < 100 else 0
            return sign + _trim(f"{scaled:.{decimals}f}") + suffix
    if size >= 100 or size == int(size):
        return f"{sign}{size:,.0f}"
    return f"{sign}{size:,.1f}"


def _trim(text: str) -> str:
    """Drop trailing decimal zeros: ``'1.50'`` -> ``'1.5'``, ``'2.00'`` -> ``'2'``.

    Whole numbers are left alone: ``'500'`` stays ``'500'``.
    """
    return text.rstrip("0").rstrip(".") if "." in text else text


def format_value(value, unit: str, *, compact: bool = True) -> str:
    """A KPI value as people read it, by the registry ``unit``.

    Parameters
    ----------
    value
        The number; None or NaN gives ``"n/a"``.
    unit
        ``count``, ``currency``, ``ratio`` (a share, shown as a percentage), ``days`` or
        ``currency_per_day``.
    compact
        Abbreviate large numbers (``$1.2M``); ``False`` gives full digits (``$1,234,567``).

    Example
    -------
    >>> format_value(12.26, "days"), format_value(1520, "currency_per_day")
    ('12.3 days', '$1.52K/day')
    """
    if is_missing(value):
        return NA
    value = float(value)
    if unit == "currency":
        body = _compact(abs(value)) if compact else f"{abs(value):,.0f}"
        return ("-" if value < 0 else "") + _CURRENCY["symbol"] + body
    if unit == "currency_per_day":
        return format_value(value, "currency", compact=compact) + "/day"
    if unit == "ratio":
        return f"{value * 100:.1f}%" if abs(value) < 10 else f"{value * 100:,.0f}%"
    if unit == "days":
        return f"{value:,.1f} days"
    if unit == "count":
        return _compact(value) if compact and abs(value) >= 10_000 else f"{value:,.0f}"
    return f"{value:,.2f}"


def format_percent(value, digits: int = 0) -> str:
    """A share as a percentage: ``1.04`` -> ``'104%'``; n/a for missing."""
    if is_missing(value):
        return NA
    return f"{float(value) * 100:.{digits}f}%"


def format_change(delta, unit: str) -> str:
    """A change from ``change`` with its sign: ``+2.1 pts`` for ratios, ``-8%`` otherwise;
    a change too small to show is ``0.0 pts`` / ``0.0%``, never ``-0.0``."""
    if is_missing(delta):
        return NA
    delta = shown_change(delta, unit)
    if unit == "ratio":
        return f"{delta * 100:+.1f} pts" if delta else "0.0 pts"
    pct = delta * 100
    if not pct:
        return "0.0%"
    return f"{pct:+.0f}%" if abs(pct) >= 10 else f"{pct:+.1f}%"


def shown_change(delta, unit: str) -> float:
    """``delta`` as the reader sees it: rounded to the tenth of a point or percent that
    ``format_change`` prints, so that an arrow and a colour never contradict a ``0.0``."""
    return round(float(delta), 3) + 0.0  # + 0.0 turns -0.0 into 0.0


def change_arrow(delta, unit: str) -> str:
    """``▲``, ``▼`` or ``■`` (no change that shows) for a change."""
    shown = shown_change(delta, unit)
    return "▲" if shown > 0 else "▼" if shown < 0 else "■"


def direction_status(delta, higher_is_better: bool) -> str:
    """``good``, ``bad`` or ``neutral`` for a change, by whether higher is better."""
    if is_missing(delta) or abs(float(delta)) < 1e-9:
        return "neutral"
    return "good" if (float(delta) > 0) == higher_is_better else "bad"


def attainment_status(ratio) -> str:
    """``good`` (on target), ``warn`` (within 10%) or ``bad``; ``neutral`` without a target."""
    if is_missing(ratio):
        return "neutral"
    ratio = float(ratio)
    return "good" if ratio >= GOOD_AT else "warn" if ratio >= WARN_AT else "bad"


def month_name(label: str) -> str:
    """``'2026-10'`` -> ``'October 2026'``; quarters and years are returned as they are."""

    if len(label) == 7 and label[4] == "-" and label[5:].isdigit():
        return pd.Timestamp(label + "-01").strftime("%B %Y")
    return label


def short_period(label: str) -> str:
    """``'2026-10'`` -> ``'Oct 26'`` for chart axes; other grains unchanged."""

    if len(label) == 7 and label[4] == "-" and label[5:].isdigit():
        return pd.Timestamp(label + "-01").strftime("%b %y")
    return label


def apply_chart_theme() -> None:
    """Set the shared matplotlib/seaborn look: clean axes, Okabe-Ito colours, readable fonts."""
    import seaborn as sns
    from cycler import cycler

    sns.set_theme(style="whitegrid", context="notebook", palette=PALETTE)
    matplotlib.rcParams.update(
        {
            "axes.prop_cycle": cycler(color=PALETTE),
            "axes.edgecolor": COLORS["grid"],
            "axes.labelcolor": COLORS["muted"],
            "axes.titlesize": 12,
            "axes.titleweight": "bold",
            "axes.titlecolor": COLORS["ink"],
            "axes.titlelocation": "left",
            "axes.spines.top": False,
            "axes.spines.right": False,
            "axes.spines.left": False,
            "grid.color": COLORS["grid"],
            "grid.linewidth": 0.8,
            "xtick.color": COLORS["muted"],
            "ytick.color": COLORS["muted"],
            "xtick.labelsize": 10,
            "ytick.labelsize": 10,
            "legend.frameon": False,
            "legend.fontsize": 10,
            "font.family": "sans-serif",
            "font.sans-serif": ["DejaVu Sans", "Arial", "Helvetica"],
            "figure.dpi": 100,
            "savefig.dpi": 110,
            "savefig.bbox": "tight",
            "figure.facecolor": "white",
        }
    )


def axis_formatter(unit: str):
    """A matplotlib tick formatter for ``unit`` (``$1.2M``, ``40%``)."""
    if unit == "ratio":
        return PercentFormatter(xmax=1.0)  # decimals follow the axis range (98.5%, 99.0%)
    if unit in {"currency", "currency_per_day"}:
        return FuncFormatter(lambda v, _: format_value(v, "currency"))
    return FuncFormatter(lambda v, _: _compact(v))

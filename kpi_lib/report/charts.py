"""Chart helpers for the reports: matplotlib figures as embedded PNGs, period ticks, and the
marking of a period still in progress (a hatched, lighter bar or a dashed last segment).
"""

from __future__ import annotations

import base64
import io
from collections.abc import Sequence

import numpy as np
import pandas as pd

from kpi_lib.report import theme
from kpi_lib.report.html import esc
from kpi_lib.report.theme import COLORS


def figure_html(fig, alt: str, *, dpi: int = 110) -> str:
    """A matplotlib figure as an embedded PNG ``<img>`` (base64), responsive width."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img class="kr-img" src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def period_ticks(labels: Sequence[str]) -> list[str]:
    r"""Axis labels for periods: month names, with the year under the first and every January.

    Example
    -------
    >>> period_ticks(["2025-12", "2026-01", "2026-02"])
    ['Dec\n2025', 'Jan\n2026', 'Feb']
    """
    out = []
    for i, label in enumerate(labels):
        if len(label) == 7 and label[4] == "-":
            month = pd.Timestamp(label + "-01")
            text = month.strftime("%b")
            out.append(f"{text}\n{month.year}" if i == 0 or month.month == 1 else text)
        else:
            out.append(label)
    return out


TO_DATE = "to date"
"""The label on a chart's period still in progress."""


def plot_line(ax, x, values, *, partial_last: bool = False, color: str, **style) -> None:
    """A line with markers; with ``partial_last`` its last segment is dashed and labelled."""
    y = np.array(values, dtype=float)
    style = {"linewidth": 2.2, "marker": "o", "markersize": 3.5, **style}
    if not partial_last or len(y) < 2 or np.isnan(y[-1]):
        ax.plot(x, y, color=color, **style)
        return
    ax.plot(x[:-1], y[:-1], color=color, **style)
    rest = {k: v for k, v in style.items() if k != "label"}
    ax.plot(x[-2:], y[-2:], color=color, linestyle="--", markerfacecolor="white", **rest)
    annotate_to_date(ax, x[-1], y[-1])


def mark_partial_bar(bar, color: str) -> None:
    """Draw a bar of a period in progress lighter and hatched."""
    bar.set_facecolor(theme_lighter(color))
    bar.set_edgecolor(color)
    bar.set_hatch("///")
    bar.set_linewidth(0.8)


def theme_lighter(color: str, amount: float = 0.55) -> tuple[float, float, float]:
    """``color`` mixed with white (``amount`` of white)."""
    from matplotlib.colors import to_rgb

    r, g, b = to_rgb(color)
    return (r + (1 - r) * amount, g + (1 - g) * amount, b + (1 - b) * amount)


def annotate_to_date(ax, x: float, y: float, text: str = TO_DATE) -> None:
    ax.annotate(
        text,
        (x, y),
        ha="center",
        va="bottom",
        xytext=(0, 6),
        textcoords="offset points",
        fontsize=8,
        fontstyle="italic",
        color=COLORS["muted"],
    )


def new_figure(width: float = 7.4, height: float = 3.1):
    from matplotlib.figure import Figure

    theme.apply_chart_theme()
    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot(1, 1, 1)

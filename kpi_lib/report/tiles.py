"""KPI tiles and their sparklines: value, target and attainment, changes, trend.

Labels, units and directions come from the registry, formats and colours from
``kpi_lib.report.theme``; a tile of a period still in progress says so (``to_date``) and judges the
run-rate projection of a count or sum against the full period's target.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from kpi_lib.metrics.compare import attainment, change
from kpi_lib.metrics.registry import get_kpi
from kpi_lib.report import theme
from kpi_lib.report.html import esc
from kpi_lib.report.theme import COLORS, format_change, format_value, is_missing


def sparkline_svg(
    values: Sequence[float],
    targets: Sequence[float] | None = None,
    *,
    width: int = 200,
    height: int = 30,
    color: str = COLORS["primary"],
    label: str = "trend",
    partial_last: bool = False,
) -> str:
    """A tiny inline SVG line of ``values`` (gaps at n/a), with an optional dashed target line.

    ``partial_last``: the last value is a period still in progress; its segment is dashed and
    its point hollow.

    Example
    -------
    >>> svg = sparkline_svg([1, 2, float("nan"), 3, 4])
    >>> svg.startswith("<svg") and svg.count("<polyline") == 2
    True
    """
    vals = [float("nan") if is_missing(v) else float(v) for v in values]
    tgts = [float("nan") if is_missing(v) else float(v) for v in (targets or [])]
    known = [v for v in vals if not math.isnan(v)]
    title = f"<title>{esc(label)}</title>"
    if not known:
        return (
            f'<svg class="kr-spark" viewBox="0 0 {width} {height}" role="img" '
            f'aria-label="{esc(label)}">{title}</svg>'
        )
    lo, hi = min(known), max(known)
    span = (hi - lo) or 1.0
    pad = 3.0
    step = (width - 2 * pad) / max(len(vals) - 1, 1)

    def point(i: int, v: float) -> tuple[float, float]:
        return pad + i * step, height - pad - (v - lo) / span * (height - 2 * pad)

    def polylines(series: list[float], style: str) -> str:
        runs, run = [], []
        for i, v in enumerate(series):
            if math.isnan(v):
                if run:
                    runs.append(run)
                run = []
            else:
                run.append(point(i, v))
        if run:
            runs.append(run)
        out = []
        for r in runs:
            if len(r) == 1:
                x, y = r[0]
                out.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="1.5" fill="{color}"/>')
            else:
                pts = " ".join(f"{x:.1f},{y:.1f}" for x, y in r)
                out.append(f'<polyline points="{pts}" fill="none" {style}/>')
        return "".join(out)

    partial = partial_last and len(vals) > 1 and not math.isnan(vals[-1])
    if partial:
        title = f"<title>{esc(label)} (last point: to date)</title>"
    parts = [title]
    if any(not math.isnan(t) for t in tgts):
        parts.append(
            polylines(
                tgts,
                f'stroke="{COLORS["target"]}" stroke-width="1" '
                'stroke-dasharray="3 2" opacity="0.6"',
            )
        )
    solid = [*vals[:-1], math.nan] if partial else vals
    parts.append(
        polylines(
            solid,
            f'stroke="{color}" stroke-width="2" stroke-linejoin="round" stroke-linecap="round"',
        )
    )
    last = next(((i, v) for i, v in reversed(list(enumerate(vals))) if not math.isnan(v)), None)
    if partial:
        x, y = point(len(vals) - 1, vals[-1])
        if not math.isnan(vals[-2]):
            x0, y0 = point(len(vals) - 2, vals[-2])
            parts.append(
                f'<line class="kr-partial-seg" x1="{x0:.1f}" y1="{y0:.1f}" x2="{x:.1f}" '
                f'y2="{y:.1f}" stroke="{color}" stroke-width="2" stroke-dasharray="3 2"/>'
            )
        parts.append(
            f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="#fff" stroke="{color}" '
            'stroke-width="1.5"/>'
        )
    elif last is not None:
        x, y = point(*last)
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')
    return (
        f'<svg class="kr-spark" viewBox="0 0 {width} {height}" preserveAspectRatio="xMidYMid meet" '
        f'role="img" aria-label="{esc(label)}">{"".join(parts)}</svg>'
    )


def delta_html(
    delta: float, unit: str, higher_is_better: bool | None, versus: str, no_data: bool = False
) -> str:
    """``▲ +8% vs Sep 26`` coloured by whether the move is good (by ``higher_is_better``;
    None: not judged, as for a cohort that is still maturing). ``no_data``: the org has no
    data in the period compared with, and the line says so (``no data for Nov 25``)."""
    if no_data:
        return f'<span class="kr-delta kr-neutral kr-nodata">no data for {esc(versus)}</span>'
    if is_missing(delta):
        return f'<span class="kr-delta kr-neutral">– vs {esc(versus)}</span>'
    status = (
        "neutral"
        if higher_is_better is None
        else theme.direction_status(theme.shown_change(delta, unit), higher_is_better)
    )
    arrow = theme.change_arrow(delta, unit)
    return (
        f'<span class="kr-delta kr-{status}" title="{status} change">{arrow} '
        f"{esc(format_change(delta, unit))}</span> vs {esc(versus)}"
    )


def kpi_tile(
    kpi: str,
    value: float,
    *,
    target: float = math.nan,
    previous: float = math.nan,
    year_ago: float = math.nan,
    previous_label: str = "P-1",
    year_ago_label: str | None = "P-1y",
    history: Sequence[float] = (),
    history_targets: Sequence[float] | None = None,
    compare: tuple[str, str] | None = None,
    detail: str = "",
    unavailable: str | None = None,
    hero: bool = False,
    to_date: str = "",
    projection: float = math.nan,
    projection_label: str = "",
    maturing: str = "",
    no_data_before: tuple[bool, bool] = (False, False),
    noise: tuple[str, str] = ("", ""),
    interval: str = "",
    basis: str = "",
) -> str:
    """One KPI tile as HTML: label, value, target with attainment colour, changes, sparkline.

    Parameters
    ----------
    kpi
        A registry name (``win_rate``); label, unit and direction come from the registry.
    compare
        ``("Company", "$4.1M")``: a reference line under the changes.
    detail
        Extra small text (the n behind a rate: ``"59 of 205 closed"``).
    unavailable
        The reason the KPI cannot be computed; the tile then shows n/a with the reason.
    hero
        A double-width tile (the report's lead KPI).
    year_ago_label
        None leaves the year-ago line out (a period still in progress).
    to_date
        ``"1-14 Oct"``: the value covers part of the period only; the sparkline's last point
        is drawn as in progress.
    projection, projection_label
        The run rate to the period's end (``"31 Oct"``) of a count or sum; the target line
        and the tile's colour then judge the projection, not the figure so far.
    maturing
        Why a cohort rate will still rise (``"qualified 29-60 days ago; ..."``): shown under
        the value, and neither the target nor the changes are coloured as good or bad yet.
    no_data_before
        ``(previous, year_ago)``: the org has no data in that period (it starts later), so the
        line says "no data for ..." instead of a change.
    noise
        ``(previous, year_ago)``: why a rate's change is within noise (``"within noise (n =
        12 vs 9)"``, ``Explainer.noise``): that change is shown grey with the reason; ""
        leaves it coloured.
    interval
        A rate's 95% interval (``"95% CI 18.9-30.1%"``): small print, and the value's tooltip.
    basis
        What the value stands for when it is not the period's own (``"leads qualified in
        July 2026, ..."``, the last mature cohort of a cohort rate), under the value.

    Example
    -------
    >>> "104%</span> of $1M target" in kpi_tile("revenue", 1.04e6, target=1e6)
    True
    """
    meta = get_kpi(kpi)
    label = f'<div class="kr-tile-label" title="{esc(meta.definition)}">{esc(meta.label)}</div>'
    if unavailable or is_missing(value):
        reason = unavailable or "no data for this period"
        return (
            f'<div class="kr-tile kr-neutral" data-kpi="{esc(kpi)}">{label}'
            f'<div class="kr-tile-value kr-na">{theme.NA}</div>'
            f'<div class="kr-tile-line">{esc(reason)}</div></div>'
        )
    projected = not is_missing(projection)
    ratio = attainment(projection if projected else value, target, meta.higher_is_better)
    status = "neutral" if maturing else theme.attainment_status(ratio)
    lines = []
    if basis:
        lines.append(f'<div class="kr-tile-line kr-todate">{esc(basis)}</div>')
    if maturing:
        lines.append(f'<div class="kr-tile-line kr-todate">still maturing: {esc(maturing)}</div>')
    if to_date:
        lines.append(f'<div class="kr-tile-line kr-todate">to date, {esc(to_date)}</div>')
    if projected:
        lines.append(
            f'<div class="kr-tile-line kr-projection">On pace for '
            f"<b>{esc(format_value(projection, meta.unit))}</b> by {esc(projection_label)}</div>"
        )
    if not is_missing(target):
        lines.append(
            f'<div class="kr-tile-line"><span class="kr-pill kr-{status}">'
            f"{theme.format_percent(ratio)}</span> of "
            f"{esc(format_value(target, meta.unit))} target</div>"
        )
    else:
        lines.append('<div class="kr-tile-line">no target set</div>')
    judged = None if maturing else meta.higher_is_better
    versus = [(previous, previous_label, no_data_before[0], noise[0])]
    if year_ago_label is not None and year_ago_label != previous_label:
        versus.append((year_ago, year_ago_label, no_data_before[1], noise[1]))
    for before, versus_label, no_data, within in versus:
        delta = delta_html(
            change(value, before, meta.unit),
            meta.unit,
            None if within else judged,
            versus_label,
            no_data,
        )
        if within and not no_data:
            delta += f' <span class="kr-noise">{esc(within)}</span>'
        lines.append(f'<div class="kr-tile-line">{delta}</div>')
    if compare:
        lines.append(f'<div class="kr-tile-line">{esc(compare[0])}: <b>{esc(compare[1])}</b></div>')
    if detail:
        lines.append(f'<div class="kr-tile-line">{esc(detail)}</div>')
    if interval:
        lines.append(f'<div class="kr-tile-line kr-interval">{esc(interval)}</div>')
    spark = (
        sparkline_svg(
            history,
            history_targets,
            width=420 if hero else 200,
            height=44 if hero else 30,
            label=f"{meta.label}: trend",
            partial_last=bool(to_date),
        )
        if len(history)
        else ""
    )
    hero = " kr-hero" if hero else ""
    tooltip = f' title="{esc(interval)}"' if interval else ""
    return (
        f'<div class="kr-tile kr-{status}{hero}" data-kpi="{esc(kpi)}">{label}'
        f'<div class="kr-tile-value"{tooltip}>{esc(format_value(value, meta.unit))}</div>'
        f"{''.join(lines)}{spark}</div>"
    )

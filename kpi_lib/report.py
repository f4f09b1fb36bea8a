"""Presentation helpers for the role notebooks: header, KPI tiles, tables, charts, footer.

A report notebook opens its report with ``open_report`` and then calls one method per
section; each returns an ``Html`` block that Jupyter displays and nbconvert exports as is.
Nothing here computes a KPI: values, targets and their parts come from the cube, labels,
units and definitions from the registry, colours and formats from ``kpi_lib.theme``.
Every CRM string (names, stages, findings) is escaped before it goes into HTML.

Example
-------
>>> r = open_report("manager", "2026-10", "na-ent")       # doctest: +SKIP
>>> r.header()                                             # doctest: +SKIP
"""

from __future__ import annotations

import base64
import html
import io
import math
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from IPython.display import HTML
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

from kpi_lib import theme
from kpi_lib._paths import project_path, resolve_source
from kpi_lib.errors import ParamsError
from kpi_lib.periods import Period
from kpi_lib.registry import HEADLINE_KPIS, REGISTRY, get_kpi
from kpi_lib.theme import COLORS, STATUS_TEXT, format_change, format_value, is_missing

ROLES: dict[str, str] = {"executive": "company", "manager": "team", "rep": "rep"}
"""Report role -> the scope it reports on."""

ROLE_TITLES = {"executive": "Executive report", "manager": "Team report", "rep": "Rep report"}
ACTIVITY_TYPES = ("call", "email", "meeting", "demo")

# --------------------------------------------------------------------------------------------
# Styles (one block, emitted once per report by ``header``)
# --------------------------------------------------------------------------------------------

CSS = f"""
.kr {{ font-family: {theme.FONT_STACK}; color: {COLORS["ink"]}; line-height: 1.45;
  box-sizing: border-box; max-width: 100%; }}
.kr *, .kr *::before, .kr *::after {{ box-sizing: border-box; }}
.kr-band {{ background: linear-gradient(120deg, {COLORS["band"]} 0%, {COLORS["band_accent"]} 100%);
  color: #fff; border-radius: 14px; padding: 22px 24px; margin: 4px 0 18px; }}
.kr-band .kr-eyebrow {{ text-transform: uppercase; letter-spacing: .08em; font-size: 12px;
  opacity: .8; margin: 0 0 4px; }}
.kr-band h1 {{ font-size: 28px; margin: 0; line-height: 1.2; color: #fff; border: 0; }}
.kr-band .kr-sub {{ margin-top: 6px; font-size: 15px; opacity: .9; }}
.kr-band .kr-meta {{ margin-top: 12px; display: flex; flex-wrap: wrap; gap: 8px; }}
.kr-chip {{ display: inline-block; background: rgba(255,255,255,.14); border-radius: 999px;
  padding: 3px 10px; font-size: 12px; }}
.kr-section-title {{ font-size: 18px; font-weight: 700; margin: 26px 0 10px;
  color: {COLORS["ink"]}; }}
.kr-card {{ background: #fff; border: 1px solid {COLORS["grid"]}; border-radius: 12px;
  padding: 16px 18px; margin: 0 0 16px; box-shadow: 0 1px 2px rgba(16,24,40,.05);
  min-width: 0; }}
.kr-card h3 {{ font-size: 15px; margin: 0 0 4px; color: {COLORS["ink"]}; }}
.kr-card .kr-note {{ font-size: 13px; color: {COLORS["muted"]}; margin: 0 0 10px; }}
.kr-highlights {{ border-left: 4px solid {COLORS["primary"]}; }}
.kr-highlights ul {{ margin: 6px 0 0; padding-left: 20px; }}
.kr-highlights li {{ margin: 4px 0; font-size: 15px; }}
.kr-tiles {{ display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 235px), 1fr));
  gap: 12px; margin: 0 0 18px; }}
.kr-tile {{ background: #fff; border: 1px solid {COLORS["grid"]}; border-top: 4px solid
  {COLORS["neutral"]}; border-radius: 12px; padding: 12px 14px 10px; min-width: 0;
  box-shadow: 0 1px 2px rgba(16,24,40,.05); display: flex; flex-direction: column; gap: 3px; }}
.kr-tile.kr-hero {{ grid-column: span 2;
  background: linear-gradient(180deg, #f4f9fd 0%, #fff 70%); }}
.kr-tile.kr-hero .kr-tile-value {{ font-size: 34px; }}
.kr-tile.kr-hero .kr-spark {{ height: 44px; }}
.kr-tile.kr-good {{ border-top-color: {COLORS["good"]}; }}
.kr-tile.kr-warn {{ border-top-color: {COLORS["warn"]}; }}
.kr-tile.kr-bad {{ border-top-color: {COLORS["bad"]}; }}
.kr-tile-label {{ font-size: 12px; text-transform: uppercase; letter-spacing: .04em;
  color: {COLORS["muted"]}; font-weight: 600; }}
.kr-tile-value {{ font-size: 26px; font-weight: 750; letter-spacing: -.01em; line-height: 1.15;
  font-variant-numeric: tabular-nums; }}
.kr-tile-value.kr-na {{ color: {COLORS["muted"]}; font-weight: 600; }}
.kr-tile-line {{ font-size: 12.5px; color: {COLORS["muted"]}; }}
.kr-tile-line b {{ font-weight: 650; }}
.kr-pill {{ display: inline-block; border-radius: 999px; padding: 1px 8px; font-weight: 650;
  font-size: 12px; }}
.kr-pill.kr-good {{ background: #e3f5ee; color: {STATUS_TEXT["good"]}; }}
.kr-pill.kr-warn {{ background: #fdf1dc; color: {STATUS_TEXT["warn"]}; }}
.kr-pill.kr-bad {{ background: #fbe6dc; color: {STATUS_TEXT["bad"]}; }}
.kr-pill.kr-neutral {{ background: #eef0f3; color: {STATUS_TEXT["neutral"]}; }}
.kr-delta {{ font-weight: 650; white-space: nowrap; }}
.kr-delta.kr-good {{ color: {STATUS_TEXT["good"]}; }}
.kr-delta.kr-bad {{ color: {STATUS_TEXT["bad"]}; }}
.kr-delta.kr-neutral {{ color: {STATUS_TEXT["neutral"]}; }}
.kr-spark {{ display: block; margin-top: auto; padding-top: 6px; width: 100%; height: 34px; }}
.kr-grid-2 {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 340px), 1fr));
  gap: 16px; }}
.kr-grid-2 > .kr-card {{ margin: 0; }}
.kr-img {{ display: block; max-width: 100%; height: auto; margin: 4px auto 0; }}
.kr-table-wrap {{ overflow-x: auto; -webkit-overflow-scrolling: touch; max-width: 100%; }}
.kr-table {{ border-collapse: collapse; width: 100%; font-size: 13.5px;
  font-variant-numeric: tabular-nums; }}
.kr-table th {{ text-align: left; font-size: 11.5px; text-transform: uppercase;
  letter-spacing: .04em;
  color: {COLORS["muted"]}; font-weight: 650; padding: 8px 10px; border-bottom: 2px solid
  {COLORS["grid"]}; white-space: nowrap; background: #fafbfc; }}
.kr-table td {{ padding: 8px 10px; border-bottom: 1px solid #f0f1f3; white-space: nowrap; }}
.kr-table td.kr-num, .kr-table th.kr-num {{ text-align: right; }}
.kr-table td.kr-name {{ white-space: normal; min-width: 120px; font-weight: 600; }}
.kr-table tr.kr-total td {{ font-weight: 700; border-top: 2px solid {COLORS["grid"]};
  background: #fafbfc; }}
.kr-table .kr-sub {{ color: {COLORS["muted"]}; font-size: 12px; }}
.kr-rank {{ display: inline-block; width: 22px; height: 22px; border-radius: 50%;
  text-align: center; line-height: 22px; font-size: 12px; background: #eef0f3;
  color: {COLORS["ink"]}; margin-right: 6px; }}
.kr-bar {{ display: inline-block; vertical-align: middle; height: 8px; border-radius: 4px;
  background: #eef0f3; width: 80px; margin-right: 8px; overflow: hidden; }}
.kr-bar > span {{ display: block; height: 100%; border-radius: 4px; }}
.kr-funnel {{ display: flex; flex-direction: column; gap: 8px; }}
.kr-funnel-row {{ display: grid; grid-template-columns: minmax(0, 9em) 1fr; gap: 10px;
  align-items: center; font-size: 13.5px; }}
.kr-funnel-bar {{ height: 28px; border-radius: 6px; color: #fff; font-weight: 700; font-size: 13px;
  display: flex; align-items: center; padding: 0 10px; white-space: nowrap; min-width: 3.5em; }}
.kr-funnel-step {{ font-size: 12px; color: {COLORS["muted"]}; grid-column: 2; margin-top: -4px; }}
.kr-stats {{ display: grid; grid-template-columns: repeat(auto-fit, minmax(min(100%, 100px), 1fr));
  gap: 10px; margin: 8px 0; }}
.kr-stat {{ background: #f7f9fb; border-radius: 10px; padding: 10px 12px; }}
.kr-stat .kr-stat-label {{ font-size: 12px; color: {COLORS["muted"]}; }}
.kr-stat .kr-stat-value {{ font-size: 20px; font-weight: 700; font-variant-numeric: tabular-nums; }}
.kr-callout {{ border-radius: 12px; padding: 14px 16px; margin: 0 0 16px; font-size: 14.5px;
  border: 1px solid; }}
.kr-callout.kr-good {{ background: #eefaf5; border-color: #bfe8d8; }}
.kr-callout.kr-warn {{ background: #fff8ec; border-color: #f5d9a8; }}
.kr-callout.kr-bad {{ background: #fff3ee; border-color: #f3c7b3; }}
.kr-callout.kr-neutral {{ background: #f5f7fa; border-color: {COLORS["grid"]}; }}
.kr-callout .kr-big {{ font-size: 22px; font-weight: 750; line-height: 1.3; }}
.kr-callout-title {{ font-size: 12px; text-transform: uppercase; letter-spacing: .05em;
  color: {COLORS["muted"]}; font-weight: 650; margin-bottom: 2px; }}
.kr-dq {{ background: #fffbea; border: 1px solid #f2e2a5; border-radius: 12px; padding: 12px 16px;
  margin: 0 0 16px; font-size: 13.5px; }}
.kr-dq ul {{ margin: 6px 0 0; padding-left: 20px; }}
.kr-glossary {{ display: grid;
  grid-template-columns: repeat(auto-fit, minmax(min(100%, 300px), 1fr));
  gap: 6px 24px; margin: 0; font-size: 13px; }}
.kr-glossary div {{ padding: 4px 0; border-bottom: 1px dashed #eceef1; }}
.kr-glossary dt {{ font-weight: 650; display: inline; }}
.kr-glossary dd {{ display: inline; margin: 0; color: #374151; }}
.kr-footer {{ font-size: 12px; color: {COLORS["muted"]}; border-top: 1px solid {COLORS["grid"]};
  padding-top: 10px; margin-top: 18px; overflow-wrap: anywhere; }}
.kr-footer code {{ font-size: 11.5px; background: #f3f4f6; padding: 1px 4px; border-radius: 4px; }}
.kr-legend {{ font-size: 12px; color: {COLORS["muted"]}; }}
.kr-swatch {{ display: inline-block; width: 10px; height: 10px; border-radius: 2px;
  margin: 0 4px 0 10px; vertical-align: -1px; }}
@media (max-width: 520px) {{
  .kr-band {{ padding: 16px; border-radius: 10px; }}
  .kr-band h1 {{ font-size: 22px; }}
  .kr-tiles {{ grid-template-columns: repeat(2, minmax(0, 1fr)); gap: 8px; }}
  .kr-tile {{ padding: 10px 10px 8px; }}
  .kr-tile-value {{ font-size: 20px; }}
  .kr-tile.kr-hero .kr-tile-value {{ font-size: 26px; }}
  .kr-tile-line {{ font-size: 11.5px; }}
  .kr-card {{ padding: 12px; }}
  .kr-bar {{ width: 48px; }}
}}
/* Plain nbconvert 'lab' export (no kit template): frame the page, hide prompts. */
body.jp-Notebook {{ background: {COLORS["page"]}; }}
body.jp-Notebook > main {{ max-width: 1160px; margin: 0 auto; padding: 8px 16px 32px; }}
body.jp-Notebook .jp-OutputPrompt, body.jp-Notebook .jp-InputPrompt {{ display: none; }}
body.jp-Notebook .jp-Cell {{ padding: 0; }}
body.jp-Notebook .jp-OutputArea-output {{ overflow-x: visible; }}
body.jp-Notebook .anchor-link {{ display: none; }}
"""


class Html(HTML):
    """An HTML block of a report; ``str(block)`` is its markup.

    Shown as ``display_data`` (not an ``execute_result``), so every nbconvert template that
    renders displayed outputs exports it, whatever it does with cell results.
    """

    def __str__(self) -> str:
        return self.data or ""

    def _ipython_display_(self) -> None:
        from IPython.display import display

        if self.data:
            display({"text/html": self.data, "text/plain": "[report section]"}, raw=True)


def esc(value) -> str:
    """``html.escape`` for any value (CRM names may contain markup)."""
    return html.escape("" if value is None else str(value), quote=True)


# --------------------------------------------------------------------------------------------
# Building blocks (pure functions of numbers and strings; tested on their own)
# --------------------------------------------------------------------------------------------


def sparkline_svg(
    values: Sequence[float],
    targets: Sequence[float] | None = None,
    *,
    width: int = 200,
    height: int = 30,
    color: str = COLORS["primary"],
    label: str = "trend",
) -> str:
    """A tiny inline SVG line of ``values`` (gaps at n/a), with an optional dashed target line.

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

    parts = [title]
    if any(not math.isnan(t) for t in tgts):
        parts.append(
            polylines(
                tgts,
                f'stroke="{COLORS["target"]}" stroke-width="1" '
                'stroke-dasharray="3 2" opacity="0.6"',
            )
        )
    parts.append(
        polylines(
            vals,
            f'stroke="{color}" stroke-width="2" stroke-linejoin="round" stroke-linecap="round"',
        )
    )
    last = next(((i, v) for i, v in reversed(list(enumerate(vals))) if not math.isnan(v)), None)
    if last is not None:
        x, y = point(*last)
        parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{color}"/>')
    return (
        f'<svg class="kr-spark" viewBox="0 0 {width} {height}" preserveAspectRatio="xMidYMid meet" '
        f'role="img" aria-label="{esc(label)}">{"".join(parts)}</svg>'
    )


def delta_html(delta: float, unit: str, higher_is_better: bool, versus: str) -> str:
    """``▲ +8% vs Sep 26`` coloured by whether the move is good (by ``higher_is_better``)."""
    if is_missing(delta):
        return f'<span class="kr-delta kr-neutral">– vs {esc(versus)}</span>'
    status = theme.direction_status(delta, higher_is_better)
    arrow = "▲" if delta > 0 else "▼" if delta < 0 else "■"
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
    year_ago_label: str = "P-1y",
    history: Sequence[float] = (),
    history_targets: Sequence[float] | None = None,
    compare: tuple[str, str] | None = None,
    detail: str = "",
    unavailable: str | None = None,
    hero: bool = False,
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
    ratio = theme.attainment(value, target, meta.higher_is_better)
    status = theme.attainment_status(ratio)
    lines = []
    if not is_missing(target):
        lines.append(
            f'<div class="kr-tile-line"><span class="kr-pill kr-{status}">'
            f"{theme.format_percent(ratio)}</span> of "
            f"{esc(format_value(target, meta.unit))} target</div>"
        )
    else:
        lines.append('<div class="kr-tile-line">no target set</div>')
    lines.append(
        '<div class="kr-tile-line">'
        + delta_html(
            theme.change(value, previous, meta.unit),
            meta.unit,
            meta.higher_is_better,
            previous_label,
        )
        + "</div>"
    )
    if year_ago_label != previous_label:
        lines.append(
            '<div class="kr-tile-line">'
            + delta_html(
                theme.change(value, year_ago, meta.unit),
                meta.unit,
                meta.higher_is_better,
                year_ago_label,
            )
            + "</div>"
        )
    if compare:
        lines.append(f'<div class="kr-tile-line">{esc(compare[0])}: <b>{esc(compare[1])}</b></div>')
    if detail:
        lines.append(f'<div class="kr-tile-line">{esc(detail)}</div>')
    spark = (
        sparkline_svg(
            history,
            history_targets,
            width=420 if hero else 200,
            height=44 if hero else 30,
            label=f"{meta.label}: trend",
        )
        if len(history)
        else ""
    )
    hero = " kr-hero" if hero else ""
    return (
        f'<div class="kr-tile kr-{status}{hero}" data-kpi="{esc(kpi)}">{label}'
        f'<div class="kr-tile-value">{esc(format_value(value, meta.unit))}</div>'
        f"{''.join(lines)}{spark}</div>"
    )


def bar_html(share: float, color: str) -> str:
    """A small horizontal CSS bar for a table cell, ``share`` of its width (capped at 100%)."""
    width = 0 if is_missing(share) else max(0.0, min(float(share), 1.0)) * 100
    return (
        f'<span class="kr-bar"><span style="width:{width:.0f}%;background:{color}"></span></span>'
    )


def html_table(
    rows: list[list[str]],
    header: list[str],
    *,
    numeric: Iterable[int] = (),
    total: list[str] | None = None,
    caption: str = "",
) -> str:
    """A styled table in its own horizontal scroller; cells are HTML (escape them first).

    ``numeric`` lists the column positions to right-align; ``total`` is a bold last row.
    """
    numeric = set(numeric)

    def cells(values: list[str], tag: str) -> str:
        out = []
        for i, v in enumerate(values):
            cls = "kr-num" if i in numeric else ("kr-name" if i == 0 and tag == "td" else "")
            out.append(f"<{tag}{f' class={chr(34)}{cls}{chr(34)}' if cls else ''}>{v}</{tag}>")
        return "".join(out)

    body = "".join(f"<tr>{cells(r, 'td')}</tr>" for r in rows)
    if total:
        body += f'<tr class="kr-total">{cells(total, "td")}</tr>'
    cap = f'<caption class="kr-note">{esc(caption)}</caption>' if caption else ""
    return (
        f'<div class="kr-table-wrap"><table class="kr-table">{cap}<thead><tr>'
        f"{cells(header, 'th')}</tr></thead><tbody>{body}</tbody></table></div>"
    )


def figure_html(fig, alt: str, *, dpi: int = 110) -> str:
    """A matplotlib figure as an embedded PNG ``<img>`` (base64), responsive width."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi, bbox_inches="tight", facecolor="white")
    data = base64.b64encode(buffer.getvalue()).decode("ascii")
    return f'<img class="kr-img" src="data:image/png;base64,{data}" alt="{esc(alt)}">'


def card(title: str, body: str, note: str = "", extra_class: str = "") -> str:
    """A white card with a title, an optional one-line note, and HTML ``body``."""
    note_html = f'<p class="kr-note">{note}</p>' if note else ""
    return (
        f'<section class="kr-card {extra_class}"><h3>{esc(title)}</h3>{note_html}{body}</section>'
    )


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


def _new_figure(width: float = 7.4, height: float = 3.1):
    from matplotlib.figure import Figure

    theme.apply_chart_theme()
    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot(1, 1, 1)


# --------------------------------------------------------------------------------------------
# Opening a report
# --------------------------------------------------------------------------------------------


def open_report(
    role: str,
    period: str = "",
    scope_id: str = "all",
    source: str = "data/demo.duckdb",
    batch_dir: str = "",
    targets: str = "params/targets.yaml",
) -> Report:
    """Validate a notebook's parameters and load its data: the first call of every report.

    Parameters
    ----------
    role
        ``executive`` (scope_id ``all``), ``manager`` (a team_id) or ``rep`` (a rep_id).
    period, scope_id, source, batch_dir, targets
        The notebook's parameters; relative paths resolve against the project root.

    Raises
    ------
    UnknownScopeError
        ``scope_id`` is no team or rep of the data (the message lists a few valid ids).
    ParamsError
        The role does not match the scope (a rep_id given to the manager report).

    Example
    -------
    >>> r = open_report("rep", "2026-10", "R001")     # doctest: +SKIP
    >>> r.ctx.scope_name                               # doctest: +SKIP
    'Javier Dubois'
    """
    from kpi_lib import batch

    if role not in ROLES:
        raise ParamsError(f"unknown report role '{role}'; roles: {', '.join(ROLES)}")
    resolved_targets = str(project_path(targets)) if targets else None
    if (
        resolved_targets
        and not Path(resolved_targets).exists()
        and targets == "params/targets.yaml"
    ):
        resolved_targets = None  # the default file is optional: no targets, tiles say so
    ctx = batch.report_context(
        period, scope_id, resolve_source(source), resolve_source(batch_dir), resolved_targets
    )
    if ctx.scope != ROLES[role]:
        wanted = {"company": "'all'", "team": "a team_id", "rep": "a rep_id"}[ROLES[role]]
        raise ParamsError(
            f"the {role} report needs scope_id = {wanted}; '{scope_id}' is a {ctx.scope} "
            f"(use the {next(r for r, s in ROLES.items() if s == ctx.scope)} report)"
        )
    parameters = {
        "period": ctx.period.label,
        "scope_id": scope_id,
        "source": source,
        "batch_dir": batch_dir,
        "targets": targets,
    }
    return Report(role, ctx, parameters)


# --------------------------------------------------------------------------------------------
# The report
# --------------------------------------------------------------------------------------------


class Report:
    """One report: its context (period, scope, cube, source) and one method per section.

    Every section method returns an ``Html`` block; the notebook displays them in order.
    """

    def __init__(self, role: str, ctx, parameters: dict):
        self.role, self.ctx, self.parameters = role, ctx, parameters
        self.period: Period = ctx.period
        self.scope, self.scope_id = ctx.scope, str(ctx.scope_id)
        cube = ctx.cube
        self.periods: list[str] = list(dict.fromkeys(cube["period"]))
        self._values = cube.set_index(["scope", "scope_id", "period", "kpi"]).sort_index()
        self.unavailable: dict[str, str] = dict(getattr(ctx, "unavailable", {}) or {})

    # ---- data access -------------------------------------------------------------------

    def row(
        self,
        kpi: str,
        period: str | None = None,
        scope: str | None = None,
        scope_id: str | None = None,
    ) -> pd.Series | None:
        """The cube row of one KPI (this report's scope and period by default), or None."""
        key = (
            scope or self.scope,
            str(scope_id or self.scope_id),
            period or self.period.label,
            kpi,
        )
        try:
            return self._values.loc[key]
        except KeyError:
            return None

    def value(
        self,
        kpi: str,
        period: str | None = None,
        scope: str | None = None,
        scope_id: str | None = None,
        field: str = "value",
    ) -> float:
        """One figure of the cube (NaN = n/a)."""
        row = self.row(kpi, period, scope, scope_id)
        if row is None:
            return math.nan
        if isinstance(row, pd.DataFrame):
            row = row.iloc[0]
        v = row[field]
        return math.nan if is_missing(v) else float(v)

    def history(
        self, kpi: str, scope: str | None = None, scope_id: str | None = None, field: str = "value"
    ) -> list[float]:
        """The KPI over the report's trailing periods (oldest first), ending at the period."""
        end = self.periods.index(self.period.label) if self.period.label in self.periods else -1
        window = self.periods[: end + 1][-13:]
        return [self.value(kpi, p, scope, scope_id, field) for p in window]

    def history_periods(self) -> list[str]:
        end = self.periods.index(self.period.label) if self.period.label in self.periods else -1
        return self.periods[: end + 1][-13:]

    @property
    def team_reps(self) -> pd.DataFrame:
        """One row per rep of this report's team (manager) or of the rep's team, active in P."""
        team = self.scope_id if self.scope == "team" else getattr(self.ctx, "team_id", None)
        reps = self._reps()
        return reps[reps["team_id"].astype(str) == str(team)].reset_index(drop=True)

    def _reps(self) -> pd.DataFrame:
        batch = getattr(self.ctx, "batch", None)
        if batch is not None and hasattr(batch, "reps"):
            reps = batch.reps
            if "is_active" in reps:
                reps = reps[reps["is_active"].astype(bool)]
            return reps[["rep_id", "rep_name", "team_id"]].astype(str)
        from kpi_lib import details

        return details.reps_in_scope(self.ctx.source, self.period, "company", "all")

    def _teams(self) -> pd.DataFrame:
        batch = getattr(self.ctx, "batch", None)
        if batch is not None and hasattr(batch, "teams"):
            return batch.teams[["team_id", "team_name"]].astype(str)
        return self.ctx.source.frame("teams")[["team_id", "team_name"]].astype(str)

    def _stage_probabilities(self) -> dict[str, float]:
        from kpi_lib.cube import load_settings

        return dict(load_settings().get("stage_probabilities", {}))

    def _stages(self) -> list[str]:
        prefix = "time_in_stage_days:"
        return [
            k[len(prefix) :] for k in dict.fromkeys(self.ctx.cube["kpi"]) if k.startswith(prefix)
        ]

    @property
    def previous_label(self) -> str:
        return theme.short_period(self.period.previous.label)

    @property
    def year_ago_label(self) -> str:
        return theme.short_period(self.period.year_ago.label)

    @property
    def period_name(self) -> str:
        return theme.month_name(self.period.label)

    def fmt(self, kpi: str, value: float) -> str:
        return format_value(value, get_kpi(kpi).unit)

    def _block(self, markup: str) -> Html:
        return Html(f'<div class="kr">{markup}</div>')

    # ---- header and narrative ------------------------------------------------------------

    def header(self) -> Html:
        """The report's header band: what, whose, when; carries the report's stylesheet."""
        name = self.ctx.scope_name
        if self.scope == "rep":
            team = self._teams().set_index("team_id")["team_name"].get(str(self.ctx.team_id), "")
            sub = f"Sales rep · {esc(team)}" if team else "Sales rep"
        elif self.scope == "team":
            sub = f"Team of {len(self.team_reps)} active reps"
        else:
            name = "Company performance"
            sub = "All teams and reps"
        chips = [
            f"Period: {esc(self.period_name)}",
            f"Data as of {esc(self.ctx.as_of)}",
            f"vs {esc(self.previous_label)} and {esc(self.year_ago_label)}",
        ]
        return Html(
            f"<style>{CSS}</style>"
            f'<div class="kr"><header class="kr-band"><p class="kr-eyebrow">'
            f"{esc(ROLE_TITLES[self.role])} · {esc(self.period_name)}</p>"
            f'<h1>{esc(name)}</h1><div class="kr-sub">{sub}</div>'
            f'<div class="kr-meta">{"".join(f"<span class=kr-chip>{c}</span>" for c in chips)}'
            f"</div></header></div>"
        )

    def _revenue_sentence(self, who: str) -> str:
        rev = self.value("revenue")
        if is_missing(rev):
            return ""
        target = self.value("revenue", field="target")
        parts = [f"{who} booked <b>{esc(self.fmt('revenue', rev))}</b> in {esc(self.period_name)}"]
        if not is_missing(target) and target:
            parts.append(
                f"{theme.format_percent(rev / target)} of the "
                f"{esc(self.fmt('revenue', target))} target"
            )
        moves = []
        for other, label in (
            (self.period.previous.label, theme.month_name(self.period.previous.label)),
            (self.period.year_ago.label, theme.month_name(self.period.year_ago.label)),
        ):
            before = self.value("revenue", other)
            delta = theme.change(rev, before, "currency")
            if not is_missing(delta):
                word = "up" if delta > 0 else "down" if delta < 0 else "flat"
                moves.append(f"{word} {abs(delta) * 100:.0f}% on {esc(label)}")
        if moves:
            parts.append(" and ".join(moves))
        return ", ".join(parts) + "."

    def _win_rate_sentence(self) -> str:
        wr = self.value("win_rate")
        if is_missing(wr):
            return ""
        won, closed = (
            self.value("win_rate", field="numerator"),
            self.value("win_rate", field="denominator"),
        )
        text = (
            f"The win rate was <b>{theme.format_percent(wr)}</b> ({won:,.0f} won of "
            f"{closed:,.0f} closed)"
        )
        delta = theme.change(wr, self.value("win_rate", self.period.previous.label), "ratio")
        if not is_missing(delta):
            word = "up" if delta > 0 else "down" if delta < 0 else "level"
            prev = theme.month_name(self.period.previous.label)
            text += (
                f", {word} {abs(delta) * 100:.1f} pts on {esc(prev)}"
                if delta
                else f", level with {esc(prev)}"
            )
        size = self.value("avg_deal_size")
        if not is_missing(size):
            text += f"; the average won deal was {esc(self.fmt('avg_deal_size', size))}"
        return text + "."

    def highlights(self) -> Html:
        """Three to five sentences written from the numbers: what happened this period."""
        who = {
            "company": "The company",
            "team": esc(self.ctx.scope_name),
            "rep": esc(self.ctx.scope_name),
        }[self.scope]
        items = [self._revenue_sentence(who), self._win_rate_sentence()]
        if self.scope == "company":
            items.append(self._team_spread_sentence())
        elif self.scope == "team":
            items.append(self._rep_spread_sentence())
        else:
            items.append(self._vs_team_sentence())
        pipe, weighted = self.value("pipeline_amount"), self.value("weighted_pipeline")
        if not is_missing(pipe):
            items.append(
                "Open pipeline at the end of the period: "
                f"<b>{esc(self.fmt('pipeline_amount', pipe))}</b>"
                + (
                    f" ({esc(self.fmt('weighted_pipeline', weighted))} weighted by stage)."
                    if not is_missing(weighted)
                    else "."
                )
            )
        body = "".join(f"<li>{s}</li>" for s in items if s)
        return self._block(card("Highlights", f"<ul>{body}</ul>", extra_class="kr-highlights"))

    def _team_spread_sentence(self) -> str:
        teams = self._teams()
        att = [
            (t.team_name, self.value("quota_attainment", scope="team", scope_id=t.team_id))
            for t in teams.itertuples(index=False)
        ]
        att = [(n, a) for n, a in att if not is_missing(a)]
        if not att:
            return ""
        att.sort(key=lambda x: x[1], reverse=True)
        on_track = sum(a >= 1 for _, a in att)
        text = (
            f"{on_track} of {len(att)} teams reached their revenue target; "
            f"<b>{esc(att[0][0])}</b> led at {theme.format_percent(att[0][1])}"
        )
        if len(att) > 1:
            text += f", {esc(att[-1][0])} trailed at {theme.format_percent(att[-1][1])}"
        return text + "."

    def _rep_spread_sentence(self) -> str:
        reps = self.team_reps
        rows = [
            (
                r.rep_name,
                self.value("revenue", scope="rep", scope_id=r.rep_id),
                self.value("quota_attainment", scope="rep", scope_id=r.rep_id),
            )
            for r in reps.itertuples(index=False)
        ]
        rows = [r for r in rows if not is_missing(r[1])]
        if not rows:
            return ""
        rows.sort(key=lambda x: x[1], reverse=True)
        text = f"<b>{esc(rows[0][0])}</b> led the team with {esc(self.fmt('revenue', rows[0][1]))}"
        with_target = [r for r in rows if not is_missing(r[2])]
        if with_target:
            hit = sum(r[2] >= 1 for r in with_target)
            text += f"; {hit} of {len(with_target)} reps reached their target"
        return text + "."

    def _vs_team_sentence(self) -> str:
        median = self.team_median("revenue")
        rev = self.value("revenue")
        if is_missing(median) or is_missing(rev):
            return ""
        rel = "above" if rev > median else "below" if rev < median else "level with"
        return (
            f"That is {rel} the team median of {esc(self.fmt('revenue', median))} per rep "
            f"({len(self.team_reps)} reps)."
        )

    def team_median(self, kpi: str, period: str | None = None) -> float:
        """The median of ``kpi`` over the active reps of the team (a number, no names)."""
        vals = [self.value(kpi, period, "rep", r) for r in self.team_reps["rep_id"]]
        vals = [v for v in vals if not is_missing(v)]
        return float(np.median(vals)) if vals else math.nan

    # ---- tiles ---------------------------------------------------------------------------

    def tiles(self, kpis: Sequence[str] | None = None) -> Html:
        """A responsive grid of KPI tiles: value, target, changes vs P-1 and P-1y, sparkline.

        Manager tiles compare with the company (share of it for additive KPIs); rep tiles with
        the team median. KPIs not defined at this scope (CAC for a rep) are left out.
        """
        kpis = [k for k in (kpis or HEADLINE_KPIS) if self.scope in get_kpi(k).scopes]
        tiles = [self._tile(k, hero=i == 0) for i, k in enumerate(kpis)]
        return self._block(f'<div class="kr-tiles">{"".join(tiles)}</div>')

    def _tile(self, kpi: str, hero: bool = False) -> str:
        meta = get_kpi(kpi)
        value = self.value(kpi)
        compare = None
        if self.scope == "team":
            company = self.value(kpi, scope="company", scope_id="all")
            if meta.additive and not is_missing(company) and company:
                compare = ("Share of company", theme.format_percent(value / company))
            elif not is_missing(company):
                compare = ("Company", format_value(company, meta.unit))
        elif self.scope == "rep":
            median = self.team_median(kpi)
            if not is_missing(median):
                compare = ("Team median", format_value(median, meta.unit))
        detail = ""
        if meta.unit == "ratio":
            num, den = self.value(kpi, field="numerator"), self.value(kpi, field="denominator")
            if not is_missing(den):
                detail = f"n = {den:,.0f}" if is_missing(num) else f"{num:,.0f} of {den:,.0f}"
        return kpi_tile(
            kpi,
            value,
            target=self.value(kpi, field="target"),
            previous=self.value(kpi, self.period.previous.label),
            year_ago=self.value(kpi, self.period.year_ago.label),
            previous_label=self.previous_label,
            year_ago_label=self.year_ago_label,
            history=self.history(kpi),
            history_targets=self.history(kpi, field="target"),
            compare=compare,
            detail=detail,
            unavailable=self.unavailable.get(kpi),
            hero=hero,
        )

    # ---- charts --------------------------------------------------------------------------

    def revenue_trend(self) -> Html:
        """Revenue per period (bars) against the target (dashed line), the trailing 13 periods."""
        labels = self.history_periods()
        revenue, target = self.history("revenue"), self.history("revenue", field="target")
        fig, ax = _new_figure()
        x = np.arange(len(labels))
        rev = np.array(revenue, dtype=float)
        tgt = np.array(target, dtype=float)
        colors = [COLORS["primary"] if i == len(x) - 1 else theme.OKABE_ITO["sky"] for i in x]
        ax.bar(x, np.nan_to_num(rev), color=colors, width=0.66, label="Revenue", zorder=2)
        if not np.all(np.isnan(tgt)):
            ax.plot(
                x,
                tgt,
                color=COLORS["target"],
                linestyle="--",
                linewidth=1.6,
                marker="o",
                markersize=3,
                label="Target",
                zorder=3,
            )
        if len(rev) and not np.isnan(rev[-1]):
            ax.annotate(
                format_value(rev[-1], "currency"),
                (x[-1], rev[-1]),
                ha="center",
                va="bottom",
                xytext=(0, 3),
                textcoords="offset points",
                fontsize=9,
                fontweight="bold",
                color=COLORS["ink"],
            )
        ax.set_xticks(x, period_ticks(labels))
        ax.tick_params(axis="x", labelsize=9)
        ax.yaxis.set_major_formatter(theme.axis_formatter("currency"))
        ax.grid(axis="x", visible=False)
        ax.legend(loc="upper left", ncols=2)
        ax.margins(y=0.15)
        note = (
            "Bookings per month; the dashed line is the revenue target."
            if not np.all(np.isnan(tgt))
            else "Bookings per month (no revenue target set)."
        )
        return self._block(
            card(
                "Revenue vs target", figure_html(fig, "Revenue by month against target"), note=note
            )
        )

    def _trend_chart(
        self,
        series: list[tuple[str, list[float], str]],
        unit: str,
        alt: str,
        ylim_zero: bool = True,
        height: float = 2.9,
    ):
        labels = self.history_periods()
        fig, ax = _new_figure(6.2, height)
        x = np.arange(len(labels))
        for name, values, color in series:
            ax.plot(
                x,
                np.array(values, dtype=float),
                label=name,
                color=color,
                linewidth=2.2,
                marker="o",
                markersize=3.5,
            )
        ax.set_xticks(x[::3], period_ticks(labels)[::3])
        ax.tick_params(axis="x", labelsize=9)
        ax.yaxis.set_major_formatter(theme.axis_formatter(unit))
        if ylim_zero:
            ax.set_ylim(bottom=0)
        ax.legend(loc="lower left", ncols=len(series))
        ax.margins(y=0.2)
        return figure_html(fig, alt)

    def clv_vs_cac(self) -> Html:
        """Customer lifetime value against acquisition cost, and their ratio (aim: 3x or more)."""
        clv, cac = self.value("clv"), self.value("cac")
        ratio = clv / cac if not is_missing(clv) and not is_missing(cac) and cac else math.nan
        stats = (
            f'<div class="kr-stats">{_stat("CLV", self.fmt("clv", clv))}'
            f"{_stat('CAC', self.fmt('cac', cac))}"
            f"{_stat('CLV : CAC', 'n/a' if is_missing(ratio) else f'{ratio:.1f}x')}</div>"
        )
        if "clv" in self.unavailable or "cac" in self.unavailable:
            reason = self.unavailable.get("clv") or self.unavailable.get("cac")
            return self._block(card("CLV vs CAC", stats, note=esc(reason)))
        clv_h, cac_h = np.array(self.history("clv")), np.array(self.history("cac"))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.where(cac_h > 0, clv_h / cac_h, np.nan)
        labels = self.history_periods()
        fig, ax = _new_figure(6.2, 2.9)
        x = np.arange(len(labels))
        ax.axhspan(0, 3, color=COLORS["bad"], alpha=0.06, zorder=0)
        ax.axhline(3, color=COLORS["target"], linestyle="--", linewidth=1.2, label="3x benchmark")
        ax.plot(
            x,
            ratios,
            color=COLORS["primary"],
            linewidth=2.2,
            marker="o",
            markersize=3.5,
            label="CLV : CAC",
        )
        ax.set_xticks(x[::3], period_ticks(labels)[::3])
        ax.tick_params(axis="x", labelsize=9)
        ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.0f}x"))
        ax.set_ylim(bottom=0)
        ax.margins(y=0.2)
        ax.legend(loc="upper right", ncols=2)
        chart = figure_html(fig, "Ratio of customer lifetime value to acquisition cost by month")
        return self._block(
            card(
                "CLV vs CAC",
                stats + chart,
                note="What a customer is worth against what it costs to win one; "
                "3x or more is healthy.",
            )
        )

    def retention_trend(self) -> Html:
        """Customer retention and churn over the trailing periods."""
        if "retention_rate" in self.unavailable:
            return self._block(
                card("Retention and churn", "", note=esc(self.unavailable["retention_rate"]))
            )
        labels = self.history_periods()
        from matplotlib.figure import Figure

        theme.apply_chart_theme()
        fig = Figure(figsize=(6.2, 2.9))
        top, bottom = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [1, 1]})
        x = np.arange(len(labels))
        top.plot(
            x,
            np.array(self.history("retention_rate")),
            color=COLORS["good"],
            linewidth=2.2,
            marker="o",
            markersize=3.5,
        )
        top.set_title("Retention", fontsize=10, loc="left")
        bottom.bar(
            x, np.nan_to_num(np.array(self.history("churn_rate"))), color=COLORS["bad"], width=0.6
        )
        bottom.set_title("Churn", fontsize=10, loc="left")
        for ax in (top, bottom):
            ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0, decimals=1))
            ax.yaxis.set_major_locator(MaxNLocator(3))
            ax.margins(y=0.25)
        bottom.grid(axis="x", visible=False)
        bottom.set_xticks(x[::3], period_ticks(labels)[::3])
        bottom.tick_params(axis="x", labelsize=9)
        fig.tight_layout(h_pad=0.6)
        chart = figure_html(fig, "Customer retention and churn by month")
        ret, churn = self.value("retention_rate"), self.value("churn_rate")
        stats = (
            f'<div class="kr-stats">{_stat("Retention", self.fmt("retention_rate", ret))}'
            f"{_stat('Churn', self.fmt('churn_rate', churn))}"
            f"{_stat('Accounts lost', _count(self.value('churn_rate', field='numerator')))}</div>"
        )
        return self._block(
            card(
                "Retention and churn",
                stats + chart,
                note="Share of last period's paying accounts that paid again.",
            )
        )

    def customers(self) -> Html:
        """CLV vs CAC and retention side by side (one row on desktop, stacked on a phone)."""
        return self._block(
            f'<div class="kr-grid-2">{self.clv_vs_cac().data}{self.retention_trend().data}</div>'
        )

    # ---- funnel, outlook -----------------------------------------------------------------

    def lead_funnel(self) -> Html:
        """Leads created, qualified, opportunities created, deals won in the period."""
        steps = [
            ("leads_created", "Leads created"),
            ("qualified_leads", "Qualified"),
            ("opportunities_created", "Opportunities"),
            ("deals_won", "Deals won"),
        ]
        values = [(label, self.value(k), k) for k, label in steps]
        top = max((v for _, v, _ in values if not is_missing(v)), default=0) or 1
        rows = []
        colors = [COLORS["primary"], theme.OKABE_ITO["sky"], COLORS["secondary"], COLORS["good"]]
        prev = None
        for (label, v, k), color in zip(values, colors, strict=True):
            if k in self.unavailable:
                rows.append(
                    f'<div class="kr-funnel-row"><div>{esc(label)}</div>'
                    f'<div class="kr-sub">n/a: {esc(self.unavailable[k])}</div></div>'
                )
                continue
            width = 0 if is_missing(v) else max(v / top, 0) * 100
            rows.append(
                f'<div class="kr-funnel-row"><div>{esc(label)}</div><div>'
                f'<div class="kr-funnel-bar" '
                f'style="width:{max(width, 12):.0f}%;background:{color}">'
                f"{_count(v)}</div></div></div>"
            )
            if prev is not None and not is_missing(prev) and prev and not is_missing(v):
                rows.append(
                    f'<div class="kr-funnel-row"><div></div><div class="kr-funnel-step">'
                    f"↓ {v / prev * 100:.0f}% of the step before</div></div>"
                )
            prev = v
        note = (
            "This period's flow through the funnel (each stage counts events in the period, "
            "so later stages include earlier cohorts)."
        )
        return self._block(
            card("Lead funnel", f'<div class="kr-funnel">{"".join(rows)}</div>', note=note)
        )

    def outlook(self) -> Html:
        """Next period: run rate (mean of the last 3 periods), weighted pipeline, target."""
        nxt = self.period.shift(1)
        recent = [v for v in self.history("revenue")[-3:] if not is_missing(v)]
        run_rate = float(np.mean(recent)) if recent else math.nan
        weighted, pipe = self.value("weighted_pipeline"), self.value("pipeline_amount")
        target = self._target_for("revenue", nxt)
        stats = [
            _stat("Run rate (3-period avg)", format_value(run_rate, "currency")),
            _stat("Weighted pipeline", format_value(weighted, "currency")),
            _stat("Open pipeline", format_value(pipe, "currency")),
            _stat(f"Target {theme.month_name(nxt.label)}", format_value(target, "currency")),
        ]
        sentences = []
        if not is_missing(target) and target:
            if not is_missing(run_rate):
                cover = run_rate / target
                sentences.append(
                    f"At the current run rate {esc(theme.month_name(nxt.label))} would close at "
                    f"<b>{theme.format_percent(cover)}</b> of target."
                )
            if not is_missing(pipe):
                sentences.append(
                    f"Pipeline coverage is <b>{pipe / target:.1f}x</b> the target "
                    "(3x is a common rule of thumb)."
                )
        elif not is_missing(run_rate):
            sentences.append(
                f"At the current run rate, expect about "
                f"<b>{esc(format_value(run_rate, 'currency'))}</b> next period."
            )
        status = "neutral"
        if not is_missing(target) and target and not is_missing(run_rate):
            status = theme.attainment_status(run_rate / target)
        body = f'<div class="kr-stats">{"".join(stats)}</div>'
        if sentences:
            body += f'<p style="margin:8px 0 0">{" ".join(sentences)}</p>'
        return self._block(
            card(
                f"Outlook for {theme.month_name(nxt.label)}",
                body,
                note="A simple projection, not a forecast: recent bookings and what "
                "the open pipeline is weighted to bring.",
                extra_class=f"kr-outlook kr-{status}",
            )
        )

    def _target_for(self, kpi: str, period: Period) -> float:
        path = self.parameters.get("targets")
        if not path:
            return math.nan
        resolved = Path(project_path(path))
        if not resolved.exists():
            return math.nan
        from kpi_lib.targets import load_targets

        value = load_targets(resolved).resolve(kpi, period, self.scope, self.scope_id)
        return math.nan if value is None else float(value)

    # ---- tables --------------------------------------------------------------------------

    def team_comparison(self) -> Html:
        """One row per team: revenue, attainment, win rate (with n), velocity, CAC."""
        teams = self._teams()
        rows = []
        for t in teams.itertuples(index=False):
            rows.append(self._scope_cells("team", t.team_id, t.team_name))
        rows.sort(key=lambda r: r[0], reverse=True)
        body = [r[1] for r in rows]
        total = self._scope_cells("company", "all", "Company")[1]
        table = html_table(
            body,
            ["Team", "Revenue", "Attainment", "Win rate", "Velocity", "CAC"],
            numeric=[1, 3, 4, 5],
            total=total,
        )
        return self._block(
            card(
                "Teams",
                table,
                note="Sorted by revenue. Win rate shows won of closed deals; "
                "velocity is revenue the pipeline produces per day.",
            )
        )

    def _scope_cells(self, scope: str, scope_id: str, name: str) -> tuple[float, list[str]]:
        rev = self.value("revenue", scope=scope, scope_id=scope_id)
        att = self.value("quota_attainment", scope=scope, scope_id=scope_id)
        status = theme.attainment_status(att)
        att_cell = (
            (
                f"{bar_html(att, COLORS[status] if status != 'neutral' else COLORS['neutral'])}"
                f'<span class="kr-delta kr-{status if status != "warn" else "neutral"}">'
                f"{theme.format_percent(att)}</span>"
            )
            if not is_missing(att)
            else theme.NA
        )
        return (
            0 if is_missing(rev) else rev,
            [
                esc(name),
                esc(format_value(rev, "currency")),
                att_cell,
                self._rate_cell("win_rate", scope, scope_id),
                esc(
                    format_value(
                        self.value("sales_velocity", scope=scope, scope_id=scope_id),
                        "currency_per_day",
                    )
                ),
                esc(format_value(self.value("cac", scope=scope, scope_id=scope_id), "currency")),
            ],
        )

    def _rate_cell(self, kpi: str, scope: str, scope_id: str) -> str:
        v = self.value(kpi, scope=scope, scope_id=scope_id)
        num = self.value(kpi, scope=scope, scope_id=scope_id, field="numerator")
        den = self.value(kpi, scope=scope, scope_id=scope_id, field="denominator")
        n = "" if is_missing(den) else f' <span class="kr-sub">({_count(num)}/{_count(den)})</span>'
        return esc(theme.format_percent(v)) + n

    def leaderboard(self) -> Html:
        """The team's reps ranked by revenue: attainment, win rate with n, deals, activities."""
        rows = []
        for r in self.team_reps.itertuples(index=False):
            rev = self.value("revenue", scope="rep", scope_id=r.rep_id)
            att = self.value("quota_attainment", scope="rep", scope_id=r.rep_id)
            status = theme.attainment_status(att)
            att_cell = (
                (
                    f"{bar_html(att, COLORS[status] if status != 'neutral' else COLORS['neutral'])}"
                    f"{theme.format_percent(att)}"
                )
                if not is_missing(att)
                else theme.NA
            )
            rows.append(
                (
                    0 if is_missing(rev) else rev,
                    r.rep_name,
                    [
                        esc(format_value(rev, "currency")),
                        att_cell,
                        self._rate_cell("win_rate", "rep", r.rep_id),
                        _count(self.value("deals_won", scope="rep", scope_id=r.rep_id)),
                        _count(self.value("activities", scope="rep", scope_id=r.rep_id)),
                    ],
                )
            )
        rows.sort(key=lambda x: x[0], reverse=True)
        body = [
            [f'<span class="kr-rank">{i}</span>{esc(name)}', *cells]
            for i, (_, name, cells) in enumerate(rows, start=1)
        ]
        total = [
            "Team",
            esc(self.fmt("revenue", self.value("revenue"))),
            theme.format_percent(self.value("quota_attainment")),
            self._rate_cell("win_rate", self.scope, self.scope_id),
            _count(self.value("deals_won")),
            _count(self.value("activities")),
        ]
        table = html_table(
            body,
            ["Rep", "Revenue", "Attainment", "Win rate (won/closed)", "Deals won", "Activities"],
            numeric=[1, 3, 4, 5],
            total=total,
        )
        return self._block(
            card(
                "Rep leaderboard",
                table,
                note=f"Active reps in {esc(self.period_name)}, ranked by revenue.",
            )
        )

    def activity_by_rep(self) -> Html:
        """Activity volume per rep of the team, stacked by type (horizontal bars)."""
        reps = self.team_reps
        if "activities" in self.unavailable:
            return self._block(
                card("Activity by rep", "", note=esc(self.unavailable["activities"]))
            )
        data = pd.DataFrame(
            {
                kind: [
                    self.value(f"activities_{kind}", scope="rep", scope_id=r)
                    for r in reps["rep_id"]
                ]
                for kind in ACTIVITY_TYPES
            },
            index=list(reps["rep_name"]),
        ).fillna(0)
        total = [self.value("activities", scope="rep", scope_id=r) for r in reps["rep_id"]]
        data["other"] = (pd.Series(total, index=data.index).fillna(0) - data.sum(axis=1)).clip(
            lower=0
        )
        data = data.loc[data.sum(axis=1).sort_values().index]
        fig, ax = _new_figure(7.4, max(2.2, 0.42 * len(data) + 1.0))
        left = np.zeros(len(data))
        colors = [
            COLORS["primary"],
            theme.OKABE_ITO["sky"],
            COLORS["secondary"],
            COLORS["good"],
            "#b0b7c3",
        ]
        for kind, color in zip([*ACTIVITY_TYPES, "other"], colors, strict=True):
            if kind == "other" and not data[kind].any():
                continue
            ax.barh(
                np.arange(len(data)),
                data[kind],
                left=left,
                color=color,
                height=0.62,
                label=kind.capitalize() + ("s" if kind != "other" else ""),
            )
            left += data[kind].to_numpy()
        ax.set_yticks(np.arange(len(data)), [str(n) for n in data.index])
        ax.grid(axis="y", visible=False)
        ax.xaxis.set_major_formatter(theme.axis_formatter("count"))
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=5)
        return self._block(
            card(
                "Activity by rep",
                figure_html(fig, "Activities per rep by type"),
                note=f"Calls, emails, meetings and demos logged in {esc(self.period_name)}.",
            )
        )

    def pipeline_by_stage(self) -> Html:
        """Open deals by stage at the end of the period, with time in stage and stage conversion."""
        from kpi_lib import details

        if "time_in_stage_days" in self.unavailable and not self.ctx.source.has("opportunities"):
            return self._block(card("Pipeline by stage", "", note="n/a"))
        stages = self._stages()
        pipe = details.pipeline_by_stage(
            self.ctx.source,
            self.period,
            self.scope,
            self.scope_id,
            as_of=self.ctx.as_of,
            stage_probabilities=self._stage_probabilities(),
            stages=stages,
        )
        top = pipe["amount"].max() if len(pipe) else 0
        rows = []
        for s in pipe.itertuples(index=False):
            rows.append(
                [
                    esc(s.stage),
                    _count(s.deals),
                    bar_html(s.amount / top if top else 0, COLORS["primary"])
                    + esc(format_value(s.amount, "currency")),
                    esc(format_value(s.weighted_amount, "currency")),
                    esc(format_value(self.value(f"time_in_stage_days:{s.stage}"), "days")),
                    self._rate_cell(f"stage_conversion:{s.stage}", self.scope, self.scope_id)
                    if f"stage_conversion:{s.stage}" in self._stages_kpis()
                    else theme.NA,
                ]
            )
        total = [
            "Total",
            _count(pipe["deals"].sum()),
            esc(format_value(pipe["amount"].sum(), "currency")),
            esc(format_value(pipe["weighted_amount"].sum(), "currency")),
            "",
            "",
        ]
        table = html_table(
            rows,
            ["Stage", "Open deals", "Amount", "Weighted", "Time in stage", "Moved forward"],
            numeric=[1, 2, 3, 4, 5],
            total=total,
        )
        note = (
            "Deals open at the end of the period. Time in stage and the share that moved "
            "forward are for stage exits during the period."
        )
        if "time_in_stage_days" in self.unavailable:
            note += " " + esc(self.unavailable["time_in_stage_days"])
        return self._block(card("Pipeline by stage", table, note=note))

    def pipeline_waterfall(self, history_dir: str = "") -> Html:
        """How the period's pipeline moved (from snapshots), and how far back history reaches.

        ``history_dir``: the snapshot folder; default the batch's ``history_dir`` when it has
        one, else ``history/`` in the project. Nothing is shown when there are no snapshots.
        """
        from kpi_lib import history

        folder = project_path(
            history_dir
            or getattr(getattr(self.ctx, "batch", None), "history_dir", None)
            or history.DEFAULT_HISTORY_DIR
        )
        coverage = history.history_coverage(folder)
        if not coverage.snapshots:
            return Html("")
        since = esc(coverage.text().capitalize()) + "."
        w = history.pipeline_waterfall(folder, self.period, rep_ids=self._waterfall_reps())
        if w is None:
            note = f"{since} Not enough snapshots around {esc(self.period_name)} for a waterfall."
            return self._block(card("Pipeline movement", "", note=note))
        rows = []
        for step in w.table.itertuples(index=False):
            quiet = step.step == "removed" or (
                step.step in ("pulled_in", "pushed_out") and not w.has_close_dates
            )
            if quiet and step.amount == 0 and step.deals == 0:
                continue
            edge = step.step in ("open_start", "open_end")
            sign = "" if edge or step.amount == 0 else ("+\u2009" if step.amount > 0 else "−\u2009")
            deals = "" if pd.isna(step.deals) else _count(abs(int(step.deals)))
            amount = sign + format_value(abs(step.amount), "currency")
            rows.append([esc(step.label), deals, esc(amount)])
        table = html_table(rows[:-1], ["", "Deals", "Amount"], numeric=[1, 2], total=rows[-1])
        pipeline = (
            "deals expected to close by the end of the period"
            if w.has_close_dates
            else "all open deals; the source has no expected close dates, so pushes cannot be seen"
        )
        partial = " (part of the period only)" if w.is_partial else ""
        note = f"{since} Open pipeline on {esc(w.start)} and {esc(w.end)}{partial}: {pipeline}."
        return self._block(card("Pipeline movement", table, note=note))

    def _waterfall_reps(self) -> list[str] | None:
        """The reps whose deals make this report's waterfall (None: the whole company)."""
        if self.scope == "company":
            return None
        if self.scope == "rep":
            return [self.scope_id]
        batch = getattr(self.ctx, "batch", None)
        reps = batch.reps if batch is not None and hasattr(batch, "reps") else (
            self.ctx.source.frame("reps"))
        return list(reps.loc[reps["team_id"].astype(str) == self.scope_id, "rep_id"].astype(str))

    def _stages_kpis(self) -> set[str]:
        return {k for k in dict.fromkeys(self.ctx.cube["kpi"]) if k.startswith("stage_conversion:")}

    def deals_needed(self) -> Html:
        """How many more average-size deals reach the revenue target (or that it is met)."""
        needed = self.value("deals_needed")
        rev, target = self.value("revenue"), self.value("revenue", field="target")
        size = self.value("avg_deal_size")
        who = (
            "You" if self.scope == "rep" else "The team" if self.scope == "team" else "The company"
        )
        if is_missing(target):
            text = "No revenue target is set for this period, so there is no gap to close."
            status = "neutral"
        elif is_missing(needed):
            gap = max(target - (0 if is_missing(rev) else rev), 0)
            text = (
                f"{esc(self.fmt('revenue', gap))} short of the "
                f"{esc(self.fmt('revenue', target))} target; no won deal yet to size the gap."
            )
            status = "bad"
        elif needed <= 0:
            text = (
                f'<span class="kr-big">Target met</span><br>{esc(self.fmt("revenue", rev))} booked '
                f"against {esc(self.fmt('revenue', target))} "
                f"({theme.format_percent(rev / target)})."
            )
            status = "good"
        else:
            gap = target - rev
            status = theme.attainment_status(rev / target)
            text = (
                f'<span class="kr-big">{needed:,.0f} more deal{"s" if needed != 1 else ""}</span>'
                f"<br>at the {esc(self.fmt('avg_deal_size', size))} average would have closed the "
                f"{esc(self.fmt('revenue', gap))} gap to the {esc(self.fmt('revenue', target))} "
                f"target in {esc(self.period_name)}."
            )
        nxt = self.period.shift(1)
        next_target = self._target_for("revenue", nxt)
        if not is_missing(next_target) and not is_missing(size) and size:
            deals = math.ceil(next_target / size)
            text += (
                f"<br>{who} need{'s' if who != 'You' else ''} about "
                f"<b>{deals:,} deal{'s' if deals != 1 else ''}</b> at "
                f"that size for {esc(theme.month_name(nxt.label))}'s "
                f"{esc(self.fmt('revenue', next_target))} target."
            )
        return self._block(
            f'<div class="kr-callout kr-{status}"><div class="kr-callout-title">'
            f"Deals needed to hit target</div>{text}</div>"
        )

    def open_deals(self, limit: int = 15) -> Html:
        """This scope's deals open at the end of the period: stage, amount, age, expected close."""
        from kpi_lib import details

        deals = details.open_deals(
            self.ctx.source,
            self.period,
            self.scope,
            self.scope_id,
            as_of=self.ctx.as_of,
            stage_probabilities=self._stage_probabilities(),
        )
        if deals.empty:
            return self._block(card("Open deals", "<p>No open deals at the end of the period.</p>"))
        shown = deals.head(limit)
        at = details.snapshot_at(self.period, self.ctx.as_of)
        rows = []
        for d in shown.itertuples(index=False):
            close = "" if pd.isna(d.expected_close_at) else d.expected_close_at.strftime("%d %b %Y")
            overdue = not pd.isna(d.expected_close_at) and d.expected_close_at < at.normalize()
            rows.append(
                [
                    esc(d.account_name or d.opportunity_id)
                    + f'<div class="kr-sub">{esc(d.opportunity_id)}</div>',
                    esc(d.stage),
                    esc(format_value(d.amount, "currency")),
                    esc(format_value(d.weighted_amount, "currency")),
                    f"{d.age_days:,.0f}" if not is_missing(d.age_days) else theme.NA,
                    esc(close)
                    + (' <span class="kr-pill kr-bad">overdue</span>' if overdue else ""),
                ]
            )
        estimated = bool(shown["is_expected_close_estimated"].any())
        note = (
            f"{len(deals)} deals open, {esc(format_value(deals['amount'].sum(), 'currency'))} in "
            f"total; the {len(shown)} largest are shown."
        )
        if estimated:
            note += (
                " Expected close is estimated from the average sales cycle "
                "(the source has no expected close date)."
            )
        table = html_table(
            rows,
            ["Account", "Stage", "Amount", "Weighted", "Age (days)", "Expected close"],
            numeric=[2, 3, 4],
        )
        return self._block(card("Open deals", table, note=note))

    def activity_mix(self) -> Html:
        """This rep's activities by type against the team's median rep, as counts."""
        kinds = list(ACTIVITY_TYPES)
        mine = [self.value(f"activities_{k}") for k in kinds]
        team = [self.team_median(f"activities_{k}") for k in kinds]
        if all(is_missing(v) for v in mine):
            return self._block(
                card("Activity mix", "", note=esc(self.unavailable.get("activities", "n/a")))
            )
        fig, ax = _new_figure(6.4, 2.8)
        x = np.arange(len(kinds))
        ax.bar(x - 0.2, np.nan_to_num(mine), width=0.38, color=COLORS["primary"], label="You")
        ax.bar(x + 0.2, np.nan_to_num(team), width=0.38, color="#b0b7c3", label="Team median")
        for xi, v in zip(x - 0.2, mine, strict=True):
            if not is_missing(v):
                ax.annotate(
                    f"{v:,.0f}",
                    (xi, v),
                    ha="center",
                    va="bottom",
                    fontsize=8,
                    xytext=(0, 2),
                    textcoords="offset points",
                )
        ax.set_xticks(x, [k.capitalize() + "s" for k in kinds])
        ax.grid(axis="x", visible=False)
        ax.legend(loc="upper right")
        ax.margins(y=0.18)
        return self._block(
            card(
                "Activity mix vs the team",
                figure_html(fig, "Activities by type against the team median"),
                note=f"Logged in {esc(self.period_name)}; the team median is the "
                "middle rep of the team for each type.",
            )
        )

    # ---- glossary, data quality, footer --------------------------------------------------

    def glossary(self, kpis: Sequence[str] | None = None) -> Html:
        """The plain-language definition of each KPI shown, from the registry."""
        names = list(
            kpis
            or [
                *HEADLINE_KPIS,
                "quota_attainment",
                "deals_needed",
                "pipeline_amount",
                "weighted_pipeline",
                "churn_rate",
            ]
        )
        names = [n for n in dict.fromkeys(names) if self.scope in get_kpi(n).scopes]
        items = "".join(
            f"<div><dt>{esc(REGISTRY[n].label)}:</dt> <dd>{esc(REGISTRY[n].definition)}</dd></div>"
            for n in names
        )
        return self._block(card("What the numbers mean", f'<dl class="kr-glossary">{items}</dl>'))

    def data_quality(self) -> Html:
        """A note listing unavailable KPIs and data-quality findings; empty when all is well."""
        findings = list(getattr(self.ctx, "findings", []) or [])
        unavailable = self.unavailable
        if not findings and not unavailable:
            return Html("")
        items = [
            f"<li><b>{esc(get_kpi(k).label if k.split(':')[0] in REGISTRY else k)}</b> "
            f"is not available: {esc(reason)}</li>"
            for k, reason in unavailable.items()
        ]
        items += [f"<li>{esc(f)}</li>" for f in findings[:12]]
        if len(findings) > 12:
            items.append(
                f"<li>… and {len(findings) - 12} more findings "
                "(see <code>python -m kpi_lib validate</code>).</li>"
            )
        return self._block(
            f'<div class="kr-dq"><b>Data quality.</b> Some figures are missing '
            f"or rest on rows that were set aside:<ul>{''.join(items)}</ul></div>"
        )

    def footer(self) -> Html:
        """Provenance: parameters, data fingerprint, code version, times."""
        params = " ".join(
            f"<code>{esc(k)}={esc(v)!s}</code>" for k, v in self.parameters.items() if v != ""
        )
        return self._block(
            f'<footer class="kr-footer">Parameters: {params}<br>'
            f"Data fingerprint <code>{esc(self.ctx.fingerprint)}</code> · data as of "
            f"{esc(self.ctx.as_of)} · code <code>{esc(self.ctx.code_version)}</code> · "
            f"generated {esc(self.ctx.generated_at)}</footer>"
        )


def _stat(label: str, value: str) -> str:
    return (
        f'<div class="kr-stat"><div class="kr-stat-label">{esc(label)}</div>'
        f'<div class="kr-stat-value">{esc(value)}</div></div>'
    )


def _count(value) -> str:
    return theme.NA if is_missing(value) else f"{float(value):,.0f}"

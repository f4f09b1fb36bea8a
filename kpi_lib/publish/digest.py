"""The email digest: one message per recipient per batch, built to survive real inboxes.

Structure (``email.message.EmailMessage``)::

    multipart/mixed
      multipart/related
        multipart/alternative
          text/plain                 the same figures as plain text
          text/html                  inline CSS, table layout, no scripts, no data: images
        image/png  (Content-ID)      two or three small charts, referenced as cid: in the HTML
      text/html  attachment          the full self-contained report of each granted scope
      application/pdf attachment     the same report printed by headless Chromium

The body shows the headline KPI tiles of each granted scope (value, target status, change vs
the previous period; for a month to date: vs the same days of the previous month, with the
run-rate projection) and points to the attachments. It stays under ``MAX_BODY_BYTES``: Gmail
clips messages at about 102 KB and does not show ``data:`` images. A recipient's message holds
only the scopes ``params/recipients.yaml`` grants them; every CRM string is escaped.

Example
-------
>>> from kpi_lib.metrics.batch import Batch
>>> batch = Batch.load("reports/2026-10/_data")                              # doctest: +SKIP
>>> people = load_recipients("params/recipients.yaml", batch)                 # doctest: +SKIP
>>> with PdfPrinter() as pdf:                                                 # doctest: +SKIP
...     msg = build_digest(people.recipients[0], batch, "reports/2026-10", pdf=pdf,
...                        sender=people.sender)
>>> msg["Subject"]                                                            # doctest: +SKIP
'Sales KPIs October 2026 — Company'
"""

from __future__ import annotations

import hashlib
import html
import io
import json
import math
import os
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.headerregistry import Address
from email.message import EmailMessage, MIMEPart
from email.utils import format_datetime, make_msgid, parseaddr
from functools import cached_property
from pathlib import Path
from urllib.parse import quote, unquote

import pandas as pd

from kpi_lib.metrics.compare import attainment, change
from kpi_lib.metrics.month_to_date import is_partial, mtd_comparison
from kpi_lib.metrics.registry import HEADLINE_KPIS, get_kpi
from kpi_lib.periods import Period
from kpi_lib.publish.file_names import report_paths
from kpi_lib.publish.recipients import Recipient
from kpi_lib.report import theme
from kpi_lib.report.explain import Explainer
from kpi_lib.report.risks import risk_lines
from kpi_lib.report.theme import COLORS, STATUS_TEXT, format_change, format_value, is_missing

MAX_BODY_BYTES = 100_000
CHART_SIZE = (600, 260)  # pixels, at CHART_DPI
CHART_DPI = 100
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ROLE_OF_SCOPE = {"company": "executive", "team": "manager", "rep": "rep"}
STATUS_WORDS = {
    "good": "on track",
    "warn": "close to target",
    "bad": "behind target",
    "neutral": "",
}
FONT = "Arial, Helvetica, sans-serif"  # what Outlook and Gmail render alike


class DigestError(Exception):
    """Raised when one recipient's digest cannot be built (a granted report failed to render).

    Not a ``KpiKitError``: it fails that recipient's send, never the whole batch.
    """


class ReportNotRendered(DigestError):
    """Raised when a granted report failed to render: the recipient's digest is held back
    (never sent incomplete) and the ledger records why."""


# --------------------------------------------------------------------------------------------
# The batch's reports and identity
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportFile:
    """One rendered report of the batch: its scope and HTML file (``ok`` when it rendered)."""

    role: str
    scope: str
    scope_id: str
    name: str
    path: Path
    ok: bool
    error: str | None = None


def locate_reports(period_dir: str | Path, batch) -> dict[tuple[str, str], ReportFile]:
    """``{(scope, scope_id): ReportFile}`` for every report of the batch in ``period_dir``.

    One entry per scope. Reads ``manifest.json`` (the renderer's status and file of each
    report); without it, every scope of the batch whose file (``kpi_lib.publish.file_names``) exists
    counts as rendered.
    """
    period_dir = Path(period_dir)
    manifest = period_dir / "manifest.json"
    found: dict[tuple[str, str], ReportFile] = {}
    if manifest.is_file():
        for r in json.loads(manifest.read_text(encoding="utf-8")).get("reports", []):
            path = period_dir / r["html"]
            ok = r.get("status") == "ok" and path.is_file()
            found[(r["scope"], str(r["scope_id"]))] = ReportFile(
                r["role"],
                r["scope"],
                str(r["scope_id"]),
                r.get("scope_name") or r["scope_id"],
                path,
                ok,
                None if ok else (r.get("error") or "report missing"),
            )
        return found
    names = {s.scope_id: s.name for s in batch.scopes()}
    for (scope, scope_id), relative in report_paths(batch.scopes()).items():
        path = period_dir / relative
        found[(scope, scope_id)] = ReportFile(
            relative.parts[0],
            scope,
            scope_id,
            names[scope_id],
            path,
            path.is_file(),
            None if path.is_file() else "report missing",
        )
    return found


def scopes_header(scope_ids) -> str:
    """The ``X-KPI-Scopes`` header: each id percent-encoded (ids may hold spaces), space-separated.

    Example: ``scopes_header(["all", "Cara Losch"])`` -> ``'all Cara%20Losch'``.
    """
    return " ".join(quote(str(s), safe="") for s in scope_ids)


def parse_scopes_header(text) -> list[str]:
    """The scope ids of an ``X-KPI-Scopes`` header (``scopes_header``)."""
    return [unquote(part) for part in str(text or "").split()]


def edition(batch) -> str:
    """``final`` for a complete period, ``mtd-<as_of>`` for a period still running."""
    return f"mtd-{batch.as_of}" if is_partial(batch.period, batch.as_of) else "final"


def batch_key(batch) -> str:
    """What the send ledger keys a batch by: its period and edition (not the data fingerprint).

    A CRM export refreshed every night changes the data fingerprint; keying by it would send a
    complete month again on every rerun. Example: ``'2026-10/final'``.
    """
    return f"{batch.period.label}/{edition(batch)}"


# --------------------------------------------------------------------------------------------
# Figures: one accessor over the cube (and the month-to-date table)
# --------------------------------------------------------------------------------------------


class Figures:
    """Cube lookups for one batch: ``get(kpi, scope, scope_id, period, field)``."""

    def __init__(self, batch, mtd: pd.DataFrame | None = None):
        self.batch = batch
        cube = batch.cube
        self._cube = cube.set_index(["period", "scope", "scope_id", "kpi"]).sort_index()
        self.mtd = None if mtd is None else mtd.set_index(["scope", "scope_id", "kpi"])
        has_data = getattr(batch, "has_data", lambda _: True)
        # The cube's periods from the first with data: no chart starts with empty months.
        self.periods = [p for p in sorted(str(p) for p in cube["period"].unique()) if has_data(p)]

    def get(
        self, kpi: str, scope: str, scope_id: str, period: str | None = None, field: str = "value"
    ) -> float:
        """One figure; NaN for n/a and for a period before the org's data starts."""
        if period is not None and period not in self.periods:
            return math.nan
        try:
            value = self._cube.at[(period or self.batch.period.label, scope, scope_id, kpi), field]
        except KeyError:
            return math.nan
        return math.nan if pd.isna(value) else float(value)

    @cached_property
    def explain(self) -> Explainer:
        """The sentences and judgements the digest shares with the reports."""
        return Explainer.of_batch(self.batch, self.get)

    def history(self, kpi: str, scope: str, scope_id: str, field: str = "value") -> list[float]:
        return [self.get(kpi, scope, scope_id, p, field) for p in self.periods]

    def to_date(self, kpi: str, scope: str, scope_id: str) -> dict | None:
        if self.mtd is None:
            return None
        try:
            return self.mtd.loc[(scope, scope_id, kpi)].to_dict()
        except KeyError:
            return None


# --------------------------------------------------------------------------------------------
# Charts: small PNGs, attached as related parts and shown with cid: references
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Chart:
    """One inline image: PNG bytes, its Content-ID (without brackets) and alt text."""

    name: str
    png: bytes
    alt: str
    cid: str = ""


def _figure():
    from matplotlib.figure import Figure

    theme.apply_chart_theme()
    w, h = CHART_SIZE
    return Figure(figsize=(w / CHART_DPI, h / CHART_DPI), dpi=CHART_DPI, layout="constrained")


def _png(fig) -> bytes:
    """The figure as a small PNG: exactly ``CHART_SIZE`` pixels, quantised to 64 colours."""
    import matplotlib
    from PIL import Image

    raw = io.BytesIO()
    with matplotlib.rc_context({"savefig.bbox": "standard"}):  # the theme crops ("tight")
        fig.savefig(raw, format="png", dpi=CHART_DPI)
    image = Image.open(raw).convert("RGB").quantize(colors=64, method=Image.Quantize.MEDIANCUT)
    out = io.BytesIO()
    image.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _period_ticks(ax, labels: list[str], partial: bool) -> None:
    """Every third period labelled, counting back from the last (marked "to date" if partial)."""
    last = len(labels) - 1
    shown = [i for i in range(len(labels)) if (last - i) % 3 == 0]
    names = [theme.short_period(labels[i]) for i in shown]
    if partial and names:
        names[-1] += " (to date)"
    ax.set_xticks(shown, names)


def _bar_trend(
    fig_title: str,
    labels: list[str],
    values: list[float],
    targets: list[float],
    unit: str,
    partial: bool,
    projection: float = math.nan,
) -> bytes:
    fig = _figure()
    ax = fig.add_subplot()
    xs = range(len(labels))
    heights = [0 if is_missing(v) else v for v in values]
    colors = [COLORS["primary"] if i == len(labels) - 1 else theme.OKABE_ITO["sky"] for i in xs]
    bars = ax.bar(xs, heights, color=colors, width=0.7)
    if partial and len(labels):
        bars[-1].set_hatch("///")
        bars[-1].set_edgecolor("white")
        if not is_missing(projection):
            ax.bar(
                [len(labels) - 1],
                [projection],
                width=0.7,
                fill=False,
                edgecolor=COLORS["primary"],
                linestyle="--",
                linewidth=1.2,
                label="run-rate projection",
            )
    if any(not is_missing(t) for t in targets):
        ax.plot(
            xs,
            targets,
            color=COLORS["target"],
            linestyle="--",
            linewidth=1.2,
            marker="_",
            label="target",
        )
    return _trend_png(fig, ax, fig_title, labels, unit, partial)


def _trend_png(fig, ax, fig_title: str, labels: list[str], unit: str, partial: bool) -> bytes:
    """A monthly trend chart's period axis, value axis, title and legend; then the PNG."""
    _period_ticks(ax, labels, partial)
    ax.yaxis.set_major_formatter(theme.axis_formatter(unit))
    ax.tick_params(axis="x", labelsize=8)
    ax.set_title(fig_title)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(loc="upper left", fontsize=8)
    return _png(fig)


def _line_trend(
    fig_title: str,
    labels: list[str],
    values: list[float],
    targets: list[float],
    unit: str,
    partial: bool,
) -> bytes:
    fig = _figure()
    ax = fig.add_subplot()
    xs = list(range(len(labels)))
    ax.plot(xs, values, color=COLORS["primary"], marker="o", markersize=3, linewidth=2)
    if partial and len(xs) >= 2:  # the running month: a hollow point on a dotted segment
        ax.plot(xs[-2:], values[-2:], color="white", linewidth=2.2)
        ax.plot(xs[-2:], values[-2:], color=COLORS["primary"], linestyle=":", linewidth=2)
        ax.plot(
            xs[-1:],
            values[-1:],
            marker="o",
            markersize=6,
            markerfacecolor="white",
            markeredgecolor=COLORS["primary"],
            label="to date",
        )
    if any(not is_missing(t) for t in targets):
        ax.plot(xs, targets, color=COLORS["target"], linestyle="--", linewidth=1.2, label="target")
    return _trend_png(fig, ax, fig_title, labels, unit, partial)


def _hbar(fig_title: str, names: list[str], values: list[float], unit: str) -> bytes:
    fig = _figure()
    ax = fig.add_subplot()
    order = sorted(range(len(names)), key=lambda i: -1 if is_missing(values[i]) else values[i])
    ax.barh(
        [names[i][:28] for i in order],
        [0 if is_missing(values[i]) else values[i] for i in order],
        color=COLORS["primary"],
    )
    ax.xaxis.set_major_formatter(theme.axis_formatter(unit))
    ax.tick_params(axis="y", labelsize=8)
    ax.set_title(fig_title)
    return _png(fig)


def digest_charts(figures: Figures, scope: str, scope_id: str, name: str) -> list[Chart]:
    """Two or three charts for one scope: revenue trend, win rate trend, and a breakdown.

    The breakdown stays inside the scope: revenue by team for the company, revenue by rep of
    the team for a team, activities per period for a rep.
    """
    batch, labels = figures.batch, figures.periods
    name = _one_line(name)
    partial = is_partial(batch.period, batch.as_of)
    period_name = theme.month_name(batch.period.label)
    projection = math.nan
    mtd = figures.to_date("revenue", scope, scope_id)
    if partial and mtd:
        projection = mtd["projection"]
    charts = []
    revenue = figures.history("revenue", scope, scope_id)
    if any(not is_missing(v) for v in revenue):
        charts.append(
            Chart(
                "revenue",
                _bar_trend(
                    f"Revenue: {name}",
                    labels,
                    revenue,
                    figures.history("revenue", scope, scope_id, "target"),
                    "currency",
                    partial,
                    projection,
                ),
                f"Revenue per month, last {len(labels)} months, against target"
                + (" (the last month is to date)" if partial else ""),
            )
        )
    win = figures.history("win_rate", scope, scope_id)
    if any(not is_missing(v) for v in win):
        charts.append(
            Chart(
                "win_rate",
                _line_trend(
                    f"Win rate: {name}",
                    labels,
                    win,
                    figures.history("win_rate", scope, scope_id, "target"),
                    "ratio",
                    partial,
                ),
                f"Win rate per month, last {len(labels)} months",
            )
        )
    if scope == "company":
        teams = list(batch.teams.itertuples(index=False))
        values = [figures.get("revenue", "team", t.team_id) for t in teams]
        if teams and any(not is_missing(v) for v in values):
            charts.append(
                Chart(
                    "breakdown",
                    _hbar(
                        f"Revenue by team, {period_name}",
                        [_one_line(t.team_name) for t in teams],
                        values,
                        "currency",
                    ),
                    f"Revenue by team in {period_name}",
                )
            )
    elif scope == "team":
        reps = batch.reps[(batch.reps["team_id"] == scope_id) & batch.reps["is_active"]]
        values = [figures.get("revenue", "rep", r) for r in reps["rep_id"]]
        if len(reps) and any(not is_missing(v) for v in values):
            charts.append(
                Chart(
                    "breakdown",
                    _hbar(
                        f"Revenue by rep, {period_name}",
                        [_one_line(n) for n in reps["rep_name"]],
                        values,
                        "currency",
                    ),
                    f"Revenue by rep of the team in {period_name}",
                )
            )
    else:
        acts = figures.history("activities", scope, scope_id)
        if any(not is_missing(v) for v in acts):
            charts.append(
                Chart(
                    "activities",
                    _bar_trend(
                        "Activities per month",
                        labels,
                        acts,
                        figures.history("activities", scope, scope_id, "target"),
                        "count",
                        partial,
                    ),
                    f"Activities per month, last {len(labels)} months",
                )
            )
    return charts[:3]


# --------------------------------------------------------------------------------------------
# Tiles
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Tile:
    """One headline KPI as the digest shows it (text already formatted)."""

    kpi: str
    label: str
    value: str
    target_line: str
    target_status: str
    change_line: str
    change_status: str
    note: str = ""


def scope_tiles(figures: Figures, scope: str, scope_id: str) -> list[Tile]:
    """The headline KPI tiles of one scope (KPIs not defined at that scope are left out)."""
    batch = figures.batch
    partial = is_partial(batch.period, batch.as_of)
    tiles = []
    for kpi in HEADLINE_KPIS:
        meta = get_kpi(kpi)
        if scope not in meta.scopes:
            continue
        reason = batch.unavailable.get(kpi)
        value = figures.get(kpi, scope, scope_id)
        target = figures.get(kpi, scope, scope_id, field="target")
        mtd = figures.to_date(kpi, scope, scope_id) if partial else None
        if reason or is_missing(value):
            tiles.append(
                Tile(
                    kpi,
                    meta.label,
                    theme.NA,
                    reason or "no data for this period",
                    "neutral",
                    "",
                    "neutral",
                )
            )
            continue
        note = ""
        ex = figures.explain
        compared = batch.period.previous.label
        cohort = (
            ex.mature_cohort(kpi, scope, scope_id) if mtd is None and ex.maturity(kpi) else None
        )
        if cohort is not None:  # the latest mature cohort stands in for this period's
            note = (
                f"{ex.cohort_line(kpi, cohort)}; {theme.short_period(batch.period.label)} so far "
                f"{format_value(value, meta.unit)}, still maturing"
            )
            value, target = cohort.value, cohort.target
            compared = Period.parse(cohort.period).previous.label
        if mtd is not None:
            delta = mtd["change"]
            versus = f"1-{pd.Timestamp(mtd['previous_as_of']).day} " + pd.Timestamp(
                mtd["previous_as_of"]
            ).strftime("%b")
            basis = mtd["projection"] if meta.additive else value
            attain = mtd["projected_attainment"]
            if meta.additive and not is_missing(basis):
                note = f"projected {format_value(basis, meta.unit)} by month end"
        else:
            delta = change(value, figures.get(kpi, scope, scope_id, compared), meta.unit)
            versus = theme.short_period(compared)
            attain = attainment(value, target, meta.higher_is_better)
        status = theme.attainment_status(attain)
        if is_missing(target):
            target_line = "no target set"
        else:
            what = "projected: " if mtd is not None and meta.additive else ""
            word = STATUS_WORDS[status]
            target_line = (
                f"{what}{theme.format_percent(attain)} of "
                f"{format_value(target, meta.unit)} target" + (f" · {word}" if word else "")
            )
        if mtd is None and compared not in figures.periods:
            change_line, change_status = f"no data for {versus}", "neutral"
        elif is_missing(delta):
            change_line, change_status = f"– vs {versus}", "neutral"
        else:
            arrow = theme.change_arrow(delta, meta.unit)
            change_line = f"{arrow} {format_change(delta, meta.unit)} vs {versus}"
            change_status = theme.direction_status(
                theme.shown_change(delta, meta.unit), meta.higher_is_better
            )
            noise = ex.noise(kpi, scope, scope_id, compared) if mtd is None else None
            if noise is not None and noise.significant is False and cohort is None:
                change_line += f" · {noise.text}"
                change_status = "neutral"
        tiles.append(
            Tile(
                kpi,
                meta.label,
                format_value(value, meta.unit),
                target_line,
                status,
                change_line,
                change_status,
                note,
            )
        )
    return tiles


# --------------------------------------------------------------------------------------------
# The body: HTML (inline CSS, tables) and plain text
# --------------------------------------------------------------------------------------------

e = html.escape


def _tile_html(t: Tile) -> str:
    edge = {"good": COLORS["good"], "warn": COLORS["warn"], "bad": COLORS["bad"]}.get(
        t.target_status, COLORS["grid"]
    )
    line = f"font-family:{FONT};font-size:12px;line-height:16px;"
    rows = [
        f'<div style="{line}color:{COLORS["muted"]};">{e(t.label)}</div>',
        f'<div style="font-family:{FONT};font-size:22px;line-height:28px;font-weight:bold;'
        f'color:{COLORS["ink"]};">{e(t.value)}</div>',
        f'<div style="{line}color:{STATUS_TEXT[t.target_status]};">{e(t.target_line)}</div>',
    ]
    if t.change_line:
        rows.append(
            f'<div style="{line}color:{STATUS_TEXT[t.change_status]};">{e(t.change_line)}</div>'
        )
    if t.note:
        rows.append(f'<div style="{line}color:{COLORS["muted"]};">{e(t.note)}</div>')
    return (
        f'<td class="tile" data-kpi="{e(t.kpi)}" width="50%" valign="top" '
        f'style="padding:4px;width:50%;">'
        f'<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" '
        f'style="border-collapse:separate;border:1px solid {COLORS["grid"]};'
        f'border-left:4px solid {edge};background:#ffffff;">'
        f'<tr><td style="padding:8px 10px;">{"".join(rows)}</td></tr></table></td>'
    )


def _tiles_html(tiles: list[Tile]) -> str:
    cells = [_tile_html(t) for t in tiles]
    if len(cells) % 2:
        cells.append('<td width="50%" style="width:50%;">&nbsp;</td>')
    rows = "".join(f"<tr>{cells[i]}{cells[i + 1]}</tr>" for i in range(0, len(cells), 2))
    return (
        f'<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" '
        f'style="table-layout:fixed;">{rows}</table>'
    )


def _list_html(css_class: str, title: str, items: list[str]) -> str:
    """A titled bullet list under a scope's tiles ("What moved", "Deals at risk"); nothing
    when ``items`` is empty."""
    if not items:
        return ""
    rows = "".join(f'<li style="margin:0 0 6px;">{e(x)}</li>' for x in items)
    return (
        f'<div class="{css_class}" style="font-family:{FONT};font-size:13px;line-height:19px;'
        f'color:{COLORS["ink"]};padding:8px 4px 0;"><b>{e(title)}</b>'
        f'<ul style="margin:4px 0 0;padding-left:18px;">{rows}</ul></div>'
    )


def _row(inner: str, padding: str = "12px 16px") -> str:
    return f'<tr><td style="padding:{padding};">{inner}</td></tr>'


@dataclass(frozen=True)
class ScopeSection:
    """One granted scope in a digest: its report file and its tiles."""

    report: ReportFile
    tiles: list[Tile]
    attachment_stem: str
    with_pdf: bool = True
    sentences: list[str] = field(default_factory=list)
    """What moved (``Explainer.sentences``), as the report's Highlights say it."""
    risks: list[str] = field(default_factory=list)
    """The scope's top deals at risk (``report.risks.risk_lines``), as the report words them."""


def digest_html(
    subject: str,
    recipient: Recipient,
    batch,
    sections: list[ScopeSection],
    charts: list[Chart],
    note: str,
) -> str:
    """The HTML body: a 600 px table that narrows to the phone, inline styles, cid: images."""
    period_name = theme.month_name(batch.period.label)
    band = (
        f'<div style="font-family:{FONT};font-size:12px;letter-spacing:1px;'
        f'text-transform:uppercase;color:#c9d6ea;">Sales KPIs &middot; {e(period_name)}'
        f'</div><div style="font-family:{FONT};font-size:22px;line-height:28px;'
        f'font-weight:bold;color:#ffffff;">'
        f"{e(', '.join(s.report.name for s in sections))}</div>"
        f'<div style="font-family:{FONT};font-size:13px;line-height:18px;color:#dbe4f0;">'
        f"{e(note)}</div>"
    )
    parts = [
        f'<tr><td bgcolor="{COLORS["band"]}" style="background:{COLORS["band"]};'
        f'padding:18px 16px;">{band}</td></tr>',
        _row(
            f'<div style="font-family:{FONT};font-size:14px;line-height:20px;'
            f'color:{COLORS["ink"]};">Hello {e(_one_line(recipient.name))}, '
            f"here are the headline "
            f"figures. The full report{'s are' if len(sections) > 1 else ' is'} attached "
            f"(HTML to open in a browser, PDF to print).</div>",
            "14px 16px 4px",
        ),
    ]
    for s in sections:
        parts.append(
            _row(
                f'<div style="font-family:{FONT};font-size:17px;line-height:22px;font-weight:bold;'
                f'color:{COLORS["ink"]};padding:0 4px 6px;">{e(s.report.name)}</div>'
                + _tiles_html(s.tiles)
                + _list_html("moves", "What moved", s.sentences)
                + _list_html("risks", "Deals at risk", s.risks),
                "10px 12px",
            )
        )
    for c in charts:
        w, h = CHART_SIZE
        parts.append(
            _row(
                f'<img src="cid:{e(c.cid)}" width="{w}" height="{h}" alt="{e(c.alt)}" '
                f'style="display:block;width:100%;max-width:{w}px;height:auto;border:0;'
                f'outline:none;text-decoration:none;">',
                "6px 16px",
            )
        )
    files = "".join(
        f'<li style="margin:0 0 4px;">{e(s.report.name)}: {e(s.attachment_stem)}.html'
        + (f" and {e(s.attachment_stem)}.pdf" if s.with_pdf else "")
        + "</li>"
        for s in sections
    )
    parts.append(
        _row(
            f'<div style="font-family:{FONT};font-size:14px;line-height:20px;color:{COLORS["ink"]};">'
            f'<b>Full report attached.</b><ul style="margin:6px 0 0;padding-left:20px;">{files}</ul>'
            f"</div>",
            "10px 16px",
        )
    )
    parts.append(
        _row(
            f'<div style="font-family:{FONT};font-size:11px;line-height:16px;'
            f'color:{COLORS["muted"]};">Sent automatically by the sales KPI kit. Data as of '
            f"{e(str(batch.as_of))}; data fingerprint {e(str(batch.fingerprint))}; code "
            f"{e(str(batch.code_version))}. You receive this digest because sales "
            "operations lists you as a recipient; reply to reach them.</div>",
            "12px 16px 18px",
        )
    )
    return (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{e(subject)}</title></head>"
        f'<body style="margin:0;padding:0;background:{COLORS["page"]};">'
        f'<table role="presentation" width="100%" cellpadding="0" cellspacing="0" border="0" '
        f'style="background:{COLORS["page"]};"><tr><td align="center" style="padding:12px 6px;">'
        f'<table role="presentation" width="600" cellpadding="0" cellspacing="0" border="0" '
        f'style="width:100%;max-width:600px;background:#ffffff;">{"".join(parts)}</table>'
        f"</td></tr></table></body></html>"
    )


def digest_text(recipient: Recipient, batch, sections: list[ScopeSection], note: str) -> str:
    """The plain-text alternative: the same tiles, one line each, and the attachment names."""
    lines = [
        f"Hello {_one_line(recipient.name)},",
        "",
        f"Sales KPIs {theme.month_name(batch.period.label)}. {note}",
        "",
    ]
    for s in sections:
        lines += [s.report.name, "-" * len(s.report.name)]
        for t in s.tiles:
            extra = "; ".join(x for x in (t.target_line, t.change_line, t.note) if x)
            lines.append(f"{t.label}: {t.value}" + (f" ({extra})" if extra else ""))
        if s.sentences:
            lines += ["", "What moved:", *(f"- {x}" for x in s.sentences)]
        if s.risks:
            lines += ["", "Deals at risk:", *(f"- {x}" for x in s.risks)]
        lines.append("")
    lines.append("Full report attached:")
    lines += [
        f"  {s.attachment_stem}.html (open in a browser)"
        + (f" and {s.attachment_stem}.pdf" if s.with_pdf else "")
        for s in sections
    ]
    lines += [
        "",
        f"Data as of {batch.as_of}; data fingerprint {batch.fingerprint}; "
        f"code {batch.code_version}.",
        "Sent automatically by the sales KPI kit.",
    ]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# PDF: the full report printed by headless Chromium (cached beside the batch)
# --------------------------------------------------------------------------------------------


class PdfPrinter:
    """Print report HTML files to PDF with one headless Chromium, reused for the batch.

    PDFs are cached in ``<period>/_pdf/<role>/<file stem>.pdf`` and printed again only when the
    HTML is newer. Use as a context manager so the browser is closed. Without Chromium (or when
    it does not start) ``missing`` says why, and digests go out with the HTML report alone.
    """

    def __init__(self, executable: str | None = None):
        self.executable = executable or os.environ.get("KPI_CHROMIUM") or CHROMIUM
        self._pw = self._browser = None
        self._failed: str | None = None

    def __enter__(self) -> PdfPrinter:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        if self._browser is not None:
            self._browser.close()
        if self._pw is not None:
            self._pw.stop()
        self._pw = self._browser = None

    @property
    def missing(self) -> str | None:
        """Why no PDF can be printed here (Chromium absent or failing to start), else None."""
        if self._failed is None and not Path(self.executable).exists():
            self._failed = (
                f"Chromium not found at {self.executable} (install it: apt-get install chromium)"
            )
        return self._failed

    def browser(self):
        """The running headless Chromium (started on first use), for callers that need a page."""
        return self._ensure()

    def _ensure(self):
        if self.missing:
            raise DigestError(f"cannot print the PDF attachments: {self.missing}")
        if self._browser is None:
            from playwright.sync_api import Error as PlaywrightError
            from playwright.sync_api import sync_playwright

            try:
                self._pw = sync_playwright().start()
                self._browser = self._pw.chromium.launch(
                    executable_path=self.executable, args=CHROMIUM_ARGS
                )
            except PlaywrightError as exc:
                self.close()
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else repr(exc)
                self._failed = f"Chromium at {self.executable} did not start: {first}"
                raise DigestError(f"cannot print the PDF attachments: {self._failed}") from exc
        return self._browser

    def pdf(self, html_path: Path, cache: Path | None = None) -> bytes:
        """The PDF of ``html_path`` (A4, backgrounds printed); from ``cache`` when fresh."""
        html_path = Path(html_path)
        if (
            cache is not None
            and cache.is_file()
            and cache.stat().st_mtime >= html_path.stat().st_mtime
        ):
            return cache.read_bytes()
        page = self._ensure().new_page()
        try:
            # Reports are self-contained: nothing may be fetched from the network.
            page.route("http*://**", lambda route: route.abort())
            page.goto(html_path.resolve().as_uri(), wait_until="load")
            data = page.pdf(
                format="A4",
                print_background=True,
                margin={"top": "12mm", "bottom": "12mm", "left": "10mm", "right": "10mm"},
            )
        finally:
            page.close()
        if cache is not None:
            cache.parent.mkdir(parents=True, exist_ok=True)
            scratch = cache.with_name(f".{cache.name}.tmp-{os.getpid()}")
            scratch.write_bytes(data)
            os.replace(scratch, cache)
        return data


# --------------------------------------------------------------------------------------------
# The message
# --------------------------------------------------------------------------------------------


def _one_line(text: str) -> str:
    """A CRM string fit for a header: whitespace (CR/LF included) collapsed to single spaces."""
    return " ".join(str(text).split())


def _address(text: str) -> Address:
    name, addr = parseaddr(text)
    user, _, domain = addr.partition("@")
    return Address(display_name=_one_line(name), username=user, domain=domain)


def message_id(key: str, email: str, sender: str) -> str:
    """A stable Message-ID per batch and recipient, so a resend is recognisable as the same."""
    digest = hashlib.sha256(f"{key}|{email.lower()}".encode()).hexdigest()[:24]
    domain = parseaddr(sender)[1].partition("@")[2] or "kpi-kit.invalid"
    return f"<kpi-{digest}@{domain}>"


def subject_for(batch, sections: list[ScopeSection]) -> str:
    """``Sales KPIs October 2026 — North America Enterprise`` (``+ 1 more`` for several)."""
    period = theme.month_name(batch.period.label)
    if is_partial(batch.period, batch.as_of):
        day = pd.Timestamp(batch.as_of)
        period += f" to date (1-{day.day} {day.strftime('%b')})"
    names = sections[0].report.name
    if len(sections) > 1:
        names += f" + {len(sections) - 1} more"
    return _one_line(f"Sales KPIs {period} — {names}")


def granted_reports(
    recipient: Recipient, reports: dict[tuple[str, str], ReportFile], teams: set[str]
) -> tuple[list[ReportFile], list[str]]:
    """The reports of the recipient's scopes that exist in the batch, and notes on the others.

    ``teams`` are the batch's team ids (``Recipient.scope_pairs``). A granted rep with no report
    this period (not active in it) is left out with a note; a report that failed to render
    raises ``DigestError``: the digest would be incomplete.
    """
    found, notes = [], []
    for scope, scope_id in recipient.scope_pairs(teams):
        report = reports.get((scope, scope_id))
        if report is None:
            notes.append(f"no report for scope '{scope_id}' in this batch (not active)")
            continue
        if not report.ok:
            raise ReportNotRendered(
                f"report {report.role}/{scope_id} did not render "
                f"({report.error}); not sending an incomplete digest"
            )
        found.append(report)
    return found, notes


def load_mtd(period_dir: Path, batch) -> pd.DataFrame | None:
    """The month-to-date table of a partial batch: ``<period>/mtd.csv``, else computed."""
    if not is_partial(batch.period, batch.as_of):
        return None
    path = Path(period_dir) / "mtd.csv"
    if path.is_file():
        table = pd.read_csv(path, dtype={"scope_id": str})
        if str(table["as_of"].iloc[0]) == str(batch.as_of):
            return table
    return mtd_comparison(batch.source, batch.as_of, targets=batch.targets or "")


def build_digest(
    recipient: Recipient,
    batch,
    period_dir: str | Path,
    *,
    pdf: PdfPrinter,
    sender: str,
    reply_to: str | None = None,
    reports: dict[tuple[str, str], ReportFile] | None = None,
    figures: Figures | None = None,
    now: datetime | None = None,
) -> EmailMessage | None:
    """The digest for one recipient, or ``None`` when none of their scopes has a report.

    Parameters
    ----------
    recipient
        Who it is for; only ``recipient.scopes`` go into the message.
    batch
        The rendered batch (``Batch.load('<period>/_data')``).
    period_dir
        ``reports/<period>``, where the HTML reports are.
    pdf
        The ``PdfPrinter`` that prints each attached report.
    sender, reply_to
        ``From`` and ``Reply-To`` (from ``params/recipients.yaml``).
    reports, figures
        Shared across recipients by ``send_batch``; computed here when omitted.

    Raises
    ------
    DigestError
        A granted report did not render, or the HTML body would exceed ``MAX_BODY_BYTES``.
    """
    period_dir = Path(period_dir)
    theme.use_currency(getattr(batch, "currency", None))
    reports = reports if reports is not None else locate_reports(period_dir, batch)
    granted, notes = granted_reports(recipient, reports, set(batch.teams["team_id"].astype(str)))
    if not granted:
        return None
    if figures is None:
        figures = Figures(batch, load_mtd(period_dir, batch))
    label = batch.period.label
    partial = is_partial(batch.period, batch.as_of)
    pdfs = _print_pdfs(pdf, period_dir, granted)
    sections = [
        ScopeSection(
            r,
            scope_tiles(figures, r.scope, r.scope_id),
            f"sales-kpis-{label}-{r.role}-{r.path.stem}",
            with_pdf=r.path in pdfs,
            sentences=[] if partial else figures.explain.sentences(r.scope, r.scope_id),
            risks=risk_lines(batch, r.scope, r.scope_id),
        )
        for r in granted
    ]
    first = granted[0]
    charts = [
        Chart(c.name, c.png, c.alt, make_msgid(idstring=c.name, domain="kpi-kit.local")[1:-1])
        for c in digest_charts(figures, first.scope, first.scope_id, first.name)
    ]
    note = (
        f"Month to date: data to {batch.as_of}, compared with the same days of the previous month."
        if partial
        else f"Data as of {batch.as_of}."
    )
    subject = subject_for(batch, sections)
    body = digest_html(subject, recipient, batch, sections, charts, note)
    if len(body.encode("utf-8")) > MAX_BODY_BYTES:
        raise DigestError(
            f"digest body for {recipient.email} is {len(body.encode()):,} bytes, "
            f"over the {MAX_BODY_BYTES:,}-byte limit (Gmail clips it)"
        )

    msg = EmailMessage()
    msg["Subject"] = subject
    msg["From"] = _address(sender)
    msg["To"] = Address(
        display_name=_one_line(recipient.name),
        username=recipient.email.partition("@")[0],
        domain=recipient.email.partition("@")[2],
    )
    if reply_to:
        msg["Reply-To"] = _address(reply_to)
    msg["Date"] = format_datetime(now or datetime.now(UTC))
    msg["Message-ID"] = message_id(batch_key(batch), recipient.email, sender)
    msg["Auto-Submitted"] = "auto-generated"
    msg["X-KPI-Batch"] = batch_key(batch)
    msg["X-KPI-Scopes"] = scopes_header(r.scope_id for r in granted)
    alternative = MIMEPart()
    alternative.set_content(digest_text(recipient, batch, sections, " ".join([note, *notes])))
    alternative.add_alternative(body, subtype="html")
    related = MIMEPart()
    related.make_related()
    related.attach(alternative)
    for c in charts:
        related.add_related(
            c.png,
            maintype="image",
            subtype="png",
            cid=f"<{c.cid}>",
            disposition="inline",
            filename=f"{c.name}.png",
        )
    msg.make_mixed()
    msg.attach(related)
    for s in sections:
        report = s.report
        msg.add_attachment(
            report.path.read_bytes(),
            maintype="text",
            subtype="html",
            filename=f"{s.attachment_stem}.html",
        )
        if s.with_pdf:
            msg.add_attachment(
                pdfs[report.path],
                maintype="application",
                subtype="pdf",
                filename=f"{s.attachment_stem}.pdf",
            )
    return msg


def _print_pdfs(pdf: PdfPrinter, period_dir: Path, reports: list[ReportFile]) -> dict[Path, bytes]:
    """The PDF of each report, ``{html path: bytes}``; empty when Chromium is missing or does
    not start (``pdf.missing`` says why), so the digest goes out with the HTML alone."""
    if pdf.missing:
        return {}
    try:
        return {
            r.path: pdf.pdf(r.path, period_dir / "_pdf" / r.role / f"{r.path.stem}.pdf")
            for r in reports
        }
    except DigestError:
        if pdf.missing:
            return {}
        raise

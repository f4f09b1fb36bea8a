"""One report page: ``open_report`` (the first call of every report notebook) and ``Report``.

A report notebook opens its report with ``open_report`` and then calls one method per
section; each returns an ``Html`` block that Jupyter displays and nbconvert exports as is.
Nothing here computes a KPI: values, targets and their parts come from the cube, labels,
units and definitions from the registry, colours and formats from ``kpi_lib.report.theme``.
Every CRM string (names, stages, findings) is escaped before it goes into HTML.

This module holds ``open_report`` and the ``Report`` class (its data access); the rest of the
report wing is split by concern: ``html`` (blocks, escaping, tables, cards), ``tiles`` (KPI
tiles and sparklines), ``charts`` (figures, ticks, the "to date" marking), ``styles`` (the CSS),
``in_progress`` (a period still in progress: the month-to-date comparison), ``explain`` (the
sentences about drivers, normal ranges and noise that the digest shares) and the section mixins
``headline``, ``bridge``, ``trends``, ``outlook``, ``risks``, ``tables``, ``notes``.

Example
-------
>>> r = open_report("manager", "2026-10", "na-ent")       # doctest: +SKIP
>>> r.header()                                             # doctest: +SKIP
"""

from __future__ import annotations

import math
from functools import cached_property

import pandas as pd

from kpi_lib.errors import ParamsError
from kpi_lib.metrics import deals
from kpi_lib.metrics.deals import STAGE_NOT_RECORDED
from kpi_lib.metrics.registry import get_kpi
from kpi_lib.paths import project_path, resolve_source
from kpi_lib.periods import Period, last_complete_month
from kpi_lib.report import theme
from kpi_lib.report.bridge import BridgeSections
from kpi_lib.report.charts import TO_DATE, figure_html, period_ticks
from kpi_lib.report.headline import ROLE_TITLES, HeadlineSections
from kpi_lib.report.html import Html, bar_html, card, esc, html_table
from kpi_lib.report.in_progress import PartialPeriod, partial_period
from kpi_lib.report.notes import NoteSections
from kpi_lib.report.outlook import OutlookSections
from kpi_lib.report.risks import RiskSections
from kpi_lib.report.styles import CSS
from kpi_lib.report.tables import ACTIVITY_TYPES, TableSections
from kpi_lib.report.theme import format_value, is_missing
from kpi_lib.report.tiles import delta_html, kpi_tile, sparkline_svg
from kpi_lib.report.trends import TrendSections

ROLES: dict[str, str] = {"executive": "company", "manager": "team", "rep": "rep"}
"""Report role -> the scope it reports on."""


def open_report(
    role: str,
    period: str = "",
    scope_id: str = "all",
    source: str = "data/demo.duckdb",
    batch_dir: str = "",
    targets: str = "",
) -> Report:
    """Validate a notebook's parameters and load its data: the first call of every report.

    Parameters
    ----------
    role
        ``executive`` (scope_id ``all``), ``manager`` (a team_id) or ``rep`` (a rep_id).
    period, scope_id, source, batch_dir, targets
        The notebook's parameters; relative paths resolve against the project root. Empty
        ``targets``: the org's own (``kpi_lib.data.org``; ``params/targets.yaml`` for the demo).

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
    from kpi_lib.metrics import batch

    if role not in ROLES:
        raise ParamsError(f"unknown report role '{role}'; roles: {', '.join(ROLES)}")
    resolved_targets = str(project_path(targets)) if targets else None
    # The notebook's parameters are the edge: parsed here, once, into typed values.
    parsed = Period.parse(period) if period else last_complete_month()
    ctx = batch.report_context(
        parsed,
        scope_id,
        resolve_source(source),
        resolve_source(batch_dir),
        resolved_targets,
        scope=ROLES[role],
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


class Report(
    HeadlineSections,
    BridgeSections,
    TrendSections,
    OutlookSections,
    RiskSections,
    TableSections,
    NoteSections,
):
    """One report: its context (period, scope, cube, source) and one method per section.

    Every section method returns an ``Html`` block; the notebook displays them in order. The
    sections live in mixins by concern (``headline``, ``bridge``, ``trends``, ``outlook``,
    ``risks``, ``tables``, ``notes``); this class holds the data access they share.
    """

    def outlook_and_risks(self) -> Html:
        """The outlook and, beside it, the amount at risk per team (one row on a wide screen,
        stacked on a phone): the executive's view of what next month rests on."""
        return self._block(
            f'<div class="kr-grid-2 kr-outlook-row">{self.outlook().data}'
            f"{self.deals_at_risk().data}</div>"
        )

    def __init__(self, role: str, ctx, parameters: dict):
        self.role, self.ctx, self.parameters = role, ctx, parameters
        theme.use_currency(getattr(getattr(ctx, "batch", None), "currency", None))
        self.period: Period = ctx.period
        self.scope, self.scope_id = ctx.scope, str(ctx.scope_id)
        cube = ctx.cube
        self.periods: list[str] = list(dict.fromkeys(cube["period"]))
        self._values = cube.set_index(["scope", "scope_id", "period", "kpi"]).sort_index()
        self.unavailable: dict[str, str] = dict(getattr(ctx, "unavailable", {}) or {})
        self.window: PartialPeriod | None = partial_period(
            self.period, getattr(ctx, "as_of", None), comparison=False
        )
        """The period so far when the data ends before it does (no comparison; cheap)."""

    @cached_property
    def partial(self) -> PartialPeriod | None:
        """The period so far and, for a month, the comparison with the same days a month ago.

        None for a complete period. The comparison is ``kpi_lib.metrics.month_to_date.mtd_comparison``, read
        from the batch's ``mtd.csv`` when there is one for this ``as_of``, else computed.
        """
        if self.window is None:
            return None
        batch = getattr(self.ctx, "batch", None)
        if batch is not None and hasattr(batch, "targets"):
            targets = batch.targets or ""  # the file the batch used; none: none
        else:
            path = self.parameters.get("targets")
            targets = str(project_path(path)) if path and project_path(path).exists() else None
        folder = self.parameters.get("batch_dir")
        search = (project_path(folder), project_path(folder).parent) if folder else ()
        return partial_period(
            self.period,
            self.ctx.as_of,
            source=lambda: self.ctx.source,
            targets=targets,
            search=search,
        )

    @property
    def period_phrase(self) -> str:
        """``'October 2026'``, or ``'October 2026 to date (1-14 Oct)'`` while it runs."""
        if self.window is None:
            return self.period_name
        return f"{self.period_name} to date ({self.window.window})"

    def row(
        self,
        kpi: str,
        period: str | None = None,
        scope: str | None = None,
        scope_id: str | None = None,
    ) -> pd.Series | None:
        """The cube row of one KPI (this report's scope and period by default), or None
        (also for a period before the org's data starts: ``has_data``)."""
        if period is not None and not self.has_data(period):
            return None
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
        """The KPI over ``history_periods`` (oldest first), ending at the period."""
        return [self.value(kpi, p, scope, scope_id, field) for p in self.history_periods()]

    def history_periods(self) -> list[str]:
        """The report's trailing periods (13 at most) ending at its period, from the first
        with data: a chart never starts with empty months before the org's data."""
        end = self.periods.index(self.period.label) if self.period.label in self.periods else -1
        return [p for p in self.periods[: end + 1][-13:] if self.has_data(p)]

    def has_data(self, period: str) -> bool:
        """Whether the org has data in ``period`` (``Batch.has_data``; True without a batch)."""
        batch = getattr(self.ctx, "batch", None)
        return batch.has_data(period) if hasattr(batch, "has_data") else True

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
        return deals.reps_in_scope(self.ctx.source, self.period, "company", "all")

    def _teams(self) -> pd.DataFrame:
        batch = getattr(self.ctx, "batch", None)
        if batch is not None and hasattr(batch, "teams"):
            return batch.teams[["team_id", "team_name"]].astype(str)
        return self.ctx.source.frame("teams")[["team_id", "team_name"]].astype(str)

    def _stage_probabilities(self) -> dict[str, float]:
        """The stage probabilities the batch's cube used (the org's settings)."""
        return dict(self.ctx.batch.settings.get("stage_probabilities", {}))

    @cached_property
    def scope_open_deals(self) -> pd.DataFrame:
        """This scope's deals open at the end of the period, largest first (``deals.open_deals``
        on the batch's table, weighted by the org's stage probabilities)."""
        return deals.open_deals(
            self.ctx.open_deals,
            self.period,
            self.scope,
            self.scope_id,
            as_of=self.ctx.as_of,
            stage_probabilities=self._stage_probabilities(),
        )

    @cached_property
    def unpriced_stages(self) -> pd.DataFrame:
        """This scope's open deals in stages without a probability, one row per stage:
        ``stage, deals, amount``, largest amount first (empty when every stage has one)."""
        open_now = self.scope_open_deals
        priced = [*self._stage_probabilities(), STAGE_NOT_RECORDED]
        unpriced = open_now[~open_now["stage"].isin(priced)]
        return (
            unpriced.groupby("stage", sort=False)
            .agg(deals=("opportunity_id", "size"), amount=("amount", "sum"))
            .reset_index()
            .sort_values(["amount", "stage"], ascending=[False, True], kind="stable")
            .reset_index(drop=True)
        )

    def unpriced_note(self) -> str:
        """What the weighted pipeline leaves out: the stages without a probability, and deals
        closed since whose stage then is not recorded; ``""`` when it leaves out nothing."""
        open_now = self.scope_open_deals
        unknown = open_now[open_now["stage"] == STAGE_NOT_RECORDED]
        closed_since = (
            f"{len(unknown):,} deal{'s' if len(unknown) != 1 else ''} open then "
            f"({format_value(unknown['amount'].sum(), 'currency')}) closed since, and no stage "
            "history says which stage they were in; the weighted pipeline leaves them out."
            if len(unknown)
            else ""
        )
        stages = self.unpriced_stages
        if stages.empty:
            return closed_since
        named = ", ".join(
            f"{s.stage} ({s.deals:,} open, {format_value(s.amount, 'currency')})"
            for s in stages.head(5).itertuples(index=False)
        )
        more = f" and {len(stages) - 5} more" if len(stages) > 5 else ""
        where = self.ctx.batch.config.get("kpis") or "the org's kpis.yaml"
        return (
            f"Stages without a probability: {named}{more}. The weighted pipeline leaves them "
            f"out; set their probability under stage_probabilities in {where} "
            "(python -m kpi_lib init writes a starting one)."
            + (f" {closed_since}" if closed_since else "")
        )

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


__all__ = [
    "ACTIVITY_TYPES",
    "CSS",
    "ROLES",
    "ROLE_TITLES",
    "TO_DATE",
    "Html",
    "Report",
    "bar_html",
    "card",
    "delta_html",
    "esc",
    "figure_html",
    "html_table",
    "kpi_tile",
    "open_report",
    "period_ticks",
    "sparkline_svg",
]

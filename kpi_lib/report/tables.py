"""Detail sections of a report: teams, reps, activity, pipeline, open deals, deals needed."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from kpi_lib.metrics import deals
from kpi_lib.paths import project_path
from kpi_lib.report import theme
from kpi_lib.report.charts import (
    figure_html,
    new_figure,
)
from kpi_lib.report.html import Html, bar_html, card, count_text, esc, html_table
from kpi_lib.report.theme import COLORS, format_value, is_missing

ACTIVITY_TYPES = ("call", "email", "meeting", "demo")


class TableSections:
    """Tables and per-rep charts of ``Report`` (a mixin: reads ``self.value`` and co.)."""

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
            ["Team", "Revenue", self._attainment_header(), "Win rate", "Velocity", "CAC"],
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
        att = self._attainment(scope, scope_id)
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

    def _attainment_header(self) -> str:
        """``Attainment``; while a month runs, of the run rate to its end (``On pace for``)."""
        if self.partial is not None and self.partial.comparison is not None:
            return "On pace for (of target)"
        return "Attainment"

    def _rate_cell(self, kpi: str, scope: str, scope_id: str) -> str:
        v = self.value(kpi, scope=scope, scope_id=scope_id)
        num = self.value(kpi, scope=scope, scope_id=scope_id, field="numerator")
        den = self.value(kpi, scope=scope, scope_id=scope_id, field="denominator")
        n = (
            ""
            if is_missing(den)
            else f' <span class="kr-sub">({count_text(num)}/{count_text(den)})</span>'
        )
        return esc(theme.format_percent(v)) + n

    def leaderboard(self) -> Html:
        """The team's reps ranked by revenue: attainment, win rate with n, deals, activities."""
        rows = []
        for r in self.team_reps.itertuples(index=False):
            rev = self.value("revenue", scope="rep", scope_id=r.rep_id)
            att = self._attainment("rep", r.rep_id)
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
                        count_text(self.value("deals_won", scope="rep", scope_id=r.rep_id)),
                        count_text(self.value("activities", scope="rep", scope_id=r.rep_id)),
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
            theme.format_percent(self._attainment(self.scope, self.scope_id)),
            self._rate_cell("win_rate", self.scope, self.scope_id),
            count_text(self.value("deals_won")),
            count_text(self.value("activities")),
        ]
        table = html_table(
            body,
            [
                "Rep",
                "Revenue",
                self._attainment_header(),
                "Win rate (won/closed)",
                "Deals won",
                "Activities",
            ],
            numeric=[1, 3, 4, 5],
            total=total,
        )
        return self._block(
            card(
                "Rep leaderboard",
                table,
                note=f"Active reps in {esc(self.period_phrase)}, ranked by revenue.",
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
        fig, ax = new_figure(7.4, max(2.2, 0.42 * len(data) + 1.0))
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
                note=f"Calls, emails, meetings and demos logged in {esc(self.period_phrase)}.",
            )
        )

    def pipeline_by_stage(self) -> Html:
        """Open deals by stage at the end of the period, with time in stage and stage conversion."""
        stages = self._stages()
        pipe = deals.pipeline_by_stage(
            self.ctx.open_deals,
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
                    count_text(s.deals),
                    bar_html(s.amount / top if top else 0, COLORS["primary"])
                    + esc(format_value(s.amount, "currency")),
                    self._weighted_cell(s.stage, s.weighted_amount),
                    esc(format_value(self.value(f"time_in_stage_days:{s.stage}"), "days")),
                    self._rate_cell(f"stage_conversion:{s.stage}", self.scope, self.scope_id)
                    if f"stage_conversion:{s.stage}" in self._stages_kpis()
                    else theme.NA,
                ]
            )
        total = [
            "Total",
            count_text(pipe["deals"].sum()),
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
        from kpi_lib.data import history

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
            deals = "" if pd.isna(step.deals) else count_text(abs(int(step.deals)))
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
        reps = (
            batch.reps
            if batch is not None and hasattr(batch, "reps")
            else (self.ctx.source.frame("reps"))
        )
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
        elif self.window is not None:
            gap = target - rev
            pace = self._attainment(self.scope, self.scope_id)
            status = theme.attainment_status(pace if not is_missing(pace) else rev / target)
            days = self.window.days_left
            text = (
                f'<span class="kr-big">{needed:,.0f} more deal{"s" if needed != 1 else ""}</span>'
                f"<br>at the {esc(self.fmt('avg_deal_size', size))} average close the "
                f"{esc(self.fmt('revenue', gap))} still open to the "
                f"{esc(self.fmt('revenue', target))} target, with {days} day"
                f"{'s' if days != 1 else ''} of {esc(self.period_name)} left."
            )
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

    def _weighted_cell(self, stage: str, weighted: float) -> str:
        """A weighted amount, or "no probability" for a stage that has none (never $0)."""
        if stage not in self._stage_probabilities():
            return '<span class="kr-sub">no probability</span>'
        return esc(format_value(weighted, "currency"))

    def open_deals(self, limit: int = 15) -> Html:
        """This scope's deals open at the end of the period: stage, amount, age, expected close."""
        open_now = self.scope_open_deals
        if open_now.empty:
            return self._block(card("Open deals", "<p>No open deals at the end of the period.</p>"))
        shown = open_now.head(limit)
        at = deals.snapshot_at(self.period, self.ctx.as_of)
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
                    self._weighted_cell(d.stage, d.weighted_amount),
                    f"{d.age_days:,.0f}" if not is_missing(d.age_days) else theme.NA,
                    esc(close)
                    + (' <span class="kr-pill kr-bad">overdue</span>' if overdue else ""),
                ]
            )
        estimated = bool(shown["is_expected_close_estimated"].any())
        note = (
            f"{len(open_now)} deals open, "
            f"{esc(format_value(open_now['amount'].sum(), 'currency'))} in "
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
        fig, ax = new_figure(6.4, 2.8)
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
                note=f"Logged in {esc(self.period_phrase)}; the team median is the "
                "middle rep of the team for each type.",
            )
        )

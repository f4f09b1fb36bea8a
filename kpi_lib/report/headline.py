"""The opening of a report: the header band, the highlights written from the numbers, the tiles."""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import cached_property

import numpy as np

from kpi_lib.metrics.compare import change
from kpi_lib.metrics.registry import HEADLINE_KPIS, get_kpi
from kpi_lib.periods import Period
from kpi_lib.report import theme
from kpi_lib.report.explain import Explainer, maturity
from kpi_lib.report.html import Html, card, esc
from kpi_lib.report.styles import CSS
from kpi_lib.report.theme import format_value, is_missing
from kpi_lib.report.tiles import kpi_tile

ROLE_TITLES = {"executive": "Executive report", "manager": "Team report", "rep": "Rep report"}


class HeadlineSections:
    """Header, highlights and KPI tiles of ``Report`` (a mixin: reads ``self.value`` and co.)."""

    @cached_property
    def explain(self) -> Explainer:
        """The sentences and judgements this report shares with the digest."""
        batch = self.ctx.batch
        return Explainer(
            lambda kpi, scope, scope_id, period=None, field="value": self.value(
                kpi, period, scope, scope_id, field
            ),
            self.period,
            self.ctx.as_of,
            self.periods,
            list(dict.fromkeys(self.ctx.cube["kpi"])),
            self._teams(),
            batch.reps if hasattr(batch, "reps") else self._reps(),
            getattr(batch, "drivers", None),
            self.has_data,
        )

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
        versus = [
            label
            for label, period in (
                (self.previous_label, self.period.previous),
                (self.year_ago_label, self.period.year_ago),
            )
            if self.has_data(period.label)
        ]
        chips = [
            f"Period: {esc(self.period_name)}",
            f"Data as of {esc(self.ctx.as_of)}",
            f"vs {' and '.join(esc(v) for v in versus)}" if versus else "first period of data",
        ]
        if not self.has_data(self.period.year_ago.label) and versus:
            chips[2] += f" (no data for {esc(self.year_ago_label)})"
        partial = ""
        if self.window is not None:
            if self.period.grain == "month":
                chips[2] = (
                    f"vs the same days of {esc(self.previous_label)} "
                    f"({esc(self.window.previous_window)})"
                )
            partial = (
                f'<div class="kr-partial" data-days="{self.window.days_elapsed}">'
                f"{esc(self.window.headline)}: figures so far, the period is not over</div>"
            )
        return Html(
            f"<style>{CSS}</style>"
            f'<div class="kr"><header class="kr-band"><p class="kr-eyebrow">'
            f"{esc(ROLE_TITLES[self.role])} · {esc(self.period_phrase)}</p>"
            f'<h1>{esc(name)}</h1><div class="kr-sub">{sub}</div>{partial}'
            f'<div class="kr-meta">{"".join(f"<span class=kr-chip>{c}</span>" for c in chips)}'
            f"</div></header></div>"
        )

    def _revenue_sentence(self, who: str) -> str:
        rev = self.value("revenue")
        if is_missing(rev):
            return ""
        if self.partial is not None and self.partial.comparison is not None:
            return self._revenue_to_date_sentence(who, rev)
        target = self.value("revenue", field="target")
        parts = [f"{who} booked <b>{esc(self.fmt('revenue', rev))}</b> in {esc(self.period_name)}"]
        if not is_missing(target) and target:
            parts.append(
                f"{theme.format_percent(rev / target)} of the "
                f"{esc(self.fmt('revenue', target))} target"
            )
        if not self.explain.revenue_sentences(self.scope, self.scope_id):
            moves = []
            for other, label in (
                (self.period.previous.label, theme.month_name(self.period.previous.label)),
                (self.period.year_ago.label, theme.month_name(self.period.year_ago.label)),
            ):
                before = self.value("revenue", other)
                delta = change(rev, before, "currency")
                if not is_missing(delta):
                    word = "up" if delta > 0 else "down" if delta < 0 else "flat"
                    moves.append(f"{word} {abs(delta) * 100:.0f}% on {esc(label)}")
            if moves:
                parts.append(" and ".join(moves))
        return ", ".join(parts) + "."

    def _revenue_to_date_sentence(self, who: str, rev: float) -> str:
        p = self.partial
        target = self.value("revenue", field="target")
        text = f"{who} booked <b>{esc(self.fmt('revenue', rev))}</b> in {esc(self.period_phrase)}"
        before = p.figure(self.scope, self.scope_id, "revenue", "previous_same_days")
        delta = change(rev, before, "currency")
        if not is_missing(delta):
            word = "up" if delta > 0 else "down" if delta < 0 else "flat"
            text += (
                f", {word} {abs(delta) * 100:.0f}% on the same days of "
                f"{esc(theme.month_name(self.period.previous.label))} ({esc(p.previous_window)})"
            )
        projection = p.projection(self.scope, self.scope_id, "revenue")
        if not is_missing(projection):
            text += (
                f"; on pace for <b>{esc(self.fmt('revenue', projection))}</b> by {esc(p.end_label)}"
            )
            if not is_missing(target) and target:
                text += (
                    f", {theme.format_percent(projection / target)} of the "
                    f"{esc(self.fmt('revenue', target))} target"
                )
        return text + "."

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
        if self.partial is not None and self.partial.comparison is not None:
            before = self.partial.figure(
                self.scope, self.scope_id, "win_rate", "previous_same_days"
            )
            prev = f"the same days of {theme.month_name(self.period.previous.label)}"
            delta = change(wr, before, "ratio")
            if not is_missing(delta):
                word = "up" if delta > 0 else "down" if delta < 0 else "level"
                text += (
                    f", {word} {abs(delta) * 100:.1f} pts on {esc(prev)}"
                    if delta
                    else f", level with {esc(prev)}"
                )
        else:
            moved = self.explain.rate_change_words(
                "win_rate", self.scope, self.scope_id, self.period.previous.label
            )
            if moved:
                text += f", {esc(moved)}"
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
        items = [self._revenue_sentence(who)]
        if self.window is None:  # a period still running is not compared whole with the last
            ex = self.explain
            items += [esc(s) for s in ex.revenue_sentences(self.scope, self.scope_id)]
            items.append(esc(ex.velocity_sentence(self.scope, self.scope_id)))
        items.append(self._win_rate_sentence())
        if self.scope == "company":
            items.append(self._team_spread_sentence())
        elif self.scope == "team":
            items.append(self._rep_spread_sentence())
        else:
            items.append(self._vs_team_sentence())
        pipe, weighted = self.value("pipeline_amount"), self.value("weighted_pipeline")
        if not is_missing(pipe):
            when = (
                "at the end of the period"
                if self.window is None
                else f"on {self.window.as_of.day} {self.window.as_of.strftime('%b')}"
            )
            items.append(
                f"Open pipeline {when}: "
                f"<b>{esc(self.fmt('pipeline_amount', pipe))}</b>"
                + (
                    f" ({esc(self.fmt('weighted_pipeline', weighted))} weighted by stage)."
                    if not is_missing(weighted)
                    else "."
                )
            )
        if self.window is None:
            items.append(esc(self.explain.cohort_sentence(self.scope, self.scope_id)))
            items.append(esc(self.explain.unusual_sentence(self.scope, self.scope_id)))
        body = "".join(f"<li>{s}</li>" for s in items if s)
        return self._block(card("Highlights", f"<ul>{body}</ul>", extra_class="kr-highlights"))

    def _team_spread_sentence(self) -> str:
        teams = self._teams()
        att = [
            (t.team_name, self._attainment("team", t.team_id))
            for t in teams.itertuples(index=False)
        ]
        att = [(n, a) for n, a in att if not is_missing(a)]
        if not att:
            return ""
        att.sort(key=lambda x: x[1], reverse=True)
        on_track = sum(a >= 1 for _, a in att)
        reached = "reached" if self.partial is None else "are on pace for"
        text = (
            f"{on_track} of {len(att)} teams {reached} their revenue target; "
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
                self._attainment("rep", r.rep_id),
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
            reached = "reached" if self.partial is None else "are on pace for"
            text += f"; {hit} of {len(with_target)} reps {reached} their target"
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

    def _attainment(self, scope: str, scope_id: str) -> float:
        """Revenue attainment of a scope; while the month runs, of its run-rate projection."""
        if self.partial is not None and self.partial.comparison is not None:
            return self.partial.figure(scope, scope_id, "revenue", "projected_attainment")
        return self.value("quota_attainment", scope=scope, scope_id=scope_id)

    def team_median(self, kpi: str, period: str | None = None) -> float:
        """The median of ``kpi`` over the active reps of the team (a number, no names)."""
        vals = [self.value(kpi, period, "rep", r) for r in self.team_reps["rep_id"]]
        vals = [v for v in vals if not is_missing(v)]
        return float(np.median(vals)) if vals else math.nan

    def maturing(self, kpi: str) -> str:
        """Why a cohort rate of this period will still rise, or "" (``explain.maturity``)."""
        cycle = self.value("sales_cycle_days", scope="company", scope_id="all")
        return maturity(kpi, self.period, self.ctx.as_of, cycle)

    def tiles(self, kpis: Sequence[str] | None = None) -> Html:
        """A responsive grid of KPI tiles: value, target, changes vs P-1 and P-1y, sparkline.

        Manager tiles compare with the company (share of it for additive KPIs); rep tiles with
        the team median. KPIs not defined at this scope (CAC for a rep) are left out.
        """
        kpis = [k for k in (kpis or HEADLINE_KPIS) if self.scope in get_kpi(k).scopes]
        tiles = [self._tile(k, hero=i == 0) for i, k in enumerate(kpis)]
        return self._block(f'<div class="kr-tiles">{"".join(tiles)}</div>')

    def _tile_compare(self, kpi: str, value: float, period: str | None) -> tuple | None:
        """A tile's reference line: a team's share of the company (or the company's figure),
        a rep's team median, in ``period`` (None: the report's)."""
        meta = get_kpi(kpi)
        if self.scope == "team":
            company = self.value(kpi, period, "company", "all")
            if meta.additive and not is_missing(company) and company:
                return ("Share of company", theme.format_percent(value / company))
            if not is_missing(company):
                return ("Company", format_value(company, meta.unit))
        elif self.scope == "rep":
            median = self.team_median(kpi, period)
            if not is_missing(median):
                return ("Team median", format_value(median, meta.unit))
        return None

    def _tile(self, kpi: str, hero: bool = False) -> str:
        meta = get_kpi(kpi)
        ex = self.explain
        value, target = self.value(kpi), self.value(kpi, field="target")
        history, history_targets = self.history(kpi), self.history(kpi, field="target")
        maturing = self.maturing(kpi)
        cohort = ex.mature_cohort(kpi, self.scope, self.scope_id) if maturing else None
        shown = None if cohort is None else cohort.period  # None: this period
        at = self.period if cohort is None else Period.parse(cohort.period)
        detail = ""
        if meta.unit == "ratio":
            num, den = self.value(kpi, field="numerator"), self.value(kpi, field="denominator")
            if not is_missing(den):
                detail = f"n = {den:,.0f}" if is_missing(num) else f"{num:,.0f} of {den:,.0f}"
        if kpi == "sales_velocity" and self.window is None:
            detail = ex.velocity_lead(self.scope, self.scope_id)
        judged = dict(
            noise=tuple(
                ex.noise(kpi, self.scope, self.scope_id, other.label).text
                for other in (self.period.previous, self.period.year_ago)
            ),
            interval=ex.interval(kpi, self.scope, self.scope_id),
        )
        if cohort is not None:  # the latest mature cohort stands in for this period's
            so_far = theme.format_percent(value, 1)
            detail = (
                f"{self.period_name} so far: {so_far} ({num:,.0f} of {den:,.0f}), still maturing"
            )
            value, target, maturing = cohort.value, cohort.target, ""
            keep = len([p for p in self.history_periods() if p <= cohort.period])
            history, history_targets = history[:keep], history_targets[:keep]
            judged = dict(noise=("", ""), interval="", basis=ex.cohort_line(kpi, cohort))
        compare = self._tile_compare(kpi, value, shown)
        comparison = dict(
            previous=self.value(kpi, at.previous.label),
            year_ago=self.value(kpi, at.year_ago.label),
            previous_label=theme.short_period(at.previous.label),
            year_ago_label=theme.short_period(at.year_ago.label),
            no_data_before=(
                not self.has_data(at.previous.label),
                not self.has_data(at.year_ago.label),
            ),
            **judged,
        )
        partial = self.partial
        if partial is not None:
            comparison["to_date"] = partial.window
        if partial is not None and partial.comparison is not None:
            comparison.update(
                previous=partial.figure(self.scope, self.scope_id, kpi, "previous_same_days"),
                previous_label=partial.previous_window,
                year_ago_label=None,
                no_data_before=(False, False),
                projection=partial.projection(self.scope, self.scope_id, kpi)
                if meta.additive
                else math.nan,
                projection_label=partial.end_label,
            )
        return kpi_tile(
            kpi,
            value,
            maturing=maturing,
            target=target,
            history=history,
            history_targets=history_targets,
            compare=compare,
            detail=detail,
            unavailable=self.unavailable.get(kpi),
            hero=hero,
            **comparison,
        )

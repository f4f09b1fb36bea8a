"""The outlook: next month's projections, each with its track record, the most accurate first.

The batch carries each projection of the month ahead and its backtest over the last complete
months (``kpi_lib.metrics.forecast``); this section shows them side by side with how far off each
has been for this scope ("off by 14% on average, usually low"), leads with the one that has been
most accurate, and sets it against the target. With too little history it says so, and for a
period that is not a month (or a rep, whose backtest is not kept) it falls back to the simple
projection: the run rate of the last three periods and the weighted pipeline.

Example
-------
>>> error_words(0.2, 6, 0)
('off by 20% on average', 'always low')
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from kpi_lib.metrics import forecast as fc
from kpi_lib.periods import Period
from kpi_lib.report import theme
from kpi_lib.report.charts import figure_html, new_figure, period_ticks
from kpi_lib.report.html import Html, card, esc, html_table, stat_html
from kpi_lib.report.theme import COLORS, format_value, is_missing

METHOD_COLORS = {
    "run_rate": COLORS["secondary"],
    "weighted_pipeline": COLORS["primary"],
    "stage_win_rates": COLORS["good"],
}


def error_words(mape: float, low: int, high: int) -> tuple[str, str]:
    """How far off and on which side a projection has been, in words.

    The side is the one of more than half the months judged ("usually low"), of every one
    ("always low"), else "as often high as low". Example: ``error_words(0.14, 4, 2)`` ->
    ``('off by 14% on average', 'usually low')``.
    """
    size = "on the mark" if round(mape * 100) == 0 else f"off by {mape * 100:.0f}% on average"
    months = low + high
    if months == 0:
        side = ""
    elif low == months:
        side = "always low"
    elif high == months:
        side = "always high"
    elif low * 2 > months:
        side = "usually low"
    elif high * 2 > months:
        side = "usually high"
    else:
        side = "as often high as low"
    return size, side


def track_words(record: pd.Series | None) -> str:
    """``'off by 14% on average, usually low (6 months)'``, or why there is no track record."""
    if record is None or record["months"] == 0:
        return "no month to judge it by yet"
    months = int(record["months"])
    if months < fc.MIN_MONTHS:
        return (
            f"too little history: {months} month{'s' if months != 1 else ''} to judge "
            f"({fc.MIN_MONTHS} needed)"
        )
    size, side = error_words(record["mape"], record["low_months"], record["high_months"])
    return f"{size}, {side} ({months} months)" if side else f"{size} ({months} months)"


class OutlookSections:
    """The outlook of ``Report`` (a mixin: reads ``self.ctx.batch``, ``self.value`` and co.)."""

    def outlook(self) -> Html:
        """Next month's projections with their track records, the most accurate first.

        While the period runs the outlook is for the period itself: its run rate to the end,
        and the projections made at its start.
        """
        batch = getattr(self.ctx, "batch", None)
        ahead = getattr(batch, "projections", None)
        if (
            self.period.grain != "month"
            or self.scope == "rep"
            or ahead is None
            or getattr(batch, "forecast", None) is None
        ):
            return self._simple_outlook()
        mine = ahead[(ahead["scope"] == self.scope) & (ahead["scope_id"] == self.scope_id)]
        if mine.empty:
            return self._simple_outlook()
        month = Period.parse(str(mine["month"].iloc[0]))
        month_name = theme.month_name(month.label)
        backtest = batch.forecast
        backtest = backtest[
            (backtest["scope"] == self.scope) & (backtest["scope_id"] == self.scope_id)
        ]
        record = fc.track_record(backtest).set_index("method")
        best = fc.most_accurate(record.reset_index())
        unavailable = (batch.forecast_notes or {}).get("unavailable", {})
        notes = (batch.forecast_notes or {}).get("notes", {})
        projected = dict(zip(mine["method"], mine["projected"], strict=True))
        order = sorted(
            fc.METHODS,
            key=lambda m: (
                0 if m == best else 1,
                record["mape"].get(m, math.inf)
                if record["months"].get(m, 0) >= fc.MIN_MONTHS
                else math.inf,
                list(fc.METHODS).index(m),
            ),
        )
        target = (
            self.value("revenue", field="target")
            if self.window is not None
            else self._target_for("revenue", month)
        )
        rows = []
        for method in order:
            value = projected.get(method, math.nan)
            label = f"<b>{esc(fc.METHODS[method])}</b>"
            if method == best:
                label += ' <span class="kr-pill kr-good">most accurate</span>'
            if method in unavailable and method not in projected:
                track = f"n/a: {unavailable[method]}"
            elif method in unavailable:
                track = f"no track record: {unavailable[method]}"
            else:
                track = track_words(record.loc[method] if method in record.index else None)
            share = (
                f'<div class="kr-sub">{theme.format_percent(value / target)} of target</div>'
                if not is_missing(target) and target and not is_missing(value)
                else ""
            )
            rows.append(
                [
                    f'{label}<div class="kr-sub kr-track">{esc(track)}</div>',
                    f"<b>{esc(format_value(value, 'currency'))}</b>{share}",
                ]
            )
        if self.window is not None and self.partial is not None:
            run = self.partial.projection(self.scope, self.scope_id, "revenue")
            rows.append(
                [
                    f"<b>{esc(f'Run rate to {self.window.end_label}')}</b>"
                    '<div class="kr-sub kr-track">this month so far, scaled to its end; '
                    "no track record</div>",
                    f"<b>{esc(format_value(run, 'currency'))}</b>",
                ]
            )
        table = html_table(
            rows,
            ["Projection and its record", month_name],
            numeric=[1],
        )
        lead = self._outlook_lead(best, projected, record, month_name, target)
        pipe = self.value("pipeline_amount")
        stats = [
            stat_html(f"Target {month_name}", format_value(target, "currency")),
            stat_html("Open pipeline (all dates)", format_value(pipe, "currency")),
        ]
        if not is_missing(target) and target and not is_missing(pipe):
            stats.append(stat_html("Pipeline coverage", f"{pipe / target:.1f}x"))
        chart = self._track_chart(backtest, best)
        body = (
            f'<p style="margin:4px 0 8px">{lead}</p>{table}'
            f'<div class="kr-stats">{"".join(stats)}</div>{chart}'
        )
        status = "neutral"
        lead_value = projected.get(best, math.nan) if best else math.nan
        if not is_missing(target) and target and not is_missing(lead_value):
            status = theme.attainment_status(lead_value / target)
        how = (
            f"How: each projection is made as it would have been on the 1st of each of the last "
            f"{fc.BACKTEST_MONTHS} complete months, from what was known then, and compared with "
            "that month's revenue; 'off by' is the mean absolute percentage error."
        )
        caveat = notes.get("weighted_pipeline", "")
        note = esc(how + (" Pipeline projections: " + caveat if caveat else ""))
        if not self.unpriced_stages.empty:
            left_out = format_value(self.unpriced_stages["amount"].sum(), "currency")
            names = ", ".join(self.unpriced_stages["stage"].head(3))
            note += esc(
                f" The weighted pipeline leaves out {left_out} open in stages without a "
                f"probability ({names}; see Data quality)."
            )
        body += f'<p class="kr-note" style="margin:8px 0 0">{note}</p>'
        return self._block(
            card(f"Outlook for {month_name}", body, extra_class=f"kr-outlook kr-{status}")
        )

    def _outlook_lead(self, best, projected, record, month_name: str, target: float) -> str:
        """The outlook's first sentence: the most accurate projection and what it says."""
        if best is None:
            judged = int(record["months"].max()) if len(record) else 0
            return (
                f"<b>Too little history to tell which projection to trust</b>: "
                f"{judged} month{'s' if judged != 1 else ''} with revenue to judge them by, "
                f"{fc.MIN_MONTHS} needed. The figures below are projections without a track "
                "record."
            )
        value = projected.get(best, math.nan)
        size, side = error_words(
            record.loc[best, "mape"],
            record.loc[best, "low_months"],
            record.loc[best, "high_months"],
        )
        text = (
            f"The {esc(fc.METHODS[best].lower())} has been the most accurate here "
            f"({esc(size)}{', ' + esc(side) if side else ''}): it expects "
            f"<b>{esc(format_value(value, 'currency'))}</b> in {esc(month_name)}"
        )
        if not is_missing(target) and target and not is_missing(value):
            text += f", <b>{theme.format_percent(value / target)}</b> of the target"
        return text + "."

    def _track_chart(self, backtest: pd.DataFrame, best: str | None) -> str:
        """Actual revenue of the backtested months (bars) and each projection (markers)."""
        if backtest.empty:
            return ""
        months = sorted(backtest["month"].unique())
        actual = backtest.groupby("month")["actual"].first().reindex(months)
        fig, ax = new_figure(6.0, 2.6)
        x = np.arange(len(months))
        ax.bar(x, actual.to_numpy(), color="#d5dbe3", width=0.6, label="Actual revenue", zorder=1)
        for method in fc.METHODS:
            rows = backtest[backtest["method"] == method].set_index("month").reindex(months)
            if rows["projected"].isna().all():
                continue
            ax.plot(
                x,
                rows["projected"].to_numpy(),
                color=METHOD_COLORS[method],
                marker="o",
                markersize=4 if method != best else 6,
                linewidth=1.0 if method != best else 2.0,
                label=fc.METHODS[method],
                zorder=3 if method == best else 2,
            )
        ax.set_xticks(x, period_ticks(months))
        ax.tick_params(axis="x", labelsize=9)
        ax.yaxis.set_major_formatter(theme.axis_formatter("currency"))
        ax.set_ylim(bottom=0)
        ax.grid(axis="x", visible=False)
        ax.legend(loc="lower center", bbox_to_anchor=(0.5, 1.0), ncols=2, fontsize=9)
        ax.margins(y=0.12)
        alt = "Projected against actual revenue, last months: " + "; ".join(
            f"{m} actual {format_value(a, 'currency')}"
            for m, a in zip(months, actual.to_numpy(), strict=True)
        )
        return figure_html(fig, alt)

    def _simple_outlook(self) -> Html:
        """Next period: run rate (mean of the last 3 periods), weighted pipeline, target.

        While the period runs, the outlook is for the period itself: its run rate to the end.
        """
        nxt = self.period.shift(1)
        recent = [v for v in self.history("revenue")[-3:] if not is_missing(v)]
        run_rate = float(np.mean(recent)) if recent else math.nan
        rate_label = "Run rate (3-period avg)"
        weighted, pipe = self.value("weighted_pipeline"), self.value("pipeline_amount")
        target = self._target_for("revenue", nxt)
        if self.window is not None:
            nxt, rate_label = self.period, f"Run rate to {self.window.end_label}"
            run_rate = (
                self.partial.projection(self.scope, self.scope_id, "revenue")
                if self.partial is not None
                else math.nan
            )
            target = self.value("revenue", field="target")
        stats = [
            stat_html(rate_label, format_value(run_rate, "currency")),
            stat_html("Weighted pipeline", format_value(weighted, "currency")),
            stat_html("Open pipeline", format_value(pipe, "currency")),
            stat_html(f"Target {theme.month_name(nxt.label)}", format_value(target, "currency")),
        ]
        sentences = []
        if not is_missing(target) and target:
            if not is_missing(run_rate):
                sentences.append(
                    f"At the current run rate {esc(theme.month_name(nxt.label))} would close at "
                    f"<b>{theme.format_percent(run_rate / target)}</b> of target."
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
        if not self.unpriced_stages.empty:
            left_out = format_value(self.unpriced_stages["amount"].sum(), "currency")
            names = ", ".join(self.unpriced_stages["stage"].head(3))
            sentences.append(
                f"The weighted pipeline leaves out <b>{esc(left_out)}</b> in stages without a "
                f"probability ({esc(names)}; see Data quality)."
            )
        body = f'<div class="kr-stats">{"".join(stats)}</div>'
        if sentences:
            body += f'<p style="margin:8px 0 0">{" ".join(sentences)}</p>'
        why = (
            "The track record of each projection is kept for monthly reports of the company and "
            "its teams."
            if self.period.grain != "month" or self.scope == "rep"
            else "No track record in this batch (rendered by an older version: render again)."
        )
        return self._block(
            card(
                f"Outlook for {theme.month_name(nxt.label)}",
                body,
                note="A simple projection, not a forecast: recent bookings and what "
                f"the open pipeline is weighted to bring. {why}",
                extra_class=f"kr-outlook kr-{status}",
            )
        )

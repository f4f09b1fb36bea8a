"""Trend sections of a report: revenue against target, CLV vs CAC, retention, funnel (the outlook
is ``kpi_lib.report.outlook``)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from matplotlib.ticker import FuncFormatter, MaxNLocator, PercentFormatter

from kpi_lib.paths import project_path
from kpi_lib.periods import Period
from kpi_lib.report import theme
from kpi_lib.report.charts import (
    TO_DATE,
    figure_html,
    mark_partial_bar,
    new_figure,
    period_ticks,
    plot_line,
)
from kpi_lib.report.html import Html, card, count_text, esc, stat_html
from kpi_lib.report.theme import COLORS, format_value, is_missing


class TrendSections:
    """The trend charts and the outlook of ``Report`` (a mixin: reads ``self.history`` and co.)."""

    def revenue_trend(self) -> Html:
        """Revenue per period (bars) against the target (dashed line), the trailing 13 periods;
        the reason instead of an empty chart when the source cannot give revenue."""
        if "revenue" in self.unavailable:
            reason = esc(self.unavailable["revenue"])
            return self._block(card("Revenue vs target", "", note=f"Revenue is n/a: {reason}."))
        labels = self.history_periods()
        revenue, target = self.history("revenue"), self.history("revenue", field="target")
        fig, ax = new_figure()
        x = np.arange(len(labels))
        rev = np.array(revenue, dtype=float)
        tgt = np.array(target, dtype=float)
        colors = [COLORS["primary"] if i == len(x) - 1 else theme.OKABE_ITO["sky"] for i in x]
        bars = ax.bar(x, np.nan_to_num(rev), color=colors, width=0.66, label="Revenue", zorder=2)
        partial = self.window is not None and len(x) > 0
        projection = math.nan
        if partial:
            mark_partial_bar(bars[-1], COLORS["primary"])
            if self.partial is not None and self.partial.comparison is not None:
                projection = self.partial.projection(self.scope, self.scope_id, "revenue")
            if not is_missing(projection):
                ax.bar(
                    x[-1:],
                    [projection],
                    width=0.66,
                    fill=False,
                    edgecolor=COLORS["primary"],
                    linestyle="--",
                    linewidth=1.2,
                    label="On pace for",
                    zorder=1,
                )
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
                format_value(rev[-1], "currency") + (f"\n{TO_DATE}" if partial else ""),
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
        ax.legend(loc="upper left", ncols=3 if partial else 2)
        ax.margins(y=0.15)
        note = (
            "Bookings per month; the dashed line is the revenue target."
            if not np.all(np.isnan(tgt))
            else "Bookings per month (no revenue target set)."
        )
        if partial:
            note += f" The hatched last bar is {esc(self.window.window)} only (to date)" + (
                f"; the dashed outline is the run rate to {esc(self.window.end_label)}."
                if not is_missing(projection)
                else "."
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
        fig, ax = new_figure(6.2, height)
        x = np.arange(len(labels))
        for name, values, color in series:
            plot_line(ax, x, values, partial_last=self.window is not None, color=color, label=name)
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
            f'<div class="kr-stats">{stat_html("CLV", self.fmt("clv", clv))}'
            f"{stat_html('CAC', self.fmt('cac', cac))}"
            f"{stat_html('CLV : CAC', 'n/a' if is_missing(ratio) else f'{ratio:.1f}x')}</div>"
        )
        if "clv" in self.unavailable or "cac" in self.unavailable:
            reason = self.unavailable.get("clv") or self.unavailable.get("cac")
            return self._block(card("CLV vs CAC", stats, note=esc(reason)))
        clv_h, cac_h = np.array(self.history("clv")), np.array(self.history("cac"))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratios = np.where(cac_h > 0, clv_h / cac_h, np.nan)
        labels = self.history_periods()
        fig, ax = new_figure(6.2, 2.9)
        x = np.arange(len(labels))
        ax.axhspan(0, 3, color=COLORS["bad"], alpha=0.06, zorder=0)
        ax.axhline(3, color=COLORS["target"], linestyle="--", linewidth=1.2, label="3x benchmark")
        plot_line(
            ax,
            x,
            ratios,
            partial_last=self.window is not None,
            color=COLORS["primary"],
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
                "3x or more is healthy." + self._to_date_note(),
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
        partial = self.window is not None and len(x) > 0
        plot_line(
            top, x, self.history("retention_rate"), partial_last=partial, color=COLORS["good"]
        )
        top.set_title("Retention", fontsize=10, loc="left")
        churn_bars = bottom.bar(
            x, np.nan_to_num(np.array(self.history("churn_rate"))), color=COLORS["bad"], width=0.6
        )
        if partial:
            mark_partial_bar(churn_bars[-1], COLORS["bad"])
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
        lost = self.value("churn_rate", field="numerator")
        stats = (
            f'<div class="kr-stats">{stat_html("Retention", self.fmt("retention_rate", ret))}'
            f"{stat_html('Churn', self.fmt('churn_rate', churn))}"
            f"{stat_html('Accounts lost', count_text(lost))}</div>"
        )
        return self._block(
            card(
                "Retention and churn",
                stats + chart,
                note="Share of last period's paying accounts that paid again."
                + self._to_date_note(),
            )
        )

    def _to_date_note(self) -> str:
        """`` The dashed last segment is 1-14 Oct only.`` while the period runs, else empty."""
        if self.window is None:
            return ""
        return f" The dashed, lighter last point is {esc(self.window.window)} only ({TO_DATE})."

    def customers(self) -> Html:
        """CLV vs CAC and retention side by side (one row on desktop, stacked on a phone)."""
        return self._block(
            f'<div class="kr-grid-2">{self.clv_vs_cac().data}{self.retention_trend().data}</div>'
        )

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
                f"{count_text(v)}</div></div></div>"
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
        if self.window is not None:
            note += f" {esc(self.period_phrase)}: the period is not over."
        return self._block(
            card("Lead funnel", f'<div class="kr-funnel">{"".join(rows)}</div>', note=note)
        )

    def _target_for(self, kpi: str, period: Period) -> float:
        """The target of ``kpi`` for this scope in ``period`` from the targets the batch used
        (a file, or the targets themselves), else the report's ``targets`` parameter."""
        from kpi_lib.metrics.targets import load_targets

        targets = getattr(getattr(self.ctx, "batch", None), "targets", None)
        targets = targets or self.parameters.get("targets")
        if isinstance(targets, str | Path) and targets:
            targets = project_path(targets)
            if not targets.is_file():
                return math.nan
        if not targets:
            return math.nan
        value = load_targets(targets).resolve(kpi, period, self.scope, self.scope_id)
        return math.nan if value is None else float(value)

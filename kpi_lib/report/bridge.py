"""The revenue bridge: how revenue got from the earlier period to this one.

Two waterfalls (against P-1 and against P-1y): the earlier revenue, the effect of the number of
deals won, the effect of their average size, this period's revenue; and beside them the members
of the scope (teams of the company, reps of a team) ranked by their contribution to the change
on P-1. The figures are the batch's drivers (``kpi_lib.metrics.drivers``), which add up exactly.
"""

from __future__ import annotations

import numpy as np

from kpi_lib.report import theme
from kpi_lib.report.charts import figure_html, new_figure
from kpi_lib.report.html import Html, card, esc
from kpi_lib.report.theme import COLORS, format_value

MAX_MEMBERS = 12
"""The contribution chart shows the members that moved revenue most, at most this many."""


class BridgeSections:
    """The revenue bridge of ``Report`` (a mixin: reads ``self.explain`` and co.)."""

    def revenue_bridge(self) -> Html:
        """Revenue from P-1 and from P-1y to P: deals won, deal size, and who moved it.

        Nothing while the period is still running (a part-month is not bridged from a whole
        one), and a note instead of a chart when the earlier periods have no data.
        """
        if self.window is not None:
            return Html("")
        ex = self.explain
        steps = []
        for compared_with, other in ex.comparisons():
            effects = ex.effects(self.scope, self.scope_id, "revenue", compared_with)
            if effects.empty or not self.has_data(other.label):
                continue
            by = dict(zip(effects["driver"], effects["effect"], strict=True))
            before = self.value("revenue", other.label)
            if np.isnan(before):
                continue
            steps.append((theme.short_period(other.label), before, by))
        if not steps:
            return Html("")
        sentences = ex.revenue_sentences(self.scope, self.scope_id)
        charts = [figure_html(self._bridge_figure(steps), self._bridge_alt(steps))]
        members = ex.contributions(self.scope, self.scope_id, "previous")
        if members and self.has_data(self.period.previous.label):
            charts.append(figure_html(*self._contribution_figure(members)))
        note = " ".join(esc(s) for s in sentences) or (
            "How revenue moved: the number of deals won and their average size."
        )
        body = "".join(f'<div class="kr-bridge">{c}</div>' for c in charts)
        return self._block(card("What moved revenue", body, note=note))

    def _bridge_figure(self, steps):
        now = self.value("revenue")
        fig, axes = new_figure(width=7.4, height=3.0)
        fig.clear()
        axes = fig.subplots(1, len(steps), sharey=True, squeeze=False)[0]
        for ax, (label, before, by) in zip(axes, steps, strict=True):
            deals, size = by.get("deals_won", 0.0), by.get("deal_size", 0.0)
            names = [label, "Deals won", "Deal size", theme.short_period(self.period.label)]
            bottoms = [0, before + min(deals, 0), before + deals + min(size, 0), 0]
            heights = [before, abs(deals), abs(size), now]
            colors = [
                theme.OKABE_ITO["sky"],
                COLORS["good"] if deals >= 0 else COLORS["bad"],
                COLORS["good"] if size >= 0 else COLORS["bad"],
                COLORS["primary"],
            ]
            x = np.arange(4)
            ax.bar(x, heights, bottom=bottoms, color=colors, width=0.62, zorder=2)
            for i, (value, top) in enumerate(
                zip(
                    [before, deals, size, now],
                    [before, bottoms[1] + heights[1], bottoms[2] + heights[2], now],
                    strict=True,
                )
            ):
                text = format_value(value, "currency")
                if i in (1, 2) and value > 0:
                    text = "+" + text
                ax.annotate(
                    text,
                    (i, top),
                    ha="center",
                    va="bottom",
                    xytext=(0, 2),
                    textcoords="offset points",
                    fontsize=8.5,
                    color=COLORS["ink"],
                )
            ax.plot([0.31, 0.69], [before, before], color=COLORS["muted"], linewidth=0.8)
            ax.plot([1.31, 1.69], [before + deals] * 2, color=COLORS["muted"], linewidth=0.8)
            ax.plot([2.31, 2.69], [now, now], color=COLORS["muted"], linewidth=0.8)
            ax.set_xticks(x, names)
            ax.tick_params(axis="x", labelsize=8.5)
            ax.set_title(f"vs {label}", fontsize=10, loc="left")
            ax.grid(axis="x", visible=False)
            ax.yaxis.set_major_formatter(theme.axis_formatter("currency"))
            ax.margins(y=0.15)
        fig.tight_layout()
        return fig

    def _bridge_alt(self, steps) -> str:
        parts = []
        for label, before, by in steps:
            parts.append(
                f"from {format_value(before, 'currency')} in {label}: deals won "
                f"{format_value(by.get('deals_won', 0.0), 'currency')}, deal size "
                f"{format_value(by.get('deal_size', 0.0), 'currency')}"
            )
        return f"Revenue bridge to {format_value(self.value('revenue'), 'currency')}: " + "; ".join(
            parts
        )

    def _contribution_figure(self, members: list[tuple[str, float]]):
        """Members ranked by contribution on P-1, the largest movers when there are many."""
        ranked = sorted(members, key=lambda m: abs(m[1]), reverse=True)[:MAX_MEMBERS]
        ranked.sort(key=lambda m: m[1])
        names = [_short(n) for n, _ in ranked]
        values = [v for _, v in ranked]
        height = 0.9 + 0.28 * len(ranked)
        fig, ax = new_figure(width=7.4, height=height)
        colors = [COLORS["good"] if v >= 0 else COLORS["bad"] for v in values]
        y = np.arange(len(ranked))
        ax.barh(y, values, color=colors, height=0.62, zorder=2)
        ax.axvline(0, color=COLORS["muted"], linewidth=0.8)
        ax.set_yticks(y, names)
        ax.tick_params(axis="y", labelsize=8.5)
        ax.xaxis.set_major_formatter(theme.axis_formatter("currency"))
        ax.grid(axis="y", visible=False)
        who = "team" if self.scope == "company" else "rep"
        shown = "" if len(members) <= MAX_MEMBERS else f" (the {MAX_MEMBERS} largest moves)"
        ax.set_title(
            f"Change in revenue on {self.previous_label} by {who}{shown}", fontsize=10, loc="left"
        )
        for yi, v in zip(y, values, strict=True):
            ax.annotate(
                ("+" if v > 0 else "") + format_value(v, "currency"),
                (v, yi),
                ha="left" if v >= 0 else "right",
                va="center",
                xytext=(3 if v >= 0 else -3, 0),
                textcoords="offset points",
                fontsize=8,
                color=COLORS["ink"],
            )
        ax.margins(x=0.18)
        fig.tight_layout()
        alt = f"Change in revenue on {self.previous_label} by {who}: " + ", ".join(
            f"{n} {format_value(v, 'currency')}" for n, v in sorted(members, key=lambda m: -m[1])
        )
        return fig, alt


def _short(name: str, width: int = 28) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"

"""Why a figure moved, in sentences a VP can act on: drivers, normal ranges, noise, maturing cohorts.

The words the report's Highlights and tiles and the email digest share, written from the batch's
cube (with its ``band_*`` and ``change_significant`` columns) and its drivers
(``kpi_lib.metrics.drivers``), so that the report and the digest tell one story. Sentences are
plain text; the report escapes them.

Example
-------
>>> ex = Explainer(batch, figures.get)                          # doctest: +SKIP
>>> ex.revenue_sentences("company", "all")[0]                   # doctest: +SKIP
'Revenue -38% on Sep 2026: -17 pts from 13 fewer deals won, -21 pts from smaller deals; ...'
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd

from kpi_lib.metrics import ranges
from kpi_lib.metrics.compare import change, is_missing
from kpi_lib.metrics.registry import REGISTRY, get_kpi
from kpi_lib.periods import Period
from kpi_lib.report import theme
from kpi_lib.report.theme import format_change, format_value

Get = Callable[..., float]
"""``get(kpi, scope, scope_id, period=None, field="value")``: one cube figure, NaN for n/a."""

FACTOR_WORDS = {
    "open_deals": "open deals",
    "win_rate": "win rate",
    "deal_size": "deal size",
    "cycle_time": "cycle time",
}


NOT_LISTED = {"deals_needed"}
"""KPIs the normal-range sentence leaves out: the deals still needed are a gap to a target, not
a performance (the target says whether it is large)."""
SIGNED = {"revenue_growth_mom", "revenue_growth_yoy"}
"""KPIs that can be below zero; any other's normal range is shown from 0 at least."""


def _possible(kpi: str, low: float, high: float) -> tuple[float, float]:
    """A normal range as the reader can meet it: counts, amounts and days are never below 0,
    a share of cases never above 100% (the band's arithmetic may reach past either)."""
    if kpi not in SIGNED:
        low = max(low, 0.0)
    if kpi in ranges.TESTED_RATES or kpi.startswith("stage_conversion:"):
        high = min(high, 1.0)
    return low, high


@dataclass(frozen=True)
class Cohort:
    """The last mature cohort of a cohort rate: its period and figures."""

    period: str
    value: float
    numerator: float
    denominator: float
    target: float


@dataclass(frozen=True)
class Noise:
    """A rate's change judged against noise: ``significant`` (None: not tested) and why."""

    significant: bool | None
    sizes: str = ""
    """The cases behind the two rates: ``"n = 244 vs 208"``."""

    @property
    def text(self) -> str:
        """``"within noise (n = 244 vs 208)"`` for a change that is noise, else ""."""
        return f"within noise ({self.sizes})" if self.significant is False else ""


class Explainer:
    """Sentences and judgements for one period's figures.

    ``get`` reads the cube (see ``Get``); ``periods`` and ``kpis`` are the cube's, ``teams``
    and ``reps`` give names (``team_id, team_name``; ``rep_id, rep_name``), ``drivers`` is the
    batch's (``compute_drivers``; None: no driver sentences), ``has_data(label)`` whether the
    org has data in a period. ``Explainer.of_batch`` builds one from a ``Batch``.
    """

    def __init__(
        self,
        get: Get,
        period: Period,
        as_of: str | None,
        periods: list[str],
        kpis: list[str],
        teams: pd.DataFrame,
        reps: pd.DataFrame,
        drivers: pd.DataFrame | None = None,
        has_data: Callable[[str], bool] | None = None,
    ):
        self.get, self.period, self.as_of = get, period, as_of
        self.periods, self.kpis = sorted(periods), list(kpis)
        self.drivers = drivers if drivers is not None else pd.DataFrame()
        self._has_data = has_data
        self._teams = dict(zip(teams["team_id"].astype(str), teams["team_name"], strict=True))
        self._reps = dict(zip(reps["rep_id"].astype(str), reps["rep_name"], strict=True))

    @classmethod
    def of_batch(cls, batch, get: Get) -> Explainer:
        """The explainer of a ``Batch`` (its period, report date, names and drivers)."""
        return cls(
            get,
            batch.period,
            batch.as_of,
            [str(p) for p in batch.cube["period"].unique()],
            list(dict.fromkeys(batch.cube["kpi"])),
            batch.teams,
            batch.reps,
            getattr(batch, "drivers", None),
            batch.has_data,
        )

    # --- where the data is -----------------------------------------------------------------

    def has_data(self, period: str) -> bool:
        return self._has_data(period) if self._has_data is not None else True

    def name(self, scope: str, scope_id: str) -> str:
        if scope == "team":
            return str(self._teams.get(str(scope_id), scope_id))
        if scope == "rep":
            return str(self._reps.get(str(scope_id), scope_id))
        return "The company"

    def effects(self, scope: str, scope_id: str, kpi: str, compared_with: str) -> pd.DataFrame:
        """The driver rows of one scope, KPI and comparison (``driver, effect, note``)."""
        d = self.drivers
        if d.empty:
            return pd.DataFrame({"driver": [], "effect": [], "note": []})
        rows = d[
            (d["scope"] == scope)
            & (d["scope_id"].astype(str) == str(scope_id))
            & (d["kpi"] == kpi)
            & (d["compared_with"] == compared_with)
        ]
        return rows[["driver", "effect", "note"]].reset_index(drop=True)

    # --- revenue ---------------------------------------------------------------------------

    def revenue_sentences(self, scope: str, scope_id: str) -> list[str]:
        """One sentence per comparison (P-1, P-1y) with data: the change of revenue and what
        made it, in points of the earlier revenue, and the member that moved it most.

        Example: ``"Revenue -38% on Sep 2026: -17 pts from 13 fewer deals won (50 vs 63),
        -21 pts from smaller deals ($34.8K vs $45.1K on average); North America Enterprise
        accounts for -$954K."``
        """
        out = []
        for compared_with, other in self.comparisons():
            sentence = self._revenue_sentence(scope, scope_id, compared_with, other)
            if sentence:
                out.append(sentence)
        return out

    def comparisons(self) -> list[tuple[str, Period]]:
        """``[("previous", P-1), ("year_ago", P-1y)]``, the names ``drivers.csv`` gives them;
        for a year only the first (its previous period is its year ago)."""
        out = [("previous", self.period.previous), ("year_ago", self.period.year_ago)]
        return out[:1] if self.period.year_ago == self.period.previous else out

    def _revenue_sentence(self, scope, scope_id, compared_with: str, other: Period) -> str:
        if not self.has_data(other.label):
            return ""
        effects = self.effects(scope, scope_id, "revenue", compared_with)
        if effects.empty:
            return ""
        by = dict(zip(effects["driver"], effects["effect"], strict=True))
        r1 = self.get("revenue", scope, scope_id)
        r0 = self.get("revenue", scope, scope_id, other.label)
        n1 = self.get("avg_deal_size", scope, scope_id, field="denominator")
        n0 = self.get("avg_deal_size", scope, scope_id, other.label, field="denominator")
        s1 = self.get("avg_deal_size", scope, scope_id)
        s0 = self.get("avg_deal_size", scope, scope_id, other.label)
        when = theme.short_period(other.label)
        if is_missing(r0) or is_missing(r1):
            return ""
        if r0 == r1:
            return f"Revenue level with {when} ({format_value(r1, 'currency')})."
        if r0 == 0:
            head = f"Revenue {format_value(r1, 'currency')} against none in {when}"
            parts = [f"{_count(n1)} won"]
        else:
            head = f"Revenue {_signed_percent(r1 / r0 - 1)} on {when}"
            parts = []
            deals = by.get("deals_won", 0.0)
            size = by.get("deal_size", 0.0)
            for effect, words in (
                (deals, _deal_count_words(n0, n1)),
                (size, _deal_size_words(s0, s1)),
            ):
                if words and round(effect / r0 * 100) != 0:
                    parts.append(f"{_signed_points(effect / r0)} from {words}")
            if not parts:
                parts.append(f"{_deal_count_words(n0, n1)} and {_deal_size_words(s0, s1)}")
        text = f"{head}: {', '.join(p for p in parts if p)}"
        member = self._top_member(effects, r1 - r0)
        if member:
            kind, member_id, effect = member
            text += f"; {self.name(kind, member_id)} accounts for {_signed_money(effect)}"
        return text + "."

    def _top_member(self, effects: pd.DataFrame, total: float):
        """The team or rep whose change moved the total most, in the total's direction."""
        members = effects[effects["driver"].str.contains(":", regex=False)]
        if members.empty or not total:
            return None
        same = members[members["effect"] * total > 0]
        if same.empty:
            return None
        top = same.loc[same["effect"].abs().idxmax()]
        kind, _, member_id = str(top["driver"]).partition(":")
        return kind, member_id, float(top["effect"])

    def contributions(self, scope: str, scope_id: str, compared_with: str = "previous"):
        """The members' revenue changes, largest rise first: ``[(name, effect)]``."""
        effects = self.effects(scope, scope_id, "revenue", compared_with)
        members = effects[effects["driver"].str.contains(":", regex=False)]
        rows = []
        for driver, effect in zip(members["driver"], members["effect"], strict=True):
            kind, _, member_id = str(driver).partition(":")
            rows.append((self.name(kind, member_id), float(effect)))
        return sorted(rows, key=lambda r: r[1], reverse=True)

    # --- velocity --------------------------------------------------------------------------

    def velocity_lead(self, scope: str, scope_id: str) -> str:
        """Which factor moved sales velocity most on P-1: ``"moved most by win rate
        (-$21K/day)"``; the reason when there is no split; "" without drivers."""
        effects = self.effects(scope, scope_id, "sales_velocity", "previous")
        if effects.empty or not self.has_data(self.period.previous.label):
            return ""
        split = _split(effects)
        if split.empty:
            return str(effects["note"].iloc[0])
        top = split.loc[split["effect"].abs().idxmax()]
        return (
            f"moved most by {FACTOR_WORDS[top['driver']]} "
            f"({_signed_money(top['effect'])}/day on {theme.short_period(self.period.previous.label)})"
        )

    def velocity_sentence(self, scope: str, scope_id: str) -> str:
        """Sales velocity's change on P-1 and its two largest factors, or ""."""
        v1 = self.get("sales_velocity", scope, scope_id)
        v0 = self.get("sales_velocity", scope, scope_id, self.period.previous.label)
        split = _split(self.effects(scope, scope_id, "sales_velocity", "previous"))
        if is_missing(v1) or is_missing(v0) or split.empty or v0 == 0:
            return ""
        ranked = split.reindex(split["effect"].abs().sort_values(ascending=False).index)
        named = [
            f"{FACTOR_WORDS[d]} {_signed_money(e)}/day"
            for d, e in zip(ranked["driver"][:2], ranked["effect"][:2], strict=True)
        ]
        return (
            f"Sales velocity {_signed_percent(v1 / v0 - 1)} on "
            f"{theme.short_period(self.period.previous.label)} "
            f"({format_value(v1, 'currency_per_day')}): {named[0]}"
            + (f", {named[1]}" if len(named) > 1 else "")
            + "."
        )

    # --- noise and normal ranges -----------------------------------------------------------

    def noise(self, kpi: str, scope: str, scope_id: str, other: str) -> Noise:
        """Whether a tested rate's change from ``other`` (a period label) to P is more than
        noise (``ranges.two_proportion_p``); ``Noise(None)`` for a KPI that is not tested."""
        if kpi not in ranges.TESTED_RATES:
            return Noise(None)
        x1 = self.get(kpi, scope, scope_id, field="numerator")
        n1 = self.get(kpi, scope, scope_id, field="denominator")
        x0 = self.get(kpi, scope, scope_id, other, field="numerator")
        n0 = self.get(kpi, scope, scope_id, other, field="denominator")
        p = ranges.two_proportion_p(x1, n1, x0, n0)
        if is_missing(p):
            return Noise(None)
        if p < ranges.SIGNIFICANCE:
            return Noise(True)
        return Noise(False, f"n = {n1:,.0f} vs {n0:,.0f}")

    def interval(self, kpi: str, scope: str, scope_id: str) -> str:
        """A tested rate's 95% Wilson interval as text (``"95% CI 18.9-30.1%"``), or ""."""
        if kpi not in ranges.TESTED_RATES:
            return ""
        x = self.get(kpi, scope, scope_id, field="numerator")
        n = self.get(kpi, scope, scope_id, field="denominator")
        if is_missing(x) or is_missing(n) or not n:
            return ""
        low, high = ranges.wilson_interval(x, n)
        return f"95% CI {low * 100:.1f}-{high * 100:.1f}%"

    def unusual(self, scope: str, scope_id: str) -> list[tuple[str, str]]:
        """The KPIs of this scope outside their normal range this period, as ``(kpi, text)``:
        ``("activities", "Activities 5,065, above its normal 4,132-4,621")``. Cohort rates
        still maturing are left out: their low value is their youth, not news."""
        out = []
        for kpi in self._kpis():
            meta = get_kpi(kpi)
            if scope not in meta.scopes or kpi in NOT_LISTED or self.maturity(kpi):
                continue
            value = self.get(kpi, scope, scope_id)
            low = self.get(kpi, scope, scope_id, field="band_low")
            high = self.get(kpi, scope, scope_id, field="band_high")
            if is_missing(value) or is_missing(low) or low <= value <= high:
                continue
            side = "above" if value > high else "below"
            label = meta.label + (f" ({kpi.split(':', 1)[1]})" if ":" in kpi else "")
            low, high = _possible(kpi, low, high)
            normal = (
                format_value(low, meta.unit)
                if low == high
                else f"{format_value(low, meta.unit)} to {format_value(high, meta.unit)}"
            )
            out.append(
                (kpi, f"{label} {format_value(value, meta.unit)}, {side} its normal {normal}")
            )
        return out

    def unusual_sentence(self, scope: str, scope_id: str) -> str:
        """Every KPI outside its normal range in one sentence, or "" (none, or no ranges)."""
        items = self.unusual(scope, scope_id)
        if not items:
            return ""
        return (
            "Outside the normal range of the last 12 months: "
            + "; ".join(text for _, text in items)
            + "."
        )

    def _kpis(self) -> list[str]:
        return [k for k in self.kpis if k.split(":", 1)[0] in REGISTRY]

    # --- cohorts still maturing ------------------------------------------------------------

    def maturity(self, kpi: str, period: str | None = None) -> str:
        """Why a cohort rate of ``period`` (default P) will still rise, or "" (``maturity``)."""
        cycle = self.get("sales_cycle_days", "company", "all")
        p = Period.parse(period) if period else self.period
        return maturity(kpi, p, self.as_of, cycle)

    def mature_cohort(self, kpi: str, scope: str, scope_id: str) -> Cohort | None:
        """The latest cohort of ``kpi`` before P that is mature and has a value at this scope
        (within the batch's periods), or None."""
        earlier = [p for p in self.periods if p < self.period.label and self.has_data(p)]
        for label in reversed(earlier):
            if self.maturity(kpi, label):
                continue
            value = self.get(kpi, scope, scope_id, label)
            if is_missing(value):
                continue
            return Cohort(
                label,
                value,
                self.get(kpi, scope, scope_id, label, field="numerator"),
                self.get(kpi, scope, scope_id, label, field="denominator"),
                self.get(kpi, scope, scope_id, label, field="target"),
            )
        return None

    def cohort_sentence(self, scope: str, scope_id: str, kpi: str = "lead_conversion_rate") -> str:
        """A cohort rate from its last mature cohort while this period's still matures, or "".

        Example: ``"Lead conversion was 11.6% for the leads qualified in September 2026 (38 of
        327), the latest cohort a sales cycle old; November 2026's leads are still converting
        (target 12.0%)."``
        """
        if scope not in get_kpi(kpi).scopes or not self.maturity(kpi):
            return ""
        cohort = self.mature_cohort(kpi, scope, scope_id)
        if cohort is None:
            return ""
        text = (
            f"{get_kpi(kpi).label} was {theme.format_percent(cohort.value, 1)} for the leads "
            f"qualified in {theme.month_name(cohort.period)} ({cohort.numerator:,.0f} of "
            f"{cohort.denominator:,.0f}), the latest cohort a sales cycle old; "
            f"{theme.month_name(self.period.label)}'s leads are still converting"
        )
        if not is_missing(cohort.target) and cohort.target:
            text += f" (target {theme.format_percent(cohort.target, 1)})"
        return text + "."

    def sentences(self, scope: str, scope_id: str) -> list[str]:
        """What the digest says under a scope's tiles: the revenue drivers, velocity, the
        mature cohort of lead conversion and the KPIs outside their normal range."""
        return [
            s
            for s in (
                *self.revenue_sentences(scope, scope_id),
                self.velocity_sentence(scope, scope_id),
                self.cohort_sentence(scope, scope_id),
                self.unusual_sentence(scope, scope_id),
            )
            if s
        ]

    def cohort_line(self, kpi: str, cohort: Cohort) -> str:
        """``"leads qualified in Jul 2026, the latest cohort a sales cycle old"``."""
        what = "leads qualified" if kpi == "lead_conversion_rate" else "cohort of"
        return (
            f"{what} in {theme.month_name(cohort.period)}, the latest cohort a sales cycle old "
            f"({cohort.numerator:,.0f} of {cohort.denominator:,.0f})"
        )

    def rate_change_words(self, kpi: str, scope: str, scope_id: str, other: str) -> str:
        """``"up 2.1 pts on Sep 2026"``, ``"within noise of Sep 2026 (n = 208 vs 190)"``, or ""."""
        now, before = self.get(kpi, scope, scope_id), self.get(kpi, scope, scope_id, other)
        delta = change(now, before, get_kpi(kpi).unit)
        if is_missing(delta):
            return ""
        when = theme.short_period(other)
        noise = self.noise(kpi, scope, scope_id, other)
        if noise.significant is False:
            return f"no significant change on {when} ({noise.sizes})"
        word = "up" if delta > 0 else "down" if delta < 0 else "level"
        return f"{word} {format_change(abs(delta), get_kpi(kpi).unit).lstrip('+')} on {when}"


def _split(effects: pd.DataFrame) -> pd.DataFrame:
    """The factor rows of a velocity split (none when there is no split, only its note)."""
    split = effects.dropna(subset=["effect"])
    return split[split["driver"] != ""]


def maturity(kpi: str, period: Period, as_of: str | None, cycle: float) -> str:
    """Why a cohort rate of ``period`` will still rise on the report date ``as_of``, or ""
    when its cohort is mature: once its youngest members (the period's last day) are a sales
    cycle old (``cycle``: the company's average days from created to won in the report's
    period).

    Example: ``"qualified 5-36 days ago; a won deal takes 43 days on average"``.
    """
    if not get_kpi(kpi).cohort or not as_of:
        return ""
    report_day = pd.Timestamp(as_of).normalize() + pd.Timedelta(days=1)
    newest = (report_day - min(period.end, report_day)).days
    oldest = (report_day - period.start).days
    if is_missing(cycle) or newest >= cycle or oldest <= 0:
        return ""
    return f"qualified {newest}-{oldest} days ago; a won deal takes {cycle:,.0f} days on average"


def _count(n: float) -> str:
    n = 0 if is_missing(n) else int(round(n))
    return f"{n:,} deal{'s' if n != 1 else ''}"


def _deal_count_words(n0: float, n1: float) -> str:
    n0 = 0 if is_missing(n0) else int(round(n0))
    n1 = 0 if is_missing(n1) else int(round(n1))
    if n1 == n0:
        return ""
    more = "more" if n1 > n0 else "fewer"
    return f"{abs(n1 - n0):,} {more} deal{'s' if abs(n1 - n0) != 1 else ''} won ({n1:,} vs {n0:,})"


def _deal_size_words(s0: float, s1: float) -> str:
    if is_missing(s0) or is_missing(s1) or s0 == s1:
        return ""
    word = "larger" if s1 > s0 else "smaller"
    return (
        f"{word} deals ({format_value(s1, 'currency')} vs {format_value(s0, 'currency')} "
        "on average)"
    )


def _signed_percent(x: float) -> str:
    return f"{'+' if x > 0 else '-' if x < 0 else ''}{abs(x) * 100:,.0f}%"


def _signed_points(x: float) -> str:
    return f"{'+' if x > 0 else '-' if x < 0 else ''}{abs(x) * 100:,.0f} pts"


def _signed_money(x: float) -> str:
    return ("+" if x > 0 else "-" if x < 0 else "") + format_value(abs(x), "currency")

"""The KPI registry: every KPI defined once, with its metadata and its expression.

A KPI is one of three shapes, all evaluated on the additive *measures* that
``kpi_lib.metrics.measures`` computes in the database for each period x scope:

- ``Count("won_count")``: the measure itself (value = numerator, no denominator);
- ``Ratio("won_count", "closed_count")``: numerator / denominator, null when the denominator is 0;
- ``Derived(fn, ...)``: a function of other KPIs of the same scope (and of P-1, P-1y).

Reports take labels, units and definitions from here, never from strings typed in a notebook.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from kpi_lib.errors import ParamsError


@dataclass(frozen=True)
class Count:
    """The KPI is one additive measure (a count or a sum)."""

    measure: str


@dataclass(frozen=True)
class Ratio:
    """The KPI is ``numerator / denominator`` of two additive measures; null when it is 0."""

    numerator: str
    denominator: str
    scale: float = 1.0


@dataclass(frozen=True)
class Derived:
    """The KPI is computed from other KPIs by ``fn(get) -> (value, numerator, denominator)``.

    ``get(kpi, shift=0)`` returns the values of ``kpi`` (a Series over period x scope) in the
    period ``shift`` steps away (``-1`` = P-1); ``get(kpi, year_ago=True)`` gives P-1y.
    """

    fn: Callable
    depends: tuple[str, ...]


@dataclass(frozen=True)
class Kpi:
    """One KPI: name, presentation metadata, and its expression.

    Parameters
    ----------
    unit
        ``count``, ``currency``, ``ratio`` (shown as a percentage), ``days`` or
        ``currency_per_day``.
    higher_is_better
        Drives the colour of a change: ``False`` for costs and churn.
    additive
        Whether values add up over months (counts and sums of events): then a quarter's target
        is the sum of its months' targets and a month to date projects to the month's end.
        Balances on a date (open deals, pipeline) add up over scopes but not over months.
    inputs
        Canonical ``table`` or ``table.column`` names the KPI needs; when one is missing the KPI
        is unavailable (null) with that reason, never zero.
    scopes
        The scopes the KPI is defined for; elsewhere it is null.
    scope_inputs
        Further inputs one scope needs (team CAC needs ``spend.team_id``); without them the
        KPI is null at that scope.
    cohort
        A cohort rate: the figure of a recent period still grows as its cohort's deals close
        (lead conversion). Reports say so while the cohort is younger than a sales cycle.
    """

    name: str
    label: str
    unit: str
    higher_is_better: bool
    definition: str
    formula: str
    expr: Count | Ratio | Derived
    inputs: tuple[str, ...] = ()
    additive: bool = False
    scopes: tuple[str, ...] = ("company", "team", "rep")
    scope_inputs: dict[str, tuple[str, ...]] = field(default_factory=dict)
    per_stage: bool = False
    cohort: bool = False
    edge_cases: str = ""
    extra: dict = field(default_factory=dict)


def ratio(numerator: pd.Series, denominator: pd.Series) -> pd.Series:
    """``numerator / denominator``, null (NaN) where the denominator is 0 or null."""
    return numerator / denominator.where(denominator != 0)


def _velocity(get):
    days = get("sales_cycle_days")
    numerator = get("open_at_start") * get("win_rate") * get("avg_deal_size")
    return ratio(numerator, days), numerator, days


def _growth(shift=-1, year_ago=False):
    def fn(get):
        now, before = get("revenue"), get("revenue", shift=shift, year_ago=year_ago)
        return ratio(now, before) - 1, now, before

    return fn


def _churn(get):
    lost, base = get("_lost_accounts"), get("_accounts_prev")
    return ratio(lost, base), lost, base


def _clv(get):
    churn = get("churn_rate")
    numerator = get("_arpa") * get("_gross_margin")
    return ratio(numerator, churn), numerator, churn


def _attainment(get):
    revenue, target = get("revenue"), get("_target:revenue")
    return ratio(revenue, target), revenue, target


def _weighted_pipeline(get):
    """The weighted open amount; n/a where there is open amount and none of it has a stage
    probability (nothing to weigh it by), instead of a silent 0."""
    weighted, unpriced, pipe = (
        get("_weighted_pipeline"),
        get("_unpriced_pipeline"),
        get("pipeline_amount"),
    )
    value = weighted.where(~((pipe > 0) & (unpriced >= pipe)))
    return value, value, pd.Series(np.nan, index=value.index)


def _deals_needed(get):
    revenue, target, size = get("revenue"), get("_target:revenue"), get("avg_deal_size")
    remaining = (target - revenue).clip(lower=0)
    needed = np.ceil(ratio(remaining, size)).where(remaining > 0, 0.0).where(remaining.notna())
    return needed, remaining, size


_OPP = ("opportunities",)
# Retention, churn and CLV of a team or rep follow accounts.owner_rep_id.
_BY_ACCOUNT_OWNER = {"team": ("accounts.owner_rep_id",), "rep": ("accounts.owner_rep_id",)}
_KPIS: list[Kpi] = [
    # --- leads and activity -------------------------------------------------------------------
    Kpi(
        "leads_created",
        "Leads created",
        "count",
        True,
        "New leads created in the period.",
        "count of leads with created_at in P",
        Count("leads_created"),
        ("leads",),
        additive=True,
    ),
    Kpi(
        "qualified_leads",
        "Qualified leads",
        "count",
        True,
        "Leads that were qualified during the period.",
        "count of leads with qualified_at in P",
        Count("qualified_leads"),
        ("leads", "leads.qualified_at"),
        additive=True,
    ),
    Kpi(
        "lead_conversion_rate",
        "Lead conversion rate",
        "ratio",
        True,
        "Of the leads qualified in the period, the share that became a won deal (so far).",
        "won(leads qualified in P) / leads qualified in P",
        Ratio("qualified_converted", "qualified_leads"),
        ("leads", "leads.qualified_at", "leads.opportunity_id"),
        cohort=True,
        edge_cases="A cohort rate: it rises as the cohort's deals close; deals won after the "
        "report date (--as-of) do not count. No qualified leads: n/a.",
    ),
    Kpi(
        "activities",
        "Activities",
        "count",
        True,
        "Calls, emails, meetings and demos logged in the period.",
        "count of activities with occurred_at in P",
        Count("activities"),
        ("activities",),
        additive=True,
    ),
    *[
        Kpi(
            f"activities_{kind}",
            f"{kind.capitalize()}s",
            "count",
            True,
            f"{kind.capitalize()}s logged in the period.",
            f"count of activities of type '{kind}' with occurred_at in P",
            Count(f"activities_{kind}"),
            ("activities",),
            additive=True,
        )
        for kind in ("call", "email", "meeting", "demo")
    ],
    # --- pipeline and deals ---------------------------------------------------------------------
    Kpi(
        "opportunities_created",
        "Opportunities created",
        "count",
        True,
        "New opportunities opened in the period.",
        "count of opportunities with created_at in P",
        Count("opportunities_created"),
        _OPP,
        additive=True,
    ),
    Kpi(
        "deals_won",
        "Deals won",
        "count",
        True,
        "Opportunities closed as won in the period.",
        "count of won opportunities with closed_at in P",
        Count("won_count"),
        _OPP,
        additive=True,
    ),
    Kpi(
        "win_rate",
        "Win rate",
        "ratio",
        True,
        "Of the deals closed in the period, the share that were won.",
        "won / (won + lost), opportunities closed in P, by count",
        Ratio("won_count", "closed_count"),
        _OPP,
        edge_cases="Nothing closed in P: n/a.",
    ),
    Kpi(
        "avg_deal_size",
        "Average deal size",
        "currency",
        True,
        "The average amount of the deals won in the period.",
        "mean amount of won opportunities closed in P (null amounts excluded)",
        Ratio("won_amount", "won_with_amount"),
        ("opportunities.amount",),
        edge_cases="Won deals without an amount are left out of both sums; none with an amount: n/a.",
    ),
    Kpi(
        "sales_cycle_days",
        "Sales cycle",
        "days",
        False,
        "How long the deals won in the period took, from opening to close, on average.",
        "mean of (closed_at - created_at) in fractional days, won opportunities closed in P",
        Ratio("won_cycle_days", "won_count"),
        _OPP,
        edge_cases="36 hours count as 1.5 days.",
    ),
    Kpi(
        "open_at_start",
        "Open deals at start",
        "count",
        True,
        "Deals that were open when the period began.",
        "opportunities created before P starts and not closed before P starts",
        Count("open_at_start"),
        _OPP,
    ),
    Kpi(
        "sales_velocity",
        "Sales velocity",
        "currency_per_day",
        True,
        "Revenue the pipeline produces per day: open deals x win rate x deal size / cycle length.",
        "open_at_start x win_rate x avg_deal_size / sales_cycle_days",
        Derived(_velocity, ("open_at_start", "win_rate", "avg_deal_size", "sales_cycle_days")),
        ("opportunities.amount",),
        edge_cases="Any factor n/a (nothing closed, nothing won): n/a.",
    ),
    Kpi(
        "pipeline_amount",
        "Open pipeline",
        "currency",
        True,
        "The total amount of deals open at the end of the period.",
        "sum of amount of opportunities open at the end of P",
        Count("pipeline_amount"),
        ("opportunities.amount",),
    ),
    Kpi(
        "weighted_pipeline",
        "Weighted pipeline",
        "currency",
        True,
        "Open pipeline weighted by each deal's stage probability: what it is likely to bring.",
        "sum of amount x probability(stage at the end of P), open opportunities",
        Derived(
            _weighted_pipeline, ("pipeline_amount", "_weighted_pipeline", "_unpriced_pipeline")
        ),
        ("opportunities.amount",),
        edge_cases="Stage probabilities come from the org's kpis.yaml, else from the CRM export; "
        "deals in a stage without one are left out and the report names those stages; when no "
        "open amount has a probability the weighted pipeline is n/a, never 0.",
    ),
    # --- revenue --------------------------------------------------------------------------------
    Kpi(
        "revenue",
        "Revenue (bookings)",
        "currency",
        True,
        "The value of the deals won in the period.",
        "sum of amount of won opportunities closed in P",
        Count("won_amount"),
        ("opportunities.amount",),
        additive=True,
    ),
    Kpi(
        "revenue_per_rep",
        "Revenue per rep",
        "currency",
        True,
        "Bookings divided by the quota-carrying reps active in the period.",
        "revenue / quota-carrying reps active in P",
        Ratio("won_amount", "reps_active"),
        ("opportunities.amount",),
        edge_cases="A rep is active when start_at < end of P and end_at >= start of P; "
        "no dates means always active. No active rep: n/a.",
    ),
    Kpi(
        "revenue_growth_mom",
        "Revenue growth vs previous period",
        "ratio",
        True,
        "How much more (or less) was booked than in the previous period.",
        "revenue(P) / revenue(P-1) - 1",
        Derived(_growth(-1), ("revenue",)),
        ("opportunities.amount",),
        edge_cases="Nothing booked in P-1: n/a.",
    ),
    Kpi(
        "revenue_growth_yoy",
        "Revenue growth vs a year ago",
        "ratio",
        True,
        "How much more (or less) was booked than in the same period a year earlier.",
        "revenue(P) / revenue(P-1y) - 1",
        Derived(_growth(year_ago=True), ("revenue",)),
        ("opportunities.amount",),
        edge_cases="Nothing booked in P-1y: n/a.",
    ),
    Kpi(
        "quota_attainment",
        "Quota attainment",
        "ratio",
        True,
        "Bookings as a share of the revenue target.",
        "revenue / revenue target",
        Derived(_attainment, ("revenue",)),
        ("opportunities.amount",),
        edge_cases="No revenue target for the scope and period: n/a.",
    ),
    Kpi(
        "deals_needed",
        "Deals needed to hit target",
        "count",
        False,
        "How many more average-size deals it takes to reach the revenue target.",
        "ceil(max(target - revenue, 0) / avg_deal_size)",
        Derived(_deals_needed, ("revenue", "avg_deal_size")),
        ("opportunities.amount",),
        edge_cases="0 once the target is met; n/a without a target or an average deal size.",
    ),
    # --- customers ------------------------------------------------------------------------------
    Kpi(
        "new_customers",
        "New customers",
        "count",
        True,
        "Accounts that won their first deal in the period.",
        "accounts whose first won opportunity closed in P",
        Count("new_customers"),
        ("opportunities.account_id",),
        additive=True,
        edge_cases="Team and rep scope: the owner of the account's first won deal.",
    ),
    Kpi(
        "cac",
        "Customer acquisition cost",
        "currency",
        False,
        "Sales and marketing spend per new customer won in the period.",
        "(sales + marketing spend in P) / new_customers",
        Ratio("spend", "new_customers"),
        ("spend", "opportunities.account_id"),
        scopes=("company", "team"),
        scope_inputs={"team": ("spend.team_id",)},
        edge_cases="Team scope counts only spend rows that carry the team_id; rep scope: n/a. "
        "No new customer: n/a.",
    ),
    Kpi(
        "retention_rate",
        "Customer retention",
        "ratio",
        True,
        "Of the accounts with revenue in the previous period, the share that still have revenue.",
        "accounts with revenue > 0 in P-1 and P / accounts with revenue > 0 in P-1",
        Ratio("retained_accounts", "accounts_prev"),
        ("opportunities.account_id",),
        scope_inputs=_BY_ACCOUNT_OWNER,
        edge_cases="Uses the revenue table, or won deals when there is none. Team and rep scope "
        "use accounts.owner_rep_id. No account with revenue in P-1: n/a.",
    ),
    Kpi(
        "churn_rate",
        "Customer churn",
        "ratio",
        False,
        "Of the accounts with revenue in the previous period, the share that have none now.",
        "1 - retention_rate",
        Derived(_churn, ("retention_rate",)),
        ("opportunities.account_id",),
        scope_inputs=_BY_ACCOUNT_OWNER,
    ),
    Kpi(
        "clv",
        "Customer lifetime value",
        "currency",
        True,
        "What an average customer is worth over its lifetime: revenue per account / churn.",
        "ARPA(P) x gross_margin / churn_rate; ARPA = revenue in P / accounts with revenue in P",
        Derived(_clv, ("churn_rate",)),
        ("opportunities.account_id",),
        scope_inputs=_BY_ACCOUNT_OWNER,
        edge_cases="Revenue-based unless params set a gross margin (default 1.0). No churn: n/a.",
    ),
    # --- stages (one row per stage) ----------------------------------------------------------------
    Kpi(
        "time_in_stage_days",
        "Time in stage",
        "days",
        False,
        "How long deals spent in this stage, for stage visits that ended in the period.",
        "mean days from entering the stage to entering the next one (or closing)",
        Ratio("stage_days", "stage_exits"),
        ("stage_history",),
        per_stage=True,
    ),
    Kpi(
        "stage_conversion",
        "Stage conversion",
        "ratio",
        True,
        "Of the deals that left this stage in the period, the share that moved forward.",
        "stage exits to a later open stage or a win / stage exits",
        Ratio("stage_advanced", "stage_exits"),
        ("stage_history",),
        per_stage=True,
    ),
]

# Helpers the derived KPIs read; computed like KPIs, never shown in the cube.
_HIDDEN: list[Kpi] = [
    Kpi(
        "_weighted_pipeline",
        "",
        "currency",
        True,
        "",
        "",
        Count("weighted_pipeline"),
        ("opportunities.amount",),
    ),
    Kpi(
        "_unpriced_pipeline",
        "",
        "currency",
        True,
        "",
        "",
        Count("unpriced_pipeline"),
        ("opportunities.amount",),
    ),
    Kpi(
        "_accounts_prev",
        "",
        "count",
        True,
        "",
        "",
        Count("accounts_prev"),
        ("opportunities.account_id",),
        additive=True,
        scope_inputs=_BY_ACCOUNT_OWNER,
    ),
    Kpi(
        "_lost_accounts",
        "",
        "count",
        True,
        "",
        "",
        Count("lost_accounts"),
        ("opportunities.account_id",),
        additive=True,
        scope_inputs=_BY_ACCOUNT_OWNER,
    ),
    Kpi(
        "_arpa",
        "",
        "currency",
        True,
        "",
        "",
        Ratio("account_revenue", "accounts_active"),
        ("opportunities.account_id",),
        scope_inputs=_BY_ACCOUNT_OWNER,
    ),
]

REGISTRY: dict[str, Kpi] = {k.name: k for k in _KPIS}
HIDDEN: dict[str, Kpi] = {k.name: k for k in _HIDDEN}

HEADLINE_KPIS: tuple[str, ...] = (
    "revenue",
    "revenue_per_rep",
    "avg_deal_size",
    "win_rate",
    "lead_conversion_rate",
    "qualified_leads",
    "activities",
    "sales_velocity",
    "cac",
    "clv",
    "retention_rate",
)


def get_kpi(name: str) -> Kpi:
    """The registry entry for ``name`` (``time_in_stage_days:Demo`` -> ``time_in_stage_days``).

    Raises ``ParamsError`` listing the known KPIs when the name is unknown.
    """
    base = name.split(":", 1)[0]
    if base not in REGISTRY:
        raise ParamsError(f"unknown KPI '{name}'; known KPIs: {', '.join(REGISTRY)}")
    return REGISTRY[base]


_UNIT_WORDS = {
    "count": "count",
    "currency": "currency",
    "ratio": "share (%)",
    "days": "days",
    "currency_per_day": "currency per day",
}


def registry_markdown() -> str:
    """The registry as the Markdown reference of ``docs/kpis.md`` (one section per KPI)."""
    lines = []
    for k in REGISTRY.values():
        scopes = ", ".join(k.scopes)
        inputs = ", ".join(f"`{i}`" for i in k.inputs) or "`opportunities`"
        better = "higher is better" if k.higher_is_better else "lower is better"
        lines += [
            f"### `{k.name}`{' (one per stage: `' + k.name + ':<stage>`)' if k.per_stage else ''}",
            "",
            f"**{k.label}**: {k.definition}",
            "",
            f"- Formula: {k.formula}",
            f"- Unit: {_UNIT_WORDS[k.unit]}; {better}; scopes: {scopes}",
            f"- Inputs: {inputs}",
        ]
        if k.scope_inputs:
            needs = "; ".join(
                f"{s} scope also needs `{', '.join(v)}`" for s, v in k.scope_inputs.items()
            )
            lines.append(f"- Scope rules: {needs}")
        if k.edge_cases:
            lines.append(f"- Edge cases: {k.edge_cases}")
        lines.append("")
    return "\n".join(lines)


def write_kpi_docs(path: str = "docs/kpis.md") -> None:
    """Regenerate the reference section (everything after ``## Reference``) of the KPI page."""
    from pathlib import Path

    page = Path(path)
    head, marker, _ = page.read_text().partition("## Reference\n")
    page.write_text(head + marker + "\n" + registry_markdown())

"""Properties every cube has, on random small but valid CRMs (hypothesis).

Ratios are n/a or within [0, 1], nothing is infinite, counts are whole and non-negative, team
and rep revenues add up to the company's, churn is the complement of retention.
"""

from __future__ import annotations

import math

import pandas as pd
from conftest import frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kpi_lib

START = pd.Timestamp("2026-07-01")
AS_OF = "2026-11-28"
PERIODS = "2026-09:2026-11"
RATIO_KPIS = ["win_rate", "lead_conversion_rate", "retention_rate", "churn_rate"]
COUNT_KPIS = [
    "qualified_leads",
    "activities",
    "activities_call",
    "activities_email",
    "activities_meeting",
    "activities_demo",
    "new_customers",
]
NON_NEGATIVE_KPIS = [
    "revenue",
    "avg_deal_size",
    "sales_cycle_days",
    "sales_velocity",
    "revenue_per_rep",
    "cac",
    "clv",
    *RATIO_KPIS,
    *COUNT_KPIS,
]


def instants(low_days: int = 0, high_days: int = 180):
    """Timestamps from July to the end of December 2026, to the hour, as strings."""
    return st.integers(low_days * 24, high_days * 24).map(
        lambda h: str(START + pd.Timedelta(hours=h))
    )


@st.composite
def crms(draw) -> dict[str, pd.DataFrame]:
    """A valid canonical CRM: 1-3 teams, 1-4 reps, 3-12 opportunities, leads, activities..."""
    team_ids = [f"t{i}" for i in range(draw(st.integers(1, 3)))]
    teams = [{"team_id": t, "team_name": t.upper()} for t in team_ids]
    reps = []
    for i in range(draw(st.integers(1, 4))):
        start = draw(st.none() | instants())
        end = draw(st.none() | instants())
        if start and end and end < start:
            start, end = end, start
        reps.append(
            {
                "rep_id": f"r{i}",
                "rep_name": f"Rep {i}",
                "team_id": draw(st.sampled_from(team_ids)),
                "start_at": start,
                "end_at": end,
                "is_quota_carrying": draw(st.booleans()),
            }
        )
    rep_ids = [r["rep_id"] for r in reps]
    account_ids = [f"a{i}" for i in range(draw(st.integers(1, 4)))]
    accounts = [
        {"account_id": a, "account_name": a.upper(), "owner_rep_id": draw(st.sampled_from(rep_ids))}
        for a in account_ids
    ]

    opps = []
    for i in range(draw(st.integers(3, 12))):
        created = pd.Timestamp(draw(instants(31, 140)))  # August to mid-November
        state = draw(st.sampled_from(["won", "lost", "open"]))
        closed = created + pd.Timedelta(hours=draw(st.integers(0, 24 * 45)))
        opps.append(
            {
                "opportunity_id": f"o{i}",
                "owner_rep_id": draw(st.sampled_from(rep_ids)),
                "created_at": str(created),
                "stage": state,
                "is_closed": state != "open",
                "is_won": state == "won",
                "account_id": draw(st.none() | st.sampled_from(account_ids)),
                "lead_id": None,
                "closed_at": None if state == "open" else str(closed),
                "amount": draw(st.integers(0, 50_000).map(float) | st.none()),
            }
        )
    opp_ids = [o["opportunity_id"] for o in opps]

    leads = []
    for i in range(draw(st.integers(2, 8))):
        created = pd.Timestamp(draw(instants(45, 140)))
        delay = draw(st.integers(0, 24 * 30) | st.none())
        qualified = None if delay is None else created + pd.Timedelta(hours=delay)
        leads.append(
            {
                "lead_id": f"l{i}",
                "owner_rep_id": draw(st.sampled_from(rep_ids)),
                "created_at": str(created),
                "qualified_at": None if qualified is None else str(qualified),
                "opportunity_id": draw(st.none() | st.sampled_from(opp_ids)) if opp_ids else None,
            }
        )

    activities = [
        {
            "activity_id": f"x{i}",
            "rep_id": draw(st.sampled_from(rep_ids)),
            "occurred_at": draw(instants(0, 150)),
            "activity_type": draw(st.sampled_from(["call", "email", "meeting", "demo", "other"])),
        }
        for i in range(draw(st.integers(0, 6)))
    ]
    tables = {
        "teams": teams,
        "reps": reps,
        "opportunities": opps,
        "leads": leads,
        "activities": activities,
        "accounts": accounts,
    }
    if draw(st.booleans()):  # else won deals stand in as revenue events
        tables["revenue"] = [
            {
                "account_id": draw(st.sampled_from(account_ids)),
                "recognized_at": draw(instants(62, 150)),  # September to November
                "amount": float(draw(st.integers(0, 9_000))),
            }
            for _ in range(draw(st.integers(3, 12)))
        ]
    if draw(st.booleans()):
        tables["spend"] = [
            {
                "spent_at": draw(instants(62, 150)),
                "category": draw(st.sampled_from(["sales", "marketing"])),
                "amount": float(draw(st.integers(0, 20_000))),
                "team_id": draw(st.sampled_from(team_ids)),
            }
            for _ in range(draw(st.integers(0, 4)))
        ]
    return {name: _frame(name, rows) for name, rows in tables.items()}


def _frame(name: str, rows: list[dict]) -> pd.DataFrame:
    extra = {"reps": ["start_at", "end_at", "is_quota_carrying"], "spend": ["team_id"]}
    df = frame(name, rows)
    for column in extra.get(name, []):
        if column not in df:
            df[column] = pd.Series(dtype="object")
    return df


FEW = settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@FEW
@given(crms())
def test_random_crms_give_bounded_finite_whole_figures(tables):
    cube = kpi_lib.compute_cube(kpi_lib.load_source(tables), PERIODS, as_of=AS_OF, targets={})
    values = dict(
        zip(
            zip(cube["period"], cube["scope"], cube["scope_id"], cube["kpi"], strict=True),
            cube["value"].astype("float64"),
            strict=True,
        )
    )
    for column in ("value", "numerator", "denominator", "target"):
        numbers = cube[column].astype("float64")
        assert not numbers.isin([math.inf, -math.inf]).any(), column

    for (period, scope, scope_id, kpi), v in values.items():
        where = f"{kpi} {period} {scope}/{scope_id} = {v}"
        if math.isnan(v):
            assert kpi not in COUNT_KPIS and kpi != "revenue", where
            continue
        if kpi in RATIO_KPIS:
            assert 0 <= v <= 1 + 1e-12, where
        if kpi in NON_NEGATIVE_KPIS:
            assert v >= 0, where
        if kpi in COUNT_KPIS:
            assert v == int(v), where

    for period in ("2026-09", "2026-10", "2026-11"):
        company = values[(period, "company", "all", "revenue")]
        teams = sum(values[(period, "team", t, "revenue")] for t in tables["teams"]["team_id"])
        reps = sum(values[(period, "rep", r, "revenue")] for r in tables["reps"]["rep_id"])
        assert math.isclose(teams, company, rel_tol=1e-9, abs_tol=1e-6), period
        assert math.isclose(reps, company, rel_tol=1e-9, abs_tol=1e-6), period
        for scope, scope_id in _scopes(tables):
            retention = values[(period, scope, scope_id, "retention_rate")]
            churn = values[(period, scope, scope_id, "churn_rate")]
            if math.isnan(retention):
                assert math.isnan(churn), (period, scope_id)
            else:
                assert math.isclose(churn, 1 - retention, abs_tol=1e-12), (period, scope_id)


@FEW
@given(crms())
def test_ratio_values_are_their_numerator_over_denominator(tables):
    cube = kpi_lib.compute_cube(kpi_lib.load_source(tables), "2026-10", as_of=AS_OF, targets={})
    ratios = cube[
        cube["kpi"].isin(
            [
                "win_rate",
                "lead_conversion_rate",
                "avg_deal_size",
                "sales_cycle_days",
                "retention_rate",
                "churn_rate",
            ]
        )
    ]
    for r in ratios.itertuples():
        numerator, denominator, v = (float(r.numerator), float(r.denominator), float(r.value))
        where = f"{r.kpi} {r.scope}/{r.scope_id}: {numerator}/{denominator} -> {v}"
        if denominator == 0:
            assert math.isnan(v), where
        else:
            assert math.isclose(v, numerator / denominator, rel_tol=1e-9, abs_tol=1e-9), where


ADDITIVE_KPIS = ["revenue", "qualified_leads", "activities", "activities_call", "new_customers"]


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(crms())
def test_additive_kpis_of_a_quarter_are_the_sum_of_its_months(tables):
    source = kpi_lib.load_source(tables)
    quarter = kpi_lib.compute_cube(source, "2026-Q4", as_of="2027-01-31", targets={})
    months = kpi_lib.compute_cube(source, "2026-10:2026-12", as_of="2027-01-31", targets={})
    for kpi in ADDITIVE_KPIS:
        for scope, scope_id in _scopes(tables):
            q = quarter[
                (quarter["kpi"] == kpi)
                & (quarter["scope_id"] == scope_id)
                & (quarter["scope"] == scope)
            ]["value"]
            m = months[
                (months["kpi"] == kpi)
                & (months["scope_id"] == scope_id)
                & (months["scope"] == scope)
            ]["value"]
            assert len(q) == 1 and len(m) == 3, (kpi, scope_id)
            assert math.isclose(float(q.iloc[0]), float(m.sum()), abs_tol=1e-6), (kpi, scope_id)
    rep_cac = quarter[(quarter["kpi"] == "cac") & (quarter["scope"] == "rep")]["value"]
    assert rep_cac.isna().all()  # CAC is never per rep


def _scopes(tables):
    yield "company", "all"
    for t in tables["teams"]["team_id"]:
        yield "team", t
    for r in tables["reps"]["rep_id"]:
        yield "rep", r

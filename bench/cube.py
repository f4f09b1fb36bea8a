"""Benchmark: the KPI cube against a hand-written DuckDB SQL script and a pandas groupby.

Three implementations compute the same figures (the DESIGN.md section 4 KPIs, per month, at
company, team and rep scope) on the same demo CRM:

- ``ours``: ``kpi_lib.load_source`` then ``kpi_lib.compute_cube`` (Ibis on DuckDB, pandas rollup);
- ``sql``: ``cube_sql.sql`` and ``cube_stages_sql.sql``, run by DuckDB directly on the file;
- ``pandas``: the tables read into DataFrames, then plain ``groupby`` code (``pandas_cube``).

Each runs ``--repeat`` times in its own subprocess (so peak memory is its own), the median wall
time is reported, and the peers' figures are checked against ours before any time is printed.

Usage::

    python bench/cube.py [--scale 10] [--months 36] [--repeat 3]

Writes ``bench/results/cube.json`` and ``bench/results/cube.md``; the demo data is generated
once into ``bench/results/demo-s<scale>.duckdb`` and reused.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
RESULTS = HERE / "results"
END = "2026-10"
AS_OF = "2026-11-28"
SEED = 7
# ours: load_source(<file>) reads the tables into pandas; ours_url: load_source("duckdb:///<file>")
# leaves them in the file (kpi_lib/warehouse.py); ours_pg: the same on PostgreSQL (--postgres).
IMPLEMENTATIONS = ("ours", "ours_url", "sql", "pandas")
LABELS = {
    "ours": "ours: `load_source(file)`",
    "ours_url": 'ours: `load_source("duckdb:///file")`',
    "ours_pg": 'ours: `load_source("postgresql://...")`',
    "sql": "hand-written DuckDB SQL",
    "pandas": "pandas groupby",
}
GOAL_VS_SQL = 1.5
GOAL_MEMORY_MB = 2048

# Figures the peers compute, named as in the cube. ``reps_active`` and ``spend`` are not KPIs
# of the cube: they are compared with the denominator of revenue_per_rep and the numerator of cac.
PEER_KPIS = (
    "revenue",
    "deals_won",
    "win_rate",
    "avg_deal_size",
    "sales_cycle_days",
    "open_at_start",
    "sales_velocity",
    "pipeline_amount",
    "weighted_pipeline",
    "revenue_per_rep",
    "reps_active",
    "revenue_growth_mom",
    "revenue_growth_yoy",
    "opportunities_created",
    "leads_created",
    "qualified_leads",
    "lead_conversion_rate",
    "activities",
    "activities_call",
    "activities_email",
    "activities_meeting",
    "activities_demo",
    "new_customers",
    "cac",
    "spend",
    "retention_rate",
    "churn_rate",
    "clv",
)
STAGE_KPIS = ("time_in_stage_days", "stage_conversion")


# ---------------------------------------------------------------------------------------------
# The window every implementation computes
# ---------------------------------------------------------------------------------------------


def report_months(months: int, end: str = END) -> str:
    """The period range of the ``months`` months ending with ``end``: ``'2023-11:2026-10'``."""
    last = pd.Period(end, "M")
    return f"{last - (months - 1)}:{last}"


def sql_params(periods: str, as_of: str = AS_OF, gross_margin: float = 1.0) -> dict:
    """The parameters of the SQL scripts for a month range ``'YYYY-MM:YYYY-MM'``."""
    first, _, last = periods.partition(":")
    first_reported = pd.Timestamp(first + "-01")
    end = pd.Timestamp((last or first) + "-01") + pd.DateOffset(months=1)
    as_of_end = pd.Timestamp(as_of).normalize() + pd.Timedelta(days=1)
    return {
        "first_reported": first_reported.to_pydatetime(),
        "start": (first_reported - pd.DateOffset(years=1)).to_pydatetime(),
        "end": end.to_pydatetime(),
        "stop": min(end, as_of_end).to_pydatetime(),
        "as_of": as_of_end.to_pydatetime(),
        "gross_margin": float(gross_margin),
    }


def default_probabilities() -> dict[str, float]:
    """The demo org's stage probabilities (``params/kpis.yaml``), as ``compute_cube`` uses them."""
    from kpi_lib.data.org import DEMO_FILES
    from kpi_lib.metrics.cube import load_settings

    return load_settings(DEMO_FILES["kpis"])["stage_probabilities"]


# ---------------------------------------------------------------------------------------------
# Peer 1: hand-written DuckDB SQL
# ---------------------------------------------------------------------------------------------


def sql_cube(
    con, periods: str, as_of: str = AS_OF, probabilities: dict[str, float] | None = None
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cube by the SQL scripts, on a DuckDB connection holding the canonical tables.

    Returns
    -------
    (wide, stages)
        ``wide``: one row per month x scope x scope_id, one column per KPI of ``PEER_KPIS``.
        ``stages``: one row per month x scope x scope_id x stage with stage visits that ended.
    """
    probabilities = default_probabilities() if probabilities is None else probabilities
    params = sql_params(periods, as_of)
    con.execute("CREATE OR REPLACE TEMP TABLE probs (stage VARCHAR, probability DOUBLE)")
    con.executemany("INSERT INTO probs VALUES (?, ?)", list(probabilities.items()))
    wide = con.execute((HERE / "cube_sql.sql").read_text(), params).df()
    stage_params = {k: v for k, v in params.items() if k != "gross_margin" and k != "end"}
    stages = con.execute((HERE / "cube_stages_sql.sql").read_text(), stage_params).df()
    return wide, stages


# ---------------------------------------------------------------------------------------------
# Peer 2: a straightforward pandas groupby
# ---------------------------------------------------------------------------------------------


def _month(ts: pd.Series) -> pd.Series:
    return ts.dt.to_period("M").dt.to_timestamp()


def pandas_cube(
    t: dict[str, pd.DataFrame],
    periods: str,
    as_of: str = AS_OF,
    probabilities: dict[str, float] | None = None,
    gross_margin: float = 1.0,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The cube by plain pandas on the canonical tables ``t``; same shape as ``sql_cube``."""
    probabilities = default_probabilities() if probabilities is None else probabilities
    p = sql_params(periods, as_of)
    start, end, stop, as_of_end = (pd.Timestamp(p[k]) for k in ("start", "end", "stop", "as_of"))
    months = pd.date_range(start, end, freq="MS", inclusive="left")

    def within(ts: pd.Series) -> pd.Series:
        return (ts >= start) & (ts < stop)

    o = t["opportunities"]
    o = o[o["created_at"] < as_of_end].copy()
    o["closed_known"] = o["is_closed"] & (o["closed_at"] < as_of_end)
    o["won_known"] = o["closed_known"] & o["is_won"]
    o["rep_id"] = o["owner_rep_id"]
    parts: list[pd.DataFrame] = []

    def by_month_rep(df: pd.DataFrame, at: str, **aggs) -> None:
        g = df.assign(month=_month(df[at])).groupby(["month", "rep_id"], dropna=False)
        parts.append(g.agg(**aggs).reset_index())

    created = o[within(o["created_at"])]
    by_month_rep(created, "created_at", opportunities_created=("opportunity_id", "size"))

    closed = o[o["closed_known"] & within(o["closed_at"])]
    cycle = (closed["closed_at"] - closed["created_at"]).dt.total_seconds() / 86400
    closed = closed.assign(
        won_amount_=closed["amount"].where(closed["is_won"]),
        won_with_amount_=closed["is_won"] & closed["amount"].notna(),
        won_cycle_days_=cycle.where(closed["is_won"]),
    )
    by_month_rep(
        closed,
        "closed_at",
        closed_count=("opportunity_id", "size"),
        won_count=("is_won", "sum"),
        won_amount=("won_amount_", "sum"),
        won_with_amount=("won_with_amount_", "sum"),
        won_cycle_days=("won_cycle_days_", "sum"),
    )

    history = t["stage_history"].sort_values("entered_at", kind="stable")
    prob = pd.Series(probabilities, dtype="float64")
    for month, month_end in zip(months, months + pd.DateOffset(months=1), strict=True):
        open_start = o[(o["created_at"] < month) & ~(o["closed_known"] & (o["closed_at"] < month))]
        parts.append(
            open_start.groupby("rep_id")
            .size()
            .rename("open_at_start")
            .reset_index()
            .assign(month=month)
        )
        open_end = o[
            (o["created_at"] < month_end) & ~(o["closed_known"] & (o["closed_at"] < month_end))
        ]
        seen = history[
            (history["entered_at"] < month_end)
            & history["opportunity_id"].isin(open_end["opportunity_id"])
        ]
        stage_then = seen.drop_duplicates("opportunity_id", keep="last").set_index(
            "opportunity_id"
        )["stage"]
        stage = open_end["opportunity_id"].map(stage_then).fillna(open_end["stage"])
        weight = np.nan_to_num(prob.reindex(stage.to_numpy()).to_numpy(), nan=0.0)
        open_end = open_end.assign(weighted=open_end["amount"].to_numpy() * weight)
        parts.append(
            open_end.groupby("rep_id")
            .agg(
                pipeline_amount=("amount", "sum"),
                weighted_pipeline=("weighted", "sum"),
            )
            .reset_index()
            .assign(month=month)
        )

    reps = t["reps"]
    active = reps[reps["is_quota_carrying"].fillna(True).astype(bool)].merge(
        pd.DataFrame({"month": months, "month_end": months + pd.DateOffset(months=1)}), how="cross"
    )
    active = active[
        (active["start_at"].isna() | (active["start_at"] < active["month_end"]))
        & (active["end_at"].isna() | (active["end_at"] >= active["month"]))
    ]
    parts.append(active.groupby(["month", "rep_id"]).size().rename("reps_active").reset_index())

    leads = t["leads"].rename(columns={"owner_rep_id": "rep_id"})
    by_month_rep(
        leads[within(leads["created_at"])], "created_at", leads_created=("lead_id", "size")
    )
    won_ids = o.loc[o["won_known"], "opportunity_id"]
    qualified = leads[leads["qualified_at"].notna() & within(leads["qualified_at"])]
    qualified = qualified.assign(converted=qualified["opportunity_id"].isin(won_ids))
    by_month_rep(
        qualified,
        "qualified_at",
        qualified_leads=("lead_id", "size"),
        qualified_converted=("converted", "sum"),
    )

    acts = t["activities"]
    acts = acts[within(acts["occurred_at"])]
    counts = pd.crosstab(
        [_month(acts["occurred_at"]).rename("month"), acts["rep_id"]], acts["activity_type"]
    )
    wide_acts = pd.DataFrame({"activities": counts.sum(axis=1)})
    for kind in ("call", "email", "meeting", "demo"):
        wide_acts[f"activities_{kind}"] = counts[kind] if kind in counts else 0
    parts.append(wide_acts.reset_index())

    won = o[o["won_known"] & o["account_id"].notna()]
    first = won.sort_values(["closed_at", "opportunity_id"]).drop_duplicates("account_id")
    by_month_rep(
        first[within(first["closed_at"])], "closed_at", new_customers=("account_id", "size")
    )

    revenue = t["revenue"]
    revenue = revenue[within(revenue["recognized_at"])]
    per_account = (
        revenue.assign(month=_month(revenue["recognized_at"]))
        .groupby(["account_id", "month"], as_index=False)["amount"]
        .sum()
    )
    owners = t["accounts"].set_index("account_id")["owner_rep_id"]
    per_account["rep_id"] = per_account["account_id"].map(owners)
    parts.append(
        per_account.assign(active=per_account["amount"] > 0)
        .groupby(["month", "rep_id"], dropna=False)
        .agg(account_revenue=("amount", "sum"), accounts_active=("active", "sum"))
        .reset_index()
    )
    paying = per_account[per_account["amount"] > 0]
    before = paying.assign(month=paying["month"] + pd.DateOffset(months=1))
    before = before[before["month"] < end]
    pairs = before.merge(
        paying[["account_id", "month"]], on=["account_id", "month"], how="left", indicator=True
    )
    pairs["retained"] = pairs["_merge"] == "both"
    pairs["lost"] = ~pairs["retained"]
    parts.append(
        pairs.groupby(["month", "rep_id"], dropna=False)
        .agg(
            accounts_prev=("account_id", "size"),
            retained_accounts=("retained", "sum"),
            lost_accounts=("lost", "sum"),
        )
        .reset_index()
    )

    facts = pd.concat(parts, ignore_index=True)
    team_of = reps.set_index("rep_id")["team_id"]
    facts["team_id"] = facts["rep_id"].map(team_of)
    spend = t["spend"]
    spend = spend[within(spend["spent_at"])]
    facts = pd.concat(
        [
            facts,
            spend.assign(month=_month(spend["spent_at"]))
            .groupby(["month", "team_id"], dropna=False)["amount"]
            .sum()
            .rename("spend")
            .reset_index(),
        ],
        ignore_index=True,
    )

    measures = [c for c in facts.columns if c not in ("month", "rep_id", "team_id")]
    scopes = _scopes(t)
    rolled = pd.concat(
        [
            facts.groupby("month")[measures]
            .sum()
            .reset_index()
            .assign(scope="company", scope_id="all"),
            facts.dropna(subset=["team_id"])
            .groupby(["month", "team_id"])[measures]
            .sum()
            .reset_index()
            .rename(columns={"team_id": "scope_id"})
            .assign(scope="team"),
            facts.dropna(subset=["rep_id"])
            .groupby(["month", "rep_id"])[measures]
            .sum()
            .reset_index()
            .rename(columns={"rep_id": "scope_id"})
            .assign(scope="rep"),
        ],
        ignore_index=True,
    )
    grid = scopes.merge(pd.DataFrame({"month": months}), how="cross")
    m = grid.merge(rolled, on=["scope", "scope_id", "month"], how="left")
    m[measures] = m[measures].fillna(0.0).astype("float64")
    m = m.sort_values(["scope", "scope_id", "month"], ignore_index=True)

    def div(a: pd.Series, b: pd.Series) -> pd.Series:
        return a / b.where(b != 0)

    k = m[["month", "scope", "scope_id"]].copy()
    k["revenue"] = m["won_amount"]
    k["deals_won"] = m["won_count"]
    k["win_rate"] = div(m["won_count"], m["closed_count"])
    k["avg_deal_size"] = div(m["won_amount"], m["won_with_amount"])
    k["sales_cycle_days"] = div(m["won_cycle_days"], m["won_count"])
    for column in (
        "open_at_start",
        "pipeline_amount",
        "weighted_pipeline",
        "reps_active",
        "opportunities_created",
        "leads_created",
        "qualified_leads",
        "activities",
        "activities_call",
        "activities_email",
        "activities_meeting",
        "activities_demo",
        "new_customers",
        "spend",
    ):
        k[column] = m[column]
    k["sales_velocity"] = div(
        m["open_at_start"] * k["win_rate"] * k["avg_deal_size"], k["sales_cycle_days"]
    )
    k["revenue_per_rep"] = div(m["won_amount"], m["reps_active"])
    revenue_by_scope = m.groupby(["scope", "scope_id"])["won_amount"]
    k["revenue_growth_mom"] = div(m["won_amount"], revenue_by_scope.shift(1)) - 1
    k["revenue_growth_yoy"] = div(m["won_amount"], revenue_by_scope.shift(12)) - 1
    k["lead_conversion_rate"] = div(m["qualified_converted"], m["qualified_leads"])
    k["cac"] = div(m["spend"], m["new_customers"]).where(m["scope"] != "rep")
    k["retention_rate"] = div(m["retained_accounts"], m["accounts_prev"])
    k["churn_rate"] = div(m["lost_accounts"], m["accounts_prev"])
    k["clv"] = div(div(m["account_revenue"], m["accounts_active"]) * gross_margin, k["churn_rate"])
    k = k[k["month"] >= pd.Timestamp(p["first_reported"])].reset_index(drop=True)
    return k, _pandas_stages(
        t, o, team_of, start, stop, pd.Timestamp(p["first_reported"]), as_of_end
    )


def _scopes(t: dict[str, pd.DataFrame]) -> pd.DataFrame:
    teams, reps = t["teams"]["team_id"].astype(str), t["reps"]["rep_id"].astype(str)
    return pd.DataFrame(
        {
            "scope": ["company"] + ["team"] * len(teams) + ["rep"] * len(reps),
            "scope_id": ["all", *teams, *reps],
        }
    )


def _pandas_stages(t, o, team_of, start, stop, first_reported, as_of_end) -> pd.DataFrame:
    closed_stages = set(o.loc[o["is_closed"], "stage"])
    lost_stages = set(o.loc[o["is_closed"] & ~o["is_won"], "stage"])
    sh = t["stage_history"]
    sh = sh[sh["entered_at"] < as_of_end].sort_values(
        ["opportunity_id", "entered_at"], kind="stable"
    )
    per_deal = sh.groupby("opportunity_id")
    v = sh.assign(next_at=per_deal["entered_at"].shift(-1), next_stage=per_deal["stage"].shift(-1))
    v = v.merge(
        o[["opportunity_id", "rep_id", "closed_at", "closed_known", "won_known"]],
        on="opportunity_id",
    )
    v = v[~v["stage"].isin(closed_stages)]
    v["exit_at"] = v["next_at"].fillna(v["closed_at"].where(v["closed_known"]))
    v["forward"] = np.where(
        v["next_at"].notna(), ~v["next_stage"].isin(lost_stages), v["won_known"]
    )
    v = v[v["exit_at"].notna() & (v["exit_at"] >= start) & (v["exit_at"] < stop)]
    v = v.assign(
        month=_month(v["exit_at"]),
        team_id=v["rep_id"].map(team_of),
        days=(v["exit_at"] - v["entered_at"]).dt.total_seconds() / 86400,
    )
    v = v[v["month"] >= first_reported]
    aggs = {"days": ("days", "sum"), "exits": ("days", "size"), "advanced": ("forward", "sum")}
    rolled = pd.concat(
        [
            v.groupby(["month", "stage"])
            .agg(**aggs)
            .reset_index()
            .assign(scope="company", scope_id="all"),
            v.groupby(["month", "team_id", "stage"])
            .agg(**aggs)
            .reset_index()
            .rename(columns={"team_id": "scope_id"})
            .assign(scope="team"),
            v.groupby(["month", "rep_id", "stage"])
            .agg(**aggs)
            .reset_index()
            .rename(columns={"rep_id": "scope_id"})
            .assign(scope="rep"),
        ],
        ignore_index=True,
    )
    rolled["time_in_stage_days"] = rolled["days"] / rolled["exits"]
    rolled["stage_conversion"] = rolled["advanced"] / rolled["exits"]
    return rolled[["month", "scope", "scope_id", "stage", *STAGE_KPIS]]


def read_tables(path: str | Path) -> dict[str, pd.DataFrame]:
    """Every table of a DuckDB file as a DataFrame (the pandas peer's load step)."""
    import duckdb

    with duckdb.connect(str(path), read_only=True) as con:
        names = [
            r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        ]
        return {name: con.execute(f'SELECT * FROM "{name}"').df() for name in names}


# ---------------------------------------------------------------------------------------------
# Equivalence
# ---------------------------------------------------------------------------------------------


def peer_long(wide: pd.DataFrame, stages: pd.DataFrame) -> pd.DataFrame:
    """A peer's result as ``period, scope, scope_id, kpi, value`` rows, like the cube."""
    long = wide.melt(
        id_vars=["month", "scope", "scope_id"],
        value_vars=list(PEER_KPIS),
        var_name="kpi",
        value_name="value",
    )
    long = long[~((long["kpi"] == "spend") & (long["scope"] == "rep"))]
    st = stages.melt(
        id_vars=["month", "scope", "scope_id", "stage"],
        value_vars=list(STAGE_KPIS),
        var_name="kpi",
        value_name="value",
    )
    st["kpi"] = st["kpi"] + ":" + st["stage"]
    long = pd.concat([long, st.drop(columns="stage")], ignore_index=True)
    long["period"] = pd.to_datetime(long.pop("month")).dt.strftime("%Y-%m")
    long["value"] = pd.to_numeric(long["value"]).astype("float64")
    return long[["period", "scope", "scope_id", "kpi", "value"]]


def ours_long(cube: pd.DataFrame) -> pd.DataFrame:
    """The cube's rows for the figures the peers compute (plus reps_active and spend)."""
    keys = ["period", "scope", "scope_id"]
    extra = [
        cube.loc[cube["kpi"] == "revenue_per_rep", [*keys, "denominator"]]
        .rename(columns={"denominator": "value"})
        .assign(kpi="reps_active"),
        cube.loc[(cube["kpi"] == "cac") & (cube["scope"] != "rep"), [*keys, "numerator"]]
        .rename(columns={"numerator": "value"})
        .assign(kpi="spend"),
    ]
    wanted = cube["kpi"].isin(PEER_KPIS) | cube["kpi"].str.startswith(
        tuple(f"{k}:" for k in STAGE_KPIS)
    )
    ours = pd.concat([cube.loc[wanted, [*keys, "kpi", "value"]], *extra], ignore_index=True)
    return ours[[*keys, "kpi", "value"]]


def compare(ours: pd.DataFrame, peer: pd.DataFrame, rtol: float = 1e-6) -> pd.DataFrame:
    """Per KPI: rows compared and rows that differ (a missing row counts as n/a).

    Returns
    -------
    DataFrame
        One row per KPI: ``rows``, ``mismatches``, ``max_abs_diff``; empty mismatches = equal.
    """
    keys = ["period", "scope", "scope_id", "kpi"]
    both = ours.merge(peer, on=keys, how="outer", suffixes=("_ours", "_peer"))
    a, b = both["value_ours"].to_numpy(float), both["value_peer"].to_numpy(float)
    same = np.isclose(a, b, rtol=rtol, atol=1e-9, equal_nan=True)
    both["mismatch"] = ~same
    both["abs_diff"] = np.where(same, 0.0, np.abs(a - b))
    both["family"] = both["kpi"].str.split(":").str[0]
    return both.groupby("family").agg(
        rows=("mismatch", "size"), mismatches=("mismatch", "sum"), max_abs_diff=("abs_diff", "max")
    )


# ---------------------------------------------------------------------------------------------
# Workers (one subprocess per implementation) and the driver
# ---------------------------------------------------------------------------------------------


def stage_ties(data: Path) -> int:
    """Stage-history rows that share their deal and instant with another row."""
    import duckdb

    with duckdb.connect(str(data), read_only=True) as con:
        return con.execute(
            "SELECT coalesce(sum(n), 0) FROM (SELECT count(*) AS n FROM stage_history "
            "GROUP BY opportunity_id, entered_at HAVING count(*) > 1)"
        ).fetchone()[0]


def verdict(peer: str, diff: pd.DataFrame, ties: int) -> str:
    """One sentence: does ``peer`` agree with ours, and if not, where and why."""
    total = int(diff["rows"].sum())
    bad = diff[diff["mismatches"] > 0]
    if bad.empty:
        return f"{peer}: all {total:,} figures agree with ours"
    if set(bad.index) == {"weighted_pipeline"} and ties:
        n, rows = (
            int(bad.loc["weighted_pipeline", "mismatches"]),
            int(bad.loc["weighted_pipeline", "rows"]),
        )
        return (
            f"{peer}: all {total:,} figures agree with ours except weighted_pipeline "
            f"({n:,} of {rows:,} differ): {ties:,} stage_history rows enter a stage at the "
            "same instant as another stage of the same deal, so the stage at month end is "
            "ambiguous and each implementation picks one (ours not even the same one from "
            "run to run). With ties broken, tests/test_bench_equivalence.py finds them equal"
        )
    return f"{peer}: DIFFERS from ours: {bad.to_dict('index')}"


def peak_rss_mb() -> float:
    """Peak resident memory of this process since it started (exec), in MB.

    ``VmHWM`` rather than ``ru_maxrss``: Linux carries ``ru_maxrss`` over ``fork`` + ``exec``,
    so a worker would report the driver's size when the driver is the larger.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_worker(impl: str, data: str, periods: str, repeat: int, out: Path) -> dict:
    """Run one implementation ``repeat`` times; phases in seconds, the last result saved.

    ``data`` is the DuckDB file, or for ``ours_pg`` the PostgreSQL URL.
    """
    t0 = time.perf_counter()
    runs: list[dict[str, float]] = []
    if impl.startswith("ours"):
        import kpi_lib

        source = {"ours": data, "ours_url": f"duckdb://{Path(data).resolve()}"}.get(impl, data)
        imported = time.perf_counter() - t0
        for _ in range(repeat):
            t, cpu = time.perf_counter(), time.process_time()
            src = kpi_lib.load_source(source)
            t_load = time.perf_counter()
            _ = src.con  # a frames source registers them in DuckDB here (a file's are there)
            t_register = time.perf_counter()
            cube = kpi_lib.compute_cube(src, periods, as_of=AS_OF)
            t_done = time.perf_counter()
            cpu_done = time.process_time()
            kpi_lib.compute_cube(src, periods, as_of=AS_OF, with_ranges=False)
            runs.append(
                {
                    "load": t_load - t,
                    "register": t_register - t_load,
                    "compute": t_done - t_register,
                    "figures": time.perf_counter() - t_done,
                    "total": t_done - t,
                    "cpu": cpu_done - cpu,
                }
            )
        result = ours_long(cube)
    elif impl == "sql":
        import duckdb

        imported = time.perf_counter() - t0
        for _ in range(repeat):
            t, cpu = time.perf_counter(), time.process_time()
            con = duckdb.connect(str(data), read_only=True)
            wide, stages = sql_cube(con, periods)
            con.close()
            t_done = time.perf_counter()
            runs.append(
                {
                    "load": 0.0,
                    "compute": t_done - t,
                    "total": t_done - t,
                    "cpu": time.process_time() - cpu,
                }
            )
        result = peer_long(wide, stages)
    elif impl == "pandas":
        imported = time.perf_counter() - t0
        for _ in range(repeat):
            t, cpu = time.perf_counter(), time.process_time()
            tables = read_tables(data)
            t_load = time.perf_counter()
            wide, stages = pandas_cube(tables, periods)
            t_done = time.perf_counter()
            runs.append(
                {
                    "load": t_load - t,
                    "compute": t_done - t_load,
                    "total": t_done - t,
                    "cpu": time.process_time() - cpu,
                }
            )
        result = peer_long(wide, stages)
    else:
        raise SystemExit(f"unknown implementation {impl!r}")
    result.to_parquet(out)
    return {
        "impl": impl,
        "import": imported,
        "runs": runs,
        "peak_rss_mb": peak_rss_mb(),
        "rows": len(result),
    }


def run_rounds(sources: dict[str, str], months: int, repeat: int, timeout: float):
    """Run every implementation once per round, ``repeat`` rounds, each in its own process.

    Rounds interleave the implementations, so a load spike on a shared machine hits them all.
    """
    results = {impl: {"runs": [], "peak_rss_mb": 0.0} for impl in sources}
    for round_ in range(1, repeat + 1):
        for impl, data in list(sources.items()):
            out = RESULTS / f"cube-{impl}.parquet"
            try:
                done = subprocess.run(
                    [
                        sys.executable,
                        __file__,
                        "--worker",
                        impl,
                        "--data",
                        data,
                        "--out",
                        str(out),
                        "--months",
                        str(months),
                        "--repeat",
                        "1",
                    ],
                    capture_output=True,
                    text=True,
                    cwd=ROOT,
                    timeout=timeout,
                )
            except subprocess.TimeoutExpired:
                print(
                    f"round {round_}/{repeat} {impl}: stopped after {timeout:.0f} s; not run again",
                    flush=True,
                )
                results[impl]["timed_out"] = timeout
                del sources[impl]
                continue
            if done.returncode:
                sys.stderr.write(done.stderr)
                raise SystemExit(f"{impl}: the worker failed (exit {done.returncode})")
            run = json.loads(done.stdout.strip().splitlines()[-1])
            results[impl]["runs"] += run["runs"]
            results[impl]["peak_rss_mb"] = max(results[impl]["peak_rss_mb"], run["peak_rss_mb"])
            print(
                f"round {round_}/{repeat} {impl}: {run['runs'][0]['total']:.2f} s, "
                f"peak {run['peak_rss_mb']:.0f} MB",
                flush=True,
            )
    frames = {}
    for impl in sources:
        results[impl]["median"] = median_phases(results[impl]["runs"])
        frames[impl] = pd.read_parquet(RESULTS / f"cube-{impl}.parquet")
    return (
        {impl: r for impl, r in results.items() if impl in sources},
        frames,
        {impl: r["timed_out"] for impl, r in results.items() if "timed_out" in r},
    )


def postgres_server(work_mem: str = "4MB"):
    """A throwaway PostgreSQL 15 server on 127.0.0.1 (the tests' helper, tests/_postgres.py)."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from _postgres import throwaway_postgres

    return throwaway_postgres(work_mem=work_mem)


_PG_TYPES = {
    "VARCHAR": "text",
    "TIMESTAMP": "timestamp",
    "BOOLEAN": "boolean",
    "DOUBLE": "double precision",
    "BIGINT": "bigint",
    "INTEGER": "integer",
}


def copy_to_postgres(data: Path, url: str) -> None:
    """Copy every table of the DuckDB file into PostgreSQL (COPY), with primary keys, analyzed."""
    import duckdb
    import psycopg

    from kpi_lib.data.schema import TABLES

    with (
        duckdb.connect(str(data), read_only=True) as src,
        psycopg.connect(url, autocommit=True) as pg,
    ):
        for (name,) in src.execute("SELECT table_name FROM information_schema.tables").fetchall():
            columns = src.execute(f'DESCRIBE "{name}"').fetchall()
            ddl = ", ".join(f'"{c[0]}" {_PG_TYPES[c[1]]}' for c in columns)
            key = TABLES[name].key if name in TABLES else None
            pg.execute(f'CREATE TABLE "{name}" ({ddl}{f", PRIMARY KEY ({key})" if key else ""})')
            buffer = io.StringIO()
            src.execute(f'SELECT * FROM "{name}"').df().to_csv(buffer, index=False, header=False)
            with pg.cursor().copy(f'COPY "{name}" FROM STDIN (FORMAT csv)') as copy:
                copy.write(buffer.getvalue())
            pg.execute(f'ANALYZE "{name}"')


def ensure_data(scale: float) -> Path:
    """The demo CRM at ``scale`` as a DuckDB file, generated on first use."""
    path = RESULTS / f"demo-s{scale:g}.duckdb"
    if not path.exists():
        from kpi_lib.data.demo import write_demo_data

        print(f"generating {path.relative_to(ROOT)} (scale {scale:g}) ...", flush=True)
        write_demo_data(path, end=END, seed=SEED, scale=scale)
    return path


def median_phases(runs: list[dict[str, float]]) -> dict[str, float]:
    return {phase: statistics.median(r[phase] for r in runs) for phase in runs[0]}


def machine() -> dict:
    import duckdb
    import ibis

    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": round(mem_gb, 1),
        "python": platform.python_version(),
        "duckdb": duckdb.__version__,
        "ibis": ibis.__version__,
        "pandas": pd.__version__,
        "platform": platform.platform(),
    }


def render_markdown(report: dict) -> str:
    r = report["results"]
    lines = [
        f"Cube benchmark: demo CRM at scale {report['scale']:g} ({report['rows']}), "
        f"{report['months']} months ({report['periods']}), all scopes; median of "
        f"{report['repeat']} runs, one subprocess per implementation.",
        "",
        "| implementation | load s | compute s | total s | CPU s | this / SQL | peak RSS MB |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for impl, result in r.items():
        m = result["median"]
        load = m["load"] + m.get("register", 0.0)
        ratio = m["total"] / r["sql"]["median"]["total"]
        lines.append(
            f"| {LABELS.get(impl, impl)} | {load:.2f} | {m['compute']:.2f} | "
            f"{m['total']:.2f} | {m['cpu']:.2f} | {ratio:.2f} | "
            f"{result['peak_rss_mb']:.0f} |"
        )
    g = report["goals"]
    o = r["ours"]["median"]

    def status(ok: bool) -> str:
        return "met" if ok else "missed"

    lines += [
        "",
        f"- ours on the file path, by phase: load_source {o['load']:.2f} s (attach the file "
        "read-only, check every contract rule of every table in SQL, copy the checked tables "
        f"into an embedded DuckDB), compute_cube {o['compute']:.2f} s. The SQL script runs on "
        "the file and checks nothing: it has no load phase.",
        f"- the figures, compute_cube(with_ranges=False) / SQL: {g['ours_figures_vs_sql']:.2f} x "
        f"wall (goal <= {GOAL_VS_SQL}: {status(g['within_sql_goal'])}). Both start from the "
        "tables in DuckDB (the SQL from opening the file) and end with every figure in a "
        f"DataFrame. The cube as the reports get it, with each figure's normal range and the "
        f"rates' significance (a year more of months read): {o['compute']:.2f} s against "
        f"{o['figures']:.2f} s, {g['ours_compute_vs_sql']:.2f} x the SQL, which computes no "
        "ranges.",
        f"- with the load, load_source + compute_cube / SQL: {g['ours_vs_sql']:.2f} x wall, "
        f"{g['ours_vs_sql_cpu']:.2f} x CPU: the contract checks and the copy cost what the "
        "load column shows, and the SQL makes no checks to compare them with.",
        f"- ours / pandas: {g['ours_vs_pandas']:.2f} x wall, {g['ours_vs_pandas_cpu']:.2f} x CPU "
        f"(goal < 1: {status(g['faster_than_pandas'])}).",
        f"- ours peak memory: {g['ours_peak_mb']:.0f} MB "
        f"(goal < {GOAL_MEMORY_MB}: {status(g['memory_ok'])}).",
        *[f"- equivalence, {line}." for line in report["equivalence"]],
        *[
            f"- {LABELS.get(impl, impl)}: stopped after {seconds:.0f} s without a result."
            for impl, seconds in report["timed_out"].items()
        ],
        *(
            [
                f"- PostgreSQL 15 server: work_mem {report['postgres_work_mem']}, tables copied in "
                "with primary keys and ANALYZE."
            ]
            if report["postgres_work_mem"]
            else []
        ),
        "",
        f"Machine: {report['machine']['cpu']}, {report['machine']['cores']} cores, "
        f"{report['machine']['memory_gb']} GB; Python {report['machine']['python']}, "
        f"DuckDB {report['machine']['duckdb']}, Ibis {report['machine']['ibis']}, "
        f"pandas {report['machine']['pandas']}; load average at the end "
        f"{report['load_average'][0]:.1f}. Wall times on a shared machine vary; CPU time "
        "(user + system of the process, all threads) is steadier.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--scale", type=float, default=10)
    parser.add_argument("--months", type=int, default=36)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument(
        "--postgres",
        action="store_true",
        help="also time the cube pushed to PostgreSQL 15 (a temporary server)",
    )
    parser.add_argument(
        "--pg-work-mem",
        default="4MB",
        help="PostgreSQL work_mem (default 4MB, the server's own default)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        default=600,
        help="seconds one run may take before it is stopped and reported",
    )
    parser.add_argument(
        "--only",
        choices=IMPLEMENTATIONS,
        nargs="+",
        default=list(IMPLEMENTATIONS),
        help=argparse.SUPPRESS,
    )
    parser.add_argument("--worker", choices=(*IMPLEMENTATIONS, "ours_pg"), help=argparse.SUPPRESS)
    parser.add_argument("--data", help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    periods = report_months(args.months)

    if args.worker:
        print(json.dumps(run_worker(args.worker, args.data, periods, args.repeat, Path(args.out))))
        return 0

    RESULTS.mkdir(parents=True, exist_ok=True)
    data = ensure_data(args.scale)
    with contextlib.ExitStack() as stack:
        sources = {impl: str(data) for impl in args.only}
        if args.postgres:
            print("starting PostgreSQL and copying the tables in ...", flush=True)
            url = stack.enter_context(postgres_server(args.pg_work_mem))
            copy_to_postgres(data, url)
            sources["ours_pg"] = url
        results, frames, timed_out = run_rounds(sources, args.months, args.repeat, args.timeout)

    ties = stage_ties(data)
    equivalence = []
    for peer in ("sql", "pandas", "ours_url", "ours_pg"):
        if peer in frames and "ours" in frames:
            equivalence.append(verdict(peer, compare(frames["ours"], frames[peer]), ties))
    print("\n".join(equivalence))
    if set(args.only) != set(IMPLEMENTATIONS):
        print(json.dumps({k: v["median"] for k, v in results.items()}, indent=1))
        print("; ".join(equivalence))
        return 0

    import duckdb

    with duckdb.connect(str(data), read_only=True) as con:
        counts = {
            t: con.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
            for t in ("reps", "opportunities", "leads", "activities", "revenue")
        }
    ours, sql, pdn = (results[i]["median"] for i in ("ours", "sql", "pandas"))
    report = {
        "scale": args.scale,
        "months": args.months,
        "periods": periods,
        "repeat": args.repeat,
        "as_of": AS_OF,
        "rows": ", ".join(f"{n:,} {t}" for t, n in counts.items()),
        "results": results,
        "goals": {
            "ours_vs_sql": ours["total"] / sql["total"],
            "ours_compute_vs_sql": ours["compute"] / sql["total"],
            "ours_figures_vs_sql": ours["figures"] / sql["total"],
            "ours_vs_pandas": ours["total"] / pdn["total"],
            "ours_vs_sql_cpu": ours["cpu"] / sql["cpu"],
            "ours_vs_pandas_cpu": ours["cpu"] / pdn["cpu"],
            "ours_compute_vs_pandas_compute": ours["compute"] / pdn["compute"],
            "ours_peak_mb": results["ours"]["peak_rss_mb"],
        },
        "equivalence": equivalence,
        "timed_out": timed_out,
        "postgres_work_mem": args.pg_work_mem if args.postgres else None,
        "load_average": os.getloadavg(),
        "machine": machine(),
    }
    g = report["goals"]
    g["within_sql_goal"] = g["ours_figures_vs_sql"] <= GOAL_VS_SQL
    g["faster_than_pandas"] = g["ours_vs_pandas"] < 1
    g["memory_ok"] = g["ours_peak_mb"] < GOAL_MEMORY_MB
    (RESULTS / "cube.json").write_text(json.dumps(report, indent=2, default=str))
    markdown = render_markdown(report)
    (RESULTS / "cube.md").write_text(markdown)
    print()
    print(markdown)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Projections of a month's revenue, and their track record replayed over the months before.

Three projections of month M's revenue, each made at the start of M from what was known then
(rows dated before M starts; the ``--as-of`` rules of the cube):

- ``run_rate``: the mean revenue of the 3 months before M (``RUN_RATE_MONTHS``).
- ``weighted_pipeline``: the deals open at the start of M and expected to close in M (expected
  close date on or after M's first day and before the next month's; a deal already overdue is
  not expected in M, it is at risk: ``kpi_lib.metrics.risks``), each amount times the
  configured probability of the stage the deal was in then (``stage_probabilities`` of
  ``params/kpis.yaml``; a stage without one: 0).
- ``stage_win_rates``: the same deals, each amount times the org's own stage-to-won rate: of the
  deals that closed in the 12 months before M and had entered that stage, the share won (a stage
  fewer than ``MIN_STAGE_DEALS`` closed deals went through takes the win rate of all of them).

What was known then: the stage a deal was in at the start of M comes from stage history (the
source's, or derived from snapshots); a deal still open today without a history row is in its
current stage; a deal closed since without one has no known stage then and counts for 0. The
amount and the expected close date are today's, because a CRM export keeps no history of them,
except where a snapshot (``kpi_lib.data.history``) was taken in the week before M started;
then the snapshot's. A deal with no expected close date (a source without them, or one that
clears them when a deal closes) is dated by the average sales cycle of the deals won in the 12
months before M: ``created_at + cycle``.

The backtest replays each projection over the last ``BACKTEST_MONTHS`` complete months and sets
it against M's actual revenue (won deals closed in M, the cube's ``revenue``): one row per scope
x method x month, ``error = projected - actual`` (negative: the projection was low). A scope's
track record over those months: ``mape``, the mean of ``|error| / actual``, and ``bias``, the
mean of ``error / actual`` (both over months with revenue; a month without revenue has no
percentage error), with the number of months used.

Example
-------
>>> track = track_record(pd.DataFrame({
...     "scope": "company", "scope_id": "all", "method": "run_rate",
...     "month": ["2026-09", "2026-10", "2026-11"],
...     "projected": [80.0, 160.0, 90.0], "actual": [100.0, 200.0, 100.0]}))
>>> track[["method", "months", "mape", "bias", "low_months", "high_months"]].round(3).to_dict("records")
[{'method': 'run_rate', 'months': 3, 'mape': 0.167, 'bias': -0.167, 'low_months': 3, 'high_months': 0}]
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import pandas as pd

from kpi_lib.data import history as snapshots
from kpi_lib.data.source import Source
from kpi_lib.periods import Period

FORECAST_COLUMNS = [
    "period",
    "scope",
    "scope_id",
    "method",
    "month",
    "projected",
    "actual",
    "error",
]
"""The columns of ``forecast.csv``: one row per scope x method x backtested month."""
METHODS = {
    "run_rate": "Run rate (3-month average)",
    "weighted_pipeline": "Weighted pipeline",
    "stage_win_rates": "Pipeline at our stage win rates",
}
"""The projections, in the order the outlook lists them when none has a track record."""
BACKTEST_MONTHS = 6
"""How many complete months each projection is replayed over."""
MIN_MONTHS = 3
"""A track record needs this many months with revenue; fewer is "too little history"."""
RUN_RATE_MONTHS = 3
"""The run rate is the mean revenue of this many months before M."""
LOOKBACK_MONTHS = 12
"""Stage-to-won rates and the average sales cycle read the deals closed this many months before."""
MIN_STAGE_DEALS = 5
"""A stage's own win rate needs this many closed deals that went through it."""
SNAPSHOT_DAYS = 7
"""A snapshot taken at most this many days before M starts gives M's amounts and close dates."""


@dataclass
class Forecast:
    """A batch's projections: the backtest, the projection of the month ahead, and their notes.

    ``backtest`` has ``FORECAST_COLUMNS``; ``ahead`` one row per scope x method with
    ``month`` (the month projected) and ``projected``; ``notes`` says, per method, what the
    figures rest on (amounts as today, estimated close dates); ``unavailable`` maps a method the
    source cannot give to the reason.
    """

    backtest: pd.DataFrame
    ahead: pd.DataFrame
    notes: dict[str, str] = field(default_factory=dict)
    unavailable: dict[str, str] = field(default_factory=dict)


@dataclass
class _Org:
    """The org's deals and stage history, read once: what every projection is made from."""

    deals: pd.DataFrame
    history: pd.DataFrame | None
    probabilities: dict[str, float]
    known_until: pd.Timestamp
    history_dir: str | None
    first_created: pd.Timestamp | None
    revenue: dict[tuple[str, str, str], float] = field(default_factory=dict)
    """Won amount per (month label, scope, scope_id), from every won deal."""
    closed_visits: pd.DataFrame | None = None
    """One row per closed deal x stage it entered before closing: ``stage, is_won, closed_at``."""


def compute_forecast(
    src: Source,
    period: Period,
    as_of: str | pd.Timestamp,
    stage_probabilities: dict[str, float] | None = None,
    history_dir: str | None = None,
) -> Forecast:
    """Replay each projection over the last complete months, and project the month ahead.

    Parameters
    ----------
    src
        The loaded source (its stage history may be derived from snapshots).
    period
        The report period; the backtest covers the ``BACKTEST_MONTHS`` complete months ending
        at the last one complete on the report date and not after ``period``
        (``'2026-11'`` reported on 2026-12-02: June to November 2026).
    as_of
        The report date (``'2026-12-02'``): data up to the end of that day is known.
    stage_probabilities
        ``{stage: probability}`` for the weighted pipeline (the org's settings).
    history_dir
        A snapshot folder: amounts and expected close dates as they were when a snapshot
        exists in the week before a month starts.

    Returns
    -------
    Forecast
        ``backtest`` one row per company/team x method x month (``FORECAST_COLUMNS``; a month
        whose projection cannot be made, e.g. a run rate before three months of data, has no
        row), ``ahead`` the projections of the next month (of ``period`` itself while it runs).

    Example
    -------
    >>> f = compute_forecast(load_source("data/demo.duckdb"), Period.parse("2026-11"),
    ...                      "2026-12-02", {"Proposal": 0.6})          # doctest: +SKIP
    >>> track_record(f.backtest.query("scope == 'company'"))           # doctest: +SKIP
    """
    known_until = pd.Timestamp(as_of).normalize() + pd.Timedelta(days=1)
    org = _read_org(src, known_until, stage_probabilities or {}, history_dir)
    teams = [str(t) for t in src.frame("teams")["team_id"].dropna().unique()]
    months = backtest_months(period, known_until)
    unavailable = {}
    if org.history is None:
        reason = (
            "the source has no stage history (nor snapshots to derive it from): the stage a "
            "deal was in when a past month started is not known"
        )
        unavailable["weighted_pipeline"] = reason
        unavailable["stage_win_rates"] = (
            "the source has no stage history (nor snapshots to derive it from): which stages "
            "closed deals went through is not known"
        )
    if not org.probabilities:
        unavailable["weighted_pipeline"] = (
            "no stage has a probability (stage_probabilities in the org's kpis.yaml; "
            "python -m kpi_lib init writes a starting one)"
        )
    rows = []
    for month in months:
        made = _projections(org, month, month.start, teams, replay=True)
        actual = _revenue(org, month, teams)
        for (scope, scope_id, method), projected in made.items():
            if method in unavailable or _is_nan(projected):
                continue
            a = actual.get((scope, scope_id), 0.0)
            rows.append(
                (period.label, scope, scope_id, method, month.label, projected, a, projected - a)
            )
    backtest = pd.DataFrame(rows, columns=FORECAST_COLUMNS)
    for column in ("projected", "actual", "error"):
        backtest[column] = backtest[column].astype("float64")
    ahead_month = _month_ahead(period, known_until)
    # today's stages are known without history; which stages closed deals passed is not
    ahead_unavailable = {
        k: v
        for k, v in unavailable.items()
        if k == "stage_win_rates" or (k == "weighted_pipeline" and not org.probabilities)
    }
    made = _projections(org, ahead_month, ahead_month.start, teams, replay=False)
    ahead = pd.DataFrame(
        [
            (scope, scope_id, method, ahead_month.label, projected)
            for (scope, scope_id, method), projected in made.items()
            if method not in ahead_unavailable
        ],
        columns=["scope", "scope_id", "method", "month", "projected"],
    )
    ahead["projected"] = ahead["projected"].astype("float64")
    return Forecast(backtest, ahead, _notes(org, src), unavailable)


def backtest_months(period: Period, known_until: pd.Timestamp) -> list[Period]:
    """The complete months a backtest replays: the ``BACKTEST_MONTHS`` ending at the last month
    over by ``known_until`` (the instant after the report date) and not after ``period``.

    Example: ``backtest_months(Period.parse("2026-11"), Timestamp("2026-11-15"))`` gives
    2026-05 to 2026-10 (November is not over).
    """
    last = Period(pd.Timestamp(period.end.year, period.end.month, 1), "month").shift(-1)
    while last.end > known_until:
        last = last.shift(-1)
    return [last.shift(-i) for i in reversed(range(BACKTEST_MONTHS))]


def _month_ahead(period: Period, known_until: pd.Timestamp) -> Period:
    """The month the outlook projects: the one after ``period``, or its last month while it runs."""
    last = Period(pd.Timestamp(period.end.year, period.end.month, 1), "month").shift(-1)
    return last if known_until < period.end else last.shift(1)


def track_record(backtest: pd.DataFrame) -> pd.DataFrame:
    """One row per scope x method of ``backtest``: how far off the projection has been.

    Returns
    -------
    DataFrame
        ``scope, scope_id, method, months`` (months with revenue, the ones judged), ``mape``
        (mean ``|error| / actual``), ``bias`` (mean ``error / actual``: below 0 the projection
        is low on average), ``low_months`` and ``high_months`` (months it was below and above
        the actual). ``mape`` and ``bias`` are NaN without a judged month.

    Example: projected 80 against 100 in every month gives mape 0.2, bias -0.2 ("usually low").
    """
    columns = ["scope", "scope_id", "method", "months", "mape", "bias", "low_months", "high_months"]
    if backtest.empty:
        return pd.DataFrame(columns=columns)
    b = backtest.copy()
    judged = b["actual"] > 0
    b["pe"] = ((b["projected"] - b["actual"]) / b["actual"]).where(judged)
    b["ape"] = b["pe"].abs()
    b["low"] = judged & (b["projected"] < b["actual"])
    b["high"] = judged & (b["projected"] > b["actual"])
    b["judged"] = judged
    out = (
        b.groupby(["scope", "scope_id", "method"], sort=False)
        .agg(
            months=("judged", "sum"),
            mape=("ape", "mean"),
            bias=("pe", "mean"),
            low_months=("low", "sum"),
            high_months=("high", "sum"),
        )
        .reset_index()
    )
    for column in ("months", "low_months", "high_months"):
        out[column] = out[column].astype("int64")
    return out[columns]


def most_accurate(record: pd.DataFrame) -> str | None:
    """The method with the lowest ``mape`` among those with ``MIN_MONTHS`` judged months
    (ties: ``METHODS`` order), or None when none has enough history."""
    enough = record[record["months"] >= MIN_MONTHS].copy()
    if enough.empty:
        return None
    enough["order"] = enough["method"].map(list(METHODS).index)
    return str(enough.sort_values(["mape", "order"]).iloc[0]["method"])


# ---------------------------------------------------------------------------------------------
# The projections
# ---------------------------------------------------------------------------------------------


def _read_org(
    src: Source, known_until: pd.Timestamp, probabilities: dict, history_dir: str | None
) -> _Org:
    opps = src.frame("opportunities")
    reps = src.frame("reps")
    team_of = reps.drop_duplicates("rep_id").set_index("rep_id")["team_id"].astype(str)
    deals = pd.DataFrame(
        {
            "opportunity_id": opps["opportunity_id"].astype(str),
            "team_id": opps["owner_rep_id"].astype(str).map(team_of),
            "created_at": _naive(opps["created_at"]),
            "closed_at": _naive(opps["closed_at"]),
            "is_closed": opps["is_closed"].fillna(False).astype(bool),
            "is_won": opps["is_won"].fillna(False).astype(bool),
            "amount": opps["amount"].astype("float64"),
            "expected_close_at": _naive(
                opps["expected_close_at"]
                if "expected_close_at" in opps
                else pd.Series(pd.NaT, index=opps.index)
            ),
            "stage": opps["stage"].astype(str),
        }
    ).reset_index(drop=True)
    deals = deals[deals["created_at"] < known_until]
    # closed as known on the report date: a deal closed after it is still open
    deals["is_closed"] &= (deals["closed_at"] < known_until).fillna(False)
    deals["is_won"] &= deals["is_closed"]
    hist = None
    if src.has("stage_history"):
        sh = src.frame("stage_history")
        if len(sh):
            hist = pd.DataFrame(
                {
                    "opportunity_id": sh["opportunity_id"].astype(str),
                    "stage": sh["stage"].astype(str),
                    "entered_at": _naive(sh["entered_at"]),
                }
            )
            hist = hist[hist["entered_at"] < known_until].sort_values(
                ["opportunity_id", "entered_at"], kind="stable"
            )
    first = deals["created_at"].min() if len(deals) else None
    deals = deals.reset_index(drop=True)
    won = deals[deals["is_won"]]
    month = won["closed_at"].dt.strftime("%Y-%m")
    amount = won["amount"].fillna(0.0)
    revenue = {(m, "company", "all"): float(v) for m, v in amount.groupby(month).sum().items()}
    by_team = amount.groupby([month, won["team_id"]]).sum()
    revenue.update({(m, "team", str(t)): float(v) for (m, t), v in by_team.items()})
    visits = None
    if hist is not None:
        closed = deals.loc[deals["is_closed"], ["opportunity_id", "is_won", "closed_at"]]
        visits = hist.merge(closed, on="opportunity_id", how="inner")
        visits = visits[visits["entered_at"] <= visits["closed_at"]].drop_duplicates(
            ["opportunity_id", "stage"]
        )
    return _Org(
        deals,
        hist,
        probabilities,
        known_until,
        history_dir,
        None if first is None or pd.isna(first) else first,
        revenue,
        visits,
    )


def _naive(values: pd.Series) -> pd.Series:
    """Timestamps without a time zone, in microseconds (a warehouse may return either)."""
    values = pd.to_datetime(values)
    if getattr(values.dt, "tz", None) is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values.astype("datetime64[us]")


def _is_nan(x) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def _scopes(frame: pd.DataFrame, value: pd.Series, teams: list[str]) -> dict[tuple, float]:
    """``value`` summed for the company and per team (every team, 0 without rows)."""
    out = {("company", "all"): float(value.sum())}
    by_team = value.groupby(frame["team_id"]).sum()
    for team in teams:
        out[("team", team)] = float(by_team.get(team, 0.0))
    return out


def _revenue(org: _Org, month: Period, teams: list[str]) -> dict[tuple, float]:
    """Won amount closed in ``month`` per scope (null amounts left out): the cube's revenue."""
    out = {("company", "all"): org.revenue.get((month.label, "company", "all"), 0.0)}
    for team in teams:
        out[("team", team)] = org.revenue.get((month.label, "team", team), 0.0)
    return out


def _projections(
    org: _Org, month: Period, made_at: pd.Timestamp, teams: list[str], replay: bool
) -> dict[tuple, float]:
    """Every method's projection of ``month`` made at ``made_at``, per scope."""
    out: dict[tuple, float] = {}
    run_rate = _run_rate(org, month, teams)
    for key, value in run_rate.items():
        out[(*key, "run_rate")] = value
    if replay and (org.first_created is None or made_at <= org.first_created):
        return out  # the CRM had no deal yet when the projection would have been made
    pipe = _pipeline_at(org, month, made_at, replay)
    probability = pipe["stage"].map(org.probabilities).astype("float64").fillna(0.0)
    weighted = pipe["amount"].fillna(0.0) * probability
    for (scope, scope_id), value in _scopes(pipe, weighted, teams).items():
        out[(scope, scope_id, "weighted_pipeline")] = value
    rates = stage_win_rates(org.deals, org.history, made_at, org.closed_visits)
    if rates is not None and not (math.isnan(rates.overall) and not rates.by_stage):
        rate = pipe["stage"].map(rates.by_stage).astype("float64").fillna(rates.overall)
        rate = rate.where(pipe["stage"].notna(), 0.0)
        expected = pipe["amount"].fillna(0.0) * rate.fillna(0.0)
        for (scope, scope_id), value in _scopes(pipe, expected, teams).items():
            out[(scope, scope_id, "stage_win_rates")] = value
    return out


def _run_rate(org: _Org, month: Period, teams: list[str]) -> dict[tuple, float]:
    """Mean revenue of the ``RUN_RATE_MONTHS`` before ``month``; NaN when the first of them
    starts before the org's first deal's month (not three months of data yet)."""
    first = month.shift(-RUN_RATE_MONTHS)
    no_data = (
        org.first_created is None
        or first.start
        < Period(pd.Timestamp(org.first_created.year, org.first_created.month, 1), "month").start
    )
    if no_data:
        return {("company", "all"): math.nan, **{("team", t): math.nan for t in teams}}
    totals = [_revenue(org, first.shift(i), teams) for i in range(RUN_RATE_MONTHS)]
    return {key: sum(t[key] for t in totals) / RUN_RATE_MONTHS for key in totals[0]}


def _pipeline_at(org: _Org, month: Period, at: pd.Timestamp, replay: bool) -> pd.DataFrame:
    """The deals open at ``at`` expected to close in ``month``: ``team_id``,
    ``amount``, ``stage`` (the stage then; NaN when not known)."""
    d = org.deals
    open_ = d[(d["created_at"] < at) & ~(d["is_closed"] & (d["closed_at"] < at))].copy()
    open_ = _as_snapshot(org, open_, at)
    expected = open_["expected_close_at"]
    cycle = _mean_cycle(d, at)
    estimate = (open_["created_at"] + pd.to_timedelta(cycle, unit="D")).astype("datetime64[us]")
    expected = expected.fillna(estimate) if not _is_nan(cycle) else expected
    pipe = open_[((expected >= month.start) & (expected < month.end)).fillna(False)].copy()
    pipe["stage"] = stage_at(pipe, org.history, at) if replay else _stage_now(pipe, org, at)
    return pipe


def _stage_now(pipe: pd.DataFrame, org: _Org, at: pd.Timestamp) -> pd.Series:
    """The stage of deals open now: from history when it has them, else the current stage."""
    if org.history is None:
        return pipe["stage"].where(~pipe["is_closed"])
    return stage_at(pipe, org.history, at)


def stage_at(deals: pd.DataFrame, history: pd.DataFrame | None, at: pd.Timestamp) -> pd.Series:
    """The stage each of ``deals`` was in at ``at``: the last stage its history entered before
    ``at``; else its current stage while it is still open; NaN (not known) for a deal closed
    since without a history row before ``at``.

    Example: a deal that entered Demo on Oct 3 and Proposal on Nov 9, won on Nov 20, was in
    Demo at Nov 1.
    """
    current = deals["stage"].where(~deals["is_closed"])
    if history is None or deals.empty:
        return current
    before = history[
        (history["entered_at"] < at) & history["opportunity_id"].isin(deals["opportunity_id"])
    ]
    last = before.groupby("opportunity_id", sort=False)["stage"].last()
    return (
        deals["opportunity_id"]
        .map(last)
        .astype(object)
        .where(deals["opportunity_id"].isin(last.index), current)
    )


def _mean_cycle(deals: pd.DataFrame, at: pd.Timestamp) -> float:
    """Mean days from created to closed of the deals won in the ``LOOKBACK_MONTHS`` before ``at``."""
    won = deals[
        deals["is_won"]
        & (deals["closed_at"] < at)
        & (deals["closed_at"] >= at - pd.DateOffset(months=LOOKBACK_MONTHS))
    ]
    if won.empty:
        return math.nan
    return float(((won["closed_at"] - won["created_at"]).dt.total_seconds() / 86400).mean())


@dataclass(frozen=True)
class StageRates:
    """The org's stage-to-won rates at one instant: ``by_stage`` (stages with enough closed
    deals through them) and ``overall`` (all closed deals), both over the lookback."""

    by_stage: dict[str, float]
    overall: float


def stage_win_rates(
    deals: pd.DataFrame,
    history: pd.DataFrame | None,
    at: pd.Timestamp,
    closed_visits: pd.DataFrame | None = None,
) -> StageRates | None:
    """Of the deals closed in the ``LOOKBACK_MONTHS`` before ``at`` that had entered a stage
    (stage history before they closed), the share won; None without stage history.

    ``deals`` needs ``opportunity_id, is_closed, is_won, closed_at``. A stage fewer than
    ``MIN_STAGE_DEALS`` closed deals went through is left out of ``by_stage`` (it takes
    ``overall``); ``closed_visits`` is the history of every closed deal joined once (``_Org``).
    Example: 8 deals closed through Proposal, 6 of them won -> Proposal 0.75.
    """
    if history is None:
        return None
    since = at - pd.DateOffset(months=LOOKBACK_MONTHS)
    closed = deals[deals["is_closed"] & (deals["closed_at"] < at) & (deals["closed_at"] >= since)]
    overall = float(closed["is_won"].mean()) if len(closed) else math.nan
    if closed_visits is None:
        closed_visits = history.merge(
            deals.loc[deals["is_closed"], ["opportunity_id", "is_won", "closed_at"]],
            on="opportunity_id",
            how="inner",
        )
        closed_visits = closed_visits[
            closed_visits["entered_at"] <= closed_visits["closed_at"]
        ].drop_duplicates(["opportunity_id", "stage"])
    visits = closed_visits[
        (closed_visits["closed_at"] < at) & (closed_visits["closed_at"] >= since)
    ]
    counts = visits.groupby("stage")["is_won"].agg(["size", "mean"])
    counts = counts[counts["size"] >= MIN_STAGE_DEALS]
    return StageRates({str(k): float(v) for k, v in counts["mean"].items()}, overall)


def _as_snapshot(org: _Org, open_: pd.DataFrame, at: pd.Timestamp) -> pd.DataFrame:
    """Amounts and expected close dates of ``open_`` as a snapshot of the week before ``at``
    recorded them, where there is one; else as they are today."""
    day = _snapshot_before(org.history_dir, at)
    if day is None:
        return open_
    snap = snapshots.read_snapshot(org.history_dir, day).set_index("opportunity_id")
    ids = open_["opportunity_id"]
    seen = ids.isin(snap.index)
    open_ = open_.copy()
    open_.loc[seen, "amount"] = ids[seen].map(snap["amount"]).astype("float64").to_numpy()
    if snapshots.EXPECTED_CLOSE in snap and seen.any():  # (an empty map of dates fails)
        dates = ids[seen].map(snap[snapshots.EXPECTED_CLOSE]).astype("datetime64[us]")
        open_.loc[seen, "expected_close_at"] = dates.to_numpy()
    return open_


def _snapshot_before(history_dir: str | None, at: pd.Timestamp):
    if not history_dir:
        return None
    days = [
        d
        for d in snapshots.snapshot_dates(history_dir)
        if at - pd.Timedelta(days=SNAPSHOT_DAYS) <= pd.Timestamp(d) <= at
    ]
    return days[-1] if days else None


def _notes(org: _Org, src: Source) -> dict[str, str]:
    """What each pipeline projection rests on, in a sentence for the outlook's note."""
    has_dates = bool(org.deals["expected_close_at"].notna().any())
    dated = (
        "amounts and expected close dates are today's (the CRM keeps no history of them"
        + (
            ", except the snapshots taken the week before a month started"
            if org.history_dir
            else ""
        )
        + ")"
    )
    if not has_dates:
        dated = (
            "the source has no expected close dates: a deal is expected at its creation plus "
            "the average sales cycle; amounts are today's"
        )
    elif org.deals.loc[org.deals["is_closed"], "expected_close_at"].isna().all():
        dated += (
            "; deals closed since carry no expected close date and are dated by the average "
            "sales cycle"
        )
    return {
        "weighted_pipeline": f"deals open on the 1st and expected to close in the month; {dated}.",
        "stage_win_rates": (
            f"The same deals at the share of deals that went through each stage and were won "
            f"(last {LOOKBACK_MONTHS} months); {dated}."
        ),
        "run_rate": f"The mean revenue of the {RUN_RATE_MONTHS} months before.",
    }


__all__ = [
    "BACKTEST_MONTHS",
    "FORECAST_COLUMNS",
    "METHODS",
    "MIN_MONTHS",
    "Forecast",
    "backtest_months",
    "compute_forecast",
    "most_accurate",
    "stage_at",
    "stage_win_rates",
    "track_record",
]

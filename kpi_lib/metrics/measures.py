"""Additive measures, computed in the database with Ibis.

Every KPI of the registry is a count, a ratio or a function of these measures. Each measure is
additive over reps, so it is computed once at the finest grain (period x rep, or period x team
for spend) and rolled up to teams and the company afterwards. Only these aggregates leave the
database, never raw rows.

``measure_frames`` starts every query at once and hands back each result as it is ready, so the
cube rolls up one while the database computes the next.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import ibis
import pandas as pd
from ibis import _

from kpi_lib.data.queries import Runner
from kpi_lib.data.source import Source
from kpi_lib.periods import Period

_TRUNCATE_UNIT = {"month": "M", "quarter": "Q", "year": "Y"}
SECONDS_PER_DAY = 86_400.0


@dataclass(frozen=True)
class Window:
    """The contiguous periods the measures are computed for, and the report date.

    Parameters
    ----------
    periods
        Contiguous periods of one grain, oldest first.
    as_of
        First instant *after* the report date: rows dated at or after it are not known yet.
    """

    periods: tuple[Period, ...]
    as_of: pd.Timestamp

    @property
    def grain(self) -> str:
        return self.periods[0].grain

    @property
    def start(self) -> pd.Timestamp:
        return self.periods[0].start

    @property
    def end(self) -> pd.Timestamp:
        return self.periods[-1].end

    def bucket(self, ts: ibis.Value) -> ibis.Value:
        """The start of the period ``ts`` falls in."""
        return ts.truncate(_TRUNCATE_UNIT[self.grain])

    def contains(self, ts: ibis.Value) -> ibis.Value:
        """``ts`` lies in the window and is known as of the report date."""
        return (ts >= self.start) & (ts < self.end) & (ts < self.as_of)

    def table(self) -> ibis.Table:
        """One row per period: ``period_start``, ``period_end``."""
        return ibis.memtable(
            pd.DataFrame(
                {
                    "period_start": [p.start for p in self.periods],
                    "period_end": [p.end for p in self.periods],
                }
            ).astype("datetime64[us]")
        )


def measure_frames(
    src: Source, window: Window, stage_probabilities: dict[str, float] | None = None
) -> tuple[list[str], Iterator[pd.DataFrame]]:
    """Start every measure query the source supports; the stage order and their results.

    The queries run in the database while the caller goes on (``Runner``); each frame is
    yielded as soon as its query is done. The stage order (``stage_positions``) is asked for
    first and breaks ties between stage_history rows entered at the same instant (a CRM that
    records skipped stages at once): the later stage in pipeline order counts as entered last,
    on every engine alike. The queries that do not need it are compiled while it runs.

    Returns
    -------
    list of str, iterator of DataFrame
        The stages of stage_history in pipeline order, and one frame per query with rows:
        ``period_start``, then ``rep_id`` (per period x rep), ``team_id`` (per period x team:
        spend) or neither (company-only figures), then one float column per measure.

    Example
    -------
    >>> w = Window(tuple(parse_periods("2026-09:2026-10")), parse_as_of("2026-11-28"))  # doctest: +SKIP
    >>> order, frames = measure_frames(load_source("data/demo.duckdb"), w)              # doctest: +SKIP
    >>> next(frames)[["period_start", "rep_id", "opportunities_created"]]               # doctest: +SKIP
    """
    # Every table expression is made before the first query starts: the connection is then
    # the runner's (for a frames source, making one asks the connection for its schema).
    opps = _known_opportunities(src, window)
    queries = list(_measure_queries(src, window, opps))
    sh = src.table("stage_history") if src.has("stage_history") else None
    with Runner(src.con) as runner:
        read_positions = runner.submit(stage_positions(sh)) if sh is not None else None
        started = [runner.submit(q.expr) for q in queries]
        order = list(read_positions()["stage"]) if read_positions else []
        history = _ranked_history(sh, order) if sh is not None else None
        ranked = list(_ranked_queries(window, opps, stage_probabilities or {}, history))
        started += [runner.submit(q.expr) for q in ranked]
    frames = (
        _tidy(q.finish(df)) for q, df in zip([*queries, *ranked], runner.read(started), strict=True)
    )
    return order, frames


def stage_positions(sh: ibis.Table) -> ibis.Table:
    """Per stage of stage_history ``sh``, ``position``: the mean place at which deals enter it
    (1 the first stage a deal enters); ordered by it, then by name."""
    place = ibis.row_number().over(group_by="opportunity_id", order_by=["entered_at", "stage"])
    return (
        sh.mutate(place=place)
        .group_by("stage")
        .aggregate(position=_.place.cast("float64").mean() + 1)  # AVG(int) is numeric in PostgreSQL
        .order_by(["position", "stage"])
    )


def _tidy(df: pd.DataFrame) -> pd.DataFrame:
    """Keys as ``datetime64[us]`` and strings, measures as floats (0 for a null sum)."""
    keys = [c for c in ("period_start", "rep_id", "team_id") if c in df]
    out = df[keys].copy()
    out["period_start"] = pd.to_datetime(out["period_start"]).astype("datetime64[us]")
    for column in keys[1:]:
        out[column] = out[column].astype("string")
    for column in df.columns.difference(keys, sort=False):
        out[column] = df[column].astype("float64").fillna(0.0)
    return out


@dataclass(frozen=True)
class _Query:
    """One aggregate query of the measures, and what turns its result into measure columns."""

    expr: ibis.Table
    finish: Callable[[pd.DataFrame], pd.DataFrame] = lambda df: df


def _measure_queries(src: Source, w: Window, opps: ibis.Table) -> Iterator[_Query]:
    """The measure queries that do not read the stage order."""
    yield from _opportunity_measures(w, opps)
    yield _reps_active(src, w)
    if src.has("leads"):
        yield from _lead_measures(src, w, opps)
    if src.has("activities"):
        yield _activity_measures(src, w)
    if src.has("spend"):
        yield _spend(src, w)
    yield from _account_measures(src, w, opps)


def _ranked_queries(
    w: Window, opps: ibis.Table, probabilities: dict[str, float], history: ibis.Table | None
) -> Iterator[_Query]:
    """The measure queries that read stage_history in pipeline order (``history``)."""
    yield _pipeline(w, opps, probabilities, history)
    if history is not None:
        yield _stage_measures(w, opps, history)


def _ranked_history(sh: ibis.Table, order: list[str]) -> ibis.Table:
    """stage_history with ``stage_rank``, the stage's place in pipeline ``order``."""
    ranks = {stage: i for i, stage in enumerate(order)}
    rank = ibis.memtable(
        pd.DataFrame(
            {"rank_stage": list(ranks), "stage_rank": list(ranks.values())},
            columns=["rank_stage", "stage_rank"],
        ).astype({"rank_stage": "string", "stage_rank": "int64"})
    )
    joined = sh.left_join(rank, sh.stage == rank.rank_stage)
    return joined.select(
        "opportunity_id", "stage", "entered_at", stage_rank=joined.stage_rank.fill_null(len(ranks))
    )


def _known_opportunities(src: Source, w: Window) -> ibis.Table:
    """Opportunities as known on the report date: closed only when closed before it."""
    o = src.table("opportunities")
    o = o.filter(o.created_at < w.as_of)
    closed = o.is_closed & o.closed_at.notnull() & (o.closed_at < w.as_of)
    return o.mutate(closed_known=closed, won_known=closed & o.is_won)


def _by_rep(t: ibis.Table, period_start: ibis.Value, rep: ibis.Value, **aggs) -> _Query:
    return _Query(t.group_by(period_start=period_start, rep_id=rep).aggregate(**aggs))


def _opportunity_measures(w: Window, o: ibis.Table) -> Iterator[_Query]:
    created = o.filter(w.contains(o.created_at))
    yield _by_rep(
        created,
        w.bucket(created.created_at),
        created.owner_rep_id,
        opportunities_created=created.count(),
    )

    c = o.filter(o.closed_known & w.contains(o.closed_at))
    cycle_days = (c.closed_at.epoch_seconds() - c.created_at.epoch_seconds()) / SECONDS_PER_DAY
    yield _by_rep(
        c,
        w.bucket(c.closed_at),
        c.owner_rep_id,
        closed_count=c.count(),
        won_count=c.is_won.sum(),
        won_amount=ibis.ifelse(c.is_won, c.amount, ibis.null()).sum().fill_null(0),
        won_with_amount=(c.is_won & c.amount.notnull()).sum(),
        won_cycle_days=ibis.ifelse(c.is_won, cycle_days, ibis.null()).sum().fill_null(0),
    )

    periods = w.table()
    start = o.join(
        periods,
        [
            o.created_at < periods.period_start,
            ~(o.closed_known & (o.closed_at < periods.period_start)),
        ],
    )
    yield _by_rep(start, start.period_start, start.owner_rep_id, open_at_start=start.count())


def _pipeline(
    w: Window, o: ibis.Table, probabilities: dict[str, float], history: ibis.Table | None
) -> _Query:
    """Open amount at the end of each period, weighted by the stage the deal was in then, and
    the part in stages without a probability (``unpriced_pipeline``)."""
    periods = w.table()
    end = o.join(
        periods,
        [o.created_at < periods.period_end, ~(o.closed_known & (o.closed_at < periods.period_end))],
    ).select("opportunity_id", "owner_rep_id", "amount", "stage", "period_start", "period_end")
    if history is not None:
        sh = history
        visits = end.select("opportunity_id", "period_start", "period_end").join(
            sh, [end.opportunity_id == sh.opportunity_id, sh.entered_at < end.period_end]
        )
        order = ibis.window(
            group_by=["opportunity_id", "period_start"],
            order_by=[ibis.desc("entered_at"), ibis.desc("stage_rank")],
        )
        last = (
            visits.mutate(rn=ibis.row_number().over(order))
            .filter(_.rn == 0)
            .select("opportunity_id", "period_start", stage_then="stage")
        )
        end = end.left_join(last, ["opportunity_id", "period_start"]).mutate(
            stage=ibis.coalesce(_.stage_then, _.stage)
        )
    probs = ibis.memtable(
        pd.DataFrame(
            {"prob_stage": list(probabilities), "probability": list(probabilities.values())},
            columns=["prob_stage", "probability"],
        ).astype({"prob_stage": "string", "probability": "float64"})
    )
    end = end.left_join(probs, end.stage == probs.prob_stage)
    return _by_rep(
        end,
        end.period_start,
        end.owner_rep_id,
        pipeline_amount=end.amount.sum().fill_null(0),
        weighted_pipeline=(end.amount * end.probability.fill_null(0)).sum().fill_null(0),
        unpriced_pipeline=ibis.ifelse(end.probability.isnull(), end.amount, 0).sum().fill_null(0),
    )


def _reps_active(src: Source, w: Window) -> _Query:
    reps = src.table("reps")
    periods = w.table()
    active = reps.filter(reps.is_quota_carrying).join(
        periods,
        [
            reps.start_at.isnull() | (reps.start_at < periods.period_end),
            reps.end_at.isnull() | (reps.end_at >= periods.period_start),
        ],
    )
    return _by_rep(active, active.period_start, active.rep_id, reps_active=active.count())


def _lead_measures(src: Source, w: Window, o: ibis.Table) -> Iterator[_Query]:
    leads = src.table("leads")
    created = leads.filter(w.contains(leads.created_at))
    yield _by_rep(
        created, w.bucket(created.created_at), created.owner_rep_id, leads_created=created.count()
    )

    won = o.filter(o.won_known).select(won_opportunity_id="opportunity_id")
    q = leads.filter(leads.qualified_at.notnull() & w.contains(leads.qualified_at))
    q = q.left_join(won, q.opportunity_id == won.won_opportunity_id)
    yield _by_rep(
        q,
        w.bucket(q.qualified_at),
        q.owner_rep_id,
        qualified_leads=q.count(),
        qualified_converted=q.won_opportunity_id.notnull().sum(),
    )


def _activity_measures(src: Source, w: Window) -> _Query:
    a = src.table("activities")
    a = a.filter(w.contains(a.occurred_at))
    counts = a.group_by(
        period_start=w.bucket(a.occurred_at), rep_id=a.rep_id, kind=a.activity_type
    ).aggregate(n=a.count())

    def by_kind(counts: pd.DataFrame) -> pd.DataFrame:
        wide = counts.pivot_table(
            index=["period_start", "rep_id"],
            columns="kind",
            values="n",
            aggfunc="sum",
            fill_value=0,
        )
        wide.columns = [f"activities_{kind}" for kind in wide.columns]
        wide["activities"] = wide.sum(axis=1)
        return wide.reset_index()

    return _Query(counts, by_kind)


def _spend(src: Source, w: Window) -> _Query:
    s = src.table("spend")
    s = s.filter(w.contains(s.spent_at))
    return _Query(
        s.group_by(period_start=w.bucket(s.spent_at), team_id=s.team_id).aggregate(
            spend=s.amount.sum().fill_null(0)
        )
    )


def _account_measures(src: Source, w: Window, o: ibis.Table) -> Iterator[_Query]:
    """New customers, and retention / ARPA from revenue events (the revenue table or won deals)."""
    if not src.has_column("opportunities", "account_id"):
        return
    won = o.filter(o.won_known & o.account_id.notnull())
    first = won.mutate(
        rn=ibis.row_number().over(group_by="account_id", order_by=["closed_at", "opportunity_id"])
    ).filter(_.rn == 0)
    first = first.filter(w.contains(first.closed_at))
    yield _by_rep(first, w.bucket(first.closed_at), first.owner_rep_id, new_customers=first.count())

    if src.has("revenue"):
        r = src.table("revenue")
        events = r.select("account_id", "amount", at="recognized_at")
    else:
        events = won.select("account_id", "amount", at="closed_at")
    events = events.filter(w.contains(events.at))
    per_account = events.group_by("account_id", period_start=w.bucket(events.at)).aggregate(
        amount=events.amount.sum().fill_null(0)
    )
    if src.has("accounts"):
        owners = src.table("accounts").select(owner_account_id="account_id", owner="owner_rep_id")
        per_account = per_account.left_join(
            owners, per_account.account_id == owners.owner_account_id
        )
        per_account = per_account.drop("owner_account_id")
    else:
        per_account = per_account.mutate(owner=ibis.null("string"))

    yield _by_rep(
        per_account,
        per_account.period_start,
        per_account.owner,
        account_revenue=per_account.amount.sum(),
        accounts_active=(per_account.amount > 0).sum(),
    )

    # An account active in a period is retained when it is active again one period later.
    active = per_account.filter(per_account.amount > 0)
    months = ibis.interval(months=w.periods[0].months)
    later = active.period_start.lead().over(group_by="account_id", order_by="period_start")
    pairs = active.select(
        "owner",
        period_start=active.period_start + months,
        retained=(later == active.period_start + months).fill_null(False),
    )
    pairs = pairs.filter(pairs.period_start < w.end)
    yield _by_rep(
        pairs,
        pairs.period_start,
        pairs.owner,
        accounts_prev=pairs.count(),
        retained_accounts=pairs.retained.sum(),
        lost_accounts=(~pairs.retained).sum(),
    )


def _stage_measures(w: Window, o: ibis.Table, history: ibis.Table) -> _Query:
    """Per stage: days spent and exits (forward or not) of stage visits that ended in the period."""
    closed = o.filter(o.is_closed & o.stage.notnull())
    closed_stages = closed.select(closed_stage="stage").distinct()
    lost = closed.filter(~closed.is_won)
    lost_stages = lost.select(lost_stage="stage").distinct()
    sh = history.filter(history.entered_at < w.as_of)
    order = ibis.window(group_by="opportunity_id", order_by=["entered_at", "stage_rank"])
    visits = sh.mutate(
        next_at=sh.entered_at.lead().over(order), next_stage=sh.stage.lead().over(order)
    )
    deals = o.select(
        deal_id="opportunity_id",
        rep_id="owner_rep_id",
        closed_at="closed_at",
        closed_known="closed_known",
        won_known="won_known",
    )
    v = visits.join(deals, visits.opportunity_id == deals.deal_id)
    v = v.filter(~v.stage.isin(closed_stages.closed_stage))  # a stage deals close in
    exit_at = ibis.coalesce(v.next_at, ibis.ifelse(v.closed_known, v.closed_at, ibis.null()))
    forward = ibis.ifelse(
        v.next_at.notnull(), ~v.next_stage.isin(lost_stages.lost_stage), v.won_known
    )
    v = v.mutate(exit_at=exit_at, forward=forward)
    v = v.filter(v.exit_at.notnull() & w.contains(v.exit_at))
    days = (v.exit_at.epoch_seconds() - v.entered_at.epoch_seconds()) / SECONDS_PER_DAY
    per_stage = v.group_by(
        period_start=w.bucket(v.exit_at), rep_id=v.rep_id, stage=v.stage
    ).aggregate(stage_days=days.sum(), stage_exits=v.count(), stage_advanced=v.forward.sum())

    def by_stage(per_stage: pd.DataFrame) -> pd.DataFrame:
        wide = per_stage.pivot_table(
            index=["period_start", "rep_id"],
            columns="stage",
            values=["stage_days", "stage_exits", "stage_advanced"],
            aggfunc="sum",
            fill_value=0,
        )
        wide.columns = [f"{measure}:{stage}" for measure, stage in wide.columns]
        return wide.reset_index()

    return _Query(per_stage, by_stage)

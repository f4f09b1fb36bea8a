"""Deals at risk: open deals at the report's snapshot, with every reason that applies.

A deal open at the snapshot (``deals.open_deals_table``: the end of the period, or the report
date when earlier; call it ``at``, and the report date ``R``, the day before ``at``) is at risk
for each of these reasons (thresholds from ``risks`` in ``params/kpis.yaml``):

- ``past_expected_close``: its expected close date (the source's, never an estimate) is before
  ``at``, i.e. on or before the report date, and it is still open.
- ``no_recent_activity``: no activity names the deal (``activities.opportunity_id``) in the
  ``quiet_days`` (30) days ending on ``R``: ``R`` minus the day of its last activity, or of its
  creation when it has none, is ``quiet_days`` or more. Last activity 29 days before ``R``: not
  at risk; 30 days: at risk. A deal younger than that is never quiet.
- ``stuck_in_stage``: it has been in its current stage (since entering it, per stage history)
  longer than ``stage_percentile`` (90%) of the deals won in the 12 months before ``at`` took in
  that stage: ``days in stage > the 90th percentile`` (linear interpolation, ``numpy.quantile``)
  of their days there. Exactly at the percentile is not at risk. A stage needs
  ``MIN_WON_DEALS`` won deals that stayed in it (a stay of no time, a skipped stage, is none).
- ``close_date_pushed``: snapshots (``kpi_lib.data.history``) saw its expected close date move
  later ``close_date_pushes`` (2) times or more while it was open.
- ``amount_reduced``: its amount now is below the largest amount a snapshot recorded for it.

A rule the source cannot support (no activities naming deals, no stage history, no expected
close dates, no snapshots) applies to no deal, and ``attrs["unavailable"]`` says why.

Example
-------
>>> risks = deals_at_risk(src, open_table, at=Timestamp("2026-12-01"), period="2026-11",
...                       thresholds={"quiet_days": 30, "stage_percentile": 0.9,
...                                   "close_date_pushes": 2})      # doctest: +SKIP
>>> risks[["opportunity_id", "reasons"]].head(2)                    # doctest: +SKIP
  opportunity_id                               reasons
0        O000812  past_expected_close;no_recent_activity
1        O000955                        stuck_in_stage
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from kpi_lib.data import history as snapshots
from kpi_lib.data.source import Source

RISK_COLUMNS = [
    "period",
    "opportunity_id",
    "owner_rep_id",
    "team_id",
    "stage",
    "amount",
    "expected_close_at",
    "reasons",
]
"""The columns of ``risks.csv``: one row per open deal at risk."""
DETAIL_COLUMNS = ["days_quiet", "days_in_stage", "stage_limit_days", "pushes", "amount_was"]
"""What the batch keeps beside them for the reports' sentences (not in ``risks.csv``)."""
REASONS = {
    "past_expected_close": "past its expected close date",
    "no_recent_activity": "no activity logged recently",
    "stuck_in_stage": "longer in its stage than won deals take",
    "close_date_pushed": "close date pushed repeatedly",
    "amount_reduced": "amount reduced",
}
"""The reasons, in the order ``reasons`` lists them, with a short label."""
WON_LOOKBACK_MONTHS = 12
"""The won deals whose time in stage sets the limit closed this many months before ``at``."""
MIN_WON_DEALS = 5
"""A stage needs this many won deals that stayed in it for a limit."""
SEPARATOR = ";"
"""Between the reason codes of ``reasons``."""


def deals_at_risk(
    src: Source,
    open_table: pd.DataFrame,
    at: pd.Timestamp,
    period: str,
    thresholds: dict,
    history_dir: str | Path | None = None,
) -> pd.DataFrame:
    """One row per open deal at risk, largest amount first, with every reason that applies.

    Parameters
    ----------
    src
        The loaded source (activities, stage history, opportunities).
    open_table
        The deals open at ``at`` (``deals.open_deals_table``, the batch's ``open_deals``).
    at
        The snapshot instant (``deals.snapshot_at``): ``Timestamp('2026-12-01')`` judges the
        deals as at the end of November 30, the report date.
    period
        The batch's period label, the first column.
    thresholds
        ``quiet_days``, ``stage_percentile``, ``close_date_pushes`` (settings' ``risks``).
    history_dir
        The snapshot folder, for pushed close dates and reduced amounts.

    Returns
    -------
    DataFrame
        ``RISK_COLUMNS`` (``reasons``: the codes of ``REASONS`` joined by ``;``;
        ``expected_close_at`` the source's, NaT without one), then ``DETAIL_COLUMNS``:
        ``days_quiet`` (whole days since the last activity or creation), ``days_in_stage``
        and ``stage_limit_days`` (the won deals' percentile), ``pushes``, ``amount_was``
        (the largest amount a snapshot saw). ``attrs["unavailable"]`` maps each rule that
        could not be judged to the reason.
    """
    at = pd.Timestamp(at)
    day = at.normalize() - pd.Timedelta(days=1)  # the report date
    d = open_table.reset_index(drop=True).copy()
    d["opportunity_id"] = d["opportunity_id"].astype(str)
    d["expected_close_at"] = _naive(d["expected_close_at"])
    unavailable: dict[str, str] = {}
    flags: dict[str, pd.Series] = {}

    # past the expected close date
    if d["expected_close_at"].notna().any() or _has_dates(src):
        flags["past_expected_close"] = (d["expected_close_at"] < at).fillna(False)
    else:
        unavailable["past_expected_close"] = "the source has no expected close dates"

    # no recent activity
    last, why = _last_activity(src, at)
    if last is None:
        unavailable["no_recent_activity"] = why
        d["days_quiet"] = math.nan
    else:
        touched = _lookup(d["opportunity_id"], last)
        since = pd.concat([touched, _naive(d["created_at"])], axis=1).max(axis=1)
        d["days_quiet"] = (day - since.dt.normalize()).dt.days.astype("float64")
        flags["no_recent_activity"] = (d["days_quiet"] >= thresholds["quiet_days"]).fillna(False)

    # longer in the stage than won deals take
    sh = _history(src, at)
    stays, why = _stage_stays(src, sh, at)
    if stays is None:
        unavailable["stuck_in_stage"] = why
        d["days_in_stage"] = d["stage_limit_days"] = math.nan
    else:
        entered = _entered_current_stage(sh, d)
        d["days_in_stage"] = (at - entered).dt.total_seconds() / 86400
        limits = stage_limits(stays, thresholds["stage_percentile"])
        d["stage_limit_days"] = d["stage"].map(limits).astype("float64")
        flags["stuck_in_stage"] = (d["days_in_stage"] > d["stage_limit_days"]).fillna(False)

    # pushed close dates and reduced amounts, from snapshots
    seen, why = _snapshot_changes(history_dir, at)
    if seen is None:
        unavailable["close_date_pushed"] = unavailable["amount_reduced"] = why
        d["pushes"] = d["amount_was"] = math.nan
    else:
        d["pushes"] = d["opportunity_id"].map(seen["pushes"]).fillna(0).astype("float64")
        d["amount_was"] = d["opportunity_id"].map(seen["amount_max"]).astype("float64")
        flags["close_date_pushed"] = d["pushes"] >= thresholds["close_date_pushes"]
        flags["amount_reduced"] = (d["amount"] < d["amount_was"]).fillna(False)
        if not seen["has_dates"].any():
            unavailable["close_date_pushed"] = "the snapshots carry no expected close dates"
            flags.pop("close_date_pushed")

    codes = [c for c in REASONS if c in flags]
    if codes:
        hit = pd.DataFrame({c: flags[c].to_numpy(dtype=bool) for c in codes})
        reasons = hit.apply(lambda r: SEPARATOR.join(c for c in codes if r[c]), axis=1)
    else:
        reasons = pd.Series("", index=d.index)
    d["reasons"] = reasons.astype(str).to_numpy() if len(d) else reasons
    d["period"] = period
    out = d[d["reasons"] != ""]
    out = out.sort_values(
        ["amount", "opportunity_id"], ascending=[False, True], na_position="last", kind="stable"
    )
    out = out[RISK_COLUMNS + DETAIL_COLUMNS].reset_index(drop=True)
    out["amount"] = out["amount"].astype("float64")
    for column in ("opportunity_id", "owner_rep_id", "team_id", "stage", "reasons", "period"):
        out[column] = out[column].astype("string").astype(object)
    out.attrs["unavailable"] = unavailable
    return out


def stage_limits(stays: pd.DataFrame, share: float) -> dict[str, float]:
    """Per stage, the ``share`` quantile (linear) of won deals' days in it, for stages with
    ``MIN_WON_DEALS`` deals or more. ``stays``: one row per won deal x stage, ``days``.

    Example: 11 won deals that took 0, 10, ..., 100 days in Proposal give Proposal 90.0 at 0.9.
    """
    out = {}
    for stage, days in stays.groupby("stage")["days"]:
        if len(days) >= MIN_WON_DEALS:
            out[str(stage)] = float(np.quantile(days.to_numpy(dtype="float64"), share))
    return out


def _naive(values: pd.Series) -> pd.Series:
    values = pd.to_datetime(values)
    if getattr(values.dt, "tz", None) is not None:
        values = values.dt.tz_convert("UTC").dt.tz_localize(None)
    return values.astype("datetime64[us]")


def _has_dates(src: Source) -> bool:
    return src.has_column("opportunities", "expected_close_at")


def _last_activity(src: Source, at: pd.Timestamp) -> tuple[pd.Series | None, str]:
    """The last activity before ``at`` of each deal activities name, computed where the data
    lives; or None and why the rule cannot be judged."""
    if not src.has("activities"):
        return None, "the source has no activities"
    if not src.has_column("activities", "opportunity_id"):
        return None, "the activities do not name their deal (no opportunity_id)"
    a = src.table("activities")
    a = a.filter(a.opportunity_id.notnull() & (a.occurred_at < at.to_pydatetime()))
    last = a.group_by("opportunity_id").aggregate(last_at=a.occurred_at.max()).to_pandas()
    if last.empty:
        return None, "no activity names its deal (opportunity_id is empty)"
    return (
        pd.Series(_naive(last["last_at"]).to_numpy(), index=last["opportunity_id"].astype(str)),
        "",
    )


def _history(src: Source, at: pd.Timestamp) -> pd.DataFrame | None:
    if not src.has("stage_history"):
        return None
    sh = src.frame("stage_history")
    out = pd.DataFrame(
        {
            "opportunity_id": sh["opportunity_id"].astype(str),
            "stage": sh["stage"].astype(str),
            "entered_at": _naive(sh["entered_at"]),
        }
    )
    out = out[out["entered_at"] < at]
    return out.sort_values(["opportunity_id", "entered_at"], kind="stable") if len(out) else None


def _lookup(keys: pd.Series, values: pd.Series) -> pd.Series:
    """``values`` at ``keys`` (NaN or NaT where a key is missing), in ``values``' dtype: what
    ``keys.map(values)`` does, but pandas 3 cannot map through an empty datetime series."""
    return pd.Series(values.reindex(keys.to_numpy()).to_numpy(), index=keys.index)


def _stage_stays(
    src: Source, sh: pd.DataFrame | None, at: pd.Timestamp
) -> tuple[pd.DataFrame | None, str]:
    """One row per deal won in the lookback x stage it stayed in: ``stage, days`` (the time
    from entering the stage to entering the next one, or to closing; summed over visits)."""
    if sh is None:
        return None, "the source has no stage history (nor snapshots to derive it from)"
    opps = src.frame("opportunities")
    closed_at = _naive(opps["closed_at"])
    won = opps["is_won"].fillna(False).astype(bool) & (closed_at < at).fillna(False)
    won &= (closed_at >= at - pd.DateOffset(months=WON_LOOKBACK_MONTHS)).fillna(False)
    ids = pd.Series(closed_at[won].to_numpy(), index=opps.loc[won, "opportunity_id"].astype(str))
    v = sh[sh["opportunity_id"].isin(ids.index)].copy()
    v["exit_at"] = v.groupby("opportunity_id")["entered_at"].shift(-1)
    v["exit_at"] = v["exit_at"].fillna(_lookup(v["opportunity_id"], ids))
    v["days"] = (v["exit_at"] - v["entered_at"]).dt.total_seconds() / 86400
    v = v[v["days"] > 0]
    return v.groupby(["opportunity_id", "stage"], as_index=False)["days"].sum(), ""


def _entered_current_stage(sh: pd.DataFrame, d: pd.DataFrame) -> pd.Series:
    """When each open deal entered the stage it is in: the start of its last run of history
    rows (``sh``, up to the snapshot) in that stage (NaT when history has no row for it)."""
    if d.empty:
        return pd.Series(pd.NaT, index=d.index, dtype="datetime64[us]")
    sh = sh[sh["opportunity_id"].isin(d["opportunity_id"])].copy()
    changed = (sh["stage"] != sh.groupby("opportunity_id")["stage"].shift()).cumsum()
    sh["run"] = changed
    last_run = sh.groupby("opportunity_id")["run"].transform("max")
    current = sh[sh["run"] == last_run]
    start = current.groupby("opportunity_id").agg(
        stage=("stage", "first"), at=("entered_at", "min")
    )
    entered = _lookup(d["opportunity_id"], start["at"])
    same = d["opportunity_id"].map(start["stage"]) == d["stage"]
    return entered.where(same.fillna(False)).astype("datetime64[us]")


def _snapshot_changes(history_dir, at: pd.Timestamp) -> tuple[pd.DataFrame | None, str]:
    """Per deal seen in the snapshots up to ``at``: ``pushes`` (times its expected close date
    moved later between two snapshots while it was open), ``amount_max`` and ``has_dates``."""
    if not history_dir:
        return None, "no history snapshots are kept (python -m kpi_lib snapshot)"
    days = [d for d in snapshots.snapshot_dates(history_dir) if pd.Timestamp(d) <= at]
    if not days:
        return None, "no history snapshot was taken before the report date"
    pushes: pd.Series = pd.Series(dtype="float64")
    amount_max: pd.Series = pd.Series(dtype="float64")
    previous = None
    has_dates = False
    for day in days:
        snap = snapshots.read_snapshot(history_dir, day).set_index("opportunity_id")
        snap.index = snap.index.astype(str)
        amounts = snap["amount"].where(~snap["is_closed"])
        amount_max = pd.concat([amount_max, amounts]).groupby(level=0).max()
        dated = snapshots.EXPECTED_CLOSE in snap
        has_dates |= dated
        if previous is not None and dated and snapshots.EXPECTED_CLOSE in previous:
            both = snap.index.intersection(previous.index)
            now = snap.loc[both, snapshots.EXPECTED_CLOSE]
            was = previous.loc[both, snapshots.EXPECTED_CLOSE]
            moved = (now > was).fillna(False) & ~snap.loc[both, "is_closed"]
            hit = moved[moved].index
            pushes = pushes.add(pd.Series(1.0, index=hit), fill_value=0.0)
        previous = snap
    out = pd.DataFrame({"pushes": pushes, "amount_max": amount_max})
    out["has_dates"] = has_dates
    return out, ""


__all__ = ["DETAIL_COLUMNS", "REASONS", "RISK_COLUMNS", "deals_at_risk", "stage_limits"]

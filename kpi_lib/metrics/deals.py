"""The few detail queries the reports need beyond the cube: reps in scope, open deals, stages.

The cube answers "how much" per period and scope; a report sometimes needs the rows behind it
(a rep's open deals) or a snapshot the cube does not hold (pipeline by stage at the end of a
period). These run on a loaded ``Source`` with pandas and follow the cube's semantics: a deal
is open at instant ``at`` when it was created before ``at`` and not closed before ``at``.

Example
-------
>>> src = kpi_lib.load_source("data/demo.duckdb")                     # doctest: +SKIP
>>> open_deals(src, Period.parse("2026-10"), "rep", "R001").head(3)   # doctest: +SKIP
"""

from __future__ import annotations

import pandas as pd

from kpi_lib.data.source import Source
from kpi_lib.periods import Period


def snapshot_at(period: Period, as_of: pd.Timestamp | str | None = None) -> pd.Timestamp:
    """The instant a report's snapshot is taken: the end of ``period``, or ``as_of`` if earlier.

    ``as_of`` is the report date's day; data up to the end of that day counts.
    """
    at = period.end
    if as_of is not None and not pd.isna(pd.Timestamp(as_of)):
        day_after = pd.Timestamp(as_of).normalize().tz_localize(None) + pd.Timedelta(days=1)
        at = min(at, day_after)
    return at


def reporting_currency(src: Source) -> str | None:
    """The currency the source's amounts are in: the opportunities' one currency code (after an
    FX table, the reporting currency), or None when they name none.

    Example: ``reporting_currency(load_source("crm/", fx="fx.csv"))`` -> ``'EUR'``.
    """
    codes = src.frame("opportunities")["currency"].dropna().astype(str).str.strip().str.upper()
    codes = codes[codes != ""]
    return None if codes.empty else str(codes.mode().iloc[0])


def reps_in_scope(src: Source, period: Period, scope: str, scope_id: str) -> pd.DataFrame:
    """One row per rep of the scope active in ``period``: ``rep_id, rep_name, team_id``.

    A rep is active when ``start_at`` < end of the period and ``end_at`` >= its start (no
    dates: always active), as for ``revenue_per_rep``.

    Example
    -------
    >>> reps_in_scope(src, Period.parse("2026-10"), "team", "na-ent")   # doctest: +SKIP
    """
    reps = src.frame("reps")
    active = pd.Series(True, index=reps.index)
    if "start_at" in reps:
        active &= reps["start_at"].isna() | (reps["start_at"] < period.end)
    if "end_at" in reps:
        active &= reps["end_at"].isna() | (reps["end_at"] >= period.start)
    if scope == "team":
        active &= reps["team_id"].astype(str) == str(scope_id)
    elif scope == "rep":
        active &= reps["rep_id"].astype(str) == str(scope_id)
    out = reps.loc[active, ["rep_id", "rep_name", "team_id"]].copy()
    for column in out:
        out[column] = out[column].astype(str)
    return out.reset_index(drop=True)


OPEN_DEAL_COLUMNS = [
    "opportunity_id",
    "owner_rep_id",
    "team_id",
    "account_name",
    "stage",
    "amount",
    "created_at",
    "expected_close_at",
    "cycle_company",
    "cycle_team",
    "cycle_rep",
]


def open_deals_table(
    src: Source, period: Period, as_of: pd.Timestamp | str | None = None
) -> pd.DataFrame:
    """Every deal open at the snapshot of ``period``, company-wide: the batch's detail table.

    One row per open deal: ``opportunity_id, owner_rep_id, team_id`` (the owner's team),
    ``account_name``, ``stage`` (the stage it was in at the snapshot), ``amount``,
    ``created_at``, ``expected_close_at`` (the source's, or NaT) and ``cycle_company``,
    ``cycle_team``, ``cycle_rep``: the mean sales cycle in days of deals won in the 12 months
    before the snapshot by the company, the owner's team and the owner (NaN: none won), from
    which a report estimates expected closes. ``open_deals`` cuts a scope's rows from it.

    Example
    -------
    >>> table = open_deals_table(src, Period.parse("2026-10"), as_of="2026-11-28")  # doctest: +SKIP
    >>> open_deals(table, Period.parse("2026-10"), "rep", "R001")                   # doctest: +SKIP
    """
    at = snapshot_at(period, as_of)
    opps = src.frame("opportunities")
    reps = src.frame("reps")
    team_of = reps.drop_duplicates("rep_id").set_index("rep_id")["team_id"].astype(str)
    owner = opps["owner_rep_id"].astype(str)
    team = owner.map(team_of)
    won = (
        opps["is_won"].fillna(False).astype(bool)
        & (opps["closed_at"] < at)
        & (opps["closed_at"] >= at - pd.DateOffset(months=12))
    ).fillna(False)
    days = (opps.loc[won, "closed_at"] - opps.loc[won, "created_at"]).dt.total_seconds() / 86400
    open_ = _open_at(opps, at)
    out = pd.DataFrame(
        {
            "opportunity_id": open_["opportunity_id"].astype(str),
            "owner_rep_id": owner[open_.index],
            "team_id": team[open_.index],
            "account_name": _account_names(src, open_),
            "stage": _stage_at(src, open_, at),
            "amount": open_["amount"].astype("float64"),
            "created_at": open_["created_at"],
            "expected_close_at": open_["expected_close_at"],  # all NaT when the source has none
            "cycle_company": days.mean(),
            "cycle_team": team[open_.index].map(days.groupby(team[won]).mean()),
            "cycle_rep": owner[open_.index].map(days.groupby(owner[won]).mean()),
        }
    )
    for column in ("cycle_company", "cycle_team", "cycle_rep"):
        out[column] = out[column].astype("float64")
    return out[OPEN_DEAL_COLUMNS].reset_index(drop=True)


def _open_at(opps: pd.DataFrame, at: pd.Timestamp) -> pd.DataFrame:
    created = opps["created_at"] < at
    closed_before = opps["is_closed"].fillna(False).astype(bool) & (opps["closed_at"] < at)
    return opps[created & ~closed_before.fillna(False)]


STAGE_NOT_RECORDED = "stage not recorded (closed since)"
"""The stage of a deal open at a snapshot, closed since, whose stage then no history records:
its current stage (won or lost) is not the one it was in."""


def _stage_at(src: Source, opps: pd.DataFrame, at: pd.Timestamp) -> pd.Series:
    """The stage each opportunity open at ``at`` was in then: the last stage history entered
    before ``at``; else its current stage while it is still open, and ``STAGE_NOT_RECORDED``
    once it has closed since."""
    stage = (
        opps["stage"]
        .astype(str)
        .mask(opps["is_closed"].fillna(False).astype(bool), STAGE_NOT_RECORDED)
    )
    if not src.has("stage_history") or opps.empty:
        return stage
    sh = src.frame("stage_history")
    sh = sh[(sh["entered_at"] < at) & sh["opportunity_id"].isin(opps["opportunity_id"])]
    last = sh.sort_values("entered_at").groupby("opportunity_id")["stage"].last().astype(str)
    # as text: mapped over an empty history (no open deal has a row yet) it comes back numeric
    return opps["opportunity_id"].map(last).astype("string").fillna(stage).astype(str)


def open_deals(
    deals: Source | pd.DataFrame,
    period: Period,
    scope: str,
    scope_id: str,
    as_of: pd.Timestamp | str | None = None,
    stage_probabilities: dict[str, float] | None = None,
) -> pd.DataFrame:
    """One row per deal of the scope open at the end of ``period``, largest first.

    Parameters
    ----------
    deals
        The batch's ``open_deals_table`` for this period and ``as_of``, or a loaded ``Source``
        (the table is built from it).
    period
        The report period; the snapshot is taken at its end (or at ``as_of`` if earlier).
    scope, scope_id
        ``("rep", "R001")``, ``("team", "na-ent")`` or ``("company", "all")``.
    stage_probabilities
        ``{stage: probability}`` for the weighted amount (params/kpis.yaml); missing: 0.

    Returns
    -------
    DataFrame
        ``opportunity_id, account_name, stage, amount, weighted_amount, created_at, age_days,
        expected_close_at, is_expected_close_estimated``. ``expected_close_at`` comes from an
        ``expected_close_at`` column when the scope's open deals have one; otherwise it is
        estimated as ``created_at`` + the scope's mean sales cycle of deals won in the 12
        months before the snapshot (a date before the snapshot means the deal is overdue).
    """
    at = snapshot_at(period, as_of)
    table = deals if isinstance(deals, pd.DataFrame) else open_deals_table(deals, period, as_of)
    if scope == "rep":
        table = table[table["owner_rep_id"] == str(scope_id)]
    elif scope == "team":
        table = table[table["team_id"] == str(scope_id)]
    out = table[["opportunity_id", "account_name", "stage", "amount", "created_at"]].copy()
    probability = pd.to_numeric(out["stage"].map(stage_probabilities or {}), errors="coerce")
    out["weighted_amount"] = out["amount"] * probability.astype("float64").fillna(0.0)
    out["age_days"] = (at - out["created_at"]).dt.total_seconds() / 86400
    if table["expected_close_at"].notna().any():
        out["expected_close_at"] = table["expected_close_at"]
        out["is_expected_close_estimated"] = False
    else:
        cycle = table[f"cycle_{scope}"]
        out["expected_close_at"] = out["created_at"] + pd.to_timedelta(cycle, unit="D")
        out["is_expected_close_estimated"] = True
    columns = [
        "opportunity_id",
        "account_name",
        "stage",
        "amount",
        "weighted_amount",
        "created_at",
        "age_days",
        "expected_close_at",
        "is_expected_close_estimated",
    ]
    return (
        out[columns]
        .sort_values("amount", ascending=False, na_position="last", kind="stable")
        .reset_index(drop=True)
    )


def _account_names(src: Source, opps: pd.DataFrame) -> pd.Series:
    if "account_id" not in opps:
        return pd.Series("", index=opps.index, dtype="str")
    ids = opps["account_id"]
    if src.has("accounts"):
        names = src.frame("accounts").set_index("account_id")["account_name"]
        names = names[~names.index.duplicated()]
        # as text: mapped through an empty accounts table the names come back numeric
        return ids.map(names).astype("string").fillna(ids).fillna("").astype(str)
    return ids.fillna("").astype(str)


def pipeline_by_stage(
    deals: Source | pd.DataFrame,
    period: Period,
    scope: str,
    scope_id: str,
    as_of: pd.Timestamp | str | None = None,
    stage_probabilities: dict[str, float] | None = None,
    stages: list[str] | None = None,
) -> pd.DataFrame:
    """One row per open stage, in pipeline order: the scope's open deals at the end of ``period``.

    ``deals`` is as for ``open_deals``: the batch's ``open_deals_table`` or a ``Source``.

    Returns
    -------
    DataFrame
        ``stage, deals, amount, weighted_amount, avg_age_days``; stages listed in ``stages``
        (pipeline order) come first, with 0 deals when empty.

    Example
    -------
    >>> pipeline_by_stage(src, Period.parse("2026-10"), "company", "all")   # doctest: +SKIP
    """
    deals = open_deals(deals, period, scope, scope_id, as_of, stage_probabilities)
    grouped = deals.groupby("stage", sort=False).agg(
        deals=("opportunity_id", "size"),
        amount=("amount", "sum"),
        weighted_amount=("weighted_amount", "sum"),
        avg_age_days=("age_days", "mean"),
    )
    order = list(stages or []) + sorted(set(grouped.index) - set(stages or []))
    out = grouped.reindex(order)
    out[["deals", "amount", "weighted_amount"]] = out[
        ["deals", "amount", "weighted_amount"]
    ].fillna(0)
    out["deals"] = out["deals"].astype("int64")
    return out.rename_axis("stage").reset_index()

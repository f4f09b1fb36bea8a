"""History from snapshots: what a CRM that keeps only the current state forgets.

Plain CRM exports hold each opportunity as it is today. When a source has no ``stage_history``,
each run stores a dated, compressed snapshot of the canonical opportunities::

    history/opportunities/2026-10-01.parquet     (Parquet, zstd; one file per day)
    history/opportunities/2026-10-02.parquet
    ...

and consecutive snapshots give back what the CRM forgot:

- ``derived_stage_history``: a ``stage_history`` table (a row each time a deal changes stage),
  so time in stage and stage conversion work (``with_derived_history``);
- ``close_date_pushes``: deals whose expected close date moved later (out of a period);
- ``pipeline_waterfall``: open pipeline at the start of a period, + new, + pulled in, +/- amount
  changes, - pushed out, - won, - lost, - removed, = open at the end;
- ``history_coverage``: how far back the history reaches, and its gaps.

A snapshot dated D stands for the state of the CRM at the start of day D (a daily run early in
the morning): a change first seen in the snapshot of D happened before D.

Expected close dates: canonical opportunities carry ``closed_at`` only once closed. When the
source's opportunities carry an ``expected_close_at`` column (Salesforce ``CloseDate`` /
HubSpot ``closedate`` of open deals), snapshots keep it and pushes can be seen; without it the
waterfall's pipeline is every open deal and nothing can be pushed or pulled in.

Example
-------
>>> take_snapshot("data/demo.duckdb", "history", today="2026-11-01")      # doctest: +SKIP
>>> pipeline_waterfall("history", "2026-10").table                         # doctest: +SKIP
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd

from kpi_lib.clock import today
from kpi_lib.data.load import load_source
from kpi_lib.data.source import Source
from kpi_lib.errors import SourceError
from kpi_lib.periods import Period

DEFAULT_HISTORY_DIR = "history"
SNAPSHOT_FOLDER = "opportunities"
EXPECTED_CLOSE = "expected_close_at"
COMPRESSION = "zstd"

SNAPSHOT_COLUMNS = {
    "opportunity_id": "string",
    "owner_rep_id": "string",
    "account_id": "string",
    "lead_id": "string",
    "created_at": "datetime64[us]",
    "stage": "string",
    "is_closed": "bool",
    "is_won": "bool",
    "closed_at": "datetime64[us]",
    "amount": "float64",
    "currency": "string",
    EXPECTED_CLOSE: "datetime64[us]",
}
"""Columns of a snapshot and their types; ``expected_close_at`` only when the source has it."""

_NAME = re.compile(r"^(\d{4}-\d{2}-\d{2})\.parquet$")


# ---------------------------------------------------------------------------------------------
# Writing snapshots
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class SnapshotResult:
    """What one snapshot run did.

    ``path`` is the day's file (None when skipped); ``changed`` is False when the file already
    held exactly this content (a second run on the same day); ``skipped`` says why no snapshot
    was needed (the source has its own stage history).
    """

    day: date
    path: Path | None
    rows: int
    changed: bool
    skipped: str | None = None

    def summary(self) -> str:
        if self.skipped:
            return f"no snapshot for {self.day}: {self.skipped}"
        verb = "wrote" if self.changed else "unchanged:"
        return f"{verb} {self.path} ({self.rows} opportunities)"


def snapshot_folder(history_dir: str | Path) -> Path:
    """Where the opportunity snapshots of ``history_dir`` live (``<history_dir>/opportunities``)."""
    return Path(history_dir) / SNAPSHOT_FOLDER


def snapshot_frame(src: Source) -> pd.DataFrame:
    """The canonical opportunities of a source as a snapshot stores them.

    Returns
    -------
    DataFrame
        One row per opportunity (quarantined rows left out), sorted by ``opportunity_id``,
        with the ``SNAPSHOT_COLUMNS`` (``expected_close_at`` when the source carries it).
    """
    opps = src.frame("opportunities")
    has_expected = EXPECTED_CLOSE in opps.columns and src.has_column(
        "opportunities", EXPECTED_CLOSE
    )
    columns = [c for c in SNAPSHOT_COLUMNS if c != EXPECTED_CLOSE or has_expected]
    return _typed(opps.reindex(columns=columns))


def write_snapshot(opportunities: pd.DataFrame, history_dir: str | Path, day) -> SnapshotResult:
    """Store the snapshot of ``day``: atomic, and one file per day whatever the number of runs.

    Parameters
    ----------
    opportunities
        Canonical opportunities (``snapshot_frame``); an ``expected_close_at`` column is kept.
    history_dir
        The history folder; the file is ``<history_dir>/opportunities/<YYYY-MM-DD>.parquet``.
    day
        The snapshot's date (``"2026-10-01"`` or a ``date``).

    Returns
    -------
    SnapshotResult
        A second run on the same day with the same data leaves the file untouched
        (``changed=False``); with other data it replaces the file (the later state wins).
    """
    day = _as_day(day)
    columns = [c for c in SNAPSHOT_COLUMNS if c in opportunities.columns]
    missing = {"opportunity_id", "stage", "is_closed", "is_won"} - set(columns)
    if missing:
        raise SourceError(f"a snapshot needs the opportunity columns {sorted(missing)}")
    df = _typed(opportunities[columns])
    folder = snapshot_folder(history_dir)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{day.isoformat()}.parquet"
    tmp = folder / f".{path.name}.{os.getpid()}.tmp"
    df.to_parquet(tmp, index=False, compression=COMPRESSION)
    if path.exists() and path.read_bytes() == tmp.read_bytes():
        tmp.unlink()
        return SnapshotResult(day, path, len(df), changed=False)
    os.replace(tmp, path)
    return SnapshotResult(day, path, len(df), changed=True)


def take_snapshot(
    source,
    history_dir: str | Path = DEFAULT_HISTORY_DIR,
    today=None,
    *,
    preset: str | None = None,
    options=None,
    colmap=None,
    fx=None,
    always: bool = False,
) -> SnapshotResult:
    """Snapshot a source's opportunities for ``today``, unless it keeps its own stage history.

    Parameters
    ----------
    source, preset, options, colmap, fx
        As for ``load_source`` (a loaded ``Source`` is used as is).
    history_dir
        The history folder (default ``history/``).
    today
        The snapshot's date, ``YYYY-MM-DD`` (default ``$KPI_TODAY``, else today).
    always
        Snapshot even a source with ``stage_history`` (for its close-date pushes and waterfall).

    Example
    -------
    >>> take_snapshot("crm-exports/", "history", preset="hubspot").summary()   # doctest: +SKIP
    'wrote history/opportunities/2026-10-05.parquet (412 opportunities)'
    """
    day = _as_day(today)
    src = load_source(source, preset, options=options, colmap=colmap, fx=fx)
    if src.has("stage_history") and not always:
        return SnapshotResult(
            day, None, 0, changed=False, skipped="the source has its own stage history"
        )
    return write_snapshot(snapshot_frame(src), history_dir, day)


def load_with_history(
    source,
    history_dir: str | Path | None = None,
    today=None,
    **load_options,
) -> Source:
    """Load a source and, with a history folder, snapshot it and fill in its stage history.

    This is the one call for a run (``render``, the scheduled runs): with ``history_dir`` None
    it is ``load_source``; otherwise today's snapshot is stored (``take_snapshot``) and the
    source comes back with the stage history derived from the snapshots when it has none
    (``with_derived_history``).

    Parameters
    ----------
    source, load_options
        As for ``load_source`` (``preset=``, ``options=``, ``colmap=``, ``fx=``, ``as_of=``).
    history_dir
        The history folder (``"history"``), or None for no history.
    today
        The snapshot's date (default ``$KPI_TODAY``, else today).

    Example
    -------
    >>> src = load_with_history("params/source.yaml", "history")     # doctest: +SKIP
    >>> src.has("stage_history")                                       # doctest: +SKIP
    True
    """
    src = load_source(source, **load_options)
    if history_dir is None:
        return src
    take_snapshot(src, history_dir, today)
    return with_derived_history(src, history_dir)


# ---------------------------------------------------------------------------------------------
# Reading snapshots
# ---------------------------------------------------------------------------------------------


def snapshot_dates(history_dir: str | Path) -> list[date]:
    """The days that have a snapshot, oldest first (none when the folder does not exist)."""
    folder = snapshot_folder(history_dir)
    if not folder.is_dir():
        return []
    days = [date.fromisoformat(m.group(1)) for f in folder.iterdir() if (m := _NAME.match(f.name))]
    return sorted(days)


def read_snapshot(history_dir: str | Path, day) -> pd.DataFrame:
    """The snapshot of ``day``. One row per opportunity as it was at the start of that day."""
    path = snapshot_folder(history_dir) / f"{_as_day(day).isoformat()}.parquet"
    if not path.exists():
        raise SourceError(f"no snapshot for {_as_day(day)} in {snapshot_folder(history_dir)}")
    try:
        return _typed(pd.read_parquet(path))
    except (OSError, ValueError) as exc:
        raise SourceError(f"{path}: cannot read the snapshot: {exc}") from exc


@dataclass(frozen=True)
class Coverage:
    """How far back the snapshot history reaches.

    ``gaps`` lists ``(last day before, first day after)`` of every stretch of more than
    ``cadence_days`` between two snapshots; ``missing_days`` counts the days in those gaps.
    """

    first: date | None
    last: date | None
    snapshots: int
    gaps: tuple[tuple[date, date], ...]
    missing_days: int

    def text(self) -> str:
        """``history since 2026-09-01 (35 snapshots)``, with the gaps when there are any."""
        if not self.snapshots:
            return "no history snapshots yet"
        plural = "s" if self.snapshots != 1 else ""
        text = f"history since {self.first} ({self.snapshots} snapshot{plural})"
        if self.gaps:
            text += f"; {self.missing_days} day{'s' if self.missing_days != 1 else ''} missing"
        return text


def history_coverage(history_dir: str | Path, cadence_days: int = 1) -> Coverage:
    """First snapshot, number of snapshots and gaps (runs expected every ``cadence_days``).

    Example
    -------
    >>> history_coverage("history").text()        # doctest: +SKIP
    'history since 2026-09-01 (35 snapshots); 2 days missing'
    """
    days = snapshot_dates(history_dir)
    gaps = tuple(
        (a, b) for a, b in zip(days, days[1:], strict=False) if (b - a).days > cadence_days
    )
    missing = sum((b - a).days - 1 for a, b in gaps)
    return Coverage(days[0] if days else None, days[-1] if days else None, len(days), gaps, missing)


# ---------------------------------------------------------------------------------------------
# Derived stage history
# ---------------------------------------------------------------------------------------------


def derived_stage_history(history_dir: str | Path) -> pd.DataFrame:
    """A ``stage_history`` table rebuilt from consecutive snapshots.

    A row is written each time a deal is seen in a stage other than the one it was last seen in,
    with ``entered_at`` the date of the snapshot where it is first seen in the new stage, except:

    - a deal that closed between two snapshots entered its closed stage at ``closed_at`` (the
      CRM records it), kept between the two snapshot dates;
    - a deal created between two snapshots entered its first stage at ``created_at`` (kept
      between the two snapshot dates): deals are mostly seen in the stage they were created in.

    Deals present in the first snapshot get no row for the stage they were in then: when they
    entered it is unknown, so that stay is left out of time in stage rather than understated.

    Returns
    -------
    DataFrame
        One row per stage a deal entered while snapshots were taken: ``opportunity_id``,
        ``stage``, ``entered_at``, sorted by deal and time.

    Example
    -------
    >>> derived_stage_history("history").head(2)          # doctest: +SKIP
      opportunity_id     stage  entered_at
    0           O001  Proposal  2026-10-15
    1           O002  Closed Won 2026-10-12
    """
    rows: list[pd.DataFrame] = []
    last: pd.DataFrame | None = None
    previous: pd.Timestamp | None = None
    for day in snapshot_dates(history_dir):
        now = pd.Timestamp(day)
        snap = read_snapshot(history_dir, day).set_index("opportunity_id")
        if last is None:
            last, previous = snap[["stage", "is_closed"]], now
            continue
        new = snap.loc[snap.index.difference(last.index)]
        if len(new):
            at = new["closed_at"].where(
                new["is_closed"] & new["closed_at"].notna(), new["created_at"]
            )
            rows.append(_history_rows(new, _between(at, previous, now)))
        both = snap.index.intersection(last.index)
        moved = both[(snap.loc[both, "stage"] != last.loc[both, "stage"]).to_numpy()]
        if len(moved):
            cur, was = snap.loc[moved], last.loc[moved]
            closing = cur["is_closed"] & ~was["is_closed"] & cur["closed_at"].notna()
            at = pd.Series(now, index=cur.index).astype("datetime64[us]")
            at = at.where(~closing, _between(cur["closed_at"], previous, now))
            rows.append(_history_rows(cur, at))
        last = pd.concat([last.drop(snap.index, errors="ignore"), snap[["stage", "is_closed"]]])
        previous = now
    columns = ["opportunity_id", "stage", "entered_at"]
    if not rows:
        return _typed_history(pd.DataFrame(columns=columns))
    out = pd.concat(rows, ignore_index=True)[columns]
    return _typed_history(out.sort_values(["opportunity_id", "entered_at"], kind="stable"))


def with_derived_history(src: Source, history_dir: str | Path = DEFAULT_HISTORY_DIR) -> Source:
    """The source with ``stage_history`` derived from snapshots, when it has none of its own.

    A source with real stage history, a warehouse source (KPIs run in the warehouse, the
    snapshots are local files) and a history with fewer than two snapshots are returned as they
    are. Derived rows of deals no longer in the source are left out.

    Example
    -------
    >>> src = load_source("crm/", preset="hubspot")             # doctest: +SKIP
    >>> src = with_derived_history(src, "history")              # doctest: +SKIP
    >>> compute_cube(src, "2026-10")                            # doctest: +SKIP
    """
    if src.has("stage_history") or src.is_remote or len(snapshot_dates(history_dir)) < 2:
        return src
    derived = derived_stage_history(history_dir)
    derived = derived[derived["opportunity_id"].isin(src.frame("opportunities")["opportunity_id"])]
    derived = derived.reset_index(drop=True)
    coverage = history_coverage(history_dir)
    accounting = [
        *src.accounting,
        {
            "table": "stage_history",
            "status": "used",
            "reason": f"derived from snapshots ({coverage.text()})",
            "rows": len(derived),
        },
    ]
    return src.with_table("stage_history", derived, accounting)


# ---------------------------------------------------------------------------------------------
# Close-date pushes
# ---------------------------------------------------------------------------------------------


def close_date_pushes(history_dir: str | Path, period: str | Period | None = None) -> pd.DataFrame:
    """Open deals whose expected close date moved later between two consecutive snapshots.

    Parameters
    ----------
    period
        Keep only pushes out of this period: the expected close date moved from before the
        period's end to on or after it, seen in a snapshot dated after the period's start and
        no later than its end (``'2026-10'``: snapshots of Oct 2 to Nov 1).

    Returns
    -------
    DataFrame
        One row per push: ``opportunity_id``, ``owner_rep_id``, ``seen_at`` (the snapshot where
        the new date is first seen), ``from_close_at``, ``to_close_at``, ``days_pushed``,
        ``amount``. Empty when the snapshots carry no ``expected_close_at``.

    Example
    -------
    >>> close_date_pushes("history", "2026-10")[["opportunity_id", "days_pushed"]]  # doctest: +SKIP
    """
    days = snapshot_dates(history_dir)
    p = Period.parse(period) if isinstance(period, str) else period
    if p is not None:
        days = [d for d in days if d <= p.end.date()]
    parts = []
    for a, b in zip(days, days[1:], strict=False):
        if p is not None and b <= p.start.date():
            continue
        was, now = read_snapshot(history_dir, a), read_snapshot(history_dir, b)
        if EXPECTED_CLOSE not in was or EXPECTED_CLOSE not in now:
            continue
        pair = now.merge(
            was[["opportunity_id", EXPECTED_CLOSE]], on="opportunity_id", suffixes=("", "_was")
        )
        pushed = pair[~pair["is_closed"] & (pair[EXPECTED_CLOSE] > pair[f"{EXPECTED_CLOSE}_was"])]
        if p is not None:
            end = p.end
            pushed = pushed[
                (pushed[f"{EXPECTED_CLOSE}_was"] < end) & (pushed[EXPECTED_CLOSE] >= end)
            ]
        parts.append(
            pd.DataFrame(
                {
                    "opportunity_id": pushed["opportunity_id"],
                    "owner_rep_id": pushed["owner_rep_id"],
                    "seen_at": pd.Timestamp(b),
                    "from_close_at": pushed[f"{EXPECTED_CLOSE}_was"],
                    "to_close_at": pushed[EXPECTED_CLOSE],
                    "amount": pushed["amount"],
                }
            )
        )
    columns = [
        "opportunity_id",
        "owner_rep_id",
        "seen_at",
        "from_close_at",
        "to_close_at",
        "days_pushed",
        "amount",
    ]
    if not parts:
        return pd.DataFrame(columns=columns)
    out = pd.concat(parts, ignore_index=True)
    out["seen_at"] = out["seen_at"].astype("datetime64[us]")
    out["days_pushed"] = (out["to_close_at"] - out["from_close_at"]).dt.days
    return out[columns].sort_values(["seen_at", "opportunity_id"]).reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Pipeline waterfall
# ---------------------------------------------------------------------------------------------

WATERFALL_STEPS = {
    "open_start": "Open at start",
    "new": "New",
    "pulled_in": "Pulled in",
    "amount_changed": "Amount changes",
    "pushed_out": "Pushed out",
    "won": "Won",
    "lost": "Lost",
    "removed": "Removed from CRM",
    "open_end": "Open at end",
}
"""The waterfall's steps in order, with their labels."""


@dataclass(frozen=True)
class Waterfall:
    """A period's pipeline waterfall and the snapshots it compares.

    ``table``: one row per step (``WATERFALL_STEPS``) with ``step``, ``label``, ``deals`` and
    ``amount``, signed (outflows negative), so that every row but the last sums to the last, in
    deals and in amount (``deals`` of ``amount_changed`` is null: it moves no deal).
    ``deals``: one row per opportunity that took part, with its ``inflow`` and ``outflow``.
    """

    period: Period
    start: date
    end: date
    has_close_dates: bool
    table: pd.DataFrame
    deals: pd.DataFrame

    @property
    def is_partial(self) -> bool:
        """Whether the snapshots cover less than the period (history began late, or it runs)."""
        return self.start != self.period.start.date() or self.end != self.period.end.date()

    def value(self, step: str, field: str = "amount") -> float:
        return float(self.table.set_index("step").loc[step, field])


def pipeline_waterfall(
    history_dir: str | Path,
    period: str | Period,
    rep_ids=None,
) -> Waterfall | None:
    """Open pipeline at the start of ``period``, what came in and went out, open at the end.

    The pipeline of a period is the open deals expected to close before the period ends
    (``expected_close_at`` before the end, or no expected date; overdue deals stay in). Without
    expected close dates in the snapshots it is every open deal. It is compared between two
    snapshots: the start (the snapshot of the period's first day, else the latest before it,
    else the first within the period) and the end (the snapshot of the day after the period,
    else the latest before that). Each deal is valued at its amount in the end snapshot (the
    start row and removed deals at their start amount); null amounts count as 0.

    Steps (each deal in at most one inflow and one outflow):

    - ``open_start``: in the pipeline at the start.
    - ``new``: not in the start snapshot; in the pipeline at the end, or closed by then.
    - ``pulled_in``: in the start snapshot but not in the pipeline (expected after the period,
      or closed and reopened); in the pipeline at the end, or won by then (won early).
    - ``amount_changed``: end amount minus start amount of the deals in both snapshots that
      were in the pipeline at the start.
    - ``pushed_out``: in the pipeline at the start, open at the end but expected after the period.
    - ``won`` / ``lost``: closed between the two snapshots, having been in the pipeline at the
      start or come in (a deal lost while expected after the period never was in it).
    - ``removed``: in the pipeline at the start, gone from the CRM at the end.
    - ``open_end``: in the pipeline at the end.

    Parameters
    ----------
    period
        ``'2026-10'`` compares the snapshots of 2026-10-01 and 2026-11-01.
    rep_ids
        Keep deals owned by these reps (owner at the end, else at the start): a team's or a
        rep's waterfall. Default: the company.

    Returns
    -------
    Waterfall or None
        None when fewer than two snapshots fall around the period.

    Example
    -------
    >>> pipeline_waterfall("history", "2026-10").table        # doctest: +SKIP
               step           label  deals     amount
    0    open_start   Open at start     12   480000.0
    ...
    """
    p = Period.parse(period) if isinstance(period, str) else period
    picked = _waterfall_snapshots(snapshot_dates(history_dir), p)
    if picked is None:
        return None
    start, end = picked
    a, b = read_snapshot(history_dir, start), read_snapshot(history_dir, end)
    has_dates = EXPECTED_CLOSE in a and EXPECTED_CLOSE in b
    d = _deal_states(a, b, p.end, has_dates)
    if rep_ids is not None:
        d = d[d["owner_rep_id"].isin([str(r) for r in rep_ids])]
    d = _classify(d)
    table = _waterfall_table(d)
    deals = d[d["inflow"].notna() | d["outflow"].notna() | d["pipe_a"]].reset_index()
    deals = deals[["opportunity_id", "owner_rep_id", "inflow", "outflow", "amount_a", "amount_b"]]
    return Waterfall(p, start, end, has_dates, table, deals)


def _waterfall_snapshots(days: list[date], p: Period) -> tuple[date, date] | None:
    first, after = p.start.date(), p.end.date()
    before = [d for d in days if d <= first]
    within = [d for d in days if first < d < after]
    start = before[-1] if before else (within[0] if within else None)
    ends = [d for d in days if d <= after]
    if start is None or not ends or ends[-1] <= start:
        return None
    return start, ends[-1]


def _deal_states(a: pd.DataFrame, b: pd.DataFrame, cutoff: pd.Timestamp, has_dates: bool):
    """One row per deal in either snapshot: its state in each (suffix ``_a`` start, ``_b`` end)."""
    keep = ["owner_rep_id", "is_closed", "is_won", "amount"] + (
        [EXPECTED_CLOSE] if has_dates else []
    )
    d = a.set_index("opportunity_id")[keep].join(
        b.set_index("opportunity_id")[keep], how="outer", suffixes=("_a", "_b")
    )
    d["in_a"] = d.index.isin(a["opportunity_id"])
    d["in_b"] = d.index.isin(b["opportunity_id"])
    for s in ("a", "b"):
        present = d[f"in_{s}"]
        d[f"open_{s}"] = present & ~d[f"is_closed_{s}"].fillna(False).astype(bool)
        d[f"closed_{s}"] = present & d[f"is_closed_{s}"].fillna(False).astype(bool)
        d[f"amount_{s}"] = d[f"amount_{s}"].fillna(0.0)
        expected = d[f"{EXPECTED_CLOSE}_{s}"] if has_dates else None
        in_period = True if expected is None else (expected.isna() | (expected < cutoff))
        d[f"pipe_{s}"] = d[f"open_{s}"] & in_period
    d["won_b"] = d["closed_b"] & d["is_won_b"].fillna(False).astype(bool)
    d["owner_rep_id"] = d["owner_rep_id_b"].fillna(d["owner_rep_id_a"]).astype("string")
    return d


def _classify(d: pd.DataFrame) -> pd.DataFrame:
    """Each deal's inflow (new, pulled_in) and outflow (pushed_out, won, lost, removed)."""
    d = d.copy()
    s = d["pipe_a"]
    closed_since = d["closed_b"] & ~d["closed_a"]
    comes_in = ~s & (d["pipe_b"] | (closed_since & (~d["in_a"] | d["won_b"])))
    d["inflow"] = pd.Series(pd.NA, index=d.index, dtype="string")
    d.loc[comes_in & ~d["in_a"], "inflow"] = "new"
    d.loc[comes_in & d["in_a"], "inflow"] = "pulled_in"
    counted = s | comes_in
    d["outflow"] = pd.Series(pd.NA, index=d.index, dtype="string")
    d.loc[counted & closed_since & d["won_b"], "outflow"] = "won"
    d.loc[counted & closed_since & ~d["won_b"], "outflow"] = "lost"
    d.loc[s & d["open_b"] & ~d["pipe_b"], "outflow"] = "pushed_out"
    d.loc[s & ~d["in_b"], "outflow"] = "removed"
    d["amount_changed"] = (d["amount_b"] - d["amount_a"]).where(s & d["in_b"], 0.0)
    return d


def _waterfall_table(d: pd.DataFrame) -> pd.DataFrame:
    rows = [("open_start", int(d["pipe_a"].sum()), float(d.loc[d["pipe_a"], "amount_a"].sum()))]
    for step in ("new", "pulled_in"):
        hit = d["inflow"] == step
        rows.append((step, int(hit.sum()), float(d.loc[hit, "amount_b"].sum())))
    rows.append(("amount_changed", None, float(d["amount_changed"].sum())))
    for step in ("pushed_out", "won", "lost", "removed"):
        hit = d["outflow"] == step
        value = d.loc[hit, "amount_a" if step == "removed" else "amount_b"].sum()
        rows.append((step, -int(hit.sum()), -float(value)))
    rows.append(("open_end", int(d["pipe_b"].sum()), float(d.loc[d["pipe_b"], "amount_b"].sum())))
    table = pd.DataFrame(rows, columns=["step", "deals", "amount"])
    table.insert(1, "label", table["step"].map(WATERFALL_STEPS))
    table["deals"] = table["deals"].astype("Int64")
    table["amount"] = table["amount"].astype("float64") + 0.0  # no negative zeros
    return table


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _as_day(value) -> date:
    if value is None or isinstance(value, str):
        return today(value)
    if isinstance(value, pd.Timestamp):
        return value.date()
    if isinstance(value, date):
        return value
    raise SourceError(f"a snapshot date must be YYYY-MM-DD, got {value!r}")


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    out = pd.DataFrame(index=range(len(df)))
    for column in [c for c in SNAPSHOT_COLUMNS if c in df.columns]:
        values = df[column].reset_index(drop=True)
        kind = SNAPSHOT_COLUMNS[column]
        if kind == "bool":
            values = values.fillna(False).astype(bool)
        elif kind.startswith("datetime"):
            values = pd.to_datetime(values, format="ISO8601").astype(kind)
        else:
            values = values.astype(kind)
        out[column] = values
    return out.sort_values("opportunity_id", kind="stable").reset_index(drop=True)


def _typed_history(df: pd.DataFrame) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "opportunity_id": df["opportunity_id"].astype("string"),
            "stage": df["stage"].astype("string"),
            "entered_at": pd.to_datetime(df["entered_at"]).astype("datetime64[us]"),
        }
    ).reset_index(drop=True)


def _between(at: pd.Series, low: pd.Timestamp, high: pd.Timestamp) -> pd.Series:
    return at.astype("datetime64[us]").clip(lower=low, upper=high).fillna(high)


def _history_rows(snap: pd.DataFrame, at: pd.Series) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "opportunity_id": snap.index,
            "stage": snap["stage"].to_numpy(),
            "entered_at": at.to_numpy(),
        }
    )

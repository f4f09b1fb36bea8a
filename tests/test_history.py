"""History from snapshots: derived stage history, close-date pushes, the pipeline waterfall.

The changing CRM below is snapshotted on four days around October 2026 (all deals owned by r1,
team east, except d7 owned by r3, team west):

=====  ======================================  ===========================================
deal   on 2026-10-01                           what happens
=====  ======================================  ===========================================
d1     Discovery, 100, expected Oct 20         Proposal by Oct 15; 120, expected Oct 28 by Nov 1
d2     Proposal, 200, expected Oct 25          pushed: expected Dec 10 by Oct 15
d3     Negotiation, 300, expected Oct 10       won on Oct 12 (seen Oct 15)
d4     Discovery, 50, expected Oct 30          lost on Oct 20 (seen Oct 22)
d5     -                                       created Oct 5 in Prospecting, 80, expected Oct 31;
                                               Discovery by Oct 22
d6     Demo, 500, expected Dec 15              pulled in: expected Oct 29 by Oct 15
d7     Discovery, 70, expected Jan 15 2027     nothing (r3)
d8     Closed Won on Sep 20, 40                nothing
d9     Proposal, 90, expected Dec 1            lost on Oct 20 while expected after October
=====  ======================================  ===========================================

Snapshots: 2026-10-01, 2026-10-15, 2026-10-22, 2026-11-01.
"""

from __future__ import annotations

from datetime import date

import pandas as pd
import pytest
from test_duckdb_source import to_duckdb

import kpi_lib
from kpi_lib.cli import main
from kpi_lib.data import history
from kpi_lib.data.history import (
    close_date_pushes,
    derived_stage_history,
    history_coverage,
    pipeline_waterfall,
    read_snapshot,
    snapshot_dates,
    take_snapshot,
    with_derived_history,
    write_snapshot,
)

TEAMS = pd.DataFrame({"team_id": ["east", "west"], "team_name": ["East", "West"]})
REPS = pd.DataFrame(
    {"rep_id": ["r1", "r3"], "rep_name": ["Ann", "Cy"], "team_id": ["east", "west"]}
)


def deal(
    opp, stage, amount, expected=None, *, created="2026-09-01", closed=None, won=False, owner="r1"
):
    return {
        "opportunity_id": opp,
        "owner_rep_id": owner,
        "created_at": created,
        "stage": stage,
        "is_closed": closed is not None,
        "is_won": won,
        "closed_at": closed,
        "amount": amount,
        "expected_close_at": expected,
    }


def day_oct01():
    return [
        deal("d1", "Discovery", 100, "2026-10-20"),
        deal("d2", "Proposal", 200, "2026-10-25"),
        deal("d3", "Negotiation", 300, "2026-10-10"),
        deal("d4", "Discovery", 50, "2026-10-30"),
        deal("d6", "Demo", 500, "2026-12-15"),
        deal("d7", "Discovery", 70, "2027-01-15", owner="r3"),
        deal("d8", "Closed Won", 40, closed="2026-09-20", won=True),
        deal("d9", "Proposal", 90, "2026-12-01"),
    ]


def day_oct15():
    return [
        deal("d1", "Proposal", 100, "2026-10-20"),
        deal("d2", "Proposal", 200, "2026-12-10"),
        deal("d3", "Closed Won", 300, closed="2026-10-12", won=True),
        deal("d4", "Discovery", 50, "2026-10-30"),
        deal("d5", "Prospecting", 80, "2026-10-31", created="2026-10-05"),
        deal("d6", "Demo", 500, "2026-10-29"),
        deal("d7", "Discovery", 70, "2027-01-15", owner="r3"),
        deal("d8", "Closed Won", 40, closed="2026-09-20", won=True),
        deal("d9", "Proposal", 90, "2026-12-01"),
    ]


def day_oct22():
    return [
        deal("d1", "Proposal", 100, "2026-10-20"),
        deal("d2", "Proposal", 200, "2026-12-10"),
        deal("d3", "Closed Won", 300, closed="2026-10-12", won=True),
        deal("d4", "Closed Lost", 50, closed="2026-10-20"),
        deal("d5", "Discovery", 80, "2026-10-31", created="2026-10-05"),
        deal("d6", "Demo", 500, "2026-10-29"),
        deal("d7", "Discovery", 70, "2027-01-15", owner="r3"),
        deal("d8", "Closed Won", 40, closed="2026-09-20", won=True),
        deal("d9", "Closed Lost", 90, closed="2026-10-20"),
    ]


def day_nov01():
    rows = day_oct22()
    rows[0] = deal("d1", "Proposal", 120, "2026-10-28")
    return rows


DAYS = {
    "2026-10-01": day_oct01,
    "2026-10-15": day_oct15,
    "2026-10-22": day_oct22,
    "2026-11-01": day_nov01,
}


def crm(rows) -> pd.DataFrame:
    """The canonical opportunities of one day, as a source carrying expected_close_at gives."""
    return pd.DataFrame(rows)


@pytest.fixture
def snapshots(tmp_path):
    for day, rows in DAYS.items():
        write_snapshot(crm(rows()), tmp_path, day)
    return tmp_path


def source_of(rows) -> dict[str, pd.DataFrame]:
    opps = crm(rows).drop(columns="expected_close_at")
    return {"teams": TEAMS, "reps": REPS, "opportunities": opps}


# ---- snapshots -----------------------------------------------------------------------------


def test_snapshot_is_one_zstd_parquet_file_per_day(snapshots):
    files = sorted(p.name for p in (snapshots / "opportunities").iterdir())
    assert files == [f"{d}.parquet" for d in DAYS]
    import pyarrow.parquet as pq

    meta = pq.ParquetFile(snapshots / "opportunities" / "2026-10-01.parquet").metadata
    assert meta.row_group(0).column(0).compression == "ZSTD"


def test_snapshot_round_trips_the_opportunities_with_types(snapshots):
    snap = read_snapshot(snapshots, "2026-10-15")
    assert list(snap["opportunity_id"]) == ["d1", "d2", "d3", "d4", "d5", "d6", "d7", "d8", "d9"]
    d2 = snap.set_index("opportunity_id").loc["d2"]
    assert d2["expected_close_at"] == pd.Timestamp("2026-12-10")
    assert snap["is_closed"].dtype == bool and snap["amount"].dtype == "float64"


def test_second_snapshot_on_the_same_day_with_same_data_leaves_the_file_untouched(tmp_path):
    first = write_snapshot(crm(day_oct01()), tmp_path, "2026-10-01")
    before = first.path.read_bytes()
    mtime = first.path.stat().st_mtime_ns
    again = write_snapshot(crm(list(reversed(day_oct01()))), tmp_path, "2026-10-01")
    assert first.changed and not again.changed
    assert again.path == first.path and again.path.read_bytes() == before
    assert again.path.stat().st_mtime_ns == mtime
    assert [p.name for p in (tmp_path / "opportunities").iterdir()] == ["2026-10-01.parquet"]


def test_later_run_on_the_same_day_replaces_that_day_and_leaves_no_temp_files(tmp_path):
    write_snapshot(crm(day_oct01()), tmp_path, "2026-10-01")
    result = write_snapshot(crm(day_oct15()), tmp_path, "2026-10-01")
    assert result.changed and result.rows == 9
    assert [p.name for p in (tmp_path / "opportunities").iterdir()] == ["2026-10-01.parquet"]
    assert len(read_snapshot(tmp_path, "2026-10-01")) == 9


def test_compressed_snapshot_is_smaller_than_the_same_rows_as_csv(tmp_path):
    stages = ["Prospecting", "Discovery", "Demo", "Proposal", "Negotiation"]
    rows = [
        deal(
            f"OPP-{i:05d}",
            stages[i % 5],
            1000.0 + (i * 37) % 5000,
            f"2026-{1 + i % 12:02d}-{1 + i % 28:02d}",
            created=f"2025-{1 + i % 12:02d}-15",
            owner=f"r{i % 3}",
        )
        for i in range(2000)
    ]
    df = crm(rows)
    result = write_snapshot(df, tmp_path, "2026-10-01")
    csv_bytes = len(df.to_csv(index=False).encode())
    parquet_bytes = result.path.stat().st_size
    assert parquet_bytes < csv_bytes / 2, (parquet_bytes, csv_bytes)


def test_take_snapshot_reads_the_source_and_dates_the_file(tmp_path):
    result = take_snapshot(source_of(day_oct01()), tmp_path, today="2026-10-01")
    assert result.path == tmp_path / "opportunities" / "2026-10-01.parquet"
    assert result.rows == 8 and result.skipped is None
    assert snapshot_dates(tmp_path) == [date(2026, 10, 1)]


def test_source_with_its_own_stage_history_is_not_snapshotted_and_keeps_its_history(snapshots):
    real = pd.DataFrame(
        {
            "opportunity_id": ["d1", "d1"],
            "stage": ["Discovery", "Proposal"],
            "entered_at": ["2026-09-01", "2026-09-20"],
        }
    )
    src = kpi_lib.load_source({**source_of(day_nov01()), "stage_history": real})
    result = take_snapshot(src, snapshots, today="2026-11-02")
    assert result.path is None and "own stage history" in result.skipped
    assert date(2026, 11, 2) not in snapshot_dates(snapshots)
    kept = with_derived_history(src, snapshots)
    assert kept is src
    assert list(kept.frame("stage_history")["entered_at"].dt.day) == [1, 20]


# ---- derived stage history -----------------------------------------------------------------


def test_derived_stage_history_has_a_row_per_stage_change_between_snapshots(snapshots):
    got = derived_stage_history(snapshots)
    expected = pd.DataFrame(
        [
            ("d1", "Proposal", "2026-10-15"),  # first seen in Proposal on Oct 15
            ("d3", "Closed Won", "2026-10-12"),  # closing: its closed_at
            ("d4", "Closed Lost", "2026-10-20"),
            ("d5", "Prospecting", "2026-10-05"),  # created between snapshots: its created_at
            ("d5", "Discovery", "2026-10-22"),
            ("d9", "Closed Lost", "2026-10-20"),
        ],
        columns=["opportunity_id", "stage", "entered_at"],
    )
    assert got.astype(str).values.tolist() == expected.values.tolist()


@pytest.mark.parametrize("kind", ["frames", "duckdb file"])
def test_derived_history_gives_time_in_stage_to_a_source_without_stage_history(
    snapshots, tmp_path, kind
):
    tables = source_of(day_nov01())
    if kind == "duckdb file":
        tables = to_duckdb(None, tmp_path / "crm.duckdb", tables)
    src = kpi_lib.load_source(tables)
    assert not src.has("stage_history")
    enriched = with_derived_history(src, snapshots)
    cube = kpi_lib.compute_cube(enriched, "2026-10", as_of="2026-11-01", targets=None)
    at = cube.set_index(["scope", "scope_id", "kpi"])["value"]
    # d5 sat in Prospecting from Oct 5 (created) to Oct 22 (first seen in Discovery): 17 days.
    assert at[("company", "all", "time_in_stage_days:Prospecting")] == pytest.approx(17.0)
    assert at[("company", "all", "stage_conversion:Prospecting")] == pytest.approx(1.0)
    plain = kpi_lib.compute_cube(src, "2026-10", as_of="2026-11-01", targets=None)
    assert not plain["kpi"].str.startswith("time_in_stage_days").any()


def test_derived_history_needs_two_snapshots(tmp_path):
    write_snapshot(crm(day_oct01()), tmp_path, "2026-10-01")
    src = kpi_lib.load_source(source_of(day_oct01()))
    assert derived_stage_history(tmp_path).empty
    assert with_derived_history(src, tmp_path) is src


# ---- close-date pushes ---------------------------------------------------------------------


def test_close_date_pushes_lists_every_move_later_of_an_open_deal(snapshots):
    pushes = close_date_pushes(snapshots)
    assert pushes[["opportunity_id", "days_pushed"]].values.tolist() == [["d2", 46], ["d1", 8]]
    assert list(pushes["seen_at"].dt.strftime("%m-%d")) == ["10-15", "11-01"]


def test_pushes_out_of_a_period_keep_only_dates_moved_past_its_end(snapshots):
    pushes = close_date_pushes(snapshots, "2026-10")
    assert pushes["opportunity_id"].tolist() == ["d2"]  # d1 moved within October
    row = pushes.iloc[0]
    assert (row["from_close_at"], row["to_close_at"]) == (
        pd.Timestamp("2026-10-25"),
        pd.Timestamp("2026-12-10"),
    )
    assert row["amount"] == 200


def test_no_pushes_without_expected_close_dates(tmp_path):
    for day, rows in DAYS.items():
        write_snapshot(crm(rows()).drop(columns="expected_close_at"), tmp_path, day)
    assert close_date_pushes(tmp_path).empty


# ---- pipeline waterfall --------------------------------------------------------------------

# Start (Oct 1): d1 100 + d2 200 + d3 300 + d4 50 = 650 (d6, d7, d9 expected after October).
# + new d5 80, + pulled in d6 500, + d1 100 -> 120 = 20, - pushed d2 200, - won d3 300,
# - lost d4 50 (d9 was lost while expected in December: never in October's pipeline),
# = end (Nov 1): d1 120 + d5 80 + d6 500 = 700, 3 deals.
WATERFALL_2026_10 = [
    ("open_start", 4, 650.0),
    ("new", 1, 80.0),
    ("pulled_in", 1, 500.0),
    ("amount_changed", None, 20.0),
    ("pushed_out", -1, -200.0),
    ("won", -1, -300.0),
    ("lost", -1, -50.0),
    ("removed", 0, 0.0),
    ("open_end", 3, 700.0),
]


def rows_of(w):
    return [
        (s, None if pd.isna(n) else int(n), a)
        for s, n, a in w.table[["step", "deals", "amount"]].itertuples(index=False)
    ]


def test_waterfall_of_the_month_computed_by_hand(snapshots):
    w = pipeline_waterfall(snapshots, "2026-10")
    assert (w.start, w.end) == (date(2026, 10, 1), date(2026, 11, 1))
    assert w.has_close_dates and not w.is_partial
    assert rows_of(w) == WATERFALL_2026_10
    flows = w.deals.set_index("opportunity_id")
    assert flows.loc["d6", "inflow"] == "pulled_in" and flows.loc["d2", "outflow"] == "pushed_out"
    assert "d9" not in flows.index and "d7" not in flows.index


def test_waterfall_steps_add_up_to_the_open_pipeline_at_the_end(snapshots):
    table = pipeline_waterfall(snapshots, "2026-10").table.set_index("step")
    flows = table.drop(index="open_end")
    assert flows["amount"].sum() == table.loc["open_end", "amount"]
    assert flows["deals"].sum() == table.loc["open_end", "deals"]


def test_waterfall_of_a_rep_keeps_only_their_deals(snapshots):
    w = pipeline_waterfall(snapshots, "2026-10", rep_ids=["r3"])
    assert w.value("open_start") == 0 and w.value("open_end") == 0  # d7 expected in 2027
    r1 = pipeline_waterfall(snapshots, "2026-10", rep_ids=["r1"])
    assert rows_of(r1) == WATERFALL_2026_10


def test_deal_deleted_from_the_crm_is_removed_at_its_start_amount(tmp_path):
    write_snapshot(crm(day_oct01()), tmp_path, "2026-10-01")
    write_snapshot(
        crm([r for r in day_oct01() if r["opportunity_id"] != "d2"]), tmp_path, "2026-11-01"
    )
    w = pipeline_waterfall(tmp_path, "2026-10")
    assert (w.value("removed", "deals"), w.value("removed")) == (-1, -200.0)
    assert w.value("open_end") == 650.0 - 200.0


def test_waterfall_without_expected_close_dates_is_the_whole_open_pipeline(tmp_path):
    for day, rows in DAYS.items():
        write_snapshot(crm(rows()).drop(columns="expected_close_at"), tmp_path, day)
    w = pipeline_waterfall(tmp_path, "2026-10")
    assert not w.has_close_dates
    # Start: every open deal, d1 d2 d3 d4 d6 d7 d9 = 100+200+300+50+500+70+90 = 1310.
    # Lost now includes d9 (90); end: d1 120, d2 200, d5 80, d6 500, d7 70 = 970.
    assert rows_of(w) == [
        ("open_start", 7, 1310.0),
        ("new", 1, 80.0),
        ("pulled_in", 0, 0.0),
        ("amount_changed", None, 20.0),
        ("pushed_out", 0, 0.0),
        ("won", -1, -300.0),
        ("lost", -2, -140.0),
        ("removed", 0, 0.0),
        ("open_end", 5, 970.0),
    ]


def test_waterfall_runs_to_the_latest_snapshot_while_the_period_runs(snapshots):
    w = pipeline_waterfall(snapshots, "2026-11")
    assert w is None  # only the Nov 1 snapshot lies in or before November
    mtd = pipeline_waterfall(snapshots, "2026-Q4")
    assert (mtd.start, mtd.end, mtd.is_partial) == (date(2026, 10, 1), date(2026, 11, 1), True)


def test_waterfall_is_none_before_two_snapshots_exist(tmp_path):
    assert pipeline_waterfall(tmp_path, "2026-10") is None
    write_snapshot(crm(day_oct01()), tmp_path, "2026-10-01")
    assert pipeline_waterfall(tmp_path, "2026-10") is None


# ---- coverage ------------------------------------------------------------------------------


def test_coverage_says_how_far_back_history_reaches_and_its_gaps(snapshots):
    c = history_coverage(snapshots)
    assert (c.first, c.last, c.snapshots) == (date(2026, 10, 1), date(2026, 11, 1), 4)
    assert c.gaps[0] == (date(2026, 10, 1), date(2026, 10, 15))
    assert c.missing_days == 13 + 6 + 9
    assert c.text().startswith("history since 2026-10-01 (4 snapshots)")
    weekly = history_coverage(snapshots, cadence_days=14)
    assert [g[0] for g in weekly.gaps] == []
    assert history_coverage(snapshots / "nowhere").text() == "no history snapshots yet"


# ---- CLI -----------------------------------------------------------------------------------


def test_snapshot_command_writes_the_days_file(tmp_path, capsys):
    folder = tmp_path / "crm"
    folder.mkdir()
    for name, df in source_of(day_oct15()).items():
        df.to_csv(folder / f"{name}.csv", index=False)
    hist = tmp_path / "history"
    assert (
        main(["snapshot", "--source", str(folder), "--history", str(hist), "--today", "2026-10-15"])
        == 0
    )
    assert (
        main(["snapshot", "--source", str(folder), "--history", str(hist), "--today", "2026-10-15"])
        == 0
    )
    err = capsys.readouterr().err
    assert "wrote" in err and "unchanged" in err and "history since 2026-10-15 (1 snapshot)" in err
    assert snapshot_dates(hist) == [date(2026, 10, 15)]


def test_snapshot_command_rejects_a_bad_date_with_exit_code_2(tmp_path, capsys):
    code = main(["snapshot", "--source", str(tmp_path), "--today", "15/10/2026"])
    assert code == 2 and "not a date" in capsys.readouterr().err


# ---- the report's section ------------------------------------------------------------------


@pytest.fixture(scope="module")
def cube_nov01():
    src = kpi_lib.load_source(source_of(day_nov01()))
    return src, kpi_lib.compute_cube(src, "2026-10", as_of="2026-11-01", targets=None)


def report_for(cube_nov01, history_dir, scope="company", scope_id="all"):
    from types import SimpleNamespace

    from kpi_lib.periods import Period
    from kpi_lib.report import Report

    src, cube = cube_nov01
    ctx = SimpleNamespace(
        period=Period.parse("2026-10"),
        scope=scope,
        scope_id=scope_id,
        cube=cube,
        source=src,
        unavailable={},
        batch=SimpleNamespace(
            reps=REPS.assign(is_active=True), teams=TEAMS, history_dir=str(history_dir)
        ),
    )
    role = {"company": "executive", "team": "manager", "rep": "rep"}[scope]
    return Report(role, ctx, {"period": "2026-10", "scope_id": scope_id})


def cells(html: str) -> list[str]:
    import re

    return [re.sub(r"<[^>]+>", "", c) for c in re.findall(r"<td[^>]*>(.*?)</td>", html)]


def test_report_shows_the_waterfall_and_how_far_back_history_reaches(cube_nov01, snapshots):
    html = str(report_for(cube_nov01, snapshots).pipeline_waterfall())
    assert "History since 2026-10-01 (4 snapshots)" in html
    got = cells(html)
    assert got[:3] == ["Open at start", "4", "$650"]
    assert got[3:6] == ["New", "1", "+\u2009$80"]
    assert ["Pushed out", "1", "\u2212\u2009$200"] == got[12:15]
    assert got[-3:] == ["Open at end", "3", "$700"]


def test_team_report_waterfall_holds_the_teams_deals_only(cube_nov01, snapshots):
    west = cells(str(report_for(cube_nov01, snapshots, "team", "west").pipeline_waterfall()))
    assert west[:3] == ["Open at start", "0", "$0"] and west[-3:] == ["Open at end", "0", "$0"]
    east = cells(str(report_for(cube_nov01, snapshots, "team", "east").pipeline_waterfall()))
    assert east[-3:] == ["Open at end", "3", "$700"]


def test_report_shows_nothing_without_snapshots(cube_nov01, tmp_path):
    assert str(report_for(cube_nov01, tmp_path).pipeline_waterfall()) == ""


# ---- the demo CRM, replayed day by day -----------------------------------------------------


@pytest.fixture(scope="module")
def demo():
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "data" / "demo.duckdb"
    if not path.exists():
        from kpi_lib.data.demo import write_demo_data

        write_demo_data(path)
    return kpi_lib.load_source(path)


def demo_state(src, day) -> pd.DataFrame:
    """The demo's opportunities as a CRM showed them at the start of ``day`` (its own history
    tells which stage each deal was in; deals closed later were still open)."""
    at = pd.Timestamp(day)
    o = src.frame("opportunities")
    sh = src.frame("stage_history")
    state = o[o["created_at"] < at].copy()
    stage = sh[sh["entered_at"] < at].sort_values("entered_at").groupby("opportunity_id")["stage"]
    state["stage"] = state["opportunity_id"].map(stage.last()).fillna(state["stage"])
    later = ~(state["is_closed"] & (state["closed_at"] < at))
    state.loc[later, ["is_closed", "is_won"]] = False
    state.loc[later, "closed_at"] = pd.NaT
    state["expected_close_at"] = pd.NaT  # replayed as a CRM without expected close dates
    return state


def test_waterfall_of_the_replayed_demo_crm_agrees_with_the_cube(demo, tmp_path):
    for day in ["2026-02-15", "2026-03-01", "2026-03-10", "2026-03-20", "2026-04-01"]:
        write_snapshot(demo_state(demo, day), tmp_path, day)
    w = pipeline_waterfall(tmp_path, "2026-03")
    cube = kpi_lib.compute_cube(demo, "2026-03", as_of="2026-04-30", targets=None)
    kpi = cube[cube["scope"] == "company"].set_index("kpi")["value"]
    # Without expected close dates the pipeline is every open deal: nothing pushed or pulled in.
    assert w.value("open_start", "deals") == kpi["open_at_start"]
    assert w.value("new", "deals") == kpi["opportunities_created"]
    assert -w.value("won", "deals") == kpi["deals_won"]
    assert -w.value("won") == pytest.approx(kpi["revenue"])
    assert w.value("open_end") == pytest.approx(kpi["pipeline_amount"])
    assert w.value("pushed_out", "deals") == w.value("pulled_in", "deals") == 0


def test_daily_snapshots_give_back_the_demos_time_in_stage_within_a_day(demo, tmp_path):
    for day in pd.date_range("2026-01-15", "2026-04-01"):
        write_snapshot(demo_state(demo, day), tmp_path, day)
    plain = kpi_lib.load_source({k: v for k, v in demo.frames.items() if k != "stage_history"})
    derived = with_derived_history(plain, tmp_path)
    assert derived.has("stage_history") and not plain.has("stage_history")

    def stage_kpis(src):
        cube = kpi_lib.compute_cube(src, "2026-03", as_of="2026-04-01", targets=None)
        company = cube[(cube["scope"] == "company") & cube["kpi"].str.contains(":")]
        return company.set_index("kpi")["value"]

    real, rebuilt = stage_kpis(demo), stage_kpis(derived)
    assert set(real.index) == set(rebuilt.index) and len(real) >= 8
    days = [k for k in real.index if k.startswith("time_in_stage_days:")]
    assert (rebuilt[days] - real[days]).abs().max() < 1.0
    rates = [k for k in real.index if k.startswith("stage_conversion:")]
    # Daily snapshots cannot see a stage a deal passed through within a day: its visit is
    # missing from the rebuilt history, so conversion rates differ by a few points.
    assert (rebuilt[rates] - real[rates]).abs().max() < 0.05


def test_load_with_history_snapshots_the_run_and_derives_stage_history(tmp_path):
    for day in ["2026-10-01", "2026-10-15", "2026-10-22"]:
        take_snapshot(source_of(DAYS[day]()), tmp_path, today=day)
    src = history.load_with_history(source_of(day_nov01()), tmp_path, today="2026-11-01")
    assert snapshot_dates(tmp_path)[-1] == date(2026, 11, 1)
    assert src.has("stage_history") and len(src.frame("stage_history")) == 6
    plain = history.load_with_history(source_of(day_nov01()), None)
    assert not plain.has("stage_history")

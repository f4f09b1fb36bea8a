"""Reports of a month still in progress: said so, compared fairly, projected, marked on charts.

The tiny CRM: October 2026 seen with data through the 14th (14 of 31 days).

- October 1-14: Ann won 100 (5 Oct), Bob won 300 (10 Oct) and lost 50 (12 Oct);
  Cy's 1,000 win on 20 Oct is after the data ends.
- September 1-14: Ann won 200 (8 Sep), Bob lost 40 (10 Sep); Ann's 500 win on 20 Sep falls
  outside the same days.

So company revenue to date is 400 against 200 on the same days of September (+100%), where
the whole of September (700) would have said -43%. The run rate to 31 October is
400 x 31 / 14 = 885.71 ($886), 111% of the 800 target, where 400 alone is 50% of it.
The win rate is 2 of 3 (66.7%) against 1 of 2 (50%): +16.7 pts.
"""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import lost, source, won

import kpi_lib
from kpi_lib.periods import Period
from kpi_lib.report import Report, kpi_tile, sparkline_svg
from kpi_lib.report.in_progress import partial_period

TEAMS = [{"team_id": "east", "team_name": "East"}, {"team_id": "west", "team_name": "West"}]
REPS = [
    {"rep_id": "r1", "rep_name": "Ann", "team_id": "east"},
    {"rep_id": "r2", "rep_name": "Bob", "team_id": "east"},
    {"rep_id": "r3", "rep_name": "Cy", "team_id": "west"},
]
OPPS = [
    won("o1", "2026-10-05", 100.0, "r1"),
    won("o2", "2026-10-10", 300.0, "r2"),
    lost("o3", "2026-10-12", 50.0, "r2"),
    won("o4", "2026-10-20", 1000.0, "r3"),
    won("o5", "2026-09-08", 200.0, "r1"),
    lost("o6", "2026-09-10", 40.0, "r2"),
    won("o7", "2026-09-20", 500.0, "r1"),
]
TARGETS = {"revenue": {"company": 800.0, "team": 500.0, "rep": 200.0}}
AS_OF = "2026-10-14"


def report_on(as_of: str, role="executive", scope="company", scope_id="all", name="Company"):
    src = source(OPPS, teams=TEAMS, reps=REPS)
    cube = kpi_lib.compute_cube(src, "2025-10:2026-10", as_of=as_of, targets=TARGETS)
    ctx = SimpleNamespace(
        period=Period.parse("2026-10"),
        scope=scope,
        scope_id=scope_id,
        scope_name=name,
        team_id="east" if scope == "rep" else None,
        cube=cube,
        source=src,
        unavailable=cube.attrs["unavailable"],
        findings=[],
        fingerprint="abc123",
        code_version="0.1.0",
        as_of=as_of,
        generated_at="2026-10-15T06:00:00",
        batch=SimpleNamespace(
            reps=pd.DataFrame(REPS).assign(is_active=True),
            teams=pd.DataFrame(TEAMS),
            targets=TARGETS,
        ),
    )
    params = {
        "period": "2026-10",
        "scope_id": scope_id,
        "source": "<frames>",
        "batch_dir": "",
        "targets": "",
    }
    return Report(role, ctx, params)


@pytest.fixture(scope="module")
def mtd_report() -> Report:
    return report_on(AS_OF)


def tile(html: str, kpi: str) -> str:
    match = re.search(rf'<div class="kr-tile [^"]*" data-kpi="{kpi}">.*?</svg></div>', html, re.S)
    assert match, f"no tile for {kpi}"
    return match.group(0)


# ---- the partial window -------------------------------------------------------------------


def test_a_month_with_data_through_its_last_day_is_not_partial():
    assert partial_period(Period.parse("2026-10"), "2026-10-31") is None
    assert partial_period(Period.parse("2026-10"), "2026-11-27") is None
    assert partial_period(Period.parse("2026-10"), None) is None


def test_partial_window_counts_the_days_so_far_and_names_the_same_days_a_month_ago():
    p = partial_period(Period.parse("2026-03"), "2026-03-31", comparison=False)
    assert p is None  # the 31st is March's last day
    p = partial_period(Period.parse("2026-03"), "2026-03-30", comparison=False)
    assert (p.days_elapsed, p.days_in_period, p.days_left) == (30, 31, 1)
    assert p.window == "1-30 Mar" and p.previous_window == "1-28 Feb"  # capped at Feb's end
    assert p.end_label == "31 Mar"


# ---- the report ---------------------------------------------------------------------------


def test_header_says_the_month_is_to_date_with_its_days(mtd_report):
    html = str(mtd_report.header())
    assert "October 2026 to date: 1-14 Oct, 14 of 31 days" in html
    assert "vs the same days of Sep 26 (1-14 Sep)" in html


def test_header_of_a_complete_month_says_nothing_of_to_date():
    html = str(report_on("2026-11-27").header())
    assert "to date" not in html and "kr-partial" not in html.split("</style>")[1]


def test_revenue_tile_compares_with_the_same_days_and_judges_the_run_rate(mtd_report):
    html = tile(str(mtd_report.tiles()), "revenue")
    assert '<div class="kr-tile-value">$400</div>' in html
    assert "to date, 1-14 Oct" in html
    assert re.search(r'kr-delta kr-good"[^>]*>▲ \+100%</span> vs 1-14 Sep', html)  # 400 vs 200
    assert "On pace for <b>$886</b> by 31 Oct" in html  # 400 x 31 / 14
    assert "111%</span> of $800 target" in html and "kr-tile kr-good" in html
    assert "vs Oct 25" not in html and "vs Sep 26" not in html  # no full-month comparisons


def test_rate_tiles_compare_with_the_same_days_but_are_not_projected(mtd_report):
    html = tile(str(mtd_report.tiles()), "win_rate")
    assert ">66.7%<" in html and "2 of 3" in html
    assert re.search(r"▲ \+16.7 pts</span> vs 1-14 Sep", html)  # 2/3 - 1/2
    assert "On pace for" not in html


def test_tile_sparklines_draw_the_month_in_progress_dashed(mtd_report):
    html = tile(str(mtd_report.tiles()), "revenue")
    assert 'class="kr-partial-seg"' in html and "(last point: to date)" in html


def test_tiles_come_from_kpi_lib_mtd(mtd_report):
    table = kpi_lib.metrics.month_to_date.mtd_comparison(
        source(OPPS, teams=TEAMS, reps=REPS), AS_OF, targets=TARGETS
    ).set_index(["scope", "scope_id", "kpi"])
    revenue = table.loc[("company", "all", "revenue")]
    assert (revenue["value"], revenue["previous_same_days"]) == (400.0, 200.0)
    assert (
        mtd_report.partial.projection("company", "all", "revenue")
        == pytest.approx(revenue["projection"])
        == pytest.approx(400 * 31 / 14)
    )


def test_highlights_speak_of_the_month_to_date_and_its_pace(mtd_report):
    html = str(mtd_report.highlights())
    assert "booked <b>$400</b> in October 2026 to date (1-14 Oct)" in html
    assert "up 100% on the same days of September 2026 (1-14 Sep)" in html
    assert "on pace for <b>$886</b> by 31 Oct, 111% of the $800 target" in html
    assert "up 16.7 pts on the same days of September 2026" in html


def test_a_batch_with_its_mtd_csv_gives_the_same_tiles_without_loading_the_source(
    mtd_report, tmp_path
):
    from kpi_lib.metrics.month_to_date import mtd_comparison

    table = mtd_comparison(mtd_report.ctx.source, AS_OF, targets=TARGETS)
    table.to_csv(tmp_path / "mtd.csv", index=False)
    cached = report_on(AS_OF)
    cached.parameters["batch_dir"] = str(tmp_path)

    class WithoutSource(SimpleNamespace):
        @property
        def source(self):
            raise AssertionError("the report loaded the source")

    cached.ctx = WithoutSource(**{k: v for k, v in vars(cached.ctx).items() if k != "source"})
    assert tile(str(cached.tiles()), "revenue") == tile(str(mtd_report.tiles()), "revenue")


def test_rep_tile_projects_against_the_reps_full_month_target():
    html = tile(str(report_on(AS_OF, "rep", "rep", "r2", "Bob").tiles()), "revenue")
    # Bob: 300 by the 14th -> 300 x 31 / 14 = 664.29 against 200: 332%; nothing on 1-14 Sep
    assert "On pace for <b>$664</b> by 31 Oct" in html and "332%</span> of $200 target" in html
    assert "– vs 1-14 Sep" in html


def test_revenue_chart_notes_the_hatched_to_date_bar_and_the_run_rate(mtd_report):
    html = str(mtd_report.revenue_trend())
    assert "The hatched last bar is 1-14 Oct only (to date)" in html
    assert "dashed outline is the run rate to 31 Oct" in html


def test_deals_needed_counts_the_days_left(mtd_report):
    html = str(report_on(AS_OF, "manager", "team", "west", "West").deals_needed())
    # West: nothing won by the 14th, target 500; no won deal to size the gap
    assert "$500 short of the $500 target" in html
    html = str(report_on(AS_OF, "manager", "team", "east", "East").deals_needed())
    # East: 400 of 500, average won deal 200 -> 1 more deal, 17 days left
    assert "1 more deal" in html and "17 days of October 2026 left" in html


def test_leaderboard_ranks_reps_on_their_pace_to_month_end():
    html = str(report_on(AS_OF, "manager", "team", "east", "East").leaderboard())
    # Ann: 100 x 31 / 14 = 221.43 of 200 -> 111%; Bob: 664.29 of 200 -> 332%
    assert "On pace for (of target)" in html and "111%" in html and "332%" in html


# ---- building blocks ------------------------------------------------------------------------


def test_tile_without_projection_keeps_full_period_behaviour():
    html = kpi_tile("revenue", 400, target=800, previous=700, previous_label="Sep 26")
    assert "50%</span> of $800 target" in html and "On pace for" not in html


def test_sparkline_marks_only_a_partial_last_point():
    assert "kr-partial-seg" not in sparkline_svg([1, 2, 3])
    svg = sparkline_svg([1, 2, 3], partial_last=True)
    assert svg.count("kr-partial-seg") == 1 and 'fill="#fff"' in svg


# ---- a notebook on a month-to-date batch (slow) -----------------------------------------------


@pytest.mark.slow
def test_executive_notebook_on_a_month_to_date_batch(tmp_path):
    from test_notebooks import ROOT, assert_clean_run, displayed_html, execute, tile_values

    from kpi_lib.metrics.batch import prepare_batch

    demo = ROOT / "data" / "demo.duckdb"
    if not demo.exists():
        from kpi_lib.data.demo import write_demo_data

        write_demo_data(demo)
    folder = tmp_path / "2026-10" / "_data"
    prepare_batch(str(demo), Period.parse("2026-10"), out_dir=folder, as_of=AS_OF)
    nb = execute(
        "executive", tmp_path / "e.ipynb", cwd=ROOT, period="2026-10", batch_dir=str(folder)
    )
    assert_clean_run(nb)
    html = displayed_html(nb)
    assert "October 2026 to date: 1-14 Oct, 14 of 31 days" in html
    assert list(tile_values(html))[0] == "revenue"
    revenue = re.search(r'data-kpi="revenue">.*?</svg></div>', html, re.S).group(0)
    assert "vs 1-14 Sep" in revenue and "On pace for" in revenue and "vs Oct 25" not in revenue
    assert "The hatched last bar is 1-14 Oct only" in html
    assert Path(folder / "batch.json").is_file()

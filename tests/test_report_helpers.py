"""Presentation helpers: formats, colours by direction, tiles, sparklines, escaping, deals.

Fast tests on hand-made numbers and the tiny CRM of ``conftest``; the notebooks' end-to-end runs
live in ``test_notebooks.py`` and ``test_browser.py``.
"""

from __future__ import annotations

import dataclasses
import math
import re
from types import SimpleNamespace

import pandas as pd
import pytest
from conftest import lost, opp, source, won

import kpi_lib
from kpi_lib.errors import ParamsError
from kpi_lib.metrics import compare, deals
from kpi_lib.paths import project_path, resolve_source
from kpi_lib.periods import Period
from kpi_lib.report import (
    Report,
    esc,
    html_table,
    kpi_tile,
    open_report,
    period_ticks,
    sparkline_svg,
    theme,
)

NAN = math.nan


# ---- formats by registry unit ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "unit", "shown"),
    [
        (1_234_567, "currency", "$1.23M"),
        (500_000, "currency", "$500K"),
        (100_000, "currency", "$100K"),
        (84_500, "currency", "$84.5K"),
        (999_960, "currency", "$1M"),
        (950, "currency", "$950"),
        (-12_000, "currency", "-$12K"),
        (0.4234, "ratio", "42.3%"),
        (1.0, "ratio", "100.0%"),
        (4_680, "count", "4,680"),
        (12.26, "days", "12.3 days"),
        (92_772.49, "currency_per_day", "$92.8K/day"),
        (NAN, "currency", "n/a"),
        (None, "ratio", "n/a"),
    ],
)
def test_format_value_follows_the_registry_unit(value, unit, shown):
    assert theme.format_value(value, unit) == shown


def test_ratio_changes_are_percentage_points_and_others_relative():
    assert compare.change(0.31, 0.29, "ratio") == pytest.approx(0.02)
    assert theme.format_change(0.021, "ratio") == "+2.1 pts"
    assert compare.change(110, 100, "currency") == pytest.approx(0.10)
    assert theme.format_change(-0.08, "currency") == "-8.0%"
    assert math.isnan(compare.change(5, 0, "count"))  # from zero: n/a, never infinity


@pytest.mark.parametrize(
    ("delta", "higher_is_better", "status"),
    [
        (0.1, True, "good"),
        (-0.1, True, "bad"),
        (0.1, False, "bad"),
        (-0.1, False, "good"),
        (0.0, True, "neutral"),
        (NAN, True, "neutral"),
    ],
)
def test_change_colour_depends_on_whether_higher_is_better(delta, higher_is_better, status):
    assert theme.direction_status(delta, higher_is_better) == status


@pytest.mark.parametrize(
    ("value", "target", "higher_is_better", "status"),
    [
        (104, 100, True, "good"),
        (95, 100, True, "warn"),
        (80, 100, True, "bad"),
        (9_000, 10_000, False, "good"),  # CAC below target is on track
        (12_000, 10_000, False, "bad"),  # 10000/12000 = 83%
        (100, NAN, True, "neutral"),
    ],
)
def test_attainment_colour(value, target, higher_is_better, status):
    assert theme.attainment_status(compare.attainment(value, target, higher_is_better)) == status


def test_palette_is_okabe_ito():
    assert theme.PALETTE[0] == "#0072B2" and set(theme.PALETTE) <= set(theme.OKABE_ITO.values())


# ---- building blocks --------------------------------------------------------------------------


def test_tile_shows_value_target_attainment_and_changes_coloured_by_direction():
    html = kpi_tile(
        "cac",
        12_000,
        target=10_000,
        previous=10_000,
        year_ago=15_000,
        previous_label="Sep 26",
        year_ago_label="Oct 25",
        history=[1, 2, 3],
    )
    assert 'data-kpi="cac"' in html and "$12K" in html
    # the tile is titled with its KPI's label, not with a period it compares with
    assert re.search(r'class="kr-tile-label"[^>]*>Customer acquisition cost</div>', html)
    assert "83%</span> of $10K target" in html and "kr-tile kr-bad" in html
    # CAC went up 20% on September: bad; down 20% on a year ago: good
    assert re.search(r'kr-delta kr-bad"[^>]*>▲ \+20%</span> vs Sep 26', html)
    assert re.search(r'kr-delta kr-good"[^>]*>▼ -20%</span> vs Oct 25', html)
    assert "<svg" in html


def test_tile_greys_a_change_within_noise_and_prints_the_interval():
    html = kpi_tile(
        "win_rate",
        0.30,
        previous=0.25,
        previous_label="Sep 26",
        year_ago=0.20,
        year_ago_label="Oct 25",
        noise=("within noise (n = 20 vs 16)", ""),
        interval="95% CI 14.5-51.9%",
    )
    assert re.search(r'kr-delta kr-neutral"[^>]*>▲ \+5.0 pts</span> vs Sep 26', html)
    assert "within noise (n = 20 vs 16)" in html
    assert re.search(r'kr-delta kr-good"[^>]*>▲ \+10.0 pts</span> vs Oct 25', html)
    assert 'title="95% CI 14.5-51.9%"' in html and "kr-interval" in html


def test_tile_of_an_unavailable_kpi_says_why_instead_of_showing_zero():
    html = kpi_tile("cac", NAN, unavailable="needs table 'spend', which the source lacks")
    assert ">n/a<" in html and "needs table &#x27;spend&#x27;" in html and "$0" not in html


def test_tile_escapes_comparison_text():
    html = kpi_tile("revenue", 10, compare=("<b>x</b>", "<script>"))
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_sparkline_breaks_at_missing_values_and_marks_the_last_point():
    svg = sparkline_svg([1, 2, NAN, 3, 4])
    assert svg.count("<polyline") == 2 and svg.count("<circle") == 1
    assert sparkline_svg([NAN, NAN]).count("<polyline") == 0


def test_sparkline_draws_the_target_dashed():
    assert "stroke-dasharray" in sparkline_svg([1, 2, 3], [2, 2, 2])


def test_table_sits_in_its_own_scroller_and_right_aligns_numbers():
    html = html_table([["Ann", "$1K"]], ["Rep", "Revenue"], numeric=[1])
    assert html.startswith('<div class="kr-table-wrap">')
    assert '<td class="kr-num">$1K</td>' in html


def test_esc_neutralises_markup_in_crm_names():
    assert esc('<img src=x onerror="alert(1)">') == "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;"


def test_period_ticks_show_the_year_at_the_start_and_in_january():
    assert period_ticks(["2025-11", "2025-12", "2026-01"]) == ["Nov\n2025", "Dec", "Jan\n2026"]


def test_relative_paths_resolve_against_the_project_root_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert str(project_path("params/reports.yaml")).endswith("/params/reports.yaml")
    assert project_path("params/reports.yaml").exists()
    assert project_path(str(tmp_path)) == tmp_path
    assert resolve_source("data/demo.duckdb").startswith("/")
    assert resolve_source("") == ""
    assert (
        resolve_source("postgresql://u@127.0.0.1:5432/crm") == "postgresql://u@127.0.0.1:5432/crm"
    )


# ---- the report on a tiny CRM ----------------------------------------------------------------

TEAMS = [{"team_id": "east", "team_name": "East"}, {"team_id": "west", "team_name": "West"}]
REPS = [
    {"rep_id": "r1", "rep_name": "<b>Ann</b>", "team_id": "east"},
    {"rep_id": "r2", "rep_name": "Bob", "team_id": "east"},
    {"rep_id": "r3", "rep_name": "Cy", "team_id": "west"},
]
OPPS = [
    won("o1", "2026-10-05", 100.0, "r1", created_at="2026-09-01"),
    won("o2", "2026-10-06", 300.0, "r2", created_at="2026-09-01"),
    lost("o3", "2026-10-07", 50.0, "r2"),
    won("o4", "2026-10-08", 1000.0, "r3"),
    won("o5", "2026-09-08", 200.0, "r1"),
    opp("o6", "r1", created_at="2026-10-20", amount=70.0, stage="Demo"),
    opp("o7", "r2", created_at="2026-08-01", amount=30.0, stage="Proposal"),
]


@pytest.fixture(scope="module")
def tiny():
    import kpi_lib

    src = source(OPPS, teams=TEAMS, reps=REPS)
    cube = kpi_lib.compute_cube(
        src,
        "2025-10:2026-10",
        as_of="2026-11-28",
        targets={"revenue": {"company": 1000.0, "team": 500.0, "rep": 200.0}},
        settings={"stage_probabilities": {"Demo": 0.5}},  # Proposal has none
    )
    return src, cube


def report_for(tiny, role, scope, scope_id, name, team_id=None) -> Report:
    src, cube = tiny
    ctx = SimpleNamespace(
        period=Period.parse("2026-10"),
        scope=scope,
        scope_id=scope_id,
        scope_name=name,
        team_id=team_id,
        cube=cube,
        source=src,
        open_deals=deals.open_deals_table(src, Period.parse("2026-10"), "2026-11-28"),
        unavailable=cube.attrs["unavailable"],
        findings=["opportunities.amount: 1 row <missing>"],
        fingerprint="abc123",
        code_version="0.1.0",
        as_of="2026-11-28",
        generated_at="2026-11-28T09:00:00",
        batch=SimpleNamespace(
            reps=pd.DataFrame(REPS).assign(is_active=True),
            teams=pd.DataFrame(TEAMS),
            settings=cube.attrs["settings"],
            config={**cube.attrs["config"], "kpis": "crm/kpis.yaml"},
            targets=None,
        ),
    )
    return Report(
        role,
        ctx,
        {
            "period": "2026-10",
            "scope_id": scope_id,
            "source": "<frames>",
            "batch_dir": "",
            "targets": "",
        },
    )


def test_a_cohort_rate_younger_than_a_sales_cycle_says_it_is_still_maturing(tiny):
    report = report_for(tiny, "executive", "company", "all", "Company")
    # October's won deals took 34, 35 and 10 days: a sales cycle of 79 / 3 = 26.3 days.
    report.ctx.as_of = "2026-11-10"  # data through Nov 10: October 31 is 10 days back, Oct 1 41
    assert report.maturing("lead_conversion_rate") == (
        "qualified 10-41 days ago; a won deal takes 26 days on average"
    )
    assert report.maturing("win_rate") == ""  # not a cohort rate
    report.ctx.as_of = "2026-11-28"  # 28-59 days: the whole cohort is older than a sales cycle
    assert report.maturing("lead_conversion_rate") == ""


def test_a_maturing_tile_is_not_judged_against_its_target():
    html = kpi_tile("lead_conversion_rate", 0.02, target=0.12, maturing="young")
    assert "still maturing: young" in html
    assert "kr-neutral" in html and "kr-bad" not in html
    moved = kpi_tile("lead_conversion_rate", 0.02, previous=0.1, maturing="young")
    assert "-8.0 pts" in moved and "kr-bad" not in moved  # a fall, but not judged yet
    assert "kr-bad" in kpi_tile("lead_conversion_rate", 0.02, target=0.12, previous=0.1)


def test_highlights_state_revenue_against_target_and_the_previous_month(tiny):
    html = str(report_for(tiny, "executive", "company", "all", "Company").highlights())
    # October: 100 + 300 + 1000 = 1400 against 1000; September: 200 -> up 600%
    assert "<b>$1.4K</b>" in html and "140% of the $1K target" in html
    assert "up 600% on September 2026" in html


def test_rep_tiles_compare_with_the_team_median_and_leave_out_company_only_kpis(tiny):
    html = str(report_for(tiny, "rep", "rep", "r2", "Bob", team_id="east").tiles())
    assert 'data-kpi="cac"' not in html
    # east reps booked 100 (Ann) and 300 (Bob): median 200
    assert "Team median: <b>$200</b>" in html
    assert "Ann" not in html


def test_manager_leaderboard_lists_only_the_teams_reps_escaped(tiny):
    html = str(report_for(tiny, "manager", "team", "east", "East").leaderboard())
    assert "&lt;b&gt;Ann&lt;/b&gt;" in html and "Bob" in html and "Cy" not in html
    assert html.index("Bob") < html.index("&lt;b&gt;Ann")  # ranked by revenue
    assert '50% <span class="kr-sub">(1/2)</span>' in html  # Bob: 1 won of 2 closed


def test_deals_needed_says_when_the_target_is_met(tiny):
    html = str(report_for(tiny, "manager", "team", "west", "West").deals_needed())
    assert "Target met" in html


def test_data_quality_note_lists_findings_escaped_and_footer_carries_provenance(tiny):
    r = report_for(tiny, "executive", "company", "all", "Company")
    assert "&lt;missing&gt;" in str(r.data_quality())
    footer = str(r.footer())
    assert "abc123" in footer and "0.1.0" in footer and "period=2026-10" in footer


def test_glossary_prints_registry_definitions(tiny):
    from kpi_lib.metrics.registry import REGISTRY

    html = str(report_for(tiny, "executive", "company", "all", "Company").glossary())
    assert REGISTRY["win_rate"].definition in html


def test_report_sections_display_as_display_data(tiny):
    block = report_for(tiny, "executive", "company", "all", "Company").header()
    assert hasattr(block, "_ipython_display_") and "<style>" in str(block)


def test_open_report_rejects_a_scope_of_the_wrong_role(monkeypatch):
    from kpi_lib.metrics import batch

    monkeypatch.setattr(
        batch,
        "report_context",
        lambda *a, **k: SimpleNamespace(scope="rep", period=Period.parse("2026-10")),
    )
    with pytest.raises(ParamsError, match="manager report needs scope_id = a team_id"):
        open_report("manager", "2026-10", "R001")
    with pytest.raises(ParamsError, match="unknown report role"):
        open_report("cfo")


# ---- detail queries ---------------------------------------------------------------------------


def test_open_deals_are_those_open_at_the_end_of_the_period_largest_first(tiny):
    src, _ = tiny
    rows = deals.open_deals(
        src, Period.parse("2026-10"), "team", "east", stage_probabilities={"Demo": 0.5}
    )
    assert list(rows["opportunity_id"]) == ["o6", "o7"]
    assert rows.loc[0, "weighted_amount"] == 35.0
    assert rows.loc[1, "weighted_amount"] == 0.0  # no probability for Proposal
    # o7 created 2026-08-01, snapshot 2026-11-01: 92 days
    assert rows.loc[1, "age_days"] == pytest.approx(92.0)
    assert rows["is_expected_close_estimated"].all()


def test_open_deals_respect_the_report_date(tiny):
    src, _ = tiny
    rows = deals.open_deals(src, Period.parse("2026-10"), "rep", "r1", as_of="2026-10-10")
    assert list(rows["opportunity_id"]) == []  # o6 was created on 2026-10-20


def test_pipeline_by_stage_lists_stages_in_pipeline_order_with_empty_ones(tiny):
    src, _ = tiny
    pipe = deals.pipeline_by_stage(
        src, Period.parse("2026-10"), "company", "all", stages=["Discovery", "Demo", "Proposal"]
    )
    assert list(pipe["stage"]) == ["Discovery", "Demo", "Proposal"]
    assert list(pipe["deals"]) == [0, 1, 1]
    assert list(pipe["amount"]) == [0.0, 70.0, 30.0]


def test_deals_open_at_a_snapshot_before_the_stage_history_starts_keep_their_current_stage():
    """One row per deal open at the snapshot. The stage history starts in October (the org
    moved to its CRM then): at the end of February no open deal has a row of it, so each shows
    the stage it has now; in October the history decides where it has a row."""
    src = source(
        [
            opp("old", "r1", created_at="2026-01-10", stage="Negotiation/Review", amount=5.0),
            opp("new", "r2", created_at="2026-10-03", stage="Negotiation/Review", amount=7.0),
        ],
        stage_history=pd.DataFrame(
            {
                "opportunity_id": ["new", "new", "new"],
                "stage": ["Prospecting", "Id. Decision Makers", "Negotiation/Review"],
                "entered_at": ["2026-10-03", "2026-10-20", "2026-11-04"],
            }
        ),
    )
    february = deals.open_deals_table(src, Period.parse("2026-02"))
    assert dict(zip(february["opportunity_id"], february["stage"], strict=True)) == {
        "old": "Negotiation/Review"
    }
    october = deals.open_deals_table(src, Period.parse("2026-10"))
    assert dict(zip(october["opportunity_id"], october["stage"], strict=True)) == {
        "old": "Negotiation/Review",
        "new": "Id. Decision Makers",
    }


def test_the_estimated_close_is_created_plus_the_scopes_mean_cycle_of_the_last_12_months():
    src = source(
        [
            # won within 12 months of the 2026-11-01 snapshot: r1 in 10 days, r3 in 40 days
            won("w1", "2026-09-11", 10, "r1", created_at="2026-09-01"),
            won("w3", "2026-09-10", 10, "r3", created_at="2026-08-01"),
            won("old", "2025-03-02", 10, "r1", created_at="2025-01-01"),  # too long ago
            opp("o1", "r1", created_at="2026-10-01", stage="Demo", amount=5),
            opp("o2", "r2", created_at="2026-10-05", stage="Demo", amount=5),
        ]
    )
    table = deals.open_deals_table(src, Period.parse("2026-10"))
    expected = {}
    for scope, scope_id in [("rep", "r1"), ("team", "east"), ("company", "all")]:
        rows = deals.open_deals(table, Period.parse("2026-10"), scope, scope_id)
        expected[scope] = rows.set_index("opportunity_id")["expected_close_at"]
        assert rows["is_expected_close_estimated"].all()
    assert expected["rep"]["o1"] == pd.Timestamp("2026-10-11")  # r1's own cycle: 10 days
    assert expected["team"]["o2"] == pd.Timestamp("2026-10-15")  # east won only w1: 10 days
    assert expected["company"]["o1"] == pd.Timestamp("2026-10-26")  # (10 + 40) / 2 = 25 days
    # r2 won nothing: no cycle of its own, so no estimate on the rep's report
    assert (
        deals.open_deals(table, Period.parse("2026-10"), "rep", "r2")["expected_close_at"]
        .isna()
        .all()
    )


def test_a_report_of_a_saved_batch_shows_open_deals_without_loading_the_source(tmp_path):
    from kpi_lib.metrics.batch import prepare_batch, report_context

    batch = prepare_batch(
        "data/demo.duckdb", Period.parse("2026-10"), as_of="2026-11-28", targets=None
    )
    batch.save(tmp_path)
    team = batch.teams["team_id"].iloc[0]
    rep = batch.reps.loc[batch.reps["team_id"] == team, "rep_id"].iloc[0]
    for scope_id in ("all", team, rep):
        ctx = report_context(
            Period.parse("2026-10"), scope_id, "data/demo.duckdb", batch_dir=str(tmp_path)
        )
        src = kpi_lib.load_source("data/demo.duckdb")
        from_batch = deals.open_deals(ctx.open_deals, ctx.period, ctx.scope, scope_id, ctx.as_of)
        from_source = deals.open_deals(src, ctx.period, ctx.scope, scope_id, ctx.as_of)
        pd.testing.assert_frame_equal(from_batch, from_source)
        assert len(from_batch) > 0
        assert "source" not in ctx.__dict__  # the cached source was never loaded


def test_reps_in_scope_keeps_reps_active_in_the_period():
    src = source(
        [],
        teams=TEAMS,
        reps=[
            {"rep_id": "r1", "rep_name": "Ann", "team_id": "east", "end_at": "2026-09-15"},
            {"rep_id": "r2", "rep_name": "Bob", "team_id": "east", "start_at": "2026-10-20"},
            {"rep_id": "r3", "rep_name": "Cy", "team_id": "west"},
        ],
    )
    assert list(deals.reps_in_scope(src, Period.parse("2026-10"), "team", "east")["rep_id"]) == [
        "r2"
    ]


def test_stages_without_a_probability_are_named_with_their_open_amount_never_weighted_as_zero(
    tiny,
):
    """Team east holds o6 (Demo, 70, probability 0.5) and o7 (Proposal, 30, no probability)."""
    report = report_for(tiny, "manager", "team", "east", "East")
    assert report.unpriced_stages.to_dict("records") == [
        {"stage": "Proposal", "deals": 1, "amount": 30.0}
    ]
    quality = str(report.data_quality())
    assert "Stages without a probability: Proposal (1 open, $30)" in quality
    assert "crm/kpis.yaml" in quality
    assert "leaves out <b>$30</b> in stages without a probability (Proposal" in str(
        report.outlook()
    )
    stages = str(report.pipeline_by_stage())
    proposal_row = stages[stages.index(">Proposal<") :].split("</tr>")[0]
    assert "no probability" in proposal_row and "$0" not in proposal_row
    west = report_for(tiny, "manager", "team", "west", "West")  # no open deals: nothing to say
    assert west.unpriced_stages.empty and "without a probability" not in str(west.data_quality())


# ---- an org whose data starts mid-year ---------------------------------------------------------

# First deal created 2026-03-02: the batch of 2026-10 reaches back to 2025-10 (13 months) and
# its cube to 2024-10; every period before March 2026 has no data, not zero sales.
YOUNG_OPPS = [
    won("y1", "2026-03-20", 500.0, "r1", created_at="2026-03-02"),
    won("y2", "2026-09-10", 800.0, "r3", created_at="2026-08-01"),
    won("y3", "2026-10-12", 900.0, "r2", created_at="2026-09-01"),
]


@pytest.fixture(scope="module")
def young_batch():
    from kpi_lib.metrics.batch import prepare_batch

    src = source(YOUNG_OPPS, teams=TEAMS, reps=REPS)
    return prepare_batch(src, Period.parse("2026-10"), as_of="2026-11-28", targets={})


def test_an_org_whose_data_starts_mid_year_charts_from_its_first_month(young_batch):
    from kpi_lib.metrics.batch import ReportContext

    assert young_batch.data_start == "2026-03"
    assert not young_batch.has_data("2026-02") and young_batch.has_data("2026-03")
    ctx = ReportContext(young_batch, young_batch.scope("all"), "<frames>")
    report = Report("executive", ctx, {"period": "2026-10", "scope_id": "all"})
    assert report.history_periods() == [f"2026-{m:02d}" for m in range(3, 11)]
    assert report.history("revenue")[0] == 500.0  # March, the first month, not an empty one
    tiles = str(report.tiles())
    revenue = tiles[tiles.index('data-kpi="revenue"') :].split('data-kpi="')[1]
    assert "no data for Oct 25" in revenue  # a year earlier: said, not a dash
    assert "vs Sep 26" in revenue and "no data for Sep 26" not in revenue
    header = str(report.header())
    assert "vs Sep 26 (no data for Oct 25)" in header
    highlights = str(report.highlights())
    assert "Revenue +12% on Sep 26" in highlights  # 900 against 800
    assert "+12 pts from larger deals ($900 vs $800 on average)" in highlights  # 1 deal each
    assert "Oct 25" not in highlights and "October 2025" not in highlights  # no data then


def test_the_digest_of_a_young_org_charts_from_its_first_month(young_batch):
    from kpi_lib.publish.digest import Figures, scope_tiles

    figures = Figures(young_batch)
    assert figures.periods[0] == "2026-03"
    assert math.isnan(figures.get("revenue", "company", "all", "2025-10"))
    march = dataclasses.replace(young_batch, period=Period.parse("2026-03"))
    first = {t.kpi: t for t in scope_tiles(Figures(march), "company", "all")}
    assert first["revenue"].change_line == "no data for Feb 26"


def test_open_deals_of_a_source_whose_accounts_table_is_empty_show_their_account_ids():
    """An accounts export with a header and no rows: names fall back to the deals' ids."""
    accounts = pd.DataFrame(columns=["account_id", "account_name", "owner_rep_id"])
    opportunities = [
        opp("o1", "r1", amount=10.0, account_id="Acme Québec"),
        opp("o2", "r2", amount=20.0),
    ]
    src = source(opportunities, teams=TEAMS, reps=REPS, accounts=accounts)
    table = deals.open_deals_table(src, Period.parse("2026-10"), "2026-11-28")
    assert dict(zip(table["opportunity_id"], table["account_name"], strict=True)) == {
        "o1": "Acme Québec",
        "o2": "",
    }


def test_a_deal_open_at_the_snapshot_and_closed_since_is_not_shown_in_its_closed_stage():
    """o1 was open at the end of October and won on 3 November; no stage history says where it
    stood on 31 October, so it is not listed as 'Won' in October's pipeline. o2 is still open
    in Demo (probability 0.5)."""
    from kpi_lib.metrics.batch import ReportContext, prepare_batch

    opportunities = [
        won("o1", "2026-11-03", 400.0, "r1", created_at="2026-10-01", stage="Won"),
        opp("o2", "r1", created_at="2026-10-02", amount=100.0, stage="Demo"),
    ]
    src = source(opportunities, teams=TEAMS, reps=REPS)
    table = deals.open_deals_table(src, Period.parse("2026-10"), "2026-11-28")
    assert dict(zip(table["opportunity_id"], table["stage"], strict=True)) == {
        "o1": deals.STAGE_NOT_RECORDED,
        "o2": "Demo",
    }
    batch = prepare_batch(
        src,
        Period.parse("2026-10"),
        as_of="2026-11-28",
        targets={},
        settings={"stage_probabilities": {"Demo": 0.5}},
    )
    report = Report("executive", ReportContext(batch, batch.scope("all"), "<frames>"), {})
    assert report.unpriced_stages.empty  # Demo has a probability; o1's stage is unknown, not "Won"
    note = report.unpriced_note()
    assert note.startswith("1 deal open then ($400) closed since") and "Won" not in note
    assert report.value("weighted_pipeline") == 50.0  # o2 only: 100 x 0.5


def test_an_org_that_sells_in_euros_reads_its_amounts_in_euros_in_reports_and_digests():
    from kpi_lib.metrics.batch import ReportContext, prepare_batch
    from kpi_lib.publish.digest import Figures, scope_tiles

    opportunities = [{**won("e1", "2026-10-05", 1500.0, "r1"), "currency": "EUR"}]
    src = source(opportunities, teams=TEAMS, reps=REPS)
    batch = prepare_batch(src, Period.parse("2026-10"), as_of="2026-11-28", targets={})
    assert batch.currency == "EUR"
    try:
        report = Report("executive", ReportContext(batch, batch.scope("all"), "<frames>"), {})
        assert "booked <b>€1.5K</b>" in str(report.highlights())
        tiles = {t.kpi: t for t in scope_tiles(Figures(batch), "company", "all")}
        assert tiles["revenue"].value == "€1.5K"
    finally:
        theme.use_currency(None)
    assert theme.format_value(1500, "currency") == "$1.5K"

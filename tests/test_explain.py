"""The report and the digest explain each change the same way: drivers, noise, maturing cohorts.

A tiny org with hand-computed figures (``conftest``'s helpers), rendered through the batch the
notebooks read, the report's sections and the digest's tiles and sentences.

September: Ann won 100, Cy won 300, Ann lost one: 2 deals won of 3 closed, average 200.
October: Ann won 100, Bob won 100, Cy won 280: 3 of 3, average 160, created 1 September, so
the sales cycle is (34 + 35 + 36) / 3 = 35 days.
"""

from __future__ import annotations

import html
import re

import pytest
from conftest import REPS, TEAMS, lost, source, won

from kpi_lib.metrics.batch import ReportContext, prepare_batch
from kpi_lib.periods import Period
from kpi_lib.publish.digest import Figures, scope_tiles
from kpi_lib.report import Report

OPPS = [
    won("s1", "2026-09-05", 100.0, "r1", created_at="2026-08-01", lead_id="L1"),
    won("s2", "2026-09-10", 300.0, "r3", created_at="2026-08-01"),
    lost("s3", "2026-09-20", 50.0, "r1", created_at="2026-08-01"),
    won("o1", "2026-10-05", 100.0, "r1", created_at="2026-09-01"),
    won("o2", "2026-10-06", 100.0, "r2", created_at="2026-09-01"),
    won("o3", "2026-10-07", 280.0, "r3", created_at="2026-09-01"),
]
# Four leads qualified in September, one of them became the won deal s1: 25%. Three qualified
# in October, none won yet: the October cohort is 5 days old on the report date (a sales cycle
# is 35 days), still maturing.
LEADS = [
    {
        "lead_id": f"L{i}",
        "owner_rep_id": "r1",
        "created_at": "2026-08-20",
        "qualified_at": "2026-09-15",
        "opportunity_id": "s1" if i == 1 else None,
    }
    for i in range(1, 5)
] + [
    {
        "lead_id": f"N{i}",
        "owner_rep_id": "r1",
        "created_at": "2026-10-02",
        "qualified_at": "2026-10-12",
        "opportunity_id": None,
    }
    for i in range(1, 4)
]
TARGETS = {"lead_conversion_rate": {"company": 0.2}, "revenue": {"company": 400.0}}


@pytest.fixture(scope="module")
def batch():
    src = source(OPPS, teams=TEAMS, reps=REPS, leads=LEADS)
    return prepare_batch(src, Period.parse("2026-10"), as_of="2026-11-05", targets=TARGETS)


def report(batch, role="executive", scope_id="all") -> Report:
    ctx = ReportContext(batch, batch.scope(scope_id), "<frames>")
    return Report(role, ctx, {"period": "2026-10", "scope_id": scope_id})


def text(markup) -> str:
    """The words of an HTML block, tags dropped and entities decoded."""
    return html.unescape(re.sub(r"<[^>]+>", "", str(markup)))


def test_highlights_split_the_revenue_change_into_deal_count_and_deal_size(batch):
    # 400 -> 480 (+20%): deals won (3 - 2) x (200 + 160) / 2 = +180 = +45 pts of 400;
    # deal size (160 - 200) x (2 + 3) / 2 = -100 = -25 pts; East moved +100 (100 -> 200),
    # West -20 (300 -> 280).
    words = text(report(batch).highlights())
    assert (
        "Revenue +20% on Sep 26: +45 pts from 1 more deal won (3 vs 2), -25 pts from smaller "
        "deals ($160 vs $200 on average); East accounts for +$100." in words
    )


def test_a_team_report_names_the_rep_that_moved_its_revenue(batch):
    # East: Ann 100 -> 100, Bob 0 -> 100: +100 (+100%), one more deal of the same size.
    words = text(report(batch, "manager", "east").highlights())
    assert (
        "Revenue +100% on Sep 26: +100 pts from 1 more deal won (2 vs 1); Bob accounts for +$100."
        in (words)
    )


def test_a_rate_change_within_noise_is_said_so_and_not_coloured(batch):
    # Win rate 2/3 -> 3/3: pooled 5/6, z = 0.333 / sqrt(5/6 x 1/6 x (1/3 + 1/3)) = 1.10,
    # p = 0.27: noise.
    r = report(batch)
    assert "no significant change on Sep 26 (n = 3 vs 3)" in text(r.highlights())
    tiles = str(r.tiles())
    win = tiles[tiles.index('data-kpi="win_rate"') :].split('data-kpi="')[1]
    assert re.search(r'kr-delta kr-neutral"[^>]*>▲ \+33.3 pts</span> vs Sep 26', win)
    assert "within noise (n = 3 vs 3)" in win
    # Wilson 95% interval of 3 of 3: centre (1 + 1.92/3) / (1 + 3.84/3), lower bound 0.44
    assert "95% CI 43.9-100.0%" in win
    digest = {t.kpi: t for t in scope_tiles(Figures(batch), "company", "all")}
    assert digest["win_rate"].change_status == "neutral"
    assert digest["win_rate"].change_line.endswith("within noise (n = 3 vs 3)")


def test_a_maturing_cohort_is_shown_from_its_last_mature_cohort_never_as_zero(batch):
    r = report(batch)
    tiles = str(r.tiles())
    tile = tiles[tiles.index('data-kpi="lead_conversion_rate"') :].split('data-kpi="')[1]
    assert re.search(r'kr-tile-value"?[^>]*>25.0%<', tile)  # September: 1 of 4
    assert "leads qualified in September 2026" in text(tile)
    assert "125%" in tile and "kr-tile kr-good" in tiles  # 25% against the 20% target
    assert ">0.0%<" not in tile
    assert "October 2026 so far: 0.0% (0 of 3), still maturing" in text(tile)
    words = text(r.highlights())
    assert "Lead conversion rate was 25.0% for the leads qualified in September 2026 (1 of 4)" in (
        words
    )
    digest = {t.kpi: t for t in scope_tiles(Figures(batch), "company", "all")}
    lead = digest["lead_conversion_rate"]
    assert lead.value == "25.0%" and lead.target_status == "good"
    assert "behind" not in lead.target_line and "125% of 20.0% target" in lead.target_line
    assert "leads qualified in September 2026" in lead.note


def test_the_digest_tells_the_story_the_report_tells(batch):
    figures = Figures(batch)
    sentences = figures.explain.sentences("company", "all")
    assert sentences and sentences[0].startswith("Revenue +20% on Sep 26")
    highlights = text(report(batch).highlights())
    for sentence in sentences:
        assert sentence in highlights


def test_the_revenue_bridge_draws_both_comparisons_and_the_teams(batch):
    bridge = str(report(batch).revenue_bridge())
    assert "What moved revenue" in bridge
    # the waterfall's alternative text carries its figures; no revenue a year ago (no data)
    assert "Revenue bridge to $480: from $400 in Sep 26: deals won $180, deal size -$100" in (
        html.unescape(bridge)
    )
    assert "Change in revenue on Sep 26 by team: East $100, West -$20" in html.unescape(bridge)
    assert bridge.count("<img") == 2


def test_no_bridge_or_driver_sentence_while_the_period_runs():
    src = source(OPPS, teams=TEAMS, reps=REPS, leads=LEADS)
    running = prepare_batch(src, Period.parse("2026-10"), as_of="2026-10-20", targets={})
    r = report(running)
    r.ctx.__dict__["source"] = src  # the month-to-date comparison reads the source itself
    assert str(r.revenue_bridge()) == ""
    assert "pts from" not in text(r.highlights())

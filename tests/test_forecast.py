"""Projections replayed over past months, on hand-made months with hand-computed errors.

The world of ``conftest`` (teams east: r1, r2; west: r3). Every figure below is worked out by
hand from the rows written here: a deal per month that the weighted pipeline sees at 80%
(Proposal, probability 0.8) and that is won in full (so the weighted pipeline is always 20%
low and the org's own stage win rate, 100%, exactly right), a steady run of bookings (so the
run rate is exactly right), an org with no history, and the as-of rules (a deal won later
counts as open when the projection is made; a deal won earlier or created later does not).
"""

from __future__ import annotations

import html
import re

import pandas as pd
import pytest
from conftest import TEAMS, lost, opp, source, won

from kpi_lib.metrics import forecast as fc
from kpi_lib.metrics.batch import ReportContext, prepare_batch
from kpi_lib.periods import Period
from kpi_lib.report import Report
from kpi_lib.report.outlook import error_words, track_words

NOV = Period.parse("2026-11")
AS_OF = "2026-12-02"
PROBABILITIES = {"Proposal": 0.8, "Demo": 0.4}
MONTHS = ["2026-06", "2026-07", "2026-08", "2026-09", "2026-10", "2026-11"]


def history(*rows) -> pd.DataFrame:
    """stage_history rows ``(opportunity_id, stage, entered_at)``."""
    return pd.DataFrame(rows, columns=["opportunity_id", "stage", "entered_at"]).astype(
        {"entered_at": "datetime64[us]"}
    )


def with_close(row: dict, expected_close_at) -> dict:
    return {**row, "expected_close_at": expected_close_at}


def monthly_proposals(first="2026-05", last="2026-11", amount=100.0):
    """One deal per month M: created on the 20th of M-1 in Proposal, expected on the 10th of M,
    won on the 10th of M for ``amount``. Returns (opportunities, stage history)."""
    opps, rows = [], []
    for month in pd.period_range(first, last, freq="M"):
        created = (month - 1).to_timestamp() + pd.Timedelta(days=19)
        closes = month.to_timestamp() + pd.Timedelta(days=9)
        deal = f"p{month}"
        opps.append(
            with_close(
                won(deal, str(closes), amount, "r1", created_at=str(created), stage="Won"),
                str(closes),
            )
        )
        rows += [(deal, "Proposal", created), (deal, "Won", closes)]
    return opps, history(*rows)


def backtest(src, period=NOV, as_of=AS_OF, probabilities=PROBABILITIES):
    return fc.compute_forecast(src, period, as_of, probabilities)


def rows_of(f, method, scope="company", scope_id="all") -> pd.DataFrame:
    b = f.backtest
    return b[(b["method"] == method) & (b["scope"] == scope) & (b["scope_id"] == scope_id)]


# ---- the months replayed ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "period, as_of, first, last",
    [
        ("2026-11", "2026-12-02", "2026-06", "2026-11"),  # November over: June to November
        ("2026-11", "2026-11-30", "2026-06", "2026-11"),  # its last day counts: over
        ("2026-11", "2026-11-15", "2026-05", "2026-10"),  # November running: May to October
        ("2026-10", "2026-12-02", "2026-05", "2026-10"),  # a past month: the six ending at it
        ("2026-Q4", "2027-01-05", "2026-07", "2026-12"),  # a quarter: the months ending at its end
    ],
)
def test_the_backtest_replays_the_six_complete_months_ending_at_the_period(
    period, as_of, first, last
):
    known = pd.Timestamp(as_of) + pd.Timedelta(days=1)
    months = fc.backtest_months(Period.parse(period), known)
    assert [m.label for m in months] == [str(p) for p in pd.period_range(first, last, freq="M")]


# ---- a projection exactly right, one always 20% low ---------------------------------------------


def test_weighted_pipeline_always_20_percent_low_and_stage_win_rates_exactly_right():
    opps, sh = monthly_proposals()
    f = backtest(source(opps, stage_history=sh))
    weighted = rows_of(f, "weighted_pipeline")
    assert list(weighted["month"]) == MONTHS
    assert list(weighted["projected"]) == pytest.approx([80.0] * 6)  # 100 x 0.8
    assert list(weighted["actual"]) == pytest.approx([100.0] * 6)
    assert list(weighted["error"]) == pytest.approx([-20.0] * 6)  # projected - actual
    own = rows_of(f, "stage_win_rates")  # every deal through Proposal was won: 100%
    assert list(own["projected"]) == pytest.approx([100.0] * 6)
    assert list(own["error"]) == pytest.approx([0.0] * 6)

    record = fc.track_record(f.backtest).set_index(["scope", "scope_id", "method"])
    w = record.loc[("company", "all", "weighted_pipeline")]
    assert (w["months"], w["low_months"], w["high_months"]) == (6, 6, 0)
    assert w["mape"] == pytest.approx(0.2) and w["bias"] == pytest.approx(-0.2)
    assert track_words(w) == "off by 20% on average, always low (6 months)"
    s = record.loc[("company", "all", "stage_win_rates")]
    assert s["mape"] == pytest.approx(0.0) and s["bias"] == pytest.approx(0.0)
    assert track_words(s) == "on the mark (6 months)"
    # the run rate needs the three months before M with data: the first deal was created in
    # April, so July is the first month it is made (April, May, June: 0, 100, 100)
    run = rows_of(f, "run_rate")
    assert list(run["month"]) == MONTHS[1:]
    assert run["projected"].iloc[0] == pytest.approx(200.0 / 3)
    assert fc.most_accurate(record.loc["company"].reset_index()) == "stage_win_rates"


def test_the_run_rate_of_steady_bookings_is_exactly_right_and_teams_add_up():
    opps = [
        won(f"w{m}", f"{m}-15", 100.0, "r1")
        for m in pd.period_range("2026-01", "2026-11", freq="M")
    ] + [
        won(f"x{m}", f"{m}-16", 50.0, "r3") for m in pd.period_range("2026-01", "2026-11", freq="M")
    ]
    f = backtest(source(opps))
    run = rows_of(f, "run_rate")
    assert list(run["projected"]) == pytest.approx([150.0] * 6)
    assert list(run["error"]) == pytest.approx([0.0] * 6)
    east, west = rows_of(f, "run_rate", "team", "east"), rows_of(f, "run_rate", "team", "west")
    assert list(east["actual"]) == pytest.approx([100.0] * 6)
    assert list(west["actual"]) == pytest.approx([50.0] * 6)
    assert list(east["projected"] + west["projected"].to_numpy()) == pytest.approx(
        list(run["projected"])
    )


@pytest.mark.parametrize(
    "projected, actual, mape, bias, words",
    [
        ([120.0, 120.0, 120.0], [100.0] * 3, 0.2, 0.2, ("off by 20% on average", "always high")),
        (
            [90.0, 90.0, 130.0],
            [100.0] * 3,
            (0.1 + 0.1 + 0.3) / 3,
            (-0.1 - 0.1 + 0.3) / 3,
            ("off by 17% on average", "usually low"),
        ),
        ([90.0, 110.0], [100.0] * 2, 0.1, 0.0, ("off by 10% on average", "as often high as low")),
    ],
)
def test_track_record_is_the_mean_absolute_and_signed_percentage_error(
    projected, actual, mape, bias, words
):
    b = pd.DataFrame(
        {
            "scope": "company",
            "scope_id": "all",
            "method": "run_rate",
            "month": [f"2026-0{i + 1}" for i in range(len(actual))],
            "projected": projected,
            "actual": actual,
        }
    )
    r = fc.track_record(b).iloc[0]
    assert r["mape"] == pytest.approx(mape) and r["bias"] == pytest.approx(bias)
    assert error_words(r["mape"], r["low_months"], r["high_months"]) == words


def test_a_month_without_revenue_is_not_judged():
    b = pd.DataFrame(
        {
            "scope": "team",
            "scope_id": "west",
            "method": "run_rate",
            "month": ["2026-09", "2026-10"],
            "projected": [50.0, 80.0],
            "actual": [0.0, 100.0],
        }
    )
    r = fc.track_record(b).iloc[0]
    assert r["months"] == 1 and r["mape"] == pytest.approx(0.2)
    assert track_words(r) == "too little history: 1 month to judge (3 needed)"


# ---- no history ------------------------------------------------------------------------------


def test_without_stage_history_the_pipeline_projections_are_not_replayed_and_say_why():
    opps, _ = monthly_proposals()
    f = backtest(source(opps))
    assert set(f.backtest["method"]) == {"run_rate"}
    assert "no stage history" in f.unavailable["weighted_pipeline"]
    assert "no stage history" in f.unavailable["stage_win_rates"]
    # next month's weighted pipeline is still made from today's stages; the org's own stage
    # win rates need the stages closed deals went through, so they are not
    assert set(f.ahead["method"]) == {"run_rate", "weighted_pipeline"}


def test_a_young_org_has_too_little_history_and_the_outlook_says_so():
    opps = [
        with_close(won("y1", "2026-11-12", 100.0, "r1", created_at="2026-10-20"), "2026-11-12"),
        with_close(opp("y2", "r1", created_at="2026-11-10", stage="Proposal"), "2026-12-15"),
    ]
    sh = history(("y1", "Proposal", "2026-10-20"), ("y1", "Won", "2026-11-12"))
    sh = pd.concat([sh, history(("y2", "Proposal", "2026-11-10"))], ignore_index=True)
    src = source(opps, stage_history=sh)
    f = backtest(src)
    assert set(f.backtest["month"]) == {"2026-11"}  # the CRM had no deal before November 1
    record = fc.track_record(f.backtest)
    assert fc.most_accurate(record) is None
    batch = prepare_batch(
        src, NOV, as_of=AS_OF, targets={}, settings={"stage_probabilities": PROBABILITIES}
    )
    ctx = ReportContext(batch, batch.scope("all"), "<frames>")
    outlook = text(Report("executive", ctx, {"period": NOV.label}).outlook())
    assert "Too little history to tell which projection to trust" in outlook
    assert "too little history: 1 month to judge (3 needed)" in outlook
    # December's weighted pipeline: y2, open in Proposal, expected 15 December: 0.8 x 0 amount
    ahead = f.ahead.set_index(["scope", "scope_id", "method"])["projected"]
    assert ahead[("company", "all", "weighted_pipeline")] == pytest.approx(0.0)


def test_without_stage_probabilities_the_weighted_pipeline_is_not_made_never_zero():
    opps, sh = monthly_proposals()
    f = backtest(source(opps, stage_history=sh), probabilities={})
    assert set(f.backtest["method"]) == {"run_rate", "stage_win_rates"}
    assert "no stage has a probability" in f.unavailable["weighted_pipeline"]
    assert "weighted_pipeline" not in set(f.ahead["method"])


# ---- what was known when the projection was made ---------------------------------------------


def test_a_deal_won_later_counts_as_open_in_the_stage_it_was_in_then():
    opps = [
        # open on 1 November in Proposal, won on 20 November: counted at 0.8
        with_close(won("later", "2026-11-20", 100.0, "r1", created_at="2026-09-15"), "2026-11-20"),
        # in Demo on 1 November, Proposal from the 10th: counted at Demo's 0.4
        with_close(won("moved", "2026-11-25", 50.0, "r3", created_at="2026-10-01"), "2026-11-25"),
        # won before November: not in November's pipeline
        with_close(won("before", "2026-10-25", 70.0, "r1", created_at="2026-09-01"), "2026-11-05"),
        # created after 1 November: not known when the projection was made
        with_close(won("new", "2026-11-28", 40.0, "r1", created_at="2026-11-05"), "2026-11-28"),
        # expected in December: not in November's pipeline
        with_close(opp("dec", "r1", created_at="2026-10-01", stage="Proposal"), "2026-12-10"),
        # lost later: counted as open then (its loss shows in the error)
        with_close(lost("gone", "2026-11-15", 30.0, "r2", created_at="2026-10-01"), "2026-11-15"),
    ]
    sh = history(
        ("later", "Proposal", "2026-09-15"),
        ("later", "Won", "2026-11-20"),
        ("moved", "Demo", "2026-10-01"),
        ("moved", "Proposal", "2026-11-10"),
        ("moved", "Won", "2026-11-25"),
        ("before", "Proposal", "2026-09-01"),
        ("before", "Won", "2026-10-25"),
        ("new", "Proposal", "2026-11-05"),
        ("new", "Won", "2026-11-28"),
        ("dec", "Proposal", "2026-10-01"),
        ("gone", "Proposal", "2026-10-01"),
        ("gone", "Lost", "2026-11-15"),
    )
    f = backtest(source(opps, stage_history=sh))
    nov = rows_of(f, "weighted_pipeline").set_index("month").loc["2026-11"]
    assert nov["projected"] == pytest.approx(100 * 0.8 + 50 * 0.4 + 30 * 0.8)  # 124
    assert nov["actual"] == pytest.approx(100 + 50 + 40)  # won in November: 190
    assert nov["error"] == pytest.approx(124 - 190)
    east = rows_of(f, "weighted_pipeline", "team", "east").set_index("month").loc["2026-11"]
    assert east["projected"] == pytest.approx(100 * 0.8 + 30 * 0.8)


def test_stage_at_reads_history_then_the_current_stage_of_a_deal_still_open():
    deals = pd.DataFrame(
        {
            "opportunity_id": ["a", "b", "c"],
            "stage": ["Won", "Demo", "Lost"],
            "is_closed": [True, False, True],
        }
    )
    sh = history(("a", "Demo", "2026-10-01"), ("a", "Proposal", "2026-11-10"))
    at = fc.stage_at(deals, sh, pd.Timestamp("2026-11-01"))
    assert list(at[:2]) == ["Demo", "Demo"]  # a from history; b open, no row: its stage now
    assert pd.isna(at[2])  # c closed since with no history row: not known


def test_forecast_csv_rows_carry_the_contracts_columns_and_come_with_the_batch():
    opps, sh = monthly_proposals()
    batch = prepare_batch(
        source(opps, teams=TEAMS, stage_history=sh),
        NOV,
        as_of=AS_OF,
        targets={},
        settings={"stage_probabilities": PROBABILITIES},
    )
    assert list(batch.forecast.columns) == fc.FORECAST_COLUMNS
    assert set(batch.forecast["period"]) == {"2026-11"}
    assert set(batch.forecast["scope"]) == {"company", "team"}
    ahead = batch.projections.set_index(["scope", "scope_id", "method"])["projected"]
    assert set(batch.projections["month"]) == {"2026-12"}
    # December: the p2026-12 deal does not exist; the run rate is Sep-Nov's 100 a month
    assert ahead[("company", "all", "run_rate")] == pytest.approx(100.0)


def text(markup) -> str:
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", str(markup))))

"""What moved each change (``kpi_lib.metrics.drivers``) as given/expect tables, by hand.

Unless a case says otherwise: period 2026-10 against 2026-09 (``previous``) and 2025-10
(``year_ago``), as_of 2026-11-28, reps r1 and r2 in team east, r3 in team west (conftest), each
deal created ten days before it closes. The arithmetic is in the comments:

- revenue, midpoint form: n won deals with an amount, of average size s;
  ``deals_won = (n1 - n0)(s0 + s1)/2``, ``deal_size = (s1 - s0)(n0 + n1)/2``; a side without
  deals takes the other side's average.
- velocity, log-mean Divisia: ``effect_i = L(V1, V0) ln(x1_i / x0_i)``,
  ``L(a, b) = (a - b) / (ln a - ln b)``, cycle time entering as 1 / days.
"""

from __future__ import annotations

import io
import math

import pandas as pd
import pytest
from conftest import AS_OF, REPS, TEAMS, frame, lost, opp, same, source, won
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import kpi_lib
from kpi_lib.cli import main
from kpi_lib.metrics.drivers import (
    compute_drivers,
    drivers_periods,
    log_mean,
    revenue_bridge,
    velocity_split,
)
from kpi_lib.periods import Period

NAN = math.nan
OCT, SEP = "2026-10", "2026-09"
LN2, LN3 = math.log(2), math.log(3)


def drivers(opportunities=(), period=OCT, **tables) -> pd.DataFrame:
    """``compute_drivers`` of a tiny CRM: its cube for P-1y, P-1 and P, no targets."""
    src = source(opportunities, **tables)
    p = Period.parse(period)
    cube = kpi_lib.compute_cube(src, drivers_periods(p), as_of=AS_OF, targets={}, settings={})
    return compute_drivers(cube, p, src.frame("reps"))


def pick(table, kpi="revenue", scope="company", scope_id="all", compared_with="previous"):
    return table[
        (table["kpi"] == kpi)
        & (table["scope"] == scope)
        & (table["scope_id"] == scope_id)
        & (table["compared_with"] == compared_with)
    ]


def effects(table, kpi="revenue", scope="company", scope_id="all", compared_with="previous"):
    """``{driver: effect}`` of one scope, KPI and comparison."""
    rows = pick(table, kpi, scope, scope_id, compared_with)
    return dict(zip(rows["driver"], rows["effect"], strict=True))


# ---------------------------------------------------------------------------------------------
# revenue_bridge: deal count and deal size, midpoint form
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("n0", "s0", "n1", "s1", "deals_won", "deal_size"),
    [
        # 1000 -> 1080: (12 - 10)(100 + 90)/2 = 190; (90 - 100)(10 + 12)/2 = -110
        pytest.param(10, 100.0, 12, 90.0, 190, -110, id="more-but-smaller-deals"),
        # 1000 -> 1500: (5 - 4)(250 + 300)/2 = 275; (300 - 250)(4 + 5)/2 = 225
        pytest.param(4, 250.0, 5, 300.0, 275, 225, id="more-and-bigger-deals"),
        # 0 -> 600: s0 takes s1 = 200; (3 - 0)(200 + 200)/2 = 600; size effect 0
        pytest.param(0, NAN, 3, 200.0, 600, 0, id="no-deals-before"),
        # 1000 -> 0: s1 takes s0 = 500; (0 - 2)(500 + 500)/2 = -1000
        pytest.param(2, 500.0, 0, NAN, -1000, 0, id="no-deals-now"),
        pytest.param(0, NAN, 0, NAN, 0, 0, id="no-deals-either-side"),
        # one deal of 1000 -> one of 1500: the count did not move, (1500 - 1000)(1 + 1)/2 = 500
        pytest.param(1, 1000.0, 1, 1500.0, 0, 500, id="one-deal-each-side"),
        pytest.param(7, 300.0, 7, 300.0, 0, 0, id="equal-periods"),
    ],
)
def test_revenue_bridge_splits_the_change_into_deal_count_and_deal_size(
    n0, s0, n1, s1, deals_won, deal_size
):
    assert revenue_bridge(n0, s0, n1, s1) == {
        "deals_won": same(deals_won),
        "deal_size": same(deal_size),
    }


# ---------------------------------------------------------------------------------------------
# velocity_split: log-mean Divisia over open deals, win rate, deal size and 1 / cycle days
# ---------------------------------------------------------------------------------------------


def factors(open_deals, win_rate, deal_size, cycle_time) -> dict[str, float]:
    return {
        "open_deals": open_deals,
        "win_rate": win_rate,
        "deal_size": deal_size,
        "cycle_time": cycle_time,
    }


def test_log_mean_is_the_logarithmic_mean_and_the_value_itself_when_equal():
    assert log_mean(4.0, 1.0) == same(3 / math.log(4))  # (4 - 1) / (ln 4 - ln 1)
    assert log_mean(1.0, 4.0) == same(3 / math.log(4))
    assert log_mean(5.0, 5.0) == 5.0


@pytest.mark.parametrize(
    ("before", "now", "expected"),
    [
        pytest.param(
            # V0 = 10 x 0.5 x 1000 / 50 = 100, V1 = 200; L(200, 100) = 100 / ln 2
            factors(10, 0.5, 1000.0, 50.0),
            factors(20, 0.5, 1000.0, 50.0),
            {"open_deals": 100, "win_rate": 0, "deal_size": 0, "cycle_time": 0},
            id="only-open-deals-move",
        ),
        pytest.param(
            # a cycle of 25 days instead of 50 doubles velocity: 100 -> 200, all on cycle_time
            factors(10, 0.5, 1000.0, 50.0),
            factors(10, 0.5, 1000.0, 25.0),
            {"open_deals": 0, "win_rate": 0, "deal_size": 0, "cycle_time": 100},
            id="a-shorter-cycle-is-a-positive-effect",
        ),
        pytest.param(
            # V0 = 100, V1 = 20 x 0.4 x 1500 / 40 = 300; L(300, 100) = 200 / ln 3;
            # ratios: open 2, win 0.8, size 1.5, 1/cycle 50/40 = 1.25
            factors(10, 0.5, 1000.0, 50.0),
            factors(20, 0.4, 1500.0, 40.0),
            {
                "open_deals": 200 * LN2 / LN3,  # 126.19
                "win_rate": 200 * math.log(0.8) / LN3,  # -40.62
                "deal_size": 200 * math.log(1.5) / LN3,  # 73.81
                "cycle_time": 200 * math.log(1.25) / LN3,  # 40.62; the four add up to 200
            },
            id="all-four-move",
        ),
        pytest.param(
            # V0 = V1 = 100: L = 100; x2 open deals (+100 ln 2), cycle 50 -> 100 (-100 ln 2)
            factors(10, 0.5, 1000.0, 50.0),
            factors(20, 0.5, 1000.0, 100.0),
            {"open_deals": 100 * LN2, "win_rate": 0, "deal_size": 0, "cycle_time": -100 * LN2},
            id="two-moves-that-cancel",
        ),
        pytest.param(
            factors(7, 0.25, 1234.5, 12.5),
            factors(7, 0.25, 1234.5, 12.5),
            {"open_deals": 0, "win_rate": 0, "deal_size": 0, "cycle_time": 0},
            id="equal-periods",
        ),
        pytest.param(
            # V0 = 2 x 1 x 1234.5 / 30 = 82.3 and V1 = 1 x 2/3 x 1234.5 / 10 = 82.3, equal on
            # paper but one unit in the last place apart in floating point: L = 82.3;
            # 82.3 ln(1/2) + 82.3 ln(2/3) + 82.3 ln 3 = 82.3 ln 1 = 0
            factors(2, 1.0, 1234.5, 30.0),
            factors(1, 2 / 3, 1234.5, 10.0),
            {
                "open_deals": 82.3 * math.log(0.5),
                "win_rate": 82.3 * math.log(2 / 3),
                "deal_size": 0,
                "cycle_time": 82.3 * LN3,
            },
            id="equal-velocities-from-different-factors",
        ),
    ],
)
def test_velocity_split_puts_each_factors_log_change_on_it(before, now, expected):
    effects, reason = velocity_split(before, now)
    assert reason == ""
    assert effects == {d: pytest.approx(e, rel=1e-9, abs=1e-9) for d, e in expected.items()}


@pytest.mark.parametrize(
    ("before", "now", "reason"),
    [
        pytest.param(
            factors(10, 0.5, 1000.0, 50.0),
            factors(10, 0.0, NAN, 50.0),
            "win rate is 0 in this period: no split",
            id="nothing-won-now",
        ),
        pytest.param(
            factors(0, 0.5, 1000.0, 50.0),
            factors(10, 0.5, 1000.0, 50.0),
            "open deals is 0 in the earlier period: no split",
            id="no-open-deals-before",
        ),
        pytest.param(
            factors(10, 0.5, NAN, 50.0),
            factors(10, 0.5, 1000.0, 50.0),
            "deal size is n/a in the earlier period: no split",
            id="no-deal-size-before",
        ),
        pytest.param(
            factors(10, 0.5, 1000.0, 50.0),
            factors(10, 0.5, 1000.0, 0.0),
            "cycle time is 0 in this period: no split",
            id="zero-cycle-now",
        ),
    ],
)
def test_velocity_has_no_split_when_a_factor_is_zero_or_na(before, now, reason):
    assert velocity_split(before, now) == ({}, reason)


# ---------------------------------------------------------------------------------------------
# compute_drivers through compute_cube: revenue
# ---------------------------------------------------------------------------------------------


def test_a_won_deal_without_an_amount_counts_in_neither_deal_count_nor_deal_size():
    table = drivers(
        [
            won("S1", "2026-09-15", 1000, "r1"),
            won("S2", "2026-09-16", None, "r1"),  # no amount: not a deal of n0
            won("O1", "2026-10-15", 600, "r1"),
            won("O2", "2026-10-16", 800, "r2"),
            won("O3", "2026-10-17", None, "r3"),  # no amount: not a deal of n1
        ]
    )
    # company: n0 = 1, s0 = 1000; n1 = 2, s1 = 700; revenue 1000 -> 1400
    # deals_won = (2 - 1)(1000 + 700)/2 = 850; deal_size = (700 - 1000)(1 + 2)/2 = -450
    assert effects(table) == {
        "deals_won": same(850),
        "deal_size": same(-450),
        "team:east": same(400),  # 1000 -> 1400
        "team:west": same(0),  # O3 carries no amount: 0 -> 0
    }
    # r1: one deal of 1000 -> one of 600; r3: no deal with an amount on either side
    assert effects(table, scope="rep", scope_id="r1") == {
        "deals_won": same(0),
        "deal_size": same(-400),
    }
    assert effects(table, scope="rep", scope_id="r3") == {"deals_won": 0, "deal_size": 0}


def test_a_single_deal_after_an_empty_month_is_all_deal_count():
    table = drivers([won("O1", "2026-10-15", 1200, "r3")])
    # n0 = 0 takes s0 = s1 = 1200: deals_won = (1 - 0)(1200 + 1200)/2 = 1200
    assert effects(table) == {
        "deals_won": same(1200),
        "deal_size": same(0),
        "team:east": same(0),
        "team:west": same(1200),
    }
    assert effects(table, scope="team", scope_id="west") == {
        "deals_won": same(1200),
        "deal_size": same(0),
        "rep:r3": same(1200),
    }


def month_of_deals(month: str) -> list[dict]:
    """The same month twice over: r1 wins 1000 and 3000 and loses one, r3 wins 2000."""
    return [
        won(f"{month}-W1", f"{month}-15", 1000, "r1"),
        won(f"{month}-W2", f"{month}-20", 3000, "r1"),
        lost(f"{month}-L1", f"{month}-18", 500, "r1"),
        won(f"{month}-W3", f"{month}-25", 2000, "r3"),
    ]


def test_equal_periods_have_every_effect_zero():
    long_open = [opp("X1", "r1", created_at="2026-01-10"), opp("X2", "r1", created_at="2026-01-10")]
    table = drivers([*long_open, *month_of_deals(SEP), *month_of_deals(OCT)])
    previous = table[table["compared_with"] == "previous"]
    revenue = previous[previous["kpi"] == "revenue"]
    assert set(revenue["effect"]) == {0.0}
    assert set(revenue["driver"]) == {
        "deals_won",
        "deal_size",
        "team:east",
        "team:west",
        "rep:r1",
        "rep:r2",
        "rep:r3",
    }
    # company: 2 open at the start of both months, 3 of 4 won, 2000 a deal, 10 days: 300 a day
    assert effects(previous, "sales_velocity") == {
        "open_deals": 0,
        "win_rate": 0,
        "deal_size": 0,
        "cycle_time": 0,
    }


def test_team_and_rep_contributions_add_up_to_the_scopes_revenue_change():
    table = drivers(
        [
            won("S1", "2026-09-10", 1000, "r1"),
            won("S2", "2026-09-12", 2000, "r3"),
            won("O1", "2026-10-10", 1500, "r1"),
            won("O2", "2026-10-11", 700, "r2"),
            won("O3", "2026-10-12", 500, "r3"),
        ]
    )
    # company 3000 -> 2700; east 1000 -> 2200, west 2000 -> 500
    # n0 = 2, s0 = 1500; n1 = 3, s1 = 900: deals_won = (3 - 2)(1500 + 900)/2 = 1200,
    # deal_size = (900 - 1500)(2 + 3)/2 = -1500; 1200 - 1500 = -300
    assert effects(table) == {
        "deals_won": same(1200),
        "deal_size": same(-1500),
        "team:east": same(1200),
        "team:west": same(-1500),
    }
    east = effects(table, scope="team", scope_id="east")
    assert {d: e for d, e in east.items() if d.startswith("rep:")} == {
        "rep:r1": same(500),  # 1000 -> 1500
        "rep:r2": same(700),  # 0 -> 700
    }
    west = effects(table, scope="team", scope_id="west")
    assert {d: e for d, e in west.items() if d.startswith("rep:")} == {"rep:r3": same(-1500)}
    assert "unassigned" not in set(table["driver"])  # every rep's revenue is in a team


def test_year_ago_compares_with_the_same_month_a_year_earlier():
    table = drivers(
        [
            won("Y1", "2025-10-10", 500, "r1"),
            won("Y2", "2025-10-20", 500, "r1"),
            won("O1", "2026-10-15", 3000, "r1"),
        ]
    )
    # 2025-10: n0 = 2, s0 = 500 (1000); 2026-10: n1 = 1, s1 = 3000
    # deals_won = (1 - 2)(500 + 3000)/2 = -1750; deal_size = (3000 - 500)(2 + 1)/2 = 3750
    assert effects(table, compared_with="year_ago") == {
        "deals_won": same(-1750),
        "deal_size": same(3750),
        "team:east": same(2000),
        "team:west": same(0),
    }
    # September 2026 had no deal: all of the 3000 is deal count
    assert effects(table)["deals_won"] == same(3000)
    assert effects(table)["deal_size"] == same(0)


def test_a_quarter_compares_with_the_previous_quarter():
    table = drivers(
        [
            won("Q3", "2026-08-10", 1000, "r1"),
            won("Q4a", "2026-10-10", 1000, "r1"),
            won("Q4b", "2026-11-10", 2000, "r1"),
        ],
        period="2026-Q4",
    )
    # Q3: 1 deal of 1000; Q4 (to Nov 28): 2 deals of 1500
    # deals_won = (2 - 1)(1000 + 1500)/2 = 1250; deal_size = (1500 - 1000)(1 + 2)/2 = 750
    assert set(table["period"]) == {"2026-Q4"}
    assert effects(table)["deals_won"] == same(1250)
    assert effects(table)["deal_size"] == same(750)


def test_a_source_without_amounts_has_no_drivers():
    # revenue, deal size and so velocity are unavailable: no rows, rather than rows of n/a
    deals = frame("opportunities", [won("O1", "2026-10-15", 1000), won("S1", "2026-09-15", 900)])
    table = drivers(deals.drop(columns="amount"))
    assert table.empty
    assert list(table.columns) == [
        "period",
        "scope",
        "scope_id",
        "kpi",
        "compared_with",
        "driver",
        "effect",
        "note",
    ]


def test_revenue_that_belongs_to_no_member_shows_as_unassigned():
    # A hand-written cube (the loaders refuse a rep of an unknown team, so real data cannot
    # hold this): the company 1000 -> 1500, its only team east 1000 -> 1200.
    rows = [
        (label, scope, scope_id, "revenue", value, NAN)
        for label, values in ((SEP, (1000.0, 1000.0)), (OCT, (1500.0, 1200.0)))
        for (scope, scope_id), value in zip(
            (("company", "all"), ("team", "east")), values, strict=True
        )
    ]
    cube = pd.DataFrame(
        rows, columns=["period", "scope", "scope_id", "kpi", "value", "denominator"]
    )
    reps = pd.DataFrame({"rep_id": ["r1"], "team_id": ["east"]})
    table = compute_drivers(cube, Period.parse(OCT), reps)
    assert effects(table) == {
        "deals_won": 0,  # no deal counts in this cube: the bridge has nothing to split
        "deal_size": 0,
        "team:east": same(200),
        "unassigned": same(300),  # 500 - 200
    }
    assert set(table["compared_with"]) == {"previous"}  # the cube lacks 2025-10


# ---------------------------------------------------------------------------------------------
# compute_drivers through compute_cube: sales velocity
# ---------------------------------------------------------------------------------------------


def velocity_world(september_win=True) -> list[dict]:
    """Open at the start of September: X1, X2 (created in August); of October: also X3, X4.

    September: W1 won 1000 (created Sep 5, closed Sep 15: 10 days), L1 lost. October: W2 won
    1500 (10 days), L2 lost. So September: 2 open, 1/2 won, 1000, 10 days -> V0 = 100 a day;
    October: 4 open, 1/2 won, 1500, 10 days -> V1 = 300 a day.
    """
    return [
        opp("X1", "r1", created_at="2026-08-01"),
        opp("X2", "r1", created_at="2026-08-01"),
        opp("X3", "r2", created_at="2026-09-10"),
        opp("X4", "r2", created_at="2026-09-10"),
        won("W1", "2026-09-15", 1000, "r1")
        if september_win
        else lost("W1", "2026-09-15", 1000, "r1"),
        lost("L1", "2026-09-20", None, "r1"),
        won("W2", "2026-10-15", 1500, "r1"),
        lost("L2", "2026-10-20", None, "r1"),
    ]


def test_velocity_split_through_the_cube_is_the_log_mean_divisia_by_hand():
    table = drivers(velocity_world())
    # L(300, 100) = 200 / ln 3; open deals x2, win rate x1, deal size x1.5, cycle x1
    assert effects(table, "sales_velocity") == {
        "open_deals": same(200 * LN2 / LN3),  # 126.19
        "win_rate": same(0),
        "deal_size": same(200 * math.log(1.5) / LN3),  # 73.81, adding up to 300 - 100
        "cycle_time": same(0),
    }
    assert pick(table, "sales_velocity")["note"].tolist() == [""] * 4


def test_velocity_without_a_split_is_one_row_whose_note_says_why():
    table = drivers(velocity_world(september_win=False))
    rows = pick(table, "sales_velocity")  # nothing won in September: win rate 0
    assert rows["driver"].tolist() == [""]
    assert math.isnan(rows["effect"].iloc[0])
    assert rows["note"].tolist() == ["win rate is 0 in 2026-09: no split"]
    # a year earlier nothing was open: the note names that month
    assert pick(table, "sales_velocity", compared_with="year_ago")["note"].tolist() == [
        "open deals is 0 in 2025-10: no split"
    ]


# ---------------------------------------------------------------------------------------------
# python -m kpi_lib drivers
# ---------------------------------------------------------------------------------------------

DRIVERS_CSV_COLUMNS = [
    "period",
    "scope",
    "scope_id",
    "kpi",
    "compared_with",
    "driver",
    "effect",
    "note",
]
CLI_DEALS = [
    won("S1", "2026-09-15", 1000, "r1"),
    won("S2", "2026-09-16", None, "r1"),
    won("O1", "2026-10-15", 600, "r1"),
    won("O2", "2026-10-16", 800, "r2"),
]


def write_crm(folder, opportunities=CLI_DEALS):
    folder.mkdir(parents=True, exist_ok=True)
    for name, rows in {"teams": TEAMS, "reps": REPS, "opportunities": opportunities}.items():
        frame(name, rows).to_csv(folder / f"{name}.csv", index=False)
    return folder


def run(argv, capsys) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def read_drivers(text: str) -> pd.DataFrame:
    return pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)


def test_drivers_command_prints_the_documented_columns(tmp_path, capsys):
    folder = write_crm(tmp_path / "crm")
    code, out, err = run(
        ["drivers", "--source", str(folder), "--period", OCT, "--as-of", AS_OF], capsys
    )
    assert code == 0, err
    table = read_drivers(out)
    assert list(table.columns) == DRIVERS_CSV_COLUMNS
    company = table[
        (table["scope"] == "company")
        & (table["kpi"] == "revenue")
        & (table["compared_with"] == "previous")
    ]
    # n0 = 1, s0 = 1000 (S2 has no amount); n1 = 2, s1 = 700: +850 from count, -450 from size
    assert dict(zip(company["driver"], company["effect"].astype(float), strict=True)) == {
        "deals_won": 850,
        "deal_size": -450,
        "team:east": 400,
        "team:west": 0,
    }
    velocity = table[(table["kpi"] == "sales_velocity") & (table["scope"] == "company")]
    assert velocity["effect"].tolist() == ["", ""]  # no split: n/a is empty, never 0
    assert velocity["note"].tolist() == [
        "open deals is 0 in 2026-09: no split",
        "open deals is 0 in 2025-10: no split",
    ]


def test_drivers_out_writes_the_file_and_says_so(tmp_path, capsys):
    folder = write_crm(tmp_path / "crm")
    path = tmp_path / "out" / "drivers.csv"
    argv = ["drivers", "--source", str(folder), "--period", OCT, "--as-of", AS_OF]
    code, out, err = run([*argv, "--out", str(path)], capsys)
    assert code == 0, err
    assert out == ""
    table = read_drivers(path.read_text())
    assert list(table.columns) == DRIVERS_CSV_COLUMNS
    assert f"wrote {len(table)} rows to {path}" in err


@pytest.mark.parametrize("period", ["2026-13", "2026-Q5", "Oct", "2026-09:2026-10"])
def test_drivers_bad_period_exits_2_naming_it(tmp_path, capsys, period):
    folder = write_crm(tmp_path / "crm")
    code, out, err = run(
        ["drivers", "--source", str(folder), "--period", period, "--as-of", AS_OF], capsys
    )
    assert code == 2, err
    assert err.startswith("error: ") and period in err
    assert "Traceback" not in err and out == ""


def test_drivers_missing_source_exits_2_naming_the_path(tmp_path, capsys):
    nowhere = tmp_path / "nowhere"
    code, out, err = run(
        ["drivers", "--source", str(nowhere), "--period", OCT, "--as-of", AS_OF], capsys
    )
    assert code == 2, err
    assert str(nowhere) in err and "Traceback" not in err and out == ""


# ---------------------------------------------------------------------------------------------
# Properties: every decomposition adds up to its total
# ---------------------------------------------------------------------------------------------


def adds_up(parts, total, *levels) -> bool:
    """``sum(parts) == total`` within 1e-9 of the figures compared (levels: the two sides)."""
    scale = max((abs(x) for x in (total, *levels)), default=0.0)
    return math.isclose(math.fsum(parts), total, rel_tol=1e-9, abs_tol=1e-9 * max(scale, 1.0))


counts = st.integers(0, 5_000)
sizes = st.floats(0.01, 1e7, allow_nan=False)


@settings(max_examples=300, deadline=None)
@given(counts, sizes, counts, sizes)
def test_revenue_bridge_adds_up_to_the_revenue_change(n0, s0, n1, s1):
    s0, s1 = (NAN if n == 0 else s for n, s in ((n0, s0), (n1, s1)))  # no deals: no average
    split = revenue_bridge(n0, s0, n1, s1)
    r0, r1 = n0 * (0 if n0 == 0 else s0), n1 * (0 if n1 == 0 else s1)
    assert adds_up(split.values(), r1 - r0, r0, r1), (split, r1 - r0)


velocity_factors = st.builds(
    factors,
    st.integers(1, 10_000).map(float),
    st.integers(1, 1_000).flatmap(lambda closed: st.integers(1, closed).map(lambda w: w / closed)),
    st.floats(1.0, 1e7, allow_nan=False),
    st.floats(0.01, 1_000.0, allow_nan=False),
)


def velocity(x: dict[str, float]) -> float:
    return x["open_deals"] * x["win_rate"] * x["deal_size"] / x["cycle_time"]


@settings(max_examples=300, deadline=None)
@given(velocity_factors, velocity_factors)
def test_velocity_split_adds_up_to_the_velocity_change(before, now):
    split, reason = velocity_split(before, now)
    assert reason == ""
    v0, v1 = velocity(before), velocity(now)
    assert adds_up(split.values(), v1 - v0, v0, v1), (split, v1 - v0)


@settings(max_examples=300, deadline=None)
@given(velocity_factors, st.integers(2, 12))
def test_velocity_equal_on_paper_through_other_factors_splits_into_effects_that_cancel(before, k):
    # k times the open deals over a k times longer cycle: the same velocity on paper, often a
    # unit in the last place apart in floating point; the effects are +-V ln k and add up to ~0
    now = {**before, "open_deals": before["open_deals"] * k, "cycle_time": before["cycle_time"] * k}
    split, reason = velocity_split(before, now)
    assert reason == ""
    v = velocity(before)
    assert split["open_deals"] == pytest.approx(v * math.log(k), rel=1e-9)
    assert split["cycle_time"] == pytest.approx(-v * math.log(k), rel=1e-9)
    assert adds_up(split.values(), velocity(now) - v, v), split


MONTHS = [p.start_time for p in pd.period_range("2025-09", "2026-10", freq="M")]


@st.composite
def little_orgs(draw) -> dict[str, list[dict]]:
    """1-3 teams, 1-4 reps, 2-14 deals won, lost or open between September 2025 and October
    2026, amounts of any size or none."""
    teams = [{"team_id": f"t{i}", "team_name": f"T{i}"} for i in range(draw(st.integers(1, 3)))]
    reps = [
        {
            "rep_id": f"r{i}",
            "rep_name": f"Rep {i}",
            "team_id": draw(st.sampled_from(teams))["team_id"],
        }
        for i in range(draw(st.integers(1, 4)))
    ]
    deals = []
    for i in range(draw(st.integers(2, 14))):
        month = draw(st.sampled_from(MONTHS))
        closed = month + pd.Timedelta(hours=draw(st.integers(0, 27 * 24)))
        created = closed - pd.Timedelta(hours=draw(st.integers(1, 120 * 24)))
        state = draw(st.sampled_from(["won", "won", "lost", "open"]))
        deals.append(
            opp(
                f"o{i}",
                draw(st.sampled_from(reps))["rep_id"],
                created_at=str(created),
                closed_at=None if state == "open" else str(closed),
                is_won=state == "won",
                amount=draw(st.none() | st.integers(0, 100_000).map(float)),
            )
        )
    return {"teams": teams, "reps": reps, "opportunities": deals}


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(little_orgs())
def test_drivers_of_any_little_org_add_up_to_the_cubes_changes(org):
    src = source(org["opportunities"], teams=org["teams"], reps=org["reps"])
    p = Period.parse(OCT)
    cube = kpi_lib.compute_cube(src, drivers_periods(p), as_of=AS_OF, targets={}, settings={})
    table = compute_drivers(cube, p, src.frame("reps"))
    figure = cube.set_index(["period", "scope", "scope_id", "kpi"])["value"].astype("float64")
    scopes = cube.loc[cube["period"] == OCT, ["scope", "scope_id"]].drop_duplicates()
    for (scope, scope_id), other in (
        (key, other)
        for key in scopes.itertuples(index=False)
        for other in (("previous", SEP), ("year_ago", "2025-10"))
    ):
        compared_with, label = other
        where = (scope, scope_id, compared_with)
        r0, r1 = (
            figure[(label, scope, scope_id, "revenue")],
            figure[(OCT, scope, scope_id, "revenue")],
        )
        split = effects(table, "revenue", scope, scope_id, compared_with)
        bridge = [split.pop("deals_won"), split.pop("deal_size")]
        assert adds_up(bridge, r1 - r0, r0, r1), (where, bridge, r1 - r0)
        if scope == "rep":
            assert split == {}, where
        else:  # every team's, every rep's revenue change, and nothing unassigned
            assert adds_up(split.values(), r1 - r0, r0, r1), (where, split, r1 - r0)
            assert "unassigned" not in split, where
        rows = pick(table, "sales_velocity", scope, scope_id, compared_with)
        v0 = figure[(label, scope, scope_id, "sales_velocity")]
        v1 = figure[(OCT, scope, scope_id, "sales_velocity")]
        if (rows["note"] != "").any():
            assert len(rows) == 1 and math.isnan(rows["effect"].iloc[0]), where
            assert math.isnan(v0) or math.isnan(v1) or 0 in (v0, v1), (where, v0, v1)
        else:
            assert adds_up(rows["effect"], v1 - v0, v0, v1), (where, rows["effect"], v1 - v0)

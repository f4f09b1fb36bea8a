"""Whether a figure moved for real (``kpi_lib.metrics.ranges``) as given/expect tables, by hand.

- Normal range of a month M: the median of the KPI's values in the 12 months before M, plus or
  minus 2 x 1.4826 x their median absolute deviation (MAD) = 2.9652 MAD, when at least 6 of
  those months have a value; months before the org's data starts have none.
- Significant change of a rate on P-1: pooled two-proportion z-test, two-sided, p < 0.05:
  ``p = (x1 + x0) / (n1 + n0)``, ``z = (x1/n1 - x0/n0) / sqrt(p (1 - p) (1/n1 + 1/n0))``.
- Wilson interval of x / n at 95% (z = 1.96).

Unless a case says otherwise: reps r1 and r2 in team east, r3 in team west (conftest), as_of
2026-11-28, each deal created ten days before it closes.
"""

from __future__ import annotations

import math
import statistics

import numpy as np
import pandas as pd
import pytest
from conftest import CONTRACT_COLUMNS, cube, lost, row, same, source, won
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import binomtest, norm

import kpi_lib
from kpi_lib.cli import main
from kpi_lib.metrics.ranges import (
    is_unusual,
    normal_range,
    normal_ranges,
    two_proportion_p,
    wilson_interval,
)

NAN = math.nan
OCT = "2026-10"
WIDTH = 2 * 1.4826  # 2.9652: two robust standard deviations, in MADs


def band(c, kpi, period=OCT, scope="company", scope_id="all") -> tuple[float, float]:
    r = row(c, kpi, period, scope, scope_id)
    return float(r["band_low"]), float(r["band_high"])


def wins(counts: dict[str, int], rep="r1") -> list[dict]:
    """``counts[month]`` deals won by ``rep`` in each month (closed on the 15th, 1000 each)."""
    return [
        won(f"{rep}-{month}-{i}", f"{month}-15 {9 + i:02d}:00", 1000, rep)
        for month, n in counts.items()
        for i in range(n)
    ]


def months(first: str, last: str) -> list[str]:
    return [str(p) for p in pd.period_range(first, last, freq="M")]


# ---------------------------------------------------------------------------------------------
# normal_range: median +/- 2.9652 MAD of the 12 months before, 6 of them needed
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("history", "low", "high"),
    [
        pytest.param(
            # sorted 9 10 10 10 11 11 11 12 12 12 13 14: median 11; deviations sorted
            # 0 0 0 1 1 1 1 1 1 2 2 3: MAD 1 -> 11 -/+ 2.9652
            [10, 12, 11, 13, 9, 10, 12, 11, 10, 14, 11, 12],
            11 - WIDTH,
            11 + WIDTH,
            id="twelve-months",
        ),
        pytest.param(
            # one wild month moves neither the median (10) nor the MAD (0)
            [10] * 11 + [1000],
            10,
            10,
            id="one-odd-month-cannot-drag-it",
        ),
        pytest.param(
            # 6 values: median (3 + 4)/2 = 3.5; deviations .5 .5 1.5 1.5 2.5 2.5: MAD 1.5;
            # 3.5 -/+ 4.4478 (a count's range may reach below zero)
            [NAN] * 6 + [1, 2, 3, 4, 5, 6],
            3.5 - 1.5 * WIDTH,
            3.5 + 1.5 * WIDTH,
            id="six-months-are-enough",
        ),
        pytest.param([NAN] * 7 + [1, 2, 3, 4, 5], NAN, NAN, id="five-months-are-not"),
        pytest.param([NAN] * 12, NAN, NAN, id="no-months"),
        pytest.param([5.0] * 6, 5, 5, id="a-figure-that-never-moved"),
    ],
)
def test_normal_range_is_the_median_plus_minus_two_robust_standard_deviations(history, low, high):
    assert normal_range(history) == (same(low), same(high))


@pytest.mark.parametrize(
    ("value", "low", "high", "unusual"),
    [
        pytest.param(5.0, 5.0, 5.0, False, id="on-a-one-value-range"),
        pytest.param(6.0, 5.0, 6.0, False, id="on-the-high-edge"),
        pytest.param(5.0, 5.0, 6.0, False, id="on-the-low-edge"),
        pytest.param(6.000001, 5.0, 6.0, True, id="just-above"),
        pytest.param(4.999999, 5.0, 6.0, True, id="just-below"),
        pytest.param(NAN, 5.0, 6.0, False, id="no-value"),
        pytest.param(100.0, NAN, NAN, False, id="no-range"),
    ],
)
def test_a_value_is_unusual_only_strictly_outside_its_range(value, low, high, unusual):
    assert bool(is_unusual(value, low, high)) is unusual


# ---------------------------------------------------------------------------------------------
# Bands through compute_cube
# ---------------------------------------------------------------------------------------------

# r1's deals won, October 2025 to September 2026, then 5 in October 2026.
# sorted 2 2 2 2 3 3 3 3 3 3 4 5: median 3; deviations 0 x6, 1 x5, 2: MAD (0 + 1)/2 = 0.5
# -> 3 -/+ 0.5 x 2.9652 = [1.5174, 4.4826]
TWELVE = dict(zip(months("2025-10", "2026-09"), [2, 3, 2, 4, 3, 2, 3, 3, 2, 5, 3, 3], strict=True))


@pytest.fixture(scope="module")
def twelve_months():
    return cube("2026-09:2026-10", wins({**TWELVE, OCT: 5}))


def test_band_of_a_month_reads_the_twelve_months_before_it(twelve_months):
    c = twelve_months
    for scope, scope_id in (("company", "all"), ("team", "east"), ("rep", "r1")):
        assert band(c, "deals_won", OCT, scope, scope_id) == (
            same(3 - 0.5 * WIDTH),
            same(3 + 0.5 * WIDTH),
        )
        assert row(c, "deals_won", OCT, scope, scope_id)["unusual"]  # 5 > 4.4826
    # team west never won a deal: twelve zeros, range [0, 0], and 0 is not unusual
    assert band(c, "deals_won", OCT, "team", "west") == (0, 0)
    assert not row(c, "deals_won", OCT, "team", "west")["unusual"]


def test_each_month_of_a_range_has_its_own_window(twelve_months):
    # September 2026 reads September 2025 (before the data: no value) to August 2026, 11 months
    # sorted 2 2 2 2 3 3 3 3 3 4 5: median 3; deviations 0 x5, 1 x5, 2: MAD 1 -> 3 -/+ 2.9652
    assert band(twelve_months, "deals_won", "2026-09") == (same(3 - WIDTH), same(3 + WIDTH))
    assert not row(twelve_months, "deals_won", "2026-09")["unusual"]  # 3


def test_a_band_needs_six_months_with_a_value():
    six = cube(OCT, wins(dict.fromkeys(months("2026-04", "2026-10"), 2)))
    assert band(six, "deals_won") == (2, 2)  # April to September: six months of 2
    five = cube(OCT, wins(dict.fromkeys(months("2026-05", "2026-10"), 2)))
    assert five.attrs["data_start"] == "2026-05"  # deals created May 5
    low, high = band(five, "deals_won")  # May to September: five months
    assert math.isnan(low) and math.isnan(high)
    assert not row(five, "deals_won", OCT)["unusual"]


def test_months_before_the_data_starts_do_not_count_but_empty_months_after_do():
    deals = wins(dict.fromkeys(months("2026-05", "2026-10"), 2))
    # An activity in January 2025 starts the data there: October 2025 to April 2026 are seven
    # months of 0 deals, May to September five of 2: median 0, MAD 0 -> [0, 0], and 2 is unusual
    early = [
        {
            "activity_id": "A1",
            "rep_id": "r2",
            "occurred_at": "2025-01-20",
            "activity_type": "call",
        }
    ]
    c = cube(OCT, deals, activities=early)
    assert c.attrs["data_start"] == "2025-01"
    assert band(c, "deals_won") == (0, 0)
    assert row(c, "deals_won", OCT)["unusual"]


@pytest.mark.parametrize(
    ("october", "unusual"),
    [
        pytest.param(2, False, id="on-both-edges"),
        pytest.param(3, True, id="one-above"),
        pytest.param(1, True, id="one-below"),
    ],
)
def test_a_month_is_unusual_only_outside_its_range(october, unusual):
    # April to September: 2 deals each month -> median 2, MAD 0, range [2, 2]
    c = cube(OCT, wins({**dict.fromkeys(months("2026-04", "2026-09"), 2), OCT: october}))
    assert band(c, "deals_won") == (2, 2)
    assert bool(row(c, "deals_won", OCT)["unusual"]) is unusual


def test_a_month_not_over_on_the_report_date_is_never_unusual():
    # April to September: 2 a month, range [2, 2]; October so far (to the 20th): 3 deals
    deals = wins({**dict.fromkeys(months("2026-04", "2026-09"), 2), OCT: 3})
    running = cube(OCT, deals, as_of="2026-10-20")
    assert band(running, "deals_won") == (2, 2)  # the range is there, the judgement is not
    assert not running["unusual"].any()
    assert row(cube(OCT, deals, as_of="2026-10-31"), "deals_won", OCT)["unusual"]  # whole month


def test_a_cube_without_ranges_has_the_contracts_columns_only():
    c = kpi_lib.compute_cube(
        source(wins(TWELVE)), OCT, as_of="2026-11-28", targets={}, settings={}, with_ranges=False
    )
    assert list(c.columns) == CONTRACT_COLUMNS


def test_unusual_is_false_without_a_value(twelve_months):
    r = row(twelve_months, "win_rate", OCT, "rep", "r2")  # r2 closed nothing: n/a
    assert math.isnan(r["value"]) and not r["unusual"]


@pytest.mark.parametrize("period", ["2026-Q4", "2026"])
def test_quarters_and_years_have_no_band(period):
    c = cube(period, wins({**TWELVE, OCT: 5}))
    assert c["band_low"].isna().all() and c["band_high"].isna().all()
    assert not c["unusual"].any()


# ---------------------------------------------------------------------------------------------
# two_proportion_p: pooled two-sided z-test of a rate's change
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x1", "n1", "x0", "n0", "p"),
    [
        # pooled 10/20 = 0.5; z = 0.6 / sqrt(0.25 x 0.2) = 2.6833; p = 2(1 - Phi(2.6833)) = 0.00729
        pytest.param(8, 10, 2, 10, 0.00729, id="8-of-10-against-2-of-10"),
        # pooled 45/200 = 0.225; z = 0.15 / sqrt(0.225 x 0.775 x 0.02) = 2.5400;
        # p = 2 x 0.0055426 (the normal tail beyond 2.54) = 0.011085
        pytest.param(30, 100, 15, 100, 0.011085, id="30-of-100-against-15-of-100"),
        # pooled 0.5; z = 0.2 / 0.2236 = 0.8944; p = 2(1 - Phi(0.8944)) = 0.37109
        pytest.param(6, 10, 4, 10, 0.37109, id="6-of-10-against-4-of-10"),
        pytest.param(3, 10, 6, 20, 1.0, id="the-same-rate"),
    ],
)
def test_two_proportion_p_by_hand(x1, n1, x0, n0, p):
    assert two_proportion_p(x1, n1, x0, n0) == pytest.approx(p, abs=5e-6)


@pytest.mark.parametrize(
    ("x1", "n1", "x0", "n0", "p"),
    [
        pytest.param(0, 5, 0, 7, 1.0, id="nothing-won-either-side-pools-to-0"),
        pytest.param(5, 5, 7, 7, 1.0, id="everything-won-either-side-pools-to-1"),
        pytest.param(3, 5, 0, 0, NAN, id="nothing-closed-before"),
        pytest.param(0, 0, 3, 5, NAN, id="nothing-closed-now"),
        pytest.param(3, 5, NAN, NAN, NAN, id="no-earlier-figures"),
    ],
)
def test_two_proportion_p_is_1_when_pooled_0_or_1_and_na_without_cases(x1, n1, x0, n0, p):
    assert two_proportion_p(x1, n1, x0, n0) == same(p)


def test_two_proportion_p_takes_arrays():
    got = two_proportion_p([8, 0, 3], [10, 5, 5], [2, 0, 1], [10, 7, 0])
    assert got.tolist() == [pytest.approx(0.00729, abs=5e-6), 1.0, same(NAN)]


# ---------------------------------------------------------------------------------------------
# change_significant through compute_cube
# ---------------------------------------------------------------------------------------------


def closed(month: str, n_won: int, n_lost: int, rep="r1") -> list[dict]:
    return [won(f"{rep}-{month}-W{i}", f"{month}-{10 + i:02d}", 100, rep) for i in range(n_won)] + [
        lost(f"{rep}-{month}-L{i}", f"{month}-{10 + i:02d}", None, rep) for i in range(n_lost)
    ]


@pytest.mark.parametrize(
    ("september", "october", "significant"),
    [
        # 9 of 10 against 1 of 10: pooled 0.5, z = 0.8 / 0.2236 = 3.578, p = 0.00035
        pytest.param((1, 9), (9, 1), True, id="1-of-10-to-9-of-10"),
        # 6 of 10 against 4 of 10: p = 0.371
        pytest.param((4, 6), (6, 4), False, id="4-of-10-to-6-of-10"),
        pytest.param((0, 5), (0, 5), False, id="nothing-won-either-month"),
        pytest.param((3, 0), (2, 0), False, id="everything-won-either-month"),
        pytest.param((0, 0), (3, 1), None, id="nothing-closed-in-september"),
    ],
)
def test_win_rate_change_is_significant_when_the_z_test_says_so(september, october, significant):
    c = cube(OCT, closed("2026-09", *september) + closed(OCT, *october))
    for scope, scope_id in (("company", "all"), ("team", "east"), ("rep", "r1")):
        got = row(c, "win_rate", OCT, scope, scope_id)["change_significant"]
        assert (None if pd.isna(got) else bool(got)) is significant, scope_id
    assert pd.isna(row(c, "win_rate", OCT, "team", "west")["change_significant"])  # no deals


def test_only_the_four_rates_are_tested(twelve_months):
    tested = {"win_rate", "lead_conversion_rate", "retention_rate", "churn_rate"}
    untested = twelve_months[~twelve_months["kpi"].isin(tested)]
    assert untested["change_significant"].isna().all()
    assert str(twelve_months["change_significant"].dtype) == "boolean"


def test_churn_and_retention_carry_the_same_significance():
    # won deals stand in as revenue: a1..a4 buy in August and September, only a1 in October.
    # retention Sep 4 of 4, Oct 1 of 4: pooled 5/8, z = 0.75 / sqrt(0.625 x 0.375 x 0.5)
    # = 2.1909, p = 0.0285 -> significant; churn 0 of 4 -> 3 of 4 is the same test
    deals = [
        won(f"{a}-{month}", f"{month}-15", 100, account_id=a)
        for month, accounts in (
            ("2026-08", ["a1", "a2", "a3", "a4"]),
            ("2026-09", ["a1", "a2", "a3", "a4"]),
            (OCT, ["a1"]),
        )
        for a in accounts
    ]
    c = cube(OCT, deals)
    assert row(c, "retention_rate", OCT)["value"] == same(1 / 4)
    assert row(c, "retention_rate", OCT)["change_significant"]
    assert row(c, "churn_rate", OCT)["change_significant"]
    assert two_proportion_p(1, 4, 4, 4) == pytest.approx(0.0285, abs=5e-5)


def test_kpis_csv_writes_untested_significance_empty(tmp_path, capsys):
    from conftest import REPS, TEAMS, frame

    folder = tmp_path / "crm"
    folder.mkdir()
    deals = closed("2026-09", 1, 9) + closed(OCT, 9, 1)
    for name, rows in {"teams": TEAMS, "reps": REPS, "opportunities": deals}.items():
        frame(name, rows).to_csv(folder / f"{name}.csv", index=False)
    out = tmp_path / "kpis.csv"
    argv = ["kpis", "--source", str(folder), "--period", OCT, "--as-of", "2026-11-28"]
    assert main([*argv, "--out", str(out)]) == 0, capsys.readouterr().err
    table = pd.read_csv(out, dtype=str, keep_default_na=False).set_index(["scope_id", "kpi"])
    assert table.loc[("all", "win_rate"), "change_significant"] == "True"
    assert table.loc[("all", "revenue"), "change_significant"] == ""  # not tested: empty
    assert table.loc[("west", "win_rate"), "change_significant"] == ""  # nothing closed
    assert table.loc[("all", "revenue"), "unusual"] == "False"


# ---------------------------------------------------------------------------------------------
# wilson_interval
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("x", "n", "low", "high"),
    [
        # z^2 = 3.8415; centre = (0.8 + 3.8415/20) / (1 + 3.8415/10) = 0.71674;
        # half = 1.96 / 1.38415 x sqrt(0.8 x 0.2 / 10 + 3.8415/400) = 0.22658
        pytest.param(8, 10, 0.49016, 0.94332, id="8-of-10"),
        # centre = half = (3.8415/20) / 1.38415 = 0.13877: from 0 to 0.27753
        pytest.param(0, 10, 0.0, 0.27753, id="0-of-10-stays-at-0"),
        pytest.param(10, 10, 0.72247, 1.0, id="10-of-10-stays-at-1"),
        # centre = (0.5 + 3.8415/200) / 1.038415 = 0.5; half = 1.8875 x sqrt(0.0025 + 0.000096)
        pytest.param(50, 100, 0.40383, 0.59617, id="50-of-100"),
        pytest.param(0, 0, NAN, NAN, id="nothing-to-rate"),
    ],
)
def test_wilson_interval_by_hand(x, n, low, high):
    assert wilson_interval(x, n) == (
        pytest.approx(low, abs=5e-6, nan_ok=True),
        pytest.approx(high, abs=5e-6, nan_ok=True),
    )


# ---------------------------------------------------------------------------------------------
# Properties: against a plain implementation and against scipy
# ---------------------------------------------------------------------------------------------

month_values = st.one_of(
    st.just(NAN),
    st.integers(0, 50).map(float),
    st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False),
)


def plain_normal_range(history: list[float]) -> tuple[float, float]:
    """The definition, word for word, with the standard library."""
    values = [v for v in history if not math.isnan(v)]
    if len(values) < 6:
        return NAN, NAN
    median = statistics.median(values)
    mad = statistics.median(abs(v - median) for v in values)
    return median - 2 * 1.4826 * mad, median + 2 * 1.4826 * mad


@settings(max_examples=400, deadline=None)
@given(st.lists(month_values, min_size=12, max_size=12))
def test_normal_range_is_the_plain_definition(history):
    # the kit rounds each value to 12 significant digits first (ranges.steady: float noise of
    # the database's parallel sums must not make a range), so the two agree to about 1e-12 of
    # the largest value, not of the range's own end (median - 2.97 MAD may be near 0)
    scale = max([abs(v) for v in history if not math.isnan(v)], default=1.0)
    assert normal_range(history) == tuple(
        pytest.approx(v, rel=1e-12, abs=max(1e-9, 1e-11 * scale), nan_ok=True)
        for v in plain_normal_range(history)
    )


@settings(max_examples=100, deadline=None)
@given(st.lists(st.lists(month_values, min_size=12, max_size=12), min_size=1, max_size=8))
def test_normal_ranges_of_many_rows_are_each_rows_normal_range(rows):
    low, high = normal_ranges(np.array(rows))
    for i, history in enumerate(rows):
        assert (low[i], high[i]) == tuple(same(v) for v in normal_range(history))


@st.composite
def two_rates(draw):
    n1, n0 = draw(st.integers(1, 10_000)), draw(st.integers(1, 10_000))
    return draw(st.integers(0, n1)), n1, draw(st.integers(0, n0)), n0


@settings(max_examples=400, deadline=None)
@given(two_rates())
def test_two_proportion_p_agrees_with_scipys_normal_tail(rates):
    x1, n1, x0, n0 = rates
    pooled = (x1 + x0) / (n1 + n0)
    if pooled in (0, 1):
        expected = 1.0
    else:
        z = (x1 / n1 - x0 / n0) / math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
        expected = 2 * norm.sf(abs(z))
    assert two_proportion_p(x1, n1, x0, n0) == pytest.approx(expected, rel=1e-9, abs=1e-300)


@settings(max_examples=400, deadline=None)
@given(st.integers(1, 10_000).flatmap(lambda n: st.tuples(st.integers(0, n), st.just(n))))
def test_wilson_interval_agrees_with_scipy(case):
    x, n = case
    ci = binomtest(x, n).proportion_ci(confidence_level=0.95, method="wilson")
    assert wilson_interval(x, n) == (
        pytest.approx(ci.low, abs=1e-12),
        pytest.approx(ci.high, abs=1e-12),
    )


def test_float_noise_of_the_database_neither_widens_a_range_nor_makes_a_value_unusual():
    # 0.1 + 0.2 is 0.30000000000000004: the same rate summed in another order
    noisy = [0.3] * 6 + [0.1 + 0.2] * 6
    assert normal_range(noisy) == (0.3, 0.3)  # MAD 0, not 5.6e-17
    assert not is_unusual(0.1 + 0.2, 0.3, 0.3)
    assert is_unusual(0.3 + 1e-9, 0.3, 0.3)  # a real difference still counts

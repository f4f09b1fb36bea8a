"""KPI semantics of DESIGN.md section 4 as given/expect tables on 2-6 row CRMs.

Unless a case says otherwise: period 2026-10, as_of 2026-11-28, reps r1 and r2 in team east,
r3 in team west, all quota-carrying and always active. Arithmetic is in the comments.
"""

from __future__ import annotations

import math

import pandas as pd
import pytest
from conftest import (
    CONTRACT_COLUMNS,
    RANGE_COLUMNS,
    REPS,
    cube,
    lost,
    opp,
    parts,
    row,
    same,
    source,
    value,
    won,
)

import kpi_lib
from kpi_lib.errors import DataError, KpiKitError

NAN = math.nan
OCT = "2026-10"


# ---------------------------------------------------------------------------------------------
# qualified_leads: leads with qualified_at in P
# ---------------------------------------------------------------------------------------------


def lead(
    lead_id, qualified_at=None, *, owner_rep_id="r1", created_at="2026-09-01", opportunity_id=None
):
    return {
        "lead_id": lead_id,
        "owner_rep_id": owner_rep_id,
        "created_at": created_at,
        "qualified_at": qualified_at,
        "opportunity_id": opportunity_id,
    }


@pytest.mark.parametrize(
    ("leads", "expected"),
    [
        pytest.param(
            [lead("L1"), lead("L2", created_at="2026-10-05")],
            0,
            id="created-but-never-qualified-is-0",
        ),
        pytest.param(
            [
                lead("L1", "2026-10-02"),
                lead("L2", "2026-10-20"),
                lead("L3", "2026-10-21", created_at="2026-06-01"),
            ],
            3,
            id="qualified_at-decides-not-created_at",
        ),
        pytest.param(
            [lead("L1", "2026-10-31 23:59"), lead("L2", "2026-11-01 00:00")], 1, id="boundary-end"
        ),
        pytest.param(
            [lead("L1", "2026-10-01 00:00"), lead("L2", "2026-09-30 23:59")], 1, id="boundary-start"
        ),
        pytest.param(
            [lead("L1", "2026-11-03", created_at="2026-10-03")],
            0,
            id="created-in-P-qualified-later-is-0",
        ),
    ],
)
def test_qualified_leads_counts_leads_qualified_in_the_period(leads, expected):
    c = cube(OCT, leads=leads)
    assert value(c, "qualified_leads", OCT) == expected


def test_qualified_leads_by_owner_team_and_rep():
    leads = [
        lead("L1", "2026-10-02", owner_rep_id="r1"),
        lead("L2", "2026-10-03", owner_rep_id="r2"),
        lead("L3", "2026-10-04", owner_rep_id="r3"),
        lead("L4", "2026-10-05", owner_rep_id="r1"),
    ]
    c = cube(OCT, leads=leads)
    assert value(c, "qualified_leads", OCT) == 4
    assert value(c, "qualified_leads", OCT, "team", "east") == 3  # L1, L2, L4
    assert value(c, "qualified_leads", OCT, "team", "west") == 1
    assert value(c, "qualified_leads", OCT, "rep", "r1") == 2
    assert value(c, "qualified_leads", OCT, "rep", "r2") == 1


# ---------------------------------------------------------------------------------------------
# activities: activities with occurred_at in P, also per type (call, email, meeting, demo)
# ---------------------------------------------------------------------------------------------


def activity(activity_id, occurred_at, activity_type, rep_id="r1"):
    return {
        "activity_id": activity_id,
        "rep_id": rep_id,
        "occurred_at": occurred_at,
        "activity_type": activity_type,
    }


ACTIVITIES = [
    activity("A1", "2026-10-03 09:00", "call"),
    activity("A2", "2026-10-31 23:59", "call", "r3"),
    activity("A3", "2026-10-10", "email", "r2"),
    activity("A4", "2026-10-11", "meeting"),
    activity("A5", "2026-10-12", "demo", "r3"),
    activity("A6", "2026-10-13", "other"),
    activity("A7", "2026-11-01 00:00", "call"),  # November
    activity("A8", "2026-09-30 23:59", "email"),  # September
]


@pytest.mark.parametrize(
    ("kpi", "october", "august"),
    [
        ("activities", 6, 0),  # A1..A6; 'other' counts in the total only
        ("activities_call", 2, 0),  # A1, A2 (23:59 on the last day is still October)
        ("activities_email", 1, 0),  # A3 (A8 is September)
        ("activities_meeting", 1, 0),
        ("activities_demo", 1, 0),
    ],
)
def test_activities_count_by_type_in_the_period_and_zero_when_empty(kpi, october, august):
    c = cube("2026-08:2026-10", activities=ACTIVITIES)
    assert value(c, kpi, OCT) == october
    assert value(c, kpi, "2026-08") == august


def test_activities_by_rep_and_team():
    c = cube(OCT, activities=ACTIVITIES)
    assert value(c, "activities", OCT, "team", "east") == 4  # A1, A3, A4, A6
    assert value(c, "activities", OCT, "team", "west") == 2  # A2, A5
    assert value(c, "activities", OCT, "rep", "r2") == 1
    assert value(c, "activities_call", OCT, "rep", "r3") == 1


def test_activities_and_leads_after_the_report_date_are_not_known_yet():
    # as_of 2026-11-28: a meeting booked for the 30th and a lead qualified on the 29th don't count
    c = cube(
        "2026-11",
        activities=[
            activity("A1", "2026-11-28 23:59", "meeting"),
            activity("A2", "2026-11-30 10:00", "meeting"),
        ],
        leads=[lead("L1", "2026-11-28 08:00"), lead("L2", "2026-11-29 08:00")],
    )
    assert value(c, "activities_meeting", "2026-11") == 1
    assert value(c, "activities", "2026-11") == 1
    assert value(c, "qualified_leads", "2026-11") == 1


# ---------------------------------------------------------------------------------------------
# lead_conversion_rate: of the leads qualified in P, the share whose opportunity is won (as_of)
# ---------------------------------------------------------------------------------------------

CONVERSION_OPPS = [
    won("O1", "2026-11-15", 1000),
    lost("O2", "2026-10-20"),
    opp("O3"),
]


@pytest.mark.parametrize(
    ("leads", "as_of", "period", "expected"),
    [
        pytest.param(
            [
                lead("L1", "2026-10-02", opportunity_id="O1"),
                lead("L2", "2026-10-03", opportunity_id="O2"),
                lead("L3", "2026-10-04", opportunity_id="O3"),
                lead("L4", "2026-10-05"),
            ],
            "2026-11-28",
            OCT,
            1 / 4,  # only L1's O1 is won (in November: cohort, not closing month)
            id="won-lost-open-none",
        ),
        pytest.param(
            [
                lead("L1", "2026-10-02", opportunity_id="O1"),
                lead("L2", "2026-10-03", opportunity_id="O2"),
                lead("L3", "2026-10-04", opportunity_id="O3"),
                lead("L4", "2026-10-05"),
            ],
            "2026-11-10",
            OCT,
            0 / 4,  # O1 is won on 11-15, after the report date: not yet won
            id="won-after-as-of-is-not-converted",
        ),
        pytest.param(
            [lead("L1", "2026-09-20", opportunity_id="O1")],
            "2026-11-28",
            OCT,
            NAN,
            id="nobody-qualified-in-P-is-null",
        ),
        pytest.param(
            [lead("L1", "2026-09-20", opportunity_id="O1"), lead("L2", "2026-10-02")],
            "2026-11-28",
            OCT,
            0.0,  # L1 belongs to September's cohort; 0 / 1
            id="cohort-is-by-qualified_at",
        ),
        pytest.param(
            [lead("L1", "2026-09-20", opportunity_id="O1"), lead("L2", "2026-10-02")],
            "2026-11-28",
            "2026-09",
            1.0,  # 1 / 1
            id="earlier-cohort-counts-later-wins",
        ),
        pytest.param(
            [
                lead("L1", None, created_at="2026-10-02", opportunity_id="O1"),
                lead("L2", "2026-10-09", opportunity_id="O2"),
            ],
            "2026-11-28",
            OCT,
            0.0,  # L1 never qualified: out of the cohort; 0 / 1
            id="unqualified-leads-are-not-in-the-cohort",
        ),
    ],
)
def test_lead_conversion_rate_is_the_won_share_of_the_qualified_cohort(
    leads, as_of, period, expected
):
    c = cube("2026-09:2026-10", CONVERSION_OPPS, leads=leads, as_of=as_of)
    assert value(c, "lead_conversion_rate", period) == same(expected)


def test_lead_conversion_rate_numerator_and_denominator():
    leads = [
        lead("L1", "2026-10-02", opportunity_id="O1"),
        lead("L2", "2026-10-03", opportunity_id="O2"),
        lead("L3", "2026-10-04", opportunity_id="O3"),
    ]
    c = cube(OCT, CONVERSION_OPPS, leads=leads)
    assert parts(c, "lead_conversion_rate", OCT) == (1, 3)  # converted-to-won / qualified
    assert value(c, "lead_conversion_rate", OCT) == same(1 / 3)


def test_lead_conversion_rate_by_lead_owner():
    leads = [
        lead("L1", "2026-10-02", owner_rep_id="r1", opportunity_id="O1"),
        lead("L2", "2026-10-03", owner_rep_id="r1", opportunity_id="O2"),
        lead("L3", "2026-10-04", owner_rep_id="r3"),
    ]
    c = cube(OCT, CONVERSION_OPPS, leads=leads)
    assert value(c, "lead_conversion_rate", OCT, "rep", "r1") == same(0.5)  # L1 of L1, L2
    assert value(c, "lead_conversion_rate", OCT, "team", "west") == same(0.0)  # 0 of L3
    assert math.isnan(value(c, "lead_conversion_rate", OCT, "rep", "r2"))  # nobody qualified


# ---------------------------------------------------------------------------------------------
# win_rate: won / (won + lost) of opportunities closed in P, by count
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opps", "period", "expected", "numerator", "denominator"),
    [
        pytest.param(
            [won("O1", "2026-10-05"), won("O2", "2026-10-06"), lost("O3", "2026-10-07")],
            OCT,
            2 / 3,
            2,
            3,
            id="two-won-one-lost",
        ),
        pytest.param([opp("O1"), opp("O2")], OCT, NAN, 0, 0, id="nothing-closed-is-null"),
        pytest.param(
            [lost("O1", "2026-10-05"), lost("O2", "2026-10-06")],
            OCT,
            0.0,
            0,
            2,
            id="only-lost-is-0",
        ),
        pytest.param(
            [won("O1", "2026-10-05"), opp("O2"), opp("O3"), opp("O4")],
            OCT,
            1.0,
            1,
            1,
            id="open-opportunities-do-not-count",
        ),
        pytest.param(
            [won("O1", "2026-10-31 23:59"), lost("O2", "2026-11-01 00:00")],
            OCT,
            1.0,
            1,
            1,
            id="boundary-october",
        ),
        pytest.param(
            [won("O1", "2026-10-31 23:59"), lost("O2", "2026-11-01 00:00")],
            "2026-11",
            0.0,
            0,
            1,
            id="boundary-november",
        ),
        pytest.param(
            [won("O1", "2026-11-29 10:00"), lost("O2", "2026-11-05")],
            "2026-11",
            0.0,
            0,
            1,
            id="won-after-as-of-is-not-yet-won",
        ),
        pytest.param(
            # O3 closes in December, after as_of 2026-11-28: still open
            [won("O1", "2026-10-05"), lost("O2", "2026-11-05"), lost("O3", "2026-12-01")],
            "2026-Q4",
            1 / 2,
            1,
            2,
            id="quarter",
        ),
    ],
)
def test_win_rate_is_won_over_closed_in_period(opps, period, expected, numerator, denominator):
    c = cube("2026-10:2026-11" if period != "2026-Q4" else period, opps)
    assert value(c, "win_rate", period) == same(expected)
    assert parts(c, "win_rate", period) == same((numerator, denominator))


def test_win_rate_is_null_when_nothing_closed():
    c = cube(OCT, [opp("O1", created_at="2026-10-02")])
    assert math.isnan(value(c, "win_rate", OCT))


# ---------------------------------------------------------------------------------------------
# avg_deal_size: mean amount of won opportunities closed in P, null amounts excluded
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opps", "expected", "numerator", "denominator"),
    [
        pytest.param(
            [won("O1", "2026-10-05", 1000), won("O2", "2026-10-06", 3000)], 2000, 4000, 2, id="mean"
        ),
        pytest.param(
            [won("O1", "2026-10-05", 1000), won("O2", "2026-10-06", None)],
            1000,
            1000,
            1,
            id="null-amount-excluded-not-zero",
        ),
        pytest.param([won("O1", "2026-10-05", None)], NAN, 0, 0, id="only-null-amounts-is-null"),
        pytest.param([lost("O1", "2026-10-05", 5000)], NAN, 0, 0, id="no-won-deal-is-null"),
        pytest.param(
            [lost("O1", "2026-10-05", 5000), won("O2", "2026-10-06", 1000)],
            1000,
            1000,
            1,
            id="lost-amounts-ignored",
        ),
        pytest.param(
            [won("O1", "2026-10-05", 0), won("O2", "2026-10-06", 1000)],
            500,
            1000,
            2,
            id="zero-amount-is-a-real-amount",
        ),
        pytest.param(
            [
                won("O1", "2026-09-30 23:59", 9000),
                won("O2", "2026-10-01 00:00", 1000),
                won("O3", "2026-11-01 00:00", 7000),
            ],
            1000,
            1000,
            1,
            id="boundaries",
        ),
    ],
)
def test_avg_deal_size_is_the_mean_non_null_won_amount(opps, expected, numerator, denominator):
    c = cube(OCT, opps)
    assert value(c, "avg_deal_size", OCT) == same(expected)
    assert parts(c, "avg_deal_size", OCT) == same((numerator, denominator))


# ---------------------------------------------------------------------------------------------
# sales_cycle_days: mean fractional days created_at -> closed_at of won deals closed in P
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opps", "expected", "numerator", "denominator"),
    [
        pytest.param(
            [won("O1", "2026-10-02 12:00", created_at="2026-10-01 00:00")],
            1.5,
            1.5,
            1,
            id="36-hours-is-1.5-days",
        ),
        pytest.param(
            [won("O1", "2026-10-10 20:00", created_at="2026-10-10 08:00")],
            0.5,
            0.5,
            1,
            id="12-hours-is-0.5-days",
        ),
        pytest.param(
            [
                won("O1", "2026-10-11", created_at="2026-09-01"),  # 30 + 10 = 40 days
                won("O2", "2026-10-22", created_at="2026-10-02"),  # 20 days
            ],
            30,
            60,
            2,
            id="mean-of-40-and-20",
        ),
        pytest.param(
            [
                lost("O1", "2026-10-05", created_at="2026-01-01"),
                won("O2", "2026-10-05", created_at="2026-10-01"),
            ],
            4,
            4,
            1,
            id="lost-deals-excluded",
        ),
        pytest.param(
            [lost("O1", "2026-10-05", created_at="2026-01-01"), opp("O2")],
            NAN,
            0,
            0,
            id="nothing-won-is-null",
        ),
    ],
)
def test_sales_cycle_days_is_the_mean_fractional_age_of_won_deals(
    opps, expected, numerator, denominator
):
    c = cube(OCT, opps)
    assert value(c, "sales_cycle_days", OCT) == same(expected)
    assert parts(c, "sales_cycle_days", OCT) == same((numerator, denominator))


# ---------------------------------------------------------------------------------------------
# sales_velocity: N x win_rate x avg_deal_size / sales_cycle_days; N = open at the start of P
# ---------------------------------------------------------------------------------------------


def test_sales_velocity_multiplies_open_pipeline_by_win_rate_and_deal_size_per_cycle_day():
    opps = [
        won("O1", "2026-10-11", 1000, created_at="2026-09-01"),  # open at Oct 1; 40-day cycle
        lost("O2", "2026-10-05", created_at="2026-09-15"),  # open at Oct 1
        opp("O3", created_at="2026-08-01"),  # open at Oct 1, still open
        lost("O4", "2026-09-20", created_at="2026-08-01"),  # closed before Oct 1: not in N
        won("O5", "2026-10-22", 3000, created_at="2026-10-02"),  # created in P: not in N; 20 days
    ]
    # N = 3 (O1, O2, O3); win_rate = 2/3; avg_deal_size = 4000/2 = 2000; cycle = 60/2 = 30 days
    # velocity = 3 * 2/3 * 2000 / 30 = 133.33 per day
    c = cube(OCT, opps)
    assert value(c, "win_rate", OCT) == same(2 / 3)
    assert value(c, "avg_deal_size", OCT) == same(2000)
    assert value(c, "sales_cycle_days", OCT) == same(30)
    assert value(c, "sales_velocity", OCT) == same(3 * (2 / 3) * 2000 / 30)


# One won deal created in P: win_rate 1, avg 1000, cycle 10 days -> velocity = N * 100 per day.
BASE_DEAL = won("W", "2026-10-15", 1000, created_at="2026-10-05")


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        pytest.param([], 0.0, id="no-open-pipeline-is-0"),
        pytest.param([opp("O1", created_at="2026-09-10")], 100, id="open-since-september"),
        pytest.param(
            [opp("O1", created_at="2026-10-01 00:00")],
            0.0,
            id="created-at-period-start-is-not-open-before",
        ),
        pytest.param([opp("O1", created_at="2026-09-30 23:59")], 100, id="created-last-minute"),
        pytest.param(
            [lost("O1", "2026-09-30 23:59", created_at="2026-08-01")],
            0.0,
            id="closed-before-start-not-counted",
        ),
        pytest.param(
            [lost("O1", "2026-11-02", created_at="2026-08-01"), opp("O2", created_at="2026-07-01")],
            200,
            id="closed-after-P-was-open-at-start",
        ),
        # O1 is open at the start (closed at, not before, the start) and lost in P:
        # N = 1; win_rate = 1/2 -> 1 * 0.5 * 1000 / 10 = 50
        pytest.param(
            [lost("O1", "2026-10-01 00:00", created_at="2026-08-01")],
            50,
            id="closed-at-start-is-open-at-start",
        ),
    ],
)
def test_sales_velocity_counts_opportunities_open_at_the_start_of_the_period(extra, expected):
    c = cube(OCT, [BASE_DEAL, *extra])
    assert value(c, "sales_velocity", OCT) == same(expected)


@pytest.mark.parametrize(
    "opps",
    [
        pytest.param([opp("O1", created_at="2026-09-01")], id="nothing-closed"),
        pytest.param(
            [
                opp("O1", created_at="2026-09-01"),
                won("O2", "2026-10-05 10:00", 1000, created_at="2026-10-05 10:00"),
            ],
            id="zero-day-cycle",
        ),
        pytest.param(
            [opp("O1", created_at="2026-09-01"), won("O2", "2026-10-05", None)],
            id="no-known-deal-size",
        ),
    ],
)
def test_sales_velocity_is_null_when_a_factor_is_undefined(opps):
    assert math.isnan(value(cube(OCT, opps), "sales_velocity", OCT))


def test_sales_velocity_by_team_counts_the_team_pipeline():
    opps = [
        won("W1", "2026-10-15", 1000, "r1", created_at="2026-10-05"),  # east: 10 days
        opp("O1", "r2", created_at="2026-09-10"),
        opp("O2", "r1", created_at="2026-09-11"),
        won("W3", "2026-10-11", 600, "r3", created_at="2026-10-05"),  # west: 6 days
        opp("O3", "r3", created_at="2026-09-12"),
    ]
    c = cube(OCT, opps)
    assert value(c, "sales_velocity", OCT, "team", "east") == same(2 * 1.0 * 1000 / 10)  # 200
    assert value(c, "sales_velocity", OCT, "team", "west") == same(1 * 1.0 * 600 / 6)  # 100
    # company: N = 3, win_rate 1, avg 800, cycle 8 days -> 300 per day
    assert value(c, "sales_velocity", OCT) == same(3 * 1.0 * 800 / 8)


def test_sales_velocity_over_a_quarter_counts_deals_open_on_its_first_day():
    opps = [
        won("W", "2026-11-15", 1000, created_at="2026-11-05"),  # 10 days, created in Q4
        opp("O1", created_at="2026-09-30"),  # open on Oct 1: N = 1
        opp("O2", created_at="2026-10-02"),  # created in Q4: not in N
    ]
    c = cube("2026-Q4", opps, as_of="2027-01-31")
    assert value(c, "sales_velocity", "2026-Q4") == same(100)


# ---------------------------------------------------------------------------------------------
# revenue: sum of amount of won opportunities closed in P (bookings)
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opps", "period", "as_of", "expected"),
    [
        pytest.param(
            [won("O1", "2026-10-05", 1000), won("O2", "2026-10-20", 2500)],
            OCT,
            "2026-11-28",
            3500,
            id="sum",
        ),
        pytest.param(
            [won("O1", "2026-10-05", 1000), lost("O2", "2026-10-06", 5000), opp("O3", amount=7000)],
            OCT,
            "2026-11-28",
            1000,
            id="lost-and-open-excluded",
        ),
        pytest.param(
            [won("O1", "2026-10-05", 1000), won("O2", "2026-10-06", None)],
            OCT,
            "2026-11-28",
            1000,
            id="null-amount-adds-nothing",
        ),
        pytest.param([won("O1", "2026-09-05", 1000)], OCT, "2026-11-28", 0, id="empty-period-is-0"),
        pytest.param(
            [won("O1", "2026-10-31 23:59", 1000), won("O2", "2026-11-01 00:00", 200)],
            OCT,
            "2026-11-28",
            1000,
            id="boundary-october",
        ),
        pytest.param(
            [won("O1", "2026-10-31 23:59", 1000), won("O2", "2026-11-01 00:00", 200)],
            "2026-11",
            "2026-11-28",
            200,
            id="boundary-november",
        ),
        pytest.param(
            [won("O1", "2026-11-28 23:59", 1000), won("O2", "2026-11-29 00:00", 200)],
            "2026-11",
            "2026-11-28",
            1000,
            id="as-of-day-included-next-day-not",
        ),
        # Q4: Oct 5 (100) + Nov 10 (200) + Dec 31 23:59 (400); Sep 30 and Jan 1 are outside
        pytest.param(
            [
                won("O1", "2026-09-30 23:59", 1),
                won("O2", "2026-10-05", 100),
                won("O3", "2026-11-10", 200),
                won("O4", "2026-12-31 23:59", 400),
                won("O5", "2027-01-01 00:00", 8000),
            ],
            "2026-Q4",
            "2027-01-31",
            700,
            id="quarter",
        ),
        # 2026: Jan 1 00:00 (10) + Jul 1 (20) + Dec 31 (40); Dec 31 2025 and Jan 1 2027 outside
        pytest.param(
            [
                won("O1", "2025-12-31 23:59", 1),
                won("O2", "2026-01-01 00:00", 10),
                won("O3", "2026-07-01", 20),
                won("O4", "2026-12-31", 40),
                won("O5", "2027-01-01", 8000),
            ],
            "2026",
            "2027-01-31",
            70,
            id="year",
        ),
    ],
)
def test_revenue_sums_won_amounts_closed_in_the_period(opps, period, as_of, expected):
    c = cube(period, opps, as_of=as_of)
    assert value(c, "revenue", period) == same(expected)


def test_revenue_by_team_and_rep_follows_the_opportunity_owner():
    opps = [
        won("O1", "2026-10-05", 1000, "r1"),
        won("O2", "2026-10-06", 2000, "r2"),
        won("O3", "2026-10-07", 4000, "r3"),
        lost("O4", "2026-10-08", 8000, "r3"),
    ]
    c = cube(OCT, opps)
    assert value(c, "revenue", OCT) == 7000
    assert value(c, "revenue", OCT, "team", "east") == 3000  # r1 + r2
    assert value(c, "revenue", OCT, "team", "west") == 4000
    assert value(c, "revenue", OCT, "rep", "r2") == 2000
    assert value(c, "win_rate", OCT, "team", "west") == same(0.5)  # O3 won, O4 lost
    assert value(c, "win_rate", OCT, "team", "east") == same(1.0)


def test_as_of_defaults_to_today():
    today = pd.Timestamp.now().normalize()
    period = today.strftime("%Y-%m")
    opps = [
        won("O1", str(today + pd.Timedelta(minutes=1)), 1000),
        won("O2", str(today + pd.Timedelta(days=2)), 200),  # in the future: not known yet
    ]
    c = kpi_lib.compute_cube(source(opps), period, targets={})
    assert value(c, "revenue", period) == 1000


# ---------------------------------------------------------------------------------------------
# revenue_per_rep: revenue / active quota-carrying reps in scope
# ---------------------------------------------------------------------------------------------


def reps_with(**r2) -> list[dict]:
    """The default reps with r2's optional columns set (the others always active, carrying)."""
    base = {"start_at": None, "end_at": None, "is_quota_carrying": True}
    return [{**rep, **base, **(r2 if rep["rep_id"] == "r2" else {})} for rep in REPS]


PER_REP_DEALS = [won("O1", "2026-10-05", 6000, "r1")]


@pytest.mark.parametrize(
    ("r2", "expected"),
    [
        pytest.param({}, 6000 / 3, id="no-dates-always-active"),
        pytest.param({"start_at": "2026-10-15"}, 6000 / 3, id="joined-mid-period-counts"),
        pytest.param({"start_at": "2026-10-31 23:59"}, 6000 / 3, id="joined-last-minute-counts"),
        pytest.param({"start_at": "2026-11-01"}, 6000 / 2, id="joins-after-period-not-counted"),
        pytest.param({"end_at": "2026-10-01"}, 6000 / 3, id="left-on-first-day-counts"),
        pytest.param({"end_at": "2026-09-30"}, 6000 / 2, id="left-before-period-not-counted"),
        pytest.param(
            {"start_at": "2026-09-01", "end_at": "2026-10-20"},
            6000 / 3,
            id="left-mid-period-counts",
        ),
        pytest.param({"is_quota_carrying": False}, 6000 / 2, id="not-quota-carrying"),
    ],
)
def test_revenue_per_rep_divides_by_active_quota_carrying_reps(r2, expected):
    c = cube(OCT, PER_REP_DEALS, reps=reps_with(**r2))
    assert value(c, "revenue_per_rep", OCT) == same(expected)
    assert parts(c, "revenue_per_rep", OCT) == same((6000, 6000 / expected))


def test_revenue_per_rep_is_null_without_active_reps():
    reps = [{**rep, "end_at": "2026-09-01"} for rep in REPS]  # everyone left in September
    c = cube(OCT, PER_REP_DEALS, reps=reps)
    assert math.isnan(value(c, "revenue_per_rep", OCT))


def test_revenue_per_rep_by_team_and_rep():
    c = cube(OCT, PER_REP_DEALS)
    assert value(c, "revenue_per_rep", OCT, "team", "east") == same(3000)  # 6000 / (r1, r2)
    assert value(c, "revenue_per_rep", OCT, "team", "west") == same(0)  # 0 / r3
    assert value(c, "revenue_per_rep", OCT, "rep", "r1") == same(6000)
    assert value(c, "revenue_per_rep", OCT, "rep", "r2") == same(0)


def test_revenue_per_rep_over_a_quarter_counts_reps_active_in_any_part_of_it():
    reps = reps_with(start_at="2026-12-20")  # r2 joins in December: active in Q4
    c = cube("2026-Q4", PER_REP_DEALS, reps=reps, as_of="2027-01-31")
    assert value(c, "revenue_per_rep", "2026-Q4") == same(2000)  # 6000 / 3


def test_revenue_per_rep_keeps_revenue_of_reps_without_quota_in_the_numerator():
    reps = reps_with(is_quota_carrying=False)
    opps = [*PER_REP_DEALS, won("O2", "2026-10-06", 3000, "r2")]
    c = cube(OCT, opps, reps=reps)
    assert value(c, "revenue_per_rep", OCT) == same(9000 / 2)  # (6000 + 3000) / (r1, r3)
    assert value(c, "revenue_per_rep", OCT, "team", "east") == same(9000 / 1)  # r1 only
    assert math.isnan(value(c, "revenue_per_rep", OCT, "rep", "r2"))  # 3000 / 0 carrying reps


# ---------------------------------------------------------------------------------------------
# revenue_growth_mom / revenue_growth_yoy: revenue(P) / revenue(P-1 or P-1y) - 1
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("opps", "period", "as_of", "expected"),
    [
        pytest.param(
            [won("O1", "2026-09-10", 2000), won("O2", "2026-10-10", 3000)],
            OCT,
            "2026-11-28",
            0.5,
            id="3000-over-2000",
        ),
        pytest.param(
            [won("O2", "2026-10-10", 3000)], OCT, "2026-11-28", NAN, id="nothing-last-month-is-null"
        ),
        pytest.param(
            [won("O1", "2026-09-10", 4000)],
            OCT,
            "2026-11-28",
            -1.0,
            id="nothing-this-month-is-minus-1",
        ),
        pytest.param(
            [
                won("O1", "2026-12-10", 2000),
                won("O2", "2027-01-10", 1000),
                won("O3", "2026-01-10", 9999),
            ],
            "2027-01",
            "2027-02-15",
            -0.5,
            id="january-compares-with-december",
        ),
        # Q3: Jul 2000 + Sep 1000 = 3000; Q4: Oct 4500 -> 4500 / 3000 - 1
        pytest.param(
            [
                won("O1", "2026-07-01", 2000),
                won("O2", "2026-09-30", 1000),
                won("O3", "2026-10-01", 4500),
            ],
            "2026-Q4",
            "2027-01-31",
            0.5,
            id="quarter",
        ),
    ],
)
def test_revenue_growth_mom_compares_with_the_previous_period(opps, period, as_of, expected):
    c = cube(period, opps, as_of=as_of)
    assert value(c, "revenue_growth_mom", period) == same(expected)


@pytest.mark.parametrize(
    ("opps", "period", "as_of", "expected"),
    [
        pytest.param(
            [
                won("O1", "2025-10-10", 2000),
                won("O2", "2026-09-10", 9999),
                won("O3", "2026-10-10", 3000),
            ],
            OCT,
            "2026-11-28",
            0.5,
            id="october-over-last-october",
        ),
        pytest.param(
            [won("O1", "2025-09-10", 2000), won("O3", "2026-10-10", 3000)],
            OCT,
            "2026-11-28",
            NAN,
            id="nothing-a-year-ago-is-null",
        ),
        pytest.param(
            [
                won("O1", "2025-03-01", 1000),
                won("O2", "2025-11-01", 1000),
                won("O3", "2026-06-01", 1000),
            ],
            "2026",
            "2027-01-31",
            -0.5,
            id="year-over-year",
        ),
        pytest.param(
            [
                won("O1", "2025-01-15", 400),
                won("O2", "2025-04-01", 9999),
                won("O3", "2026-03-31 23:59", 1000),
            ],
            "2026-Q1",
            "2026-11-28",
            1.5,
            id="quarter-over-same-quarter",
        ),
    ],
)
def test_revenue_growth_yoy_compares_with_the_same_period_a_year_earlier(
    opps, period, as_of, expected
):
    c = cube(period, opps, as_of=as_of)
    assert value(c, "revenue_growth_yoy", period) == same(expected)


# ---------------------------------------------------------------------------------------------
# new_customers: accounts whose first won opportunity closed in P
# ---------------------------------------------------------------------------------------------

ACCOUNTS = [
    {"account_id": a, "account_name": a.upper(), "owner_rep_id": "r2"}
    for a in ("acme", "bolt", "core")
]


@pytest.mark.parametrize(
    ("opps", "period", "expected"),
    [
        pytest.param(
            [
                won("O1", "2026-10-05", 10, account_id="acme"),
                won("O2", "2026-10-06", 10, account_id="bolt"),
            ],
            OCT,
            2,
            id="two-new",
        ),
        pytest.param(
            [
                won("O1", "2026-09-05", 10, account_id="acme"),
                won("O2", "2026-10-06", 10, account_id="acme"),
            ],
            OCT,
            0,
            id="repeat-customer-is-not-new",
        ),
        pytest.param(
            [
                won("O1", "2026-09-05", 10, account_id="acme"),
                won("O2", "2026-10-06", 10, account_id="acme"),
            ],
            "2026-09",
            1,
            id="new-in-its-first-month",
        ),
        pytest.param(
            [
                lost("O1", "2026-09-05", 10, account_id="acme"),
                won("O2", "2026-10-06", 10, account_id="acme"),
            ],
            OCT,
            1,
            id="earlier-lost-deal-does-not-count",
        ),
        pytest.param(
            [
                won("O1", "2026-10-05", 10, account_id="acme"),
                won("O2", "2026-10-25", 10, account_id="acme"),
            ],
            OCT,
            1,
            id="two-deals-one-customer",
        ),
        pytest.param(
            [opp("O1", account_id="acme", created_at="2026-10-01")],
            OCT,
            0,
            id="open-deal-is-no-customer",
        ),
        pytest.param(
            [
                won("O1", "2026-09-30 23:59", 10, account_id="acme"),
                won("O2", "2026-11-01 00:00", 10, account_id="bolt"),
            ],
            OCT,
            0,
            id="boundaries",
        ),
        pytest.param(
            [won("O1", "2026-11-29", 10, account_id="acme")],
            "2026-11",
            0,
            id="won-after-as-of-is-not-yet-a-customer",
        ),
    ],
)
def test_new_customers_counts_accounts_whose_first_won_deal_closed_in_the_period(
    opps, period, expected
):
    c = cube("2026-09:2026-11", opps, accounts=ACCOUNTS)
    assert value(c, "new_customers", period) == expected


def test_new_customers_belong_to_the_owner_of_the_first_won_deal_not_the_account_owner():
    # every account is owned by r2 (east); deals are owned by r1 (east) and r3 (west)
    opps = [
        won("O1", "2026-09-05", 10, "r1", account_id="acme"),  # acme: new in Sep for r1
        won("O2", "2026-10-06", 10, "r3", account_id="acme"),  # repeat: nobody's new customer
        won("O3", "2026-10-07", 10, "r3", account_id="bolt"),  # bolt: new in Oct for r3
    ]
    c = cube("2026-09:2026-10", opps, accounts=ACCOUNTS)
    assert value(c, "new_customers", OCT) == 1
    assert value(c, "new_customers", OCT, "team", "west") == 1
    assert value(c, "new_customers", OCT, "team", "east") == 0
    assert value(c, "new_customers", OCT, "rep", "r3") == 1
    assert value(c, "new_customers", OCT, "rep", "r2") == 0
    assert value(c, "new_customers", "2026-09", "rep", "r1") == 1
    assert value(c, "new_customers", "2026-09", "team", "east") == 1


# ---------------------------------------------------------------------------------------------
# cac: (sales + marketing spend in P) / new_customers
# ---------------------------------------------------------------------------------------------


def spend(spent_at, amount, category="marketing", **extra):
    return {"spent_at": spent_at, "category": category, "amount": amount, **extra}


TWO_NEW_IN_OCTOBER = [
    won("O1", "2026-10-05", 10, "r1", account_id="acme"),
    won("O2", "2026-10-06", 10, "r3", account_id="bolt"),
]


@pytest.mark.parametrize(
    ("opps", "spends", "expected", "numerator", "denominator"),
    [
        # (3000 marketing + 1000 sales) / 2 new customers; September's 5000 is out
        pytest.param(
            TWO_NEW_IN_OCTOBER,
            [
                spend("2026-10-03", 3000),
                spend("2026-10-09", 1000, "sales"),
                spend("2026-09-30", 5000),
            ],
            2000,
            4000,
            2,
            id="sales-plus-marketing-over-new",
        ),
        pytest.param(
            [won("O1", "2026-10-05", 10, account_id="acme")],
            [spend("2026-10-31 23:59", 500), spend("2026-11-01 00:00", 700)],
            500,
            500,
            1,
            id="boundaries",
        ),
        pytest.param(
            [opp("O1", account_id="acme")],
            [spend("2026-10-03", 3000)],
            NAN,
            3000,
            0,
            id="no-new-customer-is-null",
        ),
        pytest.param(
            TWO_NEW_IN_OCTOBER, [spend("2026-09-03", 3000)], 0.0, 0, 2, id="no-spend-in-period-is-0"
        ),
    ],
)
def test_cac_is_spend_per_new_customer(opps, spends, expected, numerator, denominator):
    c = cube(OCT, opps, accounts=ACCOUNTS, spend=spends)
    assert value(c, "cac", OCT) == same(expected)
    assert parts(c, "cac", OCT) == same((numerator, denominator))


def test_cac_by_team_where_spend_carries_team_id_and_never_by_rep():
    spends = [
        spend("2026-10-03", 3000, team_id="east"),
        spend("2026-10-04", 1000, "sales", team_id="west"),
        spend("2026-10-05", 2000, team_id="east"),
    ]
    opps = [*TWO_NEW_IN_OCTOBER, won("O3", "2026-10-07", 10, "r2", account_id="core")]
    c = cube(OCT, opps, accounts=ACCOUNTS, spend=spends)
    assert value(c, "cac", OCT) == same(6000 / 3)
    assert value(c, "cac", OCT, "team", "east") == same(5000 / 2)  # acme (r1) and core (r2)
    assert value(c, "cac", OCT, "team", "west") == same(1000 / 1)  # bolt (r3)
    for rep in ("r1", "r2", "r3"):
        assert math.isnan(value(c, "cac", OCT, "rep", rep))


def test_team_cac_is_null_when_spend_has_no_team_id():
    c = cube(OCT, TWO_NEW_IN_OCTOBER, accounts=ACCOUNTS, spend=[spend("2026-10-03", 3000)])
    assert value(c, "cac", OCT) == same(1500)
    assert math.isnan(value(c, "cac", OCT, "team", "east"))
    assert math.isnan(value(c, "cac", OCT, "team", "west"))


# ---------------------------------------------------------------------------------------------
# retention_rate, churn_rate, clv (revenue table; won deals stand in without one)
# ---------------------------------------------------------------------------------------------


def rev(account_id, recognized_at, amount):
    return {"account_id": account_id, "recognized_at": recognized_at, "amount": amount}


OWNERS = {"acme": "r1", "dyn": "r1", "bolt": "r3", "core": "r3", "echo": "r2"}
RET_ACCOUNTS = [
    {"account_id": a, "account_name": a.title(), "owner_rep_id": r} for a, r in OWNERS.items()
]
SEPT_OCT_REVENUE = [
    rev("acme", "2026-09-10", 100),
    rev("bolt", "2026-09-11", 200),
    rev("core", "2026-09-12", 300),
    rev("dyn", "2026-09-13", 400),
    rev("acme", "2026-10-10", 150),
    rev("bolt", "2026-10-11", 250),
    rev("core", "2026-10-12", 350),
    rev("echo", "2026-10-13", 500),  # dyn churned, echo is new
]


@pytest.mark.parametrize(
    ("revenue", "retention", "churn", "clv"),
    [
        # P-1 = Sep {acme, bolt, core, dyn}; Oct keeps 3 -> 3/4; churn 1/4
        # ARPA(Oct) = (150 + 250 + 350 + 500) / 4 = 312.5; clv = 312.5 * 1.0 / 0.25 = 1250
        pytest.param(SEPT_OCT_REVENUE, 0.75, 0.25, 1250, id="one-of-four-lost"),
        pytest.param(
            [rev("acme", "2026-10-10", 150)], NAN, NAN, NAN, id="no-revenue-last-period-is-null"
        ),
        # everyone kept: churn 0 -> clv = ARPA / 0 is n/a
        pytest.param(
            [rev("acme", "2026-09-10", 100), rev("acme", "2026-10-10", 100)],
            1.0,
            0.0,
            NAN,
            id="no-churn-clv-is-null",
        ),
        # bolt's September revenue is 0: not a revenue account; acme's October revenue is 0: lost
        # retention 0/1; churn 1; ARPA(Oct) = 80 / 1 (bolt) -> clv 80
        pytest.param(
            [
                rev("acme", "2026-09-10", 100),
                rev("bolt", "2026-09-11", 0),
                rev("acme", "2026-10-10", 0),
                rev("bolt", "2026-10-11", 80),
            ],
            0.0,
            1.0,
            80,
            id="zero-revenue-is-no-revenue",
        ),
        # Sep 30 23:59 is September, Oct 1 00:00 is October: acme kept, 1/1, churn 0
        pytest.param(
            [
                rev("acme", "2026-09-30 23:59", 100),
                rev("acme", "2026-10-01 00:00", 100),
                rev("bolt", "2026-08-31 23:59", 100),
            ],
            1.0,
            0.0,
            NAN,
            id="boundaries",
        ),
    ],
)
def test_retention_churn_and_clv_by_account_revenue(revenue, retention, churn, clv):
    c = cube(OCT, accounts=RET_ACCOUNTS, revenue=revenue)
    assert value(c, "retention_rate", OCT) == same(retention)
    assert value(c, "churn_rate", OCT) == same(churn)
    assert value(c, "clv", OCT) == same(clv)


def test_clv_scales_with_the_gross_margin_setting():
    c = cube(OCT, accounts=RET_ACCOUNTS, revenue=SEPT_OCT_REVENUE, settings={"gross_margin": 0.6})
    assert value(c, "clv", OCT) == same(312.5 * 0.6 / 0.25)  # 750
    assert value(c, "retention_rate", OCT) == same(0.75)  # the margin touches CLV only


def test_retention_and_churn_numerators_share_the_previous_period_denominator():
    c = cube(OCT, accounts=RET_ACCOUNTS, revenue=SEPT_OCT_REVENUE)
    assert parts(c, "retention_rate", OCT) == (3, 4)  # retained / accounts with revenue in Sep
    assert parts(c, "churn_rate", OCT) == (1, 4)  # lost (dyn) / accounts with revenue in Sep


def test_retention_over_quarters_compares_with_the_previous_quarter():
    revenue = [
        rev("acme", "2026-07-10", 100),  # Q3 {acme, bolt}
        rev("bolt", "2026-09-30", 100),
        rev("acme", "2026-12-31 23:59", 50),  # Q4 {acme, core}
        rev("core", "2026-10-02", 70),
    ]
    c = cube("2026-Q4", accounts=RET_ACCOUNTS, revenue=revenue, as_of="2027-01-31")
    assert value(c, "retention_rate", "2026-Q4") == same(0.5)
    assert value(c, "churn_rate", "2026-Q4") == same(0.5)
    assert value(c, "clv", "2026-Q4") == same((120 / 2) / 0.5)  # ARPA 60 / churn 0.5


def test_retention_churn_and_clv_by_account_owner():
    c = cube(OCT, accounts=RET_ACCOUNTS, revenue=SEPT_OCT_REVENUE)
    # east = r1 {acme, dyn} + r2 {echo}: Sep {acme, dyn} -> Oct keeps acme: 1/2
    # ARPA east Oct = (acme 150 + echo 500) / 2 = 325 -> clv = 325 / 0.5 = 650
    assert value(c, "retention_rate", OCT, "team", "east") == same(0.5)
    assert value(c, "churn_rate", OCT, "team", "east") == same(0.5)
    assert value(c, "clv", OCT, "team", "east") == same(650)
    # west = r3 {bolt, core}: both kept -> 1.0, churn 0, clv n/a
    assert value(c, "retention_rate", OCT, "team", "west") == same(1.0)
    assert math.isnan(value(c, "clv", OCT, "team", "west"))
    # r1: ARPA = 150 / 1 -> clv = 150 / 0.5 = 300; r2 had no revenue in September: n/a
    assert value(c, "clv", OCT, "rep", "r1") == same(300)
    assert math.isnan(value(c, "retention_rate", OCT, "rep", "r2"))


def test_won_deals_stand_in_for_revenue_when_there_is_no_revenue_table():
    opps = [
        won("O1", "2026-09-05", 1000, account_id="acme"),
        won("O2", "2026-09-06", 1000, account_id="bolt"),
        won("O3", "2026-10-07", 500, account_id="acme"),
        lost("O4", "2026-10-08", 900, account_id="bolt"),
    ]
    # Sep {acme, bolt}; Oct {acme} -> retention 1/2, churn 1/2; ARPA = 500 / 1; clv = 500 / 0.5
    c = cube(OCT, opps, accounts=RET_ACCOUNTS)
    assert value(c, "retention_rate", OCT) == same(0.5)
    assert value(c, "churn_rate", OCT) == same(0.5)
    assert value(c, "clv", OCT) == same(1000)
    assert "retention_rate" not in c.attrs.get("unavailable", {})


def test_revenue_events_after_the_report_date_are_not_known_yet():
    revenue = [
        rev("acme", "2026-10-10", 100),
        rev("bolt", "2026-10-11", 100),
        rev("acme", "2026-11-28 12:00", 100),
        rev("bolt", "2026-11-29", 100),
    ]
    c = cube("2026-11", accounts=RET_ACCOUNTS, revenue=revenue)  # as_of 2026-11-28
    assert value(c, "retention_rate", "2026-11") == same(0.5)  # bolt's Nov 29 revenue unknown
    opps = [
        won("O1", "2026-10-05", 100, account_id="acme"),
        won("O2", "2026-10-06", 100, account_id="bolt"),
        won("O3", "2026-11-20", 100, account_id="acme"),
        won("O4", "2026-11-29", 100, account_id="bolt"),  # not won yet on Nov 28
    ]
    c = cube("2026-11", opps, accounts=RET_ACCOUNTS)
    assert value(c, "retention_rate", "2026-11") == same(0.5)


def test_revenue_kpi_stays_bookings_when_a_revenue_table_exists():
    c = cube(
        OCT,
        [won("O1", "2026-10-05", 1000, account_id="acme")],
        accounts=RET_ACCOUNTS,
        revenue=SEPT_OCT_REVENUE,
    )
    assert value(c, "revenue", OCT) == 1000


# ---------------------------------------------------------------------------------------------
# quota_attainment: revenue / revenue target; targets are monthly for additive KPIs
# ---------------------------------------------------------------------------------------------

TARGETS = {
    "revenue": {
        "company": 100000,
        "team": 40000,
        "rep": 10000,
        "overrides": [{"period": "2026-10", "scope_id": "east", "value": 50000}],
    }
}
QUOTA_DEALS = [won("O1", "2026-10-05", 30000, "r1"), won("O2", "2026-10-06", 10000, "r3")]


@pytest.mark.parametrize(
    ("period", "scope", "scope_id", "target", "attainment"),
    [
        ("2026-10", "company", "all", 100000, 40000 / 100000),
        ("2026-10", "team", "east", 50000, 30000 / 50000),  # the override
        ("2026-10", "team", "west", 40000, 10000 / 40000),
        ("2026-10", "rep", "r1", 10000, 30000 / 10000),
        ("2026-10", "rep", "r2", 10000, 0.0),
        ("2026-11", "company", "all", 100000, 0.0),  # a month without deals: 0 of target
        ("2026-11", "team", "east", 40000, 0.0),  # the override is October's only
        ("2026-Q4", "company", "all", 300000, 40000 / 300000),  # 3 x 100000
        ("2026-Q4", "team", "east", 130000, 30000 / 130000),  # 50000 + 40000 + 40000
        ("2026-Q4", "rep", "r3", 30000, 10000 / 30000),
        ("2026", "company", "all", 1200000, 40000 / 1200000),  # 12 x 100000
    ],
)
def test_quota_attainment_is_revenue_over_the_summed_monthly_target(
    period, scope, scope_id, target, attainment
):
    c = cube(period, QUOTA_DEALS, targets=TARGETS, as_of="2027-01-31")
    assert row(c, "revenue", period, scope, scope_id)["target"] == same(target)
    assert value(c, "quota_attainment", period, scope, scope_id) == same(attainment)


def test_an_override_naming_the_quarter_replaces_the_sum_of_its_months():
    targets = {
        "revenue": {
            **TARGETS["revenue"],
            "overrides": [
                *TARGETS["revenue"]["overrides"],
                {"period": "2026-Q4", "scope_id": "west", "value": 90000},
            ],
        }
    }
    c = cube("2026-Q4", QUOTA_DEALS, targets=targets, as_of="2027-01-31")
    assert row(c, "revenue", "2026-Q4", "team", "west")["target"] == same(90000)
    assert value(c, "quota_attainment", "2026-Q4", "team", "west") == same(10000 / 90000)


def test_ratio_targets_apply_as_given_to_any_period():
    c = cube("2026-Q4", QUOTA_DEALS, targets={"win_rate": {"company": 0.3}}, as_of="2027-01-31")
    assert row(c, "win_rate", "2026-Q4")["target"] == same(0.3)
    c = cube(OCT, QUOTA_DEALS, targets={"win_rate": {"company": 0.3}})
    assert row(c, "win_rate", OCT)["target"] == same(0.3)


def test_quota_attainment_and_targets_are_null_without_targets():
    c = cube(OCT, QUOTA_DEALS, targets={})
    assert math.isnan(value(c, "quota_attainment", OCT))
    assert math.isnan(value(c, "quota_attainment", OCT, "team", "east"))
    assert c["target"].isna().all()


def test_targets_can_be_read_from_a_yaml_file(tmp_path):
    path = tmp_path / "targets.yaml"
    path.write_text("revenue:\n  company: 80000\n  team: 40000\n  rep: 10000\n")
    c = kpi_lib.compute_cube(source(QUOTA_DEALS), OCT, as_of="2026-11-28", targets=str(path))
    assert value(c, "quota_attainment", OCT) == same(0.5)  # 40000 / 80000


def test_count_targets_are_monthly_and_add_up_over_a_quarter():
    targets = {"qualified_leads": {"company": 50, "team": 20}}
    c = cube("2026-Q4", leads=[lead("L1", "2026-10-02")], targets=targets, as_of="2027-01-31")
    assert row(c, "qualified_leads", "2026-Q4")["target"] == same(150)
    assert row(c, "qualified_leads", "2026-Q4", "team", "west")["target"] == same(60)
    assert math.isnan(row(c, "qualified_leads", "2026-Q4", "rep", "r1")["target"])  # none given


def test_quota_attainment_is_null_when_the_target_is_zero():
    targets = {
        "revenue": {
            "team": 40000,
            "overrides": [{"period": "2026-10", "scope_id": "east", "value": 0}],
        }
    }
    c = cube(OCT, QUOTA_DEALS, targets=targets)
    assert math.isnan(value(c, "quota_attainment", OCT, "team", "east"))  # 30000 / 0 is n/a
    assert value(c, "quota_attainment", OCT, "team", "west") == same(0.25)
    assert math.isnan(value(c, "quota_attainment", OCT))  # no company target


# ---------------------------------------------------------------------------------------------
# Missing optional tables: KPIs that need them are n/a and listed with a reason
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("missing", "kpis"),
    [
        ("leads", ["qualified_leads", "lead_conversion_rate"]),
        (
            "activities",
            [
                "activities",
                "activities_call",
                "activities_email",
                "activities_meeting",
                "activities_demo",
            ],
        ),
        ("spend", ["cac"]),
    ],
)
def test_kpis_whose_table_is_missing_are_unavailable_not_zero(missing, kpis):
    tables = {
        "leads": [lead("L1", "2026-10-02")],
        "activities": [activity("A1", "2026-10-03", "call")],
        "spend": [spend("2026-10-03", 100)],
        "accounts": ACCOUNTS,
    }
    del tables[missing]
    c = cube(OCT, TWO_NEW_IN_OCTOBER, **tables)
    unavailable = c.attrs["unavailable"]
    for kpi in kpis:
        assert math.isnan(value(c, kpi, OCT)), kpi
        assert math.isnan(value(c, kpi, OCT, "rep", "r1")), kpi
        assert isinstance(unavailable[kpi], str) and unavailable[kpi], kpi
    assert value(c, "revenue", OCT) == 20
    assert value(c, "win_rate", OCT) == 1.0
    assert "revenue" not in unavailable and "win_rate" not in unavailable
    others = {"leads": "qualified_leads", "activities": "activities", "spend": "cac"}
    for table, kpi in others.items():
        if table != missing:
            assert kpi not in unavailable
            assert not math.isnan(value(c, kpi, OCT)), kpi


# ---------------------------------------------------------------------------------------------
# The cube's shape, scopes and accounting identities
# ---------------------------------------------------------------------------------------------

SECTION_4_KPIS = {
    "qualified_leads",
    "activities",
    "activities_call",
    "activities_email",
    "activities_meeting",
    "activities_demo",
    "lead_conversion_rate",
    "win_rate",
    "avg_deal_size",
    "sales_cycle_days",
    "sales_velocity",
    "revenue",
    "revenue_per_rep",
    "revenue_growth_mom",
    "revenue_growth_yoy",
    "new_customers",
    "cac",
    "retention_rate",
    "churn_rate",
    "clv",
    "quota_attainment",
}


def test_cube_has_every_kpi_for_every_scope_and_period():
    c = cube("2026-09:2026-10", [won("O1", "2026-10-05", 100)])
    assert list(c.columns) == CONTRACT_COLUMNS + RANGE_COLUMNS
    assert set(c["period"]) == {"2026-09", "2026-10"}
    assert set(zip(c["scope"], c["scope_id"], strict=True)) == {
        ("company", "all"),
        ("team", "east"),
        ("team", "west"),
        ("rep", "r1"),
        ("rep", "r2"),
        ("rep", "r3"),
    }
    assert SECTION_4_KPIS <= set(c["kpi"])
    assert set(kpi_lib.HEADLINE_KPIS) <= set(kpi_lib.REGISTRY)
    assert {kpi.split(":")[0] for kpi in c["kpi"]} <= set(kpi_lib.REGISTRY)
    assert not c.duplicated(["period", "scope", "scope_id", "kpi"]).any()
    per_cell = c.groupby(["period", "scope", "scope_id"]).size()
    assert per_cell.nunique() == 1  # every KPI in every cell


def test_a_rep_without_deals_has_zero_revenue_and_no_win_rate():
    c = cube(OCT, [won("O1", "2026-10-05", 100, "r1")])
    assert value(c, "revenue", OCT, "rep", "r2") == 0
    assert math.isnan(value(c, "win_rate", OCT, "rep", "r2"))


def test_counts_are_zero_and_ratios_null_on_an_empty_crm():
    c = cube(OCT, [], leads=[], activities=[], accounts=[], revenue=[], spend=[])
    for kpi in ("revenue", "qualified_leads", "activities", "new_customers"):
        assert value(c, kpi, OCT) == 0, kpi
    for kpi in (
        "win_rate",
        "avg_deal_size",
        "sales_cycle_days",
        "lead_conversion_rate",
        "retention_rate",
        "churn_rate",
        "clv",
        "cac",
        "revenue_growth_mom",
    ):
        assert math.isnan(value(c, kpi, OCT)), kpi


def test_team_and_rep_revenues_sum_to_the_company():
    opps = [
        won("O1", "2026-10-05", 1000, "r1"),
        won("O2", "2026-10-06", 250, "r2"),
        won("O3", "2026-10-07", 4000, "r3"),
        won("O4", "2026-09-07", 77, "r3"),
        won("O5", "2026-10-08", None, "r2"),
    ]
    c = cube("2026-09:2026-10", opps)
    revenue = c[c["kpi"] == "revenue"]
    for period, g in revenue.groupby("period"):
        company = g.loc[g["scope"] == "company", "value"].sum()
        assert g.loc[g["scope"] == "team", "value"].sum() == same(company), period
        assert g.loc[g["scope"] == "rep", "value"].sum() == same(company), period
    assert value(c, "revenue", OCT) == 5250


def test_churn_is_one_minus_retention_in_every_scope():
    c = cube(OCT, accounts=RET_ACCOUNTS, revenue=SEPT_OCT_REVENUE)
    ret = c[c["kpi"] == "retention_rate"].set_index(["period", "scope", "scope_id"])["value"]
    churn = c[c["kpi"] == "churn_rate"].set_index(["period", "scope", "scope_id"])["value"]
    assert ret.notna().sum() >= 4  # company, both teams, r1, r3
    for key, r in ret.items():
        assert churn[key] == same(1 - r if not pd.isna(r) else math.nan), key


# ---------------------------------------------------------------------------------------------
# Bad data: DataError naming the table and the column
# ---------------------------------------------------------------------------------------------

GOOD_OPPS = [won("O1", "2026-10-05", 100), lost("O2", "2026-10-06")]


@pytest.mark.parametrize(
    ("tables", "table", "column"),
    [
        pytest.param(
            {"opportunities": [opp("O1", is_closed=True, is_won=True)]},
            "opportunities",
            "closed_at",
            id="closed-without-closed_at",
        ),
        pytest.param(
            {"opportunities": [*GOOD_OPPS, won("O1", "2026-10-07", 5)]},
            "opportunities",
            "opportunity_id",
            id="duplicate-opportunity_id",
        ),
        pytest.param(
            {"opportunities": [*GOOD_OPPS, won("O3", "2026-10-07", 5, "r9")]},
            "opportunities",
            "owner_rep_id",
            id="unknown-owner",
        ),
        pytest.param(
            {
                "opportunities": pd.DataFrame(
                    [{k: v for k, v in o.items() if k != "stage"} for o in GOOD_OPPS]
                )
            },
            "opportunities",
            "stage",
            id="missing-required-column",
        ),
        pytest.param(
            {"opportunities": [*GOOD_OPPS, won("O3", "2026-10-07", 5, created_at="not a date")]},
            "opportunities",
            "created_at",
            id="unparseable-date",
        ),
        pytest.param(
            {"reps": pd.DataFrame([{"rep_id": "r1", "rep_name": "Ann"}])},
            "reps",
            "team_id",
            id="rep-without-team_id-column",
        ),
        pytest.param(
            {"leads": [lead("L1", "2026-10-02"), lead("L1", "2026-10-03")]},
            "leads",
            "lead_id",
            id="duplicate-lead_id",
        ),
        pytest.param(
            {"activities": [activity("A1", "2026-10-32", "call")]},
            "activities",
            "occurred_at",
            id="unparseable-activity-date",
        ),
        pytest.param(
            {"activities": [activity("A1", "2026-10-03", "call", "r9")]},
            "activities",
            "rep_id",
            id="activity-of-unknown-rep",
        ),
        pytest.param(
            {"leads": [lead("L1", "2026-10-02", owner_rep_id="r9")]},
            "leads",
            "owner_rep_id",
            id="lead-of-unknown-rep",
        ),
        pytest.param(
            {
                "revenue": pd.DataFrame(
                    [rev("acme", "2026-10-02", 100), rev("acme", "2026-10-03", "lots")]
                )
            },
            "revenue",
            "amount",
            id="non-numeric-amount",
        ),
        pytest.param(
            {
                "opportunities": [
                    *GOOD_OPPS,
                    opp("O3", created_at=None, closed_at=None) | {"created_at": None},
                ]
            },
            "opportunities",
            "created_at",
            id="missing-required-value",
        ),
    ],
)
def test_bad_data_raises_data_error_naming_table_and_column(tables, table, column):
    tables = {"opportunities": GOOD_OPPS, **tables}
    with pytest.raises(DataError) as info:
        opps = tables.pop("opportunities")
        kpi_lib.compute_cube(source(opps, **tables), OCT, as_of="2026-11-28", targets={})
    assert isinstance(info.value, KpiKitError)
    message = str(info.value)
    assert table in message and column in message, message


def test_a_missing_required_table_is_a_kit_error_naming_it():
    with pytest.raises(KpiKitError, match="opportunities"):
        kpi_lib.compute_cube(
            kpi_lib.load_source(
                {
                    "teams": pd.DataFrame([{"team_id": "east", "team_name": "East"}]),
                    "reps": pd.DataFrame([{"rep_id": "r1", "rep_name": "Ann", "team_id": "east"}]),
                }
            ),
            OCT,
            as_of="2026-11-28",
            targets={},
        )


# ---------------------------------------------------------------------------------------------
# pipeline_amount and weighted_pipeline: deals open at the end of P, weighted by stage
# ---------------------------------------------------------------------------------------------

# Open at the end of October: r1 Demo 1000 and Engaging 500; r3 (west) Engaging 200.
# O4 was won in October (closed: no pipeline). Demo has a probability (0.4), Engaging none.
PIPELINE = [
    opp("O1", "r1", stage="Demo", amount=1000),
    opp("O2", "r1", stage="Engaging", amount=500),
    opp("O3", "r3", stage="Engaging", amount=200),
    won("O4", "2026-10-10", 900, "r2"),
]
DEMO_ONLY = {"stage_probabilities": {"Demo": 0.4}}


@pytest.mark.parametrize(
    ("scope", "scope_id", "pipeline", "weighted"),
    [
        ("company", "all", 1700, 400),  # 1000 x 0.4; Engaging is left out, not counted as 0
        ("team", "east", 1500, 400),
        ("team", "west", 200, NAN),  # open amount, none of it priced: n/a, never 0
        ("rep", "r2", 0, 0),  # nothing open: 0
    ],
)
def test_weighted_pipeline_leaves_out_stages_without_a_probability_and_is_na_when_none_has_one(
    scope, scope_id, pipeline, weighted
):
    c = cube(OCT, PIPELINE, settings=DEMO_ONLY)
    assert value(c, "pipeline_amount", OCT, scope, scope_id) == same(pipeline)
    assert value(c, "weighted_pipeline", OCT, scope, scope_id) == same(weighted)


def test_weighted_pipeline_is_na_for_an_org_without_any_stage_probability():
    c = cube(OCT, PIPELINE, settings={})
    assert value(c, "pipeline_amount", OCT) == same(1700)
    assert math.isnan(value(c, "weighted_pipeline", OCT))


def test_crm_probabilities_fill_the_stages_the_org_settings_leave_out_and_never_override_them():
    import dataclasses

    crm = {"stage_probabilities": {"Engaging": 0.1, "Demo": 0.9}}
    src = dataclasses.replace(source(PIPELINE), settings=crm)
    c = kpi_lib.compute_cube(src, OCT, as_of="2026-11-28", targets={}, settings=DEMO_ONLY)
    assert value(c, "weighted_pipeline", OCT) == same(1000 * 0.4 + 700 * 0.1)
    assert c.attrs["settings"]["stage_probabilities"] == {"Engaging": 0.1, "Demo": 0.4}

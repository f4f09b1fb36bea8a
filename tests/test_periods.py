"""Reporting periods are half-open calendar ranges ``[start, next start)`` (DESIGN.md section 4)."""

from datetime import date

import pandas as pd
import pytest

from kpi_lib.errors import KpiKitError, PeriodError
from kpi_lib.periods import Period, last_complete_month, parse_as_of, parse_periods

T = pd.Timestamp


@pytest.mark.parametrize(
    ("text", "grain", "start", "end", "label"),
    [
        ("2026-10", "month", T("2026-10-01"), T("2026-11-01"), "2026-10"),
        ("2026-12", "month", T("2026-12-01"), T("2027-01-01"), "2026-12"),
        ("2024-02", "month", T("2024-02-01"), T("2024-03-01"), "2024-02"),
        ("2026-Q1", "quarter", T("2026-01-01"), T("2026-04-01"), "2026-Q1"),
        ("2026-Q3", "quarter", T("2026-07-01"), T("2026-10-01"), "2026-Q3"),
        ("2026-q4", "quarter", T("2026-10-01"), T("2027-01-01"), "2026-Q4"),
        ("2026", "year", T("2026-01-01"), T("2027-01-01"), "2026"),
        (" 2026-10 ", "month", T("2026-10-01"), T("2026-11-01"), "2026-10"),
    ],
)
def test_period_parses_to_a_half_open_calendar_range(text, grain, start, end, label):
    period = Period.parse(text)
    assert (period.grain, period.start, period.end, period.label) == (grain, start, end, label)
    assert str(period) == label


@pytest.mark.parametrize(
    "text",
    [
        "2026-13",
        "2026-00",
        "2026-Q0",
        "2026-Q5",
        "26-10",
        "2026/10",
        "October",
        "",
        "2026-1",
        "2026-10-01",
    ],
)
def test_period_parse_rejects_anything_but_month_quarter_or_year(text):
    with pytest.raises(PeriodError) as info:
        Period.parse(text)
    assert isinstance(info.value, KpiKitError)
    assert text.strip() in str(info.value)


def test_month_13_message_says_what_is_wrong():
    with pytest.raises(PeriodError, match="01-12"):
        Period.parse("2026-13")


@pytest.mark.parametrize(
    ("text", "previous", "year_ago"),
    [
        ("2026-10", "2026-09", "2025-10"),
        ("2026-01", "2025-12", "2025-01"),  # MoM across January: P-1 is December of the year before
        ("2026-Q1", "2025-Q4", "2025-Q1"),
        ("2026-Q3", "2026-Q2", "2025-Q3"),
        ("2026", "2025", "2025"),
    ],
)
def test_previous_and_year_ago_keep_the_grain(text, previous, year_ago):
    period = Period.parse(text)
    assert period.previous == Period.parse(previous)
    assert period.year_ago == Period.parse(year_ago)


def test_shift_moves_by_whole_periods_of_the_same_grain():
    assert Period.parse("2026-11").shift(3).label == "2027-02"
    assert Period.parse("2026-Q4").shift(1).label == "2027-Q1"
    assert Period.parse("2026-Q1").shift(-5).label == "2024-Q4"


@pytest.mark.parametrize(
    ("text", "months"),
    [
        ("2026-10", ["2026-10"]),
        ("2026-Q4", ["2026-10", "2026-11", "2026-12"]),
        ("2026", [f"2026-{m:02d}" for m in range(1, 13)]),
    ],
)
def test_months_in_lists_the_months_a_period_covers(text, months):
    assert [m.label for m in Period.parse(text).months_in()] == months


def test_periods_order_by_start():
    assert Period.parse("2025-12") < Period.parse("2026-01") < Period.parse("2026-02")


@pytest.mark.parametrize(
    ("text", "labels"),
    [
        ("2026-10", ["2026-10"]),
        ("2026-11:2027-02", ["2026-11", "2026-12", "2027-01", "2027-02"]),
        ("2026-10:2026-10", ["2026-10"]),
        ("2026-Q3:2027-Q1", ["2026-Q3", "2026-Q4", "2027-Q1"]),
        ("2024:2026", ["2024", "2025", "2026"]),
    ],
)
def test_parse_periods_expands_a_range_inclusively(text, labels):
    assert [p.label for p in parse_periods(text)] == labels


@pytest.mark.parametrize(
    "text", ["2026-10:2026-Q4", "2026-12:2026-10", "2026-10:2026-13", "2026-10:", ":2026-10"]
)
def test_parse_periods_rejects_mixed_reversed_or_broken_ranges(text):
    with pytest.raises(PeriodError):
        parse_periods(text)


@pytest.mark.parametrize(
    ("today", "label"),
    [
        (date(2026, 11, 28), "2026-10"),
        (date(2026, 11, 1), "2026-10"),
        (date(2027, 1, 1), "2026-12"),
        (date(2026, 1, 31), "2025-12"),
    ],
)
def test_last_complete_month_is_the_month_before_today(today, label):
    assert last_complete_month(today).label == label


@pytest.mark.parametrize(
    ("text", "first_instant_after"),
    [
        ("2026-10-31", T("2026-11-01")),
        ("2026-11-28", T("2026-11-29")),
        ("2026-12-31", T("2027-01-01")),
        (date(2026, 11, 28), T("2026-11-29")),
        ("2026-11-28 15:30", T("2026-11-29")),  # the whole day counts
    ],
)
def test_as_of_counts_data_up_to_the_end_of_that_day(text, first_instant_after):
    assert parse_as_of(text) == first_instant_after


def test_as_of_defaults_to_today():
    assert parse_as_of(None) == pd.Timestamp.now().normalize() + pd.Timedelta(days=1)


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "2026-02-30"])
def test_as_of_rejects_non_dates(text):
    with pytest.raises(PeriodError, match="as-of"):
        parse_as_of(text)

"""The guards, by hand: when a source looks stale, lost a table or shrank, and against which
batch; what a render records for them. (The runs that hold a batch back are in
``tests/test_operators.py``.)"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
from conftest import source, won

from kpi_lib.errors import ParamsError
from kpi_lib.periods import Period
from kpi_lib.publish.guards import (
    GuardPolicy,
    accepted_source,
    check_batch,
    judge,
    last_batch,
    record_verdict,
    source_stats,
)

NOV = Period.parse("2026-11")
FRESH = {"opportunities": "2026-11-27", "activities": "2026-11-30"}


def stats(tables=None, **newest) -> dict:
    return {"tables": tables or {}, "newest": {**FRESH, **newest}}


@pytest.mark.parametrize(
    ("newest", "policy", "as_of", "stale"),
    [
        ({}, GuardPolicy(), "2026-11-30", False),
        ({"activities": "2026-11-01"}, GuardPolicy(), "2026-11-30", False),  # on the first day
        ({"activities": "2026-10-31"}, GuardPolicy(), "2026-11-30", True),  # the day before
        ({"opportunities": "2026-06-30"}, GuardPolicy(), "2026-11-30", True),
        ({"activities": "2026-10-29"}, GuardPolicy(max_lag_days=3), "2026-11-30", False),
        ({"activities": "2026-10-28"}, GuardPolicy(max_lag_days=3), "2026-11-30", True),
        # a month to date on Monday the 2nd: the 1st was a Sunday with nothing in it
        ({"activities": "2026-10-30"}, GuardPolicy(), "2026-11-01", False),
        ({"activities": "2026-10-27"}, GuardPolicy(), "2026-11-01", True),
        ({"activities": None}, GuardPolicy(), "2026-11-30", True),  # no dated row at all
    ],
)
def test_a_source_is_stale_when_its_newest_row_is_older_than_the_period(
    newest, policy, as_of, stale
):
    findings = judge(stats(**newest), NOV, None, policy, as_of)
    assert bool(findings) is stale
    assert all(f.startswith("stale source:") for f in findings)


@pytest.mark.parametrize(
    ("now", "before", "drop", "expected"),
    [
        (800, 1000, 0.2, None),  # exactly the share allowed
        (799, 1000, 0.2, "shrunken table: leads has 799 rows, 1,000 in the last batch (2026-10)"),
        (1500, 1000, 0.2, None),  # growing is what sources do
        (400, 1000, 0.7, None),
        (200, 1000, 0.7, "shrunken table: leads has 200 rows, 1,000 in the last batch (2026-10)"),
        (0, 0, 0.2, None),  # an empty table stays empty
    ],
)
def test_a_table_shrank_when_it_lost_more_than_the_allowed_share(now, before, drop, expected):
    last = {"tables": {"leads": before}, "period": "2026-10"}
    findings = judge(stats({"leads": now}), NOV, last, GuardPolicy(max_row_drop=drop))
    if expected is None:
        assert findings == []
    else:
        assert len(findings) == 1 and findings[0].startswith(expected)
        assert f"more than the {drop:.0%} allowed" in findings[0]


def test_a_table_the_last_batch_had_is_missing():
    last = {"tables": {"leads": 10, "spend": 0}, "period": "2026-10"}
    findings = judge(stats({"leads": 10}), NOV, last, GuardPolicy())
    assert findings == ["missing table: spend (0 rows in the last batch (2026-10)) is gone"]


def test_the_policy_refuses_a_negative_lag_and_a_share_of_one_or_more():
    with pytest.raises(ParamsError, match="--max-lag-days"):
        GuardPolicy(max_lag_days=-1)
    with pytest.raises(ParamsError, match="--max-row-drop 1"):
        GuardPolicy(max_row_drop=1)


def manifest(folder: Path, period: str, started: str, finished: str, **extra) -> Path:
    path = folder / period / "manifest.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    data = {"period": period, "started_at": started, "finished_at": finished, **extra}
    path.write_text(json.dumps(data))
    return path.parent


def test_the_last_batch_is_the_newest_render_that_finished_before_this_one_started(tmp_path):
    manifest(tmp_path, "2026-09", "t1", "t2", source=stats({"leads": 100}))
    manifest(tmp_path, "2026-10", "t3", "t4", source=stats({"leads": 900}))
    manifest(tmp_path, "2026-12", "t9", "t9z", source=stats({"leads": 5}))  # rendered later
    manifest(tmp_path, "2026-08", "t0", "t0z")  # no source figures: not a candidate
    here = manifest(tmp_path, "2026-11", "t5", "t6", source=stats({"leads": 500}))
    data = json.loads((here / "manifest.json").read_text())
    assert last_batch(here, data)["period"] == "2026-10"
    verdict = check_batch(here)
    assert verdict.compared_with == "2026-10" and verdict.hold
    assert "shrunken table: leads has 500 rows, 900 in the last batch (2026-10)" in (
        verdict.reason()
    )


def test_a_rerender_of_the_same_period_is_compared_with_the_render_it_replaced(tmp_path):
    previous = {**stats({"leads": 1000}), "finished_at": "t2"}
    here = manifest(
        tmp_path, "2026-11", "t5", "t6", source=stats({"leads": 100}), previous_source=previous
    )
    verdict = check_batch(here)
    assert verdict.compared_with == "2026-11" and "leads has 100 rows" in verdict.reason()


def test_a_batch_held_back_is_never_the_yardstick_of_the_next(tmp_path):
    manifest(tmp_path, "2026-09", "t1", "t2", source=stats({"leads": 1000}))
    october = manifest(tmp_path, "2026-10", "t3", "t4", source=stats({"leads": 500}))
    verdict = check_batch(october)
    assert verdict.hold
    record_verdict(october, verdict)
    held = json.loads((october / "manifest.json").read_text())
    assert held["guard"] == {
        "held": True,
        "forced": False,
        "findings": verdict.findings,
        "compared_with": "2026-09",
    }
    # October rendered again from the same export: the render it replaces offers nothing
    # (held, and no render of October before it), so September stays the yardstick
    assert accepted_source(held) is None
    again = manifest(
        tmp_path, "2026-10", "t5", "t6", source=stats({"leads": 500}), previous_source=None
    )
    assert check_batch(again).compared_with == "2026-09" and check_batch(again).hold
    # sent with --force-send: accepted, and November is compared with it
    record_verdict(again, check_batch(again), forced=True)
    assert json.loads((again / "manifest.json").read_text())["guard"]["forced"] is True
    november = manifest(tmp_path, "2026-11", "t7", "t8", source=stats({"leads": 510}))
    assert check_batch(november).compared_with == "2026-10" and not check_batch(november).hold


def test_a_manifest_without_source_figures_is_not_judged(tmp_path):
    here = manifest(tmp_path, "2026-11", "t5", "t6")
    verdict = check_batch(here)
    assert not verdict.judged and not verdict.hold
    assert not check_batch(tmp_path / "2027-01").hold  # no manifest at all


def test_source_stats_count_rows_and_find_the_newest_dates_up_to_the_report_date():
    src = source(
        [
            won("o1", "2026-10-03", 100),  # created 2026-09-23
            won("o2", "2026-11-20", 100),  # closed after the report date: not counted
        ],
        activities=[
            {
                "activity_id": "a1",
                "rep_id": "r1",
                "occurred_at": "2026-10-30",
                "activity_type": "call",
            },
            {
                "activity_id": "a2",
                "rep_id": "r1",
                "occurred_at": "2026-12-24",
                "activity_type": "demo",
            },
        ],
    )
    got = source_stats(src, until=pd.Timestamp("2026-11-01"))
    assert got["tables"] == {"activities": 2, "opportunities": 2, "reps": 3, "teams": 2}
    # o2 was created on 2026-11-10, after the report date, so the newest is o1's close
    assert got["newest"] == {"opportunities": "2026-10-03", "activities": "2026-10-30"}

"""Deals at risk: each rule on hand-made deals, on its boundary, and what each report says.

November 2026 reported on its last day: the snapshot ``at`` is 1 December 00:00 and the report
date ``R`` is 30 November. Which side of each boundary is at risk:

- expected close on ``R`` (still open at its end): at risk; on 1 December: not;
- last activity (or creation) 30 days before ``R`` (31 October): at risk; 29 days (1 November):
  not;
- time in stage exactly the 90th percentile of won deals' (100.0 days of 10, 20, ..., 110):
  not; a day more: at risk;
- close date pushed twice: at risk; once: not.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pandas as pd
import pytest
from conftest import opp, source, won

from kpi_lib.data.history import write_snapshot
from kpi_lib.errors import ParamsError
from kpi_lib.metrics import risks as rk
from kpi_lib.metrics.batch import ReportContext, prepare_batch
from kpi_lib.metrics.cube import load_settings
from kpi_lib.metrics.deals import open_deals_table, snapshot_at
from kpi_lib.periods import Period
from kpi_lib.publish.index import write_risks_csv
from kpi_lib.report import Report
from kpi_lib.report.risks import next_step, reason_phrases, risk_lines

NOV = Period.parse("2026-11")
AS_OF = "2026-11-30"
AT = pd.Timestamp("2026-12-01")
LIMITS = {"quiet_days": 30, "stage_percentile": 0.9, "close_date_pushes": 2}


def history(*rows) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["opportunity_id", "stage", "entered_at"]).astype(
        {"entered_at": "datetime64[us]"}
    )


def activity(i, deal, when) -> dict:
    return {
        "activity_id": f"a{i}",
        "rep_id": "r1",
        "occurred_at": when,
        "activity_type": "call",
        "opportunity_id": deal,
    }


def at_risk(src, history_dir=None, limits=LIMITS) -> pd.DataFrame:
    table = open_deals_table(src, NOV, AS_OF)
    return rk.deals_at_risk(src, table, snapshot_at(NOV, AS_OF), NOV.label, limits, history_dir)


def reasons(risks) -> dict[str, set[str]]:
    return {r.opportunity_id: set(r.reasons.split(";")) for r in risks.itertuples()}


# ---- past the expected close date ------------------------------------------------------------


def test_a_deal_expected_on_the_report_date_and_still_open_is_past_its_close_date():
    opps = [
        {**opp("on-R", created_at="2026-11-20"), "expected_close_at": "2026-11-30 15:00"},
        {**opp("next-day", created_at="2026-11-20"), "expected_close_at": "2026-12-01"},
        {**opp("no-date", created_at="2026-11-20"), "expected_close_at": None},
        {
            **won("won", "2026-11-25", 10.0, created_at="2026-11-01"),
            "expected_close_at": "2026-11-02",
        },
    ]
    risks = at_risk(source(opps))
    assert reasons(risks) == {"on-R": {"past_expected_close"}}
    assert "past_expected_close" not in risks.attrs["unavailable"]


def test_without_expected_close_dates_the_rule_is_not_checked_and_says_why():
    risks = at_risk(source([opp("o1", created_at="2026-01-01")]))
    assert risks.empty
    assert risks.attrs["unavailable"]["past_expected_close"] == (
        "the source has no expected close dates"
    )


# ---- no activity in the last 30 days ---------------------------------------------------------


def test_no_activity_for_30_days_is_at_risk_and_29_days_is_not():
    opps = [opp(d, created_at="2026-09-01") for d in ("d29", "d30", "later")] + [
        opp("new29", created_at="2026-11-01 09:00"),  # no activity, created 29 days before R
        opp("new30", created_at="2026-10-31 18:00"),  # no activity, created 30 days before R
    ]
    acts = [
        activity(1, "d29", "2026-11-01 10:00"),  # 29 days before 30 November
        activity(2, "d30", "2026-10-31 23:59"),  # 30 days before
        activity(3, "d30", "2026-09-15"),
        activity(4, "later", "2026-09-01"),
        activity(5, "later", "2026-12-01 08:00"),  # after the snapshot: not known yet
        {**activity(6, None, "2026-11-29"), "opportunity_id": None},  # names no deal
    ]
    risks = at_risk(source(opps, activities=acts))
    assert reasons(risks) == {
        "d30": {"no_recent_activity"},
        "later": {"no_recent_activity"},
        "new30": {"no_recent_activity"},
    }
    quiet = risks.set_index("opportunity_id")["days_quiet"]
    assert quiet.to_dict() == {"d30": 30.0, "later": 90.0, "new30": 30.0}


def test_the_quiet_days_threshold_comes_from_the_settings():
    opps = [opp("d10", created_at="2026-09-01")]
    acts = [activity(1, "d10", "2026-11-20")]  # 10 days before R
    assert at_risk(source(opps, activities=acts)).empty
    risks = at_risk(source(opps, activities=acts), limits={**LIMITS, "quiet_days": 10})
    assert reasons(risks) == {"d10": {"no_recent_activity"}}


@pytest.mark.parametrize(
    "tables, why",
    [
        ({}, "the source has no activities"),
        (
            {
                "activities": [
                    {
                        "activity_id": "a",
                        "rep_id": "r1",
                        "occurred_at": "2026-11-01",
                        "activity_type": "call",
                    }
                ]
            },
            "the activities do not name their deal (no opportunity_id)",
        ),
    ],
)
def test_without_activities_naming_deals_the_rule_is_not_checked(tables, why):
    risks = at_risk(source([opp("o1", created_at="2026-01-01")], **tables))
    assert risks.empty
    assert risks.attrs["unavailable"]["no_recent_activity"] == why


# ---- longer in the stage than 90% of won deals took --------------------------------------------


def stage_world(open_days: list[float], won_days=range(10, 120, 10)):
    """Won deals that stayed ``won_days`` in Proposal (closing in 2026), and open deals in
    Proposal for ``open_days`` at the snapshot."""
    opps, rows = [], []
    for i, days in enumerate(won_days):
        entered = pd.Timestamp("2026-06-01") + pd.Timedelta(days=i)
        closed = entered + pd.Timedelta(days=days)
        opps.append(won(f"w{i}", str(closed), 10.0, created_at=str(entered), stage="Won"))
        rows += [(f"w{i}", "Proposal", entered), (f"w{i}", "Won", closed)]
    for days in open_days:
        entered = AT - pd.Timedelta(days=days)
        deal = f"open{days:g}"
        opps.append(opp(deal, created_at=str(entered - pd.Timedelta(days=5)), stage="Proposal"))
        rows += [(deal, "Demo", entered - pd.Timedelta(days=5)), (deal, "Proposal", entered)]
    return source(opps, stage_history=history(*rows))


def test_the_90th_percentile_of_won_deals_time_in_stage_is_not_at_risk_a_day_more_is():
    # 10, 20, ..., 110 days: the 90th percentile (linear) is the 10th value, 100 days
    risks = at_risk(stage_world([100, 101, 99.5]))
    assert reasons(risks) == {"open101": {"stuck_in_stage"}}
    row = risks.iloc[0]
    assert row["stage_limit_days"] == pytest.approx(100.0)
    assert row["days_in_stage"] == pytest.approx(101.0)


def test_a_stage_with_fewer_than_five_won_deals_sets_no_limit():
    risks = at_risk(stage_world([300], won_days=[10, 20, 30, 40]))
    assert risks.empty
    assert rk.stage_limits(pd.DataFrame({"stage": ["A"] * 4, "days": [1.0] * 4}), 0.9) == {}


def test_no_deal_won_in_the_last_year_sets_no_stage_limit_and_breaks_nothing():
    """Stage history, but no deal won in the last 12 months (the one won deal closed in 2025):
    pandas 3 could not map through the empty table of won deals' closing dates, and the whole
    render stopped."""
    opps = [
        opp("open", created_at="2026-10-01"),
        won("won", "2025-06-10", 10.0, created_at="2025-05-01"),
    ]
    activities = [activity(1, "open", "2026-11-20")]
    src = source(
        opps,
        stage_history=history(("open", "Engaging", "2026-10-01")),
        activities=activities,
    )
    r = at_risk(src)
    assert "open" not in set(r["opportunity_id"])  # no limit for Engaging: not stuck


def test_without_stage_history_time_in_stage_is_not_checked():
    risks = at_risk(source([opp("o1", created_at="2026-01-01")]))
    assert "no stage history" in risks.attrs["unavailable"]["stuck_in_stage"]


# ---- close dates pushed and amounts cut (snapshots) --------------------------------------------


def snapshot(day: str, rows: list[tuple], folder: Path) -> None:
    """Write the snapshot of ``day``: rows ``(opportunity_id, amount, expected_close_at)``."""
    frame = pd.DataFrame(
        [
            {
                "opportunity_id": d,
                "owner_rep_id": "r1",
                "created_at": "2026-09-01",
                "stage": "proposal",
                "is_closed": False,
                "is_won": False,
                "amount": amount,
                "expected_close_at": close,
            }
            for d, amount, close in rows
        ]
    )
    write_snapshot(frame, folder, day)


def test_two_pushes_or_a_cut_amount_seen_in_snapshots_are_at_risk_one_push_is_not(tmp_path):
    snapshot(
        "2026-11-01",
        [("twice", 100, "2026-12-10"), ("once", 100, "2026-12-10"), ("cut", 100, "2026-12-10")],
        tmp_path,
    )
    snapshot(
        "2026-11-10",
        [("twice", 100, "2026-12-20"), ("once", 100, "2026-12-20"), ("cut", 100, "2026-12-10")],
        tmp_path,
    )
    snapshot(
        "2026-11-20",
        [("twice", 100, "2027-01-05"), ("once", 100, "2026-12-15"), ("cut", 100, "2026-12-10")],
        tmp_path,
    )
    opps = [
        {**opp("twice", created_at="2026-09-01", amount=100.0), "expected_close_at": "2027-01-05"},
        {**opp("once", created_at="2026-09-01", amount=100.0), "expected_close_at": "2026-12-15"},
        {**opp("cut", created_at="2026-09-01", amount=60.0), "expected_close_at": "2026-12-10"},
    ]
    risks = at_risk(source(opps), history_dir=tmp_path)
    assert reasons(risks) == {"twice": {"close_date_pushed"}, "cut": {"amount_reduced"}}
    by_id = risks.set_index("opportunity_id")
    assert by_id.loc["twice", "pushes"] == 2 and by_id.loc["cut", "amount_was"] == 100.0
    assert reason_phrases(by_id.loc["cut"].to_dict()) == ["amount cut from $100"]


def test_without_snapshots_pushes_and_cuts_are_not_checked(tmp_path):
    risks = at_risk(source([opp("o1", created_at="2026-01-01")]), history_dir=tmp_path)
    assert risks.attrs["unavailable"]["close_date_pushed"] == (
        "no history snapshot was taken before the report date"
    )
    assert (
        "no history snapshots are kept"
        in at_risk(source([])).attrs["unavailable"]["amount_reduced"]
    )


# ---- every reason at once, the file, the reports ---------------------------------------------


def busy_world():
    """r1 (east) owns 'stale': past its date, quiet for 60 days, 101 days in Proposal; r3
    (west) owns 'fresh', expected in December and active, not at risk; r2 (east) owns 'soon',
    expected on 5 December, quiet for 40 days."""
    base = stage_world([])
    opps = list(base.frame("opportunities").to_dict("records"))
    sh = base.frame("stage_history")
    opps = [{**o, "expected_close_at": None} for o in opps]
    opps += [
        {
            **opp("stale", "r1", created_at="2026-08-01", amount=500.0, stage="Proposal"),
            "expected_close_at": "2026-11-15",
        },
        {
            **opp("fresh", "r3", created_at="2026-11-20", amount=300.0, stage="Proposal"),
            "expected_close_at": "2026-12-20",
        },
        {
            **opp("soon", "r2", created_at="2026-10-01", amount=200.0, stage="Proposal"),
            "expected_close_at": "2026-12-05",
        },
    ]
    sh = pd.concat(
        [
            sh,
            history(
                ("stale", "Proposal", AT - pd.Timedelta(days=101)),
                ("fresh", "Proposal", "2026-11-20"),
                ("soon", "Proposal", "2026-11-25"),
            ),
        ],
        ignore_index=True,
    )
    acts = [
        activity(1, "stale", "2026-10-01"),
        activity(2, "fresh", "2026-11-28"),
        activity(3, "soon", "2026-10-21"),
    ]
    frame = pd.DataFrame(opps)
    frame["created_at"] = pd.to_datetime(frame["created_at"]).astype(str)
    return source(frame, stage_history=sh, activities=acts)


def test_every_reason_that_applies_is_listed_and_the_csv_keeps_them(tmp_path):
    risks = at_risk(busy_world())
    assert list(risks["opportunity_id"]) == ["stale", "soon"]  # largest amount first
    assert risks.iloc[0]["reasons"] == "past_expected_close;no_recent_activity;stuck_in_stage"
    assert risks.iloc[1]["reasons"] == "no_recent_activity"
    write_risks_csv(risks, tmp_path / "risks.csv")
    back = pd.read_csv(tmp_path / "risks.csv", dtype=str)
    assert list(back.columns) == rk.RISK_COLUMNS
    assert back.iloc[0].to_dict() == {
        "period": "2026-11",
        "opportunity_id": "stale",
        "owner_rep_id": "r1",
        "team_id": "east",
        "stage": "Proposal",
        "amount": "500.0",
        "expected_close_at": "2026-11-15",
        "reasons": "past_expected_close;no_recent_activity;stuck_in_stage",
    }
    stale = risks.iloc[0].to_dict() | {"report_day": pd.Timestamp("2026-11-30")}
    assert reason_phrases(stale) == [
        "15 days past its expected close date",
        "no activity logged in 60 days",
        "101 days in Proposal; won deals take up to 100 days",
    ]
    assert next_step(stale) == (
        "Update the close date, or close it out; log the next call or meeting; "
        "agree the step that moves it on"
    )


@pytest.fixture(scope="module")
def batch():
    return prepare_batch(busy_world(), NOV, as_of=AS_OF, targets={}, settings={})


def report(batch, role, scope_id) -> str:
    ctx = ReportContext(batch, batch.scope(scope_id), "<frames>")
    section = Report(role, ctx, {"period": NOV.label}).deals_at_risk()
    return re.sub(r"\s+", " ", html.unescape(re.sub(r"<[^>]+>", " ", str(section))))


def test_a_rep_sees_their_deals_at_risk_with_the_next_step(batch):
    text = report(batch, "rep", "r1")
    assert "1 deal at risk, $500" in text
    assert "15 days past its expected close date" in text
    assert "Next: update the close date, or close it out; log the next call or meeting" in text
    assert "soon" not in text  # r2's deal
    assert "Not checked: pushed close dates and cut amounts" in text


def test_a_manager_sees_the_list_by_owner_and_the_share_of_next_month_at_risk(batch):
    text = report(batch, "manager", "east")
    # December: 'soon' ($200, at risk) is the only deal of east expected then: 100% at risk
    assert "100% at risk" in text and "$200 of the $200 expected to close in December 2026" in text
    assert text.index("Ann") < text.index("stale") < text.index("Bob") < text.index("soon")
    west = report(batch, "manager", "west")
    assert "0% at risk" in west and "No open deal is at risk" in west


def test_the_executive_sees_the_amount_at_risk_per_team(batch):
    text = report(batch, "executive", "all")
    assert "East 2 $700 100%" in text  # both of east's open deals, $700 of $700 open
    assert "West 0 $0 0%" in text
    assert "Company 2 $700 70%" in text  # of $1,000 open


def test_the_digest_lists_a_recipients_top_deals_at_risk(batch):
    lines = risk_lines(batch, "team", "east", limit=1)
    assert lines[0].startswith("stale ($500, Proposal): 15 days past its expected close date")
    assert lines[1] == "1 more at risk ($200); see the report."
    assert risk_lines(batch, "team", "west") == []


# ---- the thresholds live in kpis.yaml ----------------------------------------------------------


@pytest.mark.parametrize(
    "risks, message",
    [
        ({"quiet_days": 0}, "quiet_days must be a whole number from 1, got 0"),
        ({"quiet_days": 7.5}, "quiet_days must be a whole number from 1, got 7.5"),
        ({"stage_percentile": 90}, "stage_percentile must be a share between 0 and 1"),
        ({"stage_percentile": 1.0}, "stage_percentile must be a share between 0 and 1"),
        ({"close_date_pushes": True}, "close_date_pushes must be a whole number from 1"),
        ({"pushes": 2}, "unknown key(s) ['pushes']"),
        ("often", "risks must map"),
    ],
)
def test_bad_thresholds_are_refused_naming_the_file(tmp_path, risks, message):
    import yaml

    path = tmp_path / "kpis.yaml"
    path.write_text(yaml.safe_dump({"risks": risks}))
    with pytest.raises(ParamsError) as err:
        load_settings(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_thresholds_left_out_keep_their_defaults():
    assert load_settings({"risks": {"quiet_days": 14}})["risks"] == {
        "quiet_days": 14,
        "stage_percentile": 0.9,
        "close_date_pushes": 2,
    }
    assert load_settings("params/kpis.yaml")["risks"] == LIMITS

"""CRM presets: hand-written Salesforce and HubSpot exports give the KPIs computed by hand.

Fixtures (tests/fixtures/salesforce, salesforce_report, hubspot) use the vendors' documented
field names; each row's role in the October 2026 figures is worked out in the tests below.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest

import kpi_lib
from kpi_lib.errors import DataError, ParamsError, SourceError

FIXTURES = Path(__file__).parent / "fixtures"
AS_OF = "2026-11-28"


def company(src, kpi: str, period: str = "2026-10") -> float:
    cube = kpi_lib.compute_cube(src, period, as_of=AS_OF, targets={})
    return cube.query("scope == 'company' and kpi == @kpi")["value"].iloc[0]


def cube_values(src, scope="company", scope_id="all"):
    cube = kpi_lib.compute_cube(src, "2026-10", as_of=AS_OF, targets={})
    return cube.query("scope == @scope and scope_id == @scope_id").set_index("kpi")["value"]


@pytest.fixture(scope="module")
def salesforce():
    return kpi_lib.load_source(FIXTURES / "salesforce", preset="salesforce", as_of=AS_OF)


@pytest.fixture(scope="module")
def hubspot():
    return kpi_lib.load_source(FIXTURES / "hubspot", preset="hubspot", as_of=AS_OF)


# Salesforce, October 2026. Closed in October: Opp1 won 12000 (created Sep 1, 34 days),
# Opp2 lost, Opp3 won 30000 (created Oct 1, 20 days), Opp4 won without amount (created Aug 15,
# 76 days). Opp8 "closed" Oct 10 but was created Oct 15: quarantined. Opp7 won in September.
# Reps: Ana, Ben, Chloe active; the integration user is inactive (not quota-carrying).
SALESFORCE_OCTOBER = {
    "win_rate": 3 / 4,
    "deals_won": 3,
    "revenue": 42_000,
    "avg_deal_size": 21_000,  # Opp4 has no amount: out of the mean, in the win rate
    "sales_cycle_days": (34 + 20 + 76) / 3,
    "revenue_per_rep": 42_000 / 3,
    "opportunities_created": 2,  # Opp3, Opp5 (Opp8 quarantined)
    "new_customers": 2,  # Globex (Opp3), Initech (Opp4); Acme first won in Sep
    "leads_created": 4,  # Led2, Led3, Led5, Led6 (Led4 belongs to a queue)
    "qualified_leads": 4,  # Led1 converted Oct 2, Led2 status Qualified, Led3 date, Led6
    "lead_conversion_rate": 1 / 4,  # only Led1's opportunity (Opp3) is won
    "activities": 6,  # 4 completed tasks + 2 October events
    "activities_call": 2,
    "activities_email": 1,
    "activities_meeting": 1,
    "activities_demo": 1,
}


@pytest.mark.parametrize(("kpi", "expected"), SALESFORCE_OCTOBER.items())
def test_salesforce_export_gives_hand_computed_october_kpis(salesforce, kpi, expected):
    assert cube_values(salesforce)[kpi] == pytest.approx(expected)


def test_salesforce_teams_come_from_user_roles_named_by_userrole(salesforce):
    teams = salesforce.frame("teams").set_index("team_id")["team_name"].to_dict()
    assert teams == {
        "00E5e000000AbC1EAK": "NA Enterprise",
        "00E5e000000AbC2EAK": "EMEA Mid-Market",
        "Unassigned": "Unassigned",
    }
    assert cube_values(salesforce, "team", "00E5e000000AbC1EAK")["revenue"] == 42_000


def test_salesforce_close_date_of_an_open_deal_is_not_a_close(salesforce):
    opps = salesforce.frame("opportunities").set_index("opportunity_id")
    assert pd.isna(opps.loc["0065e00000Opp5AAA", "closed_at"])  # CloseDate 2026-12-15, open
    assert opps.loc["0065e00000Opp1AAA", "closed_at"] == pd.Timestamp("2026-10-05")


def test_salesforce_history_keeps_only_stage_changes_and_accounts_for_the_rest(salesforce):
    assert len(salesforce.frame("stage_history")) == 7
    acc = salesforce.row_accounting()
    row = acc[acc["table"] == "OpportunityHistory.csv"].iloc[0]
    assert (
        row["status"] == "not a row"
        and row["rows"] == 1
        and "stage did not change" in row["reason"]
    )


def test_salesforce_open_tasks_and_queue_leads_are_accounted_not_dropped(salesforce):
    acc = salesforce.row_accounting().set_index("table")
    assert acc.loc["Task.csv", "rows"] == 1 and "not completed" in acc.loc["Task.csv", "reason"]
    assert acc.loc["Lead.csv", "rows"] == 1 and "queue" in acc.loc["Lead.csv", "reason"]


def test_salesforce_probabilities_become_stage_probabilities_on_a_0_1_scale(salesforce):
    assert salesforce.settings["stage_probabilities"] == {
        "Negotiation/Review": 0.8,
        "Proposal/Price Quote": 0.6,
    }


def test_salesforce_report_export_with_ui_labels_gives_the_same_kpis(salesforce):
    # "Opportunity Owner" (a name), "Stage", "Close Date" as m/d/yyyy; no IsWon / IsClosed, so
    # the stage map decides; Role names are the teams.
    report = kpi_lib.load_source(FIXTURES / "salesforce_report", preset="salesforce", as_of=AS_OF)
    got, want = cube_values(report), cube_values(salesforce)
    for kpi in ("win_rate", "revenue", "avg_deal_size", "revenue_per_rep", "deals_won"):
        assert got[kpi] == pytest.approx(want[kpi]), kpi
    assert sorted(report.frame("teams")["team_name"]) == ["EMEA Mid-Market", "NA Enterprise"]


def test_salesforce_stage_map_option_overrides_the_defaults(tmp_path):
    folder = shutil.copytree(FIXTURES / "salesforce_report", tmp_path / "sf")
    opps = pd.read_csv(folder / "Opportunity.csv", dtype=str, keep_default_na=False)
    opps["Stage"] = opps["Stage"].replace({"Closed Won": "Signed", "Closed Lost": "Dead"})
    opps.to_csv(folder / "Opportunity.csv", index=False)
    assert company(kpi_lib.load_source(folder, preset="salesforce"), "deals_won") == 0
    options = {"stages": {"Signed": "won", "Dead": "lost"}}
    src = kpi_lib.load_source(folder, preset="salesforce", options=options)
    assert company(src, "win_rate") == pytest.approx(3 / 4)


def test_salesforce_team_mapping_can_use_department_and_names(tmp_path):
    options = {"teams": {"column": "Department", "names": {"Sales": "Field Sales"}}}
    src = kpi_lib.load_source(FIXTURES / "salesforce", preset="salesforce", options=options)
    assert dict(
        zip(src.frame("teams")["team_id"], src.frame("teams")["team_name"], strict=True)
    ) == {"Sales": "Field Sales", "IT": "IT"}


def test_salesforce_teams_come_from_department_when_the_exported_role_column_is_empty(tmp_path):
    # A Data Export of an org without roles still has the UserRoleId column, empty for everyone:
    # the first team column that holds a value names the teams, here Department.
    folder = shutil.copytree(FIXTURES / "salesforce", tmp_path / "sf")
    (folder / "UserRole.csv").unlink()
    users = pd.read_csv(folder / "User.csv", dtype=str, keep_default_na=False)
    users["UserRoleId"] = ""
    users["Department"] = ["Ventes Montréal", "Ventes Montréal", "EMEA / Nordics", ""]
    users.to_csv(folder / "User.csv", index=False)
    src = kpi_lib.load_source(folder, preset="salesforce", as_of=AS_OF)
    team_of = src.frame("reps").set_index("rep_name")["team_id"].to_dict()
    assert team_of == {
        "Ana Silva": "Ventes Montréal",
        "Ben Okafor": "Ventes Montréal",
        "Chloe Martin": "EMEA / Nordics",
        "Integration User": "Unassigned",
    }
    assert cube_values(src, "team", "Ventes Montréal")["revenue"] == 42_000


def test_report_export_owners_whose_names_differ_only_by_case_stay_two_reps(tmp_path):
    # "Opportunity Owner" is a name: matched exactly first; ignoring case only where that
    # names one user.
    (tmp_path / "User.csv").write_text(
        "User ID,Full Name,Role\n"
        "0055e000001JdvAAA,Jan de Vries,Direct Sales\n"
        "0055e000001JDVAAA,Jan De Vries,EMEA / Nordics\n"
        "0055e000001ZoeAAA,Zoë O'Brien,EMEA / Nordics\n"
    )
    (tmp_path / "Opportunity.csv").write_text(
        "Opportunity ID,Opportunity Owner,Stage,Amount,Close Date,Created Date\n"
        "0065e00000Opp1AAA,Jan de Vries,Closed Won,100,10/5/2026,9/1/2026\n"
        "0065e00000Opp2AAA,Jan De Vries,Closed Won,200,10/6/2026,9/1/2026\n"
        "0065e00000Opp3AAA,zoë o'brien,Closed Won,400,10/17/2026,9/1/2026\n"  # 17: month first
    )
    src = kpi_lib.load_source(tmp_path, preset="salesforce", as_of=AS_OF)
    owner = src.frame("opportunities").set_index("opportunity_id")["owner_rep_id"].to_dict()
    assert owner == {
        "0065e00000Opp1AAA": "0055e000001JdvAAA",
        "0065e00000Opp2AAA": "0055e000001JDVAAA",
        "0065e00000Opp3AAA": "0055e000001ZoeAAA",
    }
    assert cube_values(src, "team", "Direct Sales")["revenue"] == 100


# HubSpot, October 2026. Closed in October: 5001 won 10000 (33 days), 5002 lost, 5003 won 25000
# (26 days), 5007 lost without amount; 5005 has a negative amount: quarantined. Owner 104 is
# archived. Contacts: 7001 SQL Oct 3 -> deal 5003 won; 7002 SQL Oct 12 -> 5006 open; 7005
# skipped SQL, opportunity Oct 15 -> 5002 lost; 7004 has no owner.
HUBSPOT_OCTOBER = {
    "win_rate": 2 / 4,
    "revenue": 35_000,
    "avg_deal_size": 17_500,
    "sales_cycle_days": (33 + 26) / 2,
    "revenue_per_rep": 35_000 / 3,
    "opportunities_created": 3,  # 5003, 5006, 5008
    "new_customers": 2,
    "qualified_leads": 3,
    "lead_conversion_rate": 1 / 3,
    "leads_created": 2,  # 7002, 7003
    "activities": 6,  # 3 calls, 2 meetings held (one a demo), 1 email
    "activities_call": 3,
    "activities_meeting": 1,
    "activities_demo": 1,
    "activities_email": 1,
}


@pytest.mark.parametrize(("kpi", "expected"), HUBSPOT_OCTOBER.items())
def test_hubspot_export_gives_hand_computed_october_kpis(hubspot, kpi, expected):
    assert cube_values(hubspot)[kpi] == pytest.approx(expected)


def test_hubspot_owner_teams_and_stage_labels(hubspot):
    assert sorted(hubspot.frame("teams")["team_name"]) == ["Enterprise", "Mid-Market"]
    assert cube_values(hubspot, "team", "Enterprise")["revenue"] == 35_000
    stages = set(hubspot.frame("opportunities")["stage"])
    assert {"Closed Won", "Contract Sent", "Qualified To Buy"} <= stages


def test_hubspot_stage_history_comes_from_date_entered_columns(hubspot):
    sh = hubspot.frame("stage_history")
    deal = sh[sh["opportunity_id"] == "5001"].sort_values("entered_at")
    assert deal["stage"].tolist() == ["Appointment Scheduled", "Contract Sent", "Closed Won"]


def test_hubspot_probability_scale_is_0_1(hubspot):
    assert hubspot.settings["stage_probabilities"] == {
        "Contract Sent": 0.8,
        "Qualified To Buy": 0.4,
    }


def test_hubspot_canceled_meetings_and_unowned_contacts_are_accounted(hubspot):
    acc = hubspot.row_accounting().set_index("table")
    assert (
        acc.loc["meetings.csv", "rows"] == 1
        and "did not take place" in acc.loc["meetings.csv", "reason"]
    )
    assert (
        acc.loc["contacts.csv", "rows"] == 1
        and "no contact owner" in acc.loc["contacts.csv", "reason"]
    )


def test_hubspot_marketing_qualified_rule_counts_mql_dates(tmp_path):
    src = kpi_lib.load_source(
        FIXTURES / "hubspot",
        preset="hubspot",
        options={"qualified": {"lifecycle_stage": "marketingqualifiedlead"}},
    )
    # MQL in October: 7002 (Oct 2); 7001's MQL was Sep 25; 7005 skipped to opportunity Oct 15
    assert company(src, "qualified_leads") == 2


def _hubspot_with_a_euro_deal(tmp_path) -> Path:
    folder = shutil.copytree(FIXTURES / "hubspot", tmp_path / "hs")
    deals = pd.read_csv(folder / "deals.csv", dtype=str, keep_default_na=False)
    deals.loc[deals["hs_object_id"] == "5003", "deal_currency_code"] = "EUR"
    deals.to_csv(folder / "deals.csv", index=False)
    return folder


def test_mixed_currencies_are_refused_naming_the_rows(tmp_path):
    with pytest.raises(DataError) as info:
        kpi_lib.load_source(_hubspot_with_a_euro_deal(tmp_path), preset="hubspot")
    message = str(info.value)
    assert (
        "currency" in message and "EUR" in message and "5003" in message and "deals.csv" in message
    )


def test_mixed_currencies_convert_with_an_fx_table(tmp_path):
    folder = _hubspot_with_a_euro_deal(tmp_path)
    (tmp_path / "fx.csv").write_text("currency,rate\nEUR,1.2\nUSD,1\n")
    src = kpi_lib.load_source(folder, preset="hubspot", fx=tmp_path / "fx.csv")
    assert company(src, "revenue") == pytest.approx(10_000 + 25_000 * 1.2)


def test_a_currency_missing_from_the_fx_table_is_refused(tmp_path):
    with pytest.raises(DataError, match="EUR"):
        kpi_lib.load_source(
            _hubspot_with_a_euro_deal(tmp_path),
            preset="hubspot",
            fx={"currency": "USD", "rates": {"GBP": 1.3}},
        )


def test_unknown_preset_and_unknown_option_are_named():
    with pytest.raises(SourceError, match="known presets: salesforce, hubspot"):
        kpi_lib.load_source(FIXTURES / "hubspot", preset="pipedrive")
    with pytest.raises(ParamsError, match="stagez"):
        kpi_lib.load_source(FIXTURES / "hubspot", preset="hubspot", options={"stagez": {}})


def test_a_missing_export_is_named(tmp_path):
    (tmp_path / "User.csv").write_text((FIXTURES / "salesforce" / "User.csv").read_text())
    with pytest.raises(SourceError, match="needs an opportunities export"):
        kpi_lib.load_source(tmp_path, preset="salesforce")


def test_a_source_file_carries_the_preset_for_render_and_notebooks(tmp_path):
    (tmp_path / "source.yaml").write_text(
        f"path: {FIXTURES / 'salesforce'}\npreset: salesforce\noptions:\n  probability_scale: 100\n"
    )
    assert company(str(tmp_path / "source.yaml"), "revenue") == 42_000

"""Exports exactly as people download them (issue 15): one test per hurdle, hand-computed KPIs.

Every file is written by the test, the way the CRM's Export button writes it
(``tests/_exports.py``: BOM, quoting, CRLF, the Classic trailer, typed workbook cells).

The Salesforce org of these tests, October 2026 (a Classic opportunity report, US locale):

====  ============  ==================  ===========  =============  ==========  ==========
row   owner         stage               amount       close          created     in Oct
====  ============  ==================  ===========  =============  ==========  ==========
01    Ana Silva     Closed Won          12,000.00    10/5/2026      9/1/2026    won, 34 d
02    Ana Silva     Closed Lost          8,000.00    10/12/2026     9/10/2026   lost
03    Ben Okafor    Closed Won          30,500.50    10/21/2026     10/1/2026   won, 20 d
04    Chloe Martin  Closed Won           1,250.00    10/30/2026     8/15/2026   won, 76 d
05    Chloe Martin  Negotiation/Review  20,000.00    12/15/2026     10/3/2026   open, 80%
06    Ben Okafor    Closed Won            (500.00)   10/25/2026     10/2/2026   negative:
                                                                                quarantined
07    Ben Okafor    Proposal/Price Q.   15,000.00    11/30/2026     9/20/2026   open, 60%
====  ============  ==================  ===========  =============  ==========  ==========

By hand: won 01, 03, 04 and lost 02 -> win rate 3/4; revenue 12,000 + 30,500.50 + 1,250 =
43,750.50; deal size 43,750.50 / 3 = 14,583.50; cycle (34 + 20 + 76) / 3 days; created in
October 03 and 05 (06 is quarantined) -> 2. Teams (users report: Role): NA Enterprise = Ana and
Ben -> 42,500.50; EMEA Mid-Market = Chloe -> 1,250.

The HubSpot portal (deals export, October 2026): 5001 Ana won 10,000 (Sep 1 10:00 -> Oct 4
10:00, 33 days), 5002 Ana lost 4,000 (Oct 18), 5003 Ben won 25,000 (Oct 2 09:00 -> Oct 28
09:00, 26 days), 5004 Chloe open 9,000, 5006 Ben open 7,000 (created Oct 10), 5007 Chloe lost
without amount (Oct 9), 5008 Ana won 3,000 on Nov 2 (created Oct 20). By hand: win rate 2/4,
revenue 35,000, deal size 17,500, cycle 29.5 days, 3 deals created in October, 3 reps ->
revenue per rep 35,000 / 3.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path

import pandas as pd
import pytest
from _exports import hubspot_csv, salesforce_report_csv, workbook, xls

import kpi_lib
from kpi_lib.cli import main
from kpi_lib.data.validate import validation_report

AS_OF = "2026-11-28"
OPP_REPORT = "report1765500000000.csv"
USER_REPORT = "report1765500000001.csv"

SF_HEADER = [
    "Opportunity Owner",
    "Account Name",
    "Opportunity Name",
    "Stage",
    "Fiscal Period",
    "Amount",
    "Probability (%)",
    "Close Date",
    "Created Date",
    "Opportunity ID",
]
# (owner, account, name, stage, amount, probability, close (y, m, d), created (y, m, d))
SF_ROWS = [
    ("Ana Silva", "Acme Corp", "Acme - Platform", "Closed Won", 12000.00, 100, (2026, 10, 5), (2026, 9, 1)),
    ("Ana Silva", "Acme Corp", "Acme - Add-on", "Closed Lost", 8000.00, 0, (2026, 10, 12), (2026, 9, 10)),
    ("Ben Okafor", "Globex", "Globex - Platform", "Closed Won", 30500.50, 100, (2026, 10, 21), (2026, 10, 1)),
    ("Chloe Martin", "Initech", "Initech - Pilot", "Closed Won", 1250.00, 100, (2026, 10, 30), (2026, 8, 15)),
    ("Chloe Martin", "Umbrella", "Umbrella - Platform", "Negotiation/Review", 20000.00, 80,
     (2026, 12, 15), (2026, 10, 3)),
    ("Ben Okafor", "Hooli", "Hooli - Credit", "Closed Won", -500.00, 100, (2026, 10, 25), (2026, 10, 2)),
    ("Ben Okafor", "Hooli", "Hooli - Platform", "Proposal/Price Quote", 15000.00, 60, (2026, 11, 30), (2026, 9, 20)),
]  # fmt: skip
SF_OCTOBER = {
    "win_rate": 3 / 4,
    "deals_won": 3,
    "revenue": 43_750.50,
    "avg_deal_size": 14_583.50,
    "sales_cycle_days": (34 + 20 + 76) / 3,
    "opportunities_created": 2,
    "revenue_per_rep": 43_750.50 / 3,
}
USERS_HEADER = ["Full Name", "Title", "Email", "Role", "Profile", "Active", "Last Login"]
USERS_ROWS = [
    ["Ana Silva", "AE", "ana.silva@example.com", "NA Enterprise", "Sales User", "1", "10/30/2026"],
    ["Ben Okafor", "AE", "ben.okafor@example.com", "NA Enterprise", "Sales User", "1", "10/29/2026"],
    ["Chloe Martin", "AE", "chloe.martin@example.com", "EMEA Mid-Market", "Sales User", "1", ""],
    ["Dana Admin", "Admin", "dana@example.com", "", "System Administrator", "1", "10/1/2026"],
]  # fmt: skip


def us_date(ymd) -> str:
    return f"{ymd[1]}/{ymd[2]}/{ymd[0]}"


def us_amount(amount: float, code: str = "USD") -> str:
    text = f"{abs(amount):,.2f}"
    return f"{code} ({text})" if amount < 0 else f"{code} {text}"


def sf_row(r, n: int, amount=us_amount, date=us_date) -> list:
    owner, account, name, stage, value, probability, close, created = r
    row = [owner, account, name, stage, "Q4-2026", amount(value), probability, date(close)]
    return row + [date(created), f"0065e00000Opp{n:02d}AAA"]


def salesforce_folder(
    folder: Path, amount=us_amount, date=us_date, trailer: bool = True, users: bool = True
) -> Path:
    """The org's opportunity report (and users report) as Salesforce Classic exports them."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = [sf_row(r, n, amount, date) for n, r in enumerate(SF_ROWS, start=1)]
    salesforce_report_csv(folder / OPP_REPORT, SF_HEADER, rows, trailer=trailer)
    if users:
        salesforce_report_csv(folder / USER_REPORT, USERS_HEADER, USERS_ROWS, trailer=trailer)
    return folder


def cube(src, scope: str = "company", scope_id: str = "all") -> pd.Series:
    c = kpi_lib.compute_cube(src, "2026-10", as_of=AS_OF, targets={})
    return c.query("scope == @scope and scope_id == @scope_id").set_index("kpi")["value"]


def assert_kpis(src, expected: dict, scope: str = "company", scope_id: str = "all") -> None:
    got = cube(src, scope, scope_id)
    for kpi, value in expected.items():
        assert got[kpi] == pytest.approx(value), kpi


def run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out + out.err


# ---------------------------------------------------------------------------------------------
# 1. Files recognised by their columns
# ---------------------------------------------------------------------------------------------


def test_report_files_named_by_report_id_are_recognised_by_their_columns(tmp_path, capsys):
    """Grain: one file. ``report<ms>.csv`` files are an opportunity report and a users report
    by their headers; validate says so, and names a pivot export and a text file it did not
    read. The KPIs are the hand-computed ones of the module docstring."""
    folder = salesforce_folder(tmp_path / "exports")
    salesforce_report_csv(
        folder / "report1765500000002.csv",
        ["Stage", "Sum of Amount"],
        [["Closed Won", "43,750.50"]],
    )
    (folder / "notes.txt").write_text("exported from Salesforce on Nov 28\n")
    code, out = run(
        ["validate", "--source", str(folder), "--preset", "salesforce", "--as-of", AS_OF], capsys
    )
    assert code == 0, out
    assert f"{OPP_REPORT}  as opportunities (by its columns)" in out
    assert f"{USER_REPORT}  as users (by its columns)" in out
    assert "files not recognised (not read):" in out
    assert "report1765500000002.csv: its columns (Stage, Sum of Amount) match no salesforce" in out
    assert "notes.txt: not a CSV, Parquet or Excel file" in out
    src = kpi_lib.load_source(folder, preset="salesforce", as_of=AS_OF)
    assert_kpis(src, SF_OCTOBER)
    assert_kpis(src, {"revenue": 42_500.50}, "team", "NA Enterprise")
    assert_kpis(src, {"revenue": 1_250.00}, "team", "EMEA Mid-Market")


def test_a_file_close_to_an_export_is_named_with_what_it_lacks(tmp_path):
    """Grain: one file. An opportunity report without an owner column is no opportunities
    export: the missing-export error says which columns the nearest export needs."""
    folder = tmp_path / "exports"
    folder.mkdir()
    header = [c for c in SF_HEADER if c != "Opportunity Owner"]
    rows = [sf_row(r, n)[1:] for n, r in enumerate(SF_ROWS, start=1)]
    salesforce_report_csv(folder / OPP_REPORT, header, rows)
    with pytest.raises(kpi_lib.SourceError) as info:
        kpi_lib.load_source(folder, preset="salesforce")
    message = str(info.value)
    assert "needs an opportunities export" in message
    assert OPP_REPORT in message and "has no OwnerId / Owner ID / Opportunity Owner" in message


def test_a_data_export_folder_reads_its_objects_by_name_and_lists_the_others(tmp_path):
    """Grain: one file. A weekly Data Export holds every object: ``Opportunity.csv`` and the
    rest of tests/fixtures/salesforce are read by their names (revenue 42,000 in October, as
    tests/test_presets.py computes by hand), while Campaign, Contact and Case are listed as not
    read, even where a header looks like an export that a named file already gives."""
    folder = shutil.copytree(Path(__file__).parent / "fixtures" / "salesforce", tmp_path / "de")
    (folder / "Campaign.csv").write_text(
        "Id,Name,Type,Status,StartDate,EndDate,IsActive\n7015e0000001AAA,Fall,Webinar,Planned,,,true\n"
    )
    (folder / "Contact.csv").write_text(
        "Id,AccountId,FirstName,LastName,Name,Email,OwnerId\n"
        "0035e0000001AAA,0015e00000AcmeAAA,Gina,Ross,Gina Ross,g@acme.example,0055e000001AnAAAE\n"
    )
    (folder / "Case.csv").write_text(
        "Id,CaseNumber,Subject,Status,Priority,OwnerId\n5005e0000001AAA,00001001,Login,New,High,x\n"
    )
    report = validation_report(folder, "salesforce", as_of=AS_OF)
    read_as = {i["file"]: i["read_as"] for i in report.inputs}
    assert read_as["Opportunity.csv"] == "opportunities" and read_as["Account.csv"] == "accounts"
    assert read_as["Campaign.csv"] is None and read_as["Contact.csv"] is None
    assert read_as["Case.csv"] is None
    src = kpi_lib.load_source(folder, preset="salesforce", as_of=AS_OF)
    assert cube(src)["revenue"] == 42_000


def test_two_reports_of_the_same_export_are_exit_2_keep_one(tmp_path, capsys):
    """Grain: one folder. Two opportunity reports: which one is not a guess."""
    folder = salesforce_folder(tmp_path / "sf", users=False)
    shutil.copy(folder / OPP_REPORT, folder / "report1765500009999.csv")
    code, out = run(["validate", "--source", str(folder), "--preset", "salesforce"], capsys)
    assert code == 2 and OPP_REPORT in out and "report1765500009999.csv" in out
    assert "keep one" in out


# ---------------------------------------------------------------------------------------------
# 2. Formatted values
# ---------------------------------------------------------------------------------------------


def test_formatted_amounts_with_codes_and_accounting_negatives_give_the_hand_computed_kpis(
    tmp_path,
):
    """Grain: one deal. ``"USD 30,500.50"`` is 30500.5 in USD, ``"USD (500.00)"`` is -500 (so
    the credit is quarantined as a negative amount, not summed); probabilities ``80`` on the
    0-100 scale."""
    src = kpi_lib.load_source(salesforce_folder(tmp_path / "sf"), preset="salesforce", as_of=AS_OF)
    opps = src.frame("opportunities").set_index("opportunity_id")
    assert opps.loc["0065e00000Opp03AAA", "amount"] == 30_500.50
    assert set(opps["currency"]) == {"USD"}
    quarantined = src.quarantine["opportunities"]
    assert quarantined["opportunity_id"].tolist() == ["0065e00000Opp06AAA"]
    assert quarantined["amount"].tolist() == [-500.0]
    assert src.settings["stage_probabilities"] == {
        "Negotiation/Review": 0.8,
        "Proposal/Price Quote": 0.6,
    }
    assert_kpis(src, SF_OCTOBER)


def _euro(amount: float) -> str:  # de_DE: 30.500,50 €, negatives -500,00 €
    text = f"{abs(amount):,.2f}".replace(",", " ").replace(".", ",").replace(" ", ".")
    return f"-{text} €" if amount < 0 else f"{text} €"


def _german_date(ymd) -> str:
    return f"{ymd[2]:02d}.{ymd[1]:02d}.{ymd[0]}"


def test_symbols_decimal_commas_and_dotted_dates_of_a_german_export(tmp_path):
    """Grain: one deal. A de_DE report: ``30.500,50 €`` (the symbol names EUR, the comma is
    the decimal mark because ``30.500,50`` can be nothing else), dates ``21.10.2026``: the
    same KPIs, in EUR."""
    folder = salesforce_folder(tmp_path / "de", amount=_euro, date=_german_date)
    src = kpi_lib.load_source(folder, preset="salesforce", as_of=AS_OF)
    assert set(src.frame("opportunities")["currency"]) == {"EUR"}
    assert_kpis(src, SF_OCTOBER)


def test_percent_probabilities_and_a_bare_dollar_amount(tmp_path):
    """Grain: one deal. ``80%`` is a probability of 0.8 whatever the scale; ``$12,000.00``
    names no single currency, so the deals have none (one unknown currency, not mixed)."""
    folder = tmp_path / "sf"
    folder.mkdir()
    rows = [
        sf_row(r, n, amount=lambda a: f"-${-a:,.2f}" if a < 0 else f"${a:,.2f}")
        for n, r in enumerate(SF_ROWS, start=1)
    ]
    for row in rows:
        row[6] = f"{row[6]}%"
    salesforce_report_csv(folder / OPP_REPORT, SF_HEADER, rows)
    src = kpi_lib.load_source(folder, preset="salesforce", as_of=AS_OF)
    assert src.frame("opportunities")["currency"].isna().all()
    assert src.settings["stage_probabilities"]["Negotiation/Review"] == 0.8
    assert_kpis(src, SF_OCTOBER)


def test_amounts_in_two_currency_codes_need_the_fx_table(tmp_path, capsys):
    """Grain: one deal. Deal 03 exported as ``EUR 30,500.50`` in a USD report: the code is the
    row's currency, so the sums would mix currencies (exit 2 naming the row) until an FX table
    converts it: revenue = 12,000 + 30,500.50 x 1.1 + 1,250 = 46,800.55."""
    folder = salesforce_folder(tmp_path / "sf")
    path = folder / OPP_REPORT
    path.write_bytes(path.read_bytes().replace(b'"USD 30,500.50"', b'"EUR 30,500.50"'))
    code, out = run(["validate", "--source", str(folder), "--preset", "salesforce"], capsys)
    assert code == 2
    assert OPP_REPORT in out and "currency" in out and "0065e00000Opp03AAA" in out
    fx = {"currency": "USD", "rates": {"EUR": 1.1}}
    src = kpi_lib.load_source(folder, preset="salesforce", fx=fx, as_of=AS_OF)
    assert_kpis(src, {"revenue": 12_000 + 30_500.50 * 1.1 + 1_250})


# ---------------------------------------------------------------------------------------------
# Locale dates and Excel serials
# ---------------------------------------------------------------------------------------------


def _uk_date(ymd) -> str:
    return f"{ymd[2]:02d}/{ymd[1]:02d}/{ymd[0]}"


def test_day_first_dates_are_read_day_first_when_the_file_says_so(tmp_path):
    """Grain: one deal. An en_GB report: ``21/10/2026`` can only be day first, so ``05/10/2026``
    is 5 October too; the KPIs are the US report's."""
    folder = salesforce_folder(tmp_path / "uk", date=_uk_date, users=False)
    src = kpi_lib.load_source(folder, preset="salesforce", as_of=AS_OF)
    closed = src.frame("opportunities").set_index("opportunity_id")["closed_at"]
    assert closed["0065e00000Opp01AAA"] == pd.Timestamp("2026-10-05")
    assert_kpis(src, SF_OCTOBER)


def _ambiguous_folder(tmp_path: Path) -> Path:
    """Two deals whose every date has a day of 12 or less: 03/10/2026 is 3 October or 10
    March, and nothing in the file tells."""
    folder = tmp_path / "ambiguous"
    folder.mkdir()
    rows = [
        ["Ana Silva", "Acme", "Acme - Platform", "Closed Won", "Q4", "USD 12,000.00", "100"]
        + ["03/10/2026", "01/09/2026", "0065e00000Opp01AAA"],
        ["Ben Okafor", "Globex", "Globex - Platform", "Closed Lost", "Q4", "USD 5,000.00", "0"]
        + ["07/10/2026", "02/09/2026", "0065e00000Opp02AAA"],
    ]
    salesforce_report_csv(folder / OPP_REPORT, SF_HEADER, rows)
    return folder


def test_an_ambiguous_date_order_is_exit_2_naming_file_table_column_and_rows(tmp_path, capsys):
    """Grain: one file. Never a silent guess: ``validate`` and ``kpis`` stop with exit 2 and
    say the file is ambiguous, naming the file, table, column and rows."""
    folder = _ambiguous_folder(tmp_path)
    for command in (["validate"], ["kpis", "--period", "2026-10"]):
        code, out = run(
            [*command, "--source", str(folder), "--preset", "salesforce", "--as-of", AS_OF], capsys
        )
        assert code == 2, out
        assert "Traceback" not in out
        assert OPP_REPORT in out and "table 'opportunities'" in out
        assert "column 'closed_at'" in out and "ambiguous" in out and "date_order" in out
        assert "line 2: Close Date='03/10/2026'" in out and "line 3: Close Date='07/10/2026'" in out


@pytest.mark.parametrize(
    ("order", "won", "closed"),
    [
        # day first: won 3 Oct (created 1 Sep), lost 7 Oct -> October: win rate 1/2, 32 days
        ("DMY", {"2026-10": (0.5, 12_000, 32)}, "2026-10-03"),
        # month first: won 10 Mar (created 9 Jan), lost 10 Jul -> March: win rate 1/1, 60 days
        ("MDY", {"2026-03": (1.0, 12_000, 60)}, "2026-03-10"),
    ],
)
def test_the_date_order_option_reads_an_ambiguous_file(tmp_path, order, won, closed):
    """Grain: one deal. With ``date_order`` the same file reads one way or the other."""
    folder = _ambiguous_folder(tmp_path)
    src = kpi_lib.load_source(folder, preset="salesforce", options={"date_order": order})
    opps = src.frame("opportunities").set_index("opportunity_id")
    assert opps.loc["0065e00000Opp01AAA", "closed_at"] == pd.Timestamp(closed)
    for period, (win_rate, revenue, cycle) in won.items():
        c = kpi_lib.compute_cube(src, period, as_of=AS_OF, targets={})
        values = c.query("scope == 'company'").set_index("kpi")["value"]
        assert values["win_rate"] == pytest.approx(win_rate)
        assert values["revenue"] == revenue
        assert values["sales_cycle_days"] == pytest.approx(cycle)


def test_dates_in_both_orders_in_one_file_are_refused(tmp_path, capsys):
    """Grain: one file. ``13/10/2026`` and ``10/14/2026`` in one export cannot both be right."""
    folder = salesforce_folder(tmp_path / "sf", users=False)
    path = folder / OPP_REPORT
    path.write_bytes(path.read_bytes().replace(b'"10/21/2026"', b'"21/10/2026"'))
    code, out = run(["validate", "--source", str(folder), "--preset", "salesforce"], capsys)
    assert code == 2 and "day first ('21/10/2026')" in out and "month first" in out, out


def excel_serial(ymd) -> str:
    """Days since 1899-12-30, as Excel counts them (2026-10-05 is 46300)."""
    return str((dt.date(*ymd) - dt.date(1899, 12, 30)).days)


def test_excel_serial_dates_are_dates(tmp_path):
    """Grain: one deal. A report opened in Excel and saved as CSV with the date columns
    formatted General: ``46300`` is 5 October 2026. Same KPIs."""
    assert excel_serial((2026, 10, 5)) == "46300"
    folder = salesforce_folder(tmp_path / "sf", date=excel_serial, users=False)
    src = kpi_lib.load_source(folder, preset="salesforce", as_of=AS_OF)
    closed = src.frame("opportunities").set_index("opportunity_id")["closed_at"]
    assert closed["0065e00000Opp01AAA"] == pd.Timestamp("2026-10-05")
    assert_kpis(src, SF_OCTOBER)


# ---------------------------------------------------------------------------------------------
# 3. Report trailers and subtotals
# ---------------------------------------------------------------------------------------------


def test_the_classic_trailer_is_accounted_as_report_trailer(tmp_path, capsys):
    """Grain: one export row. The six trailer lines (three blank ones written ``""``,
    ``Total``, the confidentiality notice, the copyright line) are "not a row: report
    trailer"; every other row is used or quarantined: 7 rows = 6 used + 1 quarantined."""
    folder = salesforce_folder(tmp_path / "sf")
    raw = (folder / OPP_REPORT).read_bytes()
    assert raw.startswith(b'\xef\xbb\xbf"Opportunity Owner",') and b"\r\n" in raw
    assert raw.endswith(b'"Copyright (c) 2000-2026 salesforce.com, inc. All rights reserved."\r\n')
    report = validation_report(folder, "salesforce", as_of=AS_OF)
    acc = report.accounting.set_index(["table", "status"])
    assert acc.loc[(OPP_REPORT, "not a row"), "rows"] == 6  # "" Total "" Confidential "" Copyright
    assert acc.loc[(OPP_REPORT, "not a row"), "reason"].startswith("report trailer")
    users = report.accounting[report.accounting["table"] == USER_REPORT].set_index("reason")
    assert users["rows"].to_dict() == {  # 4 people: Ana, Ben, Chloe are reps; Dana owns nothing
        "report trailer: a blank line, a total or subtotal, the confidentiality notice": 6,
        "a user who owns nothing in the exports (reps are the owners)": 1,
    }
    assert acc.loc[("reps", "used"), "rows"] == 3
    assert acc.loc[("opportunities", "used"), "rows"] == 6
    assert acc.loc[("opportunities", "quarantined"), "rows"] == 1
    code, out = run(["validate", "--source", str(folder), "--preset", "salesforce"], capsys)
    assert f"{OPP_REPORT}: 6 not a row (report trailer" in out


def test_grouped_report_subtotals_are_trailers_and_a_record_without_id_is_not(tmp_path, capsys):
    """Grain: one export row. A report grouped by owner: group lines (``Ana Silva (2
    records)``) and ``Subtotal`` rows hold no opportunity id and are set aside; the KPIs are
    those of the ungrouped report. A real row whose id is missing is no trailer: exit 2."""
    folder = tmp_path / "sf"
    folder.mkdir()
    rows = []
    for owner in ("Ana Silva", "Ben Okafor", "Chloe Martin"):
        mine = [(n, r) for n, r in enumerate(SF_ROWS, start=1) if r[0] == owner]
        rows.append([f"{owner} ({len(mine)} records)"] + [""] * (len(SF_HEADER) - 1))
        rows += [sf_row(r, n) for n, r in mine]
        total = sum(r[4] for _, r in mine)
        rows.append(["Subtotal", "", "", "", "", us_amount(total), "", "", "", ""])
    rows.append(["Grand Totals (7 records)", "", "", "", "", "USD 86,250.50", "", "", "", ""])
    salesforce_report_csv(folder / OPP_REPORT, SF_HEADER, rows)
    src = kpi_lib.load_source(folder, preset="salesforce", as_of=AS_OF)
    acc = src.row_accounting().set_index(["table", "status"])
    assert acc.loc[(OPP_REPORT, "not a row"), "rows"] == 3 + 3 + 1 + 6  # groups, subtotals
    assert_kpis(src, SF_OCTOBER)
    path = folder / OPP_REPORT
    path.write_bytes(path.read_bytes().replace(b'"0065e00000Opp03AAA"', b'""'))
    code, out = run(["validate", "--source", str(folder), "--preset", "salesforce"], capsys)
    assert code == 2 and "opportunity_id" in out and "must not be empty" in out, out


def test_a_report_without_opportunity_id_names_deals_by_their_name(tmp_path):
    """Grain: one deal. The default columns of an opportunity report have no id: deals are
    named by Opportunity Name (a finding says so), and the KPIs are the same."""
    folder = tmp_path / "sf"
    folder.mkdir()
    rows = [sf_row(r, n)[:-1] for n, r in enumerate(SF_ROWS, start=1)]
    salesforce_report_csv(folder / OPP_REPORT, SF_HEADER[:-1], rows)
    src = kpi_lib.load_source(folder, preset="salesforce", as_of=AS_OF)
    assert "Globex - Platform" in set(src.frame("opportunities")["opportunity_id"])
    assert any("Opportunity Name" in str(f) for f in src.findings)
    assert_kpis(src, SF_OCTOBER)


# ---------------------------------------------------------------------------------------------
# 4. XLSX and XLS
# ---------------------------------------------------------------------------------------------

HS_HEADER = ["Record ID", "Deal Name", "Deal Stage", "Amount", "Close Date", "Create Date"]
HS_HEADER += ["Deal owner", "Pipeline"]
D = dt.datetime
HS_ROWS = [
    [5001, "Acme - Platform", "Closed won", 10000, D(2026, 10, 4, 10), D(2026, 9, 1, 10), "Ana Silva"],
    [5002, "Acme - Add-on", "Closed lost", 4000, D(2026, 10, 18, 9), D(2026, 9, 15, 9), "Ana Silva"],
    [5003, "Globex - Platform", "Closed won", 25000.0, D(2026, 10, 28, 9), D(2026, 10, 2, 9), "Ben Okafor"],
    [5004, "Initech - Platform", "Contract sent", 9000, D(2026, 12, 1), D(2026, 9, 25, 9), "Chloe Martin"],
    [5006, "Hooli - Platform", "Qualified to buy", 7000, D(2026, 12, 20), D(2026, 10, 10, 9), "Ben Okafor"],
    [5007, "Umbrella - Pilot", "Closed lost", None, D(2026, 10, 9, 9), D(2026, 9, 1, 9), "Chloe Martin"],
    [5008, "Acme - Seats", "Closed won", 3000, D(2026, 11, 2, 9), D(2026, 10, 20, 9), "Ana Silva"],
]  # fmt: skip
for _row in HS_ROWS:
    _row.append("Sales Pipeline")
HS_OCTOBER = {
    "win_rate": 2 / 4,
    "revenue": 35_000,
    "avg_deal_size": 17_500,
    "sales_cycle_days": (33 + 26) / 2,
    "opportunities_created": 3,
    "revenue_per_rep": 35_000 / 3,
}
HS_DEALS = "hubspot-crm-exports-all-deals-2026-11-28.xlsx"


def test_a_deals_only_hubspot_xlsx_with_typed_cells_gives_the_hand_computed_kpis(tmp_path):
    """Grain: one deal. The Export button's XLSX: number cells are numbers (Record ID 5001
    stays ``5001``, not ``5001.0``), date cells are dates; no owners file: the reps are the
    deal owners, in one team, and the findings say so."""
    folder = tmp_path / "hs"
    folder.mkdir()
    workbook(folder / HS_DEALS, {"All deals": (HS_HEADER, HS_ROWS)})
    src = kpi_lib.load_source(folder, preset="hubspot", as_of=AS_OF)
    opps = src.frame("opportunities").set_index("opportunity_id")
    assert "5001" in opps.index and opps.loc["5001", "closed_at"] == pd.Timestamp(
        "2026-10-04 10:00"
    )
    assert sorted(src.frame("reps")["rep_id"]) == ["Ana Silva", "Ben Okafor", "Chloe Martin"]
    assert src.frame("teams")["team_id"].tolist() == ["All reps"]
    assert any("one team, 'All reps'" in str(f) for f in src.findings)
    c = kpi_lib.compute_cube(src, "2026-10", as_of=AS_OF, targets={})
    assert any("without a users export" in f for f in c.attrs["findings"])
    assert_kpis(src, HS_OCTOBER)
    assert_kpis(src, {"revenue": 35_000}, "team", "All reps")
    assert_kpis(src, {"revenue": 25_000, "deals_won": 1}, "rep", "Ben Okafor")


def test_the_sheet_option_names_the_sheet_and_an_unknown_sheet_is_named(tmp_path, capsys):
    """Grain: one workbook. A workbook whose first sheet is a summary: ``sheet: Deals`` reads
    the deals; a sheet the workbook lacks is exit 2 listing the sheets it has."""
    folder = tmp_path / "hs"
    folder.mkdir()
    summary = (["Deal Stage", "Count"], [["Closed won", 3]])
    workbook(folder / "deals.xlsx", {"Summary": summary, "Deals": (HS_HEADER, HS_ROWS)})
    src = kpi_lib.load_source(folder, preset="hubspot", options={"sheet": "Deals"}, as_of=AS_OF)
    assert_kpis(src, HS_OCTOBER)
    (tmp_path / "options.yaml").write_text("sheet: Pipeline\n")
    args = [
        "--source",
        str(folder),
        "--preset",
        "hubspot",
        "--options",
        str(tmp_path / "options.yaml"),
    ]
    code, out = run(["validate", *args], capsys)
    assert code == 2 and "deals.xlsx" in out and "no sheet 'Pipeline'" in out
    assert "'Summary', 'Deals'" in out


def test_an_xls_workbook_reads_like_the_xlsx(tmp_path):
    """Grain: one deal. The same export as a BIFF8 ``.xls``: the same KPIs."""
    folder = tmp_path / "hs"
    folder.mkdir()
    xls(folder / "hubspot-crm-exports-all-deals-2026-11-28.xls", HS_HEADER, HS_ROWS)
    src = kpi_lib.load_source(folder, preset="hubspot", as_of=AS_OF)
    assert "5001" in set(src.frame("opportunities")["opportunity_id"])
    assert_kpis(src, HS_OCTOBER)


@pytest.mark.parametrize("name", ["deals.xlsx", HS_DEALS, "deals.xls"])
def test_an_unreadable_workbook_is_exit_2_naming_the_file(tmp_path, capsys, name):
    """Grain: one file. A download cut short (or an HTML page saved as .xlsx/.xls): exit 2
    naming the file, and the table when the file's name says which."""
    folder = tmp_path / "hs"
    folder.mkdir()
    (folder / name).write_bytes(b"PK\x03\x04 not really a workbook")
    code, out = run(["validate", "--source", str(folder), "--preset", "hubspot"], capsys)
    assert code == 2 and "Traceback" not in out, out
    assert name in out and "not a readable" in out
    if name.startswith("deals."):
        assert "table 'opportunities'" in out


# ---------------------------------------------------------------------------------------------
# 5. Owners by name
# ---------------------------------------------------------------------------------------------

HS_USERS = ["First Name", "Last Name", "Email", "Primary team", "Additional teams"]


def test_teams_come_from_a_users_export_matched_by_email_or_full_name(tmp_path):
    """Grain: one rep. HubSpot's Users & Teams export (no ids): Ana and Chloe match by full
    name, Ben's deals name him by email (an owner without a name in HubSpot). Enterprise =
    Ana + Ben: 10,000 + 25,000 = 35,000 in October; Mid-Market = Chloe: 0 won, 1 lost.
    Dana owns nothing and is no rep."""
    folder = tmp_path / "hs"
    folder.mkdir()
    rows = [[*r] for r in HS_ROWS]
    for r in rows:
        r[3] = None if r[3] is None else f"{r[3]:,.2f}"  # as the CSV export writes it
        r[4], r[5] = (f"{d:%Y-%m-%d %H:%M}" for d in (r[4], r[5]))
        r[6] = "ben.okafor@example.com" if r[6] == "Ben Okafor" else r[6]
    hubspot_csv(folder / "hubspot-crm-exports-all-deals-2026-11-28.csv", HS_HEADER, rows)
    hubspot_csv(
        folder / "hubspot-users-2026-11-28.csv",
        HS_USERS,
        [
            ["Ana", "Silva", "ana.silva@example.com", "Enterprise", ""],
            ["Ben", "Okafor", "Ben.Okafor@example.com", "Enterprise", "Partners"],
            ["Chloe", "Martin", "chloe.martin@example.com", "Mid-Market", ""],
            ["Dana", "Admin", "dana@example.com", "", ""],
        ],
    )
    report = validation_report(folder, "hubspot", as_of=AS_OF)
    assert {i["file"]: i["read_as"] for i in report.inputs} == {
        "hubspot-crm-exports-all-deals-2026-11-28.csv": "deals",
        "hubspot-users-2026-11-28.csv": "owners",
    }
    src = kpi_lib.load_source(folder, preset="hubspot", as_of=AS_OF)
    team_of = src.frame("reps").set_index("rep_id")["team_id"].to_dict()
    assert team_of == {
        "Ana Silva": "Enterprise",
        "Ben Okafor": "Enterprise",
        "Chloe Martin": "Mid-Market",
    }
    assert_kpis(src, HS_OCTOBER)
    assert_kpis(src, {"revenue": 35_000, "win_rate": 2 / 3}, "team", "Enterprise")
    assert_kpis(src, {"revenue": 0, "win_rate": 0}, "team", "Mid-Market")


def test_an_owner_name_two_people_share_is_exit_2_naming_them(tmp_path, capsys):
    """Grain: one owner. Two Ana Silvas in the users export, and deals owned by "Ana Silva":
    which one is not a guess. Exit 2 naming both, the file, table, column and rows."""
    folder = tmp_path / "hs"
    folder.mkdir()
    workbook(folder / HS_DEALS, {"All deals": (HS_HEADER, HS_ROWS)})
    hubspot_csv(
        folder / "users.csv",
        HS_USERS,
        [
            ["Ana", "Silva", "ana.silva@example.com", "Enterprise", ""],
            ["Ana", "Silva", "ana.silva@emea.example.com", "Mid-Market", ""],
            ["Ben", "Okafor", "ben.okafor@example.com", "Enterprise", ""],
        ],
    )
    for command in (["validate"], ["kpis", "--period", "2026-10"]):
        code, out = run([*command, "--source", str(folder), "--preset", "hubspot"], capsys)
        assert code == 2 and "Traceback" not in out, out
        assert HS_DEALS in out and "table 'opportunities'" in out and "owner_rep_id" in out
        assert "names 2 people in users.csv" in out
        assert "ana.silva@example.com" in out and "ana.silva@emea.example.com" in out
        assert "row 1: Deal owner='Ana Silva'" in out  # the first deal, 5001


def test_a_salesforce_users_report_with_two_people_of_one_name_is_exit_2(tmp_path, capsys):
    """Grain: one owner. The same in Salesforce: a users report (no User ID) with two Ben
    Okafors, and an opportunity report naming him."""
    folder = salesforce_folder(tmp_path / "sf")
    extra = ["Ben Okafor", "SE", "ben.okafor@emea.example.com", "EMEA Mid-Market", "", "1", ""]
    salesforce_report_csv(folder / USER_REPORT, USERS_HEADER, [*USERS_ROWS, extra])
    code, out = run(["validate", "--source", str(folder), "--preset", "salesforce"], capsys)
    assert code == 2 and "names 2 people" in out and "ben.okafor@emea.example.com" in out, out
    assert OPP_REPORT in out and "line 4: Opportunity Owner='Ben Okafor'" in out


def test_the_opportunity_report_alone_is_enough(tmp_path):
    """Grain: one rep. No users report: the three owners are the reps, in one team."""
    src = kpi_lib.load_source(
        salesforce_folder(tmp_path / "sf", users=False), preset="salesforce", as_of=AS_OF
    )
    assert sorted(src.frame("reps")["rep_name"]) == ["Ana Silva", "Ben Okafor", "Chloe Martin"]
    assert_kpis(src, SF_OCTOBER)
    assert_kpis(src, SF_OCTOBER | {"opportunities_created": 2}, "team", "All reps")

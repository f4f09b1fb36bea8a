"""`validate`: row counts, date ranges, findings, and every input row accounted for."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

import kpi_lib
from kpi_lib.cli import main
from kpi_lib.data.demo import generate_demo_tables
from kpi_lib.data.validate import validation_report

FIXTURES = Path(__file__).parent / "fixtures"


def test_every_export_row_is_used_quarantined_or_accounted_with_a_reason():
    report = validation_report(FIXTURES / "hubspot", "hubspot", as_of="2026-11-28")
    acc = report.accounting
    deals = acc[acc["table"] == "opportunities"].set_index("status")["rows"]
    assert deals.to_dict() == {"used": 7, "quarantined": 1}  # 8 rows in deals.csv
    contacts_in = 5
    assert (
        acc.loc[acc["table"] == "leads", "rows"].sum()
        + acc.loc[acc["table"] == "contacts.csv", "rows"].sum()
        == contacts_in
    )
    assert report.quarantined == 1 + 2  # the negative deal and its stage history


def test_report_gives_row_counts_and_date_ranges_per_table():
    tables = validation_report(FIXTURES / "salesforce", "salesforce", as_of="2026-11-28").tables
    opps = tables.set_index("table").loc["opportunities"]
    assert (opps["rows"], opps["quarantined"], opps["from"], opps["to"]) == (
        "7",
        "1",
        "2026-08-15",
        "2026-10-30",
    )
    assert tables.set_index("table").loc["revenue", "rows"] == "absent"


def test_clean_demo_data_has_no_quarantine_and_no_findings(tmp_path):
    tables = generate_demo_tables(end="2026-10", seed=3, scale=0.2)
    report = validation_report(tables, as_of="2026-11-28")
    assert report.quarantined == 0 and report.findings == []
    assert set(report.accounting["status"]) == {"used"}


def test_quarantine_findings_reach_the_cube_for_the_reports():
    src = kpi_lib.load_source(FIXTURES / "salesforce", preset="salesforce", as_of="2026-11-28")
    cube = kpi_lib.compute_cube(src, "2026-10", as_of="2026-11-28", targets={})
    assert any("closed before they were created [quarantined]" in f for f in cube.attrs["findings"])


def test_validate_command_prints_the_report(capsys):
    code = main(
        [
            "validate",
            "--source",
            str(FIXTURES / "hubspot"),
            "--preset",
            "hubspot",
            "--as-of",
            "2026-11-28",
        ]
    )
    out = capsys.readouterr().out
    assert code == 0
    assert (
        "opportunities" in out and "negative amount" in out and "meetings.csv: 1 not a row" in out
    )


def test_kpis_command_takes_a_preset(tmp_path, capsys):
    (tmp_path / "targets.yaml").write_text("revenue:\n  company: 50000\n")
    out = tmp_path / "cube.csv"
    code = main(
        [
            "kpis",
            "--source",
            str(FIXTURES / "salesforce"),
            "--preset",
            "salesforce",
            "--period",
            "2026-10",
            "--as-of",
            "2026-11-28",
            "--targets",
            str(tmp_path / "targets.yaml"),
            "--out",
            str(out),
        ]
    )
    assert code == 0, capsys.readouterr().err
    cube = pd.read_csv(out)
    row = cube.query("scope == 'company' and kpi == 'revenue'").iloc[0]
    assert (row["value"], row["target"]) == (42000, 50000)

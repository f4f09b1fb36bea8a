"""A catalogue of malformed inputs: each gives exit code 2 with a message naming the problem, or
loads with a quarantine / finding that names it, and never a traceback.

Each case is a tiny folder: the good tables below with one file replaced or added.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kpi_lib.cli import main

FIXTURES = Path(__file__).parent / "fixtures"

GOOD = {
    "teams.csv": "team_id,team_name\neast,East\n",
    "reps.csv": "rep_id,rep_name,team_id\nr1,Ann,east\nr2,Bob,east\n",
    "opportunities.csv": (
        "opportunity_id,owner_rep_id,created_at,stage,is_closed,is_won,closed_at,amount,currency\n"
        "O1,r1,2026-09-01,Closed Won,true,true,2026-10-05,1000,USD\n"
        "O2,r2,2026-09-02,Closed Lost,true,false,2026-10-06,500,USD\n"
    ),
}
OPP_HEAD = (
    "opportunity_id,owner_rep_id,created_at,stage,is_closed,is_won,closed_at,amount,currency\n"
)


def opps(*rows: str) -> dict[str, str]:
    return {"opportunities.csv": OPP_HEAD + "".join(r + "\n" for r in rows)}


# (id, files to write over the good ones (None deletes), exit code, words the output must hold)
CASES = [
    ("missing-required-table", {"opportunities.csv": None}, 2, ["opportunities", "missing"]),
    (
        "missing-required-column",
        {"opportunities.csv": "opportunity_id,owner_rep_id,created_at\nO1,r1,2026-09-01\n"},
        2,
        ["stage", "missing"],
    ),
    (
        "unparseable-date",
        opps("O1,r1,2026-13-45,Open,false,false,,10,USD"),
        2,
        ["created_at", "not a date", "line 2"],
    ),
    (
        "duplicate-key",
        opps(
            "O1,r1,2026-09-01,Open,false,false,,10,USD", "O1,r2,2026-09-02,Open,false,false,,10,USD"
        ),
        2,
        ["duplicate opportunity_id", "O1"],
    ),
    ("unknown-owner", opps("O1,r9,2026-09-01,Open,false,false,,10,USD"), 2, ["owner_rep_id", "r9"]),
    (
        "closed-without-close-date",
        opps("O1,r1,2026-09-01,Closed Won,true,true,,10,USD"),
        2,
        ["closed_at", "is_closed"],
    ),
    (
        "won-but-open",
        opps("O1,r1,2026-09-01,Closed Won,false,true,,10,USD"),
        2,
        ["is_won", "not closed"],
    ),
    (
        "non-boolean",
        opps("O1,r1,2026-09-01,Open,maybe,false,,10,USD"),
        2,
        ["is_closed", "boolean", "maybe"],
    ),
    (
        "currency-symbol-in-amount",
        opps('O1,r1,2026-09-01,Open,false,false,,"$1,200",USD'),
        2,
        ["amount", "not a number", "$1,200"],
    ),
    (
        "infinite-amount",
        opps("O1,r1,2026-09-01,Open,false,false,,inf,USD"),
        2,
        ["amount", "finite"],
    ),
    (
        "empty-required-value",
        opps("O1,,2026-09-01,Open,false,false,,10,USD"),
        2,
        ["owner_rep_id", "empty"],
    ),
    (
        "bad-spend-category",
        {"spend.csv": "spent_at,category,amount\n2026-10-01,travel,100\n"},
        2,
        ["category", "travel"],
    ),
    (
        "rep-in-unknown-team",
        {"reps.csv": "rep_id,rep_name,team_id\nr1,Ann,east\nr2,Bob,north\n"},
        2,
        ["team_id", "north"],
    ),
    ("csv-and-parquet-both", {"teams.parquet": b"PAR1"}, 2, ["keep one"]),
    ("empty-file", {"opportunities.csv": ""}, 2, ["opportunities.csv", "cannot read"]),
    (
        "duplicate-header",
        {"teams.csv": "team_id,team_name,team_id\neast,East,east\n"},
        2,
        ["team_id", "twice"],
    ),
    (
        "ragged-row",
        {"teams.csv": "team_id,team_name\neast,East,extra,fields\n"},
        2,
        ["teams.csv", "cannot read"],
    ),
    (
        "not-utf8",
        {"teams.csv": "team_id,team_name\neast,Ost\xe9\n".encode("latin-1")},
        2,
        ["teams.csv", "cannot read"],
    ),
    (
        "mixed-currencies",
        opps(
            "O1,r1,2026-09-01,Open,false,false,,10,USD", "O2,r1,2026-09-01,Open,false,false,,10,EUR"
        ),
        2,
        ["currencies", "EUR", "fx"],
    ),
    (
        "negative-amount",
        opps("O1,r1,2026-09-01,Closed Won,true,true,2026-10-01,-10,USD"),
        0,
        ["negative amount", "[quarantined]", "1 quarantined"],
    ),
    (
        "closed-before-created",
        opps("O1,r1,2026-10-09,Closed Won,true,true,2026-10-01,10,USD"),
        0,
        ["closed before they were created", "[quarantined]"],
    ),
    (
        "won-without-amount",
        opps("O1,r1,2026-09-01,Closed Won,true,true,2026-10-01,,USD"),
        0,
        ["won without an amount"],
    ),
    (
        "history-of-unknown-deal",
        {"stage_history.csv": "opportunity_id,stage,entered_at\nO9,Demo,2026-10-01\n"},
        0,
        ["stage_history", "not in 'opportunities'", "[quarantined]"],
    ),
    (
        "future-dated",
        opps("O1,r1,2036-09-01,Open,false,false,,10,USD"),
        0,
        ["dated after 2026-11-28"],
    ),
    (
        "unknown-activity-type",
        {"activities.csv": "activity_id,rep_id,occurred_at,activity_type\nA1,r1,2026-10-01,fax\n"},
        0,
        ["fax", "counted as 'other'"],
    ),
    (
        "activity-of-unknown-deal",
        {
            "activities.csv": "activity_id,rep_id,occurred_at,activity_type,opportunity_id\nA1,r1,2026-10-01,call,O9\n"
        },
        0,
        ["activities.opportunity_id", "not in 'opportunities'"],
    ),
    (
        "lead-qualified-before-created",
        {
            "leads.csv": "lead_id,owner_rep_id,created_at,qualified_at\nL1,r1,2026-10-05,2026-10-01\n"
        },
        0,
        ["qualified before they were created"],
    ),
    (
        "rep-left-before-start",
        {
            "reps.csv": "rep_id,rep_name,team_id,start_at,end_at\nr1,Ann,east,2026-05-01,2026-01-01\nr2,Bob,east,,\n"
        },
        0,
        ["left before they started"],
    ),
]


def write(folder: Path, files: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for name, content in {**GOOD, **files}.items():
        if content is None:
            continue
        path = folder / name
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return folder


def run(argv: list[str], capsys) -> tuple[int, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out + out.err


@pytest.mark.parametrize(
    ("files", "code", "words"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_malformed_input_is_named_never_a_traceback(tmp_path, capsys, files, code, words):
    folder = write(tmp_path / "src", files)
    got, output = run(["validate", "--source", str(folder), "--as-of", "2026-11-28"], capsys)
    assert got == code, output
    assert "Traceback" not in output and "internal error" not in output, output
    for word in words:
        assert word in output, (word, output)


def test_the_catalogue_holds_at_least_twenty_cases():
    assert len(CASES) + len(PRESET_CASES) >= 20


def _salesforce(tmp_path: Path, file: str, edit) -> Path:
    folder = shutil.copytree(FIXTURES / "salesforce", tmp_path / "sf")
    path = folder / file
    path.write_text(edit(path.read_text()))
    return folder


PRESET_CASES = [
    (
        "salesforce-missing-stage-column",
        "salesforce",
        "Opportunity.csv",
        lambda t: t.replace("StageName", "Phase"),
        2,
        ["Opportunity.csv", "StageName", "Stage"],
    ),
    (
        "salesforce-owner-not-a-user",
        "salesforce",
        "Opportunity.csv",
        lambda t: t.replace("0055e000001ChlAAE", "0055e000009ZzzAAE"),
        2,
        ["owner_rep_id", "0055e000009ZzzAAE"],
    ),
    (
        "salesforce-bad-close-date",
        "salesforce",
        "Opportunity.csv",
        lambda t: t.replace("2026-10-21", "someday"),
        2,
        ["Opportunity.csv", "closed_at", "someday"],
    ),
    (
        "salesforce-amount-with-currency",
        "salesforce",
        "Opportunity.csv",
        lambda t: t.replace("30000.00", '"USD 30,000.00"'),
        2,
        ["amount", "not a number"],
    ),
    ("salesforce-unknown-option", "salesforce", None, None, 2, ["unknown key", "stagez"]),
]


@pytest.mark.parametrize(
    ("preset", "file", "edit", "code", "words"),
    [c[1:] for c in PRESET_CASES],
    ids=[c[0] for c in PRESET_CASES],
)
def test_malformed_export_is_named_never_a_traceback(
    tmp_path, capsys, preset, file, edit, code, words
):
    argv = ["validate", "--preset", preset]
    if file is None:
        folder = FIXTURES / "salesforce"
        (tmp_path / "options.yaml").write_text("stagez: {}\n")
        argv += ["--options", str(tmp_path / "options.yaml")]
    else:
        folder = _salesforce(tmp_path, file, edit)
    got, output = run([*argv, "--source", str(folder)], capsys)
    assert got == code, output
    assert "Traceback" not in output and "internal error" not in output, output
    for word in words:
        assert word in output, (word, output)


def test_a_source_that_does_not_exist_is_exit_2(tmp_path, capsys):
    got, output = run(["validate", "--source", str(tmp_path / "nowhere")], capsys)
    assert got == 2 and "nowhere" in output


def test_a_column_map_naming_a_missing_column_is_exit_2(tmp_path, capsys):
    folder = write(tmp_path / "src", {})
    (tmp_path / "map.yaml").write_text(
        "tables:\n  teams:\n    file: teams.csv\n    columns: {team_id: office, team_name: team_name}\n"
        "  reps: {file: reps.csv, columns: {rep_id: rep_id, rep_name: rep_name, team_id: team_id}}\n"
        "  opportunities: {file: opportunities.csv, columns: {opportunity_id: opportunity_id}}\n"
    )
    got, output = run(
        ["validate", "--source", str(folder), "--colmap", str(tmp_path / "map.yaml")], capsys
    )
    assert got == 2 and "office" in output and "teams.csv" in output, output

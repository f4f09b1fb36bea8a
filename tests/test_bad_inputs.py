"""A catalogue of malformed inputs: each gives exit code 2 with a message naming the problem, or
loads with a quarantine / finding that names it, and never a traceback.

Each case is a tiny folder: the good tables below with one file replaced or added.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kpi_lib.cli import main
from kpi_lib.periods import Period

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
    (  # a formatted amount is read ("USD 30,000.00" is 30000 in USD), but not one whose
        # code contradicts the row's CurrencyIsoCode
        "salesforce-amount-in-another-currency",
        "salesforce",
        "Opportunity.csv",
        lambda t: t.replace("30000.00", '"EUR 30,000.00"'),
        2,
        ["Opportunity.csv", "currency", "differs", "EUR 30,000.00", "USD"],
    ),
    (
        "salesforce-amount-in-words",
        "salesforce",
        "Opportunity.csv",
        lambda t: t.replace("30000.00", "thirty thousand"),
        2,
        ["Opportunity.csv", "amount", "not an amount", "thirty thousand"],
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


# --------------------------------------------------------------------------------------------
# Bad input to render, send and kpis: exit 2, a message naming the fault, reports/ untouched
# --------------------------------------------------------------------------------------------
#
# Each case runs one command against a project folder whose reports/2026-10/ already holds a
# good batch (its data, a report, an index, a manifest and an outbox); the command must refuse
# before it writes anything there.

PERIOD = "2026-10"
RECIPIENTS_OK = (
    "recipients:\n"
    "  - {email: ceo@example.com, name: Dana, role: executive}\n"
    "  - {email: lead@example.com, name: Lea, role: manager, team_id: east}\n"
    "  - {email: ann@example.com, name: Ann, role: rep, rep_id: r1}\n"
)


def _people(*entries: str) -> dict[str, str]:
    return {"recipients.yaml": "recipients:\n" + "".join(f"  - {e}\n" for e in entries)}


def _matrix(roles: str, extra: str = "") -> dict[str, str]:
    return {"params/reports.yaml": f"{extra}roles:\n{roles}"}


_NB = "notebooks/executive.ipynb"

# (id, command, files written into the project (``src/...`` replaces a source table), words)
RUN_CASES = [
    # files
    (
        "render-missing-table",
        "render",
        {"src/opportunities.csv": None},
        ["opportunities", "missing"],
    ),
    (
        "render-bad-date",
        "render",
        {"src/" + k: v for k, v in opps("O1,r1,2026-13-45,Open,false,false,,10,USD").items()},
        ["created_at", "not a date"],
    ),
    (
        "render-duplicate-key",
        "render",
        {
            "src/" + k: v
            for k, v in opps(
                "O1,r1,2026-09-01,Open,false,false,,10,USD",
                "O1,r2,2026-09-02,Open,false,false,,10,USD",
            ).items()
        },
        ["duplicate opportunity_id", "O1"],
    ),
    (
        "render-unknown-owner",
        "render",
        {"src/" + k: v for k, v in opps("O1,r9,2026-09-01,Open,false,false,,10,USD").items()},
        ["owner_rep_id", "r9"],
    ),
    (
        "render-amount-not-a-number",
        "render",
        {"src/" + k: v for k, v in opps('O1,r1,2026-09-01,Open,false,false,,"$1,200",USD').items()},
        ["amount", "$1,200"],
    ),
    ("render-empty-file", "render", {"src/teams.csv": ""}, ["teams.csv", "cannot read"]),
    (
        "render-not-utf8",
        "render",
        {"src/teams.csv": "team_id,team_name\neast,Ost\xe9\n".encode("latin-1")},
        ["teams.csv", "cannot read"],
    ),
    ("render-source-missing", "render --source nowhere", {}, ["nowhere", "does not exist"]),
    (
        "render-source-not-a-source",
        "render --source notes.txt",
        {"notes.txt": "hello"},
        ["notes.txt", "expected a folder"],
    ),
    (
        "render-source-yaml-path-and-url",
        "render --source src.yaml",
        {"src.yaml": "path: src\nurl: duckdb:///x.duckdb\n"},
        ["src.yaml", "exactly one of"],
    ),
    # params YAML
    (
        "targets-not-yaml",
        "render --targets targets.yaml",
        {"targets.yaml": "revenue: [1,\n"},
        ["targets.yaml", "not valid YAML"],
    ),
    ("targets-missing", "render --targets nothere.yaml", {}, ["nothere.yaml", "does not exist"]),
    (
        "targets-not-a-mapping",
        "render --targets targets.yaml",
        {"targets.yaml": "- 1\n- 2\n"},
        ["targets.yaml", "mapping"],
    ),
    (
        "targets-unknown-kpi",
        "render --targets targets.yaml",
        {"targets.yaml": "revenu: {default: 1000}\n"},
        ["targets.yaml", "revenu"],
    ),
    (
        "matrix-unknown-scope-kind",
        "render",
        _matrix(f"  x: {{notebook: {_NB}, scope: region}}\n"),
        ["reports.yaml", "region"],
    ),
    (
        "matrix-notebook-missing",
        "render",
        _matrix("  x: {notebook: notebooks/none.ipynb, scope: company}\n"),
        ["reports.yaml", "none.ipynb", "not found"],
    ),
    (
        "matrix-zero-timeout",
        "render",
        _matrix(f"  x: {{notebook: {_NB}, scope: company}}\n", "timeout_seconds: 0\n"),
        ["reports.yaml", "timeout_seconds"],
    ),
    (
        "matrix-scope-not-in-data",
        "render",
        _matrix(f"  x: {{notebook: {_NB}, scope: team, scope_ids: [north]}}\n"),
        ["north", "not active"],
    ),
    (
        "matrix-unsafe-scope-id",
        "render",
        _matrix(f"  x: {{notebook: {_NB}, scope: rep, scope_ids: ['../r1']}}\n"),
        ["../r1", "not active"],
    ),
    # recipients
    ("recipients-missing", "send --recipients nobody.yaml", {}, ["nobody.yaml", "not found"]),
    (
        "recipients-not-yaml",
        "send",
        {"recipients.yaml": "recipients: [\n"},
        ["recipients.yaml", "not valid YAML"],
    ),
    (
        "recipients-bad-email",
        "send",
        _people("{email: ann-at-example, name: Ann, role: executive}"),
        ["ann-at-example", "not an email address"],
    ),
    (
        "recipients-duplicate",
        "send",
        _people(
            "{email: a@example.com, name: A, role: executive}",
            "{email: A@example.com, name: B, role: executive}",
        ),
        ["duplicate address"],
    ),
    (
        "recipients-unknown-role",
        "send",
        _people("{email: a@example.com, name: A, role: cfo}"),
        ["role 'cfo'"],
    ),
    (
        "recipients-manager-without-team",
        "send",
        _people("{email: a@example.com, name: A, role: manager}"),
        ["needs 'team_id:'"],
    ),
    (
        "recipients-rep-sees-another-rep",
        "send",
        _people("{email: a@example.com, name: A, role: rep, rep_id: r1, scopes: [r1, r2]}"),
        ["may only see their own report", "r2"],
    ),
    (
        "recipients-manager-sees-company",
        "send",
        _people("{email: a@example.com, name: A, role: manager, team_id: east, scopes: [all]}"),
        ["may not see scope 'all'"],
    ),
    (
        "recipients-unknown-scope",
        "send",
        _people("{email: a@example.com, name: A, role: executive, scopes: [west]}"),
        ["unknown scopes", "west"],
    ),
    (
        "recipients-unknown-rep",
        "send",
        _people("{email: a@example.com, name: A, role: rep, rep_id: r7}"),
        ["r7", "not a rep"],
    ),
    (
        "recipients-header-injection",
        "send",
        _people('{email: a@example.com, name: "A\\nBcc: evil@example.com", role: executive}'),
        ["one line"],
    ),
    (
        "smtp-user-without-password",
        "send --smtp-host 127.0.0.1 --smtp-user ops",
        {},
        ["KPI_SMTP_PASSWORD"],
    ),
    # periods
    ("render-month-13", "render --period 2026-13", {}, ["2026-13"]),
    ("render-quarter-5", "render --period 2026-Q5", {}, ["2026-Q5"]),
    ("render-not-a-period", "render --period october", {}, ["october"]),
    ("render-bad-as-of", "render --as-of 2026-02-30", {}, ["2026-02-30"]),
    ("kpis-reversed-range", "kpis --period 2026-10:2026-01", {}, ["2026-10:2026-01"]),
    ("send-period-not-rendered", "send --period 2026-09", {}, ["no rendered batch", "2026-09"]),
    ("send-bad-period", "send --period 2026-10-01", {}, ["2026-10-01"]),
]


@pytest.fixture(scope="module")
def good_batch(tmp_path_factory) -> Path:
    """A project folder: ``src/`` (the good tables) and ``reports/2026-10/`` rendered from it
    (the batch's data; a stand-in report, index, manifest and outbox)."""
    from kpi_lib.metrics.batch import prepare_batch

    folder = tmp_path_factory.mktemp("good")
    write(folder / "src", {})
    period_dir = folder / "reports" / PERIOD
    prepare_batch(
        str(folder / "src"),
        Period.parse(PERIOD),
        out_dir=period_dir / "_data",
        as_of="2026-11-28",
        targets=None,
    )
    for name, text in {
        "executive/all.html": "<!DOCTYPE html><html>good</html>",
        "index.html": "<!DOCTYPE html><html>index</html>",
        "manifest.json": '{"reports": []}',
        "outbox/ceo@example.com.eml": "x",
    }.items():
        (period_dir / name).parent.mkdir(parents=True, exist_ok=True)
        (period_dir / name).write_text(text)
    (folder / "recipients.yaml").write_text(RECIPIENTS_OK)
    return folder


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {
        p.relative_to(root).as_posix(): (p.read_bytes() if p.is_file() else None)
        for p in sorted(root.rglob("*"))
    }


def _argv(command: str) -> list[str]:
    words = command.split()
    given = set(words)
    argv = list(words)
    if words[0] in ("render", "kpis") and "--source" not in given:
        argv += ["--source", "src"]
    if words[0] in ("render", "kpis", "send") and "--period" not in given:
        argv += ["--period", PERIOD]
    if words[0] in ("render", "send"):
        argv += ["--out", "reports"]
    if words[0] == "render":
        argv += ["--as-of", "2026-11-28"] if "--as-of" not in given else []
        argv += ["--targets", "none.yaml"] if "--targets" not in given else []
    if words[0] == "send" and "--recipients" not in given:
        argv += ["--recipients", "recipients.yaml"]
    return argv


@pytest.mark.parametrize(
    ("command", "files", "words"), [c[1:] for c in RUN_CASES], ids=[c[0] for c in RUN_CASES]
)
def test_bad_input_to_a_run_is_exit_2_named_and_leaves_reports_unchanged(
    tmp_path, good_batch, capsys, monkeypatch, command, files, words
):
    folder = shutil.copytree(good_batch, tmp_path / "project")
    (folder / "none.yaml").write_text("{}\n")  # an empty targets file: no targets
    for name, content in files.items():
        path = folder / name
        if content is None:
            path.unlink()
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    monkeypatch.chdir(folder)
    monkeypatch.delenv("KPI_SMTP_PASSWORD", raising=False)
    before = _snapshot(folder / "reports")

    got, output = run(_argv(command), capsys)

    assert got == 2, output
    assert output.startswith("error: ") and "Traceback" not in output, output
    for word in words:
        assert word in output, (word, output)
    assert _snapshot(folder / "reports") == before


def test_the_run_catalogue_covers_files_params_recipients_and_periods_in_30_cases():
    kinds = {c[0].split("-")[0] for c in RUN_CASES}
    assert len(RUN_CASES) >= 30
    assert {"render", "targets", "matrix", "recipients", "send", "kpis"} <= kinds

"""Fan-out rendering: the batch layout of DESIGN.md section 6, failures that stay local.

The fast tests check the report matrix, the plan, the page template and the index on hand-made
inputs. The slow ones render real batches on a small demo CRM (one rep per team): the three
report notebooks for every scope, then tiny stand-in notebooks that fail or hang on purpose.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pandas as pd
import pytest
from _notebooks import stand_in_notebook
from conftest import CONTRACT_COLUMNS, RANGE_COLUMNS
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from kpi_lib.errors import ParamsError, UnknownScopeError
from kpi_lib.periods import Period
from kpi_lib.publish.execute import export_html
from kpi_lib.publish.index import BatchResult, ReportOutcome, index_html
from kpi_lib.publish.plan import Matrix, RoleSpec, load_matrix, plan_reports
from kpi_lib.publish.render import render_batch

# kpis.csv: the cube's columns (DESIGN.md section 5)
KPIS_CSV_COLUMNS = CONTRACT_COLUMNS + RANGE_COLUMNS

ROOT = Path(__file__).resolve().parent.parent
PERIOD = "2026-10"
AS_OF = "2026-11-05"
# One pixel, enough to prove an image is embedded rather than linked.
PNG = (
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJ"
    "RU5ErkJggg=="
)


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


class Page(HTMLParser):
    """What a test needs from an HTML page: its links, images and index cards."""

    def __init__(self, text: str):
        super().__init__()
        self.links, self.images, self.cards = [], [], []
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "a":
            self.links.append(attrs.get("href"))
        elif tag == "img":
            self.images.append(attrs.get("src") or "")
        elif tag == "li" and "card" in (attrs.get("class") or ""):
            self.cards.append(attrs)


def assert_reader_page(text: str) -> None:
    """A report page a reader gets: no code, no prompts, no tracebacks, nothing linked out."""
    for needle in (
        "jp-InputArea",
        "input_area",
        "In&nbsp;[",
        "In [",
        "Traceback",
        "<script",
        "highlight-ipynb",
    ):
        assert needle not in text, needle
    images = Page(text).images
    assert all(src.startswith("data:image/") for src in images), [s[:40] for s in images]


@dataclass
class FakeBatch:
    """Stands in for ``kpi_lib.metrics.batch.Batch`` where a test needs chosen scopes."""

    scope_rows: list[dict]
    cube: pd.DataFrame
    fingerprint: str = "f00d"
    code_version: str = "test"
    as_of: str = AS_OF

    def scopes(self):
        return self.scope_rows


def write_matrix(path: Path, roles: dict) -> Path:
    """A report matrix file: ``{role: {notebook, scope, ...}}``."""
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"roles": roles}, sort_keys=False))
    return path


@pytest.fixture(scope="module")
def demo_source(tmp_path_factory) -> Path:
    """The demo CRM at a small scale: six teams of one rep, history up to 2026-10."""
    from kpi_lib.data.demo import write_demo_data

    return write_demo_data(
        tmp_path_factory.mktemp("demo") / "demo.duckdb", end=PERIOD, seed=7, scale=0.2
    )


# ---------------------------------------------------------------------------------------------
# The report matrix and the plan
# ---------------------------------------------------------------------------------------------


def test_shipped_matrix_renders_company_teams_and_reps_with_the_three_notebooks():
    matrix = load_matrix(ROOT / "params" / "reports.yaml")
    assert {
        (r.role, r.scope, r.notebook.as_posix(), r.scope_ids) for r in matrix.roles.values()
    } == {
        ("executive", "company", "notebooks/executive.ipynb", None),
        ("manager", "team", "notebooks/manager.ipynb", None),
        ("rep", "rep", "notebooks/rep.ipynb", None),
    }
    assert matrix.timeout == 600
    assert all((ROOT / r.notebook).is_file() for r in matrix.roles.values())


@pytest.mark.parametrize(
    "text, message",
    [
        ("roles: {}", "non-empty 'roles:'"),
        ("roles: {rep: {notebook: n.ipynb}}", "needs 'notebook:' and 'scope:'"),
        ("roles: {rep: {notebook: n.ipynb, scope: region}}", "scope 'region' is not one of"),
        ("roles: {rep: {notebook: n.ipynb, scope: rep, colour: red}}", "unknown keys ['colour']"),
        ("roles: {rep: {notebook: n.ipynb, scope: rep, scope_ids: R001}}", "non-empty list"),
        (
            "roles: {rep: {notebook: n.ipynb, scope: rep, scope_ids: ['R001', '', null]}}",
            "scope_ids must be non-empty",
        ),
        ("roles: {Rep/1: {notebook: n.ipynb, scope: rep}}", "role names are lower-case"),
        ("roles: {rep: {notebook: n.ipynb, scope: rep}}\ntimeout_seconds: 0", "timeout_seconds"),
        ("roles: [", "not valid YAML"),
    ],
)
def test_a_bad_matrix_is_refused_with_the_file_and_the_entry_at_fault(tmp_path, text, message):
    path = tmp_path / "reports.yaml"
    path.write_text(text)
    with pytest.raises(ParamsError) as error:
        load_matrix(path)
    assert str(path) in str(error.value) and message in str(error.value)


SCOPES = [
    ("company", "all", "Company", None),
    ("team", "east", "East", "east"),
    ("team", "west", "West", "west"),
    ("rep", "r1", "Ann", "east"),
    ("rep", "r3", "Cy", "west"),
]
MATRIX = Matrix(
    {
        "executive": RoleSpec("executive", Path("e.ipynb"), "company"),
        "manager": RoleSpec("manager", Path("m.ipynb"), "team"),
        "rep": RoleSpec("rep", Path("r.ipynb"), "rep"),
    }
)


def test_the_default_plan_is_the_company_every_team_and_every_active_rep():
    plan = plan_reports(MATRIX, SCOPES)
    assert [(s.role, s.scope_id, s.scope_name) for s in plan] == [
        ("executive", "all", "Company"),
        ("manager", "east", "East"),
        ("manager", "west", "West"),
        ("rep", "r1", "Ann"),
        ("rep", "r3", "Cy"),
    ]
    assert plan[3].html_path.as_posix() == "rep/r1.html"
    assert plan[3].notebook_path.as_posix() == "_notebooks/rep/r1.ipynb"


def test_an_explicit_scope_list_and_a_role_subset_narrow_the_plan():
    matrix = Matrix({**MATRIX.roles, "rep": RoleSpec("rep", Path("r.ipynb"), "rep", ("r3",))})
    assert [(s.role, s.scope_id) for s in plan_reports(matrix, SCOPES, roles=["rep"])] == [
        ("rep", "r3")
    ]


def test_an_explicit_scope_that_is_not_active_is_an_error_listing_the_known_ones():
    matrix = Matrix({"rep": RoleSpec("rep", Path("r.ipynb"), "rep", ("r2",))})
    with pytest.raises(UnknownScopeError, match=r"\['r2'\].*known: \['r1', 'r3'\]"):
        plan_reports(matrix, SCOPES)


def test_an_unknown_role_is_an_error_listing_the_matrix_roles():
    with pytest.raises(ParamsError, match="unknown roles \\['cfo'\\]"):
        plan_reports(MATRIX, SCOPES, roles=["cfo"])


ODD_IDS = [
    "../../etc/passwd",
    "a/b",
    ".hidden",
    "x" * 200,
    "r 1",
    "..",
    "c:\\x",
    "Cara Losch",
    "José Núñez",
    "Ann",
    "ann",
    "CON",
    "all",
    "R001",
]


def test_any_scope_id_gets_one_safe_report_file_of_its_own():
    """Ids are data: each report gets one file inside its role's folder, a plain id keeps its
    name, and no two files differ only by case."""
    scopes = [("company", "all", "Company", None)] + [
        ("rep", i, f"Rep {n}", "east") for n, i in enumerate(ODD_IDS)
    ]
    specs = plan_reports(MATRIX, scopes)
    reps = [s for s in specs if s.role == "rep"]
    assert [s.scope_id for s in reps] == ODD_IDS
    for s in reps:
        for path in (s.html_path, s.notebook_path):
            assert path.parent.name == "rep" and path.name == path.name.strip()
            assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*\.(html|ipynb)", path.name), path
            assert len(path.name) <= 120
    names = [s.html_path.name.lower() for s in reps]
    assert len(set(names)) == len(names)
    assert {s.scope_id: s.html_path.name for s in reps}["R001"] == "R001.html"
    assert {s.scope_id: s.html_path.name for s in reps}["all"] == "all.html"
    cara = {s.scope_id: s.html_path.name for s in reps}["Cara Losch"]
    assert cara.startswith("Cara-Losch-") and cara.endswith(".html")
    again = plan_reports(MATRIX, list(reversed(scopes)))
    assert {s.scope_id: s.html_path for s in again} == {s.scope_id: s.html_path for s in specs}


# ---------------------------------------------------------------------------------------------
# The page and the index
# ---------------------------------------------------------------------------------------------


def test_an_exported_page_shows_outputs_and_narrative_but_never_code(tmp_path):
    secret = "SECRET_SOURCE = 42"
    nb = new_notebook(
        cells=[
            new_markdown_cell("# Revenue\n\nPlain words."),
            new_code_cell(
                secret,
                execution_count=1,
                outputs=[
                    new_output("stream", name="stdout", text="visible line\n"),
                    new_output("stream", name="stderr", text="a warning for the analyst\n"),
                    new_output("display_data", data={"image/png": PNG, "text/plain": "<Figure>"}),
                    new_output(
                        "display_data", data={"text/html": "<table><tr><td>7</td></tr></table>"}
                    ),
                    new_output("display_data", data={"application/javascript": "alert(1)"}),
                ],
            ),
            new_code_cell(
                "hidden()",
                execution_count=2,
                metadata={"tags": ["remove-cell"]},
                outputs=[new_output("stream", name="stdout", text="removed cell\n")],
            ),
        ]
    )
    path = tmp_path / "executed.ipynb"
    nbformat.write(nb, path)

    page = export_html(
        path, title="Executive report: Company (2026-10)", period=PERIOD, index_href="../index.html"
    )

    assert_reader_page(page)
    assert secret not in page and "alert(1)" not in page
    assert "<h1" in page and "Plain words." in page and "visible line" in page
    assert "<td>7</td>" in page
    assert "a warning for the analyst" not in page and "removed cell" not in page
    assert Page(page).images == [f"data:image/png;base64,{PNG}"]
    assert "<title>Executive report: Company (2026-10)</title>" in page
    assert 'href="../index.html"' in page
    assert len(page.encode()) < 20_000, "the page template carries no heavy CSS"


def outcome(role, scope_id, name, status="ok", error=None, last_good=False, group=None):
    return ReportOutcome(
        role,
        {"executive": "company", "manager": "team", "rep": "rep"}[role],
        scope_id,
        name,
        f"notebooks/{role}.ipynb",
        f"{role}/{scope_id}.html",
        f"_notebooks/{role}/{scope_id}.ipynb",
        status=status,
        error=error,
        last_good_html=last_good,
        group=group,
    )


def batch_result(tmp_path, reports) -> BatchResult:
    return BatchResult(
        PERIOD,
        tmp_path / PERIOD,
        reports,
        "2026-11-05T06:00:00+00:00",
        "2026-11-05T06:01:30+00:00",
        90.0,
        "f00d",
        "0.1.0",
        AS_OF,
    )


def test_the_index_links_every_report_with_its_status_and_escapes_names(tmp_path):
    result = batch_result(
        tmp_path,
        [
            outcome("executive", "all", "Company"),
            outcome("manager", "east", "East <Sales> & Co"),
            outcome("rep", "r1", "<script>alert('x')</script>", group="East <Sales> & Co"),
            outcome("rep", "r2", "Bob", "failed", "ValueError: bad <data>", last_good=True),
            outcome("rep", "r3", "Cy", "failed", "TimeoutError: report timed out after 600 s"),
        ],
    )
    page = index_html(result, MATRIX)
    parsed = Page(page)

    assert "<script" not in page and "&lt;script&gt;" in page
    assert "East &lt;Sales&gt; &amp; Co" in page and "ValueError: bad &lt;data&gt;" in page
    assert [(c["data-report"], c["data-status"]) for c in parsed.cards] == [
        ("executive/all.html", "ok"),
        ("manager/east.html", "ok"),
        ("rep/r1.html", "ok"),
        ("rep/r2.html", "failed"),
        ("rep/r3.html", "failed"),
    ]
    # A failed report links to its last good page when there is one, else to nothing.
    assert [h for h in parsed.links if h.endswith(".html")] == [
        "executive/all.html",
        "manager/east.html",
        "rep/r1.html",
        "rep/r2.html",
    ]
    assert "kpis.csv" in parsed.links and "manifest.json" in parsed.links
    assert '<meta name="viewport" content="width=device-width, initial-scale=1">' in page
    assert "5 reports, 3 ok, 2 failed" in page


def test_the_summary_names_every_failed_report_and_its_error(tmp_path):
    result = batch_result(
        tmp_path,
        [
            outcome("executive", "all", "Company"),
            outcome("rep", "r2", "Bob", "failed", "ValueError: bad data", last_good=True),
        ],
    )
    lines = result.summary().splitlines()
    assert lines[0].startswith("2026-10: 2 reports, 1 ok, 1 failed in 90.0 s")
    assert lines[1] == "  FAILED rep/r2 (last good HTML kept): ValueError: bad data"
    assert [r.scope_id for r in result.failed] == ["r2"]


# ---------------------------------------------------------------------------------------------
# Whole batches (slow)
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_whole_demo_batch_renders_every_role_and_scope_into_the_design_layout(
    tmp_path, demo_source
):
    from kpi_lib.metrics.batch import prepare_batch

    result = render_batch(
        Period.parse(PERIOD),
        source=str(demo_source),
        out=str(tmp_path),
        as_of=AS_OF,
        progress=False,
    )
    expected = prepare_batch(str(demo_source), Period.parse(PERIOD), as_of=AS_OF)
    scopes = [(s.scope, s.scope_id) for s in expected.scopes()]
    role_of = {"company": "executive", "team": "manager", "rep": "rep"}
    period_dir = tmp_path / PERIOD

    assert result.failed == [], result.summary()
    assert sorted((r.role, r.scope_id) for r in result.reports) == sorted(
        (role_of[scope], scope_id) for scope, scope_id in scopes
    )
    # DESIGN.md section 6.
    for name in ("index.html", "manifest.json", "kpis.csv"):
        assert (period_dir / name).is_file()
    for scope, scope_id in scopes:
        assert (period_dir / role_of[scope] / f"{scope_id}.html").is_file()
        assert (period_dir / "_notebooks" / role_of[scope] / f"{scope_id}.ipynb").is_file()
    assert not list(period_dir.rglob(".*.tmp-*")), "temporary files left behind"

    for page_path in period_dir.glob("*/*.html"):
        page = page_path.read_text()
        assert_reader_page(page)
        assert len(page.encode()) < 400_000, f"{page_path.name}: {len(page.encode())} bytes"

    index = Page((period_dir / "index.html").read_text())
    assert sorted((c["data-report"], c["data-status"]) for c in index.cards) == sorted(
        (f"{role_of[scope]}/{scope_id}.html", "ok") for scope, scope_id in scopes
    )
    assert {f"{role_of[s]}/{i}.html" for s, i in scopes} <= set(index.links)

    manifest = json.loads((period_dir / "manifest.json").read_text())
    assert manifest["period"] == PERIOD and manifest["counts"] == {
        "reports": len(scopes),
        "ok": len(scopes),
        "failed": 0,
    }
    assert manifest["data_fingerprint"] == expected.fingerprint
    assert manifest["code_version"] == expected.code_version and manifest["as_of"] == AS_OF
    assert manifest["parameters"]["source"] == str(demo_source)
    assert {"python", "papermill", "nbconvert", "pandas"} <= set(manifest["tools"])
    assert manifest["started_at"] <= manifest["finished_at"]
    for report in manifest["reports"]:
        assert report["status"] == "ok" and report["error"] is None
        assert report["seconds"] >= report["seconds_execute"] > 0 and report["html_bytes"] > 0

    kpis = pd.read_csv(period_dir / "kpis.csv", dtype={"period": str})
    assert list(kpis.columns) == KPIS_CSV_COLUMNS
    assert set(kpis["period"]) == {PERIOD}
    assert {"revenue", "win_rate"} <= set(kpis["kpi"])
    # Every scope of the cube (reps who left before P too), so every report's figures.
    assert set(scopes) <= set(zip(kpis["scope"], kpis["scope_id"], strict=True))
    assert len(kpis) == len(expected.cube[expected.cube["period"] == PERIOD])


@pytest.mark.slow
def test_a_failing_report_fails_alone_keeps_its_last_good_html_and_the_cli_exits_1(
    tmp_path, demo_source
):
    """Two batches through the CLI in a project folder of stand-in notebooks.

    The first renders everything; in the second the manager notebook raises for one team.
    """
    good = stand_in_notebook(tmp_path / "notebooks" / "good.ipynb")
    failing = stand_in_notebook(
        tmp_path / "notebooks" / "failing.ipynb",
        'if scope_id == "na-mm":\n    raise RuntimeError(f"deliberate failure for {scope_id}")',
    )
    roles = {
        "executive": {"notebook": "notebooks/good.ipynb", "scope": "company"},
        "manager": {
            "notebook": "notebooks/good.ipynb",
            "scope": "team",
            "scope_ids": ["na-ent", "na-mm", "apac-mm"],
        },
        "rep": {"notebook": "notebooks/good.ipynb", "scope": "rep", "scope_ids": ["R001"]},
    }
    write_matrix(tmp_path / "params" / "reports.yaml", roles)
    assert good.is_file() and failing.is_file()
    out = tmp_path / "reports"
    period_dir = out / PERIOD

    def render(run: int) -> subprocess.CompletedProcess:
        # --force: the stand-in pages read KPI_TEST_RUN, which no render key can see.
        command = [
            sys.executable,
            "-m",
            "kpi_lib",
            "render",
            "--period",
            PERIOD,
            "--source",
            str(demo_source),
            "--out",
            str(out),
            "--as-of",
            AS_OF,
            "--force",
        ]
        return subprocess.run(
            command,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            env={**os.environ, "KPI_TEST_RUN": str(run)},
            timeout=600,
        )

    first = render(1)
    assert first.returncode == 0, first.stderr
    before = (period_dir / "manager" / "na-mm.html").read_bytes()
    assert b"na-mm run=1" in before

    roles["manager"]["notebook"] = "notebooks/failing.ipynb"
    write_matrix(tmp_path / "params" / "reports.yaml", roles)
    second = render(2)

    assert second.returncode == 1
    assert "5 reports, 4 ok, 1 failed" in second.stderr
    assert (
        "FAILED manager/na-mm (last good HTML kept): RuntimeError: deliberate failure for na-mm"
    ) in second.stderr
    assert (period_dir / "manager" / "na-mm.html").read_bytes() == before
    for other in ("executive/all", "manager/na-ent", "manager/apac-mm", "rep/R001"):
        assert b"run=2" in (period_dir / f"{other}.html").read_bytes(), other

    index = Page((period_dir / "index.html").read_text())
    status = {c["data-report"]: c["data-status"] for c in index.cards}
    assert status.pop("manager/na-mm.html") == "failed"
    assert set(status.values()) == {"ok"} and len(status) == 4
    assert "manager/na-mm.html" in index.links  # the last good version stays reachable

    manifest = json.loads((period_dir / "manifest.json").read_text())
    failed = [r for r in manifest["reports"] if r["status"] != "ok"]
    assert [(r["scope_id"], r["status"], r["last_good_html"]) for r in failed] == [
        ("na-mm", "failed", True)
    ]
    assert failed[0]["error"] == "RuntimeError: deliberate failure for na-mm"
    assert manifest["counts"] == {"reports": 5, "ok": 4, "failed": 1}
    # The executed notebook keeps the traceback for whoever debugs it.
    executed = (period_dir / "_notebooks" / "manager" / "na-mm.ipynb").read_text()
    assert "deliberate failure for na-mm" in executed


@pytest.mark.slow
def test_a_hung_report_times_out_and_the_others_still_render(tmp_path, demo_source):
    hang = stand_in_notebook(
        tmp_path / "hang.ipynb", 'import time\nif scope_id == "R001":\n    time.sleep(300)'
    )
    matrix = write_matrix(
        tmp_path / "reports.yaml",
        {"rep": {"notebook": str(hang), "scope": "rep", "scope_ids": ["R001", "R002"]}},
    )

    result = render_batch(
        Period.parse(PERIOD),
        source=str(demo_source),
        out=str(tmp_path / "out"),
        matrix=matrix,
        timeout=20,
        progress=False,
        jobs=2,
    )

    assert [(r.scope_id, r.status) for r in result.reports] == [("R001", "failed"), ("R002", "ok")]
    assert result.failed[0].error == "TimeoutError: report timed out after 20 s"
    assert result.failed[0].seconds < 60
    assert not (tmp_path / "out" / PERIOD / "rep" / "R001.html").exists()
    assert re.search(r"R002 run=", (tmp_path / "out" / PERIOD / "rep" / "R002.html").read_text())

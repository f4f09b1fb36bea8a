"""The role notebooks: their contract (parameters cell, no logic, no outputs) and their runs.

The slow tests execute each notebook with papermill on its defaults (the demo data, the last
complete month) and for one other team and rep, and read what the cells displayed.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import nbformat
import pytest

import kpi_lib
from kpi_lib.metrics.registry import HEADLINE_KPIS, get_kpi
from kpi_lib.periods import Period

ROOT = Path(__file__).resolve().parent.parent
NOTEBOOKS = {"executive": "company", "manager": "team", "rep": "rep"}
PARAMETERS = ["period", "scope_id", "source", "batch_dir", "targets"]


def read(role: str) -> nbformat.NotebookNode:
    return nbformat.read(ROOT / "notebooks" / f"{role}.ipynb", as_version=4)


def code_cells(nb) -> list:
    return [c for c in nb.cells if c.cell_type == "code"]


# ---- the notebook contract (fast) -----------------------------------------------------------


@pytest.mark.parametrize("role", NOTEBOOKS)
def test_first_code_cell_is_the_tagged_parameters_cell_with_typed_commented_defaults(role):
    cells = code_cells(read(role))
    first = cells[0]
    assert "parameters" in first.metadata.get("tags", [])
    assert sum("parameters" in c.metadata.get("tags", []) for c in cells) == 1
    tree = ast.parse(first.source)
    names = [node.target.id for node in tree.body if isinstance(node, ast.AnnAssign)]
    assert names == PARAMETERS
    assert all(isinstance(node, ast.AnnAssign) for node in tree.body), "only typed assignments"
    for line in first.source.splitlines():
        assert "#" in line, f"parameter without a comment: {line}"
        assert line.count("=") == 1, f"papermill cannot parse a second '=' (in the comment): {line}"


@pytest.mark.parametrize("role", NOTEBOOKS)
def test_second_code_cell_validates_the_parameters_through_kpi_lib(role):
    second = code_cells(read(role))[1].source
    assert "open_report(" in second and f'"{role}"' in second
    assert all(name in second for name in PARAMETERS)


@pytest.mark.parametrize("role", NOTEBOOKS)
def test_notebook_holds_only_calls_into_kpi_lib_and_no_outputs(role):
    nb = read(role)
    for cell in code_cells(nb)[1:]:
        tree = ast.parse(cell.source)
        for node in ast.walk(tree):
            assert not isinstance(node, ast.FunctionDef | ast.Lambda | ast.ClassDef), cell.source
            assert not isinstance(node, ast.BinOp), f"arithmetic in a notebook: {cell.source}"
            if isinstance(node, ast.ImportFrom | ast.Import):
                modules = (
                    [node.module]
                    if isinstance(node, ast.ImportFrom)
                    else [a.name for a in node.names]
                )
                assert all(m.split(".")[0] == "kpi_lib" for m in modules), cell.source
        assert cell.outputs == [] and cell.execution_count is None, "store notebooks stripped"


@pytest.mark.parametrize("role", NOTEBOOKS)
def test_every_code_cell_is_tagged_to_hide_its_input(role):
    for cell in code_cells(read(role)):
        assert "remove-input" in cell.metadata.get("tags", [])


@pytest.mark.parametrize("role", NOTEBOOKS)
def test_every_report_shows_how_the_pipeline_moved(role):
    sources = [c.source.strip() for c in code_cells(read(role))]
    assert "report.pipeline_waterfall()" in sources


# ---- running the notebooks (slow) -------------------------------------------------------------


@pytest.fixture(scope="session")
def demo_source() -> Path:
    """The demo data the notebooks' defaults point at (generated when missing)."""
    path = ROOT / "data" / "demo.duckdb"
    if not path.exists():
        from kpi_lib.data.demo import write_demo_data

        write_demo_data(path)
    return path


@pytest.fixture(scope="session")
def period() -> str:
    return kpi_lib.last_complete_month().label


@pytest.fixture(scope="session")
def batch_dir(demo_source, period, tmp_path_factory) -> Path:
    """A batch saved once, as ``render`` does, so the scoped runs read its cube."""
    from kpi_lib.metrics.batch import prepare_batch

    folder = tmp_path_factory.mktemp("batch") / "_data"
    prepare_batch(str(demo_source), Period.parse(period), out_dir=folder)
    return folder


@pytest.fixture(scope="session")
def reps(demo_source):
    return kpi_lib.load_source(demo_source).frame("reps")


def execute(role: str, out: Path, cwd: Path, **parameters) -> nbformat.NotebookNode:
    import papermill

    papermill.execute_notebook(
        str(ROOT / "notebooks" / f"{role}.ipynb"),
        str(out),
        parameters=parameters,
        kernel_name="python3",
        cwd=str(cwd),
        progress_bar=False,
        request_save_on_cell_execute=False,
    )
    return nbformat.read(out, as_version=4)


def displayed_html(nb) -> str:
    """Everything the notebook's cells displayed as HTML, in order."""
    return "".join(
        "".join(o.get("data", {}).get("text/html", "")) for c in code_cells(nb) for o in c.outputs
    )


def assert_clean_run(nb) -> None:
    errors = [o for c in code_cells(nb) for o in c.outputs if o.output_type == "error"]
    assert not errors, errors[0].get("evalue") if errors else ""
    stderr = "".join(
        o.get("text", "")
        for c in code_cells(nb)
        for o in c.outputs
        if o.output_type == "stream" and o.name == "stderr"
    )
    assert "Traceback" not in stderr


def tile_values(html: str) -> dict[str, str]:
    """``{kpi: shown value}`` of every KPI tile."""
    pattern = re.compile(
        r'<div class="kr-tile [^"]*" data-kpi="([^"]+)">'
        r'.*?<div class="kr-tile-value[^"]*"[^>]*>([^<]*)</div>',
        re.S,
    )
    return dict(pattern.findall(html))


def expected_tiles(scope: str) -> list[str]:
    return [k for k in HEADLINE_KPIS if scope in get_kpi(k).scopes]


@pytest.mark.slow
@pytest.mark.parametrize("role", NOTEBOOKS)
def test_notebook_runs_on_its_defaults_from_the_notebooks_folder(role, demo_source, tmp_path):
    nb = execute(role, tmp_path / f"{role}.ipynb", cwd=ROOT / "notebooks")
    assert_clean_run(nb)
    html = displayed_html(nb)
    tiles = tile_values(html)
    assert list(tiles) == expected_tiles(NOTEBOOKS[role])
    assert all(v.strip() for v in tiles.values())
    assert sum(v != "n/a" for v in tiles.values()) >= len(tiles) - 3, tiles
    for section in ("kr-band", "What the numbers mean", "Data fingerprint", "kr-highlights"):
        assert section in html
    assert "<img" in html and "data:image/png;base64," in html


@pytest.mark.slow
def test_manager_notebook_for_another_team_shows_only_that_teams_reps(
    batch_dir, period, reps, tmp_path
):
    nb = execute(
        "manager",
        tmp_path / "m.ipynb",
        cwd=ROOT,
        period=period,
        scope_id="emea-mm",
        batch_dir=str(batch_dir),
    )
    assert_clean_run(nb)
    html = displayed_html(nb)
    assert "EMEA Mid-Market" in html
    assert list(tile_values(html)) == expected_tiles("team")
    assert "Rep leaderboard" in html and "Pipeline by stage" in html
    own = reps[reps["team_id"] == "emea-mm"]["rep_name"]
    others = set(reps[reps["team_id"] != "emea-mm"]["rep_name"]) - set(own)
    assert any(name in html for name in own)
    assert not [name for name in others if name in html]


@pytest.mark.slow
def test_rep_notebook_for_another_rep_names_no_other_rep(batch_dir, period, reps, tmp_path):
    nb = execute(
        "rep",
        tmp_path / "r.ipynb",
        cwd=ROOT,
        period=period,
        scope_id="R014",
        batch_dir=str(batch_dir),
    )
    assert_clean_run(nb)
    html = displayed_html(nb)
    me = reps.set_index("rep_id").loc["R014", "rep_name"]
    assert me in html
    assert list(tile_values(html)) == expected_tiles("rep")
    assert "Team median" in html and "Open deals" in html
    others = set(reps["rep_name"]) - {me}
    assert not [name for name in others if name in html]


@pytest.mark.slow
def test_unknown_team_fails_before_any_work_with_the_valid_ids(batch_dir, period, tmp_path):
    import papermill

    with pytest.raises(papermill.PapermillExecutionError) as failure:
        execute(
            "manager",
            tmp_path / "x.ipynb",
            cwd=ROOT,
            period=period,
            scope_id="atlantis",
            batch_dir=str(batch_dir),
        )
    assert failure.value.ename == "UnknownScopeError"
    assert "atlantis" in failure.value.evalue and "na-ent" in failure.value.evalue
    nb = nbformat.read(tmp_path / "x.ipynb", as_version=4)
    failed = [c for c in code_cells(nb) if any(o.output_type == "error" for o in c.outputs)]
    assert len(failed) == 1 and "open_report(" in failed[0].source, "the validation cell fails"
    assert not any(c.outputs for c in code_cells(nb)[code_cells(nb).index(failed[0]) + 1 :])

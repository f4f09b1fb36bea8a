"""The warm render pool and the rerun that skips what has not changed.

A report rendered on a worker's warm kernel (kept alive, reset between reports) must be the
report a fresh kernel renders: same page, same executed outputs, and nothing of the report
rendered before it in the same kernel. A kernel that dies or times out fails its report only;
the next report gets a fresh warm kernel. A rerun with nothing changed renders nothing; a change
to one rep's deals renders again only the reports that show them.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import duckdb
import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_notebook

from kpi_lib.cli import build_parser
from kpi_lib.periods import Period
from kpi_lib.publish import cache as _render_cache
from kpi_lib.publish.render import render_batch

ROOT = Path(__file__).resolve().parent.parent
PERIOD = "2026-10"
AS_OF = "2026-11-05"
# What differs between two renders of the same report: when it was generated.
_GENERATED = re.compile(r"generated \d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2})?")


@pytest.fixture(scope="module")
def demo_source(tmp_path_factory) -> Path:
    """The demo CRM at a small scale: six teams of one rep, history up to 2026-10."""
    from kpi_lib.data.demo import write_demo_data

    return write_demo_data(
        tmp_path_factory.mktemp("demo") / "demo.duckdb", end=PERIOD, seed=7, scale=0.2
    )


def write_matrix(path: Path, roles: dict) -> Path:
    import yaml

    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"roles": roles}, sort_keys=False))
    return path


def stand_in(path: Path, body: str) -> Path:
    """A tiny report notebook: the parameters cell, then ``body``."""
    nb = new_notebook(
        cells=[
            new_code_cell(
                'period: str = ""\nscope_id: str = "all"\nsource: str = ""\n'
                'batch_dir: str = ""\ntargets: str = ""',
                metadata={"tags": ["parameters"]},
            ),
            new_code_cell(body),
        ],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


def page(period_dir: Path, report: str) -> str:
    return _GENERATED.sub("generated <time>", (period_dir / f"{report}.html").read_text())


def outputs(period_dir: Path, report: str) -> list:
    """The executed notebook's code cells: execution counts and outputs, time stripped."""
    nb = nbformat.read(period_dir / "_notebooks" / f"{report}.ipynb", as_version=4)
    cells = [(c.execution_count, c.outputs) for c in nb.cells if c.cell_type == "code"]
    return json.loads(_GENERATED.sub("generated <time>", json.dumps(cells)))


def teams_and_reps(source: Path) -> dict[str, list[tuple[str, str]]]:
    """``{team_id: [(rep_id, rep_name), ...]}`` of a demo file."""
    with duckdb.connect(str(source), read_only=True) as con:
        rows = con.sql("select team_id, rep_id, rep_name from reps order by team_id, rep_id")
        out: dict[str, list[tuple[str, str]]] = {}
        for team, rep, name in rows.fetchall():
            out.setdefault(team, []).append((rep, name))
    return out


# ---------------------------------------------------------------------------------------------
# The switches
# ---------------------------------------------------------------------------------------------


def test_the_render_command_has_fresh_kernels_and_force_switches_off_by_default():
    args = build_parser().parse_args(["render", "--period", PERIOD])
    assert (args.fresh_kernels, args.force) == (False, False)
    args = build_parser().parse_args(["render", "--fresh-kernels", "--force"])
    assert (args.fresh_kernels, args.force) == (True, True)


# ---------------------------------------------------------------------------------------------
# Keys: what each report depends on
# ---------------------------------------------------------------------------------------------


def test_an_account_renamed_changes_the_keys_of_its_rep_its_team_and_the_company_only(
    tmp_path, demo_source
):
    from kpi_lib.data.load import load_source
    from kpi_lib.metrics.batch import prepare_batch

    def digests(path: Path) -> dict[str, str]:
        src = load_source(str(path))
        return _render_cache.scope_digests(
            prepare_batch(src, Period.parse(PERIOD), as_of=AS_OF), src
        )

    changed = shutil.copy(demo_source, tmp_path / "changed.duckdb")
    with duckdb.connect(str(changed)) as con:
        rep, team = con.sql(
            "select owner_rep_id, team_id from opportunities o join reps r "
            "on r.rep_id = o.owner_rep_id where account_id is not null "
            "order by opportunity_id limit 1"
        ).fetchone()
        con.sql(
            f"update accounts set account_name = 'Renamed Ltd' where account_id in "
            f"(select account_id from opportunities where owner_rep_id = '{rep}' "
            f"order by opportunity_id limit 1)"
        )

    before, after = digests(demo_source), digests(changed)

    assert set(before) == set(after)
    moved = {k for k in before if before[k] != after[k]}
    assert moved == {"company/all", f"team/{team}", f"rep/{rep}"}


# ---------------------------------------------------------------------------------------------
# Warm equals fresh
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_report_rendered_warm_after_another_teams_report_equals_one_rendered_fresh(
    tmp_path, demo_source
):
    """One worker renders team A, then team B, then a rep of A in one warm kernel; the pages and
    executed outputs equal those of fresh kernels, and team B's page names none of A's reps."""
    teams = teams_and_reps(demo_source)
    team_a, team_b = sorted(teams)[:2]
    rep_a = teams[team_a][0][0]
    matrix = write_matrix(
        tmp_path / "reports.yaml",
        {
            "manager": {
                "notebook": str(ROOT / "notebooks" / "manager.ipynb"),
                "scope": "team",
                "scope_ids": [team_a, team_b],
            },
            "rep": {
                "notebook": str(ROOT / "notebooks" / "rep.ipynb"),
                "scope": "rep",
                "scope_ids": [rep_a],
            },
        },
    )
    dirs = {}
    for fresh in (True, False):  # the same folder (its path is on the page), copied aside
        result = render_batch(
            Period.parse(PERIOD),
            source=str(demo_source),
            out=str(tmp_path / "out"),
            as_of=AS_OF,
            matrix=matrix,
            jobs=1,
            progress=False,
            fresh_kernels=fresh,
            force=True,
        )
        assert not result.failed, result.summary()
        dirs[fresh] = Path(shutil.copytree(result.period_dir, tmp_path / str(fresh)))

    for report in (f"manager/{team_a}", f"manager/{team_b}", f"rep/{rep_a}"):
        assert page(dirs[False], report) == page(dirs[True], report), report
        assert outputs(dirs[False], report) == outputs(dirs[True], report), report
    team_b_page = page(dirs[False], f"manager/{team_b}")
    for _, name in teams[team_a]:
        assert name not in team_b_page
    assert [c for c, _ in outputs(dirs[False], f"manager/{team_b}")][:2] == [1, 2]


@pytest.mark.slow
def test_a_dead_or_hung_kernel_fails_its_report_and_the_next_report_gets_a_fresh_one(
    tmp_path, demo_source
):
    """With one worker: R001 kills its kernel, R002 hangs past the timeout, R003 and R004 render
    (on a restarted warm kernel) and show that nothing of the reports before them survived."""
    notebook = stand_in(
        tmp_path / "nb.ipynb",
        (
            "import os, time\n"
            "from IPython.display import HTML, display\n"
            "seen = globals().get('LEFTOVER', 'none')\n"
            "LEFTOVER = scope_id\n"
            "if scope_id == 'R001':\n    os.kill(os.getpid(), 9)\n"
            "if scope_id == 'R002':\n    time.sleep(120)\n"
            "display(HTML(f\"<p class='who'>{scope_id} saw={seen} pid={os.getpid()}</p>\"))"
        ),
    )
    matrix = write_matrix(
        tmp_path / "reports.yaml",
        {
            "rep": {
                "notebook": str(notebook),
                "scope": "rep",
                "scope_ids": ["R001", "R002", "R003", "R004"],
            }
        },
    )

    result = render_batch(
        Period.parse(PERIOD),
        source=str(demo_source),
        out=str(tmp_path / "out"),
        as_of=AS_OF,
        matrix=matrix,
        jobs=1,
        timeout=15,
        progress=False,
    )

    status = {r.scope_id: (r.status, r.error or "") for r in result.reports}
    assert status["R001"][0] == "failed" and "kernel" in status["R001"][1].lower()
    assert status["R002"][0] == "failed" and "timed out" in status["R002"][1]
    assert status["R003"] == ("ok", "") and status["R004"] == ("ok", "")
    r3 = (result.period_dir / "rep" / "R003.html").read_text()
    r4 = (result.period_dir / "rep" / "R004.html").read_text()
    assert "R003 saw=none" in r3 and "R004 saw=none" in r4
    pid = re.compile(r"pid=(\d+)")
    assert pid.search(r3).group(1) == pid.search(r4).group(1)  # one warm kernel, reused


# ---------------------------------------------------------------------------------------------
# Skip what has not changed
# ---------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_rerun_renders_nothing_unchanged_and_a_data_change_renders_only_what_shows_it(
    tmp_path, demo_source
):
    notebook = stand_in(
        tmp_path / "nb.ipynb",
        (
            "import os\nfrom IPython.display import HTML, display\n"
            "display(HTML(f\"<p class='who'>{scope_id}</p>\"))"
        ),
    )
    matrix = write_matrix(
        tmp_path / "reports.yaml",
        {
            "executive": {"notebook": str(notebook), "scope": "company"},
            "manager": {"notebook": str(notebook), "scope": "team"},
            "rep": {"notebook": str(notebook), "scope": "rep"},
        },
    )
    source = Path(shutil.copy(demo_source, tmp_path / "crm.duckdb"))
    out = tmp_path / "out"

    def render(**kwargs):
        result = render_batch(
            Period.parse(PERIOD),
            source=str(source),
            out=str(out),
            as_of=AS_OF,
            matrix=matrix,
            progress=False,
            jobs=2,
            **kwargs,
        )
        assert not result.failed, result.summary()
        return result, {f"{r.role}/{r.scope_id}" for r in result.reports if not r.reused}

    first, rendered = render()
    assert len(rendered) == len(first.reports) >= 8
    mtimes = {
        p: p.stat().st_mtime_ns for p in first.period_dir.rglob("*.html") if p.name != "index.html"
    }

    second, rendered = render()
    assert rendered == set()
    assert all(r.ok and r.reused for r in second.reports)
    assert {p: p.stat().st_mtime_ns for p in mtimes} == mtimes
    manifest = json.loads(second.manifest_path.read_text())
    assert {r["key"] for r in manifest["reports"]} == {r.key for r in first.reports}

    teams = teams_and_reps(source)
    team = sorted(teams)[0]
    rep = teams[team][0][0]
    with duckdb.connect(str(source)) as con:
        con.sql(
            f"update accounts set account_name = account_name || ' (renamed)' where "
            f"account_id in (select account_id from opportunities where owner_rep_id = "
            f"'{rep}' and account_id is not null)"
        )
    third, rendered = render()
    assert rendered == {"executive/all", f"manager/{team}", f"rep/{rep}"}

    fourth, rendered = render(force=True)
    assert len(rendered) == len(first.reports)


# ---------------------------------------------------------------------------------------------
# Starting a warm kernel
# ---------------------------------------------------------------------------------------------


def test_a_kernel_that_dies_on_its_first_start_is_started_again_and_talks_over_unix_sockets(
    tmp_path, monkeypatch
):
    """A kernelspec whose first process exits before replying (as a kernel starved at startup
    does): the warm kernel starts a second one and runs code on it. Its channels are Unix
    sockets in a private directory, gone after shutdown, so sibling workers cannot race for a
    TCP port."""
    import sys

    from kpi_lib.publish.kernels import WarmKernel

    marker = tmp_path / "died-once"
    launcher = tmp_path / "flaky_kernel.py"
    launcher.write_text(
        "import pathlib, sys\n"
        f"marker = pathlib.Path({str(marker)!r})\n"
        "if not marker.exists():\n"
        "    marker.touch()\n"
        "    sys.exit(1)\n"
        "from ipykernel import kernelapp\n"
        "kernelapp.launch_new_instance()\n"
    )
    spec = tmp_path / "jupyter" / "kernels" / "flaky"
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, str(launcher), "-f", "{connection_file}"],
                "display_name": "dies on its first start",
                "language": "python",
            }
        )
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))

    kernel = WarmKernel("flaky", startup_timeout=30)
    try:
        kernel.start(str(tmp_path))
        assert marker.exists() and kernel.starts == 1 and kernel.is_alive()
        kernel.ready(str(tmp_path))
        socket_dir = Path(kernel.km.ip).parent
        assert kernel.km.transport == "ipc"
        assert sorted(p.name for p in socket_dir.iterdir()) == [f"k-{i}" for i in range(1, 6)]
    finally:
        kernel.shutdown()
    assert not socket_dir.exists()

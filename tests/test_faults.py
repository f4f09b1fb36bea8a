"""Faults: a batch killed at any moment loses nothing good, and a bad report fails alone.

The kill tests run the real CLI (``python -m kpi_lib render``) as a subprocess on a small demo
CRM with stand-in notebooks (three reports), and SIGKILL its whole process tree (the CLI, its
pool workers and their kernels, which Jupyter starts in sessions of their own):

* at random moments (seeded), and
* at named points, with a ``sitecustomize`` that stalls the process about to move a file into
  place after writing only half of the temporary file: the executed notebook and the report
  HTML (in a worker), ``kpis.csv`` (before any report) and ``manifest.json`` (the end of the
  batch, just before ``index.html``).

After every kill each visible file parses (HTML ends with ``</html>``, JSON and CSV load), the
previous good reports are still there, and the next run finishes the batch and leaves no
temporary file. ``FAULTS_SURVIVED`` counts the kills for the closing note.
"""

from __future__ import annotations

import inspect
import json
import os
import random
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pandas as pd
import pytest
import yaml
from _notebooks import stand_in_notebook

from kpi_lib.publish.render import render_batch

PERIOD = "2026-10"
# Render every report again even when its inputs are unchanged (where the renderer caches).
FORCE = "force" in inspect.signature(render_batch).parameters
AS_OF = "2026-11-05"
FAULTS_SURVIVED: list[str] = []

# Loaded by every Python process of the run (CLI, pool workers, kernels) through PYTHONPATH.
SITECUSTOMIZE = """
import os, time
_FILE = os.environ.get("KPI_FAULT_FILE")
if _FILE:
    _replace = os.replace

    def _stalled_replace(src, dst, *args, **kwargs):
        if os.path.basename(os.fspath(dst)) == _FILE:
            size = os.path.getsize(src)
            with open(src, "r+b") as f:
                f.truncate(size // 2)          # the write got halfway
            open(os.environ["KPI_FAULT_MARK"], "w").close()
            while True:
                time.sleep(1)                  # ... and here the process is killed
        return _replace(src, dst, *args, **kwargs)

    os.replace = _stalled_replace
"""


def project(folder: Path, roles: dict, notebook_cell: str = "") -> Path:
    """A project folder: ``params/reports.yaml`` (the given roles) and the stand-in notebook."""
    stand_in_notebook(folder / "notebooks" / "stand_in.ipynb", notebook_cell)
    (folder / "params").mkdir(parents=True, exist_ok=True)
    (folder / "params" / "reports.yaml").write_text(yaml.safe_dump({"roles": roles}))
    (folder / "hooks").mkdir(exist_ok=True)
    (folder / "hooks" / "sitecustomize.py").write_text(SITECUSTOMIZE)
    return folder


ROLES = {
    "executive": {"notebook": "notebooks/stand_in.ipynb", "scope": "company"},
    "rep": {"notebook": "notebooks/stand_in.ipynb", "scope": "rep", "scope_ids": ["R001", "R002"]},
}
REPORTS = ["executive/all.html", "rep/R001.html", "rep/R002.html"]


@pytest.fixture(scope="module")
def demo_source(tmp_path_factory) -> Path:
    from kpi_lib.data.demo import write_demo_data

    return write_demo_data(
        tmp_path_factory.mktemp("demo") / "demo.duckdb", end=PERIOD, seed=7, scale=0.2
    )


# --------------------------------------------------------------------------------------------
# Running and killing the CLI
# --------------------------------------------------------------------------------------------


class Run:
    """``python -m kpi_lib render`` in ``folder``, started in a session of its own."""

    def __init__(
        self, folder: Path, source: Path, run: int, fault: str | None = None, force: bool = True
    ):
        self.token = uuid.uuid4().hex
        self.mark = folder / f"fault-{self.token}"
        env = {
            **os.environ,
            "KPI_TEST_RUN": str(run),
            "KPI_FAULT_TOKEN": self.token,
            "PYTHONPATH": os.pathsep.join(
                [str(folder / "hooks"), os.environ.get("PYTHONPATH", "")]
            ).rstrip(os.pathsep),
        }
        if fault:
            env |= {"KPI_FAULT_FILE": fault, "KPI_FAULT_MARK": str(self.mark)}
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "kpi_lib",
                "render",
                "--period",
                PERIOD,
                "--source",
                str(source),
                "--out",
                "reports",
                "--as-of",
                AS_OF,
                "--jobs",
                "2",
                *(["--force"] if force and FORCE else []),
            ],
            cwd=folder,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )

    def finish(self, timeout: float = 300) -> tuple[int, str]:
        _, err = self.proc.communicate(timeout=timeout)
        return self.proc.returncode, err

    def wait_for_fault(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while not self.mark.exists():
            assert self.proc.poll() is None, f"the run ended before the fault: {self.finish()}"
            assert time.monotonic() < deadline, "the fault point was never reached"
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the CLI and every process of this run (kernels run in their own sessions)."""
        tree = descendants(self.proc.pid) | {self.proc.pid}
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        for pid in tree | tagged(self.token):
            _kill(pid)
        self.proc.communicate(timeout=60)
        deadline = time.monotonic() + 10
        while tagged(self.token) and time.monotonic() < deadline:
            for pid in tagged(self.token):
                _kill(pid)
            time.sleep(0.1)
        assert not tagged(self.token), "a process of the killed run survived"


def _kill(pid: int) -> None:
    try:
        os.kill(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass


def descendants(root: int) -> set[int]:
    """Every process whose chain of parents leads to ``root``."""
    parent: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parent[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = set(), {root}
    while frontier:
        frontier = {pid for pid, ppid in parent.items() if ppid in frontier} - found
        found |= frontier
    return found


def tagged(token: str) -> set[int]:
    """Live processes started by this run (their environment carries its token)."""
    pids = set()
    needle = f"KPI_FAULT_TOKEN={token}".encode()
    for environ in Path("/proc").glob("[0-9]*/environ"):
        try:
            if needle in environ.read_bytes().split(b"\0"):
                state = (environ.parent / "stat").read_text().rsplit(")", 1)[1].split()[0]
                if state != "Z":
                    pids.add(int(environ.parent.name))
        except OSError:
            continue
    return pids


# --------------------------------------------------------------------------------------------
# What a reader may find after a kill
# --------------------------------------------------------------------------------------------


def visible_files(root: Path) -> list[Path]:
    """Files a reader sees: none of their path parts starts with a dot."""
    return [
        p
        for p in root.rglob("*")
        if p.is_file() and not any(part.startswith(".") for part in p.relative_to(root).parts)
    ]


def assert_every_visible_file_is_whole(root: Path) -> None:
    for path in visible_files(root):
        if path.suffix == ".html":
            assert path.read_text().rstrip().endswith("</html>"), f"{path} is cut short"
        elif path.suffix in (".json", ".ipynb"):
            json.loads(path.read_text())
        elif path.suffix == ".csv":
            assert len(pd.read_csv(path)) > 0, path
        elif path.suffix == ".parquet":
            pd.read_parquet(path)


def runs_in(page: Path) -> str:
    text = page.read_text()
    return text.split("run=", 1)[1].split("<", 1)[0]


def assert_batch_complete(period_dir: Path, run: int | None = None) -> None:
    """Every report rendered (by run ``run`` when given), the manifest says so, nothing hidden."""
    for report in REPORTS:
        assert runs_in(period_dir / report) == str(run or runs_in(period_dir / report)), report
    manifest = json.loads((period_dir / "manifest.json").read_text())
    assert manifest["counts"] == {"reports": 3, "ok": 3, "failed": 0}
    hidden = [p for p in period_dir.rglob(".*") if p.is_file()]
    assert hidden == [], f"temporary files left behind: {hidden}"


# --------------------------------------------------------------------------------------------
# The tests
# --------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_batch_killed_at_random_and_named_points_keeps_good_reports_and_reruns(
    tmp_path, demo_source
):
    folder = project(tmp_path, ROLES)
    period_dir = folder / "reports" / PERIOD
    started = time.monotonic()
    code, err = Run(folder, demo_source, 1).finish()
    good_seconds = time.monotonic() - started
    assert code == 0, err
    assert_batch_complete(period_dir, 1)
    good = {r: (period_dir / r).read_bytes() for r in REPORTS}

    run = 1
    faults = ["R001.ipynb", "R002.html", "kpis.csv", "manifest.json"]
    for seed in (11, 23, 37):  # random moments within a batch's run time
        faults.append(f"random:{seed}")
    for fault in faults:
        run += 1
        if fault.startswith("random:"):
            delay = random.Random(int(fault.split(":")[1])).uniform(0.2, 0.8) * good_seconds
            current = Run(folder, demo_source, run)
            time.sleep(delay)
            if current.proc.poll() is not None:  # it finished first: a complete batch
                assert current.finish()[0] == 0
                assert_batch_complete(period_dir, run)
                good = {r: (period_dir / r).read_bytes() for r in REPORTS}
                FAULTS_SURVIVED.append(f"{fault} (finished before the kill)")
                continue
        else:
            current = Run(folder, demo_source, run, fault=fault)
            current.wait_for_fault()
        current.kill()

        assert_every_visible_file_is_whole(folder / "reports")
        for report in REPORTS:  # each report is the last good one or a complete newer one
            page = (period_dir / report).read_bytes()
            assert page == good[report] or runs_in(period_dir / report) == str(run), report
        manifest = json.loads((period_dir / "manifest.json").read_text())
        assert manifest["counts"]["ok"] == 3
        if fault == "R002.html":
            assert (period_dir / "rep" / "R002.html").read_bytes() == good["rep/R002.html"]
            assert list((period_dir / "rep").glob(".R002.tmp-*.html")), "no half-written file"
        if fault in ("kpis.csv", "manifest.json"):
            assert list(period_dir.glob(f".{fault.split('.')[0]}.tmp-*")), "no half-written file"
        FAULTS_SURVIVED.append(fault)
        good = {r: (period_dir / r).read_bytes() for r in REPORTS}

    run += 1  # the rerun, as cron would start it: reports whose inputs are unchanged may be kept
    code, err = Run(folder, demo_source, run, force=False).finish()
    assert code == 0, err
    assert_batch_complete(period_dir)
    assert_every_visible_file_is_whole(folder / "reports")
    assert len(FAULTS_SURVIVED) == len(faults)
    print(f"\nfaults survived: {len(FAULTS_SURVIVED)}: {FAULTS_SURVIVED}")


@pytest.mark.slow
def test_a_report_that_raises_one_whose_kernel_dies_and_one_that_hangs_fail_alone(
    tmp_path, demo_source
):
    """One batch, three broken reports, two good ones: exit 1, each error in index, manifest
    and log, the good reports rendered."""
    cell = (
        "import os, time\n"
        'if scope_id == "R001":\n    raise RuntimeError("deliberate failure for R001")\n'
        'if scope_id == "R002":\n    os._exit(3)\n'
        'if scope_id == "R003":\n    time.sleep(600)'
    )
    roles = {
        "executive": {"notebook": "notebooks/stand_in.ipynb", "scope": "company"},
        "rep": {
            "notebook": "notebooks/stand_in.ipynb",
            "scope": "rep",
            "scope_ids": ["R001", "R002", "R003", "R004"],
        },
    }
    folder = project(tmp_path, roles, cell)
    params = yaml.safe_load((folder / "params" / "reports.yaml").read_text())
    params["timeout_seconds"] = 25
    (folder / "params" / "reports.yaml").write_text(yaml.safe_dump(params))
    period_dir = folder / "reports" / PERIOD

    started = time.monotonic()
    code, err = Run(folder, demo_source, 1).finish()
    assert time.monotonic() - started < 150

    assert code == 1, err
    expected = {
        "R001": "RuntimeError: deliberate failure for R001",
        "R002": "DeadKernelError",
        "R003": "TimeoutError: report timed out after 25 s",
    }
    assert "5 reports, 2 ok, 3 failed" in err
    for scope_id, error in expected.items():
        assert f"FAILED rep/{scope_id}" in err and error in err, (scope_id, err)
        assert not (period_dir / "rep" / f"{scope_id}.html").exists()
    for good in ("executive/all.html", "rep/R004.html"):
        assert runs_in(period_dir / good) == "1"

    manifest = json.loads((period_dir / "manifest.json").read_text())
    by_id = {r["scope_id"]: r for r in manifest["reports"]}
    assert manifest["counts"] == {"reports": 5, "ok": 2, "failed": 3}
    for scope_id, error in expected.items():
        assert by_id[scope_id]["status"] == "failed" and error in by_id[scope_id]["error"]
    assert by_id["R004"]["status"] == "ok" and by_id["R004"]["error"] is None

    index = (period_dir / "index.html").read_text()
    for scope_id, error in expected.items():
        card = index.split(f'data-report="rep/{scope_id}.html"', 1)[1].split("</li>", 1)[0]
        assert ">failed<" in card and error in card, card
    logs = {s: (period_dir / "_notebooks" / "rep" / f"{s}.log").read_text() for s in expected}
    for scope_id, error in expected.items():
        assert error.split(":")[0] in logs[scope_id], logs[scope_id]
    assert_every_visible_file_is_whole(folder / "reports")

"""The house: kpi_lib's wings import only downwards (cli > publish > report > metrics > data >
the shared root), each way of reading a source stands alone, and no wing holds a cycle.

The contracts live in ``pyproject.toml`` (``[tool.importlinter]``); ``make lint`` runs them too.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def lint_imports(root: Path) -> subprocess.CompletedProcess:
    """``lint-imports`` on the ``kpi_lib`` found in ``root`` with ``root``'s contracts."""
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(root / "pyproject.toml"), "--no-cache"],
        cwd=root,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_every_import_contract_of_the_house_is_kept():
    run = lint_imports(ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-2000:]
    assert "4 kept, 0 broken" in run.stdout


def test_an_import_that_runs_back_up_a_wing_breaks_the_contract(tmp_path):
    """The data wing asking the publish wing for something: what the knots of old looked like."""
    shutil.copytree(
        ROOT / "kpi_lib", tmp_path / "kpi_lib", ignore=shutil.ignore_patterns("__pycache__")
    )
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    history = tmp_path / "kpi_lib" / "data" / "history.py"
    history.write_text(
        history.read_text(encoding="utf-8")
        + "\n\ndef _backwards():\n    from kpi_lib.publish.schedule import run\n\n    return run\n",
        encoding="utf-8",
    )
    run = lint_imports(tmp_path)
    assert run.returncode == 1, run.stdout[-3000:]
    assert "The wings follow the data" in run.stdout and "BROKEN" in run.stdout
    assert "kpi_lib.data.history -> kpi_lib.publish.schedule" in run.stdout

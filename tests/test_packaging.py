"""Packaging: one set of pinned dependencies, clean notebooks, a self-documenting Makefile.

``pyproject.toml`` is the source of truth; ``environment.yml`` lists the same packages at the same
versions under their conda-forge names.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent

# PyPI name -> conda-forge name, where they differ.
CONDA_NAMES = {
    "ibis-framework": "ibis-framework-core",
    "duckdb": "python-duckdb",
    "matplotlib": "matplotlib-base",
    "nbconvert": "nbconvert-core",
    "pyyaml": "pyyaml",
}
_REQUIREMENT = re.compile(r"^([A-Za-z0-9_.-]+)(?:\[([^\]]+)\])?==([^\s;]+)$")


def pinned_in_pyproject() -> dict[str, str]:
    """{conda-forge name: version} for every dependency and dev extra of pyproject.toml.

    An ibis extra is its own conda-forge package: ``ibis-framework[duckdb]`` -> ``ibis-duckdb``.
    """
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    requirements = project["dependencies"] + project["optional-dependencies"]["dev"]
    pinned = {}
    for requirement in requirements:
        match = _REQUIREMENT.match(requirement.replace(" ", ""))
        assert match, f"pyproject.toml: '{requirement}' is not pinned with =="
        name, extras, version = match[1].lower(), match[2], match[3]
        pinned[CONDA_NAMES.get(name, name)] = version
        if name == "ibis-framework" and extras:
            pinned.update({f"ibis-{extra.strip()}": version for extra in extras.split(",")})
    return pinned


def pinned_in_environment() -> tuple[dict[str, str], list[str]]:
    """({name: version} of environment.yml's conda and pip pins, its unpinned pip entries)."""
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pinned, pip_other = {}, []
    for dep in env["dependencies"]:
        if isinstance(dep, dict):
            for entry in dep["pip"]:
                if "==" in entry:
                    name, version = entry.split("==")
                    pinned[name.lower()] = version
                else:
                    pip_other.append(entry)
        elif "=" in dep and not dep.startswith("python="):
            name, version = dep.split("=", 1)
            pinned[name.lower()] = version
    return pinned, pip_other


def test_environment_yml_pins_the_same_packages_and_versions_as_pyproject():
    conda, _ = pinned_in_environment()
    expected = pinned_in_pyproject()
    assert sorted(set(expected) - set(conda)) == [], "missing from environment.yml"
    assert sorted(set(conda) - set(expected)) == [], "in environment.yml but not in pyproject.toml"
    assert {k: conda[k] for k in expected} == expected


def test_environment_yml_installs_the_project_itself_with_pip():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    _, pip_other = pinned_in_environment()
    assert "-e ." in pip_other
    assert env["channels"] == ["conda-forge"]
    python = [d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python=")]
    required = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert python == ["python=3.11"] and required == ">=3.11"


def committed_notebooks() -> dict[str, str]:
    """{path: text} of the report notebooks as git holds them (the working copy outside git).

    With the nbstripout filter installed the working copy may hold outputs while git's copy is
    clean, so git's index is what is checked.
    """
    paths = sorted(p.relative_to(ROOT).as_posix() for p in (ROOT / "notebooks").glob("*.ipynb"))
    texts = {}
    for path in paths:
        shown = None
        if shutil.which("git") and (ROOT / ".git").exists():
            run = subprocess.run(
                ["git", "show", f":{path}"], cwd=ROOT, capture_output=True, text=True
            )
            shown = run.stdout if run.returncode == 0 else None
        texts[path] = shown if shown is not None else (ROOT / path).read_text()
    return texts


def test_the_three_report_notebooks_are_in_the_repository():
    assert {"notebooks/executive.ipynb", "notebooks/manager.ipynb", "notebooks/rep.ipynb"} <= set(
        committed_notebooks()
    )


def test_committed_notebooks_have_no_outputs_and_no_execution_counts():
    dirty = {}
    for path, text in committed_notebooks().items():
        cells = json.loads(text)["cells"]
        bad = [
            i
            for i, cell in enumerate(cells)
            if cell["cell_type"] == "code"
            and (cell.get("outputs") or cell.get("execution_count") is not None)
        ]
        if bad:
            dirty[path] = bad
    assert dirty == {}, "run `make hooks` (nbstripout), then `nbstripout notebooks/*.ipynb`"


def test_make_help_lists_every_target_with_its_sentence():
    makefile = (ROOT / "Makefile").read_text()
    targets = re.findall(r"^## (.+)\n\.PHONY: ([\w-]+)\n\2:", makefile, flags=re.M)
    declared = re.findall(r"^\.PHONY: ([\w-]+)$", makefile, flags=re.M)
    assert [t for _, t in targets] == declared, "every .PHONY target needs a '## sentence' above"
    assert {
        "reports",
        "test",
        "test-fast",
        "lab",
        "lint",
        "format",
        "clean",
        "help",
        "data",
    } <= set(declared)
    shown = subprocess.run(
        ["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    for sentence, target in targets:
        assert re.search(rf"^\s+{re.escape(target)}\s+{re.escape(sentence)}$", shown, re.M)


def test_help_is_the_default_goal():
    assert re.search(r"^\.DEFAULT_GOAL := help$", (ROOT / "Makefile").read_text(), re.M)

"""Where things are (the project root, paths given relative to it), YAML files read as
mappings, and files written whole.

Notebooks run with the working directory at the project root or in ``notebooks/``
(papermill's default), cron from anywhere: ``"data/demo.duckdb"`` means the same file from all.
"""

from __future__ import annotations

import os
from pathlib import Path

import yaml

from kpi_lib.errors import KpiKitError, ParamsError

PROJECT_ROOT = Path(__file__).resolve().parent.parent


def project_path(path: str | Path) -> Path:
    """``path`` as given when absolute or present from the cwd, else under the project root.

    Example: ``project_path("params/targets.yaml")`` -> ``<root>/params/targets.yaml``.
    """
    path = Path(path)
    if path.is_absolute() or path.exists():
        return path
    return PROJECT_ROOT / path


def resolve_source(source):
    """A source as kernels elsewhere must see it: a path made absolute; a SQL URL, a backend or
    a loaded Source as given; ``""`` stays ``""``.

    Example: ``resolve_source("data/demo.duckdb")`` -> ``"/…/data/demo.duckdb"``;
    ``resolve_source("postgresql://host/crm")`` -> unchanged.
    """
    if not isinstance(source, str | Path) or not str(source):
        return source
    if "://" in str(source):
        return str(source)
    return str(project_path(source).resolve())


def temp_name(path: Path) -> Path:
    """``rep/.R001.tmp-4711.html`` beside ``rep/R001.html``: hidden, unique, same suffix."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and move it into place: a reader sees
    the old file or the new one, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = temp_name(path)
    try:
        scratch.write_text(text, encoding="utf-8")
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)


def read_yaml(
    path: Path, what: str, error: type[KpiKitError] = ParamsError, empty_ok: bool = True
) -> dict:
    """The mapping at the top of a YAML file, or ``error`` naming the file and what is wrong.

    ``what`` names the file's role in messages (``"targets file"``); an empty file is ``{}``
    when ``empty_ok``.

    Example: ``read_yaml(Path("params/kpis.yaml"), "settings file")["gross_margin"]`` -> ``1.0``.
    """
    path = Path(path)
    if not path.is_file():
        raise error(f"{what} '{path}' does not exist")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise error(f"{path}: not valid YAML: {exc}") from exc
    if data is None and empty_ok:
        return {}
    if not isinstance(data, dict):
        raise error(f"{path}: expected a mapping at the top of the {what}")
    return data

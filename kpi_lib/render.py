"""Fan-out rendering: every role x scope report of one period, as static HTML.

One batch, for one period ``P``:

1. ``kpi_lib.batch.prepare_batch`` computes the KPI cube once and saves it under
   ``<out>/<P>/_data`` (the notebooks read it from there instead of recomputing);
2. ``<out>/<P>/kpis.csv``: the cube rows of ``P``;
3. every role x scope of ``params/reports.yaml`` is executed with papermill, in parallel, into
   ``<out>/<P>/_notebooks/<role>/<scope_id>.ipynb``: one warm kernel per worker, reset between
   reports (``kpi_lib._kernel_pool``; ``fresh_kernels=True``: a fresh kernel per report), and
   only the reports whose key changed since the last render (``kpi_lib._render_cache``);
4. each executed notebook is exported with nbconvert (no code, images embedded, the kit's slim
   template) to ``<out>/<P>/<role>/<scope_id>.html``;
5. ``<out>/<P>/index.html`` (every report with its status) and ``<out>/<P>/manifest.json``.

Every file is written under a temporary name in its folder and moved into place with
``os.replace``, so a reader never sees half a file, and a report that fails leaves the last good
HTML where it was. One failing report never stops the others; ``BatchResult.failed`` lists them.

The layout is the one of DESIGN.md section 6::

    reports/2026-10/index.html
    reports/2026-10/manifest.json
    reports/2026-10/kpis.csv
    reports/2026-10/executive/all.html
    reports/2026-10/manager/<team_id>.html
    reports/2026-10/rep/<rep_id>.html
    reports/2026-10/_notebooks/<role>/<scope_id>.ipynb
    reports/2026-10/_data/...                      (the batch's cube, written by kpi_lib.batch)
"""

from __future__ import annotations

import concurrent.futures as cf
import html
import json
import math
import multiprocessing
import os
import platform
import re
import sys
import time
import traceback
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import yaml

from kpi_lib import _render_cache
from kpi_lib._paths import project_path
from kpi_lib.errors import KpiKitError, ParamsError, UnknownScopeError
from kpi_lib.file_names import file_stems
from kpi_lib.periods import Period, last_complete_month
from kpi_lib.redact import hide_source, redact
from kpi_lib.sources import SourceSpec, source_spec

__all__ = [
    "BatchResult",
    "ReportOutcome",
    "ReportSpec",
    "RoleSpec",
    "execute_report",
    "export_html",
    "load_matrix",
    "plan_reports",
    "render_batch",
]

SCOPE_KINDS = ("company", "team", "rep")
KPIS_CSV_COLUMNS = [
    "period",
    "scope",
    "scope_id",
    "kpi",
    "value",
    "numerator",
    "denominator",
    "target",
]
DEFAULT_TIMEOUT = 600.0
TEMPLATES = Path(__file__).parent / "templates"
TEMPLATE_NAME = "kpi_report"
# A role names a folder: it is configuration, not data, so it must already be a safe name.
_SAFE_ROLE = re.compile(r"^[a-z][a-z0-9_-]{0,63}$")
_TOOLS = (
    "kpi-kit",
    "papermill",
    "nbconvert",
    "nbclient",
    "ipykernel",
    "pandas",
    "ibis-framework",
    "duckdb",
    "matplotlib",
    "seaborn",
)


# --------------------------------------------------------------------------------------------
# The report matrix (params/reports.yaml)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RoleSpec:
    """One role of the report matrix: a notebook and the scopes it is rendered for.

    ``scope_ids=None`` means every scope of that kind active in the period.
    """

    role: str
    notebook: Path
    scope: str
    scope_ids: tuple[str, ...] | None = None
    title: str = ""


@dataclass(frozen=True)
class Matrix:
    """The parsed report matrix: roles in file order, the per-report timeout and the kernel."""

    roles: dict[str, RoleSpec]
    timeout: float = DEFAULT_TIMEOUT
    kernel: str = "python3"


def load_matrix(path: str | Path = "params/reports.yaml") -> Matrix:
    """Read the report matrix; raise ``ParamsError`` naming the file and entry at fault.

    Example
    -------
    >>> m = load_matrix("params/reports.yaml")  # doctest: +SKIP
    >>> [(r.role, r.scope) for r in m.roles.values()]  # doctest: +SKIP
    [('executive', 'company'), ('manager', 'team'), ('rep', 'rep')]
    """
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except FileNotFoundError as exc:
        raise ParamsError(f"{path}: report matrix not found") from exc
    except yaml.YAMLError as exc:
        raise ParamsError(f"{path}: not valid YAML ({exc})") from exc
    if not isinstance(raw, dict) or not isinstance(raw.get("roles"), dict) or not raw["roles"]:
        raise ParamsError(f"{path}: expected a mapping with a non-empty 'roles:' mapping")
    unknown = sorted(set(raw) - {"roles", "timeout_seconds", "kernel"})
    if unknown:
        raise ParamsError(f"{path}: unknown keys {unknown}; known: roles, timeout_seconds, kernel")
    roles = {}
    for role, entry in raw["roles"].items():
        where = f"{path}: role '{role}'"
        if not isinstance(role, str) or not _SAFE_ROLE.match(role):
            raise ParamsError(f"{where}: role names are lower-case letters, digits, '_' or '-'")
        if not isinstance(entry, dict) or "notebook" not in entry or "scope" not in entry:
            raise ParamsError(f"{where}: needs 'notebook:' and 'scope:'")
        extra = sorted(set(entry) - {"notebook", "scope", "scope_ids", "title"})
        if extra:
            raise ParamsError(
                f"{where}: unknown keys {extra}; known: notebook, scope, scope_ids, title"
            )
        if entry["scope"] not in SCOPE_KINDS:
            raise ParamsError(
                f"{where}: scope '{entry['scope']}' is not one of {list(SCOPE_KINDS)}"
            )
        ids = entry.get("scope_ids")
        if ids is not None:
            if isinstance(ids, str) or not isinstance(ids, list) or not ids:
                raise ParamsError(f"{where}: scope_ids must be a non-empty list of ids")
            if any(i is None or not str(i).strip() for i in ids):
                raise ParamsError(f"{where}: scope_ids must be non-empty strings, got {ids!r}")
            ids = tuple(str(i) for i in ids)
        roles[role] = RoleSpec(
            role,
            Path(entry["notebook"]),
            entry["scope"],
            ids,
            str(entry.get("title") or role.replace("_", " ").capitalize()),
        )
    timeout = raw.get("timeout_seconds", DEFAULT_TIMEOUT)
    if not isinstance(timeout, int | float) or timeout <= 0:
        raise ParamsError(f"{path}: timeout_seconds must be a positive number of seconds")
    return Matrix(roles, float(timeout), str(raw.get("kernel") or "python3"))


# --------------------------------------------------------------------------------------------
# Planning: which reports this batch renders
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ReportSpec:
    """One report of a batch: a role's notebook executed for one scope.

    ``file_stem`` names its files (``kpi_lib.file_names``): the id itself when it is a safe
    file name, else a slug and a short hash.

    Example
    -------
    >>> spec = ReportSpec("rep", Path("notebooks/rep.ipynb"), "rep", "Cara Losch", "Cara Losch",
    ...                   "Cara-Losch-06938756")
    >>> spec.html_path, spec.notebook_path
    (PosixPath('rep/Cara-Losch-06938756.html'), PosixPath('_notebooks/rep/Cara-Losch-06938756.ipynb'))
    """

    role: str
    notebook: Path
    scope: str
    scope_id: str
    scope_name: str
    file_stem: str

    @property
    def html_path(self) -> Path:
        """Where the HTML goes, relative to the period folder."""
        return Path(self.role) / f"{self.file_stem}.html"

    @property
    def notebook_path(self) -> Path:
        """Where the executed notebook goes, relative to the period folder."""
        return Path("_notebooks") / self.role / f"{self.file_stem}.ipynb"


def scope_table(batch) -> list[tuple[str, str, str, str | None]]:
    """``(scope, scope_id, scope_name, team_id)`` for every scope the batch knows, in its order.

    One row per scope. Accepts what ``batch.scopes()`` returns: a DataFrame with ``scope``,
    ``scope_id``, a name column (``scope_name`` or ``name``) and optionally ``team_id``, or an
    iterable of mappings or objects with those fields.
    """
    scopes = batch.scopes()
    if hasattr(scopes, "to_dict") and hasattr(scopes, "columns"):
        scopes = scopes.to_dict("records")
    rows = []
    for item in scopes:
        get = item.get if isinstance(item, dict) else lambda k, d=None, o=item: getattr(o, k, d)
        scope, scope_id = str(get("scope")), str(get("scope_id"))
        name = get("scope_name", None) or get("name", None) or scope_id
        team = get("team_id", None)
        rows.append((scope, scope_id, str(name), None if team is None else str(team)))
    return rows


def plan_reports(
    matrix: Matrix, scopes: Sequence[tuple], roles: Sequence[str] | None = None
) -> list[ReportSpec]:
    """Every role x scope report of the batch, in matrix order then scope order.

    Raises ``ParamsError`` for an unknown role and ``UnknownScopeError`` for an explicit
    ``scope_ids`` entry the batch does not know. File names come from ``file_stems`` over every
    scope of the role's kind, so a report keeps its file whichever subset is rendered.
    """
    if roles is not None:
        unknown = [r for r in roles if r not in matrix.roles]
        if unknown:
            raise ParamsError(
                f"unknown roles {unknown}; the report matrix has {list(matrix.roles)}"
            )
    chosen = [matrix.roles[r] for r in (roles if roles is not None else matrix.roles)]
    by_kind: dict[str, list[tuple[str, str]]] = {kind: [] for kind in SCOPE_KINDS}
    for scope, scope_id, name, *_ in scopes:
        if scope in by_kind:
            by_kind[scope].append((scope_id, name))
    specs = []
    for role in chosen:
        known = dict(by_kind[role.scope])
        if role.scope_ids is None:
            ids = list(known)
        else:
            missing = [i for i in role.scope_ids if i not in known]
            if missing:
                raise UnknownScopeError(
                    f"report matrix role '{role.role}': {role.scope} ids {missing} are not "
                    f"active in this period; known: {sorted(known)}"
                )
            ids = list(role.scope_ids)
        stems = file_stems(known)
        specs += [
            ReportSpec(role.role, role.notebook, role.scope, i, known[i], stems[i]) for i in ids
        ]
    return specs


# --------------------------------------------------------------------------------------------
# One report: execute (papermill) and export (nbconvert)
# --------------------------------------------------------------------------------------------


def execute_report(
    notebook: Path,
    output: Path,
    parameters: dict,
    *,
    timeout: float,
    kernel: str = "python3",
    cwd: Path | None = None,
    **engine_options,
) -> None:
    """Execute one report notebook in a fresh kernel and write the executed notebook.

    This is the one place that runs a kernel: a warm kernel pool replaces this function.
    The whole notebook must finish within ``timeout`` seconds (not each cell). On failure
    the executed notebook (with the traceback) is still written, then the error is raised:
    ``papermill.PapermillExecutionError`` for an exception in a cell, ``TimeoutError`` when
    the report ran out of time. ``engine_options`` go to papermill: the warm pool passes its
    engine and kernel (``kpi_lib._kernel_pool.execute_report_warm``).

    Example
    -------
    >>> execute_report(Path("notebooks/rep.ipynb"), Path("/tmp/r.ipynb"),  # doctest: +SKIP
    ...                {"period": "2026-10", "scope_id": "R001"}, timeout=600)
    """
    import papermill
    from nbclient.exceptions import CellTimeoutError

    deadline = time.monotonic() + timeout

    def remaining(_cell=None) -> int:
        return max(1, math.ceil(deadline - time.monotonic()))

    try:
        papermill.execute_notebook(
            str(notebook),
            str(output),
            parameters=parameters,
            kernel_name=kernel,
            cwd=str(cwd) if cwd else None,
            progress_bar=False,
            log_output=False,
            request_save_on_cell_execute=False,
            start_timeout=min(60, remaining()),
            timeout_func=remaining,
            **engine_options,
        )
    except CellTimeoutError as exc:
        raise TimeoutError(f"report timed out after {timeout:g} s") from exc


def _warm_execute():
    """``execute_report`` on this worker's kept-alive kernel (``kpi_lib._kernel_pool``)."""
    from kpi_lib._kernel_pool import execute_report_warm

    return execute_report_warm


@lru_cache(maxsize=1)
def _exporter():
    from nbconvert import HTMLExporter

    return HTMLExporter(
        template_name=TEMPLATE_NAME,
        extra_template_basedirs=[str(TEMPLATES)],
        exclude_input=True,
        exclude_input_prompt=True,
        exclude_output_prompt=True,
        exclude_anchor_links=True,
        embed_images=True,
    )


def export_html(
    executed: Path, *, title: str, period: str = "", index_href: str | None = None
) -> str:
    """The report page of an executed notebook: outputs and narrative, no code, no scripts.

    Images are embedded as ``data:`` URIs and the CSS is inline, so the page is one file.
    Cells tagged ``remove-cell`` are dropped, and ``remove-output`` cells lose their outputs.
    """
    import nbformat
    from nbconvert import __version__ as nbconvert_version
    from nbconvert.preprocessors import TagRemovePreprocessor

    nb = nbformat.read(str(executed), as_version=4)
    nb, _ = TagRemovePreprocessor(
        remove_cell_tags={"remove-cell", "remove_cell"},
        remove_all_outputs_tags={"remove-output", "remove_output"},
        enabled=True,
    ).preprocess(nb, {})
    resources = {
        "metadata": {"name": title},
        "report": {
            "title": title,
            "period": period,
            "index_href": index_href,
            "nbconvert_version": nbconvert_version,
        },
    }
    body, _ = _exporter().from_notebook_node(nb, resources=resources)
    return body


def _render_one(job: dict) -> dict:
    """Pool worker: execute and export one report; never raises, returns its outcome.

    What the worker and its kernel print (kernel warnings, library chatter) goes to
    ``_notebooks/<role>/<scope_id>.log``, not over the progress bar.
    """
    started = time.monotonic()
    period_dir = Path(job["period_dir"])
    executed = period_dir / job["notebook_path"]
    target = period_dir / job["html_path"]
    outcome = {
        "status": "failed",
        "error": None,
        "seconds_execute": None,
        "seconds_export": None,
        "html_bytes": None,
    }
    executed.parent.mkdir(parents=True, exist_ok=True)
    scratch = _temp_name(executed)
    with _output_to(executed.with_suffix(".log")):
        try:
            try:
                run = execute_report if job.get("fresh_kernels", True) else _warm_execute()
                run(
                    Path(job["notebook"]),
                    scratch,
                    job["parameters"],
                    timeout=job["timeout"],
                    kernel=job["kernel"],
                    cwd=Path(job["cwd"]),
                )
            finally:
                if scratch.exists():
                    os.replace(scratch, executed)
            outcome["seconds_execute"] = round(time.monotonic() - started, 3)
            exported = time.monotonic()
            page = export_html(
                executed, title=job["title"], period=job["period"], index_href="../index.html"
            )
            _write_atomic(target, page)
            outcome.update(
                status="ok",
                seconds_export=round(time.monotonic() - exported, 3),
                html_bytes=target.stat().st_size,
            )
        except Exception as exc:  # noqa: BLE001 - one report's failure is reported, never raised
            outcome["error"] = _error_line(exc)
            traceback.print_exc()
            if outcome["seconds_execute"] is None:
                outcome["seconds_execute"] = round(time.monotonic() - started, 3)
        finally:
            scratch.unlink(missing_ok=True)
    _redact_file(executed.with_suffix(".log"))
    outcome["seconds"] = round(time.monotonic() - started, 3)
    return outcome


def _redact_file(path: Path) -> None:
    """Mask secrets (``kpi_lib.redact``) in a log the kernel and its libraries wrote to."""
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return
    clean = redact(text)
    if clean != text:
        _write_atomic(path, clean)


@contextmanager
def _output_to(log: Path):
    """Point this process's stdout and stderr (file descriptors 1 and 2) at ``log``.

    Descriptors, not ``sys.stdout``: the kernel is a child process and inherits them.
    """
    sys.stdout.flush()
    sys.stderr.flush()
    saved = [os.dup(1), os.dup(2)]
    with open(log, "w", encoding="utf-8") as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)


def _error_line(exc: BaseException) -> str:
    """The error as one line: ``ValueError: no rep R999`` (what a traceback ends with)."""
    ename = getattr(exc, "ename", None)
    if ename is not None:
        text = f"{ename}: {getattr(exc, 'evalue', '')}"
    else:
        text = traceback.format_exception_only(type(exc), exc)[-1]
    text = " / ".join(line.strip() for line in str(text).strip().splitlines() if line.strip())
    text = redact(text)
    return text if len(text) <= 500 else text[:497] + "..."


# --------------------------------------------------------------------------------------------
# Files: atomic writes
# --------------------------------------------------------------------------------------------


def _temp_name(path: Path) -> Path:
    """``rep/.R001.tmp-4711.html`` beside ``rep/R001.html``: hidden, unique, same suffix."""
    return path.with_name(f".{path.stem}.tmp-{os.getpid()}{path.suffix}")


def _write_atomic(path: Path, text: str) -> None:
    """Write ``text`` to a temporary file beside ``path`` and move it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = _temp_name(path)
    try:
        scratch.write_text(text, encoding="utf-8")
        os.replace(scratch, path)
    finally:
        scratch.unlink(missing_ok=True)


def _sweep_temp_files(period_dir: Path) -> None:
    """Remove temporary files a killed batch left behind (never a finished report)."""
    for stale in period_dir.rglob(".*.tmp-*"):
        if stale.is_file():
            stale.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# The batch
# --------------------------------------------------------------------------------------------


@dataclass
class ReportOutcome:
    """What happened to one report of a batch (one entry of ``manifest.json``)."""

    role: str
    scope: str
    scope_id: str
    scope_name: str
    notebook: str
    html: str
    executed_notebook: str
    status: str = "pending"
    error: str | None = None
    seconds: float | None = None
    seconds_execute: float | None = None
    seconds_export: float | None = None
    html_bytes: int | None = None
    last_good_html: bool = False
    group: str | None = None
    key: str | None = None
    reused: bool = False
    html_sha256: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"


@dataclass
class BatchResult:
    """The outcome of ``render_batch``: one ``ReportOutcome`` per role x scope, and the files.

    Example
    -------
    >>> result = render_batch("2026-10")  # doctest: +SKIP
    >>> print(result.summary())  # doctest: +SKIP
    2026-10: 31 reports, 31 ok, 0 failed in 95.2 s -> reports/2026-10/index.html
    """

    period: str
    period_dir: Path
    reports: list[ReportOutcome]
    started_at: str
    finished_at: str
    seconds: float
    fingerprint: str | None = None
    code_version: str | None = None
    as_of: str | None = None
    manifest: dict = field(default_factory=dict, repr=False)

    @property
    def failed(self) -> list[ReportOutcome]:
        return [r for r in self.reports if not r.ok]

    @property
    def index_path(self) -> Path:
        return self.period_dir / "index.html"

    @property
    def manifest_path(self) -> Path:
        return self.period_dir / "manifest.json"

    def summary(self) -> str:
        """One line for the batch, then one line per failed report."""
        n, bad = len(self.reports), len(self.failed)
        lines = [
            f"{self.period}: {n} reports, {n - bad} ok, {bad} failed in "
            f"{self.seconds:.1f} s -> {self.index_path}"
        ]
        for r in self.failed:
            kept = " (last good HTML kept)" if r.last_good_html else ""
            lines.append(f"  FAILED {r.role}/{r.scope_id}{kept}: {r.error}")
            lines.append(f"         executed notebook: {self.period_dir / r.executed_notebook}")
        return "\n".join(lines)


def render_batch(
    period: str,
    source: str = "data/demo.duckdb",
    out: str = "reports",
    roles: Sequence[str] | None = None,
    jobs: int | None = None,
    as_of=None,
    targets: str | None = None,
    progress: bool = True,
    *,
    matrix: str | Path = "params/reports.yaml",
    timeout: float | None = None,
    fresh_kernels: bool = False,
    force: bool = False,
    history_dir: str | None = None,
) -> BatchResult:
    """Render every role x scope report of one period into ``<out>/<period>/``.

    Parameters
    ----------
    period
        One period: ``'2026-10'``, ``'2026-Q3'`` (Jul 1 to Sep 30) or ``'2026'``; empty means
        the last complete month.
    source
        Where the canonical tables live (a DuckDB file, a folder of CSV/Parquet, a SQL URL, a
        source file), or a ``SourceSpec`` (``sources.source_spec``: a preset, column map or FX
        table); the reports then read it through ``_data/source.yaml``.
    out
        The reports folder; the batch goes to ``<out>/<period>/``.
    roles
        Only these roles of the matrix (default: all of them).
    jobs
        Reports rendered at once, each in its own kernel (default: the number of cores).
    as_of
        The report date (``'2026-11-03'``); default today.
    targets
        A targets file; default: the org's own (``kpi_lib.org``), ``""``: none.
    progress
        Show a progress bar on stderr.
    matrix
        The report matrix (``params/reports.yaml``): roles, notebooks, scopes.
    timeout
        Seconds one report may run before it fails (default: the matrix's, 600).
    fresh_kernels
        Start a fresh kernel for every report (papermill's plain path, for debugging) instead
        of each worker's warm kernel, reset between reports (``kpi_lib._kernel_pool``).
    force
        Render every report, even those whose key (notebook, parameters, code, the data the
        report reads; ``kpi_lib._render_cache``) matches the last render kept in the folder.
    history_dir
        A snapshot folder (``history``): today's snapshot of the opportunities is stored and a
        source without stage history gets it derived from the snapshots (``kpi_lib.history``).

    Returns
    -------
    BatchResult
        One outcome per report; ``result.failed`` is empty when every report rendered.
        Bad input (period, source, matrix, scope ids) raises a ``KpiKitError`` before any
        report is rendered.

    Example
    -------
    >>> result = render_batch("2026-10", source="data/demo.duckdb")  # doctest: +SKIP
    >>> result.failed  # doctest: +SKIP
    []
    """
    from tqdm.auto import tqdm

    from kpi_lib.cube import project_path

    started, clock = _now(), time.monotonic()
    label = (Period.parse(period) if period else last_complete_month()).label
    plan_matrix = load_matrix(project_path(matrix))
    notebooks = {}
    for role in roles if roles is not None else plan_matrix.roles:
        spec = plan_matrix.roles.get(role)
        if spec is None:
            raise ParamsError(f"unknown role '{role}'; {matrix} has {list(plan_matrix.roles)}")
        notebooks[role] = project_path(spec.notebook)
        if not notebooks[role].is_file():
            raise ParamsError(f"{matrix}: role '{role}': notebook {spec.notebook} not found")
    timeout = float(timeout if timeout is not None else plan_matrix.timeout)
    jobs = max(1, int(jobs or os.cpu_count() or 1))
    period_dir = Path(out) / label
    data_dir = period_dir / "_data"

    shown_source = hide_source(source) if isinstance(source, str | Path) else source
    if isinstance(source, str | Path) and source_spec(source) != source:
        source = source_spec(source)  # a source file: read once, named in _data/source.yaml
    batch, state = _prepare(source, label, as_of, targets, data_dir, force, history_dir)
    scopes = scope_table(batch)
    specs = plan_reports(plan_matrix, scopes, roles)
    team_names = {sid: name for kind, sid, name, _ in scopes if kind == "team"}
    group_of = {
        sid: team_names.get(team, team) for kind, sid, _, team in scopes if kind == "rep" and team
    }
    period_dir.mkdir(parents=True, exist_ok=True)
    _sweep_temp_files(period_dir)
    batch.save(data_dir)  # only once the plan is valid: bad input leaves the folder as it was
    inputs, digests = _keys_inputs(batch, state, source, label, as_of, targets)
    _write_atomic(data_dir / _INPUTS_FILE, json.dumps({"inputs": inputs, "scopes": digests}))
    _write_kpis_csv(batch.cube, label, period_dir / "kpis.csv")

    cwd = Path.cwd()
    parameters = {
        "source": batch.source if isinstance(source, SourceSpec) else _absolute(shown_source),
        "batch_dir": str(data_dir.resolve()),
        "targets": str(project_path(targets).resolve()) if targets else "",
    }
    outcomes = [
        ReportOutcome(
            s.role,
            s.scope,
            s.scope_id,
            s.scope_name,
            str(s.notebook),
            s.html_path.as_posix(),
            s.notebook_path.as_posix(),
            group=group_of.get(s.scope_id) if s.scope == "rep" else None,
        )
        for s in specs
    ]
    jobs_in = [
        {
            "notebook": str(notebooks[s.role].resolve()),
            "period_dir": str(period_dir.resolve()),
            "html_path": str(s.html_path),
            "notebook_path": str(s.notebook_path),
            "parameters": {"period": label, "scope_id": s.scope_id, **parameters},
            "timeout": timeout,
            "kernel": plan_matrix.kernel,
            "cwd": str(cwd),
            "period": label,
            "title": f"{s.scope_name} · {s.role.replace('_', ' ').capitalize()} report · {label}",
            "fresh_kernels": fresh_kernels,
        }
        for s in specs
    ]
    todo = _reuse_unchanged(batch, digests, jobs_in, outcomes, period_dir, force)
    bar = tqdm(
        total=len(specs),
        desc=f"render {label}",
        unit="report",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    try:
        bar.update(len(specs) - len(todo))
        if todo:
            _run_pool(
                [jobs_in[i] for i in todo], [outcomes[i] for i in todo], min(jobs, len(todo)), bar
            )
    finally:
        bar.close()
    # A reused report was audited when it was rendered; its key covers the audit's code.
    _audit_scopes(batch, source, period_dir, [o for o in outcomes if not o.reused])
    for o in outcomes:
        o.last_good_html = not o.ok and (period_dir / o.html).is_file()
        if o.ok and not o.reused:
            o.html_sha256 = _render_cache.file_sha256(period_dir / o.html)

    result = BatchResult(
        period=label,
        period_dir=period_dir,
        reports=outcomes,
        started_at=started,
        finished_at=_now(),
        seconds=round(time.monotonic() - clock, 3),
        fingerprint=_attr(batch, "fingerprint"),
        code_version=_attr(batch, "code_version"),
        as_of=None if _attr(batch, "as_of") is None else str(_attr(batch, "as_of")),
    )
    result.manifest = _manifest(
        result,
        {
            "period": label,
            "source": str(shown_source),
            "out": str(out),
            "roles": list(roles or []) or list(plan_matrix.roles),
            "jobs": jobs,
            "as_of": None if as_of is None else str(as_of),
            "targets": getattr(batch, "targets", None),
            "configuration": getattr(batch, "config", {}).get("origin"),
            "matrix": str(matrix),
            "timeout_seconds": timeout,
            "kernel": plan_matrix.kernel,
            "fresh_kernels": fresh_kernels,
            "force": force,
        },
    )
    _write_atomic(
        result.manifest_path, redact(json.dumps(result.manifest, indent=2, default=str)) + "\n"
    )
    _write_atomic(result.index_path, _index_html(result, plan_matrix))
    return result


def _audit_scopes(batch, source, period_dir: Path, outcomes: list[ReportOutcome]) -> None:
    """Fail every rendered report that names a rep, team or account outside its scope.

    The page is moved aside to a hidden ``.<scope_id>.leak.html`` (never linked or mailed) and
    its error lists the first foreign name; the rule is ``kpi_lib.audit``'s.
    """
    from kpi_lib.audit import Auditor, Directory, scan_report

    done = [o for o in outcomes if o.ok and o.scope != "company"]
    if not done:
        return
    auditor = Auditor(Directory.from_batch(batch, source))
    for o in done:
        page = period_dir / o.html
        leaks = scan_report(auditor, page, o.scope, o.scope_id)
        if leaks:
            os.replace(page, page.with_name(f".{page.stem}.leak{page.suffix}"))
            names = ", ".join(f"{f.kind} {f.name!r} ({f.entity_id})" for f in leaks[:3])
            more = f" and {len(leaks) - 3} more" if len(leaks) > 3 else ""
            o.status, o.html_bytes = "failed", None
            o.error = redact(f"scope leak: names outside {o.scope} {o.scope_id}: {names}{more}")


_INPUTS_FILE = "render_inputs.json"


def _prepare(source, label: str, as_of, targets, data_dir: Path, force: bool, history_dir=None):
    """The batch, and what the keys need: ``{"src", "inputs", "digests"}`` (None: not yet).

    When the batch saved in ``data_dir`` was computed from the same inputs (source fingerprint,
    period, ``as_of``, targets, settings, code; ``kpi_lib._render_cache.inputs_key``), it is
    read back instead of computing the cube again, with its scopes' digests (unless ``force``).
    """
    from kpi_lib.batch import Batch, prepare_batch

    state = {"src": None, "inputs": None, "digests": None}
    if not force and (data_dir / _INPUTS_FILE).is_file():
        state["src"] = _load(source)
        state["inputs"] = _inputs_key(state["src"], source, label, as_of, targets)
        try:
            saved = json.loads((data_dir / _INPUTS_FILE).read_text(encoding="utf-8"))
            if saved.get("inputs") == state["inputs"] and saved.get("scopes"):
                batch = Batch.load(data_dir)
                state["digests"] = saved["scopes"]
                return batch, state
        except Exception:  # noqa: BLE001 - an unreadable saved batch is computed again
            pass
    batch = prepare_batch(
        state["src"] or source, label, as_of=as_of, targets=targets, history_dir=history_dir
    )
    if state["src"] is not None and not isinstance(source, SourceSpec):
        batch.source = redact(str(source))  # batch.json is an output: no password in it
    return batch, state


def _load(source):
    from kpi_lib.sources import load_source

    return load_source(_absolute(source) if isinstance(source, str | Path) else source)


def _inputs_key(src, source, label: str, as_of, targets) -> str:
    from kpi_lib.cube import org_settings
    from kpi_lib.org import org_files
    from kpi_lib.periods import parse_as_of

    if targets is None:
        path = org_files(src).targets
    else:
        path = project_path(targets) if targets else None
    return _render_cache.inputs_key(
        src.fingerprint,
        _source_text(source),
        label,
        str(parse_as_of(as_of)),
        str(path) if path is not None and path.is_file() else None,
        org_settings(src),
    )


def _source_text(source) -> str:
    """The source as the keys see it: a spec's whole source file, else its path or URL."""
    return source.to_yaml() if isinstance(source, SourceSpec) else str(source)


def _keys_inputs(batch, state: dict, source, label: str, as_of, targets) -> tuple[str, dict]:
    """The inputs key and the scopes' digests, loading the source if ``_prepare`` did not."""
    src = state["src"]
    if state["inputs"] is None or state["digests"] is None:
        src = src or _load(source)
    inputs = state["inputs"] or _inputs_key(src, source, label, as_of, targets)
    digests = state["digests"] or _render_cache.scope_digests(batch, src)
    return inputs, digests


def _reuse_unchanged(
    batch,
    digests: dict,
    jobs_in: list[dict],
    outcomes: list[ReportOutcome],
    period_dir: Path,
    force: bool,
) -> list[int]:
    """Give every report its key; keep the reports whose last render has the same key.

    Returns the indexes of the reports still to render (all of them with ``force``).
    """
    from kpi_lib.history import DEFAULT_HISTORY_DIR

    history_dir = getattr(batch, "history_dir", None) or DEFAULT_HISTORY_DIR
    batch_part = _render_cache.batch_digest(
        batch,
        {"settings": getattr(batch, "settings", {}), "config": getattr(batch, "config", {})},
        _render_cache.folder_digest(project_path(history_dir)),
    )
    previous = {} if force else _render_cache.previous_reports(period_dir / "manifest.json")
    todo = []
    for i, (job, o) in enumerate(zip(jobs_in, outcomes, strict=True)):
        o.key = _render_cache.report_key(
            Path(job["notebook"]),
            job["parameters"],
            job["title"],
            batch_part,
            digests.get(f"{o.scope}/{o.scope_id}", ""),
        )
        before = previous.get((o.role, o.scope_id))
        if before is not None and before.get("html") != o.html:
            before = None  # its file name changed (a new id collides with it): render again
        if _render_cache.still_good(before, o.key, period_dir):
            for name in (
                "status",
                "seconds",
                "seconds_execute",
                "seconds_export",
                "html_bytes",
                "html_sha256",
            ):
                setattr(o, name, before.get(name))
            o.reused = True
        else:
            todo.append(i)
    return todo


def _run_pool(jobs_in: list[dict], outcomes: list[ReportOutcome], workers: int, bar) -> None:
    """Run ``_render_one`` over the jobs in a process pool; fill ``outcomes`` as they finish."""
    context = multiprocessing.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        futures = {pool.submit(_render_one, job): i for i, job in enumerate(jobs_in)}
        for future in cf.as_completed(futures):
            outcome = outcomes[futures[future]]
            try:
                result = future.result()
            except Exception as exc:  # noqa: BLE001 - a dead worker fails its report only
                result = {"status": "failed", "error": f"worker died: {_error_line(exc)}"}
            for key, value in result.items():
                setattr(outcome, key, value)
            bar.update(1)
            if not outcome.ok:
                bar.set_postfix(failed=sum(not o.ok and o.status != "pending" for o in outcomes))


def _write_kpis_csv(cube, label: str, path: Path) -> None:
    """The cube rows of the period, in the contract's columns. One row per scope x KPI."""
    missing = [c for c in KPIS_CSV_COLUMNS if c not in cube.columns]
    if missing:
        raise KpiKitError(f"the batch's cube lacks columns {missing}")
    rows = cube.loc[cube["period"].astype(str) == label, KPIS_CSV_COLUMNS]
    _write_atomic(path, rows.to_csv(index=False))


def _absolute(path) -> str:
    """A path as the kernels must see it (they may run elsewhere); a SQL URL stays as it is."""
    from kpi_lib.cube import project_path

    text = str(path)
    return text if "://" in text else str(project_path(text).resolve())


def _attr(obj, name: str):
    value = getattr(obj, name, None)
    return value() if callable(value) else value


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _readable(iso: str) -> str:
    """``2026-11-28T21:58:42+00:00`` -> ``2026-11-28 21:58 UTC``."""
    return datetime.fromisoformat(iso).astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _tool_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for dist in _TOOLS:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return versions


def _manifest(result: BatchResult, parameters: dict) -> dict:
    return {
        "period": result.period,
        "parameters": parameters,
        "started_at": result.started_at,
        "finished_at": result.finished_at,
        "seconds": result.seconds,
        "data_fingerprint": result.fingerprint,
        "code_version": result.code_version,
        "as_of": result.as_of,
        "tools": _tool_versions(),
        "counts": {
            "reports": len(result.reports),
            "ok": len(result.reports) - len(result.failed),
            "failed": len(result.failed),
        },
        "reports": [asdict(r) for r in result.reports],
    }


# --------------------------------------------------------------------------------------------
# index.html
# --------------------------------------------------------------------------------------------

_INDEX_CSS = """
* { box-sizing: border-box; }
body { margin: 0; background: #f5f7fa; color: #1f2933;
  font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif; }
main { max-width: 1120px; margin: 0 auto; padding: 16px; }
h1 { font-size: 1.6rem; margin: 8px 0 4px; }
h2 { font-size: 1.15rem; margin: 24px 0 8px; }
h3 { font-size: 0.95rem; color: #616e7c; margin: 14px 0 6px; }
.meta { color: #616e7c; font-size: 13px; margin: 0 0 8px; overflow-wrap: anywhere; }
.alert { background: #fdecea; border-left: 4px solid #d55e00; padding: 8px 12px; margin: 12px 0; }
ul.cards { list-style: none; padding: 0; margin: 0; display: grid; gap: 10px;
  grid-template-columns: repeat(auto-fill, minmax(240px, 1fr)); }
.card { background: #fff; border: 1px solid #e4e7eb; border-radius: 8px; padding: 10px 12px;
  overflow-wrap: anywhere; }
.card a.name { font-weight: 600; text-decoration: none; color: #0072b2; }
.card .id { color: #616e7c; font-size: 12px; }
.badge { display: inline-block; font-size: 12px; font-weight: 600; border-radius: 10px;
  padding: 1px 8px; margin-left: 6px; }
.badge.ok { background: #e3f2ec; color: #00664a; }
.badge.failed { background: #fdecea; color: #a33a00; }
.error { font-size: 12px; color: #a33a00; margin-top: 4px; }
@media (max-width: 600px) { main { padding: 10px; } h1 { font-size: 1.3rem; } }
"""


def _card(r: ReportOutcome) -> str:
    """One report in the index: its name (a link when there is a page), status and error."""
    e = html.escape
    name = e(r.scope_name)
    if r.ok or r.last_good_html:
        label = f'<a class="name" href="{e(r.html)}">{name}</a>'
    else:
        label = f'<span class="name">{name}</span>'
    badge = f'<span class="badge {"ok" if r.ok else "failed"}">{e(r.status)}</span>'
    error = (
        ""
        if r.ok
        else (
            f'<div class="error">{e(r.error or "")}'
            f"{' (the link opens the last good version)' if r.last_good_html else ''}</div>"
        )
    )
    return (
        f'<li class="card" data-status="{e(r.status)}" data-report="{e(r.html)}">'
        f'{label}{badge}<div class="id">{e(r.scope_id)}</div>{error}</li>'
    )


def _index_html(result: BatchResult, matrix: Matrix) -> str:
    """The batch's front page: every report, grouped by role, with its status and link."""
    e = html.escape
    n, bad = len(result.reports), len(result.failed)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>Sales reports {e(result.period)}</title>",
        f"<style>{_INDEX_CSS}</style>",
        "</head>",
        "<body>",
        "<main>",
        f"<h1>Sales reports: {e(result.period)}</h1>",
        f'<p class="meta">{n} reports, {n - bad} ok, {bad} failed. Data as of '
        f"{e(str(result.as_of))}, rendered {e(_readable(result.finished_at))} in "
        f"{result.seconds:.0f} s. Data fingerprint {e(str(result.fingerprint))}, code "
        f"{e(str(result.code_version))}. "
        '<a href="kpis.csv">kpis.csv</a> &middot; <a href="manifest.json">manifest.json</a></p>',
    ]
    if bad:
        parts.append(
            f'<p class="alert">{bad} report{"s" if bad != 1 else ""} failed; where an '
            "earlier version exists, its link opens that last good version.</p>"
        )
    for role, spec in matrix.roles.items():
        items = [r for r in result.reports if r.role == role]
        if not items:
            continue
        parts.append(f'<section id="{e(role)}"><h2>{e(spec.title)}</h2>')
        groups = list(dict.fromkeys(r.group for r in items))
        for group in groups:
            if group is not None:
                parts.append(f"<h3>{e(group)}</h3>")
            parts.append('<ul class="cards">')
            parts += [_card(r) for r in items if r.group == group]
            parts.append("</ul>")
        parts.append("</section>")
    parts += ["</main>", "</body>", "</html>", ""]
    return "\n".join(parts)

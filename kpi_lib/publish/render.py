"""Fan-out rendering: every role x scope report of one period, as static HTML.

One batch, for one period ``P``:

1. ``kpi_lib.metrics.batch.prepare_batch`` computes the KPI cube once and saves it under
   ``<out>/<P>/_data`` (the notebooks read it from there instead of recomputing);
2. ``<out>/<P>/kpis.csv``: the cube rows of ``P`` with their normal ranges and significance,
   ``<out>/<P>/drivers.csv``: what moved each change (``kpi_lib.metrics.drivers``),
   ``<out>/<P>/forecast.csv``: each projection replayed against actuals
   (``kpi_lib.metrics.forecast``) and ``<out>/<P>/risks.csv``: open deals at risk
   (``kpi_lib.metrics.risks``);
3. every role x scope of ``params/reports.yaml`` is executed with papermill, in parallel, into
   ``<out>/<P>/_notebooks/<role>/<scope_id>.ipynb``: one warm kernel per worker, reset between
   reports (``kpi_lib.publish.kernels``; ``fresh_kernels=True``: a fresh kernel per report), and
   only the reports whose key changed since the last render (``kpi_lib.publish.cache``);
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
    reports/2026-10/drivers.csv
    reports/2026-10/forecast.csv
    reports/2026-10/risks.csv
    reports/2026-10/executive/all.html
    reports/2026-10/manager/<team_id>.html
    reports/2026-10/rep/<rep_id>.html
    reports/2026-10/_notebooks/<role>/<scope_id>.ipynb
    reports/2026-10/_data/...                      (the batch's cube, written by kpi_lib.metrics.batch)
"""

from __future__ import annotations

import concurrent.futures as cf
import json
import multiprocessing
import os
import sys
import time
import traceback
from collections.abc import Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from kpi_lib.data.source import SourceSpec, source_spec
from kpi_lib.errors import ParamsError
from kpi_lib.paths import project_path, temp_name, write_atomic
from kpi_lib.periods import Period
from kpi_lib.publish import cache
from kpi_lib.publish.execute import execute_report, export_html
from kpi_lib.publish.index import (
    BatchResult,
    ReportOutcome,
    index_html,
    manifest_of,
    write_drivers_csv,
    write_forecast_csv,
    write_kpis_csv,
    write_risks_csv,
)
from kpi_lib.publish.plan import load_matrix, plan_reports, scope_table
from kpi_lib.redact import hide_source, redact

__all__ = ["BatchResult", "ReportOutcome", "render_batch"]


# --------------------------------------------------------------------------------------------
# One report in a pool worker: execute and export it, its output to a log
# --------------------------------------------------------------------------------------------


def _warm_execute():
    """``execute_report`` on this worker's kept-alive kernel (``kpi_lib.publish.kernels``)."""
    from kpi_lib.publish.kernels import execute_report_warm

    return execute_report_warm


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
    scratch = temp_name(executed)
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
            write_atomic(target, page)
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
        write_atomic(path, clean)


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


def _sweep_temp_files(period_dir: Path) -> None:
    """Remove temporary files a killed batch left behind (never a finished report)."""
    for stale in period_dir.rglob(".*.tmp-*"):
        if stale.is_file():
            stale.unlink(missing_ok=True)


# --------------------------------------------------------------------------------------------
# The batch
# --------------------------------------------------------------------------------------------


def render_batch(
    period: Period,
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
        One period: ``Period.parse('2026-10')``, ``'2026-Q3'`` (Jul 1 to Sep 30) or ``'2026'``,
        parsed by the caller (the CLI defaults to the last complete month).
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
        The report date (``date(2026, 11, 3)``); default today.
    targets
        A targets file; default: the org's own (``kpi_lib.data.org``), ``""``: none.
    progress
        Show a progress bar on stderr.
    matrix
        The report matrix (``params/reports.yaml``): roles, notebooks, scopes.
    timeout
        Seconds one report may run before it fails (default: the matrix's, 600).
    fresh_kernels
        Start a fresh kernel for every report (papermill's plain path, for debugging) instead
        of each worker's warm kernel, reset between reports (``kpi_lib.publish.kernels``).
    force
        Render every report, even those whose key (notebook, parameters, code, the data the
        report reads; ``kpi_lib.publish.cache``) matches the last render kept in the folder.
    history_dir
        A snapshot folder (``history``): today's snapshot of the opportunities is stored and a
        source without stage history gets it derived from the snapshots (``kpi_lib.data.history``).

    Returns
    -------
    BatchResult
        One outcome per report; ``result.failed`` is empty when every report rendered.
        Bad input (period, source, matrix, scope ids) raises a ``KpiKitError`` before any
        report is rendered.

    Example
    -------
    >>> result = render_batch(Period.parse("2026-10"), source="data/demo.duckdb")  # doctest: +SKIP
    >>> result.failed  # doctest: +SKIP
    []
    """
    from tqdm.auto import tqdm

    from kpi_lib.metrics.cube import project_path

    started, clock = _now(), time.monotonic()
    label = period.label
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
    if isinstance(spec := source_spec(source), SourceSpec):
        source = spec  # a source file: read once, named in _data/source.yaml
    batch, state = _prepare(source, period, as_of, targets, data_dir, force, history_dir)
    scopes = scope_table(batch)
    specs = plan_reports(plan_matrix, scopes, roles)
    team_names = {sid: name for kind, sid, name, _ in scopes if kind == "team"}
    group_of = {
        sid: team_names.get(team, team) for kind, sid, _, team in scopes if kind == "rep" and team
    }
    period_dir.mkdir(parents=True, exist_ok=True)
    _sweep_temp_files(period_dir)
    batch.save(data_dir)  # only once the plan is valid: bad input leaves the folder as it was
    inputs, digests, src = _keys_inputs(batch, state, source, label, as_of, targets)
    stats = _source_stats(src, batch)
    write_atomic(data_dir / _INPUTS_FILE, json.dumps({"inputs": inputs, "scopes": digests}))
    write_kpis_csv(batch.cube, label, period_dir / "kpis.csv")
    write_drivers_csv(batch.drivers, period_dir / "drivers.csv")
    write_forecast_csv(batch.forecast, period_dir / "forecast.csv")
    write_risks_csv(batch.risks, period_dir / "risks.csv")

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
            o.html_sha256 = cache.file_sha256(period_dir / o.html)

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
    result.manifest = manifest_of(
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
        source_stats=stats,
        previous_source=_previous_source(result.manifest_path),
    )
    write_atomic(
        result.manifest_path, redact(json.dumps(result.manifest, indent=2, default=str)) + "\n"
    )
    write_atomic(result.index_path, index_html(result, plan_matrix))
    return result


def _audit_scopes(batch, source, period_dir: Path, outcomes: list[ReportOutcome]) -> None:
    """Fail every rendered report that names a rep, team or account outside its scope.

    The page is moved aside to a hidden ``.<scope_id>.leak.html`` (never linked or mailed) and
    its error lists the first foreign name; the rule is ``kpi_lib.publish.audit``'s.
    """
    from kpi_lib.publish.audit import Auditor, Directory, scan_report

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


def _prepare(source, period: Period, as_of, targets, data_dir: Path, force: bool, history_dir=None):
    """The batch, and what the keys need: ``{"src", "inputs", "digests"}`` (None: not yet).

    When the batch saved in ``data_dir`` was computed from the same inputs (source fingerprint,
    period, ``as_of``, targets, settings, code; ``kpi_lib.publish.cache.inputs_key``), it is
    read back instead of computing the cube again, with its scopes' digests (unless ``force``).
    """
    from kpi_lib.metrics.batch import Batch, prepare_batch

    state = {"src": None, "inputs": None, "digests": None}
    if not force and (data_dir / _INPUTS_FILE).is_file():
        state["src"] = _load(source)
        state["inputs"] = _inputs_key(state["src"], source, period.label, as_of, targets)
        try:
            saved = json.loads((data_dir / _INPUTS_FILE).read_text(encoding="utf-8"))
            if saved.get("inputs") == state["inputs"] and saved.get("scopes"):
                batch = Batch.load(data_dir)
                state["digests"] = saved["scopes"]
                return batch, state
        except Exception:  # noqa: BLE001 - an unreadable saved batch is computed again
            pass
    batch = prepare_batch(
        state["src"] or source, period, as_of=as_of, targets=targets, history_dir=history_dir
    )
    if state["src"] is not None and not isinstance(source, SourceSpec):
        batch.source = redact(str(source))  # batch.json is an output: no password in it
    return batch, state


def _load(source):
    from kpi_lib.data.load import load_source

    return load_source(_absolute(source) if isinstance(source, str | Path) else source)


def _inputs_key(src, source, label: str, as_of, targets) -> str:
    from kpi_lib.data.org import org_files
    from kpi_lib.metrics.cube import org_settings
    from kpi_lib.periods import parse_as_of

    if targets is None:
        path = org_files(src).targets
    else:
        path = project_path(targets) if targets else None
    return cache.inputs_key(
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


def _keys_inputs(
    batch, state: dict, source, label: str, as_of, targets
) -> tuple[str, dict, object]:
    """The inputs key, the scopes' digests and the loaded source (loaded here if ``_prepare``
    did not)."""
    src = state["src"] or _load(source)
    inputs = state["inputs"] or _inputs_key(src, source, label, as_of, targets)
    digests = state["digests"] or cache.scope_digests(batch, src)
    return inputs, digests, src


def _source_stats(src, batch) -> dict | None:
    """Rows per table and the newest dates up to the report date, for the send guards
    (``kpi_lib.publish.guards``); None when they cannot be read (the guards then do not judge)."""
    import pandas as pd

    from kpi_lib.publish.guards import source_stats

    try:
        return source_stats(src, until=pd.Timestamp(batch.as_of) + pd.Timedelta(days=1))
    except Exception:  # noqa: BLE001 - the guards' figures never fail a render
        return None


def _previous_source(manifest_path: Path) -> dict | None:
    """The source figures of the render this one replaces, with when it finished (when the
    guards held that one back: the figures it was compared with; ``guards.accepted_source``)."""
    from kpi_lib.publish.guards import accepted_source

    try:
        old = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return accepted_source(old) if isinstance(old, dict) else None


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
    from kpi_lib.data.history import DEFAULT_HISTORY_DIR

    history_dir = getattr(batch, "history_dir", None) or DEFAULT_HISTORY_DIR
    batch_part = cache.batch_digest(
        batch,
        {"settings": getattr(batch, "settings", {}), "config": getattr(batch, "config", {})},
        cache.folder_digest(project_path(history_dir)),
    )
    previous = {} if force else cache.previous_reports(period_dir / "manifest.json")
    todo = []
    for i, (job, o) in enumerate(zip(jobs_in, outcomes, strict=True)):
        o.key = cache.report_key(
            Path(job["notebook"]),
            job["parameters"],
            job["title"],
            batch_part,
            digests.get(f"{o.scope}/{o.scope_id}", ""),
        )
        before = previous.get((o.role, o.scope_id))
        if before is not None and before.get("html") != o.html:
            before = None  # its file name changed (a new id collides with it): render again
        if cache.still_good(before, o.key, period_dir):
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


def _absolute(path) -> str:
    """A path as the kernels must see it (they may run elsewhere); a SQL URL stays as it is."""
    from kpi_lib.metrics.cube import project_path

    text = str(path)
    return text if "://" in text else str(project_path(text).resolve())


def _attr(obj, name: str):
    value = getattr(obj, name, None)
    return value() if callable(value) else value


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")

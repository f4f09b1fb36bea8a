"""What a batch render did, and its summaries: ``manifest.json``, ``index.html``, ``kpis.csv``.

One ``ReportOutcome`` per report and the ``BatchResult`` of the batch; the manifest records them
with the parameters, timings, data fingerprint and tool versions, and the index links every
report with its status.

Example
-------
>>> print(result.summary())                                    # doctest: +SKIP
2026-10: 40 reports, 40 ok, 0 failed in 16.7 s -> reports/2026-10/index.html
"""

from __future__ import annotations

import html
import platform
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from kpi_lib.errors import KpiKitError
from kpi_lib.metrics.cube import CUBE_COLUMNS, RANGE_COLUMNS
from kpi_lib.metrics.drivers import DRIVER_COLUMNS
from kpi_lib.metrics.forecast import FORECAST_COLUMNS
from kpi_lib.metrics.risks import RISK_COLUMNS
from kpi_lib.paths import write_atomic
from kpi_lib.publish.plan import Matrix

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
    >>> result = render_batch(Period.parse("2026-10"))  # doctest: +SKIP
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


def write_kpis_csv(cube, label: str, path: Path) -> None:
    """The cube rows of the period, in the contract's columns and the normal ranges and
    significance (``RANGE_COLUMNS``). One row per scope x KPI."""
    columns = CUBE_COLUMNS + RANGE_COLUMNS
    missing = [c for c in columns if c not in cube.columns]
    if missing:
        raise KpiKitError(f"the batch's cube lacks columns {missing}")
    rows = cube.loc[cube["period"].astype(str) == label, columns]
    write_atomic(path, rows.to_csv(index=False))


def write_drivers_csv(drivers, path: Path) -> None:
    """The batch's drivers (``kpi_lib.metrics.drivers``): one row per scope x KPI x comparison
    x driver."""
    if drivers is None:
        raise KpiKitError("the batch carries no drivers (saved by an older version: render again)")
    write_atomic(path, drivers[DRIVER_COLUMNS].to_csv(index=False))


def write_forecast_csv(forecast, path: Path) -> None:
    """The batch's backtest (``kpi_lib.metrics.forecast``): one row per company/team x method
    x month, ``error = projected - actual``."""
    if forecast is None:
        raise KpiKitError("the batch carries no forecast (saved by an older version: render again)")
    write_atomic(path, forecast[FORECAST_COLUMNS].to_csv(index=False))


def write_risks_csv(risks, path: Path) -> None:
    """The batch's deals at risk (``kpi_lib.metrics.risks``): one row per open deal at risk,
    ``reasons`` its reason codes joined by ``;``, dates as ``YYYY-MM-DD``."""
    if risks is None:
        raise KpiKitError(
            "the batch carries no deals at risk (saved by an older version: render again)"
        )
    rows = risks[RISK_COLUMNS].copy()
    rows["expected_close_at"] = rows["expected_close_at"].dt.strftime("%Y-%m-%d")
    write_atomic(path, rows.to_csv(index=False))


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


def manifest_of(
    result: BatchResult,
    parameters: dict,
    source_stats: dict | None = None,
    previous_source: dict | None = None,
) -> dict:
    """The batch's ``manifest.json``: parameters, timings, status, versions, every report.

    ``source_stats`` (``guards.source_stats``: rows per canonical table, the newest opportunity
    and activity) is recorded as ``source``, and ``previous_source`` (the same figures of the
    render this one replaces, with its ``finished_at``), so the send guards can tell a source
    that went stale, lost a table or shrank against the last batch.
    """
    manifest = {
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
    if source_stats is not None:
        manifest["source"] = source_stats
    if previous_source is not None:
        manifest["previous_source"] = previous_source
    return manifest


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


def index_html(result: BatchResult, matrix: Matrix) -> str:
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
        '<a href="kpis.csv">kpis.csv</a> &middot; <a href="drivers.csv">drivers.csv</a> '
        '&middot; <a href="forecast.csv">forecast.csv</a> &middot; <a href="risks.csv">risks.csv</a> '
        '&middot; <a href="manifest.json">manifest.json</a></p>',
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

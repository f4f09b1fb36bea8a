"""A batch: the cube computed once for a period's reports, and what each report reads of it.

``prepare_batch`` computes the cube for the trailing periods ending at P (enough for sparklines,
P-1 and P-1y) and saves it beside the reports; every notebook of the batch then calls
``report_context`` with ``batch_dir`` and reads its slice instead of recomputing. Without
``batch_dir`` (an analyst in JupyterLab) ``report_context`` computes the cube itself.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from dataclasses import dataclass, field
from datetime import datetime
from functools import cached_property
from importlib import metadata
from pathlib import Path

import pandas as pd

from kpi_lib.data.load import load_source
from kpi_lib.data.org import org_files
from kpi_lib.data.source import Source, SourceSpec
from kpi_lib.errors import UnknownScopeError
from kpi_lib.metrics.cube import compute_cube, load_settings
from kpi_lib.paths import PROJECT_ROOT, project_path, resolve_source
from kpi_lib.periods import Period, parse_as_of
from kpi_lib.redact import hide_source, redact

OPTIONAL_TABLES = ("open_deals", "drivers", "forecast", "projections", "risks")
"""The frames a batch saves beside its cube when it has them (a batch saved by an older version
may lack some): one ``<name>.parquet`` each."""
HISTORY = {"month": 13, "quarter": 8, "year": 4}
"""How many periods ending at P a batch's cube covers, by grain."""


@dataclass(frozen=True)
class Scope:
    """One report of a batch: ``role`` (executive, manager, rep), ``scope``, id and display name."""

    role: str
    scope: str
    scope_id: str
    name: str
    team_id: str | None = None


@dataclass
class Batch:
    """The cube and the reference data shared by every report of one period.

    Example
    -------
    >>> batch = prepare_batch("data/demo.duckdb", Period.parse("2026-10"))  # doctest: +SKIP
    >>> [s.scope_id for s in batch.scopes()][:3]                     # doctest: +SKIP
    ['all', 'apac-ent', 'apac-mm']
    """

    period: Period
    cube: pd.DataFrame
    teams: pd.DataFrame
    reps: pd.DataFrame
    unavailable: dict[str, str]
    findings: list[str]
    fingerprint: str
    source: str
    as_of: str
    targets: str | None
    """The targets file the cube used (None: no targets)."""
    code_version: str
    generated_at: str = field(default_factory=lambda: datetime.now().isoformat(timespec="seconds"))
    history_dir: str | None = None
    settings: dict = field(default_factory=lambda: load_settings(None))
    """The KPI settings the cube used (``cube.org_settings``): gross margin, stage probabilities."""
    config: dict = field(default_factory=dict)
    """Which configuration applied (``cube.attrs["config"]``): files and where they came from."""
    recipients: str | None = None
    """The org's recipients file (``kpi_lib.data.org``), for ``send`` without ``--recipients``."""
    currency: str | None = None
    """The currency of the amounts (``deals.reporting_currency``); None: none named (USD)."""
    data_start: str | None = None
    """The first period with any data when the data starts inside the cube's reach (a young
    org, an export that begins mid-year); reports show nothing before it (``has_data``)."""
    spec: SourceSpec | None = field(default=None, repr=False)
    """How the source is read, when options say so (``save`` writes it as ``source.yaml``)."""
    open_deals: pd.DataFrame | None = None
    """Every deal open at the period's snapshot (``deals.open_deals_table``): the rows behind
    the open-deals and pipeline-by-stage sections, so no report loads the source."""
    drivers: pd.DataFrame | None = None
    """What moved P's changes on P-1 and P-1y (``drivers.compute_drivers``): one row per
    scope x KPI x comparison x driver, saved as ``drivers.csv`` beside the reports."""
    forecast: pd.DataFrame | None = None
    """Each projection replayed over the last complete months against their revenue
    (``forecast.compute_forecast``): one row per company/team x method x month, saved as
    ``forecast.csv`` beside the reports."""
    projections: pd.DataFrame | None = None
    """Each projection of the month ahead: one row per company/team x method."""
    forecast_notes: dict = field(default_factory=dict)
    """``{"notes": {method: what it rests on}, "unavailable": {method: why}}``."""
    risks: pd.DataFrame | None = None
    """Open deals at risk at the snapshot, with every reason (``risks.deals_at_risk``): one row
    per deal, saved as ``risks.csv``; ``risk_unavailable`` maps a rule not judged to why."""
    risk_unavailable: dict = field(default_factory=dict)

    def has_data(self, period: str) -> bool:
        """Whether the org has data in ``period`` (a label of the batch's grain): False for a
        period that ends before the data starts, whose zeros mean "no data", not "nothing".

        Example: with ``data_start='2025-08'``, ``has_data('2025-07')`` is False.
        """
        if self.data_start is None:
            return True
        return Period.parse(period).end > Period.parse(self.data_start).start

    def scopes(self) -> list[Scope]:
        """The company, every team, and every rep active in P (one report each)."""
        out = [Scope("executive", "company", "all", "Company")]
        out += [
            Scope("manager", "team", t.team_id, t.team_name, t.team_id)
            for t in self.teams.itertuples(index=False)
        ]
        active = self.reps[self.reps["is_active"]]
        out += [
            Scope("rep", "rep", r.rep_id, r.rep_name, r.team_id)
            for r in active.itertuples(index=False)
        ]
        return out

    def scope(self, scope_id: str, kind: str | None = None) -> Scope:
        """The scope of ``scope_id`` (``all``, a team_id or a rep_id), or ``UnknownScopeError``.

        ``kind`` (``company``, ``team``, ``rep``) says which one is meant when an id names
        both a team and a rep; without it the company comes first, then teams, then reps.
        """
        scope_id = str(scope_id)
        kinds = [kind] if kind else ["company", "team", "rep"]
        for k in kinds:
            if k == "company" and scope_id == "all":
                return Scope("executive", "company", "all", "Company")
            if k == "team":
                team = self.teams[self.teams["team_id"].astype(str) == scope_id]
                if len(team):
                    return Scope("manager", "team", scope_id, team.iloc[0]["team_name"], scope_id)
            if k == "rep":
                rep = self.reps[self.reps["rep_id"].astype(str) == scope_id]
                if len(rep):
                    r = rep.iloc[0]
                    return Scope("rep", "rep", scope_id, r["rep_name"], r["team_id"])
        what = {"company": "'all'", "team": "a team_id", "rep": "a rep_id"}
        wanted = what[kind] if kind else "'all', a team_id or a rep_id"
        if kind:
            try:
                other = self.scope(scope_id)
            except UnknownScopeError:
                pass
            else:
                raise UnknownScopeError(
                    f"scope_id '{scope_id}' is not {wanted}: it is a {other.scope} "
                    f"(use the {other.role} report)"
                )
        examples = ", ".join([*self.teams["team_id"][:3], *self.reps["rep_id"][:3]])
        raise UnknownScopeError(
            f"scope_id '{scope_id}' is not {wanted} of {self.source} (for example: {examples})"
        )

    def save(self, folder: str | Path) -> Path:
        """Write ``cube``, ``teams``, ``reps``, ``open_deals`` (``.parquet``), ``batch.json`` and,
        for a source read with options, ``source.yaml`` (then ``source`` names it)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        if self.spec is not None:  # the reports and later commands read the source through it
            self.source = str(_write_source_file(self.spec, folder / "source.yaml"))
        tables = [("cube", self.cube), ("teams", self.teams), ("reps", self.reps)]
        for name in OPTIONAL_TABLES:
            if getattr(self, name) is not None:
                tables.append((name, getattr(self, name)))
        for name, df in tables:
            tmp = folder / f".{name}.parquet.tmp"
            df.to_parquet(tmp, index=False)
            os.replace(tmp, folder / f"{name}.parquet")
        meta = {
            "period": self.period.label,
            "unavailable": self.unavailable,
            "findings": self.findings,
            "fingerprint": self.fingerprint,
            "source": self.source,
            "as_of": self.as_of,
            "targets": self.targets,
            "code_version": self.code_version,
            "generated_at": self.generated_at,
            "history_dir": self.history_dir,
            "settings": self.settings,
            "config": self.config,
            "recipients": self.recipients,
            "data_start": self.data_start,
            "currency": self.currency,
            "forecast_notes": self.forecast_notes,
            "risk_unavailable": self.risk_unavailable,
        }
        tmp = folder / ".batch.json.tmp"
        tmp.write_text(json.dumps(meta, indent=2))
        os.replace(tmp, folder / "batch.json")
        return folder

    @classmethod
    def load(cls, folder: str | Path) -> Batch:
        """Read a batch saved by ``save``."""
        folder = Path(folder)
        meta = json.loads((folder / "batch.json").read_text())
        cube = pd.read_parquet(folder / "cube.parquet")
        cube.attrs["unavailable"] = meta["unavailable"]
        return cls(
            period=Period.parse(meta["period"]),
            cube=cube,
            teams=pd.read_parquet(folder / "teams.parquet"),
            reps=pd.read_parquet(folder / "reps.parquet"),
            **{
                k: meta[k]
                for k in (
                    "unavailable",
                    "findings",
                    "fingerprint",
                    "source",
                    "as_of",
                    "targets",
                    "code_version",
                    "generated_at",
                )
            },
            history_dir=meta.get("history_dir"),
            settings=meta.get("settings") or load_settings(None),
            config=meta.get("config") or {},
            recipients=meta.get("recipients"),
            data_start=meta.get("data_start"),
            currency=meta.get("currency"),
            forecast_notes=meta.get("forecast_notes") or {},
            risk_unavailable=meta.get("risk_unavailable") or {},
            **{
                name: pd.read_parquet(folder / f"{name}.parquet")
                if (folder / f"{name}.parquet").exists()
                else None
                for name in OPTIONAL_TABLES
            },
        )


def _write_source_file(spec: SourceSpec, path: Path) -> Path:
    """``spec`` as a source file; a URL's password stays out of it (``redact.hide_source``)."""
    if spec.is_url:
        spec = dataclasses.replace(spec, location=hide_source(spec.location))
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(spec.to_yaml(), encoding="utf-8")
    os.replace(tmp, path)
    return path


def _path_or_none(path) -> str | None:
    return None if path is None else str(path)


def code_version() -> str:
    """``git describe`` of the project when it is a checkout, else the package version."""
    try:
        version = metadata.version("kpi-kit")
    except metadata.PackageNotFoundError:  # run from a checkout that was never installed
        version = "0+unknown"
    try:
        described = subprocess.run(
            ["git", "describe", "--always", "--dirty", "--tags"],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        return f"{version}+{described}" if described else version
    except (OSError, subprocess.SubprocessError):
        return version


def prepare_batch(
    source: str | Path | Source,
    period: Period,
    out_dir: str | Path | None = None,
    as_of=None,
    targets: str | Path | dict | None = None,
    history_dir: str | Path | None = None,
    settings: str | Path | dict | None = None,
) -> Batch:
    """Compute the cube once for the reports of ``period`` (and its trailing history).

    Parameters
    ----------
    period
        The report period; the cube covers it and the ``HISTORY`` periods before it
        (``'2026-10'`` -> 2025-10 to 2026-10).
    out_dir
        Where to save the batch for the notebooks (``reports/2026-10/_data``); not saved if None.
    history_dir
        A snapshot folder (``history/``): today's snapshot of the opportunities is stored there
        and, for a source without stage history, stage history is derived from the snapshots.
    targets, settings
        As for ``compute_cube``; default: the org's own (``kpi_lib.data.org``).
    """
    from kpi_lib.data.history import load_with_history
    from kpi_lib.metrics.deals import open_deals_table, reporting_currency, snapshot_at
    from kpi_lib.metrics.drivers import compute_drivers
    from kpi_lib.metrics.forecast import compute_forecast
    from kpi_lib.metrics.risks import deals_at_risk

    p = period
    history = str(project_path(history_dir)) if history_dir else None
    src = load_with_history(resolve_source(source), history)
    periods = [p.shift(-i) for i in reversed(range(HISTORY[p.grain]))]
    cube = compute_cube(src, periods, as_of=as_of, targets=targets, settings=settings)
    reps = src.frame("reps")[["rep_id", "rep_name", "team_id", "start_at", "end_at"]].copy()
    reps["is_active"] = (reps["start_at"].isna() | (reps["start_at"] < p.end)) & (
        reps["end_at"].isna() | (reps["end_at"] >= p.start)
    )
    as_of_day = (parse_as_of(as_of) - pd.Timedelta(days=1)).date().isoformat()
    settings_used = cube.attrs["settings"]
    open_table = open_deals_table(src, p, as_of_day)
    outlook = compute_forecast(
        src, p, as_of_day, settings_used["stage_probabilities"], history_dir=history
    )
    risks = deals_at_risk(
        src,
        open_table,
        snapshot_at(p, as_of_day),
        p.label,
        settings_used["risks"],
        history_dir=history,
    )
    batch = Batch(
        period=p,
        cube=cube,
        teams=src.frame("teams")[["team_id", "team_name", "region"]].copy(),
        reps=reps[["rep_id", "rep_name", "team_id", "is_active"]].reset_index(drop=True),
        unavailable=cube.attrs.get("unavailable", {}),
        findings=cube.attrs.get("findings", []),
        fingerprint=src.fingerprint,
        source=redact(str(source)),
        spec=source if isinstance(source, SourceSpec) else None,
        as_of=as_of_day,
        targets=cube.attrs["config"]["targets"],
        code_version=code_version(),
        history_dir=history,
        settings=cube.attrs["settings"],
        config=cube.attrs["config"],
        recipients=_path_or_none(org_files(src).recipients),
        data_start=cube.attrs["data_start"],
        currency=reporting_currency(src),
        open_deals=open_table,
        drivers=compute_drivers(cube, p, src.frame("reps")),
        forecast=outlook.backtest,
        projections=outlook.ahead,
        forecast_notes={"notes": outlook.notes, "unavailable": outlook.unavailable},
        risks=risks,
        risk_unavailable=risks.attrs["unavailable"],
    )
    if out_dir is not None:
        batch.save(out_dir)
    return batch


@dataclass
class ReportContext:
    """What one report needs: its scope, the batch's cube, and the source for detail queries."""

    batch: Batch
    scope_info: Scope
    source_path: str

    @property
    def period(self) -> Period:
        return self.batch.period

    @property
    def scope(self) -> str:
        return self.scope_info.scope

    @property
    def scope_id(self) -> str:
        return self.scope_info.scope_id

    @property
    def scope_name(self) -> str:
        return self.scope_info.name

    @property
    def team_id(self) -> str | None:
        return self.scope_info.team_id

    @property
    def cube(self) -> pd.DataFrame:
        return self.batch.cube

    @cached_property
    def source(self) -> Source:
        """The loaded source, for what a batch does not carry (an analyst's own queries)."""
        return load_source(resolve_source(self.source_path))

    @cached_property
    def open_deals(self) -> pd.DataFrame:
        """Every deal open at the period's snapshot (``deals.open_deals_table``): the batch's,
        or built from the source when the batch was saved without it."""
        if self.batch.open_deals is not None:
            return self.batch.open_deals
        from kpi_lib.metrics.deals import open_deals_table

        return open_deals_table(self.source, self.period, self.as_of)

    @property
    def unavailable(self) -> dict[str, str]:
        return self.batch.unavailable

    @property
    def findings(self) -> list[str]:
        return self.batch.findings

    @property
    def fingerprint(self) -> str:
        return self.batch.fingerprint

    @property
    def code_version(self) -> str:
        return self.batch.code_version

    @property
    def as_of(self) -> str:
        return self.batch.as_of

    @property
    def generated_at(self) -> str:
        return self.batch.generated_at


def report_context(
    period: Period,
    scope_id: str = "all",
    source: str = "data/demo.duckdb",
    batch_dir: str = "",
    targets: str | None = None,
    as_of=None,
    scope: str | None = None,
) -> ReportContext:
    """Validate a report's parameters and give it its data.

    With ``batch_dir`` the batch's saved cube is read (nothing recomputed); without it the cube
    is computed here. ``scope`` (``company``, ``team``, ``rep``) says which kind of scope
    ``scope_id`` names when it could be two. Raises ``UnknownScopeError`` for a scope_id that
    is not in the data, before any heavy work.

    Example
    -------
    >>> ctx = report_context(Period.parse("2026-10"), "na-ent")      # doctest: +SKIP
    >>> ctx.scope, ctx.scope_name                         # doctest: +SKIP
    ('team', 'North America Enterprise')
    """
    p = period
    if batch_dir:
        batch = Batch.load(project_path(batch_dir))
        if batch.period != p:
            raise UnknownScopeError(
                f"batch_dir '{batch_dir}' holds period {batch.period.label}, not {p.label}"
            )
        source = batch.source
    else:
        batch = prepare_batch(source, p, as_of=as_of, targets=targets)
    return ReportContext(batch=batch, scope_info=batch.scope(scope_id, scope), source_path=source)

"""``python -m kpi_lib init``: a starting configuration for the org in front of the kit.

Configuration belongs to its org (``kpi_lib.data.org``); an org the kit has not seen has none. This
writes one, from its own data, into a folder of its own (default ``params/<org>/``):

- ``source.yaml``: where the data is, how to read it, and the three files below;
- ``targets.yaml``: every targeted KPI the data supports, for the company, every team and every
  active rep, with the values left for you and the last 12 complete months' actuals as comments;
- ``kpis.yaml``: the gross margin and the open stages in pipeline order, each with the CRM's
  probability where the export carries one, else left empty and marked to review;
- ``recipients.yaml``: every active rep with an email address receives their own report;
  executives and managers are templates to fill in.

Then ``make reports SOURCE=params/<org>/source.yaml`` renders the org with its own configuration.

Example
-------
>>> result = write_starter_config(source_spec("exports/", preset="hubspot"))   # doctest: +SKIP
>>> print(result.summary())                                                      # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import pandas as pd

from kpi_lib import clock
from kpi_lib.data.load import load_source
from kpi_lib.data.source import Source, SourceSpec
from kpi_lib.errors import ParamsError
from kpi_lib.metrics.cube import compute_cube, stage_order
from kpi_lib.metrics.registry import get_kpi
from kpi_lib.metrics.targets import load_targets
from kpi_lib.paths import PROJECT_ROOT
from kpi_lib.periods import Period, last_complete_month
from kpi_lib.publish.file_names import slug
from kpi_lib.publish.recipients import DEFAULT_SENDER, email_problem, load_recipients
from kpi_lib.report.theme import format_value, is_missing

TARGET_KPIS = (
    "revenue",
    "win_rate",
    "lead_conversion_rate",
    "qualified_leads",
    "activities",
    "new_customers",
    "cac",
    "retention_rate",
)
"""The KPIs a starting targets file lists (those the org's data supports)."""
SCOPE_KPIS = {"revenue"}
"""KPIs listed per rep as well as per team (the others: company and teams)."""
MONTHS = 12


@dataclass
class SetupResult:
    """What ``write_starter_config`` wrote: the folder, its files and a few counts."""

    folder: Path
    files: list[Path]
    teams: int
    reps: int
    stages_from_crm: int
    stages_to_review: list[str]
    recipients: int
    kpis: list[str]

    def summary(self) -> str:
        source = self.folder.resolve() / "source.yaml"
        inside = source.is_relative_to(Path.cwd().resolve())
        shown = source.relative_to(Path.cwd().resolve()) if inside else source
        return "\n".join(
            [
                f"wrote {self.folder}/: " + ", ".join(p.name for p in self.files),
                f"  targets.yaml: {', '.join(self.kpis) or 'no KPI with data'} for the company, "
                f"{self.teams} teams and {self.reps} reps; values left for you, recent "
                "actuals beside them",
                f"  kpis.yaml: {self.stages_from_crm} open stages with the CRM's probability, "
                f"{len(self.stages_to_review)} to review"
                + (f" ({', '.join(self.stages_to_review[:5])})" if self.stages_to_review else ""),
                f"  recipients.yaml: {self.recipients} rep{'' if self.recipients == 1 else 's'} "
                "with an email get their own report; add executives and managers",
                f"render with: make reports SOURCE={shown}",
            ]
        )


def write_starter_config(
    source: SourceSpec | str | Path,
    out: str | Path | None = None,
    *,
    org: str | None = None,
    today: date | None = None,
    force: bool = False,
) -> SetupResult:
    """Write the starting configuration of the org in ``source`` (see the module docstring).

    Parameters
    ----------
    source
        The org's data: a path, a URL, a source file or a ``SourceSpec`` (preset, column map).
    out
        The folder to write (default ``params/<org>/`` under the project root).
    org
        The org's name, for the folder and the comments (default: from the source's name).
    today
        The day the actuals are counted to: the last ``MONTHS`` complete months before it.
    force
        Replace the files of an existing folder (default: refuse, so nothing is lost).

    Raises
    ------
    ParamsError
        The folder exists (without ``force``) or is the demo's ``params/`` itself.
    """
    spec = source if isinstance(source, SourceSpec) else _spec_of(source)
    name = org or _org_name(spec)
    folder = Path(out) if out else PROJECT_ROOT / "params" / slug(name).lower()
    if folder.resolve() == (PROJECT_ROOT / "params").resolve():
        raise ParamsError(f"init: {folder} holds the demo org's configuration; choose --out")
    written = [folder / n for n in ("source.yaml", "targets.yaml", "kpis.yaml", "recipients.yaml")]
    existing = [p for p in written if p.exists()]
    if existing and not force:
        raise ParamsError(
            f"init: {folder} already holds {', '.join(p.name for p in existing)}; "
            "pass --force to replace them (or --out for another folder)"
        )
    src = load_source(spec)
    day = today or clock.today()
    last = last_complete_month(day)
    periods = f"{last.shift(-(MONTHS - 1)).label}:{last.label}"
    cube = compute_cube(src, periods, as_of=day.isoformat(), targets={}, settings={})
    first = Period.parse(cube.attrs["data_start"] or last.shift(-(MONTHS - 1)).label)
    cube = cube[cube["period"].astype(str) >= first.label]  # no month before the data counts
    teams = src.frame("teams")
    reps = _active_reps(src, last)
    header = (
        f"# {name}: written by `python -m kpi_lib init` on {day.isoformat()} from "
        f"{spec.origin or spec.location}.\n"
    )
    kpis = [k for k in TARGET_KPIS if k not in cube.attrs["unavailable"]]
    texts = {
        "targets.yaml": header + _targets_text(cube, kpis, teams, reps, first, last),
        "kpis.yaml": header + _kpis_text(src, day),
        "recipients.yaml": header + _recipients_text(reps, teams),
        "source.yaml": header + _source_text(spec, folder),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for file_name, text in texts.items():
        path = folder / file_name
        scratch = path.with_name(f".{file_name}.tmp-{os.getpid()}")
        scratch.write_text(text, encoding="utf-8")
        if file_name == "source.yaml" and spec.is_url:
            scratch.chmod(0o600)  # a URL may carry the database password
        os.replace(scratch, path)
    _check(folder)
    stages = _open_stages(src, day)
    from_crm = src.settings.get("stage_probabilities", {})
    return SetupResult(
        folder=folder,
        files=written,
        teams=len(teams),
        reps=len(reps),
        stages_from_crm=sum(s in from_crm for s in stages["stage"]),
        stages_to_review=[s for s in stages["stage"] if s not in from_crm],
        recipients=int(reps["email_ok"].sum()),
        kpis=kpis,
    )


def _spec_of(source) -> SourceSpec:
    from kpi_lib.data.source import source_spec

    spec = source_spec(source)
    if isinstance(spec, SourceSpec):
        return spec
    text = str(spec)
    return SourceSpec(text if "://" in text else str(Path(text).resolve()))


def _org_name(spec: SourceSpec) -> str:
    """The org's name from its source: the folder or file name, or a URL's database."""
    if spec.origin:
        path = Path(spec.origin)
        return path.parent.name if path.stem == "source" else path.stem
    if spec.is_url:
        return spec.location.rstrip("/").rsplit("/", 1)[-1].split("?")[0] or "warehouse"
    path = Path(spec.location)
    return path.stem if path.is_file() else path.name


def _active_reps(src: Source, last: Period) -> pd.DataFrame:
    """One row per quota-carrying rep active in the last complete month: ids, name, team,
    email, and whether the email is an address a digest can go to (``email_ok``)."""
    reps = src.frame("reps").copy()
    active = (reps["start_at"].isna() | (reps["start_at"] < last.end)) & (
        reps["end_at"].isna() | (reps["end_at"] >= last.start)
    )
    reps = reps[active & reps["is_quota_carrying"]].reset_index(drop=True)
    emails = reps["email"].astype("string").str.strip() if "email" in reps else None
    reps["email"] = emails if emails is not None else pd.Series(pd.NA, index=reps.index)
    reps["email_ok"] = [
        not pd.isna(e) and email_problem(str(e)) is None for e in reps["email"].tolist()
    ]
    return reps


# --------------------------------------------------------------------------------------------
# targets.yaml
# --------------------------------------------------------------------------------------------


def _q(text) -> str:
    """A YAML double-quoted scalar (JSON's escapes are YAML's)."""
    return json.dumps(str(text), ensure_ascii=False)


def _actuals(cube: pd.DataFrame, kpi: str, scope: str, scope_id: str) -> str:
    """``mean $41.2K a month (low $12K in 2026-01, high $80K in 2026-06)`` for additive KPIs;
    the pooled rate over the months (``32.1% over 12 months``) for ratios; ``no data``."""
    rows = cube[(cube["kpi"] == kpi) & (cube["scope"] == scope) & (cube["scope_id"] == scope_id)]
    unit = get_kpi(kpi).unit
    if get_kpi(kpi).additive:
        values = rows.set_index("period")["value"].astype("float64").dropna()
        if values.empty:
            return "no data"
        low, high = values.idxmin(), values.idxmax()
        mean = f"{values.mean():,.1f}" if unit == "count" else format_value(values.mean(), unit)
        return (
            f"mean {mean} a month "
            f"(low {format_value(values[low], unit)} in {low}, "
            f"high {format_value(values[high], unit)} in {high})"
        )
    numerator = rows["numerator"].astype("float64").sum(min_count=1)
    denominator = rows["denominator"].astype("float64").sum(min_count=1)
    if is_missing(numerator) or is_missing(denominator) or not denominator:
        return "no data"
    return f"{format_value(numerator / denominator, unit)} over these months"


def _targets_text(
    cube: pd.DataFrame,
    kpis: list[str],
    teams: pd.DataFrame,
    reps: pd.DataFrame,
    first: Period,
    last: Period,
) -> str:
    lines = [
        "# Targets per KPI: a default per scope (company, team, rep), then overrides, the most",
        "# specific first: period + scope_id, period + scope, scope_id, scope default. Counts and",
        "# sums are monthly (a quarter adds up its months, a year its quarters); rates as given.",
        "# Values are left for you: a KPI or scope without one shows 'no target set'. Beside",
        f"# each, the actuals of the complete months {first.label} to {last.label}"
        + (f" (the last {MONTHS})." if first == last.shift(-(MONTHS - 1)) else " (the data's)."),
        '# Uncomment an override line and give it a value, e.g. {scope_id: "East", value: 50000}.',
        "",
    ]
    for kpi in kpis:
        entry = get_kpi(kpi)
        lines.append(f"{kpi}:  # {entry.label}")
        if "company" in entry.scopes:
            lines.append(f"  company:    # {_actuals(cube, kpi, 'company', 'all')}")
        if "team" in entry.scopes:
            lines.append("  team:       # every team without an override below")
        if "rep" in entry.scopes and kpi in SCOPE_KPIS:
            lines.append("  rep:        # every rep without an override below")
        overrides = []
        if "team" in entry.scopes:
            for team in teams.itertuples(index=False):
                overrides.append(
                    f"    # - {{scope: team, scope_id: {_q(team.team_id)}, value: }}"
                    f"  # {team.team_name}: {_actuals(cube, kpi, 'team', str(team.team_id))}"
                )
        if "rep" in entry.scopes and kpi in SCOPE_KPIS:
            for rep in reps.itertuples(index=False):
                overrides.append(
                    f"    # - {{scope: rep, scope_id: {_q(rep.rep_id)}, value: }}"
                    f"  # {rep.rep_name}: {_actuals(cube, kpi, 'rep', str(rep.rep_id))}"
                )
        if overrides:
            lines.append("  overrides:")
            lines += overrides
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


# --------------------------------------------------------------------------------------------
# kpis.yaml
# --------------------------------------------------------------------------------------------


def _open_stages(src: Source, day: date) -> pd.DataFrame:
    """One row per stage that deals are open in today, in pipeline order: ``stage, deals,
    amount``; stages the CRM gives an open probability (strictly between 0 and 1) too."""
    from kpi_lib.metrics.deals import open_deals_table

    month = Period(pd.Timestamp(day.year, day.month, 1), "month")
    deals = open_deals_table(src, month, day.isoformat())
    by_stage = deals.groupby("stage").agg(
        deals=("opportunity_id", "size"), amount=("amount", "sum")
    )
    from_crm = src.settings.get("stage_probabilities", {})
    names = set(by_stage.index) | {s for s, p in from_crm.items() if 0 < p < 1}
    if src.has("stage_history"):
        ordered = stage_order(src, sorted(names))
    else:  # no history to order by: the CRM's probabilities, then names
        ordered = sorted(names, key=lambda s: (from_crm.get(s, 2.0), s))
    out = by_stage.reindex(ordered).fillna({"deals": 0, "amount": 0.0})
    return out.rename_axis("stage").reset_index()


def _kpis_text(src: Source, day: date) -> str:
    from_crm = src.settings.get("stage_probabilities", {})
    lines = [
        "# KPI parameters (docs/kpis.md).",
        "gross_margin: 1.0   # CLV is revenue-based at 1.0; set your gross margin, e.g. 0.78",
        "stage_probabilities:   # weighted pipeline: the chance a deal in each open stage closes",
        "                       # won, in pipeline order; a stage left empty is left out of it",
    ]
    stages = _open_stages(src, day)
    if stages.empty:
        lines.append("  {}   # no open deals today")
    for s in stages.itertuples(index=False):
        held = (
            f"{int(s.deals)} open deal{'' if s.deals == 1 else 's'}, "
            f"{format_value(s.amount, 'currency')} today"
        )
        if s.stage in from_crm:
            lines.append(f"  {_q(s.stage)}: {from_crm[s.stage]:g}   # from the CRM export; {held}")
        else:
            lines.append(f"  {_q(s.stage)}:   # to review: no probability in the export; {held}")
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------
# recipients.yaml and source.yaml
# --------------------------------------------------------------------------------------------


def _recipients_text(reps: pd.DataFrame, teams: pd.DataFrame) -> str:
    lines = [
        "# Who receives the digests (python -m kpi_lib send; kpi_lib/recipients.py): every active",
        "# rep with an email address gets their own report. Add the executives (the company",
        "# report) and each team's manager (the team and its reps) from the templates below.",
        f"sender: {_q(DEFAULT_SENDER)}   # your sending address",
        "recipients:",
    ]
    mailed = reps[reps["email_ok"]]
    for rep in mailed.itertuples(index=False):
        lines.append(
            f"  - {{email: {_q(rep.email)}, name: {_q(rep.rep_name)}, role: rep, "
            f"rep_id: {_q(rep.rep_id)}}}"
        )
    if mailed.empty:
        lines[-1] = "recipients: []   # no rep has an email address in the data"
    lines.append('  # - {email: "", name: "", role: executive}')
    for team in teams.itertuples(index=False):
        lines.append(
            f'  # - {{email: "", name: "", role: manager, team_id: {_q(team.team_id)}}}'
            f"   # {team.team_name}"
        )
    for rep in reps[~reps["email_ok"]].itertuples(index=False):
        why = "no email" if pd.isna(rep.email) else f"{_q(rep.email)} is not an address"
        lines.append(f"  # rep {_q(rep.rep_id)} ({rep.rep_name}): {why}")
    return "\n".join(lines) + "\n"


def _source_text(spec: SourceSpec, folder: Path) -> str:
    def near(path: str) -> str:
        """Relative to the folder when both are in the project (it moves as one), else as is."""
        target, home = Path(path).resolve(), folder.resolve()
        inside = [p.is_relative_to(PROJECT_ROOT) for p in (target, home)]
        return os.path.relpath(target, home) if all(inside) else str(target)

    lines = ["# Where the data is and which configuration belongs to it (docs/data-sources.md)."]
    if spec.is_url:
        lines.append(f"url: {_q(spec.location)}")
    else:
        lines.append(f"path: {_q(near(spec.location))}   # a relative path is from this file")
    if spec.preset:
        lines.append(f"preset: {spec.preset}")
    for key in ("options", "colmap", "fx"):
        value = getattr(spec, key)
        if value:
            lines.append(f"{key}: {_q(near(value))}")
    lines += ["targets: targets.yaml", "kpis: kpis.yaml", "recipients: recipients.yaml"]
    return "\n".join(lines) + "\n"


def _check(folder: Path) -> None:
    """The written files parse as the kit reads them (a bug here must not reach a render)."""
    from kpi_lib.metrics.cube import load_settings

    load_targets(folder / "targets.yaml")
    load_settings(folder / "kpis.yaml")
    load_recipients(folder / "recipients.yaml")
    text = (folder / "source.yaml").read_text(encoding="utf-8")
    if not re.search(r"^(path|url):", text, re.M):
        raise ParamsError(f"init: {folder / 'source.yaml'} names no data")

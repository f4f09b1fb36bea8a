"""What a report depends on, as a key: a rerun re-renders only the reports whose key changed.

A report's key (``report_key``) hashes everything that can change its page:

- the notebook's bytes, the report's parameters and title;
- the code: every file of the ``kpi_lib`` package (templates included) and the tool versions;
- the batch-wide inputs every report shows: the data-quality findings, the unavailable KPIs,
  the ``as_of`` date, the KPI settings, the pipeline snapshots in ``history/``;
- the scope's slice of the data (``scope_digests``): the cube rows the report reads and the
  CRM rows behind its detail tables. A rep's report reads its own rows, its team's and its
  team-mates' (the team median); a team's report its rows, its reps' and the company's; the
  company's report reads everything (the whole source's fingerprint). The detail tables (open
  deals, pipeline by stage) come from the opportunities a scope owns, their stage history and
  their accounts.

So a change to one team's deals re-renders that team's report, its reps' reports and the
executive report, and no other team's. The page still shows the data fingerprint it was
rendered from; the manifest records, per report, whether it was reused.

Example
-------
>>> digests = scope_digests(batch, src)           # doctest: +SKIP
>>> digests[("team", "na-ent")]                    # doctest: +SKIP
'3f0c9a...'
"""

from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np
import pandas as pd

from kpi_lib.metrics.ranges import steady

PACKAGE = Path(__file__).resolve().parent
KEY_VERSION = "1"
_CODE_SUFFIXES = {".py", ".j2", ".css", ".json", ".yaml", ".yml", ".tpl"}
_TOOLS = (
    "papermill",
    "nbconvert",
    "nbclient",
    "nbformat",
    "ipykernel",
    "pandas",
    "numpy",
    "matplotlib",
    "seaborn",
    "ibis-framework",
    "duckdb",
    "jinja2",
    "mistune",
)


def _sha(*parts) -> str:
    digest = hashlib.sha256()
    for part in parts:
        digest.update(part if isinstance(part, bytes) else str(part).encode())
        digest.update(b"\x1f")
    return digest.hexdigest()


def file_sha256(path: Path) -> str | None:
    """The SHA-256 of a file's bytes, or None when it cannot be read."""
    try:
        return hashlib.sha256(Path(path).read_bytes()).hexdigest()
    except OSError:
        return None


@lru_cache(maxsize=1)
def code_digest() -> str:
    """A hash of every source file of the kpi_lib package and of the tools' versions."""
    digest = hashlib.sha256()
    for path in sorted(PACKAGE.rglob("*")):
        if path.is_file() and path.suffix in _CODE_SUFFIXES and "__pycache__" not in path.parts:
            digest.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0")
            digest.update(path.read_bytes())
    for tool in _TOOLS:
        try:
            digest.update(f"{tool}={metadata.version(tool)}\0".encode())
        except metadata.PackageNotFoundError:
            pass
    return digest.hexdigest()


def folder_digest(folder: Path) -> str:
    """Names, sizes and modification times of the files under ``folder`` ('' when absent)."""
    folder = Path(folder)
    if not folder.is_dir():
        return ""
    stats = sorted(
        (p.relative_to(folder).as_posix(), p.stat().st_size, p.stat().st_mtime_ns)
        for p in folder.rglob("*")
        if p.is_file()
    )
    return _sha(json.dumps(stats))


def _frame_digest(df: pd.DataFrame) -> str:
    """Order-insensitive hash of a frame's rows and columns."""
    if df is None or df.empty:
        return _sha("empty", list(getattr(df, "columns", [])))
    rows = np.sort(pd.util.hash_pandas_object(df.reset_index(drop=True), index=False).to_numpy())
    return _sha(",".join(map(str, df.columns)), rows.tobytes())


def _cube_slices(cube: pd.DataFrame) -> dict[tuple[str, str], str]:
    """One digest per (scope, scope_id) of the cube: its rows, all periods, all KPIs."""
    cube = cube.reset_index(drop=True).copy()
    for column in cube.select_dtypes("float").columns:
        # the database sums floats in parallel, in no fixed order: the same data can give a
        # CLV that differs in its last bits from one run to the next, which must not re-render
        cube[column] = steady(cube[column].to_numpy(), digits=10)
    rows = pd.util.hash_pandas_object(cube, index=False).to_numpy()
    keys = cube["scope"].astype(str).to_numpy(), cube["scope_id"].astype(str).to_numpy()
    frame = pd.DataFrame({"scope": keys[0], "scope_id": keys[1], "h": rows})
    out = {}
    for (scope, scope_id), group in frame.groupby(["scope", "scope_id"], sort=True):
        out[(scope, scope_id)] = _sha(
            ",".join(map(str, cube.columns)),
            pd.Series(group["h"]).sort_values().to_numpy().tobytes(),
        )
    return out


def _detail_slices(src) -> dict[str, str]:
    """One digest per rep: the opportunities it owns, their stage history and accounts."""
    if src is None or not src.has("opportunities"):
        return {}
    opps = src.frame("opportunities")
    owner = opps["owner_rep_id"].astype(str)
    history = src.frame("stage_history") if src.has("stage_history") else None
    accounts = src.frame("accounts") if src.has("accounts") else None
    out = {}
    for rep, mine in opps.groupby(owner, sort=True):
        parts = [_frame_digest(mine)]
        if history is not None:
            parts.append(
                _frame_digest(history[history["opportunity_id"].isin(mine["opportunity_id"])])
            )
        if accounts is not None and "account_id" in mine:
            parts.append(_frame_digest(accounts[accounts["account_id"].isin(mine["account_id"])]))
        out[str(rep)] = _sha(*parts)
    return out


def scope_digests(batch, src) -> dict[str, str]:
    """``{"<scope>/<scope_id>": digest}`` of the data each report of the batch reads.

    One entry per scope of ``batch.scopes()``; see the module docstring for the slices.
    """
    cube = _cube_slices(batch.cube)
    details = _detail_slices(src)
    reps = batch.reps.astype({"rep_id": str, "team_id": str})
    teams = batch.teams.astype({"team_id": str})
    members = {t: sorted(g["rep_id"]) for t, g in reps.groupby("team_id")}

    def team_part(team: str) -> list[str]:
        ids = members.get(team, [])
        return [
            cube.get(("team", team), ""),
            _frame_digest(teams[teams["team_id"] == team]),
            _frame_digest(reps[reps["team_id"] == team]),
            *(cube.get(("rep", r), "") for r in ids),
        ]

    out = {
        "company/all": _sha(
            "company",
            getattr(src, "fingerprint", ""),
            _cube_digest_all(cube),
            _frame_digest(teams),
            _frame_digest(reps),
        )
    }
    for team in teams["team_id"]:
        ids = members.get(team, [])
        out[f"team/{team}"] = _sha(
            "team",
            cube.get(("company", "all"), ""),
            *team_part(team),
            *(details.get(r, "") for r in ids),
        )
    for rep in reps.itertuples(index=False):
        out[f"rep/{rep.rep_id}"] = _sha(
            "rep",
            cube.get(("rep", rep.rep_id), ""),
            *team_part(rep.team_id),
            details.get(rep.rep_id, ""),
        )
    return out


def _cube_digest_all(slices: dict) -> str:
    return _sha(*(f"{k}={v}" for k, v in sorted(slices.items())))


def batch_digest(batch, settings: dict, history: str) -> str:
    """What every report of the batch shows: findings, unavailable KPIs, as_of, settings."""
    return _sha(
        KEY_VERSION,
        code_digest(),
        json.dumps(batch.findings, default=str),
        json.dumps(batch.unavailable, sort_keys=True, default=str),
        batch.as_of,
        batch.period.label,
        json.dumps(settings, sort_keys=True, default=str),
        history,
    )


def report_key(
    notebook: Path, parameters: dict, title: str, batch_part: str, scope_part: str
) -> str:
    """The key of one report: equal keys, equal page (but for the time it was generated)."""
    return _sha(
        file_sha256(notebook),
        json.dumps(parameters, sort_keys=True, default=str),
        title,
        batch_part,
        scope_part,
    )[:32]


def inputs_key(
    fingerprint: str, source: str, period: str, as_of: str, targets: str | None, settings: dict
) -> str:
    """When this equals the saved batch's, the saved cube is the one this batch would compute."""
    return _sha(
        KEY_VERSION,
        code_digest(),
        fingerprint,
        source,
        period,
        as_of,
        file_sha256(Path(targets)) if targets else "",
        json.dumps(settings, sort_keys=True, default=str),
    )


def previous_reports(manifest: Path) -> dict[tuple[str, str], dict]:
    """The report entries of an earlier manifest, by (role, scope_id); {} when there is none."""
    try:
        data = json.loads(Path(manifest).read_text(encoding="utf-8"))
        return {(r["role"], r["scope_id"]): r for r in data.get("reports", [])}
    except (OSError, ValueError, KeyError, TypeError):
        return {}


def still_good(entry: dict | None, key: str, period_dir: Path) -> bool:
    """Whether an earlier render of this report can stand: same key, files present, intact."""
    if not entry or entry.get("status") != "ok" or entry.get("key") != key:
        return False
    page = period_dir / entry.get("html", "")
    if not page.is_file() or not (period_dir / entry.get("executed_notebook", "")).is_file():
        return False
    return entry.get("html_sha256") is not None and file_sha256(page) == entry["html_sha256"]

"""What both CRM presets share: their options, reading a folder of exports, and the column
helpers that turn raw export values into canonical ones.

A column is found by its API name or its report label, ignoring case, spaces and underscores
(``Exports.column``); flags, timestamps, owners given by name and won/lost outcomes are read
the same way for Salesforce and HubSpot.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kpi_lib.data.files import FALSE, TRUE, as_text, read_table_file
from kpi_lib.data.rules import Finding
from kpi_lib.errors import DataError, ParamsError, SourceError
from kpi_lib.paths import read_yaml

DEFAULTS: dict[str, dict] = {
    "salesforce": {
        # stage -> won | lost | open; used where IsWon / IsClosed are not in the export
        "stages": {"Closed Won": "won", "Closed Lost": "lost"},
        "probability_scale": 100,  # Opportunity.Probability is a percent
        "qualified": {
            "date_column": "Qualified_Date__c",  # a custom date field, used when exported
            "statuses": ["Qualified"],  # else: leads in these statuses ...
            "status_date_column": "LastModifiedDate",  # ... dated by this column
            "converted_count": True,  # converted leads count, dated ConvertedDate
        },
        "teams": {"column": None, "names": {}, "default": "Unassigned"},  # None: first of
        # UserRoleId, Role, Department, Division that holds a value; names: value -> team name
        "activity_types": {
            "call": "call",
            "email": "email",
            "listemail": "email",
            "meeting": "meeting",
            "demo": "demo",
        },
        "completed_tasks_only": True,
        "not_quota_carrying": [],  # user ids or names (managers, admins)
    },
    "hubspot": {
        "stages": {
            "closedwon": "won",
            "closedlost": "lost",
            "Closed Won": "won",
            "Closed Lost": "lost",
        },
        "stage_labels": {
            "appointmentscheduled": "Appointment Scheduled",
            "qualifiedtobuy": "Qualified To Buy",
            "presentationscheduled": "Presentation Scheduled",
            "decisionmakerboughtin": "Decision Maker Bought-In",
            "contractsent": "Contract Sent",
            "closedwon": "Closed Won",
            "closedlost": "Closed Lost",
        },
        "probability_scale": 1,  # hs_deal_stage_probability is 0-1
        "qualified": {"lifecycle_stage": "salesqualifiedlead"},  # or marketingqualifiedlead
        "teams": {"column": None, "names": {}, "default": "Unassigned"},
        "activity_types": {"demo": "demo", "product demo": "demo"},
        "skip_meeting_outcomes": ["CANCELED", "NO_SHOW", "RESCHEDULED"],
        "not_quota_carrying": [],
    },
}


@dataclass
class PresetResult:
    """Canonical tables ``{name: (frame, file)}`` read from exports, and what happened on the way."""

    tables: dict[str, tuple[pd.DataFrame, str]]
    findings: list[Finding] = field(default_factory=list)
    accounting: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)


def merge_options(name: str, options: str | Path | dict | None) -> dict:
    """The preset's defaults with ``options`` (YAML file or dict) merged over them, checked."""
    opts = copy.deepcopy(DEFAULTS[name])
    if options is None:
        return opts
    if not isinstance(options, dict):
        options = read_yaml(Path(options), "preset options file")
    unknown = sorted(set(options) - set(opts))
    if unknown:
        raise ParamsError(f"{name} preset options: unknown key(s) {unknown}; known: {sorted(opts)}")
    for key, value in options.items():
        if isinstance(opts[key], dict) and key not in ("stages", "stage_labels", "activity_types"):
            if not isinstance(value, dict):
                raise ParamsError(f"{name} preset options: '{key}' must be a mapping")
            opts[key] = {**opts[key], **value}
        else:
            opts[key] = value
    bad = {s: o for s, o in opts["stages"].items() if o not in ("won", "lost", "open")}
    if bad:
        raise ParamsError(f"{name} preset options: stages map to won, lost or open, not {bad}")
    scale = opts["probability_scale"]
    if isinstance(scale, bool) or not isinstance(scale, int | float) or scale <= 0:
        raise ParamsError(
            f"{name} preset options: probability_scale must be 1 or 100, got {scale!r}"
        )
    opts["activity_types"] = {str(k).lower(): v for k, v in opts["activity_types"].items()}
    return opts


def norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


class Exports:
    """The export files of one folder, and their columns found by API name or label."""

    def __init__(self, preset: str, folder: Path):
        self.preset, self.folder = preset, folder
        self.files = {
            norm(p.stem): p
            for p in sorted(folder.iterdir())
            if p.suffix.lower() in (".csv", ".parquet")
        }
        self.accounting: list[dict] = []
        self.findings: list[Finding] = []

    def read(self, *names: str, required: bool = False) -> tuple[pd.DataFrame, str] | None:
        for name in names:
            if norm(name) in self.files:
                path = self.files[norm(name)]
                return read_table_file(path, name), str(path)
        if required:
            raise SourceError(
                f"{self.folder}: the {self.preset} preset needs a {names[0]} export "
                f"({names[0]}.csv); found: {', '.join(p.name for p in self.files.values()) or 'no files'}"
            )
        return None

    @staticmethod
    def find(df: pd.DataFrame, *candidates: str) -> str | None:
        columns = {norm(c): c for c in df.columns}
        for c in candidates:
            if norm(c) in columns:
                return columns[norm(c)]
        return None

    def column(self, df, file, table, *candidates, required=False) -> pd.Series | None:
        found = self.find(df, *candidates)
        if found is None:
            if required:
                raise DataError(
                    table,
                    f"the {self.preset} export has no column {' / '.join(repr(c) for c in candidates)}"
                    f" (found: {', '.join(map(str, df.columns))})",
                    column=candidates[0],
                    file=file,
                )
            return None
        return df[found]

    def not_rows(self, file: str, mask: pd.Series, reason: str) -> None:
        n = int(mask.sum())
        if n:
            self.accounting.append(
                {"table": Path(file).name, "status": "not a row", "reason": reason, "rows": n}
            )
            self.findings.append(Finding(Path(file).name, None, n, f"not read: {reason}"))


def export_text(series: pd.Series | None, index) -> pd.Series:
    if series is None:
        return pd.Series(pd.NA, index=index, dtype="string")
    return as_text(series).astype("string")


def flag(series: pd.Series | None, index) -> pd.Series:
    """A yes/no export column as a nullable boolean; anything else stays as text for the loader."""
    text = export_text(series, index).str.lower()
    out = pd.Series(pd.NA, index=index, dtype="object")
    out[text.isin(TRUE)] = True
    out[text.isin(FALSE)] = False
    odd = text.notna() & ~text.isin(TRUE | FALSE)
    out[odd] = text[odd]
    return out


def stamp(series: pd.Series | None, index) -> pd.Series:
    """Export dates as text; HubSpot API exports give epoch milliseconds, turned into ISO text."""
    text = export_text(series, index)
    epoch = text.str.fullmatch(r"\d{12,13}").fillna(False).astype(bool)
    if epoch.any():
        text = text.copy()
        text[epoch] = pd.to_datetime(text[epoch].astype("int64"), unit="ms").dt.strftime(
            "%Y-%m-%d %H:%M:%S"
        )
    return text


def owner_ids(
    ex: Exports,
    df,
    file,
    table,
    ids: tuple[str, ...],
    names: tuple[str, ...],
    users: pd.DataFrame,
    required: bool = True,
) -> pd.Series:
    """Owner ids from an id column, or from an owner-name column matched to the users file."""
    by_id = ex.column(df, file, table, *ids)
    if by_id is not None:
        return export_text(by_id, df.index)
    by_name = ex.column(df, file, table, *names)
    if by_name is None:
        if not required:
            return pd.Series(pd.NA, index=df.index, dtype="string")
        ex.column(df, file, table, *ids, *names, required=True)
    text = export_text(by_name, df.index)
    exact = dict(zip(users["rep_name"], users["rep_id"], strict=False))
    # ignoring case only where that names one user ("Jan de Vries" and "Jan De Vries" are two)
    folded = users["rep_name"].str.lower()
    unique = ~folded.duplicated(keep=False)
    loose = dict(zip(folded[unique], users["rep_id"][unique], strict=True))
    by_case = text.str.lower().map(loose).astype("string")
    return text.map(exact).astype("string").fillna(by_case).fillna(text).astype("string")


def closed_and_won(stage: pd.Series, won: pd.Series | None, closed: pd.Series | None, opts: dict):
    """is_closed / is_won: the export's flags where present, else the stage map."""
    stage_map = {norm(k): v for k, v in opts["stages"].items()}
    mapped = stage.map(lambda s: stage_map.get(norm(s), "open") if isinstance(s, str) else "open")
    is_won = won if won is not None else (mapped == "won")
    if closed is not None:
        is_closed = closed
    elif won is not None:
        is_closed = (mapped != "open") | (won == True)  # noqa: E712 (object column of True/False/text)
    else:
        is_closed = mapped != "open"
    return is_closed, is_won


def is_true(series: pd.Series) -> pd.Series:
    """Exactly the True values of a column of True / False / NA / text."""
    return (
        series.astype(object).map(lambda v: isinstance(v, bool | np.bool_) and bool(v)).astype(bool)
    )


def stage_probabilities(stage, probability, is_closed, scale, ex, file) -> dict[str, float]:
    """Median probability of the open deals of each stage, on a 0-1 scale."""
    if probability is None:
        return {}
    p = pd.to_numeric(export_text(probability, stage.index), errors="coerce") / float(scale)
    too_big = p > 1
    if too_big.any():
        raise DataError(
            "opportunities",
            f"probability above 100% after dividing by probability_scale "
            f"{scale} (set probability_scale: 100 for percents, 1 for fractions)",
            column="probability",
            file=file,
            count=int(too_big.sum()),
        )
    open_ = ~is_true(is_closed) & p.notna()
    return {str(s): round(float(v), 4) for s, v in p[open_].groupby(stage[open_]).median().items()}


def assign_teams(ex: Exports, users: pd.DataFrame, team_values: pd.Series, names: dict, opts: dict):
    default = opts["teams"]["default"]
    team_id = team_values.fillna(default).astype("string")
    names = {**names, **{str(k): v for k, v in opts["teams"]["names"].items()}}
    ids = list(dict.fromkeys(team_id))
    teams = pd.DataFrame({"team_id": ids, "team_name": [names.get(t, t) for t in ids]})
    return team_id, teams


def quota(users: pd.DataFrame, active: pd.Series | None, opts: dict) -> pd.Series:
    out = pd.Series(True, index=users.index)
    if active is not None:
        out &= flag(active, users.index).map(lambda v: v is not False)
    listed = {str(x).lower() for x in opts["not_quota_carrying"]}
    out &= ~(users["rep_id"].str.lower().isin(listed) | users["rep_name"].str.lower().isin(listed))
    return out

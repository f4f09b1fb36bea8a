"""CRM presets: Salesforce and HubSpot exports read onto the canonical tables.

Raw exports are renamed and cast here, in one place; KPI code only sees canonical tables. Each
column is found by its API name or by the label a report or UI export uses ("StageName" or
"Stage", "CloseDate" or "Close Date"), ignoring case, spaces and underscores. Owners given by
name ("Opportunity Owner", "Deal owner") are matched to the users / owners file.

Business rules that differ between orgs are options (a YAML file or a dict, merged over the
defaults below): which stages are won or lost, what makes a lead qualified, which user field
names the team, the probability scale, activity types. Every raw row ends up as a canonical row
or in the row accounting with the reason it is not one (an open task, a queue-owned lead, an
OpportunityHistory row that changed the amount and not the stage).

Example
-------
>>> src = load_source("tests/fixtures/salesforce", preset="salesforce")   # doctest: +SKIP
>>> src.frame("opportunities")[["opportunity_id", "stage", "is_won"]].head(2)  # doctest: +SKIP
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from kpi_lib.data.sources import _FALSE, _TRUE, Finding, _as_text, read_table_file
from kpi_lib.errors import DataError, ParamsError, SourceError

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
LIFECYCLE = ["lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer"]


@dataclass
class PresetResult:
    """Canonical tables ``{name: (frame, file)}`` read from exports, and what happened on the way."""

    tables: dict[str, tuple[pd.DataFrame, str]]
    findings: list[Finding] = field(default_factory=list)
    accounting: list[dict] = field(default_factory=list)
    settings: dict = field(default_factory=dict)


def read_preset(name: str, folder: Path, options: str | Path | dict | None = None) -> PresetResult:
    """Read a folder of ``name``'s exports (``salesforce`` or ``hubspot``) as canonical tables."""
    if name not in DEFAULTS:
        raise SourceError(f"unknown preset '{name}'; known presets: {', '.join(DEFAULTS)}")
    if not folder.is_dir():
        raise SourceError(f"preset '{name}' reads a folder of exports; '{folder}' is not a folder")
    opts = merge_options(name, options)
    reader = _Exports(name, folder)
    return (_salesforce if name == "salesforce" else _hubspot)(reader, opts)


def merge_options(name: str, options: str | Path | dict | None) -> dict:
    """The preset's defaults with ``options`` (YAML file or dict) merged over them, checked."""
    opts = copy.deepcopy(DEFAULTS[name])
    if options is None:
        return opts
    if not isinstance(options, dict):
        path = Path(options)
        if not path.exists():
            raise ParamsError(f"preset options file '{path}' does not exist")
        try:
            options = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ParamsError(f"{path}: not valid YAML: {exc}") from exc
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


def _norm(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", str(name).lower())


class _Exports:
    """The export files of one folder, and their columns found by API name or label."""

    def __init__(self, preset: str, folder: Path):
        self.preset, self.folder = preset, folder
        self.files = {
            _norm(p.stem): p
            for p in sorted(folder.iterdir())
            if p.suffix.lower() in (".csv", ".parquet")
        }
        self.accounting: list[dict] = []
        self.findings: list[Finding] = []

    def read(self, *names: str, required: bool = False) -> tuple[pd.DataFrame, str] | None:
        for name in names:
            if _norm(name) in self.files:
                path = self.files[_norm(name)]
                return read_table_file(path, name), str(path)
        if required:
            raise SourceError(
                f"{self.folder}: the {self.preset} preset needs a {names[0]} export "
                f"({names[0]}.csv); found: {', '.join(p.name for p in self.files.values()) or 'no files'}"
            )
        return None

    @staticmethod
    def find(df: pd.DataFrame, *candidates: str) -> str | None:
        columns = {_norm(c): c for c in df.columns}
        for c in candidates:
            if _norm(c) in columns:
                return columns[_norm(c)]
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


def _text(series: pd.Series | None, index) -> pd.Series:
    if series is None:
        return pd.Series(pd.NA, index=index, dtype="string")
    return _as_text(series).astype("string")


def _flag(series: pd.Series | None, index) -> pd.Series:
    """A yes/no export column as a nullable boolean; anything else stays as text for the loader."""
    text = _text(series, index).str.lower()
    out = pd.Series(pd.NA, index=index, dtype="object")
    out[text.isin(_TRUE)] = True
    out[text.isin(_FALSE)] = False
    odd = text.notna() & ~text.isin(_TRUE | _FALSE)
    out[odd] = text[odd]
    return out


def _stamp(series: pd.Series | None, index) -> pd.Series:
    """Export dates as text; HubSpot API exports give epoch milliseconds, turned into ISO text."""
    text = _text(series, index)
    epoch = text.str.fullmatch(r"\d{12,13}").fillna(False).astype(bool)
    if epoch.any():
        text = text.copy()
        text[epoch] = pd.to_datetime(text[epoch].astype("int64"), unit="ms").dt.strftime(
            "%Y-%m-%d %H:%M:%S"
        )
    return text


def _owner(
    ex: _Exports,
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
        return _text(by_id, df.index)
    by_name = ex.column(df, file, table, *names)
    if by_name is None:
        if not required:
            return pd.Series(pd.NA, index=df.index, dtype="string")
        ex.column(df, file, table, *ids, *names, required=True)
    text = _text(by_name, df.index)
    exact = dict(zip(users["rep_name"], users["rep_id"], strict=False))
    # ignoring case only where that names one user ("Jan de Vries" and "Jan De Vries" are two)
    folded = users["rep_name"].str.lower()
    unique = ~folded.duplicated(keep=False)
    loose = dict(zip(folded[unique], users["rep_id"][unique], strict=True))
    by_case = text.str.lower().map(loose).astype("string")
    return text.map(exact).astype("string").fillna(by_case).fillna(text).astype("string")


def _outcome(stage: pd.Series, won: pd.Series | None, closed: pd.Series | None, opts: dict):
    """is_closed / is_won: the export's flags where present, else the stage map."""
    stage_map = {_norm(k): v for k, v in opts["stages"].items()}
    mapped = stage.map(lambda s: stage_map.get(_norm(s), "open") if isinstance(s, str) else "open")
    is_won = won if won is not None else (mapped == "won")
    if closed is not None:
        is_closed = closed
    elif won is not None:
        is_closed = (mapped != "open") | (won == True)  # noqa: E712 (object column of True/False/text)
    else:
        is_closed = mapped != "open"
    return is_closed, is_won


def _true(series: pd.Series) -> pd.Series:
    """Exactly the True values of a column of True / False / NA / text."""
    return (
        series.astype(object).map(lambda v: isinstance(v, bool | np.bool_) and bool(v)).astype(bool)
    )


def _probabilities(stage, probability, is_closed, scale, ex, file) -> dict[str, float]:
    """Median probability of the open deals of each stage, on a 0-1 scale."""
    if probability is None:
        return {}
    p = pd.to_numeric(_text(probability, stage.index), errors="coerce") / float(scale)
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
    open_ = ~_true(is_closed) & p.notna()
    return {str(s): round(float(v), 4) for s, v in p[open_].groupby(stage[open_]).median().items()}


def _teams(ex: _Exports, users: pd.DataFrame, team_values: pd.Series, names: dict, opts: dict):
    default = opts["teams"]["default"]
    team_id = team_values.fillna(default).astype("string")
    names = {**names, **{str(k): v for k, v in opts["teams"]["names"].items()}}
    ids = list(dict.fromkeys(team_id))
    teams = pd.DataFrame({"team_id": ids, "team_name": [names.get(t, t) for t in ids]})
    return team_id, teams


def _quota(users: pd.DataFrame, active: pd.Series | None, opts: dict) -> pd.Series:
    out = pd.Series(True, index=users.index)
    if active is not None:
        out &= _flag(active, users.index).map(lambda v: v is not False)
    listed = {str(x).lower() for x in opts["not_quota_carrying"]}
    out &= ~(users["rep_id"].str.lower().isin(listed) | users["rep_name"].str.lower().isin(listed))
    return out


# ---------------------------------------------------------------------------------------------
# Salesforce
# ---------------------------------------------------------------------------------------------


def _salesforce(ex: _Exports, opts: dict) -> PresetResult:
    tables: dict[str, tuple[pd.DataFrame, str]] = {}
    settings: dict = {}

    df, file = ex.read("User", "Users", required=True)
    col = lambda *c, **k: ex.column(df, file, "reps", *c, **k)  # noqa: E731
    name = col("Name", "Full Name", "User Name")
    if name is None:
        first, last = col("FirstName", "First Name"), col("LastName", "Last Name", required=True)
        name = (
            _text(first, df.index).fillna("") + " " + _text(last, df.index).fillna("")
        ).str.strip()
    users = pd.DataFrame(
        {
            "rep_id": _text(col("Id", "User ID", required=True), df.index),
            "rep_name": _text(name, df.index),
        }
    )
    users["email"] = _text(col("Email"), df.index)
    users["start_at"] = _text(col("CreatedDate", "Created Date"), df.index)
    team_col = opts["teams"]["column"]
    candidates = (
        (team_col,) if team_col else ("UserRoleId", "Role ID", "Role", "Department", "Division")
    )
    if not team_col:  # exports carry UserRoleId even where no user has a role
        filled = [c for c in candidates if _text(col(c), df.index).notna().any()]
        candidates = tuple(filled[:1]) or candidates
    team_values = _text(col(*candidates, required=bool(team_col)), df.index)
    role_names = {}
    roles = ex.read("UserRole", "UserRoles")
    if roles is not None:
        rdf, rfile = roles
        role_names = dict(
            zip(
                _text(ex.column(rdf, rfile, "teams", "Id", required=True), rdf.index),
                _text(ex.column(rdf, rfile, "teams", "Name", required=True), rdf.index),
                strict=True,
            )
        )
    users["team_id"], teams = _teams(ex, users, team_values, role_names, opts)
    users["is_quota_carrying"] = _quota(users, col("IsActive", "Active"), opts)
    inactive = ~users["is_quota_carrying"]
    if inactive.any():
        ex.findings.append(
            Finding(
                "reps",
                "is_quota_carrying",
                int(inactive.sum()),
                "are inactive or listed as not quota-carrying (not in revenue per rep)",
            )
        )
    tables["teams"] = (teams, file)
    tables["reps"] = (users, file)

    df, file = ex.read("Opportunity", "Opportunities", required=True)
    col = lambda *c, **k: ex.column(df, file, "opportunities", *c, **k)  # noqa: E731
    stage = _text(col("StageName", "Stage", required=True), df.index)
    won = col("IsWon", "Won")
    closed = col("IsClosed", "Closed")
    is_closed, is_won = _outcome(
        stage,
        None if won is None else _flag(won, df.index),
        None if closed is None else _flag(closed, df.index),
        opts,
    )
    close_date = _text(col("CloseDate", "Close Date"), df.index)
    opps = pd.DataFrame(
        {
            "opportunity_id": _text(col("Id", "Opportunity ID", required=True), df.index),
            "owner_rep_id": _owner(
                ex,
                df,
                file,
                "opportunities",
                ("OwnerId", "Owner ID", "Opportunity Owner ID"),
                ("Opportunity Owner", "Owner Name", "Owner"),
                users,
            ),
            "created_at": _text(col("CreatedDate", "Created Date", required=True), df.index),
            "stage": stage,
            "is_closed": is_closed,
            "is_won": is_won,
            "account_id": _text(col("AccountId", "Account ID"), df.index),
            # CloseDate of an open deal is the expected close date, not a close
            "closed_at": close_date.where(_true(is_closed), pd.NA),
            "expected_close_at": close_date.where(~_true(is_closed), pd.NA),
            "amount": _text(col("Amount"), df.index),
            "currency": _text(
                col("CurrencyIsoCode", "Opportunity Currency", "Amount Currency", "Currency"),
                df.index,
            ),
        }
    )
    settings["stage_probabilities"] = _probabilities(
        stage, col("Probability", "Probability (%)"), is_closed, opts["probability_scale"], ex, file
    )
    tables["opportunities"] = (opps, file)

    history = ex.read("OpportunityHistory", "Opportunity History")
    if history is not None:
        hdf, hfile = history
        hcol = lambda *c, **k: ex.column(hdf, hfile, "stage_history", *c, **k)  # noqa: E731
        sh = pd.DataFrame(
            {
                "opportunity_id": _text(
                    hcol("OpportunityId", "Opportunity ID", required=True), hdf.index
                ),
                "stage": _text(hcol("StageName", "Stage", "To Stage", required=True), hdf.index),
                "entered_at": _text(
                    hcol("CreatedDate", "Created Date", "Last Modified", required=True), hdf.index
                ),
            }
        )
        order = pd.to_datetime(sh["entered_at"], format="mixed", errors="coerce")
        sh = sh.assign(_order=order).sort_values(["opportunity_id", "_order"], kind="stable")
        same = (
            sh["stage"].eq(sh.groupby("opportunity_id")["stage"].shift()).fillna(False).astype(bool)
        )
        ex.not_rows(
            hfile, same, "the stage did not change (an amount, probability or close-date change)"
        )
        tables["stage_history"] = (sh.loc[~same].drop(columns="_order").sort_index(), hfile)

    leads = ex.read("Lead", "Leads")
    if leads is not None:
        df, file = leads
        col = lambda *c, **k: ex.column(df, file, "leads", *c, **k)  # noqa: E731
        owner = _owner(
            ex,
            df,
            file,
            "leads",
            ("OwnerId", "Owner ID", "Lead Owner ID"),
            ("Lead Owner", "Owner Name"),
            users,
        )
        queue = owner.str.startswith("00G").fillna(False).astype(bool)
        ex.not_rows(file, queue, "owned by a queue (00G...), not a user")
        q = opts["qualified"]
        converted = _flag(col("IsConverted", "Converted"), df.index).map(lambda v: v is True)
        converted_at = _text(col("ConvertedDate", "Converted Date"), df.index)
        qualified_at = _text(col(q["date_column"]) if q["date_column"] else None, df.index)
        if q["converted_count"]:
            qualified_at = qualified_at.fillna(converted_at.where(converted, pd.NA))
        status = _text(col("Status", "Lead Status"), df.index)
        by_status = status.isin(q["statuses"]) & qualified_at.isna()
        if by_status.any():
            dated = _text(
                col(q["status_date_column"]) if q["status_date_column"] else None, df.index
            )
            qualified_at = qualified_at.where(~by_status, dated)
            ex.findings.append(
                Finding(
                    "leads",
                    "qualified_at",
                    int(by_status.sum()),
                    f"are qualified by status ({', '.join(q['statuses'])}) and dated by "
                    f"{q['status_date_column']} (no {q['date_column']} value); see qualified.date_column",
                )
            )
        frame = pd.DataFrame(
            {
                "lead_id": _text(col("Id", "Lead ID", required=True), df.index),
                "owner_rep_id": owner,
                "created_at": _text(
                    col("CreatedDate", "Created Date", "Create Date", required=True), df.index
                ),
                "source": _text(col("LeadSource", "Lead Source"), df.index),
                "qualified_at": qualified_at,
                "converted_at": converted_at.where(converted, pd.NA),
                "opportunity_id": _text(
                    col("ConvertedOpportunityId", "Converted Opportunity ID"), df.index
                ),
            }
        )
        tables["leads"] = (frame[~queue], file)

    parts, labels = [], []
    task = ex.read("Task", "Tasks")
    if task is not None:
        df, file = task
        col = lambda *c, **k: ex.column(df, file, "activities", *c, **k)  # noqa: E731
        when = _text(col("CompletedDateTime", "Completed Date/Time"), df.index)
        for c in (("ActivityDate", "Due Date", "Date"), ("CreatedDate", "Created Date")):
            when = when.fillna(_text(col(*c), df.index))
        kinds = opts["activity_types"]
        sub = _text(col("TaskSubtype", "Task Subtype"), df.index).str.lower().map(kinds)
        typ = _text(col("Type", "Activity Type"), df.index).str.lower().map(kinds)
        parts.append(_activities(ex, df, file, col, when, sub.fillna(typ).fillna("other"), users))
        labels.append(Path(file).name)
        if opts["completed_tasks_only"]:
            status, closed = col("Status"), col("IsClosed", "Closed")
            done = pd.Series(True, index=df.index)
            if closed is not None:
                done = _flag(closed, df.index).map(lambda v: v is True)
            elif status is not None:
                done = _text(status, df.index).str.lower().eq("completed").fillna(False)
            ex.not_rows(file, ~done, "task not completed (a to-do, not an activity)")
            parts[-1] = parts[-1][done.astype(bool)]
    event = ex.read("Event", "Events")
    if event is not None:
        df, file = event
        col = lambda *c, **k: ex.column(df, file, "activities", *c, **k)  # noqa: E731
        when = _text(col("StartDateTime", "Start", "Start Date Time"), df.index)
        when = when.fillna(_text(col("ActivityDateTime", "ActivityDate", "Date"), df.index))
        typ = _text(col("Type", "Event Type"), df.index).str.lower().map(opts["activity_types"])
        parts.append(_activities(ex, df, file, col, when, typ.fillna("meeting"), users))
        labels.append(Path(file).name)
    if parts:
        label = file if len(parts) == 1 else f"{ex.folder}/{' + '.join(labels)} (salesforce preset)"
        frame = pd.concat(parts) if len(parts) > 1 else parts[0]
        tables["activities"] = (frame, label)

    accounts = ex.read("Account", "Accounts")
    if accounts is not None:
        df, file = accounts
        col = lambda *c, **k: ex.column(df, file, "accounts", *c, **k)  # noqa: E731
        tables["accounts"] = (
            pd.DataFrame(
                {
                    "account_id": _text(col("Id", "Account ID", required=True), df.index),
                    "account_name": _text(col("Name", "Account Name", required=True), df.index),
                    "owner_rep_id": _owner(
                        ex,
                        df,
                        file,
                        "accounts",
                        ("OwnerId", "Owner ID"),
                        ("Account Owner", "Owner Name"),
                        users,
                        required=False,
                    ),
                    "segment": _text(col("Type", "Account Type", "Industry"), df.index),
                    "created_at": _text(col("CreatedDate", "Created Date"), df.index),
                }
            ),
            file,
        )
    return PresetResult(tables, ex.findings, ex.accounting, settings)


def _activities(ex, df, file, col, when, kind, users) -> pd.DataFrame:
    who = _text(col("WhoId", "Name ID", "Contact/Lead ID"), df.index)
    what = _text(col("WhatId", "Related To ID"), df.index)
    return pd.DataFrame(
        {
            "activity_id": _text(col("Id", "Activity ID", required=True), df.index),
            "rep_id": _owner(
                ex,
                df,
                file,
                "activities",
                ("OwnerId", "Owner ID", "Assigned ID"),
                ("Assigned", "Assigned To", "Owner Name"),
                users,
            ),
            "occurred_at": when,
            "activity_type": kind,
            # Salesforce id prefixes: 00Q lead, 006 opportunity
            "lead_id": who.where(who.str.startswith("00Q").fillna(False).astype(bool), pd.NA),
            "opportunity_id": what.where(
                what.str.startswith("006").fillna(False).astype(bool), pd.NA
            ),
        }
    )


# ---------------------------------------------------------------------------------------------
# HubSpot
# ---------------------------------------------------------------------------------------------


def _first_id(series: pd.Series) -> pd.Series:
    """HubSpot association columns hold ``;``-separated ids; the first (primary) one."""
    return series.str.split(r"[;,]").str[0].str.strip().astype("string")


def _hubspot(ex: _Exports, opts: dict) -> PresetResult:
    tables: dict[str, tuple[pd.DataFrame, str]] = {}
    settings: dict = {}
    labels = opts["stage_labels"]

    df, file = ex.read("owners", "owner", required=True)
    col = lambda *c, **k: ex.column(df, file, "reps", *c, **k)  # noqa: E731
    first = _text(col("firstName", "First Name"), df.index).fillna("")
    last = _text(col("lastName", "Last Name"), df.index).fillna("")
    name = _text(col("name", "Owner Name", "Full Name"), df.index)
    users = pd.DataFrame(
        {
            "rep_id": _text(
                col("id", "ownerId", "Owner ID", "hubspot_owner_id", required=True), df.index
            ),
            "rep_name": name.fillna((first + " " + last).str.strip()),
            "email": _text(col("email", "Email"), df.index),
            "start_at": _text(col("createdAt", "Created At", "Create Date"), df.index),
        }
    )
    team_col = opts["teams"]["column"]
    candidates = (
        (team_col,) if team_col else ("primaryTeamName", "Primary team", "team", "teams", "Team")
    )
    team_values = _text(col(*candidates, required=bool(team_col)), df.index)
    team_values = _first_id(team_values)
    users["team_id"], teams = _teams(ex, users, team_values, {}, opts)
    archived = col("archived", "Archived")
    users["is_quota_carrying"] = _quota(users, None, opts) & ~_flag(archived, df.index).map(
        lambda v: v is True
    )
    tables["teams"] = (teams, file)
    tables["reps"] = (users, file)

    df, file = ex.read("deals", "deal", required=True)
    col = lambda *c, **k: ex.column(df, file, "opportunities", *c, **k)  # noqa: E731
    raw_stage = _text(col("dealstage", "Deal Stage", required=True), df.index)
    stage = raw_stage.map(lambda s: labels.get(s, s) if isinstance(s, str) else s).astype("string")
    won, closed = (
        col("hs_is_closed_won", "Is Closed Won"),
        col("hs_is_closed", "Is Deal Closed?", "Is closed"),
    )
    outcome_stage = raw_stage.where(
        raw_stage.map(lambda s: _norm(s) in {_norm(k) for k in opts["stages"]}), stage
    )
    is_closed, is_won = _outcome(
        outcome_stage,
        None if won is None else _flag(won, df.index),
        None if closed is None else _flag(closed, df.index),
        opts,
    )
    opps = pd.DataFrame(
        {
            "opportunity_id": _text(
                col("hs_object_id", "Record ID", "Deal ID", required=True), df.index
            ),
            "owner_rep_id": _owner(
                ex,
                df,
                file,
                "opportunities",
                ("hubspot_owner_id", "Deal owner ID"),
                ("Deal owner", "Owner"),
                users,
            ),
            "created_at": _stamp(col("createdate", "Create Date", required=True), df.index),
            "stage": stage,
            "is_closed": is_closed,
            "is_won": is_won,
            "account_id": _first_id(
                _text(
                    col(
                        "associatedcompanyid",
                        "Associated Company IDs (Primary)",
                        "Associated Company IDs",
                        "Associated Company ID",
                        "Company ID",
                    ),
                    df.index,
                )
            ),
            "closed_at": _stamp(col("closedate", "Close Date"), df.index).where(
                _true(is_closed), pd.NA
            ),
            "expected_close_at": _stamp(col("closedate", "Close Date"), df.index).where(
                ~_true(is_closed), pd.NA
            ),
            "amount": _text(col("amount", "Amount"), df.index),
            "currency": _text(col("deal_currency_code", "Currency"), df.index),
        }
    )
    settings["stage_probabilities"] = _probabilities(
        stage,
        col("hs_deal_stage_probability", "Deal Stage Probability", "Deal probability"),
        is_closed,
        opts["probability_scale"],
        ex,
        file,
    )
    tables["opportunities"] = (opps, file)

    entered = []
    for c in df.columns:
        m = re.fullmatch(r"hs_(?:v2_)?date_entered_(.+)", str(c)) or re.fullmatch(
            r'Date entered "(.+?)(?: \(.*\))?"', str(c)
        )
        if m:
            key = m.group(1)
            entered.append(
                pd.DataFrame(
                    {
                        "opportunity_id": opps["opportunity_id"],
                        "stage": labels.get(key, key),
                        "entered_at": _stamp(df[c], df.index),
                    }
                )
            )
    if entered:
        sh = pd.concat(entered, ignore_index=True).dropna(subset=["entered_at"])
        tables["stage_history"] = (sh, f"{file} (hs_date_entered_* columns)")

    contacts = ex.read("contacts", "contact")
    if contacts is not None:
        df, file = contacts
        col = lambda *c, **k: ex.column(df, file, "leads", *c, **k)  # noqa: E731
        owner = _owner(
            ex,
            df,
            file,
            "leads",
            ("hubspot_owner_id", "Contact owner ID"),
            ("Contact owner", "Owner"),
            users,
        )
        unowned = owner.isna()
        ex.not_rows(
            file, unowned, "no contact owner (hubspot_owner_id empty), so no rep to count it for"
        )
        stage_key = opts["qualified"]["lifecycle_stage"]
        if stage_key not in LIFECYCLE:
            raise ParamsError(
                f"hubspot preset options: qualified.lifecycle_stage must be one of {LIFECYCLE}"
            )
        dates = {
            s: _stamp(col(f"hs_lifecyclestage_{s}_date", _LIFECYCLE_LABELS[s]), df.index)
            for s in LIFECYCLE
        }
        qualified_at = dates[stage_key]
        for later in LIFECYCLE[LIFECYCLE.index(stage_key) + 1 :]:
            qualified_at = qualified_at.fillna(dates[later])  # contacts may skip a stage
        frame = pd.DataFrame(
            {
                "lead_id": _text(
                    col("hs_object_id", "Record ID", "Contact ID", required=True), df.index
                ),
                "owner_rep_id": owner,
                "created_at": _stamp(col("createdate", "Create Date", required=True), df.index),
                "source": _text(
                    col("hs_analytics_source", "Original Source", "Original Traffic Source"),
                    df.index,
                ),
                "qualified_at": qualified_at,
                "converted_at": dates["opportunity"],
                "opportunity_id": _first_id(
                    _text(
                        col(
                            "associateddealid",
                            "Associated Deal IDs",
                            "Associated Deal IDs (Primary)",
                            "Associated Deal",
                        ),
                        df.index,
                    )
                ),
            }
        )
        tables["leads"] = (frame[~unowned], file)

    parts, names = [], []
    for kind in ("calls", "meetings", "emails"):
        found = ex.read(kind, kind[:-1])
        if found is None:
            continue
        df, file = found
        col = lambda *c, df=df, file=file, **k: ex.column(df, file, "activities", *c, **k)  # noqa: E731
        typ = _text(col("hs_activity_type", "Call and meeting type", "Activity type"), df.index)
        kind_of = typ.str.lower().map(opts["activity_types"]).fillna(kind[:-1])
        ids = _text(
            col("hs_object_id", "Record ID", "Activity ID", "Engagement ID", required=True),
            df.index,
        )
        part = pd.DataFrame(
            {
                "activity_id": kind[:-1] + ":" + ids,  # ids are unique per object type only
                "rep_id": _owner(
                    ex,
                    df,
                    file,
                    "activities",
                    ("hubspot_owner_id", "Activity assigned to ID"),
                    ("Activity assigned to", "Owner"),
                    users,
                ),
                "occurred_at": _stamp(
                    col("hs_timestamp", "Activity date", "Timestamp", required=True), df.index
                ),
                "activity_type": kind_of,
                "lead_id": _first_id(
                    _text(
                        col("associatedcontactid", "Associated Contact IDs", "Associated Contact"),
                        df.index,
                    )
                ),
                "opportunity_id": _first_id(
                    _text(
                        col("associateddealid", "Associated Deal IDs", "Associated Deal"), df.index
                    )
                ),
            }
        )
        if kind == "meetings":
            outcome = _text(col("hs_meeting_outcome", "Meeting outcome", "Outcome"), df.index)
            skipped = (
                outcome.str.upper()
                .str.replace(" ", "_")
                .isin([o.upper() for o in opts["skip_meeting_outcomes"]])
                .fillna(False)
                .astype(bool)
            )
            ex.not_rows(
                file, skipped, "meeting did not take place (canceled, no show, rescheduled)"
            )
            part = part[~skipped]
        parts.append(part)
        names.append(Path(file).name)
    if parts:
        label = file if len(parts) == 1 else f"{ex.folder}/{' + '.join(names)} (hubspot preset)"
        tables["activities"] = (pd.concat(parts) if len(parts) > 1 else parts[0], label)

    companies = ex.read("companies", "company")
    if companies is not None:
        df, file = companies
        col = lambda *c, **k: ex.column(df, file, "accounts", *c, **k)  # noqa: E731
        tables["accounts"] = (
            pd.DataFrame(
                {
                    "account_id": _text(
                        col("hs_object_id", "Record ID", "Company ID", required=True), df.index
                    ),
                    "account_name": _text(
                        col("name", "Company name", "Name", required=True), df.index
                    ),
                    "owner_rep_id": _owner(
                        ex,
                        df,
                        file,
                        "accounts",
                        ("hubspot_owner_id", "Company owner ID"),
                        ("Company owner", "Owner"),
                        users,
                        required=False,
                    ),
                    "segment": _text(col("type", "Type", "industry", "Industry"), df.index),
                    "created_at": _stamp(col("createdate", "Create Date"), df.index),
                }
            ),
            file,
        )
    return PresetResult(tables, ex.findings, ex.accounting, settings)


_LIFECYCLE_LABELS = {
    "lead": "Became a Lead Date",
    "marketingqualifiedlead": "Became a Marketing Qualified Lead Date",
    "salesqualifiedlead": "Became a Sales Qualified Lead Date",
    "opportunity": "Became an Opportunity Date",
    "customer": "Became a Customer Date",
}

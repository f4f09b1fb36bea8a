"""Salesforce exports onto the canonical tables: Data Loader / Data Export files (API names)
or report exports (labels). ``docs/data-sources.md`` lists what is read from which file.

Example
-------
>>> opts = merge_options("salesforce", None)                              # doctest: +SKIP
>>> result = read_salesforce(Exports("salesforce", Path("exports/"), KINDS, opts), opts)  # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kpi_lib.data.presets.exports import (
    Exports,
    PresetResult,
    assign_teams,
    closed_and_won,
    export_text,
    flag,
    is_true,
    quota,
    stage_probabilities,
)
from kpi_lib.data.presets.owners import OwnersById, OwnersByName
from kpi_lib.data.presets.recognise import ExportKind
from kpi_lib.data.rules import Finding

_OWNER = ("OwnerId", "Owner ID", "Opportunity Owner", "Opportunity Owner ID", "Owner Name", "Owner")

KINDS = [
    ExportKind(
        "opportunities",
        "opportunities",
        names=("Opportunity", "Opportunities"),
        needs=(("StageName", "Stage"), ("CloseDate", "Close Date"), _OWNER),
        ids=("Id", "Opportunity ID"),
    ),
    ExportKind(
        "opportunity history",
        "stage_history",
        names=("OpportunityHistory", "Opportunity History"),
        needs=(
            ("OpportunityId", "Opportunity ID"),
            ("StageName", "Stage", "To Stage"),
            ("CreatedDate", "Created Date", "Last Modified", "Edit Date"),
        ),
        lacks=(*_OWNER, "Account Name", "AccountId", "Account ID", "Fiscal Period"),
        ids=("Id",),
    ),
    ExportKind(
        "users",
        "reps",
        names=("User", "Users"),
        needs=(
            ("Name", "Full Name", "User Name", "LastName", "Last Name"),
            ("Username", "User ID", "UserRoleId", "Role", "Role ID", "Profile", "ProfileId")
            + ("IsActive", "Active", "Alias"),
        ),
        lacks=(*_OWNER, "Lead Owner", "Account Owner", "Contact Owner", "StageName", "Company"),
        ids=("Id", "User ID"),
    ),
    ExportKind(
        "user roles",
        "teams",
        names=("UserRole", "UserRoles"),
        needs=(("Id",), ("Name",), ("ParentRoleId", "RollupDescription", "DeveloperName")),
        ids=("Id",),
    ),
    ExportKind(
        "leads",
        "leads",
        names=("Lead", "Leads"),
        needs=(("Company",), ("Status", "Lead Status"), ("OwnerId", "Owner ID", "Lead Owner")),
        ids=("Id", "Lead ID"),
    ),
    ExportKind(
        "tasks",
        "activities",
        names=("Task", "Tasks"),
        needs=(("Subject",), ("TaskSubtype", "Task Subtype", "Status", "Priority")),
        lacks=("StartDateTime", "EndDateTime", "DurationInMinutes", "CaseNumber", "FromAddress"),
        ids=("Id", "Activity ID"),
    ),
    ExportKind(
        "events",
        "activities",
        names=("Event", "Events"),
        needs=(("Subject",), ("StartDateTime", "Start", "EndDateTime", "DurationInMinutes")),
        ids=("Id", "Activity ID"),
    ),
    ExportKind(
        "accounts",
        "accounts",
        names=("Account", "Accounts"),
        needs=(
            ("Name", "Account Name"),
            ("Id", "Account ID"),
            ("Type", "Account Type", "Industry", "BillingCity", "Billing City", "AccountNumber"),
        ),
        lacks=("StageName", "Stage", "FirstName", "First Name", "Email", "Company", "Subject")
        + ("Status", "StartDate"),  # a Campaign has Name, Id, Type too
        ids=("Id", "Account ID"),
    ),
]
"""The Salesforce exports, most specific first: Data Export / Data Loader files (API names) or
report exports (labels)."""


def read_salesforce(ex: Exports, opts: dict) -> PresetResult:
    tables: dict[str, tuple[pd.DataFrame, str]] = {}
    settings: dict = {}
    owners, role_names = _owners(ex, opts, tables)

    df, file = ex.read("opportunities", required=True)
    col = lambda *c, **k: ex.column(df, file, "opportunities", *c, **k)  # noqa: E731
    dates = lambda column, *c, **k: ex.dates(df, file, "opportunities", column, *c, **k)  # noqa: E731
    stage = export_text(col("StageName", "Stage", required=True), df.index)
    won = col("IsWon", "Won")
    closed = col("IsClosed", "Closed")
    is_closed, is_won = closed_and_won(
        stage,
        None if won is None else flag(won, df.index),
        None if closed is None else flag(closed, df.index),
        opts,
    )
    close_date = dates("closed_at", "CloseDate", "Close Date")
    amount, currency = ex.money(
        df,
        file,
        "opportunities",
        ("Amount",),
        ("CurrencyIsoCode", "Opportunity Currency", "Amount Currency", "Currency"),
    )
    opps = pd.DataFrame(
        {
            "opportunity_id": _opportunity_ids(ex, df, file),
            "owner_rep_id": owners.resolve(
                ex,
                df,
                file,
                "opportunities",
                ("OwnerId", "Owner ID", "Opportunity Owner ID"),
                ("Opportunity Owner", "Owner Name", "Owner"),
            ),
            "created_at": dates("created_at", "CreatedDate", "Created Date", required=True),
            "stage": stage,
            "is_closed": is_closed,
            "is_won": is_won,
            "account_id": export_text(col("AccountId", "Account ID"), df.index),
            # CloseDate of an open deal is the expected close date, not a close
            "closed_at": close_date.where(is_true(is_closed), pd.NA),
            "expected_close_at": close_date.where(~is_true(is_closed), pd.NA),
            "amount": amount,
            "currency": currency,
        }
    )
    settings["stage_probabilities"] = stage_probabilities(
        stage, col("Probability", "Probability (%)"), is_closed, opts["probability_scale"], ex, file
    )
    tables["opportunities"] = (opps, file)

    history = ex.read("opportunity history")
    if history is not None:
        hdf, hfile = history
        hcol = lambda *c, **k: ex.column(hdf, hfile, "stage_history", *c, **k)  # noqa: E731
        sh = pd.DataFrame(
            {
                "opportunity_id": export_text(
                    hcol("OpportunityId", "Opportunity ID", required=True), hdf.index
                ),
                "stage": export_text(
                    hcol("StageName", "Stage", "To Stage", required=True), hdf.index
                ),
                "entered_at": ex.dates(
                    hdf,
                    hfile,
                    "stage_history",
                    "entered_at",
                    "CreatedDate",
                    "Created Date",
                    "Last Modified",
                    "Edit Date",
                    required=True,
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

    leads = ex.read("leads")
    if leads is not None:
        df, file = leads
        col = lambda *c, **k: ex.column(df, file, "leads", *c, **k)  # noqa: E731
        dates = lambda column, *c, **k: ex.dates(df, file, "leads", column, *c, **k)  # noqa: E731
        owner_text = export_text(col("OwnerId", "Owner ID", "Lead Owner ID"), df.index)
        queue = owner_text.str.startswith("00G").fillna(False).astype(bool)
        ex.not_rows(file, queue, "owned by a queue (00G...), not a user")
        df = df[~queue]
        owner = owners.resolve(
            ex,
            df,
            file,
            "leads",
            ("OwnerId", "Owner ID", "Lead Owner ID"),
            ("Lead Owner", "Owner Name"),
        )
        q = opts["qualified"]
        converted = flag(col("IsConverted", "Converted"), df.index).map(lambda v: v is True)
        converted_at = dates("converted_at", "ConvertedDate", "Converted Date")
        qualified_at = (
            dates("qualified_at", q["date_column"])
            if q["date_column"]
            else pd.Series(pd.NA, index=df.index, dtype="string")
        )
        if q["converted_count"]:
            qualified_at = qualified_at.fillna(converted_at.where(converted, pd.NA))
        status = export_text(col("Status", "Lead Status"), df.index)
        by_status = status.isin(q["statuses"]) & qualified_at.isna()
        if by_status.any():
            dated = (
                dates("qualified_at", q["status_date_column"])
                if q["status_date_column"]
                else pd.Series(pd.NA, index=df.index, dtype="string")
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
                "lead_id": export_text(col("Id", "Lead ID", required=True), df.index),
                "owner_rep_id": owner,
                "created_at": dates(
                    "created_at", "CreatedDate", "Created Date", "Create Date", required=True
                ),
                "source": export_text(col("LeadSource", "Lead Source"), df.index),
                "qualified_at": qualified_at,
                "converted_at": converted_at.where(converted, pd.NA),
                "opportunity_id": export_text(
                    col("ConvertedOpportunityId", "Converted Opportunity ID"), df.index
                ),
            }
        )
        tables["leads"] = (frame, file)

    parts, labels = [], []
    task = ex.read("tasks")
    if task is not None:
        df, file = task
        col = lambda *c, **k: ex.column(df, file, "activities", *c, **k)  # noqa: E731
        when = ex.dates(
            df, file, "activities", "occurred_at", "CompletedDateTime", "Completed Date/Time"
        )
        for c in (("ActivityDate", "Due Date", "Date"), ("CreatedDate", "Created Date")):
            when = when.fillna(ex.dates(df, file, "activities", "occurred_at", *c))
        kinds = opts["activity_types"]
        sub = export_text(col("TaskSubtype", "Task Subtype"), df.index).str.lower().map(kinds)
        typ = export_text(col("Type", "Activity Type"), df.index).str.lower().map(kinds)
        parts.append(_activities(ex, df, file, col, when, sub.fillna(typ).fillna("other"), owners))
        labels.append(Path(file).name)
        if opts["completed_tasks_only"]:
            status, closed = col("Status"), col("IsClosed", "Closed")
            done = pd.Series(True, index=df.index)
            if closed is not None:
                done = flag(closed, df.index).map(lambda v: v is True)
            elif status is not None:
                done = export_text(status, df.index).str.lower().eq("completed").fillna(False)
            ex.not_rows(file, ~done, "task not completed (a to-do, not an activity)")
            parts[-1] = parts[-1][done.astype(bool)]
    event = ex.read("events")
    if event is not None:
        df, file = event
        col = lambda *c, **k: ex.column(df, file, "activities", *c, **k)  # noqa: E731
        when = ex.dates(
            df, file, "activities", "occurred_at", "StartDateTime", "Start", "Start Date Time"
        )
        when = when.fillna(
            ex.dates(
                df, file, "activities", "occurred_at", "ActivityDateTime", "ActivityDate", "Date"
            )
        )
        typ = (
            export_text(col("Type", "Event Type"), df.index).str.lower().map(opts["activity_types"])
        )
        parts.append(_activities(ex, df, file, col, when, typ.fillna("meeting"), owners))
        labels.append(Path(file).name)
    if parts:
        label = file if len(parts) == 1 else f"{ex.folder}/{' + '.join(labels)} (salesforce preset)"
        frame = pd.concat(parts) if len(parts) > 1 else parts[0]
        tables["activities"] = (frame, label)

    accounts = ex.read("accounts")
    if accounts is not None:
        df, file = accounts
        col = lambda *c, **k: ex.column(df, file, "accounts", *c, **k)  # noqa: E731
        tables["accounts"] = (
            pd.DataFrame(
                {
                    "account_id": export_text(col("Id", "Account ID", required=True), df.index),
                    "account_name": export_text(
                        col("Name", "Account Name", required=True), df.index
                    ),
                    "owner_rep_id": owners.resolve(
                        ex,
                        df,
                        file,
                        "accounts",
                        ("OwnerId", "Owner ID"),
                        ("Account Owner", "Owner Name"),
                        required=False,
                    ),
                    "segment": export_text(col("Type", "Account Type", "Industry"), df.index),
                    "created_at": ex.dates(
                        df, file, "accounts", "created_at", "CreatedDate", "Created Date"
                    ),
                }
            ),
            file,
        )
    if owners.by_name:
        teams, reps = owners.tables(ex, opts, role_names)
        label = owners.file or f"{ex.folder} (the owners named in the exports)"
        tables["teams"], tables["reps"] = (teams, label), (reps, label)
    return PresetResult(tables, ex.findings, ex.accounting, settings, ex.inputs)


def _owners(ex: Exports, opts: dict, tables: dict):
    """Who owns what: ``OwnersById`` when the users export has ids (the reps and teams are
    read here), else ``OwnersByName`` over the users export's people, or over nobody."""
    found = ex.read("users")
    if found is None:
        return OwnersByName(None, None), {}
    df, file = found
    col = lambda *c, **k: ex.column(df, file, "reps", *c, **k)  # noqa: E731
    name = col("Name", "Full Name", "User Name")
    if name is None:
        first, last = col("FirstName", "First Name"), col("LastName", "Last Name", required=True)
        name = (
            export_text(first, df.index).fillna("") + " " + export_text(last, df.index).fillna("")
        ).str.strip()
    team_col = opts["teams"]["column"]
    candidates = (
        (team_col,) if team_col else ("UserRoleId", "Role ID", "Role", "Department", "Division")
    )
    if not team_col:  # exports carry UserRoleId even where no user has a role
        filled = [c for c in candidates if export_text(col(c), df.index).notna().any()]
        candidates = tuple(filled[:1]) or candidates
    team_values = export_text(col(*candidates, required=bool(team_col)), df.index)
    role_names = {}
    roles = ex.read("user roles")
    if roles is not None:
        rdf, rfile = roles
        role_names = dict(
            zip(
                export_text(ex.column(rdf, rfile, "teams", "Id", required=True), rdf.index),
                export_text(ex.column(rdf, rfile, "teams", "Name", required=True), rdf.index),
                strict=True,
            )
        )
    user_id = col("Id", "User ID")
    if user_id is None:  # a users report without ids: owners are matched by name or email
        people = pd.DataFrame(
            {
                "rep_name": export_text(name, df.index),
                "email": export_text(col("Email"), df.index),
                "team": team_values,
                "active": col("IsActive", "Active"),
            }
        )
        return OwnersByName(people.reset_index(drop=True), file), role_names
    users = pd.DataFrame(
        {"rep_id": export_text(user_id, df.index), "rep_name": export_text(name, df.index)}
    )
    users["email"] = export_text(col("Email"), df.index)
    users["start_at"] = ex.dates(df, file, "reps", "start_at", "CreatedDate", "Created Date")
    users["team_id"], teams = assign_teams(ex, users, team_values, role_names, opts)
    users["is_quota_carrying"] = quota(users, col("IsActive", "Active"), opts)
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
    return OwnersById(users, file), role_names


def _opportunity_ids(ex: Exports, df: pd.DataFrame, file: str) -> pd.Series:
    """``Id`` / ``Opportunity ID``; a report without it (the default columns of an
    opportunity report have none) names deals by ``Opportunity Name``, said in a finding."""
    ids = ex.column(df, file, "opportunities", "Id", "Opportunity ID")
    if ids is not None:
        return export_text(ids, df.index)
    names = ex.column(df, file, "opportunities", "Opportunity Name")
    if names is None:
        ex.column(df, file, "opportunities", "Id", "Opportunity ID", required=True)
    ex.findings.append(
        Finding(
            "opportunities",
            "opportunity_id",
            len(df),
            f"are identified by their Opportunity Name ({Path(file).name} has no Opportunity "
            "ID column; add it to the report to tell apart deals of the same name)",
        )
    )
    return export_text(names, df.index)


def _activities(ex, df, file, col, when, kind, owners) -> pd.DataFrame:
    who = export_text(col("WhoId", "Name ID", "Contact/Lead ID"), df.index)
    what = export_text(col("WhatId", "Related To ID"), df.index)
    return pd.DataFrame(
        {
            "activity_id": export_text(col("Id", "Activity ID", required=True), df.index),
            "rep_id": owners.resolve(
                ex,
                df,
                file,
                "activities",
                ("OwnerId", "Owner ID", "Assigned ID"),
                ("Assigned", "Assigned To", "Owner Name"),
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

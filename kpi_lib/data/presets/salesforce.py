"""Salesforce exports onto the canonical tables: Data Loader / Data Export files (API names)
or report exports (labels). ``docs/data-sources.md`` lists what is read from which file.

Example
-------
>>> result = read_salesforce(Exports("salesforce", Path("tests/fixtures/salesforce")),  # doctest: +SKIP
...                          merge_options("salesforce", None))
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
    owner_ids,
    quota,
    stage_probabilities,
)
from kpi_lib.data.rules import Finding


def read_salesforce(ex: Exports, opts: dict) -> PresetResult:
    tables: dict[str, tuple[pd.DataFrame, str]] = {}
    settings: dict = {}

    df, file = ex.read("User", "Users", required=True)
    col = lambda *c, **k: ex.column(df, file, "reps", *c, **k)  # noqa: E731
    name = col("Name", "Full Name", "User Name")
    if name is None:
        first, last = col("FirstName", "First Name"), col("LastName", "Last Name", required=True)
        name = (
            export_text(first, df.index).fillna("") + " " + export_text(last, df.index).fillna("")
        ).str.strip()
    users = pd.DataFrame(
        {
            "rep_id": export_text(col("Id", "User ID", required=True), df.index),
            "rep_name": export_text(name, df.index),
        }
    )
    users["email"] = export_text(col("Email"), df.index)
    users["start_at"] = export_text(col("CreatedDate", "Created Date"), df.index)
    team_col = opts["teams"]["column"]
    candidates = (
        (team_col,) if team_col else ("UserRoleId", "Role ID", "Role", "Department", "Division")
    )
    if not team_col:  # exports carry UserRoleId even where no user has a role
        filled = [c for c in candidates if export_text(col(c), df.index).notna().any()]
        candidates = tuple(filled[:1]) or candidates
    team_values = export_text(col(*candidates, required=bool(team_col)), df.index)
    role_names = {}
    roles = ex.read("UserRole", "UserRoles")
    if roles is not None:
        rdf, rfile = roles
        role_names = dict(
            zip(
                export_text(ex.column(rdf, rfile, "teams", "Id", required=True), rdf.index),
                export_text(ex.column(rdf, rfile, "teams", "Name", required=True), rdf.index),
                strict=True,
            )
        )
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

    df, file = ex.read("Opportunity", "Opportunities", required=True)
    col = lambda *c, **k: ex.column(df, file, "opportunities", *c, **k)  # noqa: E731
    stage = export_text(col("StageName", "Stage", required=True), df.index)
    won = col("IsWon", "Won")
    closed = col("IsClosed", "Closed")
    is_closed, is_won = closed_and_won(
        stage,
        None if won is None else flag(won, df.index),
        None if closed is None else flag(closed, df.index),
        opts,
    )
    close_date = export_text(col("CloseDate", "Close Date"), df.index)
    opps = pd.DataFrame(
        {
            "opportunity_id": export_text(col("Id", "Opportunity ID", required=True), df.index),
            "owner_rep_id": owner_ids(
                ex,
                df,
                file,
                "opportunities",
                ("OwnerId", "Owner ID", "Opportunity Owner ID"),
                ("Opportunity Owner", "Owner Name", "Owner"),
                users,
            ),
            "created_at": export_text(col("CreatedDate", "Created Date", required=True), df.index),
            "stage": stage,
            "is_closed": is_closed,
            "is_won": is_won,
            "account_id": export_text(col("AccountId", "Account ID"), df.index),
            # CloseDate of an open deal is the expected close date, not a close
            "closed_at": close_date.where(is_true(is_closed), pd.NA),
            "expected_close_at": close_date.where(~is_true(is_closed), pd.NA),
            "amount": export_text(col("Amount"), df.index),
            "currency": export_text(
                col("CurrencyIsoCode", "Opportunity Currency", "Amount Currency", "Currency"),
                df.index,
            ),
        }
    )
    settings["stage_probabilities"] = stage_probabilities(
        stage, col("Probability", "Probability (%)"), is_closed, opts["probability_scale"], ex, file
    )
    tables["opportunities"] = (opps, file)

    history = ex.read("OpportunityHistory", "Opportunity History")
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
                "entered_at": export_text(
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
        owner = owner_ids(
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
        converted = flag(col("IsConverted", "Converted"), df.index).map(lambda v: v is True)
        converted_at = export_text(col("ConvertedDate", "Converted Date"), df.index)
        qualified_at = export_text(col(q["date_column"]) if q["date_column"] else None, df.index)
        if q["converted_count"]:
            qualified_at = qualified_at.fillna(converted_at.where(converted, pd.NA))
        status = export_text(col("Status", "Lead Status"), df.index)
        by_status = status.isin(q["statuses"]) & qualified_at.isna()
        if by_status.any():
            dated = export_text(
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
                "lead_id": export_text(col("Id", "Lead ID", required=True), df.index),
                "owner_rep_id": owner,
                "created_at": export_text(
                    col("CreatedDate", "Created Date", "Create Date", required=True), df.index
                ),
                "source": export_text(col("LeadSource", "Lead Source"), df.index),
                "qualified_at": qualified_at,
                "converted_at": converted_at.where(converted, pd.NA),
                "opportunity_id": export_text(
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
        when = export_text(col("CompletedDateTime", "Completed Date/Time"), df.index)
        for c in (("ActivityDate", "Due Date", "Date"), ("CreatedDate", "Created Date")):
            when = when.fillna(export_text(col(*c), df.index))
        kinds = opts["activity_types"]
        sub = export_text(col("TaskSubtype", "Task Subtype"), df.index).str.lower().map(kinds)
        typ = export_text(col("Type", "Activity Type"), df.index).str.lower().map(kinds)
        parts.append(_activities(ex, df, file, col, when, sub.fillna(typ).fillna("other"), users))
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
    event = ex.read("Event", "Events")
    if event is not None:
        df, file = event
        col = lambda *c, **k: ex.column(df, file, "activities", *c, **k)  # noqa: E731
        when = export_text(col("StartDateTime", "Start", "Start Date Time"), df.index)
        when = when.fillna(export_text(col("ActivityDateTime", "ActivityDate", "Date"), df.index))
        typ = (
            export_text(col("Type", "Event Type"), df.index).str.lower().map(opts["activity_types"])
        )
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
                    "account_id": export_text(col("Id", "Account ID", required=True), df.index),
                    "account_name": export_text(
                        col("Name", "Account Name", required=True), df.index
                    ),
                    "owner_rep_id": owner_ids(
                        ex,
                        df,
                        file,
                        "accounts",
                        ("OwnerId", "Owner ID"),
                        ("Account Owner", "Owner Name"),
                        users,
                        required=False,
                    ),
                    "segment": export_text(col("Type", "Account Type", "Industry"), df.index),
                    "created_at": export_text(col("CreatedDate", "Created Date"), df.index),
                }
            ),
            file,
        )
    return PresetResult(tables, ex.findings, ex.accounting, settings)


def _activities(ex, df, file, col, when, kind, users) -> pd.DataFrame:
    who = export_text(col("WhoId", "Name ID", "Contact/Lead ID"), df.index)
    what = export_text(col("WhatId", "Related To ID"), df.index)
    return pd.DataFrame(
        {
            "activity_id": export_text(col("Id", "Activity ID", required=True), df.index),
            "rep_id": owner_ids(
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

"""HubSpot exports onto the canonical tables: owners, deals (with their stage-entered dates as
stage history), contacts, companies, calls, meetings and emails, by internal property names or
export labels. ``docs/data-sources.md`` lists what is read from which file.
"""

from __future__ import annotations

import re
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
    norm,
    owner_ids,
    quota,
    stage_probabilities,
    stamp,
)
from kpi_lib.errors import ParamsError

LIFECYCLE = ["lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer"]


def _first_id(series: pd.Series) -> pd.Series:
    """HubSpot association columns hold ``;``-separated ids; the first (primary) one."""
    return series.str.split(r"[;,]").str[0].str.strip().astype("string")


def read_hubspot(ex: Exports, opts: dict) -> PresetResult:
    tables: dict[str, tuple[pd.DataFrame, str]] = {}
    settings: dict = {}
    labels = opts["stage_labels"]

    df, file = ex.read("owners", "owner", required=True)
    col = lambda *c, **k: ex.column(df, file, "reps", *c, **k)  # noqa: E731
    first = export_text(col("firstName", "First Name"), df.index).fillna("")
    last = export_text(col("lastName", "Last Name"), df.index).fillna("")
    name = export_text(col("name", "Owner Name", "Full Name"), df.index)
    users = pd.DataFrame(
        {
            "rep_id": export_text(
                col("id", "ownerId", "Owner ID", "hubspot_owner_id", required=True), df.index
            ),
            "rep_name": name.fillna((first + " " + last).str.strip()),
            "email": export_text(col("email", "Email"), df.index),
            "start_at": export_text(col("createdAt", "Created At", "Create Date"), df.index),
        }
    )
    team_col = opts["teams"]["column"]
    candidates = (
        (team_col,) if team_col else ("primaryTeamName", "Primary team", "team", "teams", "Team")
    )
    team_values = export_text(col(*candidates, required=bool(team_col)), df.index)
    team_values = _first_id(team_values)
    users["team_id"], teams = assign_teams(ex, users, team_values, {}, opts)
    archived = col("archived", "Archived")
    users["is_quota_carrying"] = quota(users, None, opts) & ~flag(archived, df.index).map(
        lambda v: v is True
    )
    tables["teams"] = (teams, file)
    tables["reps"] = (users, file)

    df, file = ex.read("deals", "deal", required=True)
    col = lambda *c, **k: ex.column(df, file, "opportunities", *c, **k)  # noqa: E731
    raw_stage = export_text(col("dealstage", "Deal Stage", required=True), df.index)
    stage = raw_stage.map(lambda s: labels.get(s, s) if isinstance(s, str) else s).astype("string")
    won, closed = (
        col("hs_is_closed_won", "Is Closed Won"),
        col("hs_is_closed", "Is Deal Closed?", "Is closed"),
    )
    outcome_stage = raw_stage.where(
        raw_stage.map(lambda s: norm(s) in {norm(k) for k in opts["stages"]}), stage
    )
    is_closed, is_won = closed_and_won(
        outcome_stage,
        None if won is None else flag(won, df.index),
        None if closed is None else flag(closed, df.index),
        opts,
    )
    opps = pd.DataFrame(
        {
            "opportunity_id": export_text(
                col("hs_object_id", "Record ID", "Deal ID", required=True), df.index
            ),
            "owner_rep_id": owner_ids(
                ex,
                df,
                file,
                "opportunities",
                ("hubspot_owner_id", "Deal owner ID"),
                ("Deal owner", "Owner"),
                users,
            ),
            "created_at": stamp(col("createdate", "Create Date", required=True), df.index),
            "stage": stage,
            "is_closed": is_closed,
            "is_won": is_won,
            "account_id": _first_id(
                export_text(
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
            "closed_at": stamp(col("closedate", "Close Date"), df.index).where(
                is_true(is_closed), pd.NA
            ),
            "expected_close_at": stamp(col("closedate", "Close Date"), df.index).where(
                ~is_true(is_closed), pd.NA
            ),
            "amount": export_text(col("amount", "Amount"), df.index),
            "currency": export_text(col("deal_currency_code", "Currency"), df.index),
        }
    )
    settings["stage_probabilities"] = stage_probabilities(
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
                        "entered_at": stamp(df[c], df.index),
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
        owner = owner_ids(
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
            s: stamp(col(f"hs_lifecyclestage_{s}_date", _LIFECYCLE_LABELS[s]), df.index)
            for s in LIFECYCLE
        }
        qualified_at = dates[stage_key]
        for later in LIFECYCLE[LIFECYCLE.index(stage_key) + 1 :]:
            qualified_at = qualified_at.fillna(dates[later])  # contacts may skip a stage
        frame = pd.DataFrame(
            {
                "lead_id": export_text(
                    col("hs_object_id", "Record ID", "Contact ID", required=True), df.index
                ),
                "owner_rep_id": owner,
                "created_at": stamp(col("createdate", "Create Date", required=True), df.index),
                "source": export_text(
                    col("hs_analytics_source", "Original Source", "Original Traffic Source"),
                    df.index,
                ),
                "qualified_at": qualified_at,
                "converted_at": dates["opportunity"],
                "opportunity_id": _first_id(
                    export_text(
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
        typ = export_text(
            col("hs_activity_type", "Call and meeting type", "Activity type"), df.index
        )
        kind_of = typ.str.lower().map(opts["activity_types"]).fillna(kind[:-1])
        ids = export_text(
            col("hs_object_id", "Record ID", "Activity ID", "Engagement ID", required=True),
            df.index,
        )
        part = pd.DataFrame(
            {
                "activity_id": kind[:-1] + ":" + ids,  # ids are unique per object type only
                "rep_id": owner_ids(
                    ex,
                    df,
                    file,
                    "activities",
                    ("hubspot_owner_id", "Activity assigned to ID"),
                    ("Activity assigned to", "Owner"),
                    users,
                ),
                "occurred_at": stamp(
                    col("hs_timestamp", "Activity date", "Timestamp", required=True), df.index
                ),
                "activity_type": kind_of,
                "lead_id": _first_id(
                    export_text(
                        col("associatedcontactid", "Associated Contact IDs", "Associated Contact"),
                        df.index,
                    )
                ),
                "opportunity_id": _first_id(
                    export_text(
                        col("associateddealid", "Associated Deal IDs", "Associated Deal"), df.index
                    )
                ),
            }
        )
        if kind == "meetings":
            outcome = export_text(col("hs_meeting_outcome", "Meeting outcome", "Outcome"), df.index)
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
                    "account_id": export_text(
                        col("hs_object_id", "Record ID", "Company ID", required=True), df.index
                    ),
                    "account_name": export_text(
                        col("name", "Company name", "Name", required=True), df.index
                    ),
                    "owner_rep_id": owner_ids(
                        ex,
                        df,
                        file,
                        "accounts",
                        ("hubspot_owner_id", "Company owner ID"),
                        ("Company owner", "Owner"),
                        users,
                        required=False,
                    ),
                    "segment": export_text(col("type", "Type", "industry", "Industry"), df.index),
                    "created_at": stamp(col("createdate", "Create Date"), df.index),
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

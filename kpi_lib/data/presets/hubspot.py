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
    quota,
    stage_probabilities,
)
from kpi_lib.data.presets.owners import OwnersById, OwnersByName
from kpi_lib.data.presets.recognise import ExportKind, norm
from kpi_lib.errors import ParamsError

_RECORD = ("hs_object_id", "Record ID")

KINDS = [
    ExportKind(
        "owners",
        "reps",
        names=("owners", "owner", "users", "user"),
        needs=(
            ("email", "Email"),
            ("firstName", "First Name", "lastName", "Last Name", "name", "Full Name"),
        ),
        lacks=(
            *_RECORD,
            "Contact owner",
            "Deal owner",
            "Company owner",
            "dealstage",
            "Deal Stage",
            "lifecyclestage",
            "Lifecycle Stage",
        ),
        ids=("id", "ownerId", "Owner ID", "hubspot_owner_id"),
    ),
    ExportKind(
        "deals",
        "opportunities",
        names=("deals", "deal"),
        needs=(("dealstage", "Deal Stage"), (*_RECORD, "Deal ID", "dealname", "Deal Name")),
        ids=(*_RECORD, "Deal ID"),
    ),
    ExportKind(
        "contacts",
        "leads",
        names=("contacts", "contact"),
        needs=(
            (*_RECORD, "Contact ID"),
            ("firstname", "First Name", "lastname", "Last Name", "email", "Email"),
        ),
        lacks=("dealstage", "Deal Stage"),
        ids=(*_RECORD, "Contact ID"),
    ),
    ExportKind(
        "companies",
        "accounts",
        names=("companies", "company"),
        needs=(
            (*_RECORD, "Company ID"),
            ("name", "Company name"),
            ("domain", "Company Domain Name", "industry", "Industry", "type", "Type"),
        ),
        lacks=("firstname", "First Name", "email", "Email", "dealstage", "Deal Stage"),
        ids=(*_RECORD, "Company ID"),
    ),
    ExportKind(
        "calls",
        "activities",
        names=("calls", "call"),
        needs=(("re:hscall.*", "re:call(title|outcome|direction|status|duration|notes)"),),
        ids=(*_RECORD, "Activity ID", "Engagement ID"),
    ),
    ExportKind(
        "meetings",
        "activities",
        names=("meetings", "meeting"),
        needs=(("re:hsmeeting.*", "re:meeting(name|title|outcome|location|starttime)"),),
        ids=(*_RECORD, "Activity ID", "Engagement ID"),
    ),
    ExportKind(
        "emails",
        "activities",
        names=("emails", "email"),
        needs=(("re:hsemail(subject|direction|status|text|html)", "re:email(subject|direction)"),),
        ids=(*_RECORD, "Activity ID", "Engagement ID"),
    ),
]
"""The HubSpot exports, most specific first: API exports (internal property names) or the
Export button's files (labels)."""

LIFECYCLE = ["lead", "marketingqualifiedlead", "salesqualifiedlead", "opportunity", "customer"]


def _first_id(series: pd.Series) -> pd.Series:
    """HubSpot association columns hold ``;``-separated ids; the first (primary) one."""
    return series.str.split(r"[;,]").str[0].str.strip().astype("string")


def read_hubspot(ex: Exports, opts: dict) -> PresetResult:
    tables: dict[str, tuple[pd.DataFrame, str]] = {}
    settings: dict = {}
    labels = opts["stage_labels"]

    owners = _owners(ex, opts, tables)

    df, file = ex.read("deals", required=True)
    col = lambda *c, **k: ex.column(df, file, "opportunities", *c, **k)  # noqa: E731
    dates = lambda column, *c, **k: ex.dates(df, file, "opportunities", column, *c, **k)  # noqa: E731
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
    close_date = dates("closed_at", "closedate", "Close Date")
    amount, currency = ex.money(
        df, file, "opportunities", ("amount", "Amount"), ("deal_currency_code", "Currency")
    )
    opps = pd.DataFrame(
        {
            "opportunity_id": export_text(
                col("hs_object_id", "Record ID", "Deal ID", required=True), df.index
            ),
            "owner_rep_id": owners.resolve(
                ex,
                df,
                file,
                "opportunities",
                ("hubspot_owner_id", "Deal owner ID"),
                ("Deal owner", "Owner"),
            ),
            "created_at": dates("created_at", "createdate", "Create Date", required=True),
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
            "closed_at": close_date.where(is_true(is_closed), pd.NA),
            "expected_close_at": close_date.where(~is_true(is_closed), pd.NA),
            "amount": amount,
            "currency": currency,
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
                        "entered_at": ex.dates(df, file, "stage_history", "entered_at", c),
                    }
                )
            )
    if entered:
        sh = pd.concat(entered, ignore_index=True).dropna(subset=["entered_at"])
        tables["stage_history"] = (sh, f"{file} (hs_date_entered_* columns)")

    contacts = ex.read("contacts")
    if contacts is not None:
        df, file = contacts
        col = lambda *c, **k: ex.column(df, file, "leads", *c, **k)  # noqa: E731
        dates = lambda column, *c, **k: ex.dates(df, file, "leads", column, *c, **k)  # noqa: E731
        owner = owners.resolve(
            ex,
            df,
            file,
            "leads",
            ("hubspot_owner_id", "Contact owner ID"),
            ("Contact owner", "Owner"),
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
        became = {
            s: dates("qualified_at", f"hs_lifecyclestage_{s}_date", _LIFECYCLE_LABELS[s])
            for s in LIFECYCLE
        }
        qualified_at = became[stage_key]
        for later in LIFECYCLE[LIFECYCLE.index(stage_key) + 1 :]:
            qualified_at = qualified_at.fillna(became[later])  # contacts may skip a stage
        frame = pd.DataFrame(
            {
                "lead_id": export_text(
                    col("hs_object_id", "Record ID", "Contact ID", required=True), df.index
                ),
                "owner_rep_id": owner,
                "created_at": dates("created_at", "createdate", "Create Date", required=True),
                "source": export_text(
                    col("hs_analytics_source", "Original Source", "Original Traffic Source"),
                    df.index,
                ),
                "qualified_at": qualified_at,
                "converted_at": became["opportunity"],
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
        found = ex.read(kind)
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
                "rep_id": owners.resolve(
                    ex,
                    df,
                    file,
                    "activities",
                    ("hubspot_owner_id", "Activity assigned to ID"),
                    ("Activity assigned to", "Owner"),
                ),
                "occurred_at": ex.dates(
                    df,
                    file,
                    "activities",
                    "occurred_at",
                    "hs_timestamp",
                    "Activity date",
                    "Timestamp",
                    required=True,
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

    companies = ex.read("companies")
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
                    "owner_rep_id": owners.resolve(
                        ex,
                        df,
                        file,
                        "accounts",
                        ("hubspot_owner_id", "Company owner ID"),
                        ("Company owner", "Owner"),
                        required=False,
                    ),
                    "segment": export_text(col("type", "Type", "industry", "Industry"), df.index),
                    "created_at": ex.dates(
                        df, file, "accounts", "created_at", "createdate", "Create Date"
                    ),
                }
            ),
            file,
        )
    if owners.by_name:
        teams, reps = owners.tables(ex, opts)
        label = owners.file or f"{ex.folder} (the owners named in the exports)"
        tables["teams"], tables["reps"] = (teams, label), (reps, label)
    return PresetResult(tables, ex.findings, ex.accounting, settings, ex.inputs)


def _owners(ex: Exports, opts: dict, tables: dict):
    """``OwnersById`` when the owners export has ids (API owners: the reps and teams are read
    here), else ``OwnersByName`` over a Users & Teams export's people, or over nobody."""
    found = ex.read("owners")
    if found is None:
        return OwnersByName(None, None)
    df, file = found
    col = lambda *c, **k: ex.column(df, file, "reps", *c, **k)  # noqa: E731
    first = export_text(col("firstName", "First Name"), df.index).fillna("")
    last = export_text(col("lastName", "Last Name"), df.index).fillna("")
    name = export_text(col("name", "Owner Name", "Full Name"), df.index)
    full = name.fillna((first + " " + last).str.strip().replace("", pd.NA))
    team_col = opts["teams"]["column"]
    candidates = (
        (team_col,) if team_col else ("primaryTeamName", "Primary team", "team", "teams", "Team")
    )
    team_values = _first_id(export_text(col(*candidates, required=bool(team_col)), df.index))
    archived = flag(col("archived", "Archived", "Deactivated"), df.index).map(lambda v: v is True)
    owner_id = col("id", "ownerId", "Owner ID", "hubspot_owner_id")
    if owner_id is None:  # a Users & Teams export: owners are matched by name or email
        people = pd.DataFrame(
            {
                "rep_name": full,
                "email": export_text(col("email", "Email"), df.index),
                "team": team_values,
                "active": ~archived,
            }
        )
        return OwnersByName(people.reset_index(drop=True), file)
    users = pd.DataFrame(
        {
            "rep_id": export_text(owner_id, df.index),
            "rep_name": full,
            "email": export_text(col("email", "Email"), df.index),
            "start_at": ex.dates(
                df, file, "reps", "start_at", "createdAt", "Created At", "Create Date"
            ),
        }
    )
    users["team_id"], teams = assign_teams(ex, users, team_values, {}, opts)
    users["is_quota_carrying"] = quota(users, None, opts) & ~archived
    tables["teams"] = (teams, file)
    tables["reps"] = (users, file)
    return OwnersById(users, file)


_LIFECYCLE_LABELS = {
    "lead": "Became a Lead Date",
    "marketingqualifiedlead": "Became a Marketing Qualified Lead Date",
    "salesqualifiedlead": "Became a Sales Qualified Lead Date",
    "opportunity": "Became an Opportunity Date",
    "customer": "Became a Customer Date",
}

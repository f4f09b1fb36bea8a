"""The canonical tables of the data contract (DESIGN.md section 3), as data.

Every loader (folder of CSV/Parquet, DuckDB file, presets, column maps) ends in these tables;
KPI code reads nothing else. Column kinds: ``id`` and ``str`` are text, ``ts`` a timestamp
(a bare date means midnight), ``bool`` a boolean, ``num`` a float.
"""

from __future__ import annotations

from dataclasses import dataclass, field

ACTIVITY_TYPES = ("call", "email", "meeting", "demo", "other")
SPEND_CATEGORIES = ("sales", "marketing")


@dataclass(frozen=True)
class TableSpec:
    """One canonical table: its key, required and optional columns, and the kind of each."""

    name: str
    grain: str
    key: str | None
    required: dict[str, str]
    optional: dict[str, str] = field(default_factory=dict)
    is_required: bool = False

    @property
    def columns(self) -> dict[str, str]:
        return {**self.required, **self.optional}


TABLES: dict[str, TableSpec] = {
    spec.name: spec
    for spec in [
        TableSpec(
            "teams",
            "One row per sales team.",
            "team_id",
            {"team_id": "id", "team_name": "str"},
            {"region": "str"},
            is_required=True,
        ),
        TableSpec(
            "reps",
            "One row per sales rep.",
            "rep_id",
            {"rep_id": "id", "rep_name": "str", "team_id": "id"},
            {"email": "str", "start_at": "ts", "end_at": "ts", "is_quota_carrying": "bool"},
            is_required=True,
        ),
        TableSpec(
            "leads",
            "One row per lead.",
            "lead_id",
            {"lead_id": "id", "owner_rep_id": "id", "created_at": "ts"},
            {"source": "str", "qualified_at": "ts", "converted_at": "ts", "opportunity_id": "id"},
        ),
        TableSpec(
            "activities",
            "One row per logged activity (call, email, meeting, demo, other).",
            "activity_id",
            {"activity_id": "id", "rep_id": "id", "occurred_at": "ts", "activity_type": "str"},
            {"lead_id": "id", "opportunity_id": "id"},
        ),
        TableSpec(
            "opportunities",
            "One row per opportunity, in its current state.",
            "opportunity_id",
            {
                "opportunity_id": "id",
                "owner_rep_id": "id",
                "created_at": "ts",
                "stage": "str",
                "is_closed": "bool",
                "is_won": "bool",
            },
            {
                "account_id": "id",
                "lead_id": "id",
                "closed_at": "ts",
                "amount": "num",
                "currency": "str",
                "expected_close_at": "ts",
            },
            is_required=True,
        ),
        TableSpec(
            "stage_history",
            "One row per stage an opportunity entered.",
            None,
            {"opportunity_id": "id", "stage": "str", "entered_at": "ts"},
        ),
        TableSpec(
            "accounts",
            "One row per customer account.",
            "account_id",
            {"account_id": "id", "account_name": "str"},
            {"owner_rep_id": "id", "segment": "str", "created_at": "ts"},
        ),
        TableSpec(
            "revenue",
            "One row per recognised revenue amount of an account.",
            None,
            {"account_id": "id", "recognized_at": "ts", "amount": "num"},
        ),
        TableSpec(
            "spend",
            "One row per spend amount (sales or marketing), optionally per team.",
            None,
            {"spent_at": "ts", "category": "str", "amount": "num"},
            {"team_id": "id"},
        ),
    ]
}

TABLE_NAMES = tuple(TABLES)

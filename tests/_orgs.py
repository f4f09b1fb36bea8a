"""A foreign org: one small CRM the kit was not shaped for, written as every input the kit reads.

The org ("Fromagerie Lumière", a made-up seller of cheese-cave sensors) is canonical tables in
the contract's columns (``kpi_lib/schema.py``), built by hand-written rules, no random numbers:

- three teams whose ids are their names, with spaces, accents and a slash: ``Ventes Montréal``,
  ``EMEA / Nordics``, ``Direct Sales``;
- seven reps whose ids are their names: ``José Núñez``, ``Zoë O'Brien``, ``Åsa Lindqvist`` ...,
  and two (``Jan de Vries``, ``Jan De Vries``, in different teams) that differ only by case;
  ``Åsa Lindqvist`` joined in February 2026;
- its own stages: deals move ``Engaging`` -> ``Qualifying`` -> ``Negotiating`` and end ``Won`` or
  ``Lost``; every rep has won, lost and open deals in November 2026, and open deals at the end;
- history from August 2025 to November 2026 (16 months): November 2025, a year before the
  report month, has data; a year before that there is none, so trailing-year and year-ago
  figures of earlier months only partly have data;
- no ``spend`` and no ``revenue`` table in any format (won deals stand in for revenue), and
  other optional tables missing per format:

  ============================  =====  ==========  =============  ========
  format                        leads  activities  stage_history  accounts
  ============================  =====  ==========  =============  ========
  CSV folder                    yes    yes         yes            yes
  Parquet folder                -      -           yes            -
  DuckDB file                   yes    -           -              yes
  PostgreSQL                    -      yes         yes            -
  Salesforce API export         yes    yes         from 2026-03   yes
  Salesforce UI report export   -      -           -              -
  Salesforce Classic report     -      -           -              -
  HubSpot export                -      yes         yes            yes
  HubSpot deals-only XLSX       -      -           -              -
  column-mapped files           -      -           -              yes
  ============================  =====  ==========  =============  ========

The export was taken on ``EXPORT`` (2026-12-05, early morning): deals whose planned close is
later are open, in the stage they had reached by then.

One writer per input kind writes the org into a folder the way that kind looks in the wild and
returns a ``Written``: the command-line arguments that read it (``--source``, and ``--preset`` /
``--options`` where the source is not a source file), and the ids the kind gives the org's
teams and reps (a Salesforce user's Id, a HubSpot owner id), so a test can name them.
"""

from __future__ import annotations

import string
import unicodedata
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import yaml

PERIOD = "2026-11"
AS_OF = "2026-12-05"
EXPORT = pd.Timestamp("2026-12-05 06:30:00")
FIRST_MONTH = "2025-08"
CURRENCY = "EUR"

TEAMS = [
    # team_id (= its name in this CRM), region
    ("Ventes Montréal", "Amériques"),
    ("EMEA / Nordics", "Europe"),
    ("Direct Sales", "Europe"),
]
REPS = [
    # rep_id (= the person's name), team_id, start (None: before the data starts)
    ("José Núñez", "Ventes Montréal", None),
    ("Chloé Tremblay-Gagnon", "Ventes Montréal", None),
    ("Zoë O'Brien", "EMEA / Nordics", None),
    ("Åsa Lindqvist", "EMEA / Nordics", "2026-02-09"),
    ("Jan De Vries", "EMEA / Nordics", None),
    ("Cara Losch", "Direct Sales", None),
    ("Jan de Vries", "Direct Sales", None),
]
ACCOUNTS = [
    "Boulangerie Dupré",
    "Fromagerie du Lac-Saint-Jean",
    "Caves Bélanger & Fils",
    "Laiterie Côté",
    "Øresund Mejeri A/S",
    "Fjällost Söderberg AB",
    "Juustola Mäkinen Oy",
    "Käsehaus Grüber GmbH",
    "Kaasboerderij 't Hoekje",
    "O'Connell Creamery Ltd",
    "Müller & Søn Logistik",
    "Queserías Peña S.L.",
    "Crèmerie Lefèvre",
    "Caseificio Città di Castello",
]
OPEN_STAGES = ["Engaging", "Qualifying", "Negotiating"]
WON, LOST = "Won", "Lost"
ACTIVITY_CYCLE = ["call", "email", "call", "meeting", "email", "demo", "call", "meeting"]
LEAD_SOURCES = ["Web", "Salon Fromages & Vins", "Référence client", "Outbound", "Partenaire"]


@dataclass(frozen=True)
class Org:
    """The foreign org's canonical tables (only the ones it has: no spend, no revenue)."""

    tables: dict[str, pd.DataFrame]

    def __getitem__(self, name: str) -> pd.DataFrame:
        return self.tables[name]

    def active_reps(self, period: str = PERIOD) -> list[str]:
        """The reps who work in ``period``: every rep who started before it ends."""
        end = pd.Period(period, "M").end_time
        reps = self.tables["reps"]
        return [r for r, s in zip(reps["rep_id"], reps["start_at"], strict=True) if s <= end]


@dataclass
class Written:
    """One input kind written to disk: how to read it, and the ids it gives the org.

    ``args`` are the command-line source options (``["--source", ...]`` and, for a folder of
    exports read without a source file, ``--preset`` / ``--options``). ``team_ids`` and
    ``rep_ids`` map the org's canonical ids to the kind's (identity where the kind keeps the
    names). ``extra_scopes`` are scopes the kind adds that the org does not have (the
    integration user of a Salesforce org and its ``Unassigned`` team), as ``(scope, id)``.
    ``missing`` names the optional tables this kind does not carry.
    """

    kind: str
    args: list[str]
    team_ids: dict[str, str]
    rep_ids: dict[str, str]
    missing: tuple[str, ...]
    extra_scopes: set[tuple[str, str]] = field(default_factory=set)

    @property
    def source(self) -> str:
        return self.args[self.args.index("--source") + 1]


# ---------------------------------------------------------------------------------------------
# The org
# ---------------------------------------------------------------------------------------------


def foreign_org() -> Org:
    """The org's canonical tables, the same every call."""
    months = pd.period_range(FIRST_MONTH, PERIOD, freq="M")
    teams = pd.DataFrame(
        {
            "team_id": [t for t, _ in TEAMS],
            "team_name": [t for t, _ in TEAMS],
            "region": [r for _, r in TEAMS],
        }
    )
    reps = pd.DataFrame(
        {
            "rep_id": [r for r, _, _ in REPS],
            "rep_name": [r for r, _, _ in REPS],
            "team_id": [t for _, t, _ in REPS],
            "email": [_email(r, i) for i, (r, _, _) in enumerate(REPS)],
            # when the CRM user was created: at the CRM's start, or when the rep joined
            "start_at": [pd.Timestamp(s or "2024-05-13 08:00") for _, _, s in REPS],
            "is_quota_carrying": True,
        }
    )
    owner_of_account = {a: REPS[i % len(REPS)][0] for i, a in enumerate(ACCOUNTS)}
    accounts_of = {r: [a for a, o in owner_of_account.items() if o == r] for r, _, _ in REPS}
    deals, history, leads, activities = [], [], [], []
    for i, (rep, _, start) in enumerate(REPS):
        for j, month in enumerate(months):
            first_day = month.start_time
            if start and first_day < pd.Timestamp(start).to_period("M").start_time:
                continue
            plans = _generic_plans(i, j) if month < RECENT else _recent_plans(i, month)
            month_deals = []
            for k, plan in enumerate(plans):
                created = first_day + plan["created"] + pd.Timedelta(minutes=5 * i)
                if start and created < pd.Timestamp(start):
                    created = pd.Timestamp(start) + pd.Timedelta(days=k, hours=10)
                deal_id = f"D-{first_day:%Y%m}-{i + 1}{k + 1:02d}"
                account = accounts_of[rep][(j + k) % len(accounts_of[rep])]
                deal = _deal(deal_id, rep, created, plan, account, priced=(i + j + k) % 4 != 0)
                deals.append(deal["row"])
                history += deal["history"]
                month_deals.append(deal["row"])
            leads += _leads(i, j, rep, first_day, month_deals)
            activities += _activities(i, j, rep, first_day, month_deals)
    opportunities = pd.DataFrame(deals)
    first_deal = opportunities.groupby("account_id")["created_at"].min()
    accounts = pd.DataFrame(
        {
            "account_id": ACCOUNTS,
            "account_name": ACCOUNTS,
            "owner_rep_id": [owner_of_account[a] for a in ACCOUNTS],
            "segment": ["Artisan" if n % 3 else "Industriel" for n in range(len(ACCOUNTS))],
            "created_at": [first_deal.get(a, EXPORT) - pd.Timedelta(days=20) for a in ACCOUNTS],
        }
    )
    tables = {
        "teams": teams,
        "reps": reps,
        "opportunities": opportunities,
        "stage_history": pd.DataFrame(history),
        "leads": pd.DataFrame(leads),
        "activities": pd.DataFrame(activities),
        "accounts": accounts,
    }
    for df in tables.values():  # typed as a database would hold them: text, not objects
        for column in df.columns:
            if df[column].dtype == object or pd.api.types.is_string_dtype(df[column]):
                df[column] = df[column].astype("string")
            elif pd.api.types.is_datetime64_any_dtype(df[column]):
                df[column] = df[column].astype("datetime64[us]")
    return Org(tables)


def _email(name: str, i: int) -> str:
    ascii_name = unicodedata.normalize("NFKD", name).encode("ascii", "ignore").decode()
    local = "".join(c for c in ascii_name.lower().replace(" ", ".") if c.isalnum() or c == ".")
    return f"{local}.{i}@fromagerie-lumiere.example"


RECENT = pd.Period("2026-10", "M")
"""Deals created from this month on follow a hand-written plan (``_recent_plans``)."""


def _days(days: float) -> pd.Timedelta:
    return pd.Timedelta(days=days).round("min")  # whole minutes, as a CRM stores them


def _generic_plans(i: int, j: int) -> list[dict]:
    """Three or four deals a month for rep ``i`` in month ``j`` (before ``RECENT``).

    Each plan: ``created`` (offset in the month), the days after creation it reaches
    ``Qualifying`` and ``Negotiating`` (None: never), and how it ends (``Won`` / ``Lost``,
    ``closes`` days after creation). About a third are won; a third of the lost ones are lost
    before negotiating. Cycles run from 18 to 64 days.
    """
    plans = []
    for k in range(3 + (i + j) % 2):
        outcome = WON if (i + 2 * j + k) % 3 == 0 else LOST
        early = outcome == LOST and (i + k) % 3 == 0
        qualifying = 3 + (i + j + k) % 5
        plans.append(
            {
                "created": _days(1 + 7 * k + i % 3) + pd.Timedelta(hours=9 + k),
                "qualifying": qualifying,
                "negotiating": None if early else 11 + (i * j + k) % 9,
                "outcome": outcome,
                "closes": qualifying + 4.1 if early else 18 + (5 * i + 7 * j + 13 * k) % 47,
            }
        )
    return plans


def _recent_plans(i: int, month: pd.Period) -> list[dict]:
    """The plan of October and November 2026, written out so that every rep has, in
    November: deals won and lost (one lost before negotiating), a deal created in October
    still open, one won after the month ended (open at November's snapshot, closed in the
    export), and open deals in each open stage at the export."""
    if month == RECENT:  # October
        return [
            {
                "created": _days(4 + i),
                "qualifying": 4,
                "negotiating": 12,
                "outcome": WON,
                "closes": 29 - i / 2,
            },
            {
                "created": _days(11),
                "qualifying": 3,
                "negotiating": None,
                "outcome": LOST,
                "closes": 22 + i,
            },
            {
                "created": _days(19),
                "qualifying": 5,
                "negotiating": 14,
                "outcome": WON,
                "closes": 27 + i % 5,
            },
            {
                "created": _days(24),
                "qualifying": 6,
                "negotiating": 16,
                "outcome": WON,
                "closes": 90,
            },  # still negotiating at the export
        ]
    return [  # November
        {
            "created": _days(1.4),
            "qualifying": 3,
            "negotiating": 9,
            "outcome": LOST,
            "closes": 21 + i % 4,
        },
        {
            "created": _days(4),
            "qualifying": 4,
            "negotiating": 13,
            "outcome": WON,
            "closes": 27 + i % 3,
        },  # won in December, before the export
        {
            "created": _days(7 + i),
            "qualifying": 4,
            "negotiating": None,
            "outcome": LOST,
            "closes": 45,
        },  # qualifying at the export
        {
            "created": _days(20 + i % 6),
            "qualifying": 30,
            "negotiating": None,
            "outcome": LOST,
            "closes": 60,
        },  # engaging at the export
    ]


def _deal(deal_id: str, rep: str, created, plan: dict, account: str, priced: bool) -> dict:
    """One deal from its plan: its row as of ``EXPORT`` and the stages it entered by then.

    A deal whose close falls after the export is open, in the stage reached by then, with the
    planned close as its expected close date; an open deal may have no amount yet.
    """
    steps = [("Engaging", created)]
    for stage in ("Qualifying", "Negotiating"):
        days = plan[stage.lower()]
        if days is not None:
            steps.append((stage, created + _days(days) + pd.Timedelta(hours=2)))
    close = created + _days(plan["closes"]) + pd.Timedelta(hours=7)
    steps.append((plan["outcome"], close))
    seen = [(s, t) for s, t in steps if t < EXPORT]
    is_closed = close < EXPORT
    n = sum(map(ord, deal_id))
    amount = 1000.0 * (6 + n % 37) if is_closed or priced else None
    row = {
        "opportunity_id": deal_id,
        "owner_rep_id": rep,
        "created_at": created,
        "stage": seen[-1][0],
        "is_closed": is_closed,
        "is_won": is_closed and plan["outcome"] == WON,
        "account_id": account,
        "lead_id": None,
        "closed_at": close if is_closed else pd.NaT,
        "amount": amount,
        "currency": CURRENCY,
        "expected_close_at": pd.NaT if is_closed else close.normalize(),
    }
    sh = [{"opportunity_id": deal_id, "stage": s, "entered_at": t} for s, t in seen]
    return {"row": row, "history": sh}


def _leads(i: int, j: int, rep: str, first_day: pd.Timestamp, deals: list[dict]) -> list[dict]:
    """Five leads a month: two converted into the month's first deals, one more qualified."""
    out = []
    for n in range(5):
        lead_id = f"L-{first_day:%Y%m}-{i + 1}{n + 1}"
        row = {
            "lead_id": lead_id,
            "owner_rep_id": rep,
            "created_at": first_day + pd.Timedelta(days=2 + 5 * n, hours=8 + n),
            "source": LEAD_SOURCES[(i + j + n) % len(LEAD_SOURCES)],
            "qualified_at": pd.NaT,
            "converted_at": pd.NaT,
            "opportunity_id": None,
        }
        if n < 2 and n < len(deals):
            deal = deals[n]
            row["created_at"] = deal["created_at"] - pd.Timedelta(days=6)
            row["qualified_at"] = deal["created_at"] - pd.Timedelta(days=2)
            row["converted_at"] = deal["created_at"]
            row["opportunity_id"] = deal["opportunity_id"]
            deal["lead_id"] = lead_id
        elif n == 2:
            row["qualified_at"] = row["created_at"] + pd.Timedelta(days=3)
        if row["created_at"] < EXPORT and (
            pd.isna(row["qualified_at"]) or row["qualified_at"] < EXPORT
        ):
            out.append(row)
    return out


def _activities(i: int, j: int, rep: str, first_day: pd.Timestamp, deals: list[dict]) -> list[dict]:
    """Eight activities a month, half of them on one of the month's deals."""
    out = []
    for n, kind in enumerate(ACTIVITY_CYCLE):
        when = first_day + pd.Timedelta(days=1 + 3 * n + i % 2, hours=9 + n % 6, minutes=10 * i)
        deal = deals[n % len(deals)] if n % 2 == 0 and deals else None
        out.append(
            {
                "activity_id": f"A-{first_day:%Y%m}-{i + 1}{n + 1}",
                "rep_id": rep,
                "occurred_at": when,
                "activity_type": kind,
                "lead_id": None,
                "opportunity_id": deal["opportunity_id"] if deal else None,
            }
        )
    return out


# ---------------------------------------------------------------------------------------------
# Canonical tables: a CSV folder, a Parquet folder, a DuckDB file, a PostgreSQL database
# ---------------------------------------------------------------------------------------------


def _identity(org: Org) -> tuple[dict[str, str], dict[str, str]]:
    return (
        {t: t for t in org["teams"]["team_id"]},
        {r: r for r in org["reps"]["rep_id"]},
    )


def _canonical(org: Org, tables: tuple[str, ...]) -> dict[str, pd.DataFrame]:
    return {name: org[name] for name in ("teams", "reps", "opportunities", *tables)}


def write_csv_folder(org: Org, folder: Path) -> Written:
    """``<table>.csv`` per table. Has leads, activities, stage history and accounts."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in _canonical(org, ("leads", "activities", "stage_history", "accounts")).items():
        df.to_csv(folder / f"{name}.csv", index=False)
    return Written("csv", ["--source", str(folder)], *_identity(org), ("spend", "revenue"))


def write_parquet_folder(org: Org, folder: Path) -> Written:
    """``<table>.parquet`` per table. Has stage history only: no leads, activities, accounts."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, df in _canonical(org, ("stage_history",)).items():
        df.to_parquet(folder / f"{name}.parquet", index=False)
    return Written(
        "parquet",
        ["--source", str(folder)],
        *_identity(org),
        ("leads", "activities", "accounts", "spend", "revenue"),
    )


def write_duckdb_file(org: Org, path: Path) -> Written:
    """One DuckDB table per canonical table. Has leads and accounts: no activities, no stage
    history."""
    import duckdb

    path.parent.mkdir(parents=True, exist_ok=True)
    with duckdb.connect(str(path)) as con:
        for name, df in _canonical(org, ("leads", "accounts")).items():
            con.register("_frame", df)
            con.execute(f'CREATE OR REPLACE TABLE "{name}" AS SELECT * FROM _frame')
            con.unregister("_frame")
    return Written(
        "duckdb",
        ["--source", str(path)],
        *_identity(org),
        ("activities", "stage_history", "spend", "revenue"),
    )


def write_postgres(org: Org, url: str) -> Written:
    """The tables in a PostgreSQL database. Has activities and stage history: no leads, no
    accounts."""
    import ibis

    con = ibis.connect(url)
    try:
        for name, df in _canonical(org, ("activities", "stage_history")).items():
            con.create_table(name, df, overwrite=True)
    finally:
        con.disconnect()
    return Written(
        "postgresql",
        ["--source", url],
        *_identity(org),
        ("leads", "accounts", "spend", "revenue"),
    )


# ---------------------------------------------------------------------------------------------
# Salesforce
# ---------------------------------------------------------------------------------------------

SALESFORCE_STAGES = {
    "Engaging": "Qualification",
    "Qualifying": "Id. Decision Makers",
    "Negotiating": "Negotiation/Review",
    WON: "Closed Won",
    LOST: "Closed Lost",
}
SALESFORCE_PROBABILITY = {
    "Qualification": 10,
    "Id. Decision Makers": 40,
    "Negotiation/Review": 90,
    "Closed Won": 100,
    "Closed Lost": 0,
}
HISTORY_SINCE = pd.Timestamp("2026-03-01")
"""The org moved to Salesforce in March 2026: older deals were imported without history."""
_B62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def sf_id(prefix: str, n: int) -> str:
    """An 18-character Salesforce Id: key prefix, pod, a base-62 record number, and the
    three-character suffix Salesforce derives from the case of the first 15 characters."""
    digits = ""
    for _ in range(6):
        n, r = divmod(n, 62)
        digits = _B62[r] + digits
    base = f"{prefix}5e0000{digits}"
    suffix = ""
    for chunk in range(3):
        bits = sum(1 << i for i, c in enumerate(base[5 * chunk : 5 * chunk + 5]) if c.isupper())
        suffix += "ABCDEFGHIJKLMNOPQRSTUVWXYZ012345"[bits]
    return base + suffix


def _sf_time(ts) -> str:
    return "" if pd.isna(ts) else f"{pd.Timestamp(ts):%Y-%m-%dT%H:%M:%S}.000+0000"


def _sf_date(ts) -> str:
    return "" if pd.isna(ts) else f"{pd.Timestamp(ts):%Y-%m-%d}"


def _write_csv(path: Path, rows: list[dict]) -> None:
    pd.DataFrame(rows).to_csv(path, index=False)


def salesforce_ids(org: Org) -> dict[str, dict[str, str]]:
    """The Ids the Salesforce org gives users, opportunities, accounts and leads."""
    return {
        "users": {r: sf_id("005", 101 + n) for n, r in enumerate(org["reps"]["rep_id"])},
        "opportunities": {
            o: sf_id("006", 5000 + n) for n, o in enumerate(org["opportunities"]["opportunity_id"])
        },
        "accounts": {a: sf_id("001", 300 + n) for n, a in enumerate(org["accounts"]["account_id"])},
        "leads": {lead: sf_id("00Q", 9000 + n) for n, lead in enumerate(org["leads"]["lead_id"])},
    }


def write_salesforce_api(org: Org, folder: Path) -> Written:
    """A Data Export / Data Loader export with API field names, read through a source file.

    User, Opportunity, OpportunityHistory, Task, Event, Lead and Account. The org uses no
    roles: ``UserRoleId`` is exported but empty, teams are the users' ``Department``. An
    inactive integration user has no department (so a team ``Unassigned``). History exists
    only for deals created since the move to Salesforce (``HISTORY_SINCE``): the deals open in
    earlier months have none. Nothing is missing but spend and revenue.
    """
    folder.mkdir(parents=True, exist_ok=True)
    ids = salesforce_ids(org)
    users, opp_ids, account_ids, lead_ids = (
        ids["users"],
        ids["opportunities"],
        ids["accounts"],
        ids["leads"],
    )
    integration = sf_id("005", 99)
    user_rows = [
        {
            "Id": users[r.rep_id],
            "Username": r.email.replace("@", ".sf@"),
            "FirstName": r.rep_name.split(" ", 1)[0],
            "LastName": r.rep_name.split(" ", 1)[1],
            "Name": r.rep_name,
            "Email": r.email,
            "IsActive": "true",
            "UserRoleId": "",
            "Department": r.team_id,
            "Title": "Account Executive",
            "CreatedDate": _sf_time(r.start_at),
        }
        for r in org["reps"].itertuples()
    ]
    user_rows.append(
        {
            "Id": integration,
            "Username": "integration@fromagerie-lumiere.example.sf",
            "FirstName": "",
            "LastName": "Integration User",
            "Name": "Integration User",
            "Email": "noreply@fromagerie-lumiere.example",
            "IsActive": "false",
            "UserRoleId": "",
            "Department": "",
            "Title": "",
            "CreatedDate": "2024-05-01T00:00:00.000+0000",
        }
    )
    _write_csv(folder / "User.csv", user_rows)

    opps = org["opportunities"]
    _write_csv(
        folder / "Opportunity.csv",
        [
            {
                "Id": opp_ids[o.opportunity_id],
                "Name": f"{o.account_id} - {o.created_at:%b %Y}",
                "AccountId": account_ids[o.account_id],
                "OwnerId": users[o.owner_rep_id],
                "StageName": SALESFORCE_STAGES[o.stage],
                "Amount": "" if pd.isna(o.amount) else f"{o.amount:.2f}",
                "CurrencyIsoCode": CURRENCY,
                "Probability": SALESFORCE_PROBABILITY[SALESFORCE_STAGES[o.stage]],
                "CloseDate": _sf_date(o.closed_at if o.is_closed else o.expected_close_at),
                "IsClosed": str(o.is_closed).lower(),
                "IsWon": str(o.is_won).lower(),
                "Type": "New Business",
                "LeadSource": "Web",
                "CreatedDate": _sf_time(o.created_at),
                "LastModifiedDate": _sf_time(EXPORT - pd.Timedelta(days=1)),
            }
            for o in opps.itertuples()
        ],
    )

    created = opps.set_index("opportunity_id")["created_at"]
    amount = opps.set_index("opportunity_id")["amount"]
    rows = []
    for n, h in enumerate(org["stage_history"].itertuples()):
        if created[h.opportunity_id] < HISTORY_SINCE:
            continue
        sf_stage = SALESFORCE_STAGES[h.stage]
        row = {
            "Id": sf_id("008", 70000 + 2 * n),
            "OpportunityId": opp_ids[h.opportunity_id],
            "StageName": sf_stage,
            "Amount": ""
            if pd.isna(amount[h.opportunity_id])
            else f"{amount[h.opportunity_id]:.2f}",
            "Probability": SALESFORCE_PROBABILITY[sf_stage],
            "CloseDate": _sf_date(h.entered_at + pd.Timedelta(days=30)),
            "CreatedDate": _sf_time(h.entered_at),
        }
        rows.append(row)
        if n % 4 == 1:  # a later edit of the amount: the stage did not change
            rows.append(
                row
                | {
                    "Id": sf_id("008", 70001 + 2 * n),
                    "Amount": "" if row["Amount"] == "" else f"{float(row['Amount']) * 1.1:.2f}",
                    "CreatedDate": _sf_time(h.entered_at + pd.Timedelta(hours=20)),
                }
            )
    _write_csv(folder / "OpportunityHistory.csv", rows)

    leads = org["leads"]
    queue = sf_id("00G", 7)
    lead_rows = []
    for n, lead in enumerate(leads.itertuples()):
        converted = not pd.isna(lead.converted_at)
        qualified = not converted and not pd.isna(lead.qualified_at)
        lead_rows.append(
            {
                "Id": lead_ids[lead.lead_id],
                "FirstName": "Client",
                "LastName": f"Prospect {n + 1}",
                "Company": ACCOUNTS[n % len(ACCOUNTS)],
                "OwnerId": users[lead.owner_rep_id],
                "Status": "Closed - Converted"
                if converted
                else "Qualified"
                if qualified
                else "Open - Not Contacted",
                "LeadSource": lead.source,
                "IsConverted": str(converted).lower(),
                "ConvertedDate": _sf_date(lead.converted_at) if converted else "",
                "ConvertedOpportunityId": opp_ids[lead.opportunity_id] if converted else "",
                "CreatedDate": _sf_time(lead.created_at),
                "LastModifiedDate": _sf_time(lead.qualified_at if qualified else lead.created_at),
            }
        )
    lead_rows.append(  # web-to-lead into a queue, nobody's yet
        lead_rows[0]
        | {
            "Id": sf_id("00Q", 8999),
            "OwnerId": queue,
            "Status": "Open - Not Contacted",
            "IsConverted": "false",
            "ConvertedDate": "",
            "ConvertedOpportunityId": "",
        }
    )
    _write_csv(folder / "Lead.csv", lead_rows)

    tasks, events = [], []
    for n, a in enumerate(org["activities"].itertuples()):
        what = opp_ids[a.opportunity_id] if isinstance(a.opportunity_id, str) else ""
        if a.activity_type in ("call", "email"):
            tasks.append(
                {
                    "Id": sf_id("00T", 20000 + n),
                    "Subject": f"{a.activity_type.title()} {n}",
                    "OwnerId": users[a.rep_id],
                    "WhoId": "",
                    "WhatId": what,
                    "TaskSubtype": "Call" if a.activity_type == "call" else "Email",
                    "Type": "Call" if a.activity_type == "call" else "Email",
                    "Status": "Completed",
                    "IsClosed": "true",
                    "ActivityDate": _sf_date(a.occurred_at),
                    "CompletedDateTime": "" if n % 3 == 0 else _sf_time(a.occurred_at),
                    "CreatedDate": _sf_time(a.occurred_at - pd.Timedelta(hours=1)),
                }
            )
        else:
            events.append(
                {
                    "Id": sf_id("00U", 40000 + n),
                    "Subject": "Démo produit" if a.activity_type == "demo" else "Rendez-vous",
                    "OwnerId": users[a.rep_id],
                    "WhoId": "",
                    "WhatId": what,
                    "Type": "Demo" if a.activity_type == "demo" else "Meeting",
                    "StartDateTime": _sf_time(a.occurred_at),
                    "EndDateTime": _sf_time(a.occurred_at + pd.Timedelta(hours=1)),
                    "ActivityDate": _sf_date(a.occurred_at),
                    "CreatedDate": _sf_time(a.occurred_at - pd.Timedelta(days=2)),
                }
            )
    tasks.append(  # a to-do, not an activity
        tasks[-1] | {"Id": sf_id("00T", 19999), "Status": "Not Started", "IsClosed": "false"}
    )
    _write_csv(folder / "Task.csv", tasks)
    _write_csv(folder / "Event.csv", events)

    accounts = org["accounts"]
    _write_csv(
        folder / "Account.csv",
        [
            {
                "Id": account_ids[a.account_id],
                "Name": a.account_name,
                "Type": "Customer - Direct",
                "Industry": "Food & Beverage",
                "OwnerId": users[a.owner_rep_id],
                "BillingCity": "Montréal" if n % 2 else "Malmö",
                "CreatedDate": _sf_time(a.created_at),
            }
            for n, a in enumerate(accounts.itertuples())
        ],
    )
    source = folder.parent / f"{folder.name}.source.yaml"
    source.write_text(yaml.safe_dump({"path": folder.name, "preset": "salesforce"}))
    return Written(
        "salesforce",
        ["--source", str(source)],
        {t: t for t in org["teams"]["team_id"]},
        users,
        ("spend", "revenue"),
        extra_scopes={("team", "Unassigned"), ("rep", integration)},
    )


def write_salesforce_report(org: Org, folder: Path) -> Written:
    """A UI report export ("Export details"): column labels, owners by name, US dates.

    ``User.csv`` (User ID, Full Name, Role, Active) and ``Opportunity.csv`` (Opportunity
    Owner, Stage, Close Date, Amount, Created Date ...): no IsWon / IsClosed, so the stage map
    decides. Read with command-line options, no source file. Missing: stage history, leads,
    activities, accounts, spend, revenue.
    """
    folder.mkdir(parents=True, exist_ok=True)
    ids = salesforce_ids(org)
    users = ids["users"]
    _write_csv(
        folder / "User.csv",
        [
            {
                "User ID": users[r.rep_id],
                "Full Name": r.rep_name,
                "Role": r.team_id,
                "Active": "1",
                "Created Date": f"{r.start_at.month}/{r.start_at.day}/{r.start_at.year}",
            }
            for r in org["reps"].itertuples()
        ],
    )

    def us(ts) -> str:
        ts = pd.Timestamp(ts)
        return f"{ts.month}/{ts.day}/{ts.year}"

    _write_csv(
        folder / "Opportunity.csv",
        [
            {
                "Opportunity Owner": o.owner_rep_id,
                "Account Name": o.account_id,
                "Opportunity Name": f"{o.account_id} - {o.created_at:%b %Y}",
                "Stage": SALESFORCE_STAGES[o.stage],
                "Amount": "" if pd.isna(o.amount) else f"{o.amount:.0f}",
                "Probability (%)": SALESFORCE_PROBABILITY[SALESFORCE_STAGES[o.stage]],
                "Close Date": us(o.closed_at if o.is_closed else o.expected_close_at),
                "Created Date": us(o.created_at),
                "Opportunity ID": ids["opportunities"][o.opportunity_id],
                "Account ID": ids["accounts"][o.account_id],
            }
            for o in org["opportunities"].itertuples()
        ],
    )
    return Written(
        "salesforce_report",
        ["--source", str(folder), "--preset", "salesforce"],
        {t: t for t in org["teams"]["team_id"]},
        users,
        ("stage_history", "leads", "activities", "accounts", "spend", "revenue"),
    )


def write_salesforce_classic(org: Org, folder: Path) -> Written:
    """Two Salesforce Classic report exports as the Export button writes them (CSV, UTF-8):
    files named by report id (``report1764910200000.csv``), a BOM, every field quoted, CRLF,
    the trailer block; amounts as the user sees them (``"EUR 12,000.00"``), probabilities as
    ``"90%"``, dates in the day-first locale of a European user (``05/11/2026``). The users
    report has no User ID (Full Name, Email, Role, Active): the reps are the opportunity
    owners by name, in the team of their Role. Missing: stage history, leads, activities,
    accounts, spend, revenue.
    """
    from _exports import salesforce_report_csv

    folder.mkdir(parents=True, exist_ok=True)
    ids = salesforce_ids(org)

    def day_first(ts) -> str:
        return "" if pd.isna(ts) else f"{pd.Timestamp(ts):%d/%m/%Y}"

    salesforce_report_csv(
        folder / "report1764910200000.csv",
        ["Full Name", "Email", "Role", "Profile", "Active"],
        [[r.rep_name, r.email, r.team_id, "Sales User", "1"] for r in org["reps"].itertuples()],
    )
    header = ["Opportunity Owner", "Account Name", "Opportunity Name", "Stage", "Amount"]
    header += ["Probability (%)", "Close Date", "Created Date", "Opportunity ID"]
    rows = []
    for o in org["opportunities"].itertuples():
        stage = SALESFORCE_STAGES[o.stage]
        rows.append(
            [
                o.owner_rep_id,
                o.account_id,
                f"{o.account_id} - {o.created_at:%b %Y}",
                stage,
                "" if pd.isna(o.amount) else f"{CURRENCY} {o.amount:,.2f}",
                f"{SALESFORCE_PROBABILITY[stage]}%",
                day_first(o.closed_at if o.is_closed else o.expected_close_at),
                day_first(o.created_at),
                ids["opportunities"][o.opportunity_id],
            ]
        )
    salesforce_report_csv(folder / "report1764910200001.csv", header, rows)
    return Written(
        "salesforce_classic",
        ["--source", str(folder), "--preset", "salesforce"],
        *_identity(org),
        ("stage_history", "leads", "activities", "accounts", "spend", "revenue"),
    )


# ---------------------------------------------------------------------------------------------
# HubSpot
# ---------------------------------------------------------------------------------------------

HUBSPOT_STAGES = {"Engaging": "118436041", "Qualifying": "118436042", "Negotiating": "118436043"}
HUBSPOT_CLOSED = {WON: "closedwon", LOST: "closedlost"}


def _epoch_ms(ts) -> str:
    return str(int(pd.Timestamp(ts).value // 1_000_000))


def _hs_time(ts) -> str:
    return "" if pd.isna(ts) else f"{pd.Timestamp(ts):%Y-%m-%dT%H:%M:%S.%f}"[:-3] + "Z"


def write_hubspot(org: Org, folder: Path) -> Written:
    """A CRM export through the API: internal property names, numeric owner and record ids.

    The deals sit in a custom pipeline whose open stages have numeric internal ids; their labels
    come from a preset options file (``stage_labels``). ``hs_date_entered_<stage>`` columns give
    the stage history. Read with command-line options (``--preset hubspot --options``).
    owners, deals, companies, calls (``hs_timestamp`` in epoch milliseconds) and meetings;
    missing: contacts (no leads), emails, spend, revenue.
    """
    folder.mkdir(parents=True, exist_ok=True)
    owners = {r: str(61_200_000 + 17 * n) for n, r in enumerate(org["reps"]["rep_id"])}
    deal_ids = {
        o: str(18_000_000_000 + 37 * n)
        for n, o in enumerate(org["opportunities"]["opportunity_id"])
    }
    company_ids = {
        a: str(9_100_000_000 + 11 * n) for n, a in enumerate(org["accounts"]["account_id"])
    }
    _write_csv(
        folder / "owners.csv",
        [
            {
                "id": owners[r.rep_id],
                "email": r.email,
                "firstName": r.rep_name.split(" ", 1)[0],
                "lastName": r.rep_name.split(" ", 1)[1],
                "userId": str(7_700_000 + n),
                "primaryTeamName": r.team_id,
                "archived": "false",
                "createdAt": _hs_time(r.start_at),
            }
            for n, r in enumerate(org["reps"].itertuples())
        ],
    )
    entered = org["stage_history"].pivot_table(
        index="opportunity_id", columns="stage", values="entered_at", aggfunc="first"
    )
    internal = {**HUBSPOT_STAGES, **HUBSPOT_CLOSED}
    rows = []
    for o in org["opportunities"].itertuples():
        row = {
            "hs_object_id": deal_ids[o.opportunity_id],
            "dealname": f"{o.account_id} – {o.created_at:%B %Y}",
            "pipeline": "118436040",
            "dealstage": internal[o.stage],
            "amount": "" if pd.isna(o.amount) else f"{o.amount:g}",
            "deal_currency_code": CURRENCY,
            "createdate": _hs_time(o.created_at),
            "closedate": _hs_time(o.closed_at if o.is_closed else o.expected_close_at),
            "hubspot_owner_id": owners[o.owner_rep_id],
            "hs_is_closed_won": str(o.is_won).lower(),
            "hs_is_closed": str(o.is_closed).lower(),
            "associatedcompanyid": company_ids[o.account_id],
        }
        for stage, key in internal.items():
            when = entered.at[o.opportunity_id, stage] if stage in entered else pd.NaT
            row[f"hs_v2_date_entered_{key}"] = _hs_time(when)
        rows.append(row)
    _write_csv(folder / "deals.csv", rows)
    _write_csv(
        folder / "companies.csv",
        [
            {
                "hs_object_id": company_ids[a.account_id],
                "name": a.account_name,
                "domain": "",
                "hubspot_owner_id": owners[a.owner_rep_id],
                "createdate": _hs_time(a.created_at),
                "type": "CUSTOMER",
                "industry": "FOOD_BEVERAGES",
            }
            for a in org["accounts"].itertuples()
        ],
    )
    calls, meetings = [], []
    for n, a in enumerate(org["activities"].itertuples()):
        deal = deal_ids[a.opportunity_id] if isinstance(a.opportunity_id, str) else ""
        if a.activity_type in ("meeting", "demo"):
            meetings.append(
                {
                    "hs_object_id": str(3_000_000 + n),
                    "hs_timestamp": _hs_time(a.occurred_at),
                    "hubspot_owner_id": owners[a.rep_id],
                    "hs_meeting_title": "Démo" if a.activity_type == "demo" else "Réunion",
                    "hs_meeting_outcome": "COMPLETED",
                    "hs_activity_type": "Demo" if a.activity_type == "demo" else "Discovery",
                    "associatedcontactid": "",
                    "associateddealid": deal,
                }
            )
        else:  # calls and emails were logged as calls in this portal
            calls.append(
                {
                    "hs_object_id": str(2_000_000 + n),
                    "hs_timestamp": _epoch_ms(a.occurred_at),
                    "hubspot_owner_id": owners[a.rep_id],
                    "hs_call_title": f"Appel {n}",
                    "hs_call_direction": "OUTBOUND",
                    "hs_call_status": "COMPLETED",
                    "associatedcontactid": "",
                    "associateddealid": deal,
                }
            )
    meetings.append(meetings[-1] | {"hs_object_id": "2999999", "hs_meeting_outcome": "NO_SHOW"})
    _write_csv(folder / "calls.csv", calls)
    _write_csv(folder / "meetings.csv", meetings)
    options = folder.parent / f"{folder.name}.options.yaml"
    labels = {v: k for k, v in HUBSPOT_STAGES.items()} | {
        "closedwon": "Closed won",
        "closedlost": "Closed lost",
    }
    options.write_text(yaml.safe_dump({"stage_labels": labels}, allow_unicode=True))
    return Written(
        "hubspot",
        ["--source", str(folder), "--preset", "hubspot", "--options", str(options)],
        {t: t for t in org["teams"]["team_id"]},
        owners,
        ("leads", "spend", "revenue"),
    )


def write_hubspot_xlsx(org: Org, folder: Path) -> Written:
    """The deals view exported with HubSpot's Export button as XLSX, and nothing else: UI
    labels, typed cells (Record ID and Amount are number cells, the dates date cells), owners
    by name in ``Deal owner``, stage labels (the org's open stages, ``Closed won`` / ``Closed
    lost``). Without a users export the reps are the deal owners, all in one team
    (``All reps``). Missing: stage history, leads, activities, accounts, spend, revenue.
    """
    from _exports import workbook

    folder.mkdir(parents=True, exist_ok=True)
    header = ["Record ID", "Deal Name", "Deal Stage", "Amount", "Close Date", "Create Date"]
    header += ["Deal owner", "Pipeline"]
    labels = {WON: "Closed won", LOST: "Closed lost"}
    rows = [
        [
            18_000_000_000 + 37 * n,
            f"{o.account_id} – {o.created_at:%B %Y}",
            labels.get(o.stage, o.stage),
            None if pd.isna(o.amount) else float(o.amount),
            pd.Timestamp(o.closed_at if o.is_closed else o.expected_close_at).to_pydatetime(),
            pd.Timestamp(o.created_at).to_pydatetime(),
            o.owner_rep_id,
            "Ventes",
        ]
        for n, o in enumerate(org["opportunities"].itertuples())
    ]
    workbook(folder / "hubspot-crm-exports-all-deals-2026-12-05.xlsx", {"Deals": (header, rows)})
    return Written(
        "hubspot_xlsx",
        ["--source", str(folder), "--preset", "hubspot"],
        {t: "All reps" for t in org["teams"]["team_id"]},
        {r: r for r in org["reps"]["rep_id"]},
        ("stage_history", "leads", "activities", "accounts", "spend", "revenue"),
    )


# ---------------------------------------------------------------------------------------------
# Column-mapped files
# ---------------------------------------------------------------------------------------------

COLMAP = {
    "tables": {
        "teams": {
            "file": "people.csv",
            "columns": {"team_id": "Office", "team_name": "Office"},
            "distinct": True,
        },
        "reps": {
            "file": "people.csv",
            "columns": {
                "rep_id": "Name",
                "rep_name": "Name",
                "team_id": "Office",
                "email": "Email",
                "start_at": "Start date",
            },
        },
        "accounts": {
            "file": "organizations.csv",
            "columns": {"account_id": "Name", "account_name": "Name", "owner_rep_id": "Owner"},
        },
        "opportunities": {
            "file": "deals.csv",
            "columns": {
                "opportunity_id": "Deal ID",
                "owner_rep_id": "Owner",
                "created_at": "Deal created",
                "closed_at": "Deal closed on",
                "expected_close_at": "Expected close date",
                "stage": "Stage",
                "amount": "Value",
                "currency": "Currency",
                "account_id": "Organization",
            },
            "outcome": {"from": "Status", "won": ["won"], "lost": ["lost"]},
        },
    }
}


def write_colmap(org: Org, folder: Path) -> Written:
    """A Pipedrive-like export (people, deals, organizations) and the column map beside it,
    which is passed as ``--source``.

    A won or lost deal keeps the pipeline stage it was in (``Status`` says how it ended), as in
    Pipedrive. Missing: leads, activities, stage history, spend, revenue.
    """
    folder.mkdir(parents=True, exist_ok=True)
    reps = org["reps"]
    _write_csv(
        folder / "people.csv",
        [
            {
                "Name": r.rep_name,
                "Email": r.email,
                "Office": r.team_id,
                "Start date": f"{r.start_at:%Y-%m-%d}",
                "Active": "Yes",
            }
            for r in reps.itertuples()
        ],
    )
    sh = org["stage_history"]
    last_open = sh[sh["stage"].isin(OPEN_STAGES)].groupby("opportunity_id")["stage"].last()
    _write_csv(
        folder / "deals.csv",
        [
            {
                "Deal ID": str(1000 + n),
                "Title": f"{o.account_id} deal",
                "Owner": o.owner_rep_id,
                "Organization": o.account_id,
                "Value": "" if pd.isna(o.amount) else f"{o.amount:.0f}",
                "Currency": CURRENCY,
                "Stage": last_open[o.opportunity_id],
                "Status": "won" if o.is_won else "lost" if o.is_closed else "open",
                "Deal created": f"{o.created_at:%Y-%m-%d %H:%M:%S}",
                "Deal closed on": ""
                if pd.isna(o.closed_at)
                else f"{o.closed_at:%Y-%m-%d %H:%M:%S}",
                "Expected close date": ""
                if pd.isna(o.expected_close_at)
                else f"{o.expected_close_at:%Y-%m-%d}",
            }
            for n, o in enumerate(org["opportunities"].itertuples())
        ],
    )
    _write_csv(
        folder / "organizations.csv",
        [
            {"Name": a.account_name, "Owner": a.owner_rep_id, "Label": a.segment}
            for a in org["accounts"].itertuples()
        ],
    )
    path = folder / "colmap.yaml"
    path.write_text(yaml.safe_dump(COLMAP, sort_keys=False, allow_unicode=True))
    return Written(
        "colmap",
        ["--source", str(path)],
        *_identity(org),
        ("leads", "activities", "stage_history", "spend", "revenue"),
    )


def recipients_for(
    written: Written, team: str = "Ventes Montréal", rep: str = "José Núñez"
) -> dict:
    """A recipients file for the org as ``written`` names it: an executive, the manager of
    ``team``, and ``rep``."""
    return {
        "sender": "Rapports ventes <rapports@fromagerie-lumiere.example>",
        "recipients": [
            {
                "email": "direction@fromagerie-lumiere.example",
                "name": "Hélène Marchand",
                "role": "executive",
            },
            {
                "email": "gestion.montreal@fromagerie-lumiere.example",
                "name": "Émile Gagné",
                "role": "manager",
                "team_id": written.team_ids[team],
            },
            {
                "email": "jose.nunez@fromagerie-lumiere.example",
                "name": rep,
                "role": "rep",
                "rep_id": written.rep_ids[rep],
            },
        ],
    }

"""Demo CRM data: a synthetic B2B SaaS sales org, as the canonical tables.

Six teams (an Enterprise and a Mid-Market team in North America, EMEA and APAC), about six
reps per team, and 36 months of history ending with the ``end`` month: leads, activities,
opportunities with their stage history, customer accounts, monthly subscription revenue and
sales/marketing spend. The numbers have a shape that reports can talk about: ~30% growth a
year, Q4 and quarter-end closing spikes, a summer dip, a skill spread between reps, new hires
ramping up, a few leavers, stale open deals and monthly logo churn.

Nothing happens after the end month: deals still in flight are open (``is_closed`` false,
``closed_at`` null), leads not yet qualified have a null ``qualified_at``. The data is clean;
data-quality faults are not injected here.

The generator is deterministic: the same ``seed``, ``end`` and ``scale`` give identical tables.
Internally every instant is a float of seconds since 1970 (``inf`` = never); the tables get
naive ``datetime64`` columns at the end.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kpi_lib.data.schema import TABLES
from kpi_lib.errors import ParamsError
from kpi_lib.periods import Period, last_complete_month

HISTORY_MONTHS = 36
WARMUP_MONTHS = 6  # simulated before the history so the first months have deals in flight
REPS_PER_TEAM = 6
FORMATS = ("duckdb", "csv", "parquet")

STAGES = (
    "Prospecting",
    "Discovery",
    "Demo",
    "Proposal",
    "Negotiation",
    "Closed Won",
    "Closed Lost",
)
OPEN_STAGES = 5
LEAD_SOURCES = ("inbound", "outbound", "referral", "event", "partner")
ACTIVITY_TYPES = ("call", "email", "meeting", "demo", "other")

DAY = 86_400.0
HOUR = 3_600.0
OPENS_AT, OPEN_HOURS = 8 * HOUR, 10 * HOUR  # business hours: 08:00 to 18:00, Monday to Friday
NEVER = np.inf

DEMAND_GROWTH = 1.19  # leads per rep per year; headcount growth adds the rest of ~30% a year
PRICE_GROWTH = 1.04  # deal size per year
# January..December
LEAD_SEASON = np.array([0.95, 1.0, 1.05, 1.0, 1.0, 0.95, 0.8, 0.75, 1.02, 1.1, 1.1, 0.85])
WIN_SEASON = np.array([0.9, 0.95, 1.05, 0.95, 1.0, 1.05, 0.85, 0.85, 1.05, 1.0, 1.2, 1.3])
BRAND_SEASON = np.array([1.0, 1.0, 1.1, 1.0, 1.3, 1.0, 0.8, 0.8, 1.1, 1.3, 1.1, 0.9])

SOURCE_QUALIFY = np.array([0.40, 0.30, 0.60, 0.42, 0.50])
SOURCE_CONVERT = np.array([0.55, 0.50, 0.65, 0.50, 0.60])
SOURCE_WIN = np.array([1.0, 0.8, 1.4, 0.9, 1.2])
LOST_AT_STAGE = np.array([0.25, 0.28, 0.20, 0.15, 0.12])  # where lost deals drop out

ACTIVITY_MIX = {
    "lead": np.array([0.50, 0.45, 0.0, 0.0, 0.05]),
    "deal": np.array([0.22, 0.33, 0.22, 0.15, 0.08]),
    "prospecting": np.array([0.42, 0.46, 0.06, 0.0, 0.06]),
    "leadership": np.array([0.30, 0.35, 0.30, 0.0, 0.05]),
}


@dataclass(frozen=True)
class Segment:
    """The economics of one sales segment; every amount in USD."""

    name: str
    leads_per_rep_month: float
    deal_median: float
    deal_sigma: float
    expansion_median: float
    cycle_median_days: float
    win_rate: float
    monthly_churn: float
    expansions_per_month: float
    legacy_accounts_per_rep: float
    rep_cost_per_month: float
    cost_per_lead: float
    lead_sources: tuple[float, ...]


SEGMENTS = (
    Segment(
        "Enterprise",
        11,
        80_000,
        0.5,
        24_000,
        70,
        0.21,
        0.009,
        0.05,
        26,
        21_000,
        420,
        (0.25, 0.35, 0.12, 0.15, 0.13),
    ),
    Segment(
        "Mid-Market",
        26,
        19_000,
        0.45,
        5_500,
        34,
        0.23,
        0.018,
        0.03,
        55,
        14_000,
        170,
        (0.45, 0.25, 0.10, 0.10, 0.10),
    ),
)
REGIONS = (  # team_id prefix, region name, demand relative to EMEA, legal suffixes
    ("na", "North America", 1.2, (" Inc.", " LLC", " Corp.", "", "")),
    ("emea", "EMEA", 1.0, (" Ltd", " GmbH", " SA", " AG", " BV", "")),
    ("apac", "APAC", 0.8, (" Pty Ltd", " Pte Ltd", " KK", " Ltd", "")),
)

FIRST_NAMES = (
    "Amira",
    "Ben",
    "Chloe",
    "Daniel",
    "Elena",
    "Farid",
    "Grace",
    "Hiroshi",
    "Isabel",
    "Jamal",
    "Katarzyna",
    "Liam",
    "Maya",
    "Nikhil",
    "Olivia",
    "Pedro",
    "Priya",
    "Quentin",
    "Rosa",
    "Samuel",
    "Sofia",
    "Tariq",
    "Uma",
    "Victor",
    "Wei",
    "Ximena",
    "Yusuf",
    "Zoe",
    "Aiko",
    "Bruno",
    "Carmen",
    "Dmitri",
    "Emeka",
    "Fatima",
    "Gabriel",
    "Hannah",
    "Ingrid",
    "Javier",
    "Kwame",
    "Leila",
    "Marcus",
    "Nadia",
    "Oscar",
    "Paula",
    "Rahul",
    "Sarah",
    "Tomas",
    "Valentina",
    "William",
    "Yara",
    "Ahmed",
    "Beatriz",
    "Chen",
    "Diana",
    "Ethan",
    "Freya",
    "Hamza",
    "Ivy",
    "Jonas",
    "Keiko",
    "Lucas",
    "Mei",
    "Noah",
    "Omar",
    "Lena",
    "Ravi",
    "Siobhan",
    "Thabo",
    "Anika",
    "Mateo",
)
LAST_NAMES = (
    "Haddad",
    "Okafor",
    "Nguyen",
    "Schmidt",
    "Rossi",
    "Tanaka",
    "Kowalski",
    "Garcia",
    "Patel",
    "Johansson",
    "Dubois",
    "Kim",
    "Mensah",
    "O'Brien",
    "Silva",
    "Ivanova",
    "Cohen",
    "Murphy",
    "Fernandez",
    "Chen",
    "Ali",
    "Novak",
    "Singh",
    "Andersen",
    "Moreau",
    "Yamamoto",
    "Brown",
    "Costa",
    "Hassan",
    "Jensen",
    "Kaur",
    "Lopez",
    "Müller",
    "Nakamura",
    "Osei",
    "Park",
    "Reyes",
    "Sato",
    "Tremblay",
    "Walker",
    "Zhang",
    "Bianchi",
    "Diallo",
    "Eriksson",
    "Fischer",
    "Gupta",
    "Horvat",
    "Ibrahim",
    "Khan",
    "Lindqvist",
    "Mahlaba",
    "Nowak",
    "Ortiz",
    "Petrov",
    "Quinn",
    "Rahman",
    "Suzuki",
    "Taylor",
    "Vargas",
    "Wright",
    "Yilmaz",
    "Abebe",
    "Bauer",
    "Castillo",
    "Das",
    "Evans",
    "Fontaine",
    "Greco",
    "Hughes",
    "Iyer",
)
NAME_PREFIXES = (
    "Blue",
    "North",
    "Silver",
    "Bright",
    "Iron",
    "Clear",
    "Red",
    "Green",
    "Summit",
    "River",
    "Stone",
    "Sky",
    "Oak",
    "Pine",
    "Cedar",
    "Harbor",
    "Maple",
    "Granite",
    "Swift",
    "True",
    "Golden",
    "Lake",
    "Wind",
    "Star",
    "Sun",
    "Ever",
    "Fair",
    "High",
    "Wild",
    "Bay",
)
NAME_ROOTS = (
    "peak",
    "field",
    "gate",
    "bridge",
    "point",
    "stone",
    "wave",
    "line",
    "path",
    "well",
    "brook",
    "ridge",
    "view",
    "crest",
    "forge",
    "light",
    "works",
    "port",
    "haven",
    "mark",
    "wood",
    "leaf",
    "spring",
    "vale",
    "rock",
    "side",
    "shore",
    "dale",
    "grove",
    "land",
)
INDUSTRIES = (
    "Logistics",
    "Analytics",
    "Health",
    "Foods",
    "Energy",
    "Robotics",
    "Software",
    "Systems",
    "Labs",
    "Capital",
    "Insurance",
    "Retail",
    "Media",
    "Manufacturing",
    "Biotech",
    "Networks",
    "Solutions",
    "Learning",
    "Mobility",
    "Materials",
    "Pharma",
    "Telecom",
    "Security",
    "Travel",
    "Holdings",
    "Outdoor",
    "Apparel",
    "Consulting",
    "Engineering",
    "Payments",
    "Realty",
    "Marine",
    "Aerospace",
    "Dynamics",
    "Partners",
    "Studios",
    "Technologies",
    "Group",
    "Markets",
    "Clinics",
)


# ---------------------------------------------------------------------------------------------
# Public API
# ---------------------------------------------------------------------------------------------


def generate_demo_tables(
    end: str | Period | None = None, seed: int = 7, scale: float = 1
) -> dict[str, pd.DataFrame]:
    """Generate the nine canonical tables of a demo B2B SaaS sales org.

    Parameters
    ----------
    end
        The last month of history (``'2026-10'``); a quarter or year means its last month.
        Default: the last complete month. The history covers the 36 months up to it.
    seed
        Seed of the random generator; the same seed, end and scale give identical tables.
    scale
        Multiplies the reps per team (6 at ``scale=1``) and so every volume; ``scale=10`` gives
        about 360 reps and 1.3 million activities. The number of teams and months is fixed.

    Returns
    -------
    dict[str, pandas.DataFrame]
        ``teams``, ``reps``, ``leads``, ``activities``, ``opportunities``, ``stage_history``,
        ``accounts``, ``revenue``, ``spend``, each with exactly the canonical columns of
        ``kpi_lib.data.schema.TABLES`` (ids and text as ``str``, ``*_at`` as naive ``datetime64``,
        ``is_*`` as ``bool``, amounts as ``float64``). Grains: one row per team, rep, lead,
        activity, opportunity, stage entered, account, account-month of revenue, and
        team-month-category of spend (brand marketing has a null ``team_id``).

    Example
    -------
    >>> tables = generate_demo_tables("2026-10")
    >>> tables["teams"]["team_id"].tolist()
    ['na-ent', 'na-mm', 'emea-ent', 'emea-mm', 'apac-ent', 'apac-mm']
    >>> tables["activities"]["occurred_at"].max() < pd.Timestamp("2026-11-01")
    True
    """
    clock = _Clock.ending(end)
    scale = _checked_scale(scale)
    rng = np.random.Generator(np.random.PCG64(seed))

    org = _make_org(rng, clock, scale)
    leads = _make_leads(rng, clock, org)
    new_deals, leads = _make_new_business(rng, clock, org, leads)
    accounts = _make_accounts(rng, clock, org, new_deals)
    expansions = _make_expansions(rng, clock, org, accounts)
    revenue = _make_revenue(clock, accounts, expansions)
    deals = _concat(new_deals, expansions)
    activities = _make_activities(rng, clock, org, leads, deals)
    spend = _make_spend(rng, clock, org, leads)

    raw = _assemble(org, leads, deals, accounts, revenue, activities, spend)
    return {name: _typed(name, raw[name]) for name in TABLES}


def write_demo_data(
    out: str | Path = "data/demo.duckdb",
    end: str | Period | None = None,
    seed: int = 7,
    scale: float = 1,
    fmt: str | None = None,
) -> Path:
    """Generate the demo tables and write them as a DuckDB file or a folder of CSV/Parquet.

    Parameters
    ----------
    out
        A DuckDB file (one table per canonical table, native types) or a folder that receives
        ``<table>.csv`` / ``<table>.parquet``; missing parent folders are created.
    end, seed, scale
        As for :func:`generate_demo_tables`.
    fmt
        ``'duckdb'``, ``'csv'`` or ``'parquet'``. Default: ``duckdb`` for a ``.duckdb`` / ``.db``
        path, ``csv`` for a path without a suffix.

    Returns
    -------
    pathlib.Path
        ``out``. Files are written under a temporary name and renamed at the end, so a killed
        run never leaves a half-written file (an existing DuckDB file is replaced whole).

    Example
    -------
    >>> write_demo_data("data/demo.duckdb", end="2026-10")
    PosixPath('data/demo.duckdb')
    """
    out = Path(out)
    fmt = _format_for(out, fmt)
    tables = generate_demo_tables(end=end, seed=seed, scale=scale)
    if fmt == "duckdb":
        _write_duckdb(tables, out)
    else:
        _write_folder(tables, out, fmt)
    return out


# ---------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------


def _format_for(out: Path, fmt: str | None) -> str:
    if fmt is None:
        suffix = out.suffix.lower()
        if suffix in (".duckdb", ".db"):
            return "duckdb"
        if suffix == "":
            return "csv"
        raise ParamsError(
            f"demo-data --out '{out}': cannot tell the format from '{suffix}'; "
            f"use a .duckdb file, a folder, or --format {'|'.join(FORMATS)}"
        )
    fmt = fmt.lower()
    if fmt not in FORMATS:
        raise ParamsError(f"demo-data --format '{fmt}' is not one of {', '.join(FORMATS)}")
    return fmt


def _temp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.tmp-{os.getpid()}")


def _write_duckdb(tables: dict[str, pd.DataFrame], out: Path) -> None:
    import duckdb

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_path(out)
    tmp.unlink(missing_ok=True)
    try:
        with duckdb.connect(str(tmp)) as con:
            for name, frame in tables.items():
                con.register("_frame", frame)
                con.execute(f'CREATE TABLE "{name}" AS SELECT * FROM _frame')
                con.unregister("_frame")
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
        Path(f"{tmp}.wal").unlink(missing_ok=True)


def _write_folder(tables: dict[str, pd.DataFrame], out: Path, fmt: str) -> None:
    # Every table goes to a temporary file first; the renames at the end take milliseconds, so
    # the folder never holds a half file nor (short of a kill in those milliseconds) a mix.
    out.mkdir(parents=True, exist_ok=True)
    written: list[tuple[Path, Path]] = []
    try:
        for name, frame in tables.items():
            final = out / f"{name}.{fmt}"
            tmp = _temp_path(final)
            if fmt == "csv":
                frame.to_csv(tmp, index=False, date_format="%Y-%m-%d %H:%M:%S")
            else:
                frame.to_parquet(tmp, index=False)
            written.append((tmp, final))
        for tmp, final in written:
            os.replace(tmp, final)
    finally:
        for tmp, _ in written:
            tmp.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------
# Time
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Clock:
    """The history window ``[start, horizon)`` and the warm-up before it, in seconds."""

    end: Period
    start: float
    horizon: float
    sim_start: float

    @classmethod
    def ending(cls, end: str | Period | None) -> _Clock:
        if end is None:
            end = last_complete_month()
        elif not isinstance(end, Period):
            end = Period.parse(end)
        end = end.months_in()[-1]
        first = end.start - pd.DateOffset(months=HISTORY_MONTHS - 1)
        warmup = first - pd.DateOffset(months=WARMUP_MONTHS)
        return cls(end, _seconds(first), _seconds(end.end), _seconds(warmup))

    def months(self, since: float | None = None) -> np.ndarray:
        """Month numbers (months since 1970-01) from ``since`` (default: history start) to end."""
        first = _month_of(np.array([self.start if since is None else since]))[0]
        last = _month_of(np.array([self.horizon - 1]))[0]
        return np.arange(first, last + 1)

    def years_since_start(self, t: np.ndarray) -> np.ndarray:
        return (t - self.start) / (365.25 * DAY)


def _seconds(ts: pd.Timestamp) -> float:
    return float(pd.Timestamp(ts).value // 10**9)


def _month_of(t: np.ndarray) -> np.ndarray:
    """Month number (months since 1970-01) of each finite instant."""
    secs = np.where(np.isfinite(t), t, 0).astype(np.int64)
    return secs.astype("datetime64[s]").astype("datetime64[M]").astype(np.int64)


def _month_start(month: np.ndarray) -> np.ndarray:
    return np.asarray(month).astype("datetime64[M]").astype("datetime64[s]").astype(np.float64)


def _month_of_year(t: np.ndarray) -> np.ndarray:
    """0 = January."""
    return _month_of(t) % 12


def _day_of_month(t: np.ndarray) -> np.ndarray:
    """0 = the first."""
    secs = np.where(np.isfinite(t), t, 0).astype(np.int64).astype("datetime64[s]")
    return (secs.astype("datetime64[D]") - secs.astype("datetime64[M]")).astype(np.int64)


def _business_instants(rng: np.random.Generator, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """A random instant on a weekday between 08:00 and 18:00 within ``[lo, hi)``, whole seconds.

    NaN where no business hour fits (or ``lo``/``hi`` is NaN). Every business day of the
    interval is equally likely; on the first and last day only the hours inside it count.
    """
    n = len(lo)
    known = np.isfinite(lo) & np.isfinite(hi)
    lo, hi = np.where(known, lo, 0.0), np.where(known, hi, DAY)
    lo_midnight, hi_midnight = np.floor(lo / DAY) * DAY, np.floor(hi / DAY) * DAY
    # move lo forward into business hours and hi back into them
    lo = np.where(
        lo - lo_midnight >= OPENS_AT + OPEN_HOURS,
        lo_midnight + DAY + OPENS_AT,
        np.maximum(lo, lo_midnight + OPENS_AT),
    )
    hi = np.where(
        hi - hi_midnight <= OPENS_AT,
        hi_midnight - DAY + OPENS_AT + OPEN_HOURS,
        np.minimum(hi, hi_midnight + OPENS_AT + OPEN_HOURS),
    )
    first = np.busday_offset(_days(lo), 0, roll="forward")
    last = np.busday_offset(_days(hi), 0, roll="backward")
    span = np.busday_count(first, last)
    pick = np.floor(rng.random(n) * (np.maximum(span, 0) + 1)).astype(np.int64)
    day = np.busday_offset(first, pick, roll="forward").astype(np.int64) * DAY
    opens = np.maximum(day + OPENS_AT, lo)
    closes = np.minimum(day + OPENS_AT + OPEN_HOURS - 1, hi)
    t = np.ceil(opens + rng.random(n) * (closes - opens))
    return np.where(known & (span >= 0) & (t < hi), t, np.nan)


def _days(t: np.ndarray) -> np.ndarray:
    return np.floor(t / DAY).astype(np.int64).astype("datetime64[D]")


def _ramp(age_seconds: np.ndarray) -> np.ndarray:
    """Productivity of a rep ``age`` after their start: 25% on day one, full after ~3 months."""
    return np.clip(0.25 + 0.75 * age_seconds / (90 * DAY), 0.25, 1.0)


def _lognormal(rng: np.random.Generator, median: np.ndarray | float, sigma: float, n: int):
    return rng.lognormal(np.log(median), sigma, n)


# ---------------------------------------------------------------------------------------------
# Org: teams and reps
# ---------------------------------------------------------------------------------------------


@dataclass
class _Org:
    team_ids: list[str]
    team_names: list[str]
    team_regions: list[str]
    team_segment: np.ndarray  # index into SEGMENTS
    team_demand: np.ndarray
    team_legal: list[tuple[str, ...]]
    rep_team: np.ndarray
    rep_names: np.ndarray
    rep_emails: np.ndarray
    rep_start: np.ndarray  # seconds, first working day
    rep_end: np.ndarray  # seconds, last working day (midnight); inf = still employed
    rep_quota: np.ndarray
    rep_skill: np.ndarray

    @property
    def rep_stop(self) -> np.ndarray:
        """First instant a rep no longer works (the day after ``end_at``)."""
        return self.rep_end + DAY

    def employed(self, rep: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Whether each rep works at instant ``t`` (False for NaN instants)."""
        return (t >= self.rep_start[rep]) & (t < self.rep_stop[rep])

    @property
    def rep_segment(self) -> np.ndarray:
        return self.team_segment[self.rep_team]

    def seg(self, field: str, segment: np.ndarray) -> np.ndarray:
        return np.array([getattr(s, field) for s in SEGMENTS])[segment]


def demo_teams() -> dict[str, str]:
    """``{team_id: team_name}`` of the demo org, whatever its seed, end and scale.

    Example
    -------
    >>> list(demo_teams().items())[:2]
    [('na-ent', 'North America Enterprise'), ('na-mm', 'North America Mid-Market')]
    """
    return {
        f"{prefix}-{short}": f"{region} {SEGMENTS[s].name}"
        for prefix, region, _, _ in REGIONS
        for s, short in enumerate(("ent", "mm"))
    }


def _make_org(rng: np.random.Generator, clock: _Clock, scale: float) -> _Org:
    teams = [
        (team_id, name, region, s, demand, legal)
        for (team_id, name), (region, s, demand, legal) in zip(
            demo_teams().items(),
            [(r, s, d, lg) for _, r, d, lg in REGIONS for s in range(2)],
            strict=True,
        )
    ]
    team_ids, team_names, team_regions, team_segment, team_demand, team_legal = (
        list(column) for column in zip(*teams, strict=True)
    )

    per_team = max(1, round(REPS_PER_TEAM * scale))
    n = len(team_ids) * per_team
    rep_team = np.repeat(np.arange(len(team_ids)), per_team)
    skill = rng.lognormal(0.0, 0.25, n)

    combos = len(FIRST_NAMES) * len(LAST_NAMES)
    pick = rng.choice(combos, size=n, replace=n > combos)
    first = np.array(FIRST_NAMES)[pick // len(LAST_NAMES)]
    last = np.array(LAST_NAMES)[pick % len(LAST_NAMES)]
    names = np.char.add(np.char.add(first, " "), last)
    emails = np.array([_email(f, la) for f, la in zip(first, last, strict=True)], dtype=object)
    if len(set(emails)) < n:  # only at very large scales: make them unique
        emails = np.array([e.replace("@", f"{i}@") for i, e in enumerate(emails)], dtype=object)

    order = rng.permutation(n)
    n_hires, n_leavers = round(0.25 * n), max(1, round(0.08 * n))
    n_team_leads = max(1, round(n / 18))
    hires = order[:n_hires]
    leavers = order[n_hires : n_hires + n_leavers]
    team_leads = order[n_hires + n_leavers : n_hires + n_leavers + n_team_leads]

    start = np.floor(clock.start / DAY - rng.uniform(90, 2200, n)) * DAY
    hire_lo, hire_hi = clock.start + 30 * DAY, clock.horizon - 90 * DAY
    start[hires] = _spread(rng, hire_lo, hire_hi, n_hires)
    end = np.full(n, NEVER)
    end[leavers] = _spread(rng, clock.start + 180 * DAY, clock.horizon - 30 * DAY, n_leavers)
    start = _weekday_on_or_after(start)
    end = _weekday_on_or_before(end)
    quota = np.ones(n, dtype=bool)
    quota[team_leads] = False

    return _Org(
        team_ids,
        team_names,
        team_regions,
        np.array(team_segment),
        np.array(team_demand),
        team_legal,
        rep_team,
        names,
        emails,
        start,
        end,
        quota,
        skill,
    )


def _spread(rng: np.random.Generator, lo: float, hi: float, n: int) -> np.ndarray:
    """``n`` random days spread evenly over ``[lo, hi)``: one in each n-th of the interval."""
    share = (np.arange(n) + rng.random(n)) / max(n, 1)
    return np.floor((lo + share * (hi - lo)) / DAY) * DAY


def _email(first: str, last: str) -> str:
    def clean(s: str) -> str:
        return "".join(c for c in s.lower().replace("ü", "u") if c.isalnum())

    return f"{clean(first)}.{clean(last)}@example.com"


def _weekday_on_or_after(t: np.ndarray) -> np.ndarray:
    """Midnight of the weekday on or after each instant (infinite instants stay so)."""
    return _roll_to_weekday(t, "forward")


def _weekday_on_or_before(t: np.ndarray) -> np.ndarray:
    """Midnight of the weekday on or before each instant (infinite instants stay so)."""
    return _roll_to_weekday(t, "backward")


def _roll_to_weekday(t: np.ndarray, roll: str) -> np.ndarray:
    finite = np.isfinite(t)
    days = np.floor(np.where(finite, t, 0.0) / DAY).astype(np.int64).astype("datetime64[D]")
    rolled = np.busday_offset(days, 0, roll=roll).astype(np.int64) * DAY
    return np.where(finite, rolled, t)


# ---------------------------------------------------------------------------------------------
# Leads and new business
# ---------------------------------------------------------------------------------------------


def _make_leads(rng: np.random.Generator, clock: _Clock, org: _Org) -> pd.DataFrame:
    """One row per lead, from the warm-up on: owner, created_at, source, qualified/converted."""
    months = clock.months(since=clock.sim_start)
    reps = np.flatnonzero(org.rep_quota)
    rep = np.repeat(reps, len(months))
    month = np.tile(months, len(reps))
    mid = _month_start(month) + 15 * DAY
    segment = org.rep_segment[rep]
    rate = (
        org.seg("leads_per_rep_month", segment)
        * org.team_demand[org.rep_team[rep]]
        * DEMAND_GROWTH ** clock.years_since_start(mid)
        * LEAD_SEASON[month % 12]
        * org.rep_skill[rep] ** 0.3
    )
    count = rng.poisson(rate)
    rep, month = np.repeat(rep, count), np.repeat(month, count)
    n = len(rep)
    created = _business_instants(rng, _month_start(month), _month_start(month + 1))
    keep = org.employed(rep, created) & (rng.random(n) < _ramp(created - org.rep_start[rep]))
    rep, created = rep[keep], created[keep]
    n = len(rep)
    segment = org.rep_segment[rep]

    mix = np.array([s.lead_sources for s in SEGMENTS])[segment]
    source = (rng.random(n)[:, None] > np.cumsum(mix, axis=1)).sum(axis=1)
    source = np.minimum(source, len(LEAD_SOURCES) - 1)

    delay = np.clip(_lognormal(rng, 5.0, 0.8, n), 0.2, 45) * DAY
    qualified = _business_instants(rng, created + delay, created + delay + 3 * DAY)
    qualified = np.where(rng.random(n) < SOURCE_QUALIFY[source], qualified, np.nan)
    delay = np.clip(_lognormal(rng, 4.0, 0.7, n), 0.2, 30) * DAY
    converted = _business_instants(rng, qualified + delay, qualified + delay + 3 * DAY)
    converted = np.where(rng.random(n) < SOURCE_CONVERT[source], converted, np.nan)

    stop = np.minimum(org.rep_stop[rep], clock.horizon)
    qualified = np.where(qualified < stop, qualified, np.nan)
    converted = np.where((converted < stop) & np.isfinite(qualified), converted, np.nan)
    return pd.DataFrame(
        {
            "rep": rep,
            "created": created,
            "source": source,
            "qualified": qualified,
            "converted": converted,
        }
    )


def _make_new_business(
    rng: np.random.Generator, clock: _Clock, org: _Org, leads: pd.DataFrame
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """One row per new-business opportunity (a converted lead), and the leads that remain.

    Warm-up deals that closed before the history starts are dropped with their leads; leads
    of the warm-up that did not become a kept deal are dropped too.
    """
    converted = leads.index[np.isfinite(leads["converted"].to_numpy())].to_numpy()
    lead = leads.loc[converted]
    rep = lead["rep"].to_numpy()
    created = lead["converted"].to_numpy()
    segment = org.rep_segment[rep]
    skill = org.rep_skill[rep]
    win = (
        org.seg("win_rate", segment)
        * skill**0.7
        * SOURCE_WIN[lead["source"].to_numpy()]
        * (0.6 + 0.4 * _ramp(created - org.rep_start[rep]))
    )
    amount = (
        org.seg("deal_median", segment)
        * rng.lognormal(0.0, org.seg("deal_sigma", segment))
        * skill**0.2
        * PRICE_GROWTH ** clock.years_since_start(created)
    )
    amount = np.maximum(1000, np.round(amount, -2))
    cycle = org.seg("cycle_median_days", segment)
    deals = _lifecycle(rng, clock, org, rep, created, win, cycle, (23, 120), stuck=0.015)
    deals["amount"] = amount
    deals["lead"] = converted
    deals["account"] = -1
    deals["segment"] = segment

    keep = ~(deals["closed"] < clock.start).to_numpy()
    deals = deals[keep].reset_index(drop=True)
    kept_leads = leads["created"].to_numpy() >= clock.start
    kept_leads[deals["lead"].to_numpy()] = True
    remap = np.cumsum(kept_leads) - 1
    deals["lead"] = remap[deals["lead"].to_numpy()]
    leads = leads[kept_leads].reset_index(drop=True)
    leads["deal"] = -1
    leads.loc[deals["lead"].to_numpy(), "deal"] = np.arange(len(deals))
    return deals, leads


def _lifecycle(
    rng: np.random.Generator,
    clock: _Clock,
    org: _Org,
    rep: np.ndarray,
    created: np.ndarray,
    win_rate: np.ndarray,
    cycle_median_days: np.ndarray | float,
    cycle_bounds: tuple[float, float],
    stuck: float,
) -> pd.DataFrame:
    """One row per deal: its path through the stages, as entry instants per stage.

    Won deals pass every stage; lost deals drop out after some stage; a few deals get stuck in
    a stage and never close (stale pipeline). Quarter ends pull some wins forward or push them
    to the last days of the quarter. Everything at or after the horizon, or after the owner
    left, has not happened: such deals are open in the stage they had reached.
    """
    n = len(rep)
    lo, hi = cycle_bounds
    cycle = np.clip(_lognormal(rng, cycle_median_days, 0.45, n), lo, hi) * DAY
    natural = created + cycle
    won = rng.random(n) < np.clip(win_rate * WIN_SEASON[_month_of_year(natural)], 0.02, 0.9)
    lost_at = np.minimum((rng.random(n)[:, None] > np.cumsum(LOST_AT_STAGE)).sum(axis=1), 4)
    is_stuck = rng.random(n) < stuck
    stuck_at = rng.integers(0, 4, n)
    last = np.where(is_stuck, stuck_at, np.where(won, 4, lost_at))
    won &= ~is_stuck
    shorter = (0.3 + 0.7 * (last + 1) / OPEN_STAGES) * rng.uniform(0.7, 1.0, n)
    close = created + np.where(won, 1.0, shorter) * cycle
    shifted = _quarter_end_timing(rng, close)
    ok = won & (shifted - created >= lo * DAY) & (shifted - created <= hi * DAY)
    close = np.where(ok, shifted, close)
    # a business hour in the three days before: cycles shrink by 1.5 days at most on average
    before = _business_instants(rng, np.maximum(close - 3 * DAY, created + HOUR), close + HOUR)
    after = _business_instants(rng, close, close + 4 * DAY)  # for deals lost within hours
    close = np.where(np.isfinite(before), before, after)

    in_stage = rng.gamma(2.0, 1.0, (n, OPEN_STAGES))
    in_stage[np.arange(OPEN_STAGES)[None, :] > last[:, None]] = 0.0
    share = np.cumsum(in_stage, axis=1) / in_stage.sum(axis=1, keepdims=True)
    entered = np.full((n, OPEN_STAGES + 1), NEVER)
    entered[:, 0] = created
    for stage in range(1, OPEN_STAGES):
        moved = created + (close - created) * share[:, stage - 1]
        on_duty = _business_instants(rng, moved, np.minimum(moved + 2 * DAY, close))
        anytime = _business_instants(rng, created, close)  # for deals that move within hours
        entered[:, stage] = np.where(
            np.isfinite(on_duty), on_duty, np.where(np.isfinite(anytime), anytime, np.ceil(moved))
        )
    entered[:, :OPEN_STAGES] = np.maximum.accumulate(entered[:, :OPEN_STAGES], axis=1)
    entered[:, :OPEN_STAGES][np.arange(OPEN_STAGES)[None, :] > last[:, None]] = NEVER
    entered[:, OPEN_STAGES] = np.where(is_stuck, NEVER, close)

    cutoff = np.minimum(org.rep_stop[rep], clock.horizon)
    entered[entered >= cutoff[:, None]] = NEVER
    reached = np.isfinite(entered)
    is_closed = reached[:, OPEN_STAGES]
    stage = np.where(
        is_closed,
        np.where(won, 5, 6),
        OPEN_STAGES - 1 - np.argmax(reached[:, OPEN_STAGES - 1 :: -1], axis=1),
    )
    frame = pd.DataFrame(
        {
            "rep": rep,
            "created": created,
            "is_closed": is_closed,
            "is_won": is_closed & won,
            "stage": stage,
            "closed": np.where(is_closed, close, np.nan),
            "activity_until": np.minimum(close, cutoff),
            "amount_draw": rng.random(n),
        }
    )
    for s in range(OPEN_STAGES + 1):
        frame[f"entered_{s}"] = entered[:, s]
    return frame


def _quarter_end_timing(rng: np.random.Generator, close: np.ndarray) -> np.ndarray:
    """Closes pulled into the quarter's last week (more so in Q4): end-of-quarter spikes."""
    n = len(close)
    month, moy, dom = _month_of(close), _month_of_year(close), _day_of_month(close)
    u = rng.random(n)
    pull = (moy % 3 == 0) & (dom < 20) & (u < np.where(moy == 0, 0.5, 0.3))
    push = (moy % 3 == 2) & (dom < 18) & (u < np.where(moy == 11, 0.45, 0.3))
    target = np.where(pull, month - 1, month)
    last_week = _month_start(target + 1) - rng.uniform(0.3, 6.0, n) * DAY
    return np.where(pull | push, last_week, close)


# ---------------------------------------------------------------------------------------------
# Accounts, expansions, revenue
# ---------------------------------------------------------------------------------------------


def _make_accounts(
    rng: np.random.Generator, clock: _Clock, org: _Org, deals: pd.DataFrame
) -> pd.DataFrame:
    """One row per account: the opening customer book, then one per new-business deal.

    Columns: owner, segment, created, mrr (monthly revenue once a customer), first and last
    revenue month (month numbers; ``first > last`` = never a customer).
    """
    veterans = np.flatnonzero(org.rep_quota & (org.rep_start < clock.start))
    count = rng.poisson(org.seg("legacy_accounts_per_rep", org.rep_segment[veterans]))
    owner = np.repeat(veterans, count)
    segment = org.rep_segment[owner]
    n_legacy = len(owner)
    earliest = np.maximum(org.rep_start[owner], clock.start - 1500 * DAY)
    legacy_created = _business_instants(rng, earliest, np.full(n_legacy, clock.start - 30 * DAY))
    legacy_mrr = np.round(
        0.85
        * org.seg("deal_median", segment)
        * rng.lognormal(0.0, org.seg("deal_sigma", segment))
        / 12,
        2,
    )
    first_month = _month_of(np.array([clock.start]))[0]

    won = deals["is_won"].to_numpy()
    deals_first = np.where(won, _month_of(deals["closed"].to_numpy()) + 1, np.iinfo(np.int32).max)
    accounts = pd.DataFrame(
        {
            "owner": np.concatenate([owner, deals["rep"].to_numpy()]),
            "segment": np.concatenate([segment, deals["segment"].to_numpy()]),
            "created": np.concatenate([legacy_created, deals["created"].to_numpy()]),
            "mrr": np.concatenate([legacy_mrr, np.round(deals["amount"].to_numpy() / 12, 2)]),
            "first_month": np.concatenate([np.full(n_legacy, first_month), deals_first]),
        }
    )
    churn = org.seg("monthly_churn", accounts["segment"].to_numpy())
    accounts["last_month"] = accounts["first_month"] + rng.geometric(churn) - 1
    deals["account"] = np.arange(n_legacy, len(accounts))
    accounts["name"] = _company_names(rng, org, accounts["owner"].to_numpy())
    return accounts


def _company_names(rng: np.random.Generator, org: _Org, owner: np.ndarray) -> np.ndarray:
    """Plausible, mostly unique company names with a legal suffix that fits the region."""
    n = len(owner)
    bases = len(NAME_PREFIXES) * len(NAME_ROOTS) * len(INDUSTRIES)
    pick = rng.choice(2 * bases, size=n, replace=n > 2 * bases)
    styled, base = pick // bases, pick % bases
    prefix = np.array(NAME_PREFIXES)[base // (len(NAME_ROOTS) * len(INDUSTRIES))]
    root = np.array(NAME_ROOTS)[(base // len(INDUSTRIES)) % len(NAME_ROOTS)]
    industry = np.array(INDUSTRIES)[base % len(INDUSTRIES)]
    # style 0: "Bluepeak Logistics"; style 1: "Blue Peak Logistics"
    joint = np.where(
        styled == 0,
        np.char.add(prefix, root),
        np.char.add(np.char.add(prefix, " "), np.char.capitalize(root)),
    )
    legal_choice = rng.random(n)
    legal = np.array(
        [
            org.team_legal[t][int(u * len(org.team_legal[t]))]
            for t, u in zip(org.rep_team[owner], legal_choice, strict=True)
        ]
    )
    return np.char.add(np.char.add(np.char.add(joint, " "), industry), legal)


def _make_expansions(
    rng: np.random.Generator, clock: _Clock, org: _Org, accounts: pd.DataFrame
) -> pd.DataFrame:
    """One row per expansion opportunity on a customer account, opened by its owner."""
    first = accounts["first_month"].to_numpy()
    last = np.minimum(accounts["last_month"].to_numpy(), clock.months()[-1])
    is_customer = first <= last
    idx = np.flatnonzero(is_customer)
    start = np.maximum(_month_start(first[idx]) + 60 * DAY, clock.start)
    stop = np.minimum(_month_start(last[idx] + 1), clock.horizon)
    months = np.maximum(stop - start, 0) / (30.4 * DAY)
    rate = org.seg("expansions_per_month", accounts["segment"].to_numpy()[idx])
    count = rng.poisson(rate * months)
    account = np.repeat(idx, count)
    created = _business_instants(rng, np.repeat(start, count), np.repeat(stop, count))
    owner = accounts["owner"].to_numpy()[account]
    keep = org.employed(owner, created)
    account, created, owner = account[keep], created[keep], owner[keep]
    n = len(account)
    segment = accounts["segment"].to_numpy()[account]
    win = 0.4 * org.rep_skill[owner] ** 0.5
    deals = _lifecycle(
        rng,
        clock,
        org,
        owner,
        created,
        win,
        org.seg("cycle_median_days", segment) * 0.6,
        (13, 90),
        stuck=0.01,
    )
    deals["amount"] = np.maximum(
        500, np.round(_lognormal(rng, org.seg("expansion_median", segment), 0.5, n), -2)
    )
    deals["lead"] = -1
    deals["account"] = account
    deals["segment"] = segment
    return deals


def _make_revenue(clock: _Clock, accounts: pd.DataFrame, expansions: pd.DataFrame) -> pd.DataFrame:
    """One row per account and month with revenue: base subscription plus won expansions."""
    history = clock.months()
    end_month = history[-1]
    last = np.minimum(accounts["last_month"].to_numpy(), end_month)
    base = _monthly(
        accounts.index.to_numpy(),
        accounts["first_month"].to_numpy(),
        last,
        accounts["mrr"].to_numpy(),
    )
    won = expansions[expansions["is_won"]]
    account = won["account"].to_numpy()
    upsell = _monthly(
        account,
        _month_of(won["closed"].to_numpy()) + 1,
        last[account],
        np.round(won["amount"].to_numpy() / 12, 2),
    )
    rows = pd.concat([base, upsell], ignore_index=True)
    rows = rows.groupby(["account", "month"], as_index=False, sort=True)["amount"].sum()
    return rows[rows["month"] >= history[0]].reset_index(drop=True)


def _monthly(account: np.ndarray, first: np.ndarray, last: np.ndarray, amount: np.ndarray):
    months = np.maximum(last - first + 1, 0)
    rows = np.repeat(np.arange(len(account)), months)
    offset = np.arange(len(rows)) - np.repeat(np.cumsum(months) - months, months)
    return pd.DataFrame(
        {"account": account[rows], "month": first[rows] + offset, "amount": amount[rows]}
    )


def _concat(*frames: pd.DataFrame) -> pd.DataFrame:
    return pd.concat(frames, ignore_index=True)


# ---------------------------------------------------------------------------------------------
# Activities and spend
# ---------------------------------------------------------------------------------------------


def _make_activities(
    rng: np.random.Generator, clock: _Clock, org: _Org, leads: pd.DataFrame, deals: pd.DataFrame
) -> pd.DataFrame:
    """One row per activity: lead follow-up, deal work, and daily prospecting / leadership."""
    parts = []

    # lead follow-up: from creation to qualification (or three weeks of trying)
    created = leads["created"].to_numpy()
    qualified = leads["qualified"].to_numpy()
    until = np.where(np.isfinite(qualified), qualified, created + 21 * DAY)
    count = 1 + rng.poisson(0.6, len(leads))
    idx = np.repeat(np.arange(len(leads)), count)
    parts.append(
        _activity_part(
            rng, leads["rep"].to_numpy()[idx], created[idx], until[idx], "lead", lead=idx
        )
    )

    # deal work: roughly one touch every five days while the deal is alive
    created = deals["created"].to_numpy()
    until = deals["activity_until"].to_numpy()
    count = 1 + rng.poisson(np.maximum(until - created, 0) / DAY * 0.2)
    idx = np.repeat(np.arange(len(deals)), count)
    parts.append(
        _activity_part(
            rng, deals["rep"].to_numpy()[idx], created[idx], until[idx], "deal", deal=idx
        )
    )

    # prospecting (and coaching for team leads), every working day
    days = np.arange(np.floor(clock.start / DAY), np.floor(clock.horizon / DAY)).astype(np.int64)
    days = days[np.is_busday(days.astype("datetime64[D]"))]
    n_reps = len(org.rep_team)
    rep = np.repeat(np.arange(n_reps), len(days))
    day = np.tile(days, n_reps) * DAY
    active = (day >= org.rep_start[rep]) & (day < org.rep_stop[rep])
    rep, day = rep[active], day[active]
    moy, dom = _month_of_year(day), _day_of_month(day)
    holiday = np.where((moy == 11) & (dom >= 22), 0.3, 1.0)
    rate = (
        np.where(org.rep_quota[rep], 2.2, 5.0)
        * LEAD_SEASON[moy]
        * holiday
        * org.rep_skill[rep] ** 0.5
        * _ramp(day - org.rep_start[rep])
    )
    count = rng.poisson(rate)
    rep, day = np.repeat(rep, count), np.repeat(day, count)
    for quota, kind in ((True, "prospecting"), (False, "leadership")):
        mine = org.rep_quota[rep] == quota
        parts.append(_activity_part(rng, rep[mine], day[mine], day[mine] + DAY, kind))

    acts = pd.concat(parts, ignore_index=True)
    t = acts["at"].to_numpy()
    r = acts["rep"].to_numpy()
    keep = (t >= clock.start) & (t < clock.horizon) & org.employed(r, t)
    return acts[keep].reset_index(drop=True)


def _activity_part(rng, rep, lo, hi, kind, lead=None, deal=None) -> pd.DataFrame:
    n = len(rep)
    mix = ACTIVITY_MIX[kind]
    kind_idx = np.minimum((rng.random(n)[:, None] > np.cumsum(mix)).sum(axis=1), len(mix) - 1)
    return pd.DataFrame(
        {
            "rep": rep,
            "at": _business_instants(rng, lo, hi),
            "type": kind_idx,
            "lead": np.full(n, -1) if lead is None else lead,
            "deal": np.full(n, -1) if deal is None else deal,
        }
    )


def _make_spend(rng: np.random.Generator, clock: _Clock, org: _Org, leads: pd.DataFrame):
    """One row per team, month and category (sales, marketing), plus company brand marketing."""
    months = clock.months()
    month_start, month_stop = _month_start(months), _month_start(months + 1)
    n_teams, n_months = len(org.team_ids), len(months)

    # sales: loaded cost of each rep for the share of the month they were employed
    overlap = np.minimum(org.rep_stop[:, None], month_stop[None, :]) - np.maximum(
        org.rep_start[:, None], month_start[None, :]
    )
    share = np.clip(overlap / (month_stop - month_start)[None, :], 0, 1)
    cost = org.seg("rep_cost_per_month", org.rep_segment)[:, None] * share
    sales = np.zeros((n_teams, n_months))
    np.add.at(sales, org.rep_team, cost)
    sales *= rng.normal(1.0, 0.03, sales.shape)

    # team marketing: programmes plus a cost per lead generated
    in_history = leads["created"].to_numpy() >= clock.start
    lead_team = org.rep_team[leads["rep"].to_numpy()[in_history]]
    lead_month = np.searchsorted(months, _month_of(leads["created"].to_numpy()[in_history]))
    lead_count = np.zeros((n_teams, n_months))
    np.add.at(lead_count, (lead_team, lead_month), 1)
    per_lead = org.seg("cost_per_lead", org.team_segment)[:, None]
    reps_per_team = np.bincount(org.rep_team, minlength=n_teams)[:, None]
    marketing = (lead_count * per_lead + 700 * reps_per_team) * rng.lognormal(0, 0.1, sales.shape)

    # brand: company level, growing with the company and heavier around events
    growth = DEMAND_GROWTH ** clock.years_since_start(month_start)
    brand = (
        3_500
        * len(org.rep_team)
        * growth
        * BRAND_SEASON[months % 12]
        * rng.lognormal(0, 0.08, n_months)
    )

    team = np.repeat(np.arange(n_teams), n_months)
    month = np.tile(months, n_teams)
    frames = [
        pd.DataFrame({"team": team, "month": month, "category": "sales", "amount": sales.ravel()}),
        pd.DataFrame(
            {"team": team, "month": month, "category": "marketing", "amount": marketing.ravel()}
        ),
        pd.DataFrame({"team": -1, "month": months, "category": "marketing", "amount": brand}),
    ]
    spend = pd.concat(frames, ignore_index=True)
    spend["amount"] = np.round(spend["amount"].to_numpy(), 2)
    spend = spend[spend["amount"] > 0]
    return spend.sort_values(["month", "team", "category"], kind="stable").reset_index(drop=True)


# ---------------------------------------------------------------------------------------------
# Assembly: ids, canonical columns, types
# ---------------------------------------------------------------------------------------------


def _assemble(org, leads, deals, accounts, revenue, activities, spend) -> dict[str, dict]:
    """Canonical columns as arrays: ids as text, instants as seconds (NaN/inf = null)."""
    n_reps = len(org.rep_team)
    rep_ids = _ids("R", np.arange(n_reps), max(3, len(str(n_reps))))
    team_ids = np.array(org.team_ids, dtype=object)

    lead_ids = _ranked_ids("L", leads["created"].to_numpy(), 6)
    deal_ids = _ranked_ids("O", deals["created"].to_numpy(), 6)
    account_ids = _ranked_ids("A", accounts["created"].to_numpy(), 6)
    activity_order = np.lexsort((activities["rep"].to_numpy(), activities["at"].to_numpy()))
    activities = activities.iloc[activity_order]

    segment_names = np.array([s.name for s in SEGMENTS], dtype=object)
    stage_names = np.array(STAGES, dtype=object)
    is_open = ~deals["is_closed"].to_numpy()
    early = is_open & (deals["stage"].to_numpy() <= 1)
    unknown = early & (deals["amount_draw"].to_numpy() < 0.15)  # no amount yet

    history = []
    for s in range(OPEN_STAGES + 1):
        at = deals[f"entered_{s}"].to_numpy()
        hit = np.flatnonzero(np.isfinite(at))
        if s == OPEN_STAGES:
            name = np.where(deals["is_won"].to_numpy()[hit], STAGES[5], STAGES[6])
        else:
            name = np.full(len(hit), STAGES[s], dtype=object)
        history.append(pd.DataFrame({"deal": hit, "stage": name, "at": at[hit], "step": s}))
    history = pd.concat(history, ignore_index=True)
    history["order"] = np.argsort(
        np.argsort(deals["created"].to_numpy(), kind="stable"), kind="stable"
    )[history["deal"].to_numpy()]
    history = history.sort_values(["order", "step"], kind="stable")
    # A deal that moves through stages within the same instant skipped them: like a CRM, record
    # only the stage it landed in (no entries tied at one timestamp).
    skipped = history["at"].to_numpy() == history.groupby("deal")["at"].shift(-1).to_numpy()
    history = history[~skipped]

    lead_deal = leads["deal"].to_numpy()
    deal_lead = deals["lead"].to_numpy()
    deal_order = np.argsort(deals["created"].to_numpy(), kind="stable")
    lead_order = np.argsort(leads["created"].to_numpy(), kind="stable")
    account_order = np.argsort(accounts["created"].to_numpy(), kind="stable")

    return {
        "teams": {
            "team_id": team_ids,
            "team_name": np.array(org.team_names, dtype=object),
            "region": np.array(org.team_regions, dtype=object),
        },
        "reps": {
            "rep_id": rep_ids,
            "rep_name": org.rep_names.astype(object),
            "team_id": team_ids[org.rep_team],
            "email": org.rep_emails,
            "start_at": org.rep_start,
            "end_at": org.rep_end,
            "is_quota_carrying": org.rep_quota,
        },
        "leads": _reorder(
            {
                "lead_id": lead_ids,
                "owner_rep_id": rep_ids[leads["rep"].to_numpy()],
                "created_at": leads["created"].to_numpy(),
                "source": np.array(LEAD_SOURCES, dtype=object)[leads["source"].to_numpy()],
                "qualified_at": leads["qualified"].to_numpy(),
                "converted_at": np.where(lead_deal >= 0, leads["converted"].to_numpy(), np.nan),
                "opportunity_id": _lookup(deal_ids, lead_deal),
            },
            lead_order,
        ),
        "activities": {
            "activity_id": _ids("ACT", np.arange(len(activities)), 8),
            "rep_id": rep_ids[activities["rep"].to_numpy()],
            "occurred_at": activities["at"].to_numpy(),
            "activity_type": np.array(ACTIVITY_TYPES, dtype=object)[activities["type"].to_numpy()],
            "lead_id": _lookup(lead_ids, activities["lead"].to_numpy()),
            "opportunity_id": _lookup(deal_ids, activities["deal"].to_numpy()),
        },
        "opportunities": _reorder(
            {
                "opportunity_id": deal_ids,
                "owner_rep_id": rep_ids[deals["rep"].to_numpy()],
                "created_at": deals["created"].to_numpy(),
                "stage": stage_names[deals["stage"].to_numpy()],
                "is_closed": deals["is_closed"].to_numpy(),
                "is_won": deals["is_won"].to_numpy(),
                "account_id": account_ids[deals["account"].to_numpy()],
                "lead_id": _lookup(lead_ids, deal_lead),
                "closed_at": deals["closed"].to_numpy(),
                # Open deals carry the close date their owner expects: a typical cycle after creation.
                "expected_close_at": np.where(
                    is_open,
                    deals["created"].to_numpy()
                    + org.seg("cycle_median_days", deals["segment"].to_numpy()) * 86_400.0,
                    np.nan,
                ),
                "amount": np.where(unknown, np.nan, deals["amount"].to_numpy()),
                "currency": np.full(len(deals), "USD", dtype=object),
            },
            deal_order,
        ),
        "stage_history": {
            "opportunity_id": deal_ids[history["deal"].to_numpy()],
            "stage": history["stage"].to_numpy(dtype=object),
            "entered_at": history["at"].to_numpy(),
        },
        "accounts": _reorder(
            {
                "account_id": account_ids,
                "account_name": accounts["name"].to_numpy().astype(object),
                "owner_rep_id": rep_ids[accounts["owner"].to_numpy()],
                "segment": segment_names[accounts["segment"].to_numpy()],
                "created_at": accounts["created"].to_numpy(),
            },
            account_order,
        ),
        "revenue": _reorder(
            {
                "account_id": account_ids[revenue["account"].to_numpy()],
                "recognized_at": _month_start(revenue["month"].to_numpy()),
                "amount": revenue["amount"].to_numpy(),
            },
            np.lexsort(
                (
                    account_ids[revenue["account"].to_numpy()].astype(str),
                    revenue["month"].to_numpy(),
                )
            ),
        ),
        "spend": {
            "spent_at": _month_start(spend["month"].to_numpy()),
            "category": spend["category"].to_numpy(dtype=object),
            "amount": spend["amount"].to_numpy(),
            "team_id": _lookup(team_ids, spend["team"].to_numpy()),
        },
    }


def _ids(prefix: str, numbers: np.ndarray, width: int) -> np.ndarray:
    return np.char.add(prefix, np.char.zfill((numbers + 1).astype(str), width)).astype(object)


def _ranked_ids(prefix: str, created: np.ndarray, width: int) -> np.ndarray:
    """Ids numbered in order of creation: the oldest row gets ``<prefix>000001``."""
    rank = np.empty(len(created), dtype=np.int64)
    rank[np.argsort(created, kind="stable")] = np.arange(len(created))
    return _ids(prefix, rank, max(width, len(str(len(created)))))


def _lookup(ids: np.ndarray, index: np.ndarray) -> np.ndarray:
    """``ids[index]``, with None where ``index`` is -1."""
    index = np.asarray(index)
    out = np.full(len(index), None, dtype=object)
    hit = index >= 0
    out[hit] = ids[index[hit]]
    return out


def _reorder(columns: dict[str, np.ndarray], order: np.ndarray) -> dict[str, np.ndarray]:
    return {name: values[order] for name, values in columns.items()}


def _typed(name: str, columns: dict[str, np.ndarray]) -> pd.DataFrame:
    """A frame with the canonical columns of ``name`` in spec order, each of its kind's dtype."""
    spec = TABLES[name]
    data = {}
    for column, kind in spec.columns.items():
        values = columns[column]
        if kind in ("id", "str"):
            data[column] = pd.Series(values, dtype="str")
        elif kind == "ts":
            finite = np.isfinite(values)
            stamps = np.where(finite, values, 0).astype(np.int64).astype("datetime64[s]")
            stamps = stamps.astype("datetime64[us]")
            stamps[~finite] = np.datetime64("NaT")
            data[column] = pd.Series(stamps)
        elif kind == "bool":
            data[column] = pd.Series(values, dtype=bool)
        else:
            data[column] = pd.Series(values, dtype="float64")
    return pd.DataFrame(data)


def _checked_scale(scale: float) -> float:
    try:
        value = float(scale)
    except (TypeError, ValueError) as exc:
        raise ParamsError(f"demo-data --scale '{scale}' is not a number") from exc
    if not np.isfinite(value) or value <= 0:
        raise ParamsError(f"demo-data --scale {scale}: must be a positive number (1 = 36 reps)")
    return value

"""What moved each change: revenue split into deal count and deal size, teams and reps, and sales
velocity split over its four factors; every split adds up to the change exactly.

Computed from a cube that holds P, P-1 and P-1y (a batch's cube does), once per batch, and saved
as ``drivers.csv``. One row per period x scope x KPI x comparison x driver:

- ``revenue``, drivers ``deals_won`` and ``deal_size``: with n won deals that carry an amount
  and their average size s, ``deals_won = (n1 - n0) * (s0 + s1) / 2`` and
  ``deal_size = (s1 - s0) * (n0 + n1) / 2`` (midpoint form); a side without deals takes the
  other side's average, so its deal-size effect is 0.
- ``revenue`` of the company, drivers ``team:<team_id>``; of a team, ``rep:<rep_id>``: each
  member's own change. Revenue that belongs to no team (or no rep of the team) would show as
  ``unassigned``, so the rows always add up.
- ``sales_velocity``, drivers ``open_deals``, ``win_rate``, ``deal_size``, ``cycle_time``:
  log-mean Divisia, ``effect_i = L(V1, V0) * ln(x1_i / x0_i)`` with
  ``L(a, b) = (a - b) / (ln a - ln b)``, ``L(a, a) = a``, and cycle time entering as
  ``1 / cycle``. When a factor is 0 or n/a on either side there is no split: one row with no
  driver and no effect, and ``note`` says why.

Example
-------
>>> revenue_bridge(n0=10, s0=100.0, n1=12, s1=90.0)
{'deals_won': 190.0, 'deal_size': -110.0}
"""

from __future__ import annotations

import math

import pandas as pd

from kpi_lib.metrics.compare import is_missing
from kpi_lib.periods import Period

DRIVER_COLUMNS = [
    "period",
    "scope",
    "scope_id",
    "kpi",
    "compared_with",
    "driver",
    "effect",
    "note",
]
COMPARISONS = ("previous", "year_ago")
VELOCITY_FACTORS = {
    "open_deals": "open_at_start",
    "win_rate": "win_rate",
    "deal_size": "avg_deal_size",
    "cycle_time": "sales_cycle_days",
}
"""Velocity's factors, named as drivers, and the KPI each reads (cycle time enters as 1/days)."""


def revenue_bridge(n0: float, s0: float, n1: float, s1: float) -> dict[str, float]:
    """Revenue's change from ``n0`` deals of average ``s0`` to ``n1`` deals of average ``s1``,
    split into the count and the size effect (midpoint form); they add up to
    ``n1 * s1 - n0 * s0``. A side with no deals (n = 0, s n/a) takes the other side's average.

    Example: from 10 deals of 100 to 12 of 90, +190 from deals won and -110 from deal size.
    """
    n0, n1 = float(n0 or 0), float(n1 or 0)
    if n0 == 0 or is_missing(s0):
        s0 = s1
    if n1 == 0 or is_missing(s1):
        s1 = s0
    if is_missing(s0):  # no deals on either side
        return {"deals_won": 0.0, "deal_size": 0.0}
    return {
        "deals_won": (n1 - n0) * (s0 + s1) / 2,
        "deal_size": (s1 - s0) * (n0 + n1) / 2,
    }


def log_mean(a: float, b: float) -> float:
    """The logarithmic mean ``(a - b) / (ln a - ln b)`` of two positive numbers, ``a`` when equal.

    Two numbers a few units in the last place apart (two velocities equal on paper, reached
    through different factors) have equal logarithms in floating point: their log difference is
    taken as ``log1p((a - b) / b)`` then, which keeps its digits (and never divides by 0)."""
    if a == b:
        return a
    step = (a - b) / b
    if abs(step) < 0.5:
        return (a - b) / math.log1p(step)
    return (a - b) / (math.log(a) - math.log(b))


def velocity_split(before: dict[str, float], now: dict[str, float]) -> tuple[dict, str]:
    """Sales velocity's change split over its factors (log-mean Divisia).

    ``before`` and ``now`` map each driver of ``VELOCITY_FACTORS`` to its KPI's value (open
    deals, win rate, average deal size, cycle days). Returns ``(effects, "")``, effects adding
    up to ``V1 - V0``, or ``({}, reason)`` when a factor is 0 or n/a.

    Example: ``velocity_split({...: 10, 0.5, 100, 50}, {...: 12, 0.5, 100, 50})`` puts all of
    the change, 10 -> 12 per day, on ``open_deals``.
    """
    for side, label in ((before, "the earlier period"), (now, "this period")):
        for driver, value in side.items():
            if is_missing(value) or value <= 0:
                shown = "n/a" if is_missing(value) else f"{value:g}"
                return {}, f"{driver.replace('_', ' ')} is {shown} in {label}: no split"
    x0 = {d: _factor(d, before[d]) for d in VELOCITY_FACTORS}
    x1 = {d: _factor(d, now[d]) for d in VELOCITY_FACTORS}
    v0, v1 = math.prod(x0.values()), math.prod(x1.values())
    weight = log_mean(v1, v0)
    return {d: weight * math.log(x1[d] / x0[d]) for d in VELOCITY_FACTORS}, ""


def _factor(driver: str, value: float) -> float:
    return 1.0 / float(value) if driver == "cycle_time" else float(value)


def compute_drivers(cube: pd.DataFrame, period: Period, reps: pd.DataFrame) -> pd.DataFrame:
    """The drivers of ``period``'s changes on P-1 and P-1y, for every scope of ``cube``.

    ``cube`` must hold the three periods (``compute_cube(src, [p.year_ago, p.previous, p])``
    or a batch's); ``reps`` maps ``rep_id`` to ``team_id``. One row per scope x KPI x
    comparison x driver, columns ``DRIVER_COLUMNS``; a comparison whose earlier period the cube
    lacks, or whose revenue is n/a (no amounts), has no rows; nor has velocity when the
    source cannot give it (``cube.attrs["unavailable"]``).

    Example
    -------
    >>> compute_drivers(cube, Period.parse("2026-10"), src.frame("reps"))  # doctest: +SKIP
    """
    velocity = "sales_velocity" not in cube.attrs.get("unavailable", {})
    cube = cube[cube["kpi"].isin(["revenue", "avg_deal_size", *VELOCITY_FACTORS.values()])]
    cube = cube.assign(scope_id=cube["scope_id"].astype(str))
    wide = cube.pivot_table(
        index=["period", "scope", "scope_id"],
        columns="kpi",
        values=["value", "denominator"],
        aggfunc="first",
        dropna=False,
    )
    known = set(wide.index.get_level_values("period"))
    table = wide.to_dict("index")
    scopes = cube.loc[cube["period"] == period.label, ["scope", "scope_id"]].drop_duplicates()
    team_of = dict(zip(reps["rep_id"].astype(str), reps["team_id"].astype(str), strict=True))
    rows: list[tuple] = []

    def figure(label: str, scope: str, scope_id: str, kpi: str, field: str = "value") -> float:
        return float(table.get((label, scope, scope_id), {}).get((field, kpi), math.nan))

    for compared_with, other in (("previous", period.previous), ("year_ago", period.year_ago)):
        if other.label not in known:
            continue
        revenue = {
            (s, i): (figure(other.label, s, i, "revenue"), figure(period.label, s, i, "revenue"))
            for s, i in scopes.itertuples(index=False)
        }

        def add(scope, scope_id, kpi, driver, effect, note="", compared_with=compared_with):
            rows.append((period.label, scope, scope_id, kpi, compared_with, driver, effect, note))

        for scope, scope_id in scopes.itertuples(index=False):
            r0, r1 = revenue[(scope, scope_id)]
            if not (is_missing(r0) or is_missing(r1)):
                n0 = figure(other.label, scope, scope_id, "avg_deal_size", "denominator")
                n1 = figure(period.label, scope, scope_id, "avg_deal_size", "denominator")
                s0 = figure(other.label, scope, scope_id, "avg_deal_size")
                s1 = figure(period.label, scope, scope_id, "avg_deal_size")
                for driver, effect in revenue_bridge(n0, s0, n1, s1).items():
                    add(scope, scope_id, "revenue", driver, effect)
                members = _members(scope, scope_id, scopes, team_of)
                if members:
                    total = 0.0
                    for kind, member in members:
                        m0, m1 = revenue.get((kind, member), (math.nan, math.nan))
                        if is_missing(m0) or is_missing(m1):
                            continue
                        add(scope, scope_id, "revenue", f"{kind}:{member}", m1 - m0)
                        total += m1 - m0
                    rest = (r1 - r0) - total
                    if abs(rest) > 1e-9 * max(abs(r0), abs(r1), 1.0):
                        add(scope, scope_id, "revenue", "unassigned", rest)
            before = {
                d: figure(other.label, scope, scope_id, k) for d, k in VELOCITY_FACTORS.items()
            }
            now = {d: figure(period.label, scope, scope_id, k) for d, k in VELOCITY_FACTORS.items()}
            if not velocity or all(is_missing(v) for v in (*before.values(), *now.values())):
                continue  # velocity unavailable (no amounts) or not defined at this scope
            effects, reason = velocity_split(before, now)
            if reason:
                reason = reason.replace("the earlier period", other.label).replace(
                    "this period", period.label
                )
                add(scope, scope_id, "sales_velocity", "", math.nan, reason)
            for driver, effect in effects.items():
                add(scope, scope_id, "sales_velocity", driver, effect)
    out = pd.DataFrame(rows, columns=DRIVER_COLUMNS)
    out["effect"] = out["effect"].astype("float64")
    return out


def _members(
    scope: str, scope_id: str, scopes: pd.DataFrame, team_of: dict[str, str]
) -> list[tuple[str, str]]:
    """The scopes a revenue change splits into: teams of the company, reps of a team."""
    if scope == "company":
        return [("team", i) for i in scopes.loc[scopes["scope"] == "team", "scope_id"]]
    if scope == "team":
        reps = scopes.loc[scopes["scope"] == "rep", "scope_id"]
        return [("rep", i) for i in reps if team_of.get(i) == scope_id]
    return []


def drivers_periods(period: Period) -> list[Period]:
    """The periods a cube needs for ``compute_drivers`` of ``period``: P-1y, P-1 and P."""
    return sorted({period.year_ago, period.previous, period})

"""Targets: business configuration from ``params/targets.yaml``, per KPI, scope and period.

The file maps a KPI name to defaults per scope and a list of overrides::

    revenue:                  # monthly targets; a quarter's or year's is the sum of its months
      company: 1200000
      team: 200000            # every team
      rep: 35000              # every rep
      overrides:
        - {period: "2026-12", scope: company, value: 1500000}
        - {scope_id: na-ent, value: 300000}                    # every period
        - {period: "2026-Q4", scope_id: R001, value: 150000}   # names the quarter itself
    win_rate: {company: 0.25, team: 0.25, rep: 0.25}           # ratios apply to any period as given

The most specific entry wins: period and scope_id, then period and scope, then scope_id, then
the scope default; an override with ``scope`` and no ``scope_id`` applies to that kind of scope
only. Additive KPIs (counts, sums) add up a quarter from its months and a year from its
quarters, unless an override names that quarter or year; other KPIs take the target as given.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kpi_lib.errors import ParamsError, PeriodError
from kpi_lib.metrics.registry import get_kpi
from kpi_lib.paths import read_yaml
from kpi_lib.periods import Period

SCOPES = ("company", "team", "rep")


@dataclass(frozen=True)
class Targets:
    """Parsed targets: ``{kpi: {"defaults": {scope: value}, "overrides": [...]}}``.

    Example
    -------
    >>> t = load_targets({"revenue": {"company": 100.0}})
    >>> t.resolve("revenue", Period.parse("2026-Q1"), "company", "all")
    300.0
    """

    entries: dict
    origin: str = "<targets>"

    @property
    def kpis(self) -> list[str]:
        return list(self.entries)

    def resolve(self, kpi: str, period: Period, scope: str, scope_id: str | None) -> float | None:
        """The target of ``kpi`` for one scope and period, or ``None`` when there is none.

        An override naming ``period`` wins; else a month (and any period of a ratio KPI) takes
        the scope's own target; else an additive KPI adds up the parts: a year its quarters, a
        quarter its months (``None`` when a part has no target).
        """
        entry = self.entries.get(kpi)
        if entry is None:
            return None
        exact = self._lookup(entry, period.label, scope, scope_id)
        if exact is not None:
            return exact
        if period.grain == "month" or not get_kpi(kpi).additive:
            return self._fallback(entry, scope, scope_id)
        parts = [self.resolve(kpi, part, scope, scope_id) for part in period.parts()]
        return None if any(v is None for v in parts) else float(sum(parts))

    @staticmethod
    def _lookup(entry: dict, label: str, scope: str, scope_id: str | None) -> float | None:
        """The override naming this period: with this scope_id first, then this kind of scope."""
        for rule in entry["overrides"]:
            if rule.get("period") == label and _names(rule, scope, scope_id):
                return rule["value"]
        for rule in entry["overrides"]:
            if rule.get("period") == label and _is_kind_rule(rule, scope):
                return rule["value"]
        return None

    @staticmethod
    def _fallback(entry: dict, scope: str, scope_id: str | None) -> float | None:
        """Without a period's override: the scope_id's own target, else the scope default."""
        for rule in entry["overrides"]:
            if "period" not in rule and _names(rule, scope, scope_id):
                return rule["value"]
        for rule in entry["overrides"]:
            if "period" not in rule and _is_kind_rule(rule, scope):
                return rule["value"]
        return entry["defaults"].get(scope)

    def series(self, kpi: str, scopes: pd.DataFrame, periods: list[Period]) -> np.ndarray:
        """Targets of ``kpi`` for every scope x period, NaN where none.

        ``scopes`` has one row per scope (``scope``, ``scope_id``); the result is scope-major:
        the targets of the first scope for every period, then of the next scope. Scopes that no
        override names share their scope default, so each kind of scope (``team``, or a named
        ``na-ent``) is resolved once per period.

        Example
        -------
        >>> t = load_targets({"revenue": {"team": 10.0, "overrides": [{"scope_id": "b", "value": 5.0}]}})
        >>> scopes = pd.DataFrame({"scope": ["team"] * 3, "scope_id": ["a", "b", "c"]})
        >>> t.series("revenue", scopes, [Period.parse("2026-01"), Period.parse("2026-Q1")])
        array([10., 30.,  5., 15., 10., 30.])
        """
        named = {
            r["scope_id"]
            for r in self.entries.get(kpi, {"overrides": []})["overrides"]
            if "scope_id" in r
        }
        ids = scopes["scope_id"].where(scopes["scope_id"].isin(list(named)), "")
        codes, kinds = pd.MultiIndex.from_arrays([scopes["scope"], ids]).factorize()
        table = np.array(
            [
                [self.resolve(kpi, period, scope, scope_id or None) for period in periods]
                for scope, scope_id in kinds
            ],
            dtype="float64",
        ).reshape(len(kinds), len(periods))
        return table[codes].ravel()

    def scope_ids(self) -> set[str]:
        """Every scope_id an override names (checked against the data by the cube)."""
        return {
            r["scope_id"] for e in self.entries.values() for r in e["overrides"] if "scope_id" in r
        }


def _names(rule: dict, scope: str, scope_id: str | None) -> bool:
    """Whether ``rule`` names this scope by id (and, when it says so, by kind).

    A scope no override names is resolved with ``scope_id=None``, which no rule names.
    """
    return (
        scope_id is not None
        and rule.get("scope_id") == scope_id
        and rule.get("scope", scope) == scope
    )


def _is_kind_rule(rule: dict, scope: str) -> bool:
    """Whether ``rule`` applies to every scope of this kind (a ``scope`` and no ``scope_id``)."""
    return "scope_id" not in rule and rule.get("scope") == scope


def load_targets(targets: str | Path | dict | Targets | None) -> Targets:
    """Read and check targets from a YAML path, a dict of the same shape, or nothing
    (``None`` or ``""``: no targets).

    Raises ``ParamsError`` naming the file and the entry at fault (unknown KPI, bad scope,
    bad period, non-numeric value).
    """
    if isinstance(targets, Targets):
        return targets
    if targets is None or (isinstance(targets, str) and not targets):
        return Targets({})
    origin = "<targets>"
    if not isinstance(targets, dict):
        path = Path(targets)
        origin = str(path)
        targets = read_yaml(path, "targets file")
    entries = {}
    for kpi, spec in targets.items():
        try:
            get_kpi(str(kpi))
        except ParamsError as exc:
            raise ParamsError(f"{origin}: {exc}") from None
        if not isinstance(spec, dict):
            spec = {scope: spec for scope in SCOPES}
        unknown = set(spec) - {*SCOPES, "overrides"}
        if unknown:
            raise ParamsError(
                f"{origin}: {kpi}: unknown key(s) {sorted(unknown)}; use company, team, rep, overrides"
            )
        defaults = {s: _number(origin, kpi, s, spec[s]) for s in SCOPES if spec.get(s) is not None}
        overrides = [_rule(origin, kpi, i, r) for i, r in enumerate(spec.get("overrides") or [])]
        entries[str(kpi)] = {"defaults": defaults, "overrides": overrides}
    return Targets(entries, origin)


def _number(origin: str, kpi: str, where: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ParamsError(f"{origin}: {kpi}: {where}: target {value!r} is not a number")
    return float(value)


def _rule(origin: str, kpi: str, i: int, rule) -> dict:
    where = f"overrides[{i}]"
    if not isinstance(rule, dict) or "value" not in rule:
        raise ParamsError(f"{origin}: {kpi}: {where}: expected a mapping with a 'value'")
    unknown = set(rule) - {"period", "scope", "scope_id", "value"}
    if unknown:
        raise ParamsError(f"{origin}: {kpi}: {where}: unknown key(s) {sorted(unknown)}")
    out = {"value": _number(origin, kpi, where, rule["value"])}
    if "period" in rule:
        try:
            out["period"] = Period.parse(str(rule["period"])).label
        except PeriodError as exc:
            raise ParamsError(f"{origin}: {kpi}: {where}: {exc}") from None
    if "scope" in rule:
        if rule["scope"] not in SCOPES:
            raise ParamsError(f"{origin}: {kpi}: {where}: scope must be one of {', '.join(SCOPES)}")
        out["scope"] = rule["scope"]
    if "scope_id" in rule:
        out["scope_id"] = str(rule["scope_id"])
    if "scope" not in out and "scope_id" not in out:
        raise ParamsError(f"{origin}: {kpi}: {where}: name a scope or a scope_id")
    return out

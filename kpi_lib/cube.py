"""The KPI cube: every KPI of the registry, for every period and scope, in one tidy table.

Measures are computed once in the database (``kpi_lib.measures``), rolled up from reps to
teams and the company, and the registry's expressions turn them into KPIs.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import ibis
import numpy as np
import pandas as pd
import yaml
from ibis import _

from kpi_lib._paths import project_path
from kpi_lib.errors import ParamsError
from kpi_lib.measures import Window, compute_measures
from kpi_lib.periods import Period, parse_as_of, parse_periods
from kpi_lib.registry import HIDDEN, REGISTRY, Count, Derived, Kpi, Ratio, ratio
from kpi_lib.sources import Source, load_source
from kpi_lib.targets import Targets, load_targets

CUBE_COLUMNS = ["period", "scope", "scope_id", "kpi", "value", "numerator", "denominator", "target"]
DEFAULT_TARGETS = "params/targets.yaml"
DEFAULT_SETTINGS = "params/kpis.yaml"
_BUILTIN_SETTINGS = {
    "gross_margin": 1.0,
    "stage_probabilities": {
        "Prospecting": 0.1,
        "Discovery": 0.2,
        "Demo": 0.4,
        "Proposal": 0.6,
        "Negotiation": 0.8,
    },
}


def load_settings(settings: str | Path | dict | None = DEFAULT_SETTINGS) -> dict:
    """KPI parameters (``gross_margin``, ``stage_probabilities``) over the built-in defaults."""
    if settings is None:
        return dict(_BUILTIN_SETTINGS)
    if not isinstance(settings, dict):
        path = project_path(settings)
        if not path.exists():
            if str(settings) == DEFAULT_SETTINGS:
                return dict(_BUILTIN_SETTINGS)
            raise ParamsError(f"settings file '{settings}' does not exist")
        try:
            settings = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            raise ParamsError(f"{path}: not valid YAML: {exc}") from exc
    unknown = set(settings) - set(_BUILTIN_SETTINGS)
    if unknown:
        raise ParamsError(
            f"KPI settings: unknown key(s) {sorted(unknown)}; known: {list(_BUILTIN_SETTINGS)}"
        )
    merged = {**_BUILTIN_SETTINGS, **settings}
    margin = merged["gross_margin"]
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 < margin <= 1:
        raise ParamsError(f"KPI settings: gross_margin must be a number in (0, 1], got {margin!r}")
    return merged


def compute_cube(
    source: str | Path | dict | Source,
    periods: str | Sequence[Period],
    as_of=None,
    targets: str | Path | dict | Targets | None = DEFAULT_TARGETS,
    settings: str | Path | dict | None = DEFAULT_SETTINGS,
) -> pd.DataFrame:
    """Compute every KPI for every period of ``periods`` at company, team and rep scope.

    Parameters
    ----------
    source
        Anything ``load_source`` takes: ``"data/demo.duckdb"``, a folder of CSV files, a dict
        of DataFrames, or a loaded ``Source``.
    periods
        ``"2026-10"``, ``"2026-Q3"`` (Jul 1 to Sep 30), ``"2026"``, a range ``"2026-01:2026-06"``,
        or a list of ``Period`` of one grain.
    as_of
        The report date (``"2026-11-28"``): rows dated after the end of that day are not known
        yet (a deal won later is still open). Default: today.
    targets
        ``params/targets.yaml`` (default; none when the file is absent), a dict of that shape,
        or ``None``.
    settings
        ``params/kpis.yaml``: ``gross_margin`` for CLV (default 1.0) and stage probabilities.

    Returns
    -------
    DataFrame
        One row per period x scope x scope_id x kpi, with ``value``, ``numerator``,
        ``denominator`` and ``target`` (NaN = n/a). ``attrs["unavailable"]`` maps each KPI
        whose inputs are missing to the reason.

    Example
    -------
    >>> cube = compute_cube("data/demo.duckdb", "2026-10")                      # doctest: +SKIP
    >>> cube.query("scope == 'company' and kpi == 'win_rate'")[["value"]]       # doctest: +SKIP
    """
    wanted = parse_periods(periods) if isinstance(periods, str) else list(periods)
    as_of_end = parse_as_of(as_of)
    src = load_source(source)
    if len({p.grain for p in wanted}) != 1:
        raise ParamsError("periods of one cube must share one grain (months, quarters or years)")
    default_targets = isinstance(targets, str | Path) and str(targets) == DEFAULT_TARGETS
    if default_targets:
        path = project_path(targets)
        targets = path if path.exists() else None
    target_set = load_targets(targets)
    config = load_settings(settings)
    notes = _check_target_scopes(target_set, src, strict=not default_targets)

    first = min(wanted).year_ago
    window_periods = [first]
    while window_periods[-1] < max(wanted):
        window_periods.append(window_periods[-1].shift(1))
    window = Window(tuple(window_periods), as_of_end)

    probabilities = {**config["stage_probabilities"], **src.settings.get("stage_probabilities", {})}
    order = stage_order(src)
    measures = compute_measures(src, window, probabilities, order)
    grid = _rollup(src, measures, window_periods)
    values, unavailable, target_series = _evaluate(
        src, grid, window_periods, target_set, config, order
    )
    cube = _assemble(values, target_series, wanted, unavailable)
    cube.attrs["unavailable"] = unavailable
    cube.attrs["findings"] = [str(f) for f in src.findings] + notes
    return cube


def _check_target_scopes(targets: Targets, src: Source, strict: bool) -> list[str]:
    """Target overrides must name teams or reps of the source.

    A targets file given explicitly is checked strictly (``ParamsError``); the default
    ``params/targets.yaml``, written for the demo org, only yields a note when the source is
    another org's data, so that pointing the kit at new data never fails on demo targets.
    """
    known = set(src.frame("teams")["team_id"]) | set(src.frame("reps")["rep_id"]) | {"all"}
    unknown = sorted(targets.scope_ids() - known)
    if unknown and strict:
        raise ParamsError(f"{targets.origin}: overrides name unknown scope_id(s) {unknown}")
    if unknown:
        return [
            f"{targets.origin}: overrides for scope_id(s) {unknown} match no team or rep; ignored"
        ]
    return []


def scope_rows(src: Source) -> pd.DataFrame:
    """One row per scope: ``scope, scope_id`` for the company, every team and every rep."""
    teams = src.frame("teams")["team_id"].astype(str)
    reps = src.frame("reps")["rep_id"].astype(str)
    return pd.DataFrame(
        {
            "scope": ["company"] + ["team"] * len(teams) + ["rep"] * len(reps),
            "scope_id": ["all", *teams, *reps],
        }
    )


def _rollup(src: Source, measures: pd.DataFrame, periods: list[Period]) -> pd.DataFrame:
    """Measures per (scope, scope_id, period_start), one column per measure, 0 where no rows."""
    rep_team = src.frame("reps").set_index("rep_id")["team_id"]
    m = measures.copy()
    m["team_id"] = m["team_id"].fillna(m["rep_id"].map(rep_team))
    keys = ["period_start", "measure"]
    parts = [
        m.groupby(keys, as_index=False)["value"].sum().assign(scope="company", scope_id="all"),
        m.dropna(subset=["team_id"])
        .groupby(["team_id", *keys], as_index=False)["value"]
        .sum()
        .rename(columns={"team_id": "scope_id"})
        .assign(scope="team"),
        m.dropna(subset=["rep_id"])
        .groupby(["rep_id", *keys], as_index=False)["value"]
        .sum()
        .rename(columns={"rep_id": "scope_id"})
        .assign(scope="rep"),
    ]
    long = pd.concat(parts, ignore_index=True)
    long["scope_id"] = long["scope_id"].astype(str)
    wide = long.pivot_table(
        index=["scope", "scope_id", "period_start"],
        columns="measure",
        values="value",
        aggfunc="sum",
    )
    scopes = scope_rows(src)
    full = pd.MultiIndex.from_tuples(
        [(s, i, p.start) for s, i in scopes.itertuples(index=False) for p in periods],
        names=["scope", "scope_id", "period_start"],
    )
    wide.index = (
        wide.index.set_levels(
            pd.to_datetime(wide.index.levels[2]).astype("datetime64[ns]"), level=2
        )
        if len(wide)
        else wide.index
    )
    full = full.set_levels(pd.to_datetime(full.levels[2]).astype("datetime64[ns]"), level=2)
    return wide.reindex(full).fillna(0.0)


def _missing(src: Source, need: str) -> str | None:
    """Why ``need`` (``table`` or ``table.column``) is unavailable, or None when it is there."""
    table, _, column = need.partition(".")
    if not src.has(table):
        return f"table '{table}'"
    if column and not src.has_column(table, column):
        return f"column '{need}'"
    return None


def _missing_inputs(src: Source, kpi: Kpi) -> list[str]:
    return [m for m in (_missing(src, need) for need in kpi.inputs) if m]


def _evaluate(
    src: Source,
    grid: pd.DataFrame,
    periods: list[Period],
    targets: Targets,
    config: dict,
    stage_order: list[str],
):
    """Every KPI's value, numerator and denominator over the grid, and the unavailable ones."""
    index = grid.index
    months = periods[0].months
    nan = pd.Series(np.nan, index=index)
    values: dict[str, tuple[pd.Series, pd.Series, pd.Series]] = {}
    unavailable: dict[str, str] = {}

    target_series = {kpi: targets.series(kpi, index, periods[0].grain) for kpi in targets.kpis}

    def measure(name: str) -> pd.Series:
        return grid[name] if name in grid else pd.Series(0.0, index=index)

    def get(name: str, shift: int = 0, year_ago: bool = False) -> pd.Series:
        if name == "_gross_margin":
            series = pd.Series(float(config["gross_margin"]), index=index)
        elif name.startswith("_target:"):
            series = target_series.get(name.split(":", 1)[1], nan)
        else:
            series = values[name][0]
        offset = 12 if year_ago else -shift * months
        if offset == 0:
            return series
        moved = series.copy()
        moved.index = index.set_levels(index.levels[2] + pd.DateOffset(months=offset), level=2)
        return moved.reindex(index)

    stages = {c.split(":", 1)[1] for c in grid.columns if c.startswith("stage_exits:")}
    order = [s for s in stage_order if s in stages] + sorted(stages - set(stage_order))
    kpis: list[tuple[str, Kpi, Count | Ratio | Derived]] = [
        (k.name, k, k.expr) for k in HIDDEN.values()
    ]
    for k in REGISTRY.values():
        if k.per_stage:
            kpis += [(f"{k.name}:{s}", k, _for_stage(k.expr, s)) for s in order]
        else:
            kpis.append((k.name, k, k.expr))
    for name, kpi, expr in kpis:
        missing = _missing_inputs(src, kpi)
        if isinstance(expr, Derived):
            missing += [f"KPI '{d}'" for d in expr.depends if d in unavailable]
        if missing:
            if not name.startswith("_"):
                needs = ", ".join(dict.fromkeys(missing))
                unavailable[name] = f"needs {needs}, which the source lacks"
            values[name] = (nan, nan, nan)
            continue
        if isinstance(expr, Count):
            value = measure(expr.measure)
            result = (value, value, nan)
        elif isinstance(expr, Ratio):
            num, den = measure(expr.numerator) * expr.scale, measure(expr.denominator)
            result = (ratio(num, den), num, den)
        else:
            result = expr.fn(get)
        scopes = [
            s
            for s in kpi.scopes
            if not any(_missing(src, need) for need in kpi.scope_inputs.get(s, ()))
        ]
        in_scope = index.get_level_values("scope").isin(scopes)
        values[name] = tuple(pd.Series(np.where(in_scope, s, np.nan), index=index) for s in result)
    return values, unavailable, target_series


def _for_stage(expr: Ratio, stage: str) -> Ratio:
    return Ratio(f"{expr.numerator}:{stage}", f"{expr.denominator}:{stage}", expr.scale)


def stage_order(src: Source, stages: Sequence[str] | None = None) -> list[str]:
    """Open stages in pipeline order: by the mean position at which deals enter them.

    Example: ``['Prospecting', 'Discovery', 'Demo', 'Proposal', 'Negotiation']`` on the demo data.
    """
    if not src.has("stage_history"):
        return sorted(stages or [])
    sh = src.table("stage_history")
    position = ibis.row_number().over(group_by="opportunity_id", order_by=["entered_at", "stage"])
    rank = (
        sh.mutate(position=position)
        .group_by("stage")
        .aggregate(rank=_.position.mean())
        .order_by(["rank", "stage"])
        .to_pandas()
    )
    ordered = [s for s in rank["stage"] if stages is None or s in stages]
    return ordered + sorted(set(stages or []) - set(ordered))


def _assemble(
    values, target_series: dict[str, pd.Series], wanted: list[Period], unavailable
) -> pd.DataFrame:
    index = next(iter(values.values()))[0].index
    keep = index.get_level_values("period_start").isin([p.start for p in wanted])
    frames = []
    for name, (value, num, den) in values.items():
        if name.startswith("_"):
            continue
        target = pd.Series(np.nan, index=index)
        if name in target_series and name not in unavailable:
            target = target_series[name]
        frames.append(
            pd.DataFrame(
                {
                    "kpi": name,
                    "value": value,
                    "numerator": num,
                    "denominator": den,
                    "target": target,
                    "_row": np.arange(len(index)),
                    "_kpi": len(frames),
                },
                index=index,
            )[keep]
        )
    cube = pd.concat(frames).reset_index()
    labels = {p.start: p.label for p in wanted}
    cube["period"] = cube.pop("period_start").map(pd.Series(labels))
    period_rank = cube["period"].map({p.label: i for i, p in enumerate(wanted)})
    # Grid rows run scope by scope, period within scope: order period, scope row, KPI.
    cube = cube.assign(_p=period_rank).sort_values(["_p", "_row", "_kpi"], kind="stable")
    cube = cube.reset_index(drop=True)[CUBE_COLUMNS]
    for column in ("value", "numerator", "denominator", "target"):
        cube[column] = cube[column].astype("float64").replace([np.inf, -np.inf], np.nan)
    return cube

"""The KPI cube: every KPI of the registry, for every period and scope, in one tidy table.

Measures are computed once in the database (``kpi_lib.metrics.measures``), rolled up from reps to
teams and the company, and the registry's expressions turn them into KPIs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa

from kpi_lib.data.load import load_source
from kpi_lib.data.org import org_files
from kpi_lib.data.source import Source
from kpi_lib.errors import ParamsError
from kpi_lib.metrics import ranges
from kpi_lib.metrics.measures import Window, measure_frames, stage_positions
from kpi_lib.metrics.registry import HIDDEN, REGISTRY, Count, Derived, Kpi, Ratio, ratio
from kpi_lib.metrics.targets import Targets, load_targets
from kpi_lib.paths import project_path, read_yaml
from kpi_lib.periods import Period, parse_as_of, parse_periods

CUBE_COLUMNS = ["period", "scope", "scope_id", "kpi", "value", "numerator", "denominator", "target"]
RANGE_COLUMNS = ["band_low", "band_high", "unusual", "change_significant"]
"""What ``kpis.csv`` adds to the contract's columns (``ranges``): the normal range of the value,
whether the value is outside it, and whether a rate's change on P-1 is more than noise."""
BUILTIN_SETTINGS = {
    "gross_margin": 1.0,
    "stage_probabilities": {},
    "risks": {"quiet_days": 30, "stage_percentile": 0.9, "close_date_pushes": 2},
}
"""KPI settings of an org without its own ``kpis.yaml``: CLV on revenue, no stage probabilities
(the CRM export's are used where it carries them), and the thresholds of a deal at risk
(``kpi_lib.metrics.risks``): no activity for 30 days, longer in its stage than 90% of won
deals took, its close date pushed twice."""


def load_settings(settings: str | Path | dict | None = None) -> dict:
    """KPI parameters (``gross_margin``, ``stage_probabilities``) over the built-in defaults.

    ``settings`` is a ``kpis.yaml`` path, a dict of the same shape, or None (the built-in
    ``BUILTIN_SETTINGS``). Raises ``ParamsError`` naming the file for a bad file.

    Example
    -------
    >>> load_settings({"gross_margin": 0.8, "risks": {"quiet_days": 14}})["risks"]
    {'quiet_days': 14, 'stage_percentile': 0.9, 'close_date_pushes': 2}
    """
    origin = "KPI settings"
    if settings is None or str(settings) == "":
        settings = {}
    elif not isinstance(settings, dict):
        path = project_path(settings)
        origin = str(path)
        settings = read_yaml(path, "settings file")
    unknown = set(settings) - set(BUILTIN_SETTINGS)
    if unknown:
        raise ParamsError(
            f"{origin}: unknown key(s) {sorted(unknown)}; known: {list(BUILTIN_SETTINGS)}"
        )
    merged = {**BUILTIN_SETTINGS, **settings}
    margin = merged["gross_margin"]
    if isinstance(margin, bool) or not isinstance(margin, int | float) or not 0 < margin <= 1:
        raise ParamsError(f"{origin}: gross_margin must be a number in (0, 1], got {margin!r}")
    merged["stage_probabilities"] = _probabilities(origin, merged["stage_probabilities"])
    merged["risks"] = _risk_thresholds(origin, settings.get("risks"))
    return merged


def _risk_thresholds(origin: str, given) -> dict:
    """The thresholds of a deal at risk over the built-in ones, each checked: ``quiet_days``
    and ``close_date_pushes`` whole numbers from 1, ``stage_percentile`` a share in (0, 1)."""
    defaults = BUILTIN_SETTINGS["risks"]
    if given is None:
        return dict(defaults)
    if not isinstance(given, dict):
        raise ParamsError(f"{origin}: risks must map {list(defaults)} to values, got {given!r}")
    unknown = set(given) - set(defaults)
    if unknown:
        raise ParamsError(
            f"{origin}: risks: unknown key(s) {sorted(unknown)}; known: {list(defaults)}"
        )
    out = {**defaults, **given}
    for key in ("quiet_days", "close_date_pushes"):
        v = out[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ParamsError(f"{origin}: risks: {key} must be a whole number from 1, got {v!r}")
    share = out["stage_percentile"]
    if isinstance(share, bool) or not isinstance(share, int | float) or not 0 < share < 1:
        raise ParamsError(
            f"{origin}: risks: stage_percentile must be a share between 0 and 1 (0.9 for 90%), "
            f"got {share!r}"
        )
    out["stage_percentile"] = float(share)
    return out


def _probabilities(origin: str, given) -> dict[str, float]:
    """``{stage: probability in [0, 1]}``; a stage left empty (to review) has none."""
    if given is None:
        return {}
    if not isinstance(given, dict):
        raise ParamsError(f"{origin}: stage_probabilities must map stage names to 0..1")
    out = {}
    for stage, p in given.items():
        if p is None:
            continue
        if isinstance(p, bool) or not isinstance(p, int | float) or not 0 <= p <= 1:
            raise ParamsError(
                f"{origin}: stage_probabilities: '{stage}' must be a number in [0, 1], got {p!r}"
            )
        out[str(stage)] = float(p)
    return out


def org_settings(src: Source, settings: str | Path | dict | None = None) -> dict:
    """The KPI settings of the org of ``src``: ``settings`` when given, else its own
    ``kpis.yaml`` (``kpi_lib.data.org``), over the built-in ones; stages the settings leave out take
    the CRM export's probability where it has one (``src.settings``)."""
    if settings is None:
        settings = org_files(src).kpis
    config = load_settings(settings)
    from_crm = src.settings.get("stage_probabilities", {})
    config["stage_probabilities"] = {**from_crm, **config["stage_probabilities"]}
    return config


def compute_cube(
    source: str | Path | dict | Source,
    periods: str | Sequence[Period],
    as_of=None,
    targets: str | Path | dict | Targets | None = None,
    settings: str | Path | dict | None = None,
    with_ranges: bool = True,
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
        A targets YAML path or a dict of that shape (``{}``: none). Default: the org's own
        (``kpi_lib.data.org``: its source file's, the shipped ``params/`` for the demo, else none).
    settings
        A ``kpis.yaml`` path or dict: ``gross_margin`` for CLV and stage probabilities.
        Default: the org's own, else the built-in ones (``org_settings``).
    with_ranges
        Add the normal ranges and significance (``RANGE_COLUMNS``), which read a year more of
        data for months; False gives the contract's columns only (the benchmark's like for
        like with SQL that computes the figures alone).

    Returns
    -------
    DataFrame
        One row per period x scope x scope_id x kpi, with ``value``, ``numerator``,
        ``denominator`` and ``target`` (NaN = n/a), then ``band_low`` and ``band_high`` (the
        normal range of a month's value, ``ranges.normal_range``; NaN: fewer than 6 of the 12
        months before it have a value), ``unusual`` (the value is outside it; never for a
        month not over on the report date) and
        ``change_significant`` (a tested rate's change on P-1 is more than noise; NA: not
        tested). ``attrs["unavailable"]`` maps each KPI
        whose inputs are missing to the reason; ``attrs["config"]`` names the targets and
        settings files used and where they came from, ``attrs["settings"]`` the KPI settings,
        ``attrs["data_start"]`` the first period with any data when it is after the first
        period the cube looked at (P-1y of the first period asked for; for months, a year
        before that, which the bands read), else None.

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
    files = org_files(src)
    target_set = load_targets(files.targets if targets is None else targets)
    config = org_settings(src, settings)
    _check_target_scopes(target_set, src)

    first = min(wanted).year_ago
    if with_ranges and first.grain == "month":  # a band reads 12 months, each with its P-1y
        first = first.shift(-ranges.BAND_MONTHS)
    window_periods = [first]
    while window_periods[-1] < max(wanted):
        window_periods.append(window_periods[-1].shift(1))
    window = Window(tuple(window_periods), as_of_end)

    probabilities = config["stage_probabilities"]
    scopes = scope_rows(src)  # teams and reps read before the connection is busy
    index = _grid_index(scopes, window_periods)
    order, frames = measure_frames(src, window, probabilities)  # running in the database
    target_series = {
        kpi: pd.Series(target_set.series(kpi, scopes, window_periods), index=index)
        for kpi in target_set.kpis
    }
    grid = _rollup(src, frames, index, window_periods)
    values, unavailable = _evaluate(src, grid, window_periods, target_series, config, order)
    data_start = _data_start(grid, window_periods)
    context = (
        _ranges(values, window_periods, wanted, data_start, as_of_end) if with_ranges else None
    )
    cube = _assemble(values, target_series, wanted, unavailable, context)
    cube.attrs["data_start"] = data_start
    cube.attrs["unavailable"] = unavailable
    cube.attrs["findings"] = [str(f) for f in src.findings]
    cube.attrs["config"] = {
        "targets": _config_name(targets, files.targets),
        "kpis": _config_name(settings, files.kpis),
        "origin": files.origin,
        "has_targets": bool(target_set.kpis),
    }
    cube.attrs["settings"] = config
    return cube


DATA_MEASURES = ("opportunities_created", "closed_count", "leads_created", "activities")
"""Measures that say a period has data: deals created or closed, leads created, activities."""


def _data_start(grid: pd.DataFrame, periods: list[Period]) -> str | None:
    """The first period of the window in which the org has any data (``DATA_MEASURES`` or
    revenue), or None when the window's first period already has some (the data may start
    earlier) or none has any. Reports start their charts there, never on empty months before."""
    columns = [c for c in (*DATA_MEASURES, "account_revenue") if c in grid.columns]
    company = grid[columns].to_numpy(dtype="float64")[: len(periods)]  # the company's block
    active = np.flatnonzero(np.abs(company).sum(axis=1) > 0)
    if not len(active) or active[0] == 0:
        return None
    return periods[active[0]].label


def _config_name(given, own: Path | None) -> str | None:
    """The configuration file used: the one given, else the org's own (None: none)."""
    if given is None:
        return None if own is None else str(own)
    if isinstance(given, str | Path):
        return str(given) or None
    return "<given>" if given else None


def _check_target_scopes(targets: Targets, src: Source) -> None:
    """Target overrides must name teams or reps of the source (``ParamsError`` otherwise)."""
    known = set(src.frame("teams")["team_id"]) | set(src.frame("reps")["rep_id"]) | {"all"}
    unknown = sorted(targets.scope_ids() - known)
    if unknown:
        raise ParamsError(
            f"{targets.origin}: overrides name scope_id(s) {unknown} that are no team or rep "
            f"of {src.location}"
        )


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


def _grid_index(scopes: pd.DataFrame, periods: list[Period]) -> pd.MultiIndex:
    """``(scope, scope_id, period_start)`` of every scope (``scope_rows``) x period; the
    periods of one scope are consecutive, oldest first."""
    starts = pd.DatetimeIndex([p.start for p in periods]).astype("datetime64[ns]")
    return pd.MultiIndex.from_arrays(
        [
            np.repeat(scopes["scope"].to_numpy(), len(starts)),
            np.repeat(scopes["scope_id"].to_numpy(), len(starts)),
            np.tile(starts, len(scopes)),
        ],
        names=["scope", "scope_id", "period_start"],
    )


def _rollup(
    src: Source, frames: Iterable[pd.DataFrame], index: pd.MultiIndex, periods: list[Period]
) -> pd.DataFrame:
    """Measures over ``index`` (``_grid_index``), one column per measure, 0 where no rows.

    ``frames`` are ``measure_frames``' results: a row of a rep counts for the rep, its team and
    the company; a row of a team (spend) for the team and the company; a row of neither for the
    company only. Each frame is added in as it arrives, while the database computes the next.
    """
    starts = pd.DatetimeIndex([p.start for p in periods]).astype("datetime64[us]")
    n_periods, size = len(starts), len(index)
    kinds = index.get_level_values("scope")[::n_periods]  # one per scope, in grid order
    ids = index.get_level_values("scope_id")[::n_periods]
    company = np.flatnonzero(kinds == "company")
    team_rows, rep_rows = np.flatnonzero(kinds == "team"), np.flatnonzero(kinds == "rep")
    teams, rep_ids = pd.Index(ids[team_rows]), pd.Index(ids[rep_rows])
    reps = src.frame("reps")
    team_of = pd.Series(reps["team_id"].astype(str).to_numpy(), index=reps["rep_id"].astype(str))
    rep_team = teams.get_indexer(rep_ids.map(team_of).fillna("\0"))  # -1: no team
    sums: dict[str, np.ndarray] = {}
    for df in frames:
        period = starts.get_indexer(df["period_start"])
        rep = rep_ids.get_indexer(df["rep_id"]) if "rep_id" in df else np.full(len(df), -1)
        team = teams.get_indexer(df["team_id"]) if "team_id" in df else np.full(len(df), -1)
        team = np.where((team < 0) & (rep >= 0), rep_team[np.maximum(rep, 0)], team)
        at_team, at_rep = np.flatnonzero(team >= 0), np.flatnonzero(rep >= 0)
        row = np.concatenate(
            [np.repeat(company, len(df)), team_rows[team[at_team]], rep_rows[rep[at_rep]]]
        )
        source_row = np.concatenate([np.arange(len(df)), at_team, at_rep])
        cell = row * n_periods + np.concatenate([period, period[at_team], period[at_rep]])
        known = period[source_row] >= 0
        cell, source_row = cell[known], source_row[known]
        for column in df.columns.drop(["period_start", "rep_id", "team_id"], errors="ignore"):
            weights = df[column].to_numpy(dtype="float64")[source_row]
            total = np.bincount(cell, weights=weights, minlength=size)
            sums[column] = sums[column] + total if column in sums else total
    return pd.DataFrame(sums, index=index)


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
    target_series: dict[str, pd.Series],
    config: dict,
    stage_order: list[str],
):
    """Every KPI's value, numerator and denominator over the grid, and the unavailable ones.

    ``grid`` is indexed by ``_grid_index``: each scope's periods consecutive, oldest first, so
    a value ``k`` periods back is ``k`` rows back within the scope's block.
    """
    index = grid.index
    months, n_periods = periods[0].months, len(periods)
    nan = pd.Series(np.nan, index=index)
    values: dict[str, tuple[pd.Series, pd.Series, pd.Series]] = {}
    unavailable: dict[str, str] = {}

    def measure(name: str) -> pd.Series:
        return grid[name] if name in grid else pd.Series(0.0, index=index)

    def get(name: str, shift: int = 0, year_ago: bool = False) -> pd.Series:
        if name == "_gross_margin":
            series = pd.Series(float(config["gross_margin"]), index=index)
        elif name.startswith("_target:"):
            series = target_series.get(name.split(":", 1)[1], nan)
        else:
            series = values[name][0]
        back = 12 // months if year_ago else -shift
        if back == 0:
            return series
        blocks = series.to_numpy(dtype="float64").reshape(-1, n_periods)
        moved = np.full_like(blocks, np.nan)
        if 0 < back < n_periods:
            moved[:, back:] = blocks[:, :-back]
        elif -n_periods < back < 0:
            moved[:, :back] = blocks[:, -back:]
        return pd.Series(moved.ravel(), index=index)

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
    return values, unavailable


def _for_stage(expr: Ratio, stage: str) -> Ratio:
    return Ratio(f"{expr.numerator}:{stage}", f"{expr.denominator}:{stage}", expr.scale)


def stage_order(src: Source, stages: Sequence[str] | None = None) -> list[str]:
    """Open stages in pipeline order: by the mean position at which deals enter them.

    Example: ``['Prospecting', 'Discovery', 'Demo', 'Proposal', 'Negotiation']`` on the demo data.
    """
    if not src.has("stage_history"):
        return sorted(stages or [])
    positions = stage_positions(src.table("stage_history")).to_pandas()
    ordered = [s for s in positions["stage"] if stages is None or s in stages]
    return ordered + sorted(set(stages or []) - set(ordered))


def _ranges(
    values,
    periods: list[Period],
    wanted: list[Period],
    data_start: str | None,
    as_of_end: pd.Timestamp,
) -> dict[str, dict[str, np.ndarray]]:
    """``ranges``' columns over the grid, by column then KPI name (grid order, NaN elsewhere).

    Bands are for months only: a month's band reads the 12 months before it, where the org has
    data (a month before ``data_start`` has no value: its zeros mean "no data yet"). A month
    not over on the report date is never ``unusual``: part of a month is not comparable with
    whole ones. Tested rates compare each period with the one before it.
    """
    names = [name for name in values if not name.startswith("_")]
    n_periods = len(periods)
    size = len(next(iter(values.values()))[0])
    out: dict[str, dict[str, np.ndarray]] = {c: {} for c in RANGE_COLUMNS}
    starts = {p.start: i for i, p in enumerate(periods)}
    columns = np.array(sorted(starts[p.start] for p in wanted))

    def blocks(series) -> np.ndarray:
        return np.asarray(series, dtype="float64").reshape(-1, n_periods)

    low = np.full((len(names), size // n_periods, n_periods), np.nan)
    high = low.copy()
    if periods[0].grain == "month":
        first = starts[Period.parse(data_start).start] if data_start else 0
        stacked = np.stack([blocks(values[name][0]) for name in names])  # kpi x scope x period
        stacked[:, :, :first] = np.nan
        padded = np.concatenate(
            [np.full(stacked.shape[:2] + (ranges.BAND_MONTHS,), np.nan), stacked], axis=2
        )
        windows = np.lib.stride_tricks.sliding_window_view(padded, ranges.BAND_MONTHS, axis=2)
        picked = windows[:, :, columns, :]  # the 12 months before each wanted period
        lo, hi = ranges.normal_ranges(picked.reshape(-1, ranges.BAND_MONTHS))
        low[:, :, columns] = lo.reshape(picked.shape[:3])
        high[:, :, columns] = hi.reshape(picked.shape[:3])
    running = np.array([p.end > as_of_end for p in periods])
    judged = np.tile(~running, size // n_periods)  # grid order: each scope's periods in a row
    for i, name in enumerate(names):
        out["band_low"][name] = low[i].ravel()
        out["band_high"][name] = high[i].ravel()
        unusual = ranges.is_unusual(values[name][0], low[i].ravel(), high[i].ravel())
        out["unusual"][name] = unusual & judged
        significant = np.full(size, np.nan)
        if name in ranges.TESTED_RATES:
            x1, n1 = blocks(values[name][1]), blocks(values[name][2])
            x0, n0 = np.full_like(x1, np.nan), np.full_like(n1, np.nan)
            x0[:, 1:], n0[:, 1:] = x1[:, :-1], n1[:, :-1]
            p = ranges.two_proportion_p(x1, n1, x0, n0).ravel()
            significant = np.where(np.isnan(p), np.nan, p < ranges.SIGNIFICANCE)
        out["change_significant"][name] = significant
    return out


def _assemble(
    values,
    target_series: dict[str, pd.Series],
    wanted: list[Period],
    unavailable,
    context: dict[str, dict[str, np.ndarray]] | None,
) -> pd.DataFrame:
    """The tidy cube: rows ordered by period, then scope row (company, teams, reps), then KPI."""
    index = next(iter(values.values()))[0].index
    names = [name for name in values if not name.startswith("_")]
    labels = {p.start: p.label for p in wanted}
    starts = index.get_level_values("period_start")
    rank = pd.Series(range(len(wanted)), index=[p.start for p in wanted])
    period_rank = starts.map(rank)
    keep = np.flatnonzero(period_rank.notna())
    order = keep[np.argsort(period_rank[keep].astype(int), kind="stable")]  # period-major
    nan = np.full(len(index), np.nan)

    def stacked(pick) -> np.ndarray:
        table = np.column_stack([np.asarray(pick(name), dtype="float64") for name in names])
        out = table[order].ravel()
        out[np.isinf(out)] = np.nan
        return out

    def target(name: str):
        if name in target_series and name not in unavailable:
            return target_series[name].to_numpy()
        return nan

    k = len(names)
    rows = np.repeat(order, k)  # grid row of every cube row
    cube = pd.DataFrame(
        {
            "period": _str_column(starts.map(labels), rows),
            "scope": _str_column(index.get_level_values("scope"), rows),
            "scope_id": _str_column(index.get_level_values("scope_id"), rows),
            "kpi": _str_column(names, np.tile(np.arange(k), len(order))),
            "value": stacked(lambda name: values[name][0]),
            "numerator": stacked(lambda name: values[name][1]),
            "denominator": stacked(lambda name: values[name][2]),
            "target": stacked(target),
        }
    )
    if context is None:
        return cube
    significant = stacked(lambda name: context["change_significant"][name])
    cube["band_low"] = stacked(lambda name: context["band_low"][name])
    cube["band_high"] = stacked(lambda name: context["band_high"][name])
    cube["unusual"] = stacked(lambda name: context["unusual"][name]).astype(bool)
    cube["change_significant"] = pd.array(
        np.where(np.isnan(significant), None, significant == 1), dtype="boolean"
    )
    return cube


def _str_column(values, positions: np.ndarray) -> pd.Series:
    """``values[positions]`` as a string column, gathered in Arrow (no Python object per row)."""
    strings = pa.array(np.asarray(values, dtype=object), type=pa.large_string(), from_pandas=True)
    taken = strings.take(positions)
    return pd.Series(pd.array(taken, dtype=pd.StringDtype("pyarrow", na_value=np.nan)))

"""kpi_lib: sales KPIs computed once, from canonical tables, with the same definitions everywhere.

Example
-------
>>> import kpi_lib
>>> cube = kpi_lib.compute_cube("data/demo.duckdb", "2026-10")       # doctest: +SKIP
"""

import warnings
from importlib import metadata

# ibis 12 asks pandas 3 about an option pandas now deprecates; harmless, and noisy in every run.
warnings.filterwarnings("ignore", message="The 'future.infer_string' option is deprecated")

from kpi_lib.data.load import load_source
from kpi_lib.data.rules import Finding
from kpi_lib.data.source import Source
from kpi_lib.errors import (
    DataError,
    KpiKitError,
    ParamsError,
    PeriodError,
    SourceError,
    UnknownScopeError,
)
from kpi_lib.metrics.cube import CUBE_COLUMNS, compute_cube, scope_rows, stage_order
from kpi_lib.metrics.registry import HEADLINE_KPIS, REGISTRY, Kpi, get_kpi
from kpi_lib.metrics.targets import Targets, load_targets
from kpi_lib.periods import Period, last_complete_month, parse_periods

try:
    __version__ = metadata.version("kpi-kit")  # pyproject.toml is the one place it is set
except metadata.PackageNotFoundError:
    __version__ = "0+unknown"

__all__ = [
    "CUBE_COLUMNS",
    "HEADLINE_KPIS",
    "REGISTRY",
    "DataError",
    "Finding",
    "Kpi",
    "KpiKitError",
    "ParamsError",
    "Period",
    "PeriodError",
    "Source",
    "SourceError",
    "Targets",
    "UnknownScopeError",
    "compute_cube",
    "get_kpi",
    "last_complete_month",
    "load_source",
    "load_targets",
    "parse_periods",
    "scope_rows",
    "stage_order",
]

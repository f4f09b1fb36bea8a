"""``python -m kpi_lib <command>``: thin shells over the library's functions.

Exit codes: 0 success, 2 bad input (one clear message, no traceback), 1 when some reports
failed.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from kpi_lib.errors import KpiKitError

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _kpis(args: argparse.Namespace) -> int:
    from kpi_lib.cube import compute_cube

    cube = compute_cube(args.source, args.period, as_of=args.as_of, targets=args.targets)
    for kpi, reason in cube.attrs.get("unavailable", {}).items():
        print(f"note: {kpi} is unavailable: {reason}", file=sys.stderr)
    for finding in cube.attrs.get("findings", []):
        print(f"note: {finding}", file=sys.stderr)
    if args.out:
        out = Path(args.out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(f".{out.name}.tmp")
        cube.to_csv(tmp, index=False)
        tmp.replace(out)
        print(f"wrote {len(cube)} rows to {out}", file=sys.stderr)
    else:
        cube.to_csv(sys.stdout, index=False)
    return EXIT_OK


def _demo_data(args: argparse.Namespace) -> int:
    from kpi_lib.demo import write_demo_data

    path = write_demo_data(args.out, end=args.end, seed=args.seed, scale=args.scale, fmt=args.format)
    print(f"wrote demo data to {path}", file=sys.stderr)
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    from kpi_lib.validate import validation_report

    report = validation_report(args.source)
    print(report.text())
    return EXIT_OK


def _render(args: argparse.Namespace) -> int:
    from kpi_lib.render import render_batch

    result = render_batch(
        period=args.period, source=args.source, out=args.out, jobs=args.jobs,
        as_of=args.as_of, targets=args.targets,
    )
    print(result.summary(), file=sys.stderr)
    return EXIT_FAILED if result.failed else EXIT_OK


def _default_period() -> str:
    from kpi_lib.periods import last_complete_month

    return last_complete_month().label


def _last_month(args: argparse.Namespace) -> int:
    print(_default_period())
    return EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kpi_lib", description="Sales KPI reporting kit: KPIs, demo data, reports."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    p = sub.add_parser("kpis", help="compute the KPI cube as CSV")
    p.add_argument("--source", required=True, help="folder of CSV/Parquet tables or a DuckDB file")
    p.add_argument("--period", required=True, help="YYYY-MM, YYYY-Qn, YYYY or a range A:B")
    p.add_argument("--as-of", help="report date YYYY-MM-DD (default: today)")
    p.add_argument("--targets", default="params/targets.yaml", help="targets YAML")
    p.add_argument("--out", help="CSV file to write (default: stdout)")
    p.set_defaults(run=_kpis)

    p = sub.add_parser("demo-data", help="generate the demo CRM")
    p.add_argument("--out", default="data/demo.duckdb", help="a .duckdb file or a folder")
    p.add_argument("--end", help="last month of history, YYYY-MM (default: last complete month)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--scale", type=float, default=1.0, help="multiply volumes (10: ~1M+ activities)")
    p.add_argument("--format", choices=["duckdb", "csv", "parquet"], help="default: from --out")
    p.set_defaults(run=_demo_data)

    p = sub.add_parser("validate", help="check a source and print a data-quality report")
    p.add_argument("--source", required=True)
    p.set_defaults(run=_validate)

    p = sub.add_parser("render", help="render the batch of reports for a period")
    p.add_argument("--period", default=None, help="default: last complete month")
    p.add_argument("--source", default="data/demo.duckdb")
    p.add_argument("--out", default="reports")
    p.add_argument("--jobs", type=int, default=None, help="parallel reports (default: cores)")
    p.add_argument("--as-of", help="report date YYYY-MM-DD (default: today)")
    p.add_argument("--targets", default="params/targets.yaml")
    p.set_defaults(run=_render)

    p = sub.add_parser("last-month", help="print the last complete month (YYYY-MM)")
    p.set_defaults(run=_last_month)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if getattr(args, "period", "unset") is None:
        args.period = _default_period()
    try:
        return args.run(args)
    except KpiKitError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # a bug, not bad input: say so in one line, traceback on request
        if os.environ.get("KPI_DEBUG"):
            raise
        print(f"internal error ({type(exc).__name__}): {exc}\n"
              "set KPI_DEBUG=1 for the traceback and please report it", file=sys.stderr)
        return EXIT_FAILED

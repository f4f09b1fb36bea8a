"""``python -m kpi_lib <command>``: thin shells over the library's functions.

Exit codes: 0 success, 2 bad input (one clear message, no traceback), 1 when some reports
or sends failed, 75 when another scheduled run holds the lock.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from kpi_lib.errors import KpiKitError
from kpi_lib.redact import redact

EXIT_OK, EXIT_FAILED, EXIT_BAD_INPUT = 0, 1, 2


def _kpis(args: argparse.Namespace) -> int:
    from kpi_lib.metrics.cube import compute_cube

    cube = compute_cube(_source(args), args.period, as_of=args.as_of, targets=args.targets)
    for kpi, reason in cube.attrs.get("unavailable", {}).items():
        print(f"note: {kpi} is unavailable: {reason}", file=sys.stderr)
    for finding in cube.attrs.get("findings", []):
        print(f"note: {finding}", file=sys.stderr)
    _write_csv(cube, args.out)
    return EXIT_OK


def _drivers(args: argparse.Namespace) -> int:
    from kpi_lib.data.load import load_source
    from kpi_lib.metrics.cube import compute_cube
    from kpi_lib.metrics.drivers import compute_drivers, drivers_periods

    src = load_source(_source(args))
    cube = compute_cube(src, drivers_periods(args.period), as_of=args.as_of)
    for kpi, reason in cube.attrs.get("unavailable", {}).items():
        if kpi in ("revenue", "sales_velocity"):
            print(f"note: {kpi} is unavailable: {reason}", file=sys.stderr)
    _write_csv(compute_drivers(cube, args.period, src.frame("reps")), args.out)
    return EXIT_OK


def _write_csv(table, out: str | None) -> None:
    """``table`` as CSV to ``out`` (written whole or not at all), or to stdout."""
    if not out:
        table.to_csv(sys.stdout, index=False)
        return
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    table.to_csv(tmp, index=False)
    tmp.replace(path)
    print(f"wrote {len(table)} rows to {path}", file=sys.stderr)


def _demo_data(args: argparse.Namespace) -> int:
    from kpi_lib.data.demo import write_demo_data

    path = write_demo_data(
        args.out, end=args.end, seed=args.seed, scale=args.scale, fmt=args.format
    )
    print(f"wrote demo data to {path}", file=sys.stderr)
    return EXIT_OK


def _validate(args: argparse.Namespace) -> int:
    from kpi_lib.data.validate import validation_report

    report = validation_report(_source(args), as_of=args.as_of)
    print(report.text())
    return EXIT_OK


def _render(args: argparse.Namespace) -> int:
    from kpi_lib.publish.render import render_batch

    result = render_batch(
        period=args.period,
        source=_source(args),
        out=args.out,
        jobs=args.jobs,
        as_of=args.as_of,
        targets=args.targets,
        fresh_kernels=args.fresh_kernels,
        force=args.force,
        history_dir=args.history,
    )
    print(result.summary(), file=sys.stderr)
    return EXIT_FAILED if result.failed else EXIT_OK


def _snapshot(args: argparse.Namespace) -> int:
    from kpi_lib.clock import today
    from kpi_lib.data.history import history_coverage, take_snapshot

    result = take_snapshot(_source(args), args.history, today=today(args.today), always=args.always)
    print(result.summary(), file=sys.stderr)
    print(history_coverage(args.history).text(), file=sys.stderr)
    return EXIT_OK


def _source(args: argparse.Namespace):
    """The source the options describe (``sources.source_spec``): parsed once, here."""
    from kpi_lib.data.source import source_spec

    return source_spec(
        args.source, args.preset, options=args.options, colmap=args.colmap, fx=args.fx
    )


def _source_options(p: argparse.ArgumentParser, default: str | None = None) -> None:
    """The source options every command that reads a source takes, the same way."""
    p.add_argument(
        "--source",
        required=default is None,
        default=default,
        help="a folder of CSV/Parquet tables or CRM exports, a DuckDB file, a source YAML "
        "or a SQL URL" + (f" (default: {default})" if default else ""),
    )
    p.add_argument(
        "--preset",
        choices=["salesforce", "hubspot"],
        help="read a folder of CRM exports (see docs/data-sources.md)",
    )
    p.add_argument("--options", help="preset options YAML (stage map, qualified leads, teams)")
    p.add_argument("--colmap", help="column map YAML from your files onto the canonical tables")
    p.add_argument("--fx", help="FX table (CSV currency,rate or YAML) for mixed currencies")


def _targets_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--targets",
        default=None,
        help="targets YAML (default: the org's own, see `init`; params/targets.yaml for the "
        "demo; '' for none)",
    )


def _init(args: argparse.Namespace) -> int:
    from kpi_lib.clock import today
    from kpi_lib.publish.org_setup import write_starter_config

    result = write_starter_config(
        _source(args), args.out, org=args.org, today=today(args.today), force=args.force
    )
    print(result.summary(), file=sys.stderr)
    return EXIT_OK


def _last_month(args: argparse.Namespace) -> int:
    from kpi_lib.periods import last_complete_month

    print(last_complete_month().label)
    return EXIT_OK


def _smtp_from_args(args: argparse.Namespace):
    """SMTP settings from the options (or ``KPI_SMTP_*`` variables); None without a host."""
    from kpi_lib.publish.send import smtp_settings

    if not args.smtp_host:
        return None
    security = (
        "ssl"
        if args.ssl
        else "starttls"
        if args.starttls
        else (os.environ.get("KPI_SMTP_SECURITY") or "none")
    )
    return smtp_settings(args.smtp_host, args.smtp_port, security, args.smtp_user)


def _retry_from_args(args: argparse.Namespace):
    from kpi_lib.publish.send import RetryPolicy

    return RetryPolicy(
        attempts=args.retries,
        base_delay=args.retry_delay,
        max_delay=max(args.retry_delay, args.retry_max_delay),
    )


def _guards_from_args(args: argparse.Namespace):
    from kpi_lib.publish.guards import GuardPolicy

    return GuardPolicy(max_lag_days=args.max_lag_days, max_row_drop=args.max_row_drop)


def _rerun(args: argparse.Namespace) -> str:
    """The command that ran, to run again (the operators' notice gives it); a scheduled run
    gets its ``--today`` so that a rerun tomorrow covers the same period."""
    import shlex

    from kpi_lib.clock import today

    argv = list(args.argv)
    if args.command in ("monthly", "mtd") and not args.today:
        argv += ["--today", today().isoformat()]
    return redact(shlex.join(["python", "-m", "kpi_lib", *argv]))


def _send(args: argparse.Namespace) -> int:
    from kpi_lib.publish.operators import RunRecord, find_operators, watched
    from kpi_lib.publish.send import send_batch

    label, smtp, retry = args.period.label, _smtp_from_args(args), _retry_from_args(args)
    record = RunRecord(f"send {label}", label, _rerun(args))
    with watched(
        record,
        operators=lambda: find_operators(args.recipients, out=args.out, period=label),
        smtp=smtp,
        retry=retry,
        outbox=lambda: Path(args.out) / label / "outbox",
    ):
        result = send_batch(
            args.period,
            out=args.out,
            recipients=args.recipients,
            smtp=smtp,
            retry=retry,
            guards=_guards_from_args(args),
            force_send=args.force_send,
            channels=not args.no_channels,
            log=record.log,
        )
        record.add_send(result)
    print(result.summary(), file=sys.stderr)
    return EXIT_FAILED if result.failed or result.held_back else EXIT_OK


def _alerts(args: argparse.Namespace) -> int:
    from kpi_lib.publish.alerts import send_alerts

    result = send_alerts(
        args.period,
        args.out,
        alerts=args.alerts,
        recipients=args.recipients,
        smtp=_smtp_from_args(args),
        retry=_retry_from_args(args),
    )
    if result.rules_file is None:
        print(
            f"{args.period.label}: no alerts file (alerts.yaml beside the recipients file, "
            "or --alerts FILE); nothing to do",
            file=sys.stderr,
        )
    else:
        print(result.summary(), file=sys.stderr)
    return EXIT_FAILED if result.failed else EXIT_OK


def _scheduled(args: argparse.Namespace, kind: str) -> int:
    from kpi_lib.clock import today
    from kpi_lib.publish import schedule

    day = today(args.today)
    plan = schedule.monthly_plan(day) if kind == "monthly" else schedule.mtd_plan(day)
    send = not args.no_send if kind == "monthly" else args.send
    try:
        with schedule.run_lock(args.out, f"{kind} {plan.period.label}"):
            result = schedule.run(
                plan,
                source=_source(args),
                out=args.out,
                send=send,
                recipients=args.recipients,
                smtp=_smtp_from_args(args),  # digests (with send), alerts, operators' notice
                retry=_retry_from_args(args),
                jobs=args.jobs,
                targets=args.targets,
                matrix=args.matrix,
                rerender=args.rerender,
                guards=_guards_from_args(args),
                force_send=args.force_send,
                channels=not args.no_channels,
                alerts=args.alerts,
                rerun=_rerun(args),
            )
    except schedule.RunLocked as exc:
        print(f"error: {exc}", file=sys.stderr)
        return schedule.EXIT_LOCKED
    return EXIT_FAILED if result.failed else EXIT_OK


def _monthly(args: argparse.Namespace) -> int:
    return _scheduled(args, "monthly")


def _mtd(args: argparse.Namespace) -> int:
    return _scheduled(args, "mtd")


def _add_delivery_options(p: argparse.ArgumentParser) -> None:
    env = os.environ.get
    p.add_argument("--out", default="reports", help="the reports folder (default: reports)")
    p.add_argument(
        "--recipients",
        default=None,
        help="who receives which reports (default: the org's own; params/recipients.yaml "
        "for the demo)",
    )
    p.add_argument(
        "--smtp-host",
        default=env("KPI_SMTP_HOST"),
        help="send through this server (default $KPI_SMTP_HOST; none: .eml files "
        "in <out>/<period>/outbox/)",
    )
    p.add_argument(
        "--smtp-port",
        type=int,
        default=env("KPI_SMTP_PORT"),
        help="default: 465 with --ssl, 587 with --starttls, else 25",
    )
    security = p.add_mutually_exclusive_group()
    security.add_argument("--starttls", action="store_true", help="upgrade with STARTTLS")
    security.add_argument("--ssl", action="store_true", help="connect with TLS (SMTPS)")
    p.add_argument(
        "--smtp-user",
        default=env("KPI_SMTP_USER"),
        help="login user; the password only from $KPI_SMTP_PASSWORD",
    )
    p.add_argument("--retries", type=int, default=4, help="attempts per message (default 4)")
    p.add_argument(
        "--retry-delay",
        type=float,
        default=2.0,
        help="seconds before the first retry, doubling each time (default 2)",
    )
    p.add_argument("--retry-max-delay", type=float, default=60.0)
    p.add_argument(
        "--force-send",
        action="store_true",
        help="send although the guards find the source stale, a table missing or shrunken "
        "(the ledger records it)",
    )
    p.add_argument(
        "--max-lag-days",
        type=int,
        default=0,
        help="days before the period's start the newest opportunity or activity may be (default 0)",
    )
    p.add_argument(
        "--max-row-drop",
        type=float,
        default=0.2,
        help="share by which a table's rows may fall against the last batch (default 0.2)",
    )
    p.add_argument("--no-channels", action="store_true", help="email only: no Slack or Teams posts")


def _add_schedule_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--today", help="the run's date YYYY-MM-DD (default $KPI_TODAY, else today)")
    _source_options(p, default="data/demo.duckdb")
    p.add_argument("--jobs", type=int, default=None, help="parallel reports (default: cores)")
    _targets_option(p)
    p.add_argument("--matrix", default="params/reports.yaml", help="the report matrix")
    p.add_argument(
        "--rerender",
        action="store_true",
        help="render even if a complete batch with data as recent exists",
    )
    _alerts_option(p)
    _add_delivery_options(p)


def _alerts_option(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--alerts",
        default=None,
        help="KPI alert rules (default: alerts.yaml beside the recipients file, if any; "
        "'' for none)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m kpi_lib", description="Sales KPI reporting kit: KPIs, demo data, reports."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="command")

    p = sub.add_parser("kpis", help="compute the KPI cube as CSV")
    _source_options(p)
    p.add_argument("--period", required=True, help="YYYY-MM, YYYY-Qn, YYYY or a range A:B")
    p.add_argument("--as-of", help="report date YYYY-MM-DD (default: today)")
    _targets_option(p)
    p.add_argument("--out", help="CSV file to write (default: stdout)")
    p.set_defaults(run=_kpis)

    p = sub.add_parser("drivers", help="what moved each change (deals, deal size, teams, reps)")
    _source_options(p)
    p.add_argument("--period", required=True, help="YYYY-MM, YYYY-Qn or YYYY")
    p.add_argument("--as-of", help="report date YYYY-MM-DD (default: today)")
    p.add_argument("--out", help="CSV file to write (default: stdout)")
    p.set_defaults(run=_drivers)

    p = sub.add_parser("demo-data", help="generate the demo CRM")
    p.add_argument("--out", default="data/demo.duckdb", help="a .duckdb file or a folder")
    p.add_argument("--end", help="last month of history, YYYY-MM (default: last complete month)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument(
        "--scale", type=float, default=1.0, help="multiply volumes (10: ~1M+ activities)"
    )
    p.add_argument("--format", choices=["duckdb", "csv", "parquet"], help="default: from --out")
    p.set_defaults(run=_demo_data)

    p = sub.add_parser("validate", help="check a source and print a data-quality report")
    p.add_argument(
        "--as-of", help="report date YYYY-MM-DD: later dates are findings (default: today)"
    )
    _source_options(p)
    p.set_defaults(run=_validate)

    p = sub.add_parser("snapshot", help="store today's snapshot of the opportunities (history)")
    _source_options(p)
    p.add_argument(
        "--history",
        default="history",
        help="history folder (default: history); files opportunities/<date>.parquet",
    )
    p.add_argument("--today", help="the snapshot's date YYYY-MM-DD (default $KPI_TODAY or today)")
    p.add_argument(
        "--always",
        action="store_true",
        help="snapshot even a source that has its own stage history",
    )
    p.set_defaults(run=_snapshot)

    p = sub.add_parser("render", help="render the batch of reports for a period")
    p.add_argument("--period", default=None, help="default: last complete month")
    _source_options(p, default="data/demo.duckdb")
    p.add_argument("--out", default="reports")
    p.add_argument("--jobs", type=int, default=None, help="parallel reports (default: cores)")
    p.add_argument("--as-of", help="report date YYYY-MM-DD (default: today)")
    _targets_option(p)
    p.add_argument(
        "--fresh-kernels",
        action="store_true",
        help="a fresh kernel per report (slower; for debugging the warm pool)",
    )
    p.add_argument(
        "--history",
        default=None,
        help="snapshot folder: store today's snapshot and derive stage history "
        "for a source without it (see `snapshot`)",
    )
    p.add_argument(
        "--force",
        action="store_true",
        help="render every report, even those unchanged since the last render",
    )
    p.set_defaults(run=_render)

    p = sub.add_parser("send", help="email (or write as .eml) the digests of a rendered batch")
    p.add_argument("--period", default=None, help="default: last complete month")
    _add_delivery_options(p)
    p.set_defaults(run=_send)

    p = sub.add_parser("alerts", help="send the KPI alerts of a rendered batch (once each)")
    p.add_argument("--period", default=None, help="default: last complete month")
    _alerts_option(p)
    _add_delivery_options(p)
    p.set_defaults(run=_alerts)

    p = sub.add_parser("monthly", help="render the last complete month and send its digests")
    _add_schedule_options(p)
    p.add_argument("--no-send", action="store_true", help="render only")
    p.set_defaults(run=_monthly)

    p = sub.add_parser("mtd", help="render the month to date (no email unless --send)")
    _add_schedule_options(p)
    p.add_argument("--send", action="store_true", help="also send the digests")
    p.set_defaults(run=_mtd)

    p = sub.add_parser(
        "init", help="write a starting configuration (targets, stages, recipients) for an org"
    )
    _source_options(p)
    p.add_argument("--out", help="the folder to write (default: params/<org>/)")
    p.add_argument("--org", help="the org's name (default: from the source's name)")
    p.add_argument(
        "--today", help="count actuals to this date, YYYY-MM-DD (default $KPI_TODAY, else today)"
    )
    p.add_argument("--force", action="store_true", help="replace the files of an existing folder")
    p.set_defaults(run=_init)

    p = sub.add_parser("last-month", help="print the last complete month (YYYY-MM)")
    p.set_defaults(run=_last_month)
    return parser


def _typed(args: argparse.Namespace) -> None:
    """Parse what a command was given as text, once, here: the library takes typed values.

    ``--period`` becomes a ``Period`` (a list of them for ``kpis``, which takes a range; none
    given: the last complete month), ``--as-of`` a ``date``.
    """
    from kpi_lib.periods import Period, last_complete_month, parse_day, parse_periods

    if hasattr(args, "period"):
        if args.command == "kpis":
            args.period = parse_periods(args.period)
        else:
            args.period = Period.parse(args.period) if args.period else last_complete_month()
    if getattr(args, "as_of", None):
        args.as_of = parse_day(args.as_of)


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        _typed(args)
        return args.run(args)
    except KpiKitError as exc:
        print(f"error: {redact(exc)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader of stdout left (`| head`): nothing more to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK
    except Exception as exc:  # a bug, not bad input: say so in one line, traceback on request
        if os.environ.get("KPI_DEBUG"):
            raise
        print(
            f"internal error ({type(exc).__name__}): {redact(exc)}\n"
            "set KPI_DEBUG=1 for the traceback and please report it",
            file=sys.stderr,
        )
        return EXIT_FAILED
